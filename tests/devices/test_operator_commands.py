"""Operator commands beside provision/rotate: list_devices, deactivate_device, reactivate_device, unpair_device."""

import io
import json

import pytest
from django.core.management import CommandError, call_command

from devices import signals
from devices.models import Device

pytestmark = pytest.mark.django_db(transaction=True)


def run(*args):
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def heard():
    """Every devices signal sent (after commit) during the test, as `(name, kwargs)`."""
    calls = []

    def recorder(name):
        def receive(sender, signal, **kwargs):
            calls.append((name, kwargs))

        return receive

    receivers = {name: recorder(name) for name in ("device_paired", "device_unpaired", "device_revoked")}
    for name, fn in receivers.items():
        getattr(signals, name).connect(fn, weak=False)
    yield calls
    for name, fn in receivers.items():
        getattr(signals, name).disconnect(fn)


def test_list_devices_json_never_prints_a_secret_and_filters(make_user, make_device, set_online):
    """One JSON object per line with owner, presence, state and seconds-precision UTC times; filters by
    owner, presence and state; the secret appears nowhere."""
    user = make_user("owner@example.com")
    r1, s1 = make_device("wimz_robot_01", owner=user)
    _, s2 = make_device("wimz_robot_02", is_active=False)
    set_online(r1)
    out, _ = run("list_devices", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["device_id"] for r in rows] == ["wimz_robot_01", "wimz_robot_02"]
    assert rows[0] | {"last_seen": None} == {
        "device_id": "wimz_robot_01",
        "owner": "owner@example.com",
        "online": True,
        "active": True,
        "last_seen": None,
        "firmware_version": "",
    }
    assert rows[1]["online"] is False and rows[1]["active"] is False and rows[1]["owner"] is None
    assert s1 not in out and s2 not in out
    assert [json.loads(x)["device_id"] for x in run("list_devices", "--json", "--online")[0].splitlines()] == [
        "wimz_robot_01"
    ]
    assert [json.loads(x)["device_id"] for x in run("list_devices", "--json", "--offline")[0].splitlines()] == [
        "wimz_robot_02"
    ]
    assert [json.loads(x)["device_id"] for x in run("list_devices", "--json", "--inactive")[0].splitlines()] == [
        "wimz_robot_02"
    ]
    assert [
        json.loads(x)["device_id"]
        for x in run("list_devices", "--json", "--owner", "OWNER@example.com")[0].splitlines()
    ] == ["wimz_robot_01"]
    plain, err = run("list_devices")
    assert "wimz_robot_01  owner@example.com  online  active  never  -" in plain and "2 device(s)" in err
    with pytest.raises(CommandError, match="No user"):
        run("list_devices", "--owner", "ghost@example.com")


def test_deactivate_then_reactivate_tells_the_relay_each_time(make_user, make_device, heard):
    """deactivate_device refuses the device (device_revoked, deactivated); reactivate_device accepts it
    again and, as it has an owner, sends device_paired so the owner's apps list it again."""
    user = make_user("owner@example.com")
    device, _ = make_device("wimz_robot_01", owner=user)
    out, _ = run("deactivate_device", "wimz_robot_01")
    assert "deactivated" in out
    device.refresh_from_db()
    assert device.is_active is False and device.owner == user
    assert heard == [
        (
            "device_revoked",
            {"device_id": "wimz_robot_01", "device_pk": device.pk, "owner_id": user.pk, "deactivated": True},
        )
    ]
    assert "already inactive" in run("deactivate_device", "wimz_robot_01")[0]
    assert len(heard) == 1

    out, _ = run("reactivate_device", "wimz_robot_01")
    assert "reactivated" in out
    device.refresh_from_db()
    assert device.is_active is True
    assert heard[1] == ("device_paired", {"device_id": "wimz_robot_01", "device_pk": device.pk, "owner_id": user.pk})
    assert "already active" in run("reactivate_device", "wimz_robot_01")[0]
    assert len(heard) == 2


def test_reactivating_an_unowned_device_sends_nothing(make_device, heard):
    """Without an owner there are no apps to tell."""
    make_device("wimz_robot_01", is_active=False)
    run("reactivate_device", "wimz_robot_01")
    assert Device.objects.get(device_id="wimz_robot_01").is_active
    assert heard == []


def test_unpair_device_removes_the_owner_and_tells_the_relay(make_user, make_device, heard):
    """unpair_device clears the owner (device_unpaired to the former owner); a second run says so."""
    user = make_user("owner@example.com")
    device, _ = make_device("wimz_robot_01", owner=user)
    assert "unpaired" in run("unpair_device", "wimz_robot_01")[0]
    device.refresh_from_db()
    assert device.owner is None and device.paired_at is None
    assert heard == [
        ("device_unpaired", {"device_id": "wimz_robot_01", "device_pk": device.pk, "former_owner_id": user.pk})
    ]
    assert "has no owner" in run("unpair_device", "wimz_robot_01")[0]


@pytest.mark.parametrize("command", ["deactivate_device", "reactivate_device", "unpair_device"])
def test_unknown_device_is_a_command_error(command):
    """An unknown id stops with a CommandError naming it."""
    with pytest.raises(CommandError, match="No device 'ghost'"):
        run(command, "ghost")
