"""Robot authentication on `/ws/device` and compat `/ws` (docs/protocol.md §4)."""

import logging
import time
from urllib.parse import urlencode

from sim.client import sign
from tests.relay import flows
from tests.relay.flows import R1
from tests.support import asgi as ws
from tests.support.signing import signed

pytestmark = flows.RELAY_DB


async def refused(path, headers=None):
    comm, accepted = await ws.connect(path, headers)
    await ws.close(comm)
    return not accepted


async def refusal(path, headers=None):
    """How a handshake was answered: (accepted, close code) — what the client can tell apart."""
    comm = ws.WebsocketCommunicator(ws.application, path, headers=headers or [])
    result = await comm.connect(timeout=ws.TIMEOUT)
    await ws.close(comm)
    return result


def query(device_id, secret, ts=None, sig=None):
    return "/ws/device?" + signed(device_id, secret, ts, sig=sig or None).query()


async def test_signed_headers_are_accepted(world):
    """`X-Device-ID`/`X-Timestamp`/`X-Signature` headers, as deployed robots send them, are accepted."""
    comm, accepted = await ws.connect("/ws/device", ws.robot_headers(R1, world.r1_secret))
    assert accepted
    await ws.ping_ok(comm)
    await ws.close(comm)


async def test_signed_query_parameters_are_accepted(world):
    """The same values as `?device_id=…&ts=…&sig=…` are accepted."""
    comm, accepted = await ws.connect(query(R1, world.r1_secret))
    assert accepted
    await ws.ping_ok(comm)
    await ws.close(comm)


async def test_timestamp_within_the_skew_window_is_accepted_both_ways(world):
    """A robot clock up to the skew (default ±300 s) behind or ahead of the server is accepted."""
    now = int(time.time())
    for ts in (now - 290, now + 290):
        comm, accepted = await ws.connect("/ws/device", ws.robot_headers(R1, world.r1_secret, ts))
        assert accepted, ts
        await ws.close(comm)


async def test_timestamp_outside_the_skew_window_is_refused_both_ways(world):
    """A timestamp more than the skew away from server time (stale or future) is refused."""
    now = int(time.time())
    for ts in (now - 310, now + 310, 0):
        assert await refused("/ws/device", ws.robot_headers(R1, world.r1_secret, ts)), ts


async def test_skew_window_is_configurable(world, settings):
    """`WIMZ_DEVICE_AUTH_SKEW` sets the window: with 5 s, a 30 s old timestamp is refused."""
    settings.WIMZ_DEVICE_AUTH_SKEW = 5
    assert await refused("/ws/device", ws.robot_headers(R1, world.r1_secret, int(time.time()) - 30))
    comm, accepted = await ws.connect("/ws/device", ws.robot_headers(R1, world.r1_secret))
    assert accepted
    await ws.close(comm)


async def test_replayed_handshake_is_refused(world):
    """A (device_id, timestamp, signature) triple is accepted once; the same handshake again is refused."""
    headers = ws.robot_headers(R1, world.r1_secret)
    comm, accepted = await ws.connect("/ws/device", headers)
    assert accepted
    await ws.close(comm)
    assert await refused("/ws/device", headers)
    # The same triple through the query string is the same replay.
    ts = int(headers[1][1])
    assert await refused(query(R1, world.r1_secret, ts))


async def test_every_failure_is_refused_the_same_way(world):
    """Bad signature, wrong secret, unknown device, stale timestamp, missing or malformed parts: all are
    refused at the handshake identically, saying nothing about which part failed."""
    now = int(time.time())
    good = sign(world.r1_secret, R1, now)
    cases = {
        "bad signature": [
            (b"x-device-id", R1.encode()),
            (b"x-timestamp", str(now).encode()),
            (b"x-signature", ("0" * 64).encode()),
        ],
        "other robot's secret": ws.robot_headers(R1, world.r2_secret, now),
        "unknown device": ws.robot_headers("wimz_robot_99", world.r1_secret, now),
        "stale": ws.robot_headers(R1, world.r1_secret, now - 3600),
        "no headers": [],
        "missing signature": [(b"x-device-id", R1.encode()), (b"x-timestamp", str(now).encode())],
        "missing timestamp": [(b"x-device-id", R1.encode()), (b"x-signature", good.encode())],
        "non-numeric timestamp": [
            (b"x-device-id", R1.encode()),
            (b"x-timestamp", b"yesterday"),
            (b"x-signature", good.encode()),
        ],
        "device id out of alphabet": ws.robot_headers("wimz robot/01", world.r1_secret, now),
        "device id too long": ws.robot_headers("r" * 65, world.r1_secret, now),
        "signature of another id": [
            (b"x-device-id", b"wimz_robot_02"),
            (b"x-timestamp", str(now).encode()),
            (b"x-signature", good.encode()),
        ],
    }
    answers = {name: await refusal("/ws/device", headers) for name, headers in cases.items()}
    assert set(answers.values()) == {(False, 1000)}, answers
    assert await flows.connection_rows(role="robot") == []


async def test_non_ascii_signature_header_is_refused_not_crashed(world, caplog):
    """Latin-1 header bytes in `X-Signature` (64 of them) are refused like any bad signature: no
    exception escapes the handshake (an escaping exception is a 500 under daphne, field report F6)."""
    caplog.set_level(logging.INFO)
    now = int(time.time())
    for sig in (b"\xe9" * 64, "ж".encode() * 32):
        headers = [(b"x-device-id", R1.encode()), (b"x-timestamp", str(now).encode()), (b"x-signature", sig)]
        assert await refusal("/ws/device", headers) == (False, 1000)
    assert await refusal("/ws/device?" + urlencode({"device_id": R1, "ts": now, "sig": "é" * 64})) == (False, 1000)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


async def test_device_id_in_non_ascii_header_is_refused(world):
    """A `device_id` outside the alphabet (e.g. "робот-1" as UTF-8 bytes) is refused, not an error."""
    now = int(time.time())
    headers = [
        (b"x-device-id", "робот-1".encode()),
        (b"x-timestamp", str(now).encode()),
        (b"x-signature", sign(world.r1_secret, "робот-1", now).encode()),
    ]
    assert await refusal("/ws/device", headers) == (False, 1000)


async def test_inactive_device_is_refused(world):
    """A deactivated device's signature is refused."""
    from channels.db import database_sync_to_async

    from devices.models import Device

    await database_sync_to_async(Device.objects.filter(device_id=R1).update)(is_active=False)
    assert await refused("/ws/device", ws.robot_headers(R1, world.r1_secret))


async def test_secret_and_signature_never_reach_a_log_line(world, caplog):
    """Neither the device secret nor a signature appears in any log record, accepted or refused."""
    caplog.set_level(logging.DEBUG)
    now = int(time.time())
    headers = ws.robot_headers(R1, world.r1_secret, now)
    comm, accepted = await ws.connect("/ws/device", headers)
    assert accepted
    await ws.close(comm)
    await refused("/ws/device", headers)  # replay
    await refused(query(R1, world.r2_secret, now))
    secrets_seen = [world.r1_secret, world.r2_secret, headers[2][1].decode(), sign(world.r2_secret, R1, now)]
    for record in caplog.records:
        text = record.getMessage() + (record.exc_text or "")
        assert not any(s in text for s in secrets_seen), text


async def test_no_origin_header_is_accepted(world):
    """Robots send no `Origin` header and must be accepted (the communicator sends none)."""
    comm, accepted = await ws.connect("/ws/device", ws.robot_headers(R1, world.r1_secret))
    assert accepted
    await ws.close(comm)


async def test_browser_origin_outside_the_allowlist_is_refused(world, settings):
    """A browser `Origin` must be in the allowlist: an unknown origin is refused even with a valid signature."""
    settings.WIMZ_ALLOWED_ORIGINS = ["https://app.wimz.example"]
    headers = [*ws.robot_headers(R1, world.r1_secret), (b"origin", b"https://evil.example")]
    assert await refusal("/ws/device", headers) == (False, 1000)


async def test_browser_origin_in_the_allowlist_is_accepted(world, settings):
    """An `Origin` listed in `WIMZ_ALLOWED_ORIGINS` is accepted."""
    settings.WIMZ_ALLOWED_ORIGINS = ["https://app.wimz.example"]
    headers = [*ws.robot_headers(R1, world.r1_secret), (b"origin", b"https://app.wimz.example")]
    comm, accepted = await ws.connect("/ws/device", headers)
    assert accepted
    await ws.close(comm)


async def test_robot_is_online_from_the_handshake_without_hello(world):
    """Online means the handshake was accepted: the owner's app sees `online` and can open a session
    without the robot ever sending `hello`."""
    app = await ws.app(world.t1)
    snapshot = await ws.recv(app)
    assert snapshot["device_id"] == R1 and snapshot["online"] is False
    robot = await ws.robot(R1, world.r1_secret)
    status = await ws.recv(app)
    assert status["type"] == "device_status" and status["device_id"] == R1
    assert status["status"] == "online" and status["online"] is True
    assert flows.is_iso_utc(status["last_seen"])
    await flows.open_session(app, robot)
    await ws.close(robot, app)


async def test_robot_disconnect_tells_the_owner_offline(world):
    """When the robot's socket closes, the owner's apps get `device_status` offline with `last_seen`."""
    robot, app = await flows.robot_app(world)
    await robot.disconnect()
    status = await ws.recv(app)
    assert status["type"] == "device_status" and status["device_id"] == R1
    assert status["status"] == "offline" and status["online"] is False
    assert flows.is_iso_utc(status["last_seen"])
    await ws.close(app)


async def test_second_connection_replaces_the_first_with_4009(world):
    """A second connection for the same `device_id` is accepted and the first is closed with 4009."""
    s1 = await ws.robot(R1, world.r1_secret)
    s2 = await ws.robot(R1, world.r1_secret)
    await flows.expect_close(s1, 4009)
    await ws.ping_ok(s2)
    await ws.close(s1, s2)


async def test_replacement_ends_old_sessions_superseded_and_tells_the_new_socket_nothing(world):
    """The replaced socket's sessions end with `superseded` at their apps; the new socket gets nothing."""
    s1, app = await flows.robot_app(world)
    session_id, _, _ = await flows.open_session(app, s1)
    s2 = await ws.robot(R1, world.r1_secret)
    assert await ws.recv_type(app, "webrtc_close") == flows.close_frame(session_id, "superseded")
    await flows.expect_close(s1, 4009)
    assert await ws.nothing(s2)
    row = await flows.session_row(session_id)
    assert row.end_reason == "superseded" and row.ended_at is not None
    await ws.close(s1, s2, app)


async def test_hello_is_optional_and_records_capabilities(world):
    """`hello` records capabilities and firmware; it is not forwarded to the apps."""
    from channels.db import database_sync_to_async

    from devices.models import Device

    robot, app = await flows.robot_app(world)
    await ws.send(
        robot,
        {"type": "hello", "device_id": R1, "capabilities": ["video", "audio", "commands"], "firmware_version": "2.4.1"},
    )
    await ws.ping_ok(robot)
    assert await ws.nothing(app)
    device = await database_sync_to_async(Device.objects.get)(device_id=R1)
    assert device.capabilities == ["video", "audio", "commands"] and device.firmware_version == "2.4.1"
    await ws.close(robot, app)


async def test_compat_ws_in_band_robot_auth_succeeds(world):
    """Compat `/ws`: `{"type":"auth","device_id","timestamp","token":<signature>}` answers
    `auth_result` success and the socket then behaves as `/ws/device` (its events reach the owner)."""
    app = await ws.app(world.t1, drain_status=1)
    comm, accepted = await ws.connect("/ws")
    assert accepted
    now = int(time.time())
    await ws.send(comm, {"type": "auth", "device_id": R1, "timestamp": now, "token": sign(world.r1_secret, R1, now)})
    result = await ws.recv(comm)
    assert result["type"] == "auth_result" and result["success"] is True and "message" in result
    status = await ws.recv(app)
    assert status["type"] == "device_status" and status["online"] is True
    await ws.send(comm, {"type": "status_update", "battery": 50})
    event = await ws.recv(app)
    assert event["type"] == "status_update" and event["device_id"] == R1 and event["battery"] == 50
    await ws.close(comm, app)


async def test_compat_ws_in_band_robot_auth_failure_answers_auth_result_false(world):
    """Compat `/ws`: a bad in-band signature answers `auth_result` success false and the socket closes."""
    comm, accepted = await ws.connect("/ws")
    assert accepted
    now = int(time.time())
    await ws.send(comm, {"type": "auth", "device_id": R1, "timestamp": now, "token": "0" * 64})
    result = await ws.recv(comm)
    assert result["type"] == "auth_result" and result["success"] is False and "message" in result
    await flows.expect_close(comm, 4003)
    await ws.close(comm)


async def test_compat_ws_in_band_robot_auth_with_non_ascii_token_is_a_failure_not_internal(world, caplog):
    """A non-ASCII 64-character signature in the in-band `auth` frame is an ordinary auth failure
    (`auth_result` false), never INTERNAL nor a logged traceback."""
    comm, accepted = await ws.connect("/ws")
    assert accepted
    now = int(time.time())
    await ws.send(comm, {"type": "auth", "device_id": R1, "timestamp": now, "token": "ж" * 64})
    result = await ws.recv(comm)
    assert result["type"] == "auth_result" and result["success"] is False
    assert not [r for r in caplog.records if r.exc_info]
    await ws.close(comm)


async def test_compat_ws_frames_before_auth_are_refused(world):
    """Compat `/ws`: anything but `auth` (or `ping`) before authentication does not reach anyone."""
    app = await ws.app(world.t1, drain_status=1)
    comm, accepted = await ws.connect("/ws")
    assert accepted
    await ws.ping_ok(comm)
    await ws.send(comm, {"type": "status_update", "device_id": R1})
    frame = await ws.recv(comm)
    assert frame["type"] == "error"
    assert await ws.nothing(app)
    await ws.close(comm, app)


async def test_refused_robot_handshakes_name_the_device_and_the_failed_check_in_the_log(world, caplog):
    """The robot gets the same bare refusal whatever failed; the operator's log line names the device id
    and the check (so support can help a robot that cannot log in), never the signature or secret."""
    caplog.set_level(logging.INFO, logger="relay.consumers")
    now = int(time.time())
    cases = {
        "bad_signature": signed(R1, "0" * 64, now).asgi_headers(),
        "timestamp_out_of_window": signed(R1, world.r1_secret, now - 3600).asgi_headers(),
        "unknown_or_inactive_device": signed("wimz_robot_99", world.r1_secret, now).asgi_headers(),
        "malformed_signature": signed(R1, world.r1_secret, now, sig="abc").asgi_headers(),
    }
    answers = set()
    for reason, headers in cases.items():
        caplog.clear()
        answers.add(await refusal("/ws/device", headers))
        lines = [r.getMessage() for r in caplog.records if "robot handshake refused" in r.getMessage()]
        device = "wimz_robot_99" if reason == "unknown_or_inactive_device" else R1
        assert lines == [f"robot handshake refused: device {device}, {reason}"], lines
        signature = dict(headers)[b"x-signature"].decode()
        assert all(signature not in r.getMessage() and world.r1_secret not in r.getMessage() for r in caplog.records)
    assert len(answers) == 1 and not next(iter(answers))[0]  # one bare refusal: the client cannot tell them apart
