"""Sockets of a relay instance that died without shutting down are cleaned up by the survivors."""

from datetime import timedelta

from channels.db import database_sync_to_async
from django.utils import timezone

from relay import connections
from relay.models import Connection, Session
from tests.support import asgi as ws


@database_sync_to_async
def _dead_socket(role: str, *, user=None, device=None) -> str:
    """A presence row of a socket on a dead instance: open, last heartbeat 10 minutes ago."""
    channel = f"specific.dead!{role}{Connection.objects.count()}"
    Connection.objects.create(
        role=role, channel_name=channel, user=user, device=device, heartbeat_at=timezone.now() - timedelta(minutes=10)
    )
    return channel


@database_sync_to_async
def _session(world, *, app_channel: str, robot_channel: str) -> str:
    return str(
        Session.objects.create(device=world.r1, user=world.u1, app_channel=app_channel, robot_channel=robot_channel).pk
    )


async def test_dead_app_socket_ends_its_session_at_the_live_robot(world):
    """An app whose instance died: its row is closed (1006) and the live robot gets `webrtc_close`
    `app_disconnected` for the session that app had opened."""
    robot = await ws.robot("wimz_robot_01", world.r1_secret)
    robot_channel = await database_sync_to_async(
        lambda: Connection.objects.get(role="robot", disconnected_at__isnull=True).channel_name
    )()
    dead = await _dead_socket("app", user=world.u1)
    sid = await _session(world, app_channel=dead, robot_channel=robot_channel)

    assert await connections.sweep_dead_instances(force=True) == 1
    assert await ws.recv(robot) == {"type": "webrtc_close", "session_id": sid, "reason": "app_disconnected"}
    row = await database_sync_to_async(Connection.objects.get)(channel_name=dead)
    assert row.disconnected_at is not None and row.close_code == 1006
    assert await connections.sweep_dead_instances(force=True) == 0  # closed once
    await ws.close(robot)


async def test_dead_robot_socket_ends_its_session_and_goes_offline_at_the_live_app(world):
    """A robot whose instance died: the owner's live app gets `webrtc_close` `robot_disconnected` and
    `device_status` offline; the other user hears nothing."""
    app = await ws.app(world.t1, drain_status=1)
    other = await ws.app(world.t2, drain_status=1)
    app_channel = await database_sync_to_async(lambda: Connection.objects.get(role="app", user=world.u1).channel_name)()
    dead = await _dead_socket("robot", device=world.r1)
    sid = await _session(world, app_channel=app_channel, robot_channel=dead)

    assert await connections.sweep_dead_instances(force=True) == 1
    assert await ws.recv(app) == {"type": "webrtc_close", "session_id": sid, "reason": "robot_disconnected"}
    status = await ws.recv(app)
    assert status["type"] == "device_status" and status["status"] == "offline"
    assert await ws.nothing(other)
    await ws.close(app, other)
