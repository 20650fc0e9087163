"""Frames: events, commands, pass-through, hello, ping/pong, reserved types, default device, check order
(docs/protocol.md §8 and "Precise rules"), over the full ASGI app."""

import base64
import copy
import os

import pytest
from channels.db import database_sync_to_async

from devices.models import Device
from tests.relay import flows
from tests.relay.flows import DEPLOYED, R1, R2
from tests.support import asgi as ws

pytestmark = flows.RELAY_DB

EVENT_TYPES = [
    "status_update",
    "telemetry",
    "detection",
    "battery",
    "heartbeat",
    "command_ack",
    "robot_connected",
    "teleport",
]


def without(frame: dict, *keys) -> dict:
    return {k: v for k, v in frame.items() if k not in keys}


@pytest.fixture
def r3(world, make_device):
    """A second device of U1 (`wimz_robot_03`), so U1 owns two."""
    _, secret = make_device("wimz_robot_03", owner=world.u1)
    return secret


# --- events -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", EVENT_TYPES)
async def test_robot_event_reaches_every_app_of_the_owner(world, kind):
    """Any non-reserved robot type is an event: forwarded to every app socket of the owner with the
    robot's keys unchanged, `device_id` set and a server ISO 8601 UTC `timestamp` added."""
    robot = await ws.robot(R1, world.r1_secret)
    a1 = await ws.app(world.t1, drain_status=1)
    a2 = await ws.app(world.t1, drain_status=1)
    frame = {"type": kind, "battery": 87, "mode": "guardian", "charging": False, "nested": {"x": [1, None]}}
    await ws.send(robot, frame)
    for app in (a1, a2):
        event = await ws.recv(app)
        assert without(event, "device_id", "timestamp") == frame
        assert event["device_id"] == R1
        assert flows.is_iso_utc(event["timestamp"])
    assert await ws.nothing(robot)
    await ws.close(robot, a1, a2)


async def test_legacy_event_without_type_is_forwarded(world):
    """`{"event":"detection",…}` without `type` (legacy) is an event, forwarded with its keys as sent."""
    robot, app = await flows.robot_app(world)
    frame = {"event": "detection", "data": {"detected": True, "behavior": "sit", "confidence": 0.91}}
    await ws.send(robot, frame)
    event = await ws.recv(app)
    assert without(event, "device_id", "timestamp") == frame
    assert event["device_id"] == R1 and flows.is_iso_utc(event["timestamp"])
    await ws.close(robot, app)


async def test_event_device_id_is_always_the_authenticated_id(world):
    """A robot cannot speak for another device: a `device_id` in its event is overwritten with its own."""
    robot, app = await flows.robot_app(world)
    for claimed in (R2, "робот-1", 42, None):
        await ws.send(robot, {"type": "status_update", "device_id": claimed})
        assert (await ws.recv(app))["device_id"] == R1
    await ws.close(robot, app)


async def test_event_keeps_the_robots_own_timestamp(world):
    """A server `timestamp` is added only when absent: the robot's own value is forwarded unchanged."""
    robot, app = await flows.robot_app(world)
    await ws.send(robot, {"type": "telemetry", "timestamp": 1767225600.25})
    assert (await ws.recv(app))["timestamp"] == 1767225600.25
    await ws.send(robot, {"type": "telemetry", "timestamp": "2026-01-01T00:00:00Z"})
    assert (await ws.recv(app))["timestamp"] == "2026-01-01T00:00:00Z"
    await ws.close(robot, app)


async def test_event_with_no_app_online_is_silently_accepted(world):
    """An event while the owner has no app socket is no error for the robot."""
    robot = await ws.robot(R1, world.r1_secret)
    await ws.send(robot, {"type": "status_update", "battery": 1})
    assert await ws.nothing(robot)
    await ws.ping_ok(robot)
    await ws.close(robot)


async def test_unowned_device_talks_to_nobody(world, make_device):
    """A device with no owner: its events reach no app, and no app can address it (NOT_AUTHORIZED)."""
    _, secret = await database_sync_to_async(make_device)("wimz_robot_09")
    robot = await ws.robot("wimz_robot_09", secret)
    a1 = await ws.app(world.t1, drain_status=1)
    b1 = await ws.app(world.t2, drain_status=1)
    await ws.send(robot, {"type": "status_update", "battery": 5})
    await ws.send(a1, {"type": "command", "device_id": "wimz_robot_09", "command": "motor", "data": {}})
    await flows.expect_error(a1, "NOT_AUTHORIZED")
    assert await ws.nothing(robot, b1)
    assert await ws.nothing(a1)
    await ws.close(robot, a1, b1)


# --- commands and pass-through ----------------------------------------------------------------


async def test_command_is_forwarded_with_params_equal_to_data(world):
    """`command` reaches the robot with every key as sent plus compat `params` equal to `data`."""
    robot, app = await flows.robot_app(world)
    frame = {"type": "command", "device_id": R1, "command": "motor", "data": {"left": 0.5, "right": 0.5}}
    await ws.send(app, frame)
    assert await ws.recv(robot) == {**frame, "params": {"left": 0.5, "right": 0.5}}
    frame = {"type": "command", "device_id": R1, "command": "dispense_treat", "data": {}}
    await ws.send(app, frame)
    assert await ws.recv(robot) == {**frame, "params": {}}
    assert await ws.nothing(app)
    await ws.close(robot, app)


async def test_command_reaches_only_the_addressed_robot(world, r3):
    """With two robots of one user, a command addressed to one reaches that one only."""
    robot1 = await ws.robot(R1, world.r1_secret)
    robot3 = await ws.robot("wimz_robot_03", r3)
    app = await ws.app(world.t1, drain_status=2)
    await ws.send(app, {"type": "command", "device_id": "wimz_robot_03", "command": "spin", "data": {"deg": 90}})
    assert (await ws.recv(robot3))["command"] == "spin"
    assert await ws.nothing(robot1)
    await ws.close(robot1, robot3, app)


@pytest.mark.parametrize("command", [None, "", 5, ["motor"]])
async def test_command_without_a_string_command_is_bad_request(world, command):
    """A `command` frame whose `command` is missing or not a non-empty string answers BAD_REQUEST."""
    robot, app = await flows.robot_app(world)
    frame = {"type": "command", "device_id": R1, "data": {}}
    if command is not None:
        frame["command"] = command
    await ws.send(app, frame)
    await flows.expect_error(app, "BAD_REQUEST", ref="command")
    assert await ws.nothing(robot)
    await ws.close(robot, app)


async def test_push_to_talk_audio_of_100kb_is_passed_through_unchanged(world):
    """`audio_message` with ~100 KB of base64 audio (below the 256 KiB frame limit) reaches the robot
    exactly as sent."""
    robot, app = await flows.robot_app(world)
    audio = base64.b64encode(os.urandom(100 * 1024)).decode()
    frame = {"type": "audio_message", "device_id": R1, "data": audio, "format": "aac", "duration_ms": 2400}
    await ws.send(app, frame)
    assert await ws.recv(robot) == frame
    await ws.close(robot, app)


@pytest.mark.parametrize("kind", ["audio_request", "get_status", "set_mode", "teleport"])
async def test_other_app_types_with_device_id_are_passed_through_unchanged(world, kind):
    """Any other non-reserved app type with a `device_id` reaches that robot unchanged (pass-through)."""
    robot, app = await flows.robot_app(world)
    frame = {"type": kind, "device_id": R1, "x": {"y": [1, 2.5, None, True]}, "s": "ünïcode ✓"}
    await ws.send(app, frame)
    assert await ws.recv(robot) == frame
    assert await ws.nothing(app)
    await ws.close(robot, app)


# --- default device ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "command", "command": "motor", "data": {"left": 1}},
        {"type": "get_status"},
    ],
)
async def test_device_id_may_be_omitted_when_the_user_owns_exactly_one(world, frame):
    """With exactly one device, an app frame without `device_id` goes to it (the relay only adds
    `device_id`, and `params` on commands)."""
    robot, app = await flows.robot_app(world)
    await ws.send(app, frame)
    got = await ws.recv(robot)
    assert without(got, "device_id", "params") == frame and got["device_id"] == R1
    await ws.close(robot, app)


async def test_webrtc_request_without_device_id_uses_the_only_device(world):
    """`webrtc_request` without `device_id` opens a session with the user's only device."""
    robot, app = await flows.robot_app(world)
    _, creds, _ = await flows.open_session(app, robot, device_id=None)
    assert creds["device_id"] == R1
    await ws.close(robot, app)


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "webrtc_request"},
        {"type": "command", "command": "motor", "data": {}},
        {"type": "get_status"},
    ],
)
async def test_omitted_device_id_with_no_device_is_no_device(world, make_user, access_token, frame):
    """A user owning no device who omits `device_id` is answered NO_DEVICE."""
    user = await database_sync_to_async(make_user)("u3@example.com")
    app = await ws.app(await database_sync_to_async(access_token)(user))
    await ws.send(app, frame)
    await flows.expect_error(app, "NO_DEVICE", ref=frame["type"])
    await ws.ping_ok(app)
    await ws.close(app)


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "webrtc_request"},
        {"type": "command", "command": "motor", "data": {}},
        {"type": "get_status"},
    ],
)
async def test_omitted_device_id_with_several_devices_is_bad_request(world, r3, frame):
    """A user owning several devices must name one: BAD_REQUEST "device_id required"; nothing forwarded."""
    robot = await ws.robot(R1, world.r1_secret)
    app = await ws.app(world.t1, drain_status=2)
    await ws.send(app, frame)
    error = await flows.expect_error(app, "BAD_REQUEST", ref=frame["type"])
    assert "device_id required" in error["message"]
    assert await ws.nothing(robot)
    await ws.close(robot, app)


# --- check order: authorization before availability -------------------------------------------


@pytest.mark.parametrize("kind", ["webrtc_request", "command", "get_status"])
async def test_other_users_device_is_not_authorized_online_or_offline(world, kind):
    """A device that is not yours answers NOT_AUTHORIZED whether or not it is online."""
    app = await ws.app(world.t1, drain_status=1)
    frame = {"type": kind, "device_id": R2, "command": "motor", "data": {}}
    await ws.send(app, frame)
    await flows.expect_error(app, "NOT_AUTHORIZED", ref=kind)
    r2 = await ws.robot(R2, world.r2_secret)
    await ws.send(app, frame)
    await flows.expect_error(app, "NOT_AUTHORIZED", ref=kind)
    assert await ws.nothing(r2)
    await ws.close(r2, app)


@pytest.mark.parametrize("kind", ["webrtc_request", "command", "get_status"])
async def test_nonexistent_device_is_not_authorized(world, kind):
    """An id that does not exist answers NOT_AUTHORIZED too, so ids cannot be probed."""
    app = await ws.app(world.t1, drain_status=1)
    await ws.send(app, {"type": kind, "device_id": "wimz_robot_99", "command": "motor", "data": {}})
    await flows.expect_error(app, "NOT_AUTHORIZED", ref=kind)
    await ws.close(app)


@pytest.mark.parametrize("kind", ["webrtc_request", "command", "get_status"])
async def test_own_offline_robot_is_device_offline(world, kind):
    """Only your own offline robot answers DEVICE_OFFLINE (named or as the default device)."""
    app = await ws.app(world.t1, drain_status=1)
    await ws.send(app, {"type": kind, "device_id": R1, "command": "motor", "data": {}})
    await flows.expect_error(app, "DEVICE_OFFLINE", ref=kind)
    await ws.send(app, {"type": kind, "command": "motor", "data": {}})
    await flows.expect_error(app, "DEVICE_OFFLINE", ref=kind)
    await ws.close(app)


async def test_deactivated_own_device_is_not_addressable(world):
    """An inactive device is not the user's to address: NOT_AUTHORIZED, never DEVICE_OFFLINE."""
    await database_sync_to_async(Device.objects.filter(device_id=R1).update)(is_active=False)
    app = await ws.app(world.t1)
    await ws.send(app, {"type": "command", "device_id": R1, "command": "motor", "data": {}})
    await flows.expect_error(app, "NOT_AUTHORIZED")
    await ws.close(app)


# --- hello ------------------------------------------------------------------------------------


async def test_hello_naming_another_device_is_bad_request_and_changes_nothing(world):
    """A `hello` naming another `device_id` answers BAD_REQUEST, records nothing and reaches nobody."""
    robot, app = await flows.robot_app(world)
    await ws.send(robot, {"type": "hello", "device_id": R2, "capabilities": ["video"], "firmware_version": "9"})
    await flows.expect_error(robot, "BAD_REQUEST", ref="hello")
    await ws.send(robot, {"type": "hello", "device_id": "робот-1", "capabilities": ["video"]})
    await flows.expect_error(robot, "BAD_REQUEST", ref="hello")
    device = await database_sync_to_async(Device.objects.get)(device_id=R1)
    assert device.capabilities == [] and device.firmware_version == ""
    assert await ws.nothing(app)
    await ws.ping_ok(robot)
    await ws.close(robot, app)


async def test_hello_as_deployed_is_accepted_silently(world):
    """The deployed `hello` (own id, capabilities, no firmware) is accepted without any answer."""
    robot, app = await flows.robot_app(world)
    await ws.send(robot, {"type": "hello", "device_id": R1, "capabilities": ["video", "audio", "commands"]})
    assert await ws.nothing(robot, app)
    device = await database_sync_to_async(Device.objects.get)(device_id=R1)
    assert device.capabilities == ["video", "audio", "commands"]
    await ws.close(robot, app)


async def test_hello_values_are_bounded(world):
    """What a robot's `hello` writes to its row is bounded: 32 capabilities of at most 64 characters and
    64 characters of firmware (docs/protocol.md §8.1), however long the strings it sends."""
    robot, app = await flows.robot_app(world)
    await ws.send(robot, {"type": "hello", "capabilities": ["c" * 1000] * 40, "firmware_version": "f" * 500})
    assert await ws.nothing(robot, app)
    device = await database_sync_to_async(Device.objects.get)(device_id=R1)
    assert device.capabilities == ["c" * 64] * 32 and device.firmware_version == "f" * 64
    await ws.close(robot, app)


# --- ping / pong ------------------------------------------------------------------------------


async def test_ping_gets_pong_from_both_sides(world):
    """`{"type":"ping"}` from a robot or an app gets exactly `{"type":"pong"}`, and nothing else moves."""
    robot, app = await flows.robot_app(world)
    for comm in (robot, app):
        await ws.send(comm, {"type": "ping"})
        assert await ws.recv(comm) == {"type": "pong"}
    assert await ws.nothing(robot, app)
    await ws.close(robot, app)


async def test_pong_is_accepted_silently_from_both_sides(world):
    """`pong` (the deployed robot adds a `timestamp`) is accepted silently and forwarded to nobody."""
    robot, app = await flows.robot_app(world)
    await ws.send(robot, {"type": "pong", "timestamp": 1767225600.25})
    await ws.send(app, {"type": "pong"})
    assert await ws.nothing(robot, app)
    await ws.close(robot, app)


# --- reserved types out of place --------------------------------------------------------------


@pytest.mark.parametrize(
    "kind", ["device_status", "webrtc_credentials", "webrtc_request", "webrtc_answer", "auth", "auth_result", "error"]
)
async def test_robot_sending_a_reserved_type_of_the_other_table_is_unknown_type(world, kind):
    """A reserved type not in the robot's table answers UNKNOWN_TYPE and is never forwarded."""
    robot, app = await flows.robot_app(world)
    await ws.send(robot, {"type": kind, "device_id": R1, "session_id": "x", "status": "online"})
    await flows.expect_error(robot, "UNKNOWN_TYPE", ref=kind)
    assert await ws.nothing(app)
    await ws.close(robot, app)


@pytest.mark.parametrize(
    "kind", ["webrtc_offer", "hello", "device_status", "webrtc_credentials", "webrtc_error", "auth_result", "error"]
)
async def test_app_sending_a_reserved_type_of_the_other_table_is_unknown_type(world, kind):
    """A reserved type not in the app's table answers UNKNOWN_TYPE, even with a `device_id`: it is never
    a pass-through."""
    robot, app = await flows.robot_app(world)
    await ws.send(app, {"type": kind, "device_id": R1, "session_id": "x"})
    await flows.expect_error(app, "UNKNOWN_TYPE", ref=kind)
    assert await ws.nothing(robot)
    await ws.close(robot, app)


# --- the deployed clients ---------------------------------------------------------------------


async def test_every_deployed_client_frame_is_accepted(world):
    """Every frame of deployed-client-frames.jsonl is accepted byte for byte: none answers an error, and
    each reaches the party the contract names, in the order deployed clients send them."""
    robot, app = await flows.robot_app(world)
    deployed = {(d["from"], d["when"]): d["frame"] for d in DEPLOYED if isinstance(d["frame"], dict)}
    used = set()
    session_id = None

    def take(sender, when):
        used.add((sender, when))
        frame = copy.deepcopy(deployed[(sender, when)])
        if frame.get("session_id") == "<session_id>":
            frame["session_id"] = session_id
        sdp = frame.get("sdp")
        if isinstance(sdp, dict):
            sdp["sdp"] = flows.OFFER["sdp"] if sdp["type"] == "offer" else flows.ANSWER["sdp"]
        if frame.get("data") == "<base64 audio, up to ~100 KB>":
            frame["data"] = base64.b64encode(os.urandom(75 * 1024)).decode()
        return frame

    await ws.send(app, take("app", "keepalive"))
    assert await ws.recv(app) == {"type": "pong"}
    for when in ("right after the handshake", "answer to a relay ping"):
        await ws.send(robot, take("robot", when))
        assert await ws.nothing(robot, app)

    await ws.send(app, take("app", "start video"))
    creds = await ws.recv(app)
    assert creds["type"] == "webrtc_credentials" and creds["device_id"] == R1
    session_id = creds["session_id"]
    assert await ws.recv(robot) == {
        "type": "webrtc_request",
        "session_id": session_id,
        "ice_servers": creds["ice_servers"],
    }

    for sender, when in [
        ("robot", "after webrtc_request"),
        ("robot", "trickle ICE"),
        ("app", "after the offer"),
        ("app", "trickle ICE"),
    ]:
        me, peer = (robot, app) if sender == "robot" else (app, robot)
        frame = take(sender, when)
        await ws.send(me, frame)
        assert await ws.recv(peer) == frame

    for when in ("telemetry", "legacy event form"):
        frame = take("robot", when)
        await ws.send(robot, frame)
        assert without(await ws.recv(app), "device_id", "timestamp") == frame

    for when in ("drive", "treat", "push to talk"):
        frame = take("app", when)
        await ws.send(app, frame)
        expected = {**frame, "params": frame["data"]} if frame["type"] == "command" else frame
        assert await ws.recv(robot) == expected

    frame = take("app", "switching robots")
    await ws.send(app, frame)
    assert await ws.recv(robot) == {**frame, "reason": "closed_by_app"}

    session_id, _, _ = await flows.open_session(app, robot)
    frame = take("robot", "offer failed")
    await ws.send(robot, frame)
    assert await ws.recv(app) == frame

    assert used == set(deployed), set(deployed) - used
    await ws.close(robot, app)


async def test_deployed_robot_webrtc_error_is_accepted(world):
    """The deployed robot's `webrtc_error` ("WebRTC service not available") reaches the app unchanged."""
    robot, app = await flows.robot_app(world)
    session_id, _, _ = await flows.open_session(app, robot)
    frame = {"type": "webrtc_error", "session_id": session_id, "error": "WebRTC service not available"}
    await ws.send(robot, frame)
    assert await ws.recv(app) == frame
    await ws.close(robot, app)
