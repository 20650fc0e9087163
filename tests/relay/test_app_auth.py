"""App authentication on `/ws/app` and compat `/ws` (docs/protocol.md §5, "In-band renewal")."""

import asyncio
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import jwt
import pytest
from channels.db import database_sync_to_async
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from accounts.models import User
from tests.relay import flows
from tests.relay.flows import R1, R2
from tests.support import asgi as ws

pytestmark = flows.RELAY_DB


def short_token(user, seconds: float) -> str:
    token = AccessToken.for_user(user)
    token.set_exp(lifetime=timedelta(seconds=seconds))
    return str(token)


def parse_iso(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def handshake(path, headers=None):
    comm = ws.WebsocketCommunicator(ws.application, path, headers=headers or [])
    result = await comm.connect(timeout=ws.TIMEOUT)
    await ws.close(comm)
    return result


async def test_token_in_query_is_accepted(world):
    """`/ws/app?token=<access JWT>` (what the app sends) is accepted and answers ping."""
    app = await ws.app(world.t1, drain_status=1)
    await ws.ping_ok(app)
    await ws.close(app)


async def test_bearer_header_is_accepted(world):
    """`Authorization: Bearer <access JWT>` is accepted as well."""
    comm, accepted = await ws.connect("/ws/app", [(b"authorization", f"Bearer {world.t1}".encode())])
    assert accepted
    assert (await ws.recv(comm))["type"] == "device_status"
    await ws.ping_ok(comm)
    await ws.close(comm)


@pytest.fixture
def bad_tokens(world):
    """Every token F6 lists, keyed by name (`None` = no token at all)."""
    expired = AccessToken.for_user(world.u1)
    expired.set_exp(from_time=datetime.now(UTC) - timedelta(seconds=10), lifetime=timedelta(0))
    payload = dict(AccessToken.for_user(world.u1).payload)
    other_key = jwt.encode(payload, "another-signing-key-of-sufficient-length-0123456789", algorithm="HS256")
    inactive = User.objects.create_user(email="gone@example.com", password="x-long-password-1")
    inactive_token = str(AccessToken.for_user(inactive))
    User.objects.filter(pk=inactive.pk).update(is_active=False)
    deleted = User.objects.create_user(email="deleted@example.com", password="x-long-password-1")
    deleted_token = str(AccessToken.for_user(deleted))
    deleted.delete()
    return {
        "expired 10 s ago": str(expired),
        "garbage": "garbage",
        "empty": "",
        "missing": None,
        "refresh token": str(RefreshToken.for_user(world.u1)),
        "signed with another key": other_key,
        "deactivated user": inactive_token,
        "deleted user": deleted_token,
        "oversized": "a" * 5000,
    }


async def test_invalid_tokens_are_refused_the_same_way(world, bad_tokens):
    """Expired, garbage, empty, missing, refresh, foreign-key, deactivated/deleted user: each handshake is
    refused identically (HTTP 403 under daphne), and no presence row is left behind."""
    answers = {}
    for name, token in bad_tokens.items():
        path = "/ws/app" if token is None else "/ws/app?" + urlencode({"token": token})
        answers[name] = await handshake(path)
        if token:
            answers[name + " (bearer)"] = await handshake("/ws/app", [(b"authorization", f"Bearer {token}".encode())])
    assert set(answers.values()) == {(False, 1000)}, answers
    assert await flows.connection_rows(role="app") == []


async def test_robot_credentials_do_not_open_an_app_socket(world):
    """A robot's signed headers on `/ws/app` are not an app identity: refused."""
    assert await handshake("/ws/app", ws.robot_headers(R1, world.r1_secret)) == (False, 1000)


async def test_snapshot_one_device_status_per_owned_device(world, make_device):
    """Right after connecting, the app gets one `device_status` per owned device (online or not), with
    `status`, `online` and `last_seen` (ISO 8601 UTC or null); other users' devices are not listed."""
    await database_sync_to_async(make_device)("wimz_robot_03", owner=world.u1)
    robot = await ws.robot(R1, world.r1_secret)
    app = await ws.app(world.t1)
    frames = await flows.receive_all(app, 2)
    by_id = {f["device_id"]: f for f in frames}
    assert set(by_id) == {R1, "wimz_robot_03"}
    assert by_id[R1] == {
        "type": "device_status",
        "device_id": R1,
        "status": "online",
        "online": True,
        "last_seen": by_id[R1]["last_seen"],
    }
    assert flows.is_iso_utc(by_id[R1]["last_seen"])
    assert by_id["wimz_robot_03"] == {
        "type": "device_status",
        "device_id": "wimz_robot_03",
        "status": "offline",
        "online": False,
        "last_seen": None,
    }
    assert await ws.nothing(app)
    await ws.close(robot, app)


async def test_user_without_devices_gets_no_snapshot(world, make_user, access_token):
    """An app of a user who owns nothing gets no `device_status` at all."""
    user = await database_sync_to_async(make_user)("u3@example.com")
    app = await ws.app(await database_sync_to_async(access_token)(user))
    assert await ws.nothing(app)
    await ws.ping_ok(app)
    await ws.close(app)


async def test_status_pushes_reach_every_app_socket_of_the_owner_only(world):
    """R1 connecting/disconnecting is pushed to every app socket of U1 (A1, A2) and to nobody else (B1)."""
    a1 = await ws.app(world.t1, drain_status=1)
    a2 = await ws.app(world.t1, drain_status=1)
    b1 = await ws.app(world.t2, drain_status=1)
    robot = await ws.robot(R1, world.r1_secret)
    for app in (a1, a2):
        frame = await ws.recv(app)
        assert frame["type"] == "device_status" and frame["status"] == "online" and frame["device_id"] == R1
    await robot.disconnect()
    for app in (a1, a2):
        frame = await ws.recv(app)
        assert frame["type"] == "device_status" and frame["status"] == "offline" and frame["device_id"] == R1
    assert await ws.nothing(b1)
    await ws.close(a1, a2, b1)


async def test_in_band_renewal_answers_auth_result_with_expires_at(world):
    """`{"type":"auth","token":<new access JWT>}` answers `auth_result` success with an ISO `expires_at`."""
    app = await ws.app(short_token(world.u1, 60), drain_status=1)
    fresh = short_token(world.u1, 3600)
    await ws.send(app, {"type": "auth", "token": fresh})
    result = await ws.recv(app)
    assert result["type"] == "auth_result" and result["success"] is True
    assert flows.is_iso_utc(result["expires_at"])
    expires = parse_iso(result["expires_at"])
    assert abs((expires - datetime.now(UTC)).total_seconds() - 3600) < 10
    await ws.close(app)


async def test_renewal_keeps_the_socket_open_past_the_first_expiry(world):
    """A socket renewed in band outlives its first token: still open and answering after it expired."""
    app = await ws.app(short_token(world.u1, 1.5), drain_status=1)
    await ws.send(app, {"type": "auth", "token": short_token(world.u1, 3600)})
    assert (await ws.recv(app))["success"] is True
    await asyncio.sleep(2.5)
    await ws.ping_ok(app)
    await ws.close(app)


async def test_invalid_renewal_token_answers_not_authorized_and_keeps_identity(world):
    """An invalid renewal token answers NOT_AUTHORIZED; the socket keeps its identity (owner's events
    still arrive)."""
    robot, app = await flows.robot_app(world)
    await ws.send(app, {"type": "auth", "token": "garbage"})
    await flows.expect_error(app, "NOT_AUTHORIZED")
    await ws.send(app, {"type": "auth"})
    await flows.expect_error(app, "NOT_AUTHORIZED")
    await ws.send(robot, {"type": "battery", "level": 80})
    event = await ws.recv(app)
    assert event["type"] == "battery" and event["device_id"] == R1
    await ws.close(robot, app)


async def test_another_users_token_answers_not_authorized_and_keeps_identity(world):
    """Renewing with another user's token answers NOT_AUTHORIZED and does not switch users: U1's robot
    still reaches the socket, U2's does not, and U2's device cannot be addressed."""
    r1, app = await flows.robot_app(world)
    r2 = await ws.robot(R2, world.r2_secret)
    await ws.send(app, {"type": "auth", "token": world.t2})
    await flows.expect_error(app, "NOT_AUTHORIZED")
    await ws.send(r2, {"type": "battery", "level": 1})
    await ws.send(r1, {"type": "battery", "level": 2})
    assert (await ws.recv(app))["device_id"] == R1
    await ws.send(app, {"type": "command", "device_id": R2, "command": "motor", "data": {}})
    await flows.expect_error(app, "NOT_AUTHORIZED")
    assert await ws.nothing(r2)
    await ws.close(r1, r2, app)


async def test_failed_renewal_does_not_extend_the_token(world):
    """A refused renewal leaves the old expiry in force: the socket is still closed 4001 when it lapses."""
    app = await ws.app(short_token(world.u1, 1.5), drain_status=1)
    await ws.send(app, {"type": "auth", "token": world.t2})
    await flows.expect_error(app, "NOT_AUTHORIZED")
    await flows.expect_error(app, "TOKEN_EXPIRED", timeout=5)
    await flows.expect_close(app, 4001)
    await ws.close(app)


async def test_token_expiry_sends_token_expired_and_closes_4001_within_5s(world):
    """A socket whose token expires without renewal gets `{"type":"error","code":"TOKEN_EXPIRED"}` and is
    closed with 4001, unprompted, within 5 s of the expiry."""
    app = await ws.app(short_token(world.u1, 1), drain_status=1)
    expiry = time.monotonic() + 1
    await flows.expect_error(app, "TOKEN_EXPIRED", timeout=7)
    await flows.expect_close(app, 4001)
    assert time.monotonic() - expiry < 5
    await ws.close(app)


async def test_compat_ws_in_band_app_auth_succeeds_and_behaves_as_ws_app(world):
    """Compat `/ws`: `{"type":"auth","token":<JWT>}` answers `auth_result` success, then the snapshot, and
    the socket behaves exactly as `/ws/app` (it can open a session)."""
    robot = await ws.robot(R1, world.r1_secret)
    comm, accepted = await ws.connect("/ws")
    assert accepted
    await ws.send(comm, {"type": "auth", "token": world.t1})
    result = await ws.recv(comm)
    assert result["type"] == "auth_result" and result["success"] is True and "message" in result
    status = await ws.recv(comm)
    assert status["type"] == "device_status" and status["device_id"] == R1 and status["online"] is True
    await flows.open_session(comm, robot)
    await ws.close(robot, comm)


@pytest.mark.parametrize("token", ["garbage", "", None])
async def test_compat_ws_in_band_app_auth_failure_answers_auth_result_false(world, token):
    """Compat `/ws`: an invalid in-band token answers `auth_result` success false with a message."""
    comm, accepted = await ws.connect("/ws")
    assert accepted
    await ws.send(comm, {"type": "auth", "token": token})
    result = await ws.recv(comm)
    assert result["type"] == "auth_result" and result["success"] is False and isinstance(result["message"], str)
    await flows.expect_close(comm, 4003)
    await ws.close(comm)


async def test_app_without_origin_is_accepted_and_browser_origin_must_be_allowed(world, settings):
    """Native apps send no `Origin` (accepted); a browser `Origin` must be in the allowlist."""
    settings.WIMZ_ALLOWED_ORIGINS = ["https://app.wimz.example"]
    path = "/ws/app?" + urlencode({"token": world.t1})
    assert await handshake(path, [(b"origin", b"https://evil.example")]) == (False, 1000)
    ok, _ = await handshake(path, [(b"origin", b"https://app.wimz.example")])
    assert ok
    ok, _ = await handshake(path)
    assert ok
