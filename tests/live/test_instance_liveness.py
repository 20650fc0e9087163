"""A relay instance lost without a chance to clean up is noticed within 15 s (docs/protocol.md §19.3).

Two real instances on PostgreSQL + Redis with the default liveness settings (beat 3 s, TTL 8 s):
robot R1 on instance A, its owner's app on instance B, a session open between them. Each test makes
its own pair of instances, since it kills or pauses one.
"""

import asyncio
import os
import signal
import time

import pytest

from relay.models import Connection, Session
from tests.live.conftest import relay_env, running_relays
from tests.support import live as c

pytestmark = [pytest.mark.live, pytest.mark.services]

R1 = "wimz_robot_01"
BOUND = 15.0  # seconds: the detection bound the relay promises with its default settings


@pytest.fixture
def two_relays(django_db_setup, settings, tmp_path, require_services):
    with running_relays(relay_env(settings), tmp_path) as relays:
        yield relays


async def _robot_app_session(a, b, world):
    robot = await c.robot(a.ws, R1, world.r1_secret)
    app = await c.app(b.ws, world.t1)
    assert (await c.recv_type(app, "device_status"))["online"] is True
    await c.send(app, {"type": "webrtc_request", "device_id": R1})
    sid = (await c.recv_type(app, "webrtc_credentials"))["session_id"]
    assert (await c.recv_type(robot, "webrtc_request"))["session_id"] == sid
    return robot, app, sid


async def _until_told(app, sid, started: float) -> float:
    """Wait (bounded) for `webrtc_close` robot_disconnected and `device_status` offline; seconds taken."""
    got_close = got_offline = False
    while not (got_close and got_offline):
        frame = await c.recv(app, timeout=BOUND + 5)
        got_close |= frame == {"type": "webrtc_close", "session_id": sid, "reason": "robot_disconnected"}
        got_offline |= frame.get("type") == "device_status" and frame.get("status") == "offline"
    return time.monotonic() - started


async def test_kill_9_of_the_robots_instance_is_noticed_within_the_bound(two_relays, world):
    """kill -9 of A: the owner's app on B gets `webrtc_close` (robot_disconnected) and `device_status`
    offline within 15 s, A's rows are closed, the session row ended; the robot reconnecting to B is
    online at once."""
    a, b = two_relays
    robot, app, sid = await _robot_app_session(a, b, world)
    started = time.monotonic()
    os.kill(a.pid, signal.SIGKILL)
    taken = await _until_told(app, sid, started)
    assert taken <= BOUND, taken
    row = await c.db(lambda: Session.objects.get(pk=sid))
    assert (row.end_reason, row.ended_at is not None) == ("robot_disconnected", True)
    assert await c.db(lambda: Connection.objects.filter(role="robot", disconnected_at__isnull=True).count()) == 0

    again = await c.robot(b.ws, R1, world.r1_secret, ts=int(time.time()) + 1)
    status = await c.recv_type(app, "device_status")
    assert status["status"] == "online"
    await c.send(app, {"type": "command", "device_id": R1, "command": "after", "data": {}})
    assert (await c.recv_type(again, "command"))["command"] == "after"
    await again.close()
    await app.close()
    await robot.close()


async def test_a_paused_instance_that_resumes_closes_its_stale_sockets(two_relays, world):
    """SIGSTOP of A past the bound: B's app is told as for a crash; the robot reconnects to B. When A
    resumes it finds it was cleaned up after and closes its old robot socket (1012): one live robot
    socket for the device, the ended session stays ended, commands reach the new socket once."""
    a, b = two_relays
    robot, app, sid = await _robot_app_session(a, b, world)
    instance = await c.db(lambda: Connection.objects.get(role="robot", disconnected_at__isnull=True).instance)
    started = time.monotonic()
    os.kill(a.pid, signal.SIGSTOP)
    try:
        assert await _until_told(app, sid, started) <= BOUND
        # The survivor also closed the paused instance's Redis subscription: frames for its sockets
        # now fail at once instead of waiting in a stopped process, and no change waits for it.
        import redis.asyncio as redis

        client = redis.Redis.from_url(a.env["REDIS_URL"])
        try:
            subscribers = dict(await client.pubsub_numsub(f"{a.env['WIMZ_CHANNEL_PREFIX']}:p:{instance}"))
        finally:
            await client.aclose()
        assert list(subscribers.values()) == [0]
        again = await c.robot(b.ws, R1, world.r1_secret, ts=int(time.time()) + 1)
        assert (await c.recv_type(app, "device_status"))["status"] == "online"
    finally:
        os.kill(a.pid, signal.SIGCONT)
    # A's next beat finds its claim and closes the stale socket (bounded wait).
    await asyncio.wait_for(robot.wait_closed(), 10)
    assert robot.close_code == 1012
    live = await c.db(
        lambda: list(
            Connection.objects.filter(role="robot", disconnected_at__isnull=True).values_list("channel_name", flat=True)
        )
    )
    assert len(live) == 1
    row = await c.db(lambda: Session.objects.get(pk=sid))
    assert row.end_reason == "robot_disconnected"
    await c.send(app, {"type": "command", "device_id": R1, "command": "once", "data": {}})
    assert (await c.recv_type(again, "command"))["command"] == "once"
    assert await c.nothing(again) and await c.nothing(app)
    await again.close()
    await app.close()
