"""The devices REST API: the owner's devices, pairing, unpairing, compat aliases, the robot's signed request."""

import json
import re
import time
from datetime import datetime, timedelta

import pytest

from devices import pairing
from devices.models import Device, PairingCode, UsedSignature

pytestmark = pytest.mark.django_db

DEVICE_KEYS = {"device_id", "name", "is_online", "last_seen", "paired_at", "firmware_version", "capabilities"}
COMPAT_KEYS = {"device_id", "name", "is_online", "last_seen", "paired_at"}
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


@pytest.fixture
def u1(make_user):
    return make_user("u1@example.com")


@pytest.fixture
def u2(make_user):
    return make_user("u2@example.com")


def code_for(device):
    return pairing.pairing_code_issue(device=device).code


def test_list_devices_shape_and_presence(u1, make_device, client_for, set_online, django_assert_max_num_queries):
    """`GET /api/devices` lists the user's active devices with `is_online` from presence, in a fixed query count."""
    online, _ = make_device("r_online", owner=u1, firmware_version="1.2.3", capabilities=["video"])
    make_device("r_offline", owner=u1)
    make_device("r_inactive", owner=u1, is_active=False)
    make_device("r_not_mine")
    for i in range(5):
        make_device(f"r_extra_{i}", owner=u1)
    set_online(online)
    client = client_for(u1)
    with django_assert_max_num_queries(3):  # user (JWT) + devices + presence, whatever the number of devices
        r = client.get("/api/devices")
    assert r.status_code == 200
    body = r.json()
    assert [d["device_id"] for d in body] == [
        "r_extra_0",
        "r_extra_1",
        "r_extra_2",
        "r_extra_3",
        "r_extra_4",
        "r_offline",
        "r_online",
    ]
    by_id = {d["device_id"]: d for d in body}
    assert set(by_id["r_online"]) == DEVICE_KEYS
    assert by_id["r_online"]["is_online"] is True
    assert by_id["r_online"]["firmware_version"] == "1.2.3"
    assert by_id["r_online"]["capabilities"] == ["video"]
    assert by_id["r_offline"]["is_online"] is False
    assert by_id["r_offline"]["last_seen"] is None


def test_unauthenticated_requests_are_401(api):
    """Every owner endpoint needs a JWT: 401 with a code."""
    for method, url in [
        ("get", "/api/devices"),
        ("get", "/api/devices/x"),
        ("post", "/api/devices/pair"),
        ("post", "/api/devices/x/unpair"),
        ("get", "/api/user/devices"),
        ("post", "/api/user/pair-device"),
        ("post", "/api/user/unpair-device"),
    ]:
        r = getattr(api, method)(url)
        assert r.status_code == 401, url
        assert r.json()["code"] == "not_authenticated"


def test_detail_and_rename(u1, make_device, client_for):
    """`GET` and `PATCH {"name"}` on `/api/devices/<id>` answer the device; timestamps are ISO 8601 UTC."""
    make_device("wimz_robot_01", owner=u1)
    client = client_for(u1)
    r = client.patch("/api/devices/wimz_robot_01", {"name": "Kitchen"})
    assert r.status_code == 200
    assert r.json()["name"] == "Kitchen"
    assert Device.objects.get(device_id="wimz_robot_01").name == "Kitchen"
    r = client.get("/api/devices/wimz_robot_01")
    assert set(r.json()) == DEVICE_KEYS
    assert r.json()["name"] == "Kitchen"
    assert r.json()["paired_at"] is None
    assert client.patch("/api/devices/wimz_robot_01", {"name": "x" * 101}).status_code == 400


def test_other_users_device_is_404_like_a_missing_one(u1, u2, make_device, client_for):
    """Another user's device answers the same 404 `not_found` as an unknown or malformed id (read, rename, unpair)."""
    device, _ = make_device("wimz_robot_01", owner=u1, name="Mine")
    client = client_for(u2)
    bodies = set()
    for device_id in ["wimz_robot_01", "no_such_robot", "bad id!"]:
        for method, url, data in [
            ("get", f"/api/devices/{device_id}", None),
            ("patch", f"/api/devices/{device_id}", {"name": "Stolen"}),
            ("post", f"/api/devices/{device_id}/unpair", None),
        ]:
            r = getattr(client, method)(url, data)
            assert r.status_code == 404, (method, url)
            assert r.json()["code"] == "not_found"
            bodies.add(json.dumps(r.json(), sort_keys=True))
        r = client.post("/api/user/unpair-device", {"device_id": device_id})
        assert r.status_code == 404
        bodies.add(json.dumps(r.json(), sort_keys=True))
    assert len(bodies) == 1
    device.refresh_from_db()
    assert device.owner == u1 and device.name == "Mine"


def test_pair_endpoint(u1, make_device, client_for):
    """`POST /api/devices/pair {"pairing_code","name"}` answers 201 with the device, now owned by the user."""
    device, _ = make_device()
    r = client_for(u1).post("/api/devices/pair", {"pairing_code": code_for(device), "name": "Rex"})
    assert r.status_code == 201, r.content
    body = r.json()
    assert set(body) == DEVICE_KEYS
    assert body["device_id"] == device.device_id and body["name"] == "Rex"
    assert ISO_UTC.match(body["paired_at"])
    assert Device.objects.get(pk=device.pk).owner == u1


def test_wrong_and_expired_codes_are_indistinguishable(u1, make_device, client_for):
    """Unknown, malformed, expired and spent codes all answer the same 400 `invalid_pairing_code` body."""
    device, _ = make_device()
    expired = PairingCode.objects.create(
        code="ABCDEFGH", device=device, expires_at=datetime.now().astimezone() - timedelta(seconds=1)
    )
    spent = code_for(device)
    client = client_for(u1)
    assert client.post("/api/devices/pair", {"pairing_code": spent}).status_code == 201
    bodies = []
    for code in ["ZZZZZZZZ", "nope", expired.code, spent, "0000-0000"]:
        r = client.post("/api/devices/pair", {"pairing_code": code})
        assert r.status_code == 400, code
        bodies.append(r.json())
    assert bodies[0]["code"] == "invalid_pairing_code"
    assert all(b == bodies[0] for b in bodies)
    assert device.device_id not in json.dumps(bodies)


def test_pair_device_owned_by_other_user_is_409(u1, u2, make_device, client_for):
    """A valid code for u1's robot answers 409 `device_owned` to u2; owner unchanged, code unused."""
    device, _ = make_device(owner=u1)
    code = code_for(device)
    r = client_for(u2).post("/api/devices/pair", {"pairing_code": code})
    assert r.status_code == 409
    assert r.json()["code"] == "device_owned"
    assert Device.objects.get(pk=device.pk).owner == u1
    assert PairingCode.objects.get(code=code).used_at is None


@pytest.mark.parametrize("url", ["/api/devices/pair", "/api/user/pair-device"])
@pytest.mark.parametrize("body", [{"device_id": "wimz_robot_01"}, {}, {"device_id": "wimz_robot_01", "code": ""}])
def test_device_id_alone_never_pairs(u1, make_device, client_for, url, body):
    """A body with a device_id but no pairing code answers 400 `pairing_code_required` saying a code is needed."""
    make_device("wimz_robot_01")
    r = client_for(u1).post(url, body)
    assert r.status_code == 400
    assert r.json()["code"] == "pairing_code_required"
    assert "pairing code is required" in r.json()["detail"]
    assert Device.objects.get(device_id="wimz_robot_01").owner is None


def test_compat_devices_list_shape(u1, make_device, client_for, set_online):
    """compat `GET /api/user/devices` answers `{"devices":[{device_id,name,is_online,last_seen,paired_at}]}`."""
    device, _ = make_device(owner=u1, name="Rex")
    set_online(device)
    r = client_for(u1).get("/api/user/devices")
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"devices"}
    assert len(body["devices"]) == 1
    assert set(body["devices"][0]) == COMPAT_KEYS
    assert body["devices"][0]["is_online"] is True
    assert body["devices"][0]["name"] == "Rex"


@pytest.mark.parametrize("key", ["pairing_code", "code"])
def test_compat_pair_device(u1, make_device, client_for, key):
    """compat `POST /api/user/pair-device` takes `pairing_code` (or `code`) and answers 200 `{"success","device"}`."""
    device, _ = make_device()
    r = client_for(u1).post("/api/user/pair-device", {key: code_for(device)})
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["success"] is True
    assert set(body["device"]) == COMPAT_KEYS
    assert body["device"]["device_id"] == device.device_id


def test_unpair_and_compat_unpair(u1, make_device, client_for):
    """`POST /api/devices/<id>/unpair` and compat `POST /api/user/unpair-device` answer the unpaired status."""
    make_device("r1", owner=u1)
    make_device("r2", owner=u1)
    client = client_for(u1)
    r = client.post("/api/devices/r1/unpair")
    assert r.status_code == 200
    assert r.json() == {"device_id": "r1", "status": "unpaired"}
    r = client.post("/api/user/unpair-device", {"device_id": "r2"})
    assert r.status_code == 200
    assert r.json() == {"success": True, "device_id": "r2", "status": "unpaired"}
    assert not Device.objects.filter(owner=u1).exists()
    assert client.get("/api/devices").json() == []
    assert client.post("/api/devices/r1/unpair").status_code == 404


def test_robot_signed_pairing_code_request(u1, make_device, api, robot_headers, client_for, settings):
    """A robot's signed request answers 201 `{"pairing_code","expires_at","expires_in"}`; the code pairs it."""
    device, secret = make_device()
    r = api.post("/api/devices/pairing-code", **robot_headers(device.device_id, secret))
    assert r.status_code == 201, r.content
    body = r.json()
    assert set(body) == {"pairing_code", "expires_at", "expires_in"}
    assert re.fullmatch(r"[23456789ABCDEFGHJKMNPQRSTUVWXYZ]{8}", body["pairing_code"])
    assert ISO_UTC.match(body["expires_at"])
    assert settings.WIMZ_PAIRING_CODE_TTL - 5 <= body["expires_in"] <= settings.WIMZ_PAIRING_CODE_TTL
    r = client_for(u1).post("/api/devices/pair", {"pairing_code": body["pairing_code"].lower()})
    assert r.status_code == 201


def test_robot_pairing_code_rejections_are_one_403(make_device, api, robot_headers):
    """Bad signature, stale or future timestamp (30 s past the ±300 s window: the test must not race the
    clock), replay, unknown, inactive or missing headers: one 403 body."""
    device, secret = make_device()
    inactive, inactive_secret = make_device("r_inactive", is_active=False)
    now = int(time.time())
    good = robot_headers(device.device_id, secret, now)
    assert api.post("/api/devices/pairing-code", **good).status_code == 201
    cases = {
        "replay": good,
        "bad signature": robot_headers(device.device_id, "0" * 64, now),
        "other device's secret": robot_headers(device.device_id, inactive_secret, now + 1),
        "stale": robot_headers(device.device_id, secret, now - 330),
        "future": robot_headers(device.device_id, secret, now + 330),
        "unknown device": robot_headers("no_such_robot", secret, now),
        "inactive device": robot_headers(inactive.device_id, inactive_secret, now),
        "missing headers": {},
        "garbage timestamp": {**robot_headers(device.device_id, secret, now + 2), "HTTP_X_TIMESTAMP": "soon"},
        "bad device id": robot_headers("робот", secret, now),
        "non-ASCII signature": {**robot_headers(device.device_id, secret, now + 3), "HTTP_X_SIGNATURE": "é" * 64},
    }
    bodies = set()
    for name, headers in cases.items():
        r = api.post("/api/devices/pairing-code", **headers)
        assert r.status_code == 403, name
        bodies.add(json.dumps(r.json(), sort_keys=True))
    assert len(bodies) == 1
    assert json.loads(bodies.pop())["code"] == "device_auth_failed"
    assert PairingCode.objects.filter(device=device).count() == 1
    assert UsedSignature.objects.count() == 1


def test_robot_code_request_expires_previous_robot_code(make_device, api, robot_headers, u1, client_for):
    """Each signed request issues a new code; the robot's previous code stops working."""
    device, secret = make_device()
    now = int(time.time())
    first = api.post("/api/devices/pairing-code", **robot_headers(device.device_id, secret, now)).json()
    second = api.post("/api/devices/pairing-code", **robot_headers(device.device_id, secret, now + 1)).json()
    assert first["pairing_code"] != second["pairing_code"]
    client = client_for(u1)
    assert client.post("/api/devices/pair", {"pairing_code": first["pairing_code"]}).status_code == 400
    assert client.post("/api/devices/pair", {"pairing_code": second["pairing_code"]}).status_code == 201


def test_secret_never_appears_in_any_api_response(u1, make_device, client_for, api, robot_headers, set_online):
    """Across every devices endpoint (success and error answers) the device secret never appears in a body."""
    device, secret = make_device(owner=None)
    _, other_secret = make_device("r_other", owner=None)
    set_online(device)
    client = client_for(u1)
    now = int(time.time())
    bodies = []

    def record(response):
        bodies.append(response.content.decode())
        return response

    code = record(api.post("/api/devices/pairing-code", **robot_headers(device.device_id, secret, now))).json()
    record(api.post("/api/devices/pairing-code", **robot_headers(device.device_id, "f" * 64, now)))
    record(client.post("/api/devices/pair", {"pairing_code": code["pairing_code"]}))
    record(client.post("/api/devices/pair", {"pairing_code": "ZZZZZZZZ"}))
    record(client.post("/api/user/pair-device", {"device_id": device.device_id}))
    record(client.get("/api/devices"))
    record(client.get(f"/api/devices/{device.device_id}"))
    record(client.patch(f"/api/devices/{device.device_id}", {"name": "n"}))
    record(client.get("/api/user/devices"))
    record(client.get("/api/devices/r_other"))
    record(client.post("/api/user/unpair-device", {"device_id": device.device_id}))
    record(client.get("/api/schema/"))
    blob = "\n".join(bodies)
    assert secret not in blob and other_secret not in blob
    assert secret[:16] not in blob
    assert '"secret"' not in blob


def test_pair_name_is_validated(u1, make_device, client_for):
    """A pair body with a name over 100 characters answers 400 `invalid` and leaves the device unpaired."""
    device, _ = make_device()
    r = client_for(u1).post("/api/devices/pair", {"pairing_code": code_for(device), "name": "x" * 101})
    assert r.status_code == 400
    assert r.json()["code"] == "invalid"
    assert Device.objects.get(pk=device.pk).owner is None
