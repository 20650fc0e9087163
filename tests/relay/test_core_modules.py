"""The relay core's modules driven directly, without a socket, on the in-memory channel layer.

Each concern is called as a consumer would call it, with a `Party` and plain channels standing for
the other sockets; what the other sockets' channels receive is read straight from the layer.
"""

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from relay import addressing, connections, delivery, dispatch, messaging, ownership, sessions
from relay.models import Connection, Session
from relay.party import APP, ROBOT, LiveSession, Party
from relay.protocol import RelayError

R1 = "wimz_robot_01"


async def _channel() -> str:
    return await get_channel_layer().new_channel()


def _queued(channel: str) -> list[dict]:
    layer, out = get_channel_layer(), []
    while (message := layer.receive_nowait(channel)) is not None:
        out.append(message)
    return out


async def _robot(world) -> Party:
    party = Party(ROBOT, await _channel(), device_pk=world.r1.pk, device_id=R1)
    await connections.robot_connected(party)
    return party


async def _app(world, user=None) -> tuple[Party, list[dict]]:
    user = user or world.u1
    party = Party(APP, await _channel(), user_id=user.pk)
    return party, await connections.app_connected(party)


# --- addressing ------------------------------------------------------------------------------------


def test_address_checks_authorization_before_availability():
    party = Party(APP, "c", user_id=1, devices={"a": 1, "b": 2}, robots={"a": "specific.x!a"})
    assert addressing.address(party, "a").robot_channel == "specific.x!a"
    for device_id, code in (("b", "DEVICE_OFFLINE"), ("zzz", "NOT_AUTHORIZED"), (None, "BAD_REQUEST")):
        with pytest.raises(RelayError) as error:
            addressing.address(party, device_id, ref="command")
        assert (error.value.code, error.value.ref) == (code, "command")
    with pytest.raises(RelayError) as none:
        addressing.address(Party(APP, "c", user_id=1), None)
    assert none.value.code == "NO_DEVICE"
    only = Party(APP, "c", user_id=1, devices={"a": 1}, robots={"a": "ch"})
    assert addressing.address(only, None).device_id == "a"


def test_device_updates_add_remove_and_locate_devices():
    party = Party(APP, "c", user_id=1)
    addressing.apply_device_update(party, {"device_id": "a", "device_pk": 1, "robot_channel": "ch"})
    assert party.robots == {}  # not owned: where its robot is does not matter
    addressing.apply_device_update(party, {"device_id": "a", "device_pk": 1, "owned": True, "robot_channel": "ch"})
    assert party.devices == {"a": 1} and party.robots == {"a": "ch"}
    addressing.apply_device_update(party, {"device_id": "a", "device_pk": 1, "robot_channel": None})
    assert party.robots == {}
    addressing.apply_device_update(party, {"device_id": "a", "device_pk": 1, "robot_channel": "ch2"})
    addressing.apply_device_update(party, {"device_id": "a", "device_pk": 1, "owned": False})
    assert party.devices == {} and party.robots == {}


# --- connections -----------------------------------------------------------------------------------


async def test_connect_loads_facts_and_tells_the_owner_where_the_robot_is(world):
    app, snapshot = await _app(world)
    assert app.devices == {R1: world.r1.pk} and app.robots == {}
    assert [(f["device_id"], f["status"]) for f in snapshot] == [(R1, "offline")]
    robot = await _robot(world)
    assert robot.owner_id == world.u1.pk
    (update,) = _queued(app.channel_name)
    assert update["type"] == "relay.device" and update["robot_channel"] == robot.channel_name
    assert delivery.encode({"type": "device_status"})[:5] == update["text"][:5]
    # A second app now finds the robot online without any message.
    app2, snapshot2 = await _app(world)
    assert app2.robots == {R1: robot.channel_name} and snapshot2[0]["status"] == "online"


async def test_heartbeat_refreshes_every_row_of_the_process_in_a_few_queries(world):
    robot = await _robot(world)
    for _ in range(5):
        await _app(world)
    instance = get_channel_layer().instance

    @database_sync_to_async
    def beat_and_count() -> tuple[int, int]:
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        old = Connection.objects.filter(disconnected_at__isnull=True).update(heartbeat_at="2000-01-01T00:00:00Z")
        with CaptureQueriesContext(connection) as queries:
            connections._beat_db.func(instance, [robot.device_pk], [world.u1.pk], [])
        fresh = Connection.objects.filter(disconnected_at__isnull=True, heartbeat_at__year__gt=2000).count()
        assert old == fresh == 6
        return len(queries), fresh

    queries, _ = await beat_and_count()
    assert queries <= 4  # one UPDATE for all rows of the process (+ robots, users), not one per socket


async def test_disconnect_ends_sessions_writes_ice_counts_and_tells_the_owner(world):
    app, _ = await _app(world)
    robot = await _robot(world)
    _queued(app.channel_name)
    app.robots = {R1: robot.channel_name}
    outcome = await sessions.request(app, {"type": "webrtc_request", "device_id": R1})
    sid = outcome.opened.session_id
    sessions.opened_by_app(robot, _queued(robot.channel_name)[0])
    robot.sessions[sid].ice = 4
    ended = await connections.robot_disconnected(robot, 1000)
    assert [ref.session_id for ref in ended] == [sid]
    kinds = [m["type"] for m in _queued(app.channel_name)]
    assert kinds == ["relay.session_end", "relay.device"]
    row = await database_sync_to_async(Session.objects.get)(pk=sid)
    assert (row.end_reason, row.robot_ice_candidates) == ("robot_disconnected", 4)


# --- messaging -------------------------------------------------------------------------------------


async def test_event_goes_to_the_owner_group_and_nowhere_without_an_owner(world):
    robot = await _robot(world)
    app, _ = await _app(world)
    stranger, _ = await _app(world, world.u2)
    await messaging.event(robot, {"type": "battery", "level": 3})
    (message,) = _queued(app.channel_name)
    assert message["type"] == "relay.event" and message["device_id"] == R1 and '"level":3' in message["text"]
    assert _queued(stranger.channel_name) == []
    robot.owner_id = None
    await messaging.event(robot, {"type": "battery"})
    assert _queued(app.channel_name) == []


async def test_event_to_a_full_app_socket_is_rate_limited_not_lost(world, settings):
    robot = await _robot(world)
    await _app(world)  # the owner's app, whose queue the events fill
    layer = get_channel_layer()
    layer.capacity = 1
    await messaging.event(robot, {"type": "battery"})
    with pytest.raises(RelayError) as error:
        await messaging.event(robot, {"type": "battery"})
    assert (error.value.code, error.value.ref) == ("RATE_LIMITED", "battery")


async def test_command_to_a_robot_that_left_is_device_offline(world):
    app, _ = await _app(world)
    app.robots = {R1: "specific.gone!x"}
    with pytest.raises(RelayError) as error:
        await messaging.command(app, {"type": "command", "device_id": R1, "command": "m"}, "command")
    assert error.value.code == "DEVICE_OFFLINE"


async def test_command_carries_params_for_deployed_robots(world):
    robot = await _robot(world)
    app, _ = await _app(world)
    _queued(app.channel_name)
    app.robots = {R1: robot.channel_name}
    await dispatch.app_frame(app, "command", {"type": "command", "command": "motor", "data": {"l": 1}})
    (message,) = _queued(robot.channel_name)
    assert (
        message["text"] == '{"type":"command","command":"motor","data":{"l":1},"device_id":"wimz_robot_01",'
        '"params":{"l":1}}'
    )


# --- sessions --------------------------------------------------------------------------------------


async def test_signaling_uses_the_parties_facts_and_records_transitions(world, monkeypatch):
    robot = await _robot(world)
    app, _ = await _app(world)
    _queued(app.channel_name)
    app.robots = {R1: robot.channel_name}
    outcome = await sessions.request(app, {"type": "webrtc_request"})
    sid = outcome.opened.session_id
    assert [r["type"] for r in outcome.replies] == ["webrtc_credentials"]
    sessions.opened_by_app(robot, _queued(robot.channel_name)[0])
    assert robot.sessions[sid] == LiveSession(device_id=R1, peer=app.channel_name)

    ice = {"type": "webrtc_ice", "session_id": sid, "candidate": {"candidate": "c", "sdpMid": "0", "sdpMLineIndex": 0}}

    def no_database(*args, **kwargs):
        raise AssertionError("the database was used on the per-frame path")

    with monkeypatch.context() as m:  # ICE between the parties: no database at all
        m.setattr(sessions, "database_sync_to_async", no_database)
        for _ in range(3):
            await dispatch.robot_frame(robot, "webrtc_ice", ice)
    assert [m["sid"] for m in _queued(app.channel_name)] == [sid] * 3
    await dispatch.app_frame(app, "webrtc_close", {"type": "webrtc_close", "session_id": sid})
    (end,) = _queued(robot.channel_name)
    assert end["type"] == "relay.session_end" and '"reason":"closed_by_app"' in end["text"]
    await sessions.ended_elsewhere(robot, end)
    row = await database_sync_to_async(Session.objects.get)(pk=sid)
    assert (row.state, row.robot_ice_candidates) == ("ended", 3)
    with pytest.raises(RelayError) as error:
        await dispatch.robot_frame(robot, "webrtc_ice", ice)
    assert error.value.code == "SESSION_NOT_FOUND"


async def test_a_frame_for_a_session_the_receiver_no_longer_holds_is_bounced(world):
    app, _ = await _app(world)
    robot = Party(ROBOT, await _channel(), device_pk=world.r1.pk, device_id=R1)
    held = await sessions.check_party(robot, {"sid": "s1", "reply_to": app.channel_name})
    assert held is False
    (bounce,) = _queued(app.channel_name)
    assert '"code":"SESSION_NOT_FOUND"' in bounce["text"] and '"ref":"s1"' in bounce["text"]


# --- ownership -------------------------------------------------------------------------------------


async def test_unpair_drops_the_device_from_the_former_owner_before_telling_it(world):
    robot = await _robot(world)
    app, _ = await _app(world)
    _queued(app.channel_name)
    await database_sync_to_async(lambda: world.r1.__class__.objects.filter(pk=world.r1.pk).update(owner=None))()
    await ownership.device_unpaired_async(device_id=R1, device_pk=world.r1.pk, former_owner_id=world.u1.pk)
    first, last = _queued(app.channel_name)
    assert (first["type"], first["owned"], "text" in first) == ("relay.device", False, False)
    assert '"status":"unpaired"' in last["text"]
    (owner,) = _queued(robot.channel_name)
    assert owner == {"type": "relay.owner", "owner_id": None}


async def test_a_shed_report_from_another_instance_reaches_the_sender_as_rate_limited(world):
    """`relay.shed` (the receiving instance found a full queue) is written to the sender's socket as
    RATE_LIMITED with the frame's ref: a frame lost between instances is never silent."""
    from tests.support import asgi as ws

    robot = await ws.robot(R1, world.r1_secret)
    channel = await database_sync_to_async(
        lambda: Connection.objects.get(role="robot", disconnected_at__isnull=True).channel_name
    )()
    await get_channel_layer().send(channel, {"type": "relay.shed", "ref": "telemetry", "count": 2})
    error = await ws.recv(robot)
    assert (error["type"], error["code"], error["ref"]) == ("error", "RATE_LIMITED", "telemetry")
    assert "2 socket(s)" in error["message"]
    await ws.close(robot)


async def test_a_request_on_stale_ownership_facts_opens_no_session(world):
    """An app socket whose facts still list a device that was unpaired a moment ago (the update is on
    its way) cannot open a session with it: ownership is checked under the device row lock, so no
    session outlives an unpair or follows the robot to its next owner."""
    robot = await _robot(world)
    app, _ = await _app(world)
    _queued(app.channel_name)
    app.robots = {R1: robot.channel_name}
    await database_sync_to_async(lambda: world.r1.__class__.objects.filter(pk=world.r1.pk).update(owner=None))()
    with pytest.raises(RelayError) as error:
        await sessions.request(app, {"type": "webrtc_request", "device_id": R1})
    assert (error.value.code, error.value.ref) == ("NOT_AUTHORIZED", "webrtc_request")
    assert await database_sync_to_async(Session.objects.count)() == 0
    assert _queued(robot.channel_name) == []


async def test_the_liveness_beat_never_waits_for_the_database(settings, monkeypatch, require_services):
    """The beat that keeps this instance alive touches Redis only: with thousands of handshakes queued
    on the process's one ORM thread it must still run on time, or a busy instance would be declared
    dead and its sockets closed (seen in the benchmark at 5,000 robots before the fix)."""
    import os

    from relay import liveness

    settings.REDIS_URL = os.environ["REDIS_URL"]

    def no_database(*args, **kwargs):
        raise AssertionError("the liveness beat used the database")

    monkeypatch.setattr(connections, "database_sync_to_async", no_database)
    await connections.liveness_once()
    instance = get_channel_layer().instance
    value = await liveness._client().get(liveness.live_key(instance))
    await liveness._client().delete(liveness.live_key(instance))
    assert value == b"1"


async def test_a_handshake_that_waited_too_long_is_refused_before_any_presence_work(world, settings):
    """Under a connect storm a handshake may wait for the relay longer than the server keeps it open
    (daphne: 5 s). Past `WIMZ_HANDSHAKE_BUDGET` it is refused at once: no presence row, no `online`
    pushed to the owner for a robot whose socket is already gone."""
    from tests.support import asgi as ws

    app = await ws.app(world.t1, drain_status=1)
    settings.WIMZ_HANDSHAKE_BUDGET = -1.0  # every handshake is "too old"
    with pytest.raises(AssertionError):
        await ws.robot(R1, world.r1_secret)
    assert await database_sync_to_async(Connection.objects.filter(role="robot").count)() == 0
    assert await ws.nothing(app)
    settings.WIMZ_HANDSHAKE_BUDGET = 4.0
    robot = await ws.robot(R1, world.r1_secret, int(__import__("time").time()) + 1)
    assert (await ws.recv(app))["status"] == "online"
    await ws.close(robot, app)


async def test_an_instance_is_dead_only_when_its_key_is_missing_in_two_looks_a_beat_apart(settings, require_services):
    """A Redis restart drops every liveness key at once; live instances put theirs back within a beat.
    So one look at a missing key never condemns an instance: only a second look, a beat later."""
    import os
    import uuid

    from relay import liveness

    settings.REDIS_URL = os.environ["REDIS_URL"]
    gone, back = f"gone{uuid.uuid4().hex[:8]}", f"back{uuid.uuid4().hex[:8]}"
    beat = settings.WIMZ_INSTANCE_BEAT
    assert await liveness.dead([gone, back], now=100.0) == []  # first look: both missing, none dead
    await liveness.refresh(back)  # `back` refreshes (as after a Redis restart)
    try:
        assert await liveness.dead([gone, back], now=100.0 + beat) == [gone]
    finally:
        await liveness._client().delete(liveness.live_key(back))
        liveness.forget(gone)
        liveness.forget(back)


async def test_a_deactivated_user_loses_every_open_app_socket_at_once(world):
    """Deactivating a user (admin, `save()`) closes every app socket of that user (4003) right after
    commit — a socket opened with a still-valid token does not keep control; other users are untouched."""
    from tests.relay import flows
    from tests.support import asgi as ws

    app = await ws.app(world.t1, drain_status=1)
    other = await ws.app(world.t2, drain_status=1)

    def deactivate():
        world.u1.is_active = False
        world.u1.save(update_fields=["is_active"])

    await database_sync_to_async(deactivate)()
    await flows.expect_close(app, 4003)
    assert await ws.nothing(other)
    await ws.close(other)


async def test_a_user_deactivated_without_a_signal_is_closed_at_the_next_heartbeat(world):
    """A bulk `update()` sends no signal: the process heartbeat finds the inactive user and closes its
    app sockets (4003)."""
    from accounts.models import User
    from tests.relay import flows
    from tests.support import asgi as ws

    app = await ws.app(world.t1, drain_status=1)
    await database_sync_to_async(lambda: User.objects.filter(pk=world.u1.pk).update(is_active=False))()
    assert await ws.nothing(app)
    await connections.heartbeat_once()
    await flows.expect_close(app, 4003)
