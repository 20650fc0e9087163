"""Every error code of docs/protocol.md §15, from the side(s) that can cause it; the socket stays open
(still answering `ping`) unless the code says otherwise (TOKEN_EXPIRED closes with 4001)."""

import json
import logging
import uuid
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from rest_framework_simplejwt.tokens import AccessToken

from relay import dispatch
from tests.relay import flows
from tests.relay.flows import R1, R2, answer_frame, ice_frame
from tests.support import asgi as ws

pytestmark = flows.RELAY_DB


async def answers(comm, frame, code, ref=None):
    """Send `frame`, expect error `code` (and `ref`), then prove the socket still answers ping."""
    await ws.send(comm, frame)
    error = await flows.expect_error(comm, code, ref=ref)
    await ws.ping_ok(comm)
    return error


# --- BAD_REQUEST ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        "{",
        "[]",
        "42",
        '"ping"',
        json.dumps({"type": 123}),
        json.dumps({"device_id": R1}),
        json.dumps({"type": ""}),
    ],
)
async def test_bad_request_for_frames_that_are_not_typed_json_objects(world, frame):
    """Not JSON, not an object, or no string `type` answers BAD_REQUEST to robots and apps alike."""
    robot, app = await flows.robot_app(world)
    await answers(robot, frame, "BAD_REQUEST")
    await answers(app, frame, "BAD_REQUEST")
    assert await ws.nothing(robot, app)
    await ws.close(robot, app)


async def test_bad_request_for_binary_frames(world):
    """Binary frames (garbage or UTF-8 JSON) answer BAD_REQUEST on both sides; the socket stays open."""
    robot, app = await flows.robot_app(world)
    for comm in (robot, app):
        await answers(comm, b"\x00\xff", "BAD_REQUEST")
        await answers(comm, json.dumps({"type": "ping"}).encode(), "BAD_REQUEST")
    await ws.close(robot, app)


async def test_bad_request_for_missing_or_mistyped_fields(world):
    """Missing/mistyped fields answer BAD_REQUEST naming the frame type: session_id, sdp, candidate,
    command, device_id."""
    robot, app = await flows.robot_app(world)
    sid, _, _ = await flows.open_session(app, robot)
    await answers(app, {"type": "webrtc_answer", "sdp": flows.ANSWER}, "BAD_REQUEST", ref="webrtc_answer")
    await answers(app, {"type": "webrtc_answer", "session_id": 7, "sdp": flows.ANSWER}, "BAD_REQUEST")
    await answers(app, {"type": "webrtc_answer", "session_id": sid, "sdp": "v=0"}, "BAD_REQUEST", ref="webrtc_answer")
    await answers(app, {"type": "webrtc_answer", "session_id": sid, "sdp": flows.OFFER}, "BAD_REQUEST")
    await answers(app, {"type": "webrtc_ice", "session_id": sid}, "BAD_REQUEST", ref="webrtc_ice")
    await answers(app, {"type": "webrtc_ice", "session_id": sid, "candidate": "candidate:1"}, "BAD_REQUEST")
    await answers(app, {"type": "command", "device_id": R1}, "BAD_REQUEST", ref="command")
    await answers(app, {"type": "command", "device_id": 5, "command": "x"}, "BAD_REQUEST", ref="command")
    await answers(
        robot, {"type": "webrtc_offer", "session_id": sid, "sdp": {"type": "offer"}}, "BAD_REQUEST", ref="webrtc_offer"
    )
    await answers(robot, {"type": "webrtc_ice", "session_id": sid, "candidate": [1]}, "BAD_REQUEST")
    await answers(robot, {"type": "webrtc_close"}, "BAD_REQUEST", ref="webrtc_close")
    assert await ws.nothing(robot, app)
    await ws.close(robot, app)


async def test_bad_request_for_device_id_outside_the_alphabet(world):
    """A `device_id` such as "робот-1" answers BAD_REQUEST (never an exception, never a lookup)."""
    robot, app = await flows.robot_app(world)
    for device_id in ("робот-1", "x" * 65, "a b", ""):
        await answers(app, {"type": "command", "device_id": device_id, "command": "m"}, "BAD_REQUEST", ref="command")
        await answers(app, {"type": "webrtc_request", "device_id": device_id}, "BAD_REQUEST")
    await answers(robot, {"type": "hello", "device_id": "робот-1"}, "BAD_REQUEST", ref="hello")
    assert await ws.nothing(robot, app)
    await ws.close(robot, app)


# --- UNKNOWN_TYPE -----------------------------------------------------------------------------


async def test_unknown_type_for_reserved_types_out_of_place(world):
    """A reserved type outside the sender's table answers UNKNOWN_TYPE (ref = the type) on both sides."""
    robot, app = await flows.robot_app(world)
    await answers(robot, {"type": "webrtc_request"}, "UNKNOWN_TYPE", ref="webrtc_request")
    await answers(app, {"type": "webrtc_offer", "device_id": R1}, "UNKNOWN_TYPE", ref="webrtc_offer")
    assert await ws.nothing(robot, app)
    await ws.close(robot, app)


# --- NOT_AUTHORIZED / NO_DEVICE / DEVICE_OFFLINE / SESSION_NOT_FOUND ------------------------------


async def test_not_authorized(world):
    """Another user's device or session, or an id that does not exist, answers NOT_AUTHORIZED."""
    robot, app = await flows.robot_app(world)
    await answers(app, {"type": "command", "device_id": R2, "command": "m"}, "NOT_AUTHORIZED", ref="command")
    await answers(app, ice_frame(str(uuid.uuid4()), None), "NOT_AUTHORIZED")
    await answers(robot, {"type": "webrtc_close", "session_id": str(uuid.uuid4())}, "NOT_AUTHORIZED")
    await ws.close(robot, app)


async def test_no_device(world, make_user, access_token):
    """A user who owns nothing and omits `device_id` is answered NO_DEVICE."""
    user = await database_sync_to_async(make_user)("u3@example.com")
    app = await ws.app(await database_sync_to_async(access_token)(user))
    await answers(app, {"type": "webrtc_request"}, "NO_DEVICE", ref="webrtc_request")
    await ws.close(app)


async def test_device_offline(world):
    """Your own robot while offline answers DEVICE_OFFLINE."""
    app = await ws.app(world.t1, drain_status=1)
    await answers(app, {"type": "webrtc_request", "device_id": R1}, "DEVICE_OFFLINE", ref="webrtc_request")
    await ws.close(app)


async def test_session_not_found(world):
    """Your own session, already ended, answers SESSION_NOT_FOUND (ref = session_id) on both sides."""
    robot, app = await flows.robot_app(world)
    sid, _, _ = await flows.open_session(app, robot)
    await ws.send(app, {"type": "webrtc_close", "session_id": sid})
    await ws.recv(robot)
    await answers(app, answer_frame(sid), "SESSION_NOT_FOUND", ref=sid)
    await answers(robot, ice_frame(sid, None), "SESSION_NOT_FOUND", ref=sid)
    await ws.close(robot, app)


# --- MESSAGE_TOO_LARGE ------------------------------------------------------------------------


async def test_message_too_large_from_both_sides_is_not_forwarded(world):
    """A 300 KB frame (over the default 262144-byte limit) answers MESSAGE_TOO_LARGE, is not forwarded,
    and the socket stays open — from a robot and from an app."""
    robot, app = await flows.robot_app(world)
    big = "A" * (300 * 1024)
    await answers(app, {"type": "audio_message", "device_id": R1, "data": big}, "MESSAGE_TOO_LARGE")
    await answers(robot, {"type": "status_update", "blob": big}, "MESSAGE_TOO_LARGE")
    assert await ws.nothing(robot, app)
    await ws.close(robot, app)


async def test_message_size_limit_follows_the_setting_and_counts_bytes(world, settings):
    """`WIMZ_MAX_FRAME_BYTES` sets the limit in UTF-8 bytes: a frame at the limit passes, one byte over
    (or fewer characters but more bytes) is MESSAGE_TOO_LARGE."""
    settings.WIMZ_MAX_FRAME_BYTES = 200
    robot, app = await flows.robot_app(world)
    frame = {"type": "get_status", "device_id": R1, "pad": ""}
    frame["pad"] = "x" * (200 - len(json.dumps(frame)))
    assert len(json.dumps(frame).encode()) == 200
    await ws.send(app, frame)
    assert await ws.recv(robot) == frame
    frame["pad"] += "x"
    await answers(app, frame, "MESSAGE_TOO_LARGE")
    wide = {"type": "get_status", "device_id": R1, "pad": "ж" * 90}
    assert len(json.dumps(wide, ensure_ascii=False)) < 200 < len(json.dumps(wide, ensure_ascii=False).encode())
    await answers(app, json.dumps(wide, ensure_ascii=False), "MESSAGE_TOO_LARGE")
    assert await ws.nothing(robot)
    await ws.close(robot, app)


# --- RATE_LIMITED -----------------------------------------------------------------------------


async def test_rate_limited_when_an_app_socket_of_the_owner_stops_reading(world, settings):
    """An app whose client stops reading backs its consumer up until its channel is full; an event the
    relay then cannot hand to it answers RATE_LIMITED (ref = that event's type) to the robot instead of
    being lost silently. The healthy app gets every event in order, and once the slow client reads
    again it gets exactly the events that were not reported shed, in order (field report F2)."""
    flows.set_channel_capacity(settings, 5)
    robot, healthy = await flows.robot_app(world)
    client = flows.Client()
    slow = await client.connect(f"/ws/app?token={world.t1}")
    assert (await ws.recv(slow))["type"] == "device_status"
    client.stall()
    for i in range(20):
        await ws.send(robot, {"type": f"telemetry_{i:02d}", "seq": i})
    assert [(await ws.recv(healthy))["seq"] for _ in range(20)] == list(range(20))
    errors = await flows.barrier(robot)
    assert errors and all(e["type"] == "error" and e["code"] == "RATE_LIMITED" for e in errors), errors
    shed = {int(e["ref"].split("_")[1]) for e in errors}
    client.resume()
    got = [f["seq"] for f in (await flows.settle(slow))[0]]
    assert got == sorted(set(range(20)) - shed)
    await ws.ping_ok(robot)
    await ws.close(robot, healthy, slow)


async def test_rate_limited_when_the_robot_stops_reading(world, settings):
    """Commands for a robot whose client stopped reading answer RATE_LIMITED (ref = the frame type) once
    its channel is full; the app's socket stays open, and the robot later gets exactly the commands
    that were not reported, in order."""
    flows.set_channel_capacity(settings, 5)
    client = flows.Client()
    robot = await client.connect("/ws/device", ws.robot_headers(R1, world.r1_secret))
    app = await ws.app(world.t1, drain_status=1)
    client.stall()
    for i in range(20):
        await ws.send(app, {"type": "command", "device_id": R1, "command": "motor", "data": {"i": i}})
    errors = await flows.barrier(app)
    assert errors and all(e["code"] == "RATE_LIMITED" and e["ref"] == "command" for e in errors), errors
    await ws.ping_ok(app)
    client.resume()
    got = [f["data"]["i"] for f in (await flows.settle(robot))[0]]
    assert got == sorted(got) and len(got) + len(errors) == 20
    await ws.close(app, robot)


# --- TURN_ERROR -------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["cloudflare", "coturn", "no-such-provider"])
async def test_turn_error_is_unreachable_a_failing_ice_provider_falls_back_to_stun(world, settings, provider):
    """TURN_ERROR is never sent: the ICE provider never raises (relay/ice.py falls back to STUN-only when
    TURN is misconfigured or down), so the session opens with STUN servers for both parties."""
    settings.WIMZ_ICE_PROVIDER = provider
    settings.WIMZ_CLOUDFLARE_TURN_KEY_ID = ""
    settings.WIMZ_COTURN_SECRET = ""
    robot, app = await flows.robot_app(world)
    _, creds, req = await flows.open_session(app, robot)
    assert creds["ice_servers"] == req["ice_servers"]
    assert all(
        str(u).startswith("stun:")
        for s in creds["ice_servers"]
        for u in (s["urls"] if isinstance(s["urls"], list) else [s["urls"]])
    )
    await ws.ping_ok(app)
    await ws.close(robot, app)


# --- TOKEN_EXPIRED ----------------------------------------------------------------------------


async def test_token_expired_closes_with_4001(world):
    """TOKEN_EXPIRED is the one code that closes: the app socket gets it and close code 4001."""
    token = AccessToken.for_user(world.u1)
    token.set_exp(lifetime=timedelta(seconds=2))
    app = await ws.app(str(token), drain_status=1)
    await flows.expect_error(app, "TOKEN_EXPIRED", timeout=6)
    await flows.expect_close(app, 4001)
    await ws.close(app)


# --- INTERNAL ---------------------------------------------------------------------------------


async def test_internal_error_in_app_handling_keeps_the_socket(world, monkeypatch, caplog):
    """An unexpected exception while handling an app frame answers INTERNAL (ref = the type), is logged
    once, and the socket keeps working."""
    robot, app = await flows.robot_app(world)

    async def broken(*args, **kwargs):
        raise RuntimeError("boom")

    with monkeypatch.context() as m:
        m.setattr(dispatch, "app_frame", broken)
        with caplog.at_level(logging.ERROR):
            await answers(app, {"type": "command", "device_id": R1, "command": "m"}, "INTERNAL", ref="command")
    assert any(r.exc_info for r in caplog.records)
    await ws.send(app, {"type": "command", "device_id": R1, "command": "m", "data": {}})
    assert (await ws.recv(robot))["command"] == "m"
    await ws.close(robot, app)


async def test_internal_error_in_robot_handling_keeps_the_socket(world, monkeypatch):
    """An unexpected exception while handling a robot frame answers INTERNAL and the robot stays
    connected and routable."""
    robot, app = await flows.robot_app(world)

    async def broken(*args, **kwargs):
        raise RuntimeError("boom")

    with monkeypatch.context() as m:
        m.setattr(dispatch, "robot_frame", broken)
        await answers(robot, {"type": "status_update"}, "INTERNAL", ref="status_update")
    await ws.send(robot, {"type": "status_update", "battery": 2})
    assert (await ws.recv(app))["battery"] == 2
    await ws.close(robot, app)


async def test_error_messages_never_leak_internals(world, monkeypatch):
    """The INTERNAL answer carries no exception text."""
    robot, app = await flows.robot_app(world)

    async def broken(*args, **kwargs):
        raise RuntimeError("secret-internal-detail")

    monkeypatch.setattr(dispatch, "app_frame", broken)
    error = await answers(app, {"type": "get_status"}, "INTERNAL")
    assert "secret-internal-detail" not in json.dumps(error)
    await ws.close(robot, app)


async def test_webrtc_request_the_robot_cannot_take_is_rate_limited_and_leaves_no_session(world, settings):
    """A `webrtc_request` while the robot's channel is full answers RATE_LIMITED (ref webrtc_request),
    sends no credentials and leaves no session row: the session never happened."""
    from relay.models import Session

    flows.set_channel_capacity(settings, 3)
    client = flows.Client()
    robot = await client.connect("/ws/device", ws.robot_headers(R1, world.r1_secret))
    app = await ws.app(world.t1, drain_status=1)
    client.stall()
    for i in range(10):  # fill the robot's channel
        await ws.send(app, {"type": "command", "device_id": R1, "command": "motor", "data": {"i": i}})
    await flows.barrier(app)
    await ws.send(app, {"type": "webrtc_request", "device_id": R1})
    frame = await ws.recv(app)
    assert frame["type"] == "error" and frame["code"] == "RATE_LIMITED" and frame["ref"] == "webrtc_request"
    assert await database_sync_to_async(Session.objects.count)() == 0
    await ws.ping_ok(app)
    client.resume()
    await ws.close(app, robot)
