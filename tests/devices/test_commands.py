"""Management commands `provision_device` and `rotate_device_secret`."""

import io
import json
import time

import pytest
from django.core.management import CommandError, call_command

from devices.models import Device, PairingCode
from devices.signing import verify_device_signature
from sim.client import sign

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
    assert device.reveal_secret() in out
    assert device.owner == user and device.paired_at is not None


@pytest.mark.parametrize("device_id", ["bad id", "робот-1", "x" * 65, "", ".", ".."])
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
    assert Device.objects.get(pk=device.pk).reveal_secret() in out


def test_rotate_unknown_device_is_command_error():
    """Rotating an unknown device fails with a CommandError."""
    with pytest.raises(CommandError, match="No device"):
        run("rotate_device_secret", "ghost")


def test_provision_name_too_long_is_command_error():
    """A display name over 100 characters is refused before anything is created."""
    with pytest.raises(CommandError, match="100 characters"):
        run("provision_device", "wimz_robot_03", "--name", "x" * 101)
    assert not Device.objects.exists()


# --- bulk provisioning: --count/--prefix and --csv -------------------------------------------------


def json_lines(out):
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_bulk_count_prefix_json_lines_secrets_unique_and_verify():
    """`--count N --prefix P` creates P000…P<N-1> (zero-padded to the width of N-1), one JSON line per device,
    unique secrets that verify, and one provisioning pairing code each with the provisioning expiry."""
    out, err = run("provision_device", "--count", "120", "--prefix", "lab_", "--json")
    rows = json_lines(out)
    assert [r["device_id"] for r in rows] == [f"lab_{i:03d}" for i in range(120)]
    assert all(set(r) == {"device_id", "secret", "pairing_code"} for r in rows)
    assert len({r["secret"] for r in rows}) == 120 and len({r["pairing_code"] for r in rows}) == 120
    assert "provisioned 120 devices" in err
    assert Device.objects.count() == 120
    ts = int(time.time())
    for r in rows[::17]:
        device = verify_device_signature(r["device_id"], ts, sign(r["secret"], r["device_id"], ts))
        assert device is not None and device.device_id == r["device_id"] and device.owner is None
        code = PairingCode.objects.get(code=r["pairing_code"])
        assert code.device == device and code.kind == PairingCode.Kind.PROVISIONING and code.used_at is None
        assert code.expires_at > code.created_at


def test_bulk_count_width_and_owner(make_user):
    """Width follows N-1 (`--count 10` gives r0…r9); `--owner` pairs every device at once."""
    user = make_user("bulk@example.com")
    out, _ = run("provision_device", "--count", "10", "--prefix", "r", "--owner", "BULK@example.com", "--name", "Lab")
    assert [r["device_id"] for r in json_lines(out)] == [f"r{i}" for i in range(10)]
    assert Device.objects.filter(owner=user, paired_at__isnull=False, name="Lab").count() == 10


def test_bulk_csv_with_header_names_and_owners(tmp_path, make_user):
    """`--csv` rows device_id[,name[,owner_email]]; a header row and blank lines are skipped; `--owner` is
    the default owner for rows without an email."""
    alice, bob = make_user("alice@example.com"), make_user("bob@example.com")
    path = tmp_path / "robots.csv"
    path.write_text(
        "device_id,name,owner_email\nkit_a,Kitchen,alice@example.com\n\nkit_b,Hall\nkit_c\nkit_d,,ALICE@example.com\n"
    )
    out, _ = run("provision_device", "--csv", str(path), "--owner", "bob@example.com")
    assert [r["device_id"] for r in json_lines(out)] == ["kit_a", "kit_b", "kit_c", "kit_d"]
    devices = {d.device_id: d for d in Device.objects.all()}
    assert devices["kit_a"].name == "Kitchen" and devices["kit_a"].owner == alice
    assert devices["kit_b"].name == "Hall" and devices["kit_b"].owner == bob
    assert devices["kit_c"].owner == bob and devices["kit_d"].owner == alice
    assert all(d.paired_at is not None for d in devices.values())


def test_bulk_refuses_duplicates_and_writes_nothing(tmp_path, make_device):
    """An id already stored, or given twice, fails the whole batch with a CommandError naming it; nothing
    is written (no device, no pairing code)."""
    make_device("lab_07")
    with pytest.raises(CommandError, match=r"already exist.*lab_07"):
        run("provision_device", "--count", "20", "--prefix", "lab_")
    path = tmp_path / "twice.csv"
    path.write_text("one\ntwo\none\n")
    with pytest.raises(CommandError, match=r"more than once.*'one'"):
        run("provision_device", "--csv", str(path))
    assert list(Device.objects.values_list("device_id", flat=True)) == ["lab_07"]
    assert not PairingCode.objects.exists()


def test_bulk_refuses_bad_ids_unknown_owners_and_mixed_modes(tmp_path):
    """Invalid ids, unknown owner emails, and mixing modes are CommandErrors; nothing is written."""
    path = tmp_path / "bad.csv"
    for bad in ("bad id", ".", ".."):
        path.write_text(f"good_1\n{bad}\n")
        with pytest.raises(CommandError, match="1-64 characters"):
            run("provision_device", "--csv", str(path))
    path.write_text("good_1,,ghost@example.com\n")
    with pytest.raises(CommandError, match="No user"):
        run("provision_device", "--csv", str(path))
    with pytest.raises(CommandError, match="1-64 characters"):
        run("provision_device", "--count", "3", "--prefix", "x" * 64)
    with pytest.raises(CommandError, match="exactly one"):
        run("provision_device", "solo", "--count", "3", "--prefix", "p")
    with pytest.raises(CommandError, match="go together"):
        run("provision_device", "--count", "3")
    assert not Device.objects.exists()


def test_bulk_ten_thousand_in_one_process():
    """10,000 devices in one call (bulk_create in batches). The figure in the command's docstring comes from
    timing this path; no time is asserted here (shared machines are noisy)."""
    from devices.management.commands.provision_device import DeviceSpec, numbered_ids, provision_bulk

    done = provision_bulk([DeviceSpec(i) for i in numbered_ids("big_", 10_000)])
    assert len(done) == 10_000 and done[-1].device_id == "big_9999"
    assert Device.objects.count() == 10_000 and PairingCode.objects.count() == 10_000
    assert len({p.secret for p in done}) == 10_000


@pytest.mark.parametrize("device_id", [".", ".."])
def test_dot_segment_ids_are_refused_by_the_service_too(device_id):
    """`device_provision` (the single-device path) answers `invalid_device_id` for `.`/`..`: a REST path
    `/api/devices/..` could never reach them."""
    from devices.errors import InvalidDeviceId
    from devices.services import device_provision

    with pytest.raises(InvalidDeviceId) as info:
        device_provision(device_id=device_id)
    assert info.value.code == "invalid_device_id"
    assert not Device.objects.exists()
