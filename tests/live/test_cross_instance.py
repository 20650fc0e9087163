"""Two daphne instances sharing PostgreSQL and Redis act as one relay (issue: "Routing through the
channel layer"): the robot on instance A, its owner's app on instance B.
"""

import asyncio
import time

import httpx
import pytest
import websockets

from relay.models import Session
from tests.fixtures import aiortc_call
from tests.live.conftest import STATS_TOKEN
from tests.support import live as c

pytestmark = [pytest.mark.live, pytest.mark.services]


def _call_fixture():
    call = aiortc_call()
    return call["offer"], call["answer"], call["robot_candidates"]


async def test_signaling_event_and_command_across_instances(live_relays, world):
    """Robot on A, app on B: session request → offer → answer → ICE both ways → close, an event
    robot → app and a command app → robot, each delivered exactly once, byte for byte; the other
    user's app (on A) receives nothing.
    """
    a, b = live_relays
    offer, answer, _ = _call_fixture()
    robot = await c.robot(a.ws, "wimz_robot_01", world.r1_secret)
    app = await c.app(b.ws, world.t1)
    other = await c.app(a.ws, world.t2)
    try:
        status = await c.recv_type(app, "device_status")
        assert status["device_id"] == "wimz_robot_01" and status["online"] is True
        await c.recv_type(other, "device_status")  # U2's own snapshot (R2 offline)

        await c.send(app, {"type": "webrtc_request", "device_id": "wimz_robot_01"})
        creds = await c.recv_type(app, "webrtc_credentials")
        request = await c.recv_type(robot, "webrtc_request")
        sid = creds["session_id"]
        assert request["session_id"] == sid and request["ice_servers"] == creds["ice_servers"]

        offer_frame = {"type": "webrtc_offer", "session_id": sid, "sdp": offer}
        await c.send(robot, offer_frame)
        assert await c.recv(app) == offer_frame
        robot_ice = {
            "type": "webrtc_ice",
            "session_id": sid,
            "candidate": {
                "candidate": "candidate:1 1 udp 2130706431 192.0.2.2 47088 typ host",
                "sdpMid": "0",
                "sdpMLineIndex": 0,
            },
        }
        await c.send(robot, robot_ice)
        assert await c.recv(app) == robot_ice

        answer_frame = {"type": "webrtc_answer", "session_id": sid, "sdp": answer}
        await c.send(app, answer_frame)
        assert await c.recv(robot) == answer_frame
        app_ice = {
            "type": "webrtc_ice",
            "session_id": sid,
            "candidate": {
                "candidate": "candidate:2 1 udp 2130706431 192.0.2.3 35285 typ host",
                "sdpMid": None,
                "sdpMLineIndex": 0,
            },
        }
        await c.send(app, app_ice)
        assert await c.recv(robot) == app_ice

        await c.send(robot, {"type": "status_update", "battery": 87, "mode": "guardian", "charging": False})
        event = await c.recv(app)
        assert event["type"] == "status_update" and event["battery"] == 87
        assert event["device_id"] == "wimz_robot_01" and event["timestamp"].endswith("Z")

        command = {
            "type": "command",
            "device_id": "wimz_robot_01",
            "command": "motor",
            "data": {"left": 0.5, "right": 0.5},
        }
        await c.send(app, command)
        assert await c.recv(robot) == {**command, "params": {"left": 0.5, "right": 0.5}}

        await c.send(app, {"type": "webrtc_close", "session_id": sid})
        close = await c.recv(robot)
        assert close == {"type": "webrtc_close", "session_id": sid, "reason": "closed_by_app"}
        assert await c.nothing(app)
        assert await c.nothing(other)

        row = await c.db(lambda: Session.objects.get(pk=sid))
        assert row.state == "ended" and row.end_reason == "closed_by_app"
        assert row.offered_at and row.answered_at and row.ended_at
        assert (row.robot_ice_candidates, row.app_ice_candidates) == (1, 1)
    finally:
        for ws in (robot, app, other):
            await ws.close()


async def test_stats_and_presence_are_cluster_wide(live_relays, world):
    """/stats counts the robot on A and the apps on B from either instance; a robot that leaves A is
    announced offline to its owner's app on B.
    """
    a, b = live_relays
    robot = await c.robot(a.ws, "wimz_robot_01", world.r1_secret)
    app1 = await c.app(b.ws, world.t1)
    app2 = await c.app(b.ws, world.t1)
    try:
        await c.recv_type(app1, "device_status")
        for relay in (a, b):
            async with httpx.AsyncClient() as http:
                stats = (
                    await http.get(relay.http + "/stats", timeout=5, headers={"Authorization": f"Bearer {STATS_TOKEN}"})
                ).json()
            assert stats == {"robots_online": 1, "app_sockets": 2, "users_online": 1, "active_sessions": 0}
        await robot.close()
        offline = await c.recv_type(app1, "device_status")
        while offline["status"] == "online":  # the robot's own online push may follow the snapshot
            offline = await c.recv_type(app1, "device_status")
        assert offline["status"] == "offline" and offline["online"] is False and offline["last_seen"]
    finally:
        for ws in (robot, app1, app2):
            await ws.close()


async def test_robot_replacement_across_instances(live_relays, world):
    """A robot reconnecting on B replaces its socket on A: the old one is closed with 4009 and a
    command from the app reaches only the new socket, once.
    """
    a, b = live_relays
    ts = int(time.time())
    old = await c.robot(a.ws, "wimz_robot_01", world.r1_secret, ts=ts)
    app = await c.app(a.ws, world.t1)
    await c.recv_type(app, "device_status")
    # A new signature: the same (device_id, timestamp, signature) triple is accepted only once, so the
    # second socket signs another timestamp (computed from the first one's, not from the clock, which
    # may have ticked into the first one's second meanwhile).
    new = await c.robot(b.ws, "wimz_robot_01", world.r1_secret, ts=ts - 1)
    try:
        with pytest.raises(websockets.exceptions.ConnectionClosed):
            await c.recv(old, timeout=5)
        assert old.close_code == 4009
        await c.send(app, {"type": "get_status", "device_id": "wimz_robot_01"})
        assert await c.recv(new) == {"type": "get_status", "device_id": "wimz_robot_01"}
        assert await c.nothing(new)
        assert await c.nothing(app)  # no spurious offline (field report F4)
    finally:
        for ws in (old, new, app):
            await ws.close()


async def test_idle_sockets_outlive_the_redis_read_timeout(live_relays, world):
    """A robot and an app that stay silent for longer than redis-py's default 5 s socket timeout (the
    relay layer's pub/sub reader must not give up on a quiet connection) are still connected and routed
    afterwards.
    """
    a, b = live_relays
    robot = await c.robot(a.ws, "wimz_robot_01", world.r1_secret)
    app = await c.app(b.ws, world.t1)
    try:
        await c.recv_type(app, "device_status")
        await asyncio.sleep(7)
        await c.send(robot, {"type": "battery", "level": 80})
        assert (await c.recv_type(app, "battery"))["level"] == 80
        await c.send(app, {"type": "get_status"})
        assert (await c.recv(robot))["type"] == "get_status"
    finally:
        await robot.close()
        await app.close()
