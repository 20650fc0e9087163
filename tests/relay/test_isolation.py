"""Ownership isolation for every frame type (docs/protocol.md §1): a robot's messages reach only the apps
of its owner, an app reaches only robots its user owns. U1 owns R1 (app A1); U2 owns R2 (app B1).
Whatever U1's side sends, B1 and R2 receive nothing — and the other way round."""

import pytest
from channels.db import database_sync_to_async

from devices import services as device_services
from devices.models import Device
from tests.relay import flows
from tests.relay.flows import (
    APP_CANDIDATES,
    R1,
    R2,
    ROBOT_CANDIDATES,
    answer_frame,
    ice_frame,
    offer_frame,
)
from tests.support import asgi as ws

pytestmark = flows.RELAY_DB


@pytest.fixture
async def two(world):
    """R1, A1 (U1) and R2, B1 (U2) connected, snapshots drained, a live session of A1 with R1."""

    class Two:
        pass

    t = Two()
    t.r1 = await ws.robot(R1, world.r1_secret)
    t.r2 = await ws.robot(R2, world.r2_secret)
    t.a1 = await ws.app(world.t1, drain_status=1)
    t.b1 = await ws.app(world.t2, drain_status=1)
    t.sid, _, _ = await flows.open_session(t.a1, t.r1)
    yield t
    await ws.close(t.r1, t.r2, t.a1, t.b1)


async def drain(comm) -> list[dict]:
    """Whatever `comm` received so far (after a quiet period)."""
    frames = []
    while not await comm.receive_nothing(timeout=flows.QUIET):
        frames.append(await ws.recv(comm))
    return frames


ROBOT_FRAMES = {
    "status_update": lambda sid: {"type": "status_update", "battery": 87},
    "telemetry": lambda sid: {"type": "telemetry", "cpu": 0.5},
    "detection": lambda sid: {"type": "detection", "data": {}},
    "battery": lambda sid: {"type": "battery", "level": 5},
    "heartbeat": lambda sid: {"type": "heartbeat"},
    "command_ack": lambda sid: {"type": "command_ack", "command": "motor"},
    "robot_connected": lambda sid: {"type": "robot_connected"},
    "event naming R2": lambda sid: {"type": "status_update", "device_id": R2},
    "legacy event": lambda sid: {"event": "detection", "data": {"detected": True}},
    "hello": lambda sid: {"type": "hello", "device_id": R1, "capabilities": ["video"]},
    "hello naming R2": lambda sid: {"type": "hello", "device_id": R2},
    "ping": lambda sid: {"type": "ping"},
    "pong": lambda sid: {"type": "pong"},
    "webrtc_offer": lambda sid: offer_frame(sid),
    "webrtc_ice": lambda sid: ice_frame(sid, ROBOT_CANDIDATES[0]),
    "webrtc_error": lambda sid: {"type": "webrtc_error", "session_id": sid, "error": "x"},
    "webrtc_close": lambda sid: {"type": "webrtc_close", "session_id": sid},
    "device_status (reserved)": lambda sid: {"type": "device_status", "device_id": R1, "status": "online"},
    "webrtc_request (reserved)": lambda sid: {"type": "webrtc_request", "device_id": R2},
    "malformed": lambda sid: "{",
}

# What U1's app A1 receives for each of R1's frames: events are forwarded, signaling reaches the
# session's app, hello/ping/pong/reserved/malformed frames are answered to the robot only.
_EVENTS = ("status_update", "telemetry", "detection", "battery", "heartbeat", "command_ack", "robot_connected")
TO_OWNER = {name: [name] for name in _EVENTS} | {
    "event naming R2": ["status_update"],
    "legacy event": [None],
    "hello": [],
    "hello naming R2": [],
    "ping": [],
    "pong": [],
    "webrtc_offer": ["webrtc_offer"],
    "webrtc_ice": ["webrtc_ice"],
    "webrtc_error": ["webrtc_error", "webrtc_close"],
    "webrtc_close": ["webrtc_close"],
    "device_status (reserved)": [],
    "webrtc_request (reserved)": [],
    "malformed": [],
}
assert TO_OWNER.keys() == ROBOT_FRAMES.keys()

APP_FRAMES = {
    "command": lambda sid: {"type": "command", "device_id": R1, "command": "motor", "data": {"left": 1}},
    "command (default device)": lambda sid: {"type": "command", "command": "motor", "data": {}},
    "audio_message": lambda sid: {"type": "audio_message", "device_id": R1, "data": "AAAA", "format": "aac"},
    "get_status": lambda sid: {"type": "get_status", "device_id": R1},
    "webrtc_request": lambda sid: {"type": "webrtc_request", "device_id": R1},
    "webrtc_answer": lambda sid: answer_frame(sid),
    "webrtc_ice": lambda sid: ice_frame(sid, APP_CANDIDATES[0]),
    "webrtc_close": lambda sid: {"type": "webrtc_close", "session_id": sid, "device_id": R1},
    "auth renewal": lambda sid: {"type": "auth", "token": "garbage"},
    "ping": lambda sid: {"type": "ping"},
    "pong": lambda sid: {"type": "pong"},
    "webrtc_offer (reserved)": lambda sid: offer_frame(sid),
    "hello (reserved)": lambda sid: {"type": "hello", "device_id": R2},
    "malformed": lambda sid: "[]",
}


@pytest.mark.parametrize("name", list(ROBOT_FRAMES))
async def test_robot_frame_reaches_no_other_user(two, name):
    """Whatever R1 sends — events, hello, ping/pong, signaling, reserved or malformed frames — U2's app
    B1 and robot R2 receive nothing; what U1's app gets carries R1's id only."""
    await ws.send(two.r1, ROBOT_FRAMES[name](two.sid))
    await flows.barrier(two.r1)
    to_a1, to_b1, to_r2 = await flows.settle(two.a1, two.b1, two.r2)
    assert [frame.get("type") for frame in to_a1] == TO_OWNER[name], to_a1
    for frame in to_a1:
        # Signaling names A1's session; events carry the sender's device id, never one the robot named.
        key = "session_id" if "session_id" in frame else "device_id"
        assert frame[key] == {"session_id": two.sid, "device_id": R1}[key], frame
    assert to_b1 == [] and to_r2 == []


@pytest.mark.parametrize("name", list(APP_FRAMES))
async def test_app_frame_reaches_no_other_user(two, name):
    """Whatever A1 sends — commands, pass-through, signaling, renewal, ping/pong, reserved or malformed
    frames — U2's robot R2 and app B1 receive nothing."""
    await ws.send(two.a1, APP_FRAMES[name](two.sid))
    await flows.barrier(two.a1)
    to_r2, to_b1 = await flows.settle(two.r2, two.b1)
    assert to_r2 == [] and to_b1 == []


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "command", "device_id": R1, "command": "motor", "data": {}},
        {"type": "audio_message", "device_id": R1, "data": "AAAA"},
        {"type": "get_status", "device_id": R1},
        {"type": "webrtc_request", "device_id": R1},
    ],
)
async def test_other_users_app_cannot_address_the_robot(two, frame):
    """B1 naming R1 gets NOT_AUTHORIZED; R1 and A1 receive nothing (and R1's session stays alive)."""
    await ws.send(two.b1, frame)
    await flows.expect_error(two.b1, "NOT_AUTHORIZED", ref=frame["type"])
    assert await ws.nothing(two.r1, two.a1, two.r2)
    assert (await flows.session_row(two.sid)).ended_at is None


@pytest.mark.parametrize("kind", ["webrtc_answer", "webrtc_ice", "webrtc_close"])
async def test_other_users_app_cannot_signal_into_the_session(two, kind):
    """B1 sending answer/ICE/close with U1's session id gets NOT_AUTHORIZED; R1 and A1 receive nothing."""
    frame = {
        "webrtc_answer": answer_frame,
        "webrtc_ice": lambda s: ice_frame(s, APP_CANDIDATES[0]),
        "webrtc_close": lambda s: {"type": "webrtc_close", "session_id": s},
    }[kind](two.sid)
    await ws.send(two.b1, frame)
    await flows.expect_error(two.b1, "NOT_AUTHORIZED", ref=two.sid)
    assert await ws.nothing(two.r1, two.a1, two.r2)
    assert (await flows.session_row(two.sid)).ended_at is None


@pytest.mark.parametrize("kind", ["webrtc_offer", "webrtc_ice", "webrtc_error", "webrtc_close"])
async def test_other_users_robot_cannot_signal_into_the_session(two, kind):
    """R2 sending offer/ICE/error/close with U1's session id gets NOT_AUTHORIZED; A1 and R1 get nothing."""
    frame = {
        "webrtc_offer": offer_frame,
        "webrtc_ice": lambda s: ice_frame(s, ROBOT_CANDIDATES[0]),
        "webrtc_error": lambda s: {"type": "webrtc_error", "session_id": s, "error": "x"},
        "webrtc_close": lambda s: {"type": "webrtc_close", "session_id": s},
    }[kind](two.sid)
    await ws.send(two.r2, frame)
    await flows.expect_error(two.r2, "NOT_AUTHORIZED", ref=two.sid)
    assert await ws.nothing(two.a1, two.r1, two.b1)
    assert (await flows.session_row(two.sid)).ended_at is None


async def test_other_robots_event_naming_r1_reaches_only_its_owner_as_r2(two):
    """R2 claiming to be R1 in an event: only B1 gets it, with `device_id` R2; A1 nothing."""
    await ws.send(two.r2, {"type": "status_update", "device_id": R1, "battery": 1})
    assert (await ws.recv(two.b1))["device_id"] == R2
    assert await ws.nothing(two.a1, two.r1)


async def test_status_pushes_and_session_ends_reach_no_other_user(two, world):
    """R1 going offline (and its session ending) and coming back online is told to A1 only."""
    await two.r1.disconnect(code=1006)
    frames = await drain(two.a1)
    assert {f["type"] for f in frames} == {"device_status", "webrtc_close"}
    two.r1 = await ws.robot(R1, world.r1_secret)
    assert (await ws.recv(two.a1))["status"] == "online"
    assert await ws.nothing(two.b1, two.r2)


async def test_unpair_is_told_to_the_former_owner_only(two, world):
    """Unpairing R1 tells A1 (`unpaired`, session closed) and R1 (session closed); U2's side nothing."""

    def unpair():
        device_services.device_unpair(user=world.u1, device=Device.objects.get(device_id=R1))

    await database_sync_to_async(unpair)()
    assert {f["type"] for f in await drain(two.a1)} == {"device_status", "webrtc_close"}
    assert [f["type"] for f in await drain(two.r1)] == ["webrtc_close"]
    assert await ws.nothing(two.b1, two.r2)


async def test_robot_of_a_new_owner_reaches_the_new_owner_only(two, world):
    """After R1 changes hands (unpaired from U1, paired by U2 with a pairing code), its events reach
    U2's apps, not U1's, and U1's commands no longer reach it: the ownership change reaches the robot's
    and both users' sockets before the service calls return."""

    def transfer():
        device = Device.objects.get(device_id=R1)
        device_services.device_unpair(user=world.u1, device=device)
        code = device_services.device_pairing_code_issue(device=device).code
        device_services.device_pair(user=world.u2, code=code)

    await database_sync_to_async(transfer)()
    await drain(two.a1)
    await drain(two.r1)
    status = await ws.recv(two.b1)
    assert (status["type"], status["device_id"], status["status"]) == ("device_status", R1, "online")
    await ws.send(two.r1, {"type": "battery", "level": 9})
    assert (await ws.recv(two.b1))["device_id"] == R1
    assert await ws.nothing(two.a1)
    await ws.send(two.a1, {"type": "command", "device_id": R1, "command": "m", "data": {}})
    await flows.expect_error(two.a1, "NOT_AUTHORIZED", ref="command")
    await ws.send(two.b1, {"type": "command", "device_id": R1, "command": "m", "data": {}})
    assert (await ws.recv(two.r1))["command"] == "m"
