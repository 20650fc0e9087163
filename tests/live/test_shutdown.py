"""A relay instance that stops ends its sessions `server_shutdown` (docs/protocol.md §13)."""

import asyncio

import pytest
import websockets

from relay.models import Connection, Session
from tests.support import live as c

pytestmark = [pytest.mark.live, pytest.mark.services]


async def test_stopping_an_instance_ends_its_sessions_server_shutdown(live_relays, world):
    """Robot on A, app on B, a live session; A gets SIGTERM → the app on B receives `webrtc_close`
    with reason `server_shutdown` and `device_status` offline; the history row says `server_shutdown`
    and A's presence rows are closed, so /stats on B no longer counts the robot.
    """
    a, b = live_relays
    robot = await c.robot(a.ws, "wimz_robot_01", world.r1_secret)
    app = await c.app(b.ws, world.t1)
    try:
        await c.recv_type(app, "device_status")
        await c.send(app, {"type": "webrtc_request", "device_id": "wimz_robot_01"})
        sid = (await c.recv_type(app, "webrtc_credentials"))["session_id"]
        await c.recv_type(robot, "webrtc_request")
        await asyncio.to_thread(a.stop)
        close = await c.recv_type(app, "webrtc_close", timeout=15)
        assert close == {"type": "webrtc_close", "session_id": sid, "reason": "server_shutdown"}
        status = await c.recv_type(app, "device_status", timeout=10)
        assert status["status"] == "offline"
        row = await c.db(lambda: Session.objects.get(pk=sid))
        assert row.end_reason == "server_shutdown"
        assert await c.db(lambda: Connection.objects.filter(role="robot", disconnected_at__isnull=True).count()) == 0
        # A's robot socket got a close frame with 1012 (docs/protocol.md §16), not a dropped connection (1006).
        await asyncio.wait_for(robot.wait_closed(), 10)
        assert robot.close_code == 1012
        assert app.close_code is None  # B keeps serving the app
    finally:
        await app.close()
        await robot.close()


async def test_stopping_the_only_instance_tells_both_parties(live_relays, world):
    """Robot and app on the same instance (one-instance deployments): on SIGTERM both get
    `webrtc_close` with reason `server_shutdown`, then their sockets close.
    """
    b = live_relays[1]
    robot = await c.robot(b.ws, "wimz_robot_01", world.r1_secret)
    app = await c.app(b.ws, world.t1)
    try:
        await c.recv_type(app, "device_status")
        await c.send(app, {"type": "webrtc_request", "device_id": "wimz_robot_01"})
        sid = (await c.recv_type(app, "webrtc_credentials"))["session_id"]
        await c.recv_type(robot, "webrtc_request")
        await asyncio.to_thread(b.stop)
        expected = {"type": "webrtc_close", "session_id": sid, "reason": "server_shutdown"}
        assert await c.recv_type(app, "webrtc_close", timeout=15) == expected
        assert await c.recv_type(robot, "webrtc_close", timeout=15) == expected
        with pytest.raises(websockets.exceptions.ConnectionClosed):
            while True:  # device_status offline (the robot's socket ends too) may come first
                frame = await c.recv(app, timeout=10)
                assert frame["type"] == "device_status", frame
        # The relay closes with 1012 and a close frame (wimz.serve lets daphne send that code; it used to
        # drop the connection, which clients saw as 1006).
        await asyncio.wait_for(robot.wait_closed(), 10)
        assert (app.close_code, robot.close_code) == (1012, 1012)
    finally:
        await app.close()
        await robot.close()
