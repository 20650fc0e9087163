"""Ownership and credential changes take effect across instances before the call that made them
returns (docs/protocol.md §19.3): robot R1 on instance A, its owner U1's app on instance B, U2's app
on A. Each change is made through another process than the robot's and the app's where possible —
REST on A or on B, or the service called in this test process acting as a third instance — and the
very next frame either side sends is checked: nothing reaches a former owner, ever.
"""

import contextlib
import time

import httpx
import pytest
from asgiref.sync import sync_to_async
from channels.layers import channel_layers
from django.db import connection

from devices import services
from devices.models import Device
from tests.support import live as c

pytestmark = [pytest.mark.live, pytest.mark.services]

R1 = "wimz_robot_01"


async def _setup(live_relays, world):
    a, b = live_relays
    robot = await c.robot(a.ws, R1, world.r1_secret)
    app = await c.app(b.ws, world.t1)
    other = await c.app(a.ws, world.t2)
    status = await c.recv_type(app, "device_status")
    assert status["device_id"] == R1 and status["online"] is True
    await c.recv_type(other, "device_status")
    return robot, app, other


async def _open_session(robot, app) -> str:
    await c.send(app, {"type": "webrtc_request", "device_id": R1})
    sid = (await c.recv_type(app, "webrtc_credentials"))["session_id"]
    assert (await c.recv_type(robot, "webrtc_request"))["session_id"] == sid
    return sid


def _as_third_instance(settings, relay) -> None:
    """Make this test process one more relay instance on the relays' Redis prefix."""
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "relay.layer.RelayChannelLayer",
            "CONFIG": {"redis_url": relay.env["REDIS_URL"], "prefix": relay.env["WIMZ_CHANNEL_PREFIX"]},
        }
    }
    channel_layers.backends.clear()


async def _service(fn):
    def run():
        try:
            fn()
        finally:
            connection.close()

    await sync_to_async(run)()


async def _close_all(*sockets):
    for ws in sockets:
        await ws.close()


@pytest.mark.parametrize("rest_on", ["robot_instance", "app_instance"])
async def test_unpair_takes_effect_for_the_next_frame_of_either_side(live_relays, world, rest_on):
    """After `POST …/unpair` returns, the robot's next event and the former owner's next command reach
    nobody; the session ended `unpaired` on both sides and the app got `device_status` unpaired."""
    a, b = live_relays
    robot, app, other = await _setup(live_relays, world)
    try:
        sid = await _open_session(robot, app)
        base = a.http if rest_on == "robot_instance" else b.http
        async with httpx.AsyncClient() as http:
            response = await http.post(
                f"{base}/api/devices/{R1}/unpair", headers={"Authorization": f"Bearer {world.t1}"}
            )
        assert response.status_code == 200, response.text
        await c.send(robot, {"type": "telemetry", "after": "unpair"})
        await c.send(app, {"type": "command", "device_id": R1, "command": "motor", "data": {}})

        expected_close = {"type": "webrtc_close", "session_id": sid, "reason": "unpaired"}
        frames = [await c.recv(app) for _ in range(3)]
        assert expected_close in frames
        status = next(f for f in frames if f["type"] == "device_status")
        assert (status["device_id"], status["status"]) == (R1, "unpaired")
        error = next(f for f in frames if f["type"] == "error")
        assert (error["code"], error["ref"]) == ("NOT_AUTHORIZED", "command")
        assert await c.recv(robot) == expected_close
        assert await c.nothing(app) and await c.nothing(robot) and await c.nothing(other)
    finally:
        await _close_all(robot, app, other)


async def test_transfer_to_another_user_moves_events_and_commands_at_once(live_relays, world):
    """Unpaired by U1 (REST on A), paired by U2 with the robot's pairing code (REST on B): from the
    moment the pair call returns, R1's events reach U2's app (on A) only and U2's commands reach R1;
    U1's app (on B) gets nothing and its commands are refused."""
    a, b = live_relays
    robot, app, other = await _setup(live_relays, world)
    try:
        async with httpx.AsyncClient() as http:
            response = await http.post(
                f"{a.http}/api/devices/{R1}/unpair", headers={"Authorization": f"Bearer {world.t1}"}
            )
            assert response.status_code == 200
            assert (await c.recv_type(app, "device_status"))["status"] == "unpaired"
            ts = int(time.time()) - 7  # not the handshake's timestamp: a signature triple is accepted once
            code = await http.post(
                f"{a.http}/api/devices/pairing-code",
                headers=c.robot_headers(R1, world.r1_secret, ts),
            )
            assert code.status_code in (200, 201), code.text
            paired = await http.post(
                f"{b.http}/api/devices/pair",
                json={"pairing_code": code.json()["pairing_code"]},
                headers={"Authorization": f"Bearer {world.t2}"},
            )
            assert paired.status_code in (200, 201), paired.text
        await c.send(robot, {"type": "telemetry", "to": "new owner"})
        await c.send(other, {"type": "command", "device_id": R1, "command": "from-new-owner", "data": {}})
        await c.send(app, {"type": "command", "device_id": R1, "command": "from-old-owner", "data": {}})

        status = await c.recv(other)
        assert (status["type"], status["device_id"], status["status"]) == ("device_status", R1, "online")
        event = await c.recv(other)
        assert (event["type"], event["to"], event["device_id"]) == ("telemetry", "new owner", R1)
        assert (await c.recv(robot))["command"] == "from-new-owner"
        refused = await c.recv(app)
        assert (refused["code"], refused["ref"]) == ("NOT_AUTHORIZED", "command")
        assert await c.nothing(app) and await c.nothing(robot)
    finally:
        await _close_all(robot, app, other)


async def test_deactivation_from_a_third_process_closes_the_robot_and_refuses_the_owner(live_relays, world, settings):
    """`device_deactivate` in another process (this one, as a third instance): when it returns the
    robot's socket is closing (4003) and its next frame reaches nobody; the owner's next command is
    NOT_AUTHORIZED; the session ended `robot_disconnected` and the owner saw the robot go offline."""
    a, _ = live_relays
    robot, app, other = await _setup(live_relays, world)
    _as_third_instance(settings, a)
    try:
        sid = await _open_session(robot, app)
        await _service(lambda: services.device_deactivate(device=Device.objects.get(device_id=R1)))
        await c.send(app, {"type": "command", "device_id": R1, "command": "motor", "data": {}})
        with contextlib.suppress(Exception):  # the socket may already be closed: also fine
            await c.send(robot, {"type": "telemetry", "after": "deactivation"})
        frames = [await c.recv(app) for _ in range(3)]
        assert {"type": "webrtc_close", "session_id": sid, "reason": "robot_disconnected"} in frames
        assert any(f["type"] == "device_status" and f["status"] == "offline" for f in frames)
        error = next(f for f in frames if f["type"] == "error")
        assert (error["code"], error["ref"]) == ("NOT_AUTHORIZED", "command")
        await robot.wait_closed()
        assert robot.close_code == 4003
        assert await c.nothing(app) and await c.nothing(other)
    finally:
        await _close_all(robot, app, other)


async def test_secret_rotation_from_a_third_process_closes_the_robot_before_its_next_frame(
    live_relays, world, settings
):
    """`device_rotate_secret` in a third process: the robot socket opened with the old secret is
    closed 4003 and the event it sends right after the call returns reaches nobody."""
    a, _ = live_relays
    robot, app, other = await _setup(live_relays, world)
    _as_third_instance(settings, a)
    try:
        await _service(lambda: services.device_rotate_secret(device=Device.objects.get(device_id=R1)))
        with contextlib.suppress(Exception):  # already closed
            await c.send(robot, {"type": "telemetry", "after": "rotation"})
        await robot.wait_closed()
        assert robot.close_code == 4003
        status = await c.recv_type(app, "device_status")
        assert status["status"] == "offline"
        assert await c.nothing(app) and await c.nothing(other)
    finally:
        await _close_all(robot, app, other)
