"""Smoke: robot and app connect, a session is signaled end to end."""

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
