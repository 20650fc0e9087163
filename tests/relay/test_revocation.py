"""Deactivating a device or rotating its secret closes its open robot socket (4003)."""

import pytest
from channels.db import database_sync_to_async

from devices.services import device_deactivate, device_rotate_secret
from tests.support import asgi as ws


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
        "type": "webrtc_close",
        "session_id": sid,
        "reason": "robot_disconnected",
    }
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
    robot = await ws.robot("wimz_robot_01", world.r1_secret)  # a fresh timestamp (fresh_ts)
    assert (await ws.recv_type(app, "device_status"))["status"] == "online"
    await ws.send(app, {"type": "command", "device_id": "wimz_robot_01", "command": "motor", "data": {}})
    assert (await ws.recv_type(robot, "command"))["command"] == "motor"
    await ws.close(robot, app)


def _two_logins(user):
    """Two logins of `user` (as two phones would get them): [(access, refresh), (access, refresh)]."""
    from accounts.services import auth_tokens_issue

    return [(t["access"], t["refresh"]) for t in (auth_tokens_issue(user=user), auth_tokens_issue(user=user))]


def _logout(refresh):
    from rest_framework.test import APIClient

    return APIClient().post("/api/auth/logout", {"refresh": refresh}, format="json")


async def test_logout_closes_that_logins_sockets_at_once_and_refuses_its_access_tokens(world):
    """docs/protocol.md §17.3: a logout ends its login. The login's open app socket is closed 4003 at once
    (the relay.ownership receiver of accounts.signals.login_revoked); the same user's socket of another
    login stays usable; the logged-out access token is refused by REST and by the WebSocket handshake and
    in-band renewal, the other login's token is not."""
    from rest_framework.test import APIClient

    from tests.relay import flows

    (access_a, refresh_a), (access_b, _) = await database_sync_to_async(_two_logins)(world.u1)
    app_a = await ws.app(access_a, drain_status=1)
    app_b = await ws.app(access_b, drain_status=1)
    other_user = await ws.app(world.t2, drain_status=1)

    r = await database_sync_to_async(_logout)(refresh_a)
    assert r.status_code == 200, r.content
    await flows.expect_close(app_a, 4003)
    await ws.ping_ok(app_b)
    assert await ws.nothing(other_user)

    def rest_me(token):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        return client.get("/api/auth/me")

    refused = await database_sync_to_async(rest_me)(access_a)
    assert refused.status_code == 401 and refused.json()["code"] == "token_not_valid"
    assert (await database_sync_to_async(rest_me)(access_b)).status_code == 200
    _, accepted = await ws.connect("/ws/app?token=" + access_a)
    assert not accepted
    await ws.send(app_b, {"type": "auth", "token": access_a})
    assert (await ws.recv_type(app_b, "error"))["code"] == "NOT_AUTHORIZED"
    await ws.ping_ok(app_b)
    await ws.close(app_b, other_user)


async def test_a_lost_logout_message_is_caught_at_the_next_heartbeat(world):
    """A revocation recorded without the close reaching the socket (e.g. the message was lost): the
    socket's instance closes it (4003) at its next presence heartbeat; the other login's socket stays."""
    from accounts.models import RevokedLogin
    from relay import connections
    from tests.relay import flows

    (access_a, refresh_a), (access_b, _) = await database_sync_to_async(_two_logins)(world.u1)
    app_a = await ws.app(access_a, drain_status=1)
    app_b = await ws.app(access_b, drain_status=1)

    def revoke_quietly():
        from django.utils import timezone
        from rest_framework_simplejwt.tokens import RefreshToken

        RevokedLogin.objects.create(
            login_id=RefreshToken(refresh_a)["login_id"], user_id=world.u1.pk, expires_at=timezone.now()
        )

    await database_sync_to_async(revoke_quietly)()
    assert await ws.nothing(app_a)
    await connections.heartbeat_once()
    await flows.expect_close(app_a, 4003)
    await ws.ping_ok(app_b)
    await ws.close(app_b)


async def test_refresh_of_a_logged_out_login_is_refused_and_the_claim_survives_rotation(world):
    """Rotation keeps the login: after two refreshes, logging out with the newest refresh token still ends
    the first access token; an older (rotated) refresh token of that login is refused."""
    from rest_framework.test import APIClient
    from rest_framework_simplejwt.tokens import AccessToken

    def run():
        (access, refresh), _ = _two_logins(world.u1)
        client = APIClient()
        first = client.post("/api/auth/refresh", {"refresh": refresh}, format="json").json()
        second = client.post("/api/auth/refresh", {"refresh": first["refresh"]}, format="json").json()
        assert AccessToken(second["access"])["login_id"] == AccessToken(access)["login_id"]
        assert _logout(second["refresh"]).status_code == 200
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
        assert client.get("/api/auth/me").status_code == 401
        client.credentials()
        again = client.post("/api/auth/refresh", {"refresh": second["refresh"]}, format="json")
        assert again.status_code == 401 and again.json()["code"] == "token_not_valid"

    await database_sync_to_async(run)()
