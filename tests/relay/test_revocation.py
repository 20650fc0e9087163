"""Deactivating a device or rotating its secret closes its open robot socket (4003)."""

import time

import pytest
from channels.db import database_sync_to_async

from devices.services import device_deactivate, device_rotate_secret
from tests.relay import wsutil as ws


@pytest.mark.parametrize("revoke", [device_deactivate, device_rotate_secret], ids=["deactivate", "rotate"])
async def test_revoking_a_device_closes_its_socket_and_ends_its_sessions(world, revoke):
    """The robot socket is closed with 4003; the session it had ends `robot_disconnected` at the app,
    which then sees the robot offline."""
    robot = await ws.robot("wimz_robot_01", world.r1_secret)
    app = await ws.app(world.t1, drain_status=1)
    await ws.send(app, {"type": "webrtc_request"})
    sid = (await ws.recv_type(app, "webrtc_credentials"))["session_id"]
    await ws.recv_type(robot, "webrtc_request")

    await database_sync_to_async(revoke)(device=world.r1)

    closed = await robot.receive_output(timeout=3)
    assert closed == {"type": "websocket.close", "code": 4003}
    await robot.disconnect(code=4003)
    assert await ws.recv_type(app, "webrtc_close") == {
        "type": "webrtc_close", "session_id": sid, "reason": "robot_disconnected"}
    status = await ws.recv_type(app, "device_status")
    assert status["status"] == "offline"
    await ws.close(app)


async def test_a_reactivated_device_is_listed_and_commandable_again_without_reconnecting_the_app(world):
    """Deactivate R1 (its socket closes 4003; A1 can no longer address it), reactivate it: A1, still on
    its first socket, gets `device_status` for R1 and commands reach the robot once it reconnects."""
    from devices.services import device_reactivate

    robot = await ws.robot("wimz_robot_01", world.r1_secret)
    app = await ws.app(world.t1, drain_status=1)
    await database_sync_to_async(device_deactivate)(device=world.r1)
    assert await robot.receive_output(timeout=3) == {"type": "websocket.close", "code": 4003}
    await robot.disconnect(code=4003)
    assert (await ws.recv_type(app, "device_status"))["status"] == "offline"
    await ws.send(app, {"type": "command", "device_id": "wimz_robot_01", "command": "motor", "data": {}})
    assert (await ws.recv_type(app, "error"))["code"] == "NOT_AUTHORIZED"

    await database_sync_to_async(device_reactivate)(device=world.r1)
    status = await ws.recv_type(app, "device_status")
    assert (status["device_id"], status["status"]) == ("wimz_robot_01", "offline")
    robot = await ws.robot("wimz_robot_01", world.r1_secret, ts=int(time.time()) + 1)  # a fresh signature
    assert (await ws.recv_type(app, "device_status"))["status"] == "online"
    await ws.send(app, {"type": "command", "device_id": "wimz_robot_01", "command": "motor", "data": {}})
    assert (await ws.recv_type(robot, "command"))["command"] == "motor"
    await ws.close(robot, app)
