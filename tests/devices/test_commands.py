"""Management commands `provision_device` and `rotate_device_secret`."""

import io
import json
import time

import pytest
from django.core.management import CommandError, call_command

from devices.models import Device, PairingCode
from devices.signing import sign, verify_device_signature

pytestmark = pytest.mark.django_db


def run(*args):
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_provision_json_is_exactly_one_object_and_secret_verifies():
    """`provision_device --json` prints one JSON object `{"device_id","secret","pairing_code"}` and nothing else."""
    out, _ = run("provision_device", "wimz_robot_07", "--name", "Seven", "--json")
    data = json.loads(out)  # the whole of stdout is one JSON document
    assert set(data) == {"device_id", "secret", "pairing_code"}
    assert out.strip().count("\n") == 0
    assert data["device_id"] == "wimz_robot_07"
    device = Device.objects.get(device_id="wimz_robot_07")
    assert device.name == "Seven" and device.owner is None
    ts = int(time.time())
    assert verify_device_signature("wimz_robot_07", ts, sign(data["secret"], "wimz_robot_07", ts)) == device
    assert PairingCode.objects.get(code=data["pairing_code"], device=device).kind == PairingCode.Kind.PROVISIONING


def test_provision_plain_output_and_owner(make_user):
    """Without --json the secret and pairing code are printed; `--owner EMAIL` pairs the robot to that user."""
    user = make_user("owner@example.com")
    out, _ = run("provision_device", "wimz_robot_08", "--owner", "OWNER@example.com")
    device = Device.objects.get(device_id="wimz_robot_08")
    assert device.secret in out
    assert device.owner == user and device.paired_at is not None


@pytest.mark.parametrize("device_id", ["bad id", "робот-1", "x" * 65, ""])
def test_provision_invalid_id_is_command_error(device_id):
    """An id outside protocol.md's alphabet fails with a CommandError naming the rule; nothing is created."""
    with pytest.raises(CommandError, match="1-64 characters"):
        run("provision_device", device_id, "--json")
    assert not Device.objects.exists()


def test_provision_duplicate_and_unknown_owner_are_command_errors(make_device):
    """A duplicate id or an unknown owner email fails with a clear CommandError."""
    make_device("wimz_robot_01")
    with pytest.raises(CommandError, match="already exists"):
        run("provision_device", "wimz_robot_01")
    with pytest.raises(CommandError, match="No user"):
        run("provision_device", "wimz_robot_02", "--owner", "ghost@example.com")
    assert Device.objects.count() == 1


def test_rotate_changes_secret_and_old_signatures_fail(make_device):
    """`rotate_device_secret --json` prints the new secret once; the old secret's signatures are refused."""
    device, old_secret = make_device("wimz_robot_01")
    out, _ = run("rotate_device_secret", "wimz_robot_01", "--json")
    data = json.loads(out)
    assert set(data) == {"device_id", "secret"}
    assert data["secret"] != old_secret
    ts = int(time.time())
    assert verify_device_signature("wimz_robot_01", ts, sign(old_secret, "wimz_robot_01", ts)) is None
    assert verify_device_signature("wimz_robot_01", ts, sign(data["secret"], "wimz_robot_01", ts)) == device
    out, _ = run("rotate_device_secret", "wimz_robot_01")
    assert Device.objects.get(pk=device.pk).secret in out


def test_rotate_unknown_device_is_command_error():
    """Rotating an unknown device fails with a CommandError."""
    with pytest.raises(CommandError, match="No device"):
        run("rotate_device_secret", "ghost")


def test_provision_name_too_long_is_command_error():
    """A display name over 100 characters is refused before anything is created."""
    with pytest.raises(CommandError, match="100 characters"):
        run("provision_device", "wimz_robot_03", "--name", "x" * 101)
    assert not Device.objects.exists()
