"""Signaling sessions over sockets: the aiortc call byte for byte, every end reason, who may close,
SESSION_NOT_FOUND vs NOT_AUTHORIZED, and the history row (docs/protocol.md §13, "Precise rules")."""

import asyncio
import uuid

from channels.db import database_sync_to_async

from devices import services as device_services
from devices.models import Device
from tests.relay import flows
from tests.relay.flows import (
    ANSWER,
    APP_CANDIDATES,
    OFFER,
    R1,
    R2,
    ROBOT_CANDIDATES,
    answer_frame,
    close_frame,
    ice_frame,
    offer_frame,
)
from tests.support import asgi as ws

pytestmark = flows.RELAY_DB


async def test_full_signaling_with_the_aiortc_call_byte_for_byte(world):
    """Request → credentials/request → offer → robot ICE → answer → app ICE → close: every SDP and
    candidate of the real aiortc call reaches the other party exactly as sent, in order; the other app
    socket of the same user sees none of it."""
    robot, a1 = await flows.robot_app(world)
    a2 = await ws.app(world.t1, drain_status=1)
    await ws.send(a1, {"type": "webrtc_request", "device_id": R1})
    creds = await ws.recv(a1)
    assert set(creds) == {"type", "session_id", "device_id", "ice_servers"}
    assert creds["type"] == "webrtc_credentials" and creds["device_id"] == R1
    session_id = creds["session_id"]
    assert str(uuid.UUID(session_id)) == session_id
    assert isinstance(creds["ice_servers"], list) and creds["ice_servers"]
    assert all(isinstance(s, dict) and s.get("urls") for s in creds["ice_servers"])
    assert await ws.recv(robot) == {
        "type": "webrtc_request",
        "session_id": session_id,
        "ice_servers": creds["ice_servers"],
    }

    await ws.send(robot, offer_frame(session_id))
    for candidate in ROBOT_CANDIDATES:
        await ws.send(robot, ice_frame(session_id, candidate))
    got = await ws.recv(a1)
    assert got == offer_frame(session_id) and got["sdp"]["sdp"] == OFFER["sdp"]
    for candidate in ROBOT_CANDIDATES:
        assert await ws.recv(a1) == ice_frame(session_id, candidate)

    await ws.send(a1, answer_frame(session_id))
    for candidate in APP_CANDIDATES:
        await ws.send(a1, ice_frame(session_id, candidate))
    got = await ws.recv(robot)
    assert got == answer_frame(session_id) and got["sdp"]["sdp"] == ANSWER["sdp"]
    for candidate in APP_CANDIDATES:
        assert await ws.recv(robot) == ice_frame(session_id, candidate)

    assert await ws.nothing(a2, robot, a1)
    await ws.close(robot, a1, a2)


async def test_robot_and_app_get_the_same_ice_servers_and_a_fresh_session_id(world):
    """Each request opens a new UUID session; robot and app get the same `ice_servers` for it."""
    robot, app = await flows.robot_app(world)
    first, creds1, req1 = await flows.open_session(app, robot)
    second, creds2, req2 = await flows.open_session(app, robot)
    assert first != second
    assert creds1["ice_servers"] == req1["ice_servers"] and creds2["ice_servers"] == req2["ice_servers"]
    await ws.close(robot, app)


async def test_history_row_records_timestamps_reason_and_ice_counts(world):
    """The session's history row has created/offered/answered/ended timestamps in order, its end reason
    and the ICE candidates forwarded per side."""
    robot, app = await flows.robot_app(world)
    session_id, _, _ = await flows.open_session(app, robot)
    row = await flows.session_row(session_id)
    assert row.state == "requested" and row.offered_at is None and row.ended_at is None
    await ws.send(robot, offer_frame(session_id))
    for candidate in ROBOT_CANDIDATES[:3]:
        await ws.send(robot, ice_frame(session_id, candidate))
    await flows.receive_all(app, 4)
    assert (await flows.session_row(session_id)).state == "offered"
    await ws.send(app, answer_frame(session_id))
    for candidate in APP_CANDIDATES:
        await ws.send(app, ice_frame(session_id, candidate))
    await flows.receive_all(robot, 5)
    assert (await flows.session_row(session_id)).state == "answered"
    await ws.send(app, {"type": "webrtc_close", "session_id": session_id})
    await ws.recv(robot)
    row = await flows.session_row(session_id)
    assert row.state == "ended" and row.end_reason == "closed_by_app"
    assert row.created_at <= row.offered_at <= row.answered_at <= row.ended_at
    assert (row.robot_ice_candidates, row.app_ice_candidates) == (3, 4)
    assert row.user_id == world.u1.pk and row.device_id == world.r1.pk
    await ws.close(robot, app)


async def test_closed_by_app(world):
    """The app's `webrtc_close` (extra keys such as `device_id` kept) reaches the robot with reason
    `closed_by_app`; the app is not echoed; the session ends."""
    robot, app = await flows.robot_app(world)
    session_id = await flows.answered_session(app, robot)
    frame = {"type": "webrtc_close", "session_id": session_id, "device_id": R1}
    await ws.send(app, frame)
    assert await ws.recv(robot) == {**frame, "reason": "closed_by_app"}
    assert await ws.nothing(app, robot)
    assert (await flows.session_row(session_id)).end_reason == "closed_by_app"
    await ws.close(robot, app)


async def test_closed_by_robot(world):
    """The robot's `webrtc_close` reaches the opening app with reason `closed_by_robot`; the robot is not
    echoed; the session ends."""
    robot, app = await flows.robot_app(world)
    session_id = await flows.answered_session(app, robot)
    await ws.send(robot, {"type": "webrtc_close", "session_id": session_id})
    assert await ws.recv(app) == close_frame(session_id, "closed_by_robot")
    assert await ws.nothing(robot, app)
    assert (await flows.session_row(session_id)).end_reason == "closed_by_robot"
    await ws.close(robot, app)


async def test_another_app_socket_of_the_user_may_close(world):
    """Any app socket of the session's user may close it: the robot and the opening app both get
    `webrtc_close` with reason `closed_by_app`; the closing socket is not echoed."""
    robot, a1 = await flows.robot_app(world)
    a2 = await ws.app(world.t1, drain_status=1)
    session_id, _, _ = await flows.open_session(a1, robot)
    await ws.send(a2, {"type": "webrtc_close", "session_id": session_id})
    assert await ws.recv(robot) == close_frame(session_id, "closed_by_app")
    assert await ws.recv(a1) == close_frame(session_id, "closed_by_app")
    assert await ws.nothing(a2)
    assert (await flows.session_row(session_id)).end_reason == "closed_by_app"
    await ws.close(robot, a1, a2)


async def test_another_app_socket_of_the_user_may_signal_but_replies_go_to_the_opener(world):
    """An app of the session's user may send answer/ICE; the robot's offer and ICE still go to the one
    app connection that opened the session."""
    robot, a1 = await flows.robot_app(world)
    a2 = await ws.app(world.t1, drain_status=1)
    session_id, _, _ = await flows.open_session(a1, robot)
    await ws.send(a2, ice_frame(session_id, APP_CANDIDATES[0]))
    assert await ws.recv(robot) == ice_frame(session_id, APP_CANDIDATES[0])
    await ws.send(robot, ice_frame(session_id, ROBOT_CANDIDATES[0]))
    assert await ws.recv(a1) == ice_frame(session_id, ROBOT_CANDIDATES[0])
    assert await ws.nothing(a2)
    await ws.close(robot, a1, a2)


async def test_app_disconnected(world):
    """When the opening app's socket closes, the robot gets `webrtc_close` reason `app_disconnected`."""
    robot, app = await flows.robot_app(world)
    session_id = await flows.answered_session(app, robot)
    await app.disconnect(code=1001)
    assert await ws.recv(robot) == close_frame(session_id, "app_disconnected")
    assert (await flows.session_row(session_id)).end_reason == "app_disconnected"
    await ws.close(robot)


async def test_other_app_disconnecting_does_not_end_the_session(world):
    """Only the opening app's disconnect ends a session; another socket of the user leaving does not."""
    robot, a1 = await flows.robot_app(world)
    a2 = await ws.app(world.t1, drain_status=1)
    session_id = await flows.answered_session(a1, robot)
    await a2.disconnect()
    assert await ws.nothing(robot, a1)
    assert (await flows.session_row(session_id)).ended_at is None
    await ws.close(robot, a1)


async def test_robot_disconnected(world):
    """When the robot's socket closes, the app gets `webrtc_close` reason `robot_disconnected`."""
    robot, app = await flows.robot_app(world)
    session_id = await flows.answered_session(app, robot)
    await robot.disconnect(code=1006)
    assert await ws.recv_type(app, "webrtc_close") == close_frame(session_id, "robot_disconnected")
    assert (await flows.session_row(session_id)).end_reason == "robot_disconnected"
    await ws.close(app)


async def test_superseded_by_a_new_request_when_at_max_sessions(world):
    """With the default of one session per device, a new request ends the old one with `superseded` at
    both its parties (its app and the robot)."""
    robot, a1 = await flows.robot_app(world)
    a2 = await ws.app(world.t1, drain_status=1)
    old, _, _ = await flows.open_session(a1, robot)
    await ws.send(a2, {"type": "webrtc_request", "device_id": R1})
    frames = await flows.receive_all(robot, 2)
    assert close_frame(old, "superseded") in frames
    new = next(f for f in frames if f["type"] == "webrtc_request")["session_id"]
    assert (await ws.recv(a2))["session_id"] == new
    assert await ws.recv(a1) == close_frame(old, "superseded")
    assert (await flows.session_row(old)).end_reason == "superseded"
    assert (await flows.session_row(new)).ended_at is None
    await ws.close(robot, a1, a2)


async def test_max_sessions_setting_supersedes_only_the_oldest(world, settings):
    """With `WIMZ_MAX_SESSIONS_PER_DEVICE=2`, two sessions live side by side; a third ends the oldest."""
    settings.WIMZ_MAX_SESSIONS_PER_DEVICE = 2
    robot, app = await flows.robot_app(world)
    s1, _, _ = await flows.open_session(app, robot)
    s2, _, _ = await flows.open_session(app, robot)
    assert await ws.nothing(app, robot)
    await ws.send(app, {"type": "webrtc_request", "device_id": R1})
    frames = await flows.receive_all(app, 2)
    assert close_frame(s1, "superseded") in frames
    assert (await flows.session_row(s2)).ended_at is None
    await ws.close(robot, app)


async def test_superseded_when_the_robot_is_replaced(world, settings):
    """A robot reconnecting (4009 for the old socket) ends every session of the old socket with
    `superseded` at their apps; the new socket is told nothing about them."""
    settings.WIMZ_MAX_SESSIONS_PER_DEVICE = 2
    s1, app = await flows.robot_app(world)
    first = await flows.answered_session(app, s1)
    second, _, _ = await flows.open_session(app, s1)
    s2 = await ws.robot(R1, world.r1_secret)
    closes = [await ws.recv_type(app, "webrtc_close") for _ in range(2)]
    assert sorted(closes, key=str) == sorted(
        [close_frame(first, "superseded"), close_frame(second, "superseded")], key=str
    )
    await flows.expect_close(s1, 4009)
    assert await ws.nothing(s2)
    for sid in (first, second):
        assert (await flows.session_row(sid)).end_reason == "superseded"
    await ws.close(s1, s2, app)


async def test_setup_timeout_ends_an_unanswered_session(world, settings):
    """A session not answered within `WIMZ_SESSION_SETUP_TIMEOUT` ends with `setup_timeout` at both
    parties, even when it was offered."""
    settings.WIMZ_SESSION_SETUP_TIMEOUT = 0.4
    robot, app = await flows.robot_app(world)
    session_id, _, _ = await flows.open_session(app, robot)
    await ws.send(robot, offer_frame(session_id))
    assert (await ws.recv(app))["type"] == "webrtc_offer"
    assert await ws.recv(app) == close_frame(session_id, "setup_timeout")
    assert await ws.recv(robot) == close_frame(session_id, "setup_timeout")
    row = await flows.session_row(session_id)
    assert row.end_reason == "setup_timeout" and row.answered_at is None
    await ws.close(robot, app)


async def test_answered_session_does_not_time_out(world, settings):
    """Once answered, the setup timer no longer applies."""
    settings.WIMZ_SESSION_SETUP_TIMEOUT = 0.4
    robot, app = await flows.robot_app(world)
    session_id = await flows.answered_session(app, robot)
    assert await ws.nothing(robot, app, timeout=0.8)
    assert (await flows.session_row(session_id)).ended_at is None
    await ws.close(robot, app)


async def test_robot_error(world):
    """The robot's `webrtc_error` is forwarded unchanged to the app, and the session ends with
    `robot_error`: every party still connected gets `webrtc_close` with that reason."""
    robot, app = await flows.robot_app(world)
    session_id, _, _ = await flows.open_session(app, robot)
    frame = {"type": "webrtc_error", "session_id": session_id, "error": "WebRTC service not available"}
    await ws.send(robot, frame)
    assert await ws.recv(app) == frame
    assert await ws.recv(app) == close_frame(session_id, "robot_error")
    assert await ws.recv(robot) == close_frame(session_id, "robot_error")
    assert (await flows.session_row(session_id)).end_reason == "robot_error"
    await ws.close(robot, app)


async def test_unpaired(world):
    """Unpairing (devices service) tells the owner's apps `device_status` `unpaired` and ends the
    device's sessions with reason `unpaired` on both sides; afterwards the robot reaches nobody and
    the former owner cannot address it."""
    robot, app = await flows.robot_app(world)
    session_id = await flows.answered_session(app, robot)

    def unpair():
        device_services.device_unpair(user=world.u1, device=Device.objects.get(device_id=R1))

    await database_sync_to_async(unpair)()
    frames = await flows.receive_all(app, 2)
    assert close_frame(session_id, "unpaired") in frames
    status = next(f for f in frames if f["type"] == "device_status")
    assert status["device_id"] == R1 and status["status"] == "unpaired" and status["online"] is False
    assert await ws.recv(robot) == close_frame(session_id, "unpaired")
    assert (await flows.session_row(session_id)).end_reason == "unpaired"
    await ws.send(robot, {"type": "status_update", "battery": 3})
    await ws.send(app, {"type": "command", "device_id": R1, "command": "motor", "data": {}})
    await flows.expect_error(app, "NOT_AUTHORIZED")
    assert await ws.nothing(robot, app)
    await ws.close(robot, app)


async def test_ended_session_answers_session_not_found_to_the_app_side(world):
    """An ended session answers SESSION_NOT_FOUND (ref = session_id) to any app socket of its user,
    including one connected after it ended; nothing is forwarded."""
    robot, a1 = await flows.robot_app(world)
    session_id = await flows.answered_session(a1, robot)
    await ws.send(a1, {"type": "webrtc_close", "session_id": session_id})
    await ws.recv(robot)
    a2 = await ws.app(world.t1, drain_status=1)
    for app in (a1, a2):
        for frame in (
            ice_frame(session_id, APP_CANDIDATES[0]),
            answer_frame(session_id),
            {"type": "webrtc_close", "session_id": session_id},
        ):
            await ws.send(app, frame)
            await flows.expect_error(app, "SESSION_NOT_FOUND", ref=session_id)
    assert await ws.nothing(robot)
    await ws.close(robot, a1, a2)


async def test_ended_session_answers_session_not_found_to_the_robot_side(world):
    """An ended session answers SESSION_NOT_FOUND to its robot for offer, ICE, error and close."""
    robot, app = await flows.robot_app(world)
    session_id, _, _ = await flows.open_session(app, robot)
    await ws.send(robot, {"type": "webrtc_close", "session_id": session_id})
    await ws.recv(app)
    for frame in (
        offer_frame(session_id),
        ice_frame(session_id, ROBOT_CANDIDATES[0]),
        {"type": "webrtc_error", "session_id": session_id, "error": "x"},
        {"type": "webrtc_close", "session_id": session_id},
    ):
        await ws.send(robot, frame)
        await flows.expect_error(robot, "SESSION_NOT_FOUND", ref=session_id)
    assert await ws.nothing(app)
    await ws.close(robot, app)


async def test_ended_session_answers_session_not_found_to_the_reconnected_robot(world):
    """The session's robot is the device: after its socket dropped (session ended `robot_disconnected`)
    and it reconnected, a late frame for that session answers SESSION_NOT_FOUND, not NOT_AUTHORIZED."""
    robot, app = await flows.robot_app(world)
    session_id = await flows.answered_session(app, robot)
    await robot.disconnect(code=1006)
    assert await ws.recv_type(app, "webrtc_close") == close_frame(session_id, "robot_disconnected")
    robot = await ws.robot(R1, world.r1_secret)
    for frame in (ice_frame(session_id, ROBOT_CANDIDATES[0]), {"type": "webrtc_close", "session_id": session_id}):
        await ws.send(robot, frame)
        await flows.expect_error(robot, "SESSION_NOT_FOUND", ref=session_id)
    await ws.close(robot, app)


async def test_others_sessions_and_unknown_ids_answer_not_authorized(world):
    """Session ids that are someone else's (live or ended) or never existed answer NOT_AUTHORIZED, to
    apps and robots alike, so ids cannot be probed; nothing reaches the session's parties."""
    robot, a1 = await flows.robot_app(world)
    r2 = await ws.robot(R2, world.r2_secret)
    b1 = await ws.app(world.t2, drain_status=1)
    live, _, _ = await flows.open_session(a1, robot)
    unknown = str(uuid.uuid4())
    for sid in (live, unknown, "not-a-uuid"):
        closing = {"type": "webrtc_close", "session_id": sid}
        for frame in (answer_frame(sid), ice_frame(sid, APP_CANDIDATES[0]), closing):
            await ws.send(b1, frame)
            await flows.expect_error(b1, "NOT_AUTHORIZED")
        for frame in (
            offer_frame(sid),
            ice_frame(sid, ROBOT_CANDIDATES[0]),
            {"type": "webrtc_error", "session_id": sid, "error": "x"},
            {"type": "webrtc_close", "session_id": sid},
        ):
            await ws.send(r2, frame)
            await flows.expect_error(r2, "NOT_AUTHORIZED")
    await ws.send(a1, {"type": "webrtc_close", "session_id": live})
    await ws.recv(robot)
    await ws.send(b1, {"type": "webrtc_close", "session_id": live})
    await flows.expect_error(b1, "NOT_AUTHORIZED")
    await ws.send(r2, {"type": "webrtc_close", "session_id": live})
    await flows.expect_error(r2, "NOT_AUTHORIZED")
    assert await ws.nothing(robot, a1)
    await ws.close(robot, a1, r2, b1)


async def test_end_of_candidates_and_null_sdp_mid_are_forwarded_as_sent(world):
    """A `null` candidate (end of candidates), `sdpMid` null and `sdpMLineIndex` 0 pass unchanged."""
    robot, app = await flows.robot_app(world)
    session_id, _, _ = await flows.open_session(app, robot)
    odd = {
        "candidate": ROBOT_CANDIDATES[0]["candidate"],
        "sdpMid": None,
        "sdpMLineIndex": 0,
        "usernameFragment": "CC5H",
    }
    for candidate in (odd, None, {"candidate": "", "sdpMid": "0", "sdpMLineIndex": 0}):
        await ws.send(robot, ice_frame(session_id, candidate))
        got = await ws.recv(app)
        assert got == ice_frame(session_id, candidate)
    assert type(got["candidate"]["sdpMLineIndex"]) is int
    await ws.close(robot, app)


async def test_renegotiation_offer_is_forwarded_and_keeps_the_first_timestamps(world):
    """A second offer/answer in a live session is forwarded; the history keeps the first timestamps."""
    robot, app = await flows.robot_app(world)
    session_id = await flows.answered_session(app, robot)
    first = await flows.session_row(session_id)
    await asyncio.sleep(0.01)
    await ws.send(robot, offer_frame(session_id))
    assert await ws.recv(app) == offer_frame(session_id)
    await ws.send(app, answer_frame(session_id))
    assert await ws.recv(robot) == answer_frame(session_id)
    row = await flows.session_row(session_id)
    assert (row.offered_at, row.answered_at, row.state) == (first.offered_at, first.answered_at, "answered")
    await ws.close(robot, app)
