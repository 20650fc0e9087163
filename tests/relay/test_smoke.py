"""Smoke: robot and app connect, a session is signaled end to end."""

import pytest

from tests.support import asgi as ws


async def test_full_signaling(world):
    robot = await ws.robot("wimz_robot_01", world.r1_secret)
    app = await ws.app(world.t1)
    status = await ws.recv(app)
    assert status["type"] == "device_status" and status["online"] is True
    await ws.send(app, {"type": "webrtc_request", "device_id": "wimz_robot_01"})
    creds = await ws.recv(app)
    assert creds["type"] == "webrtc_credentials", creds
    req = await ws.recv(robot)
    assert req["type"] == "webrtc_request" and req["session_id"] == creds["session_id"]
    await ws.close(robot, app)


async def test_nothing_fails_when_a_frame_arrives(world):
    """`nothing` (the suites' one "nothing arrived") is True for a quiet socket and fails on a frame that
    arrived at any of the sockets it watches, naming the frame."""
    robot = await ws.robot("wimz_robot_01", world.r1_secret)
    app = await ws.app(world.t1, drain_status=1)
    assert await ws.nothing(robot, app)
    await ws.send(app, {"type": "ping"})
    with pytest.raises(AssertionError, match="pong"):
        await ws.nothing(robot, app)
    await ws.close(robot, app)
