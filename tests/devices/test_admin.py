"""Device and pairing-code admin: presence column, search, filters, once-shown secrets, actions."""

import pytest
from django.contrib.messages import get_messages

from devices.models import Device, PairingCode

pytestmark = pytest.mark.django_db


def test_changelist_shows_presence_with_constant_queries(
    admin_client, make_device, make_user, set_online, django_assert_max_num_queries
):
    """The device list shows owner and online state; presence costs one query for the whole page."""
    owner = make_user("owner@example.com")
    for i in range(10):
        device, _ = make_device(f"r{i:02d}", owner=owner if i % 2 else None, firmware_version="1.0")
        if i < 3:
            set_online(device)
    with django_assert_max_num_queries(12):
        r = admin_client.get("/admin/devices/device/")
    assert r.status_code == 200
    assert r.content.count(b'alt="True"') == 13  # 10 active + 3 online
    for params in [
        {"q": "owner@example"},
        {"is_active__exact": "1"},
        {"has_owner": "yes"},
        {"has_owner": "no"},
        {"firmware_version": "1.0"},
    ]:
        assert admin_client.get("/admin/devices/device/", params).status_code == 200
    r = admin_client.get("/admin/devices/device/", {"q": "owner@example"})
    assert b"r01" in r.content and b"r00" not in r.content


def test_change_form_never_shows_the_secret(admin_client, make_device):
    """The device change page contains no trace of the secret."""
    device, secret = make_device()
    r = admin_client.get(f"/admin/devices/device/{device.pk}/change/")
    assert r.status_code == 200
    assert secret.encode() not in r.content
    assert b"secret" not in r.content.lower().replace(b"rotate secret", b"")


def test_rotate_action_shows_new_secret_once(admin_client, make_device):
    """The "rotate secret" action changes the secret and shows the new one in a message."""
    device, old = make_device()
    r = admin_client.post(
        "/admin/devices/device/", {"action": "rotate_secret", "_selected_action": [device.pk]}, follow=True
    )
    device.refresh_from_db()
    new = device.reveal_secret()
    assert new != old
    assert any(new in str(m) for m in get_messages(r.wsgi_request)) or new.encode() in r.content


def test_deactivate_action(admin_client, make_device):
    """The "deactivate" action marks devices inactive."""
    device, _ = make_device()
    admin_client.post("/admin/devices/device/", {"action": "deactivate", "_selected_action": [device.pk]})
    device.refresh_from_db()
    assert device.is_active is False


def test_admin_add_generates_secret_and_code(admin_client):
    """Adding a device in admin gives it a generated secret and a provisioning code, shown once."""
    r = admin_client.post(
        "/admin/devices/device/add/", {"device_id": "added_01", "name": "", "is_active": "on"}, follow=True
    )
    assert r.status_code == 200
    device = Device.objects.get(device_id="added_01")
    assert len(device.reveal_secret()) == 64
    assert device.reveal_secret().encode() in r.content
    assert PairingCode.objects.filter(device=device, kind=PairingCode.Kind.PROVISIONING).exists()


def test_new_secrets_never_travel_in_a_cookie(admin_client):
    """The secret shown once after "add" and "rotate secret" is rendered from the server-side session:
    no Set-Cookie of any response carries it (the messages cookie is signed, not encrypted)."""
    r = admin_client.post("/admin/devices/device/add/", {"device_id": "added_02", "name": "", "is_active": "on"})
    device = Device.objects.get(device_id="added_02")
    cookies = [r.cookies.output()]
    page = admin_client.get(r["Location"])
    cookies.append(page.cookies.output())
    assert device.reveal_secret().encode() in page.content  # shown once, on the page
    r = admin_client.post("/admin/devices/device/", {"action": "rotate_secret", "_selected_action": [device.pk]})
    cookies.append(r.cookies.output())
    page = admin_client.get(r["Location"])
    cookies.append(page.cookies.output())
    device.refresh_from_db()
    assert device.reveal_secret().encode() in page.content
    assert "messages" not in "".join(cookies)
    for value in admin_client.cookies.values():
        assert device.reveal_secret() not in value.value


@pytest.mark.parametrize("device_id", ["bad id", ".", ".."])
def test_admin_add_refuses_bad_device_id(admin_client, device_id):
    """The admin form applies protocol.md's device_id rule (alphabet, and no dot-segment)."""
    r = admin_client.post("/admin/devices/device/add/", {"device_id": device_id, "is_active": "on"})
    assert r.status_code == 200  # form redisplayed with the error
    assert b"not . or .." in r.content
    assert not Device.objects.exists()


def test_pairing_code_admin_is_read_only(admin_client, make_device):
    """Pairing codes are listed with their state and cannot be added or edited."""
    device, _ = make_device()
    from devices import pairing

    code = pairing.pairing_code_issue(device=device)
    r = admin_client.get("/admin/devices/pairingcode/")
    assert r.status_code == 200 and b"live" in r.content
    assert admin_client.get("/admin/devices/pairingcode/add/").status_code == 403
    assert admin_client.get(f"/admin/devices/pairingcode/{code.pk}/change/").status_code == 200
    r = admin_client.post(f"/admin/devices/pairingcode/{code.pk}/change/", {"code": "ZZZZZZZZ"})
    assert r.status_code == 403


def test_unpair_action_and_owner_read_only(admin_client, make_device, make_user):
    """The owner is read-only on the change form; the "unpair" action removes it through the service."""
    owner = make_user("owner@example.com")
    device, _ = make_device(owner=owner)
    other = make_user("other@example.com")
    admin_client.post(
        f"/admin/devices/device/{device.pk}/change/", {"name": "renamed", "owner": other.pk, "is_active": "on"}
    )
    device.refresh_from_db()
    assert device.owner == owner and device.name == "renamed"
    admin_client.post("/admin/devices/device/", {"action": "unpair", "_selected_action": [device.pk]})
    device.refresh_from_db()
    assert device.owner is None and device.paired_at is None


def test_unticking_active_in_the_device_form_deactivates_through_the_service(make_device, rf, monkeypatch):
    """Saving the change form with "active" unticked runs `device_deactivate` (socket closed, codes
    expired), exactly as the "Deactivate" action does."""
    from types import SimpleNamespace

    from django.contrib.admin.sites import site

    from devices import services
    from devices.models import Device

    device, _ = make_device("wimz_form_01")
    calls = []
    monkeypatch.setattr(services, "device_deactivate", lambda *, device: calls.append(device.device_id))
    device.is_active = False
    site._registry[Device].save_model(rf.post("/"), device, SimpleNamespace(changed_data=["is_active"]), True)
    assert calls == ["wimz_form_01"]


def test_every_device_action_is_recorded_in_the_admin_log(admin_client, admin_user, make_device, make_user):
    """rotate, unpair, deactivate, reactivate: each leaves a LogEntry naming the staff user, the device
    and what was done (Django's admin log: who and when)."""
    from django.contrib.admin.models import LogEntry

    owner = make_user("owner@example.com")
    device, secret = make_device(owner=owner)
    for action in ("rotate_secret", "unpair", "deactivate", "reactivate"):
        admin_client.post("/admin/devices/device/", {"action": action, "_selected_action": [device.pk]})
    entries = list(LogEntry.objects.filter(object_id=str(device.pk)).order_by("pk"))
    assert [e.get_change_message() for e in entries] == [
        "Rotated the secret (admin action).",
        "Unpaired from owner@example.com (admin action).",
        "Deactivated (admin action).",
        "Reactivated (admin action).",
    ]
    assert {e.user_id for e in entries} == {admin_user.pk} and all(e.action_time for e in entries)
    device.refresh_from_db()
    assert device.is_active and device.owner is None
    new = device.reveal_secret()
    assert all(new not in e.get_change_message() and secret not in e.get_change_message() for e in entries)


def test_reactivate_action_and_form_go_through_the_service(admin_client, make_device, make_user, monkeypatch):
    """The reactivate action, and ticking "active" in the form, call `device_reactivate` (which tells the
    owner's apps), never a bare field save."""
    from devices import services

    calls = []
    real = services.device_reactivate
    monkeypatch.setattr(
        services, "device_reactivate", lambda *, device: calls.append(device.device_id) or real(device=device)
    )
    owner = make_user("owner@example.com")
    a, _ = make_device("r_a", owner=owner, is_active=False)
    b, _ = make_device("r_b", owner=owner, is_active=False)
    admin_client.post("/admin/devices/device/", {"action": "reactivate", "_selected_action": [a.pk]})
    form = admin_client.get(f"/admin/devices/device/{b.pk}/change/")
    assert form.status_code == 200
    admin_client.post(f"/admin/devices/device/{b.pk}/change/", {"name": "", "is_active": "on", "capabilities": "[]"})
    assert calls == ["r_a", "r_b"]
    assert Device.objects.filter(is_active=True).count() == 2


def test_online_filter(admin_client, make_device, set_online):
    """`?online=yes` lists connected robots only, `?online=no` the others."""
    up, _ = make_device("r_up")
    make_device("r_down")
    set_online(up)
    yes = admin_client.get("/admin/devices/device/", {"online": "yes"}).content
    no = admin_client.get("/admin/devices/device/", {"online": "no"}).content
    assert b"r_up" in yes and b"r_down" not in yes
    assert b"r_down" in no and b"r_up" not in no


def test_admin_times_show_seconds_and_zone(admin_client, make_device):
    """Times in the admin read `2026-01-01 12:34:56 UTC`, not `Jan. 1, 2026, 12:34 p.m.`."""
    import datetime

    make_device("r_seen", last_seen=datetime.datetime(2026, 1, 1, 12, 34, 56, tzinfo=datetime.UTC))
    assert b"2026-01-01 12:34:56 UTC" in admin_client.get("/admin/devices/device/").content
