"""Handshake refusals and log hygiene under a real daphne process (field reports F6, F8, F10)."""

import asyncio
import time
from datetime import timedelta
from urllib.parse import urlencode

import httpx
import jwt
import pytest
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from accounts.models import User
from relay.models import Connection, Session
from tests.support import live as c

pytestmark = [pytest.mark.live, pytest.mark.services]


def _bad_tokens(world) -> dict[str, str]:
    """Every kind of bad app credential from field report F6."""
    expired = AccessToken.for_user(world.u1)
    expired.set_exp(from_time=expired.current_time - timedelta(seconds=20), lifetime=timedelta(seconds=10))
    other_key = jwt.encode(
        {"token_type": "access", "exp": int(time.time()) + 600, "jti": "x", "user_id": str(world.u1.pk)},
        "another-signing-key-that-is-long-enough-for-hs256",
        algorithm="HS256",
    )
    inactive = User.objects.create_user("gone@example.com", "x-password-123", is_active=False)
    return {
        "expired 10 s ago": str(expired),
        "garbage": "garbage",
        "empty": "",
        "refresh token": str(RefreshToken.for_user(world.u1)),
        "signed with another key": other_key,
        "deactivated user": str(AccessToken.for_user(inactive)),
    }


async def test_bad_app_tokens_are_refused_with_403(live_relays, world):
    """F6: expired, garbage, empty, missing, refresh, foreign-key and deactivated-user tokens are all
    refused the same way (HTTP 403) by daphne — no 500, no traceback, no presence row.
    """
    relay = live_relays[0]
    bad = await c.db(lambda: _bad_tokens(world))
    for name, token in bad.items():
        status = await c.handshake_status(relay.ws + "/ws/app?" + urlencode({"token": token}))
        assert status == 403, name
    assert await c.handshake_status(relay.ws + "/ws/app") == 403  # missing
    assert await c.handshake_status(relay.ws + "/ws/app", {"Authorization": "Bearer garbage"}) == 403
    output = relay.output()
    assert "Traceback" not in output and " 500 " not in output
    assert await c.db(lambda: Connection.objects.count()) == 0


async def test_bad_robot_handshakes_are_refused_with_403(live_relays, world):
    """F10: bad signature, stale timestamp (both directions), unknown device, replayed signature and a
    browser Origin outside the allowlist are all HTTP 403 at the handshake; nothing is left behind but
    a log line (no presence, no session row).
    """
    relay = live_relays[1]
    now = int(time.time())
    good = c.robot_headers("wimz_robot_01", world.r1_secret, now - 5)
    cases = {
        "bad signature": {**good, "X-Signature": "0" * 64},
        "stale timestamp": c.robot_headers("wimz_robot_01", world.r1_secret, now - 330),
        "future timestamp": c.robot_headers("wimz_robot_01", world.r1_secret, now + 330),
        "unknown device": c.robot_headers("no_such_robot", world.r1_secret, now),
        "browser origin": {**c.robot_headers("wimz_robot_01", world.r1_secret, now - 7), "Origin": "https://evil.test"},
    }
    for name, headers in cases.items():
        assert await c.handshake_status(relay.ws + "/ws/device", headers) == 403, name
    assert await c.handshake_status(relay.ws + "/ws/device", good) == 101
    assert await c.handshake_status(relay.ws + "/ws/device", good) == 403, "replay"
    expired = AccessToken.for_user(world.u1)
    expired.set_exp(from_time=expired.current_time - timedelta(seconds=20), lifetime=timedelta(seconds=10))
    assert await c.handshake_status(relay.ws + "/ws/app?token=" + str(expired)) == 403
    assert await c.db(lambda: Connection.objects.filter(disconnected_at__isnull=True).count()) == 0
    assert await c.db(lambda: Session.objects.count()) == 0
    assert "Traceback" not in relay.output()


async def test_tokens_and_signatures_never_reach_the_logs(live_relays, world):
    """F8: with DEBUG logging and daphne's access log on, a `?token=` connect, a webrtc_request, a
    bad-token connect, an expired-token connect, a robot connect with a query-string signature, and
    plain HTTP requests with the token in the query or the path leave no JWT (nor its last 20
    characters) and no signature in any output line.
    """
    relay = live_relays[0]
    ts = int(time.time()) - 11
    sig = c.robot_headers("wimz_robot_01", world.r1_secret, ts)["X-Signature"]
    robot = await c.connect_url(
        relay.ws + "/ws/device?" + urlencode({"device_id": "wimz_robot_01", "ts": ts, "sig": sig})
    )
    app = await c.app(relay.ws, world.t1)
    try:
        await c.recv_type(app, "device_status")
        await c.send(app, {"type": "webrtc_request", "device_id": "wimz_robot_01"})
        await c.recv_type(app, "webrtc_credentials")
        await c.recv_type(robot, "webrtc_request")
        await c.send(app, {"type": "auth", "token": world.t1})
        await c.recv_type(app, "auth_result")
    finally:
        await app.close()
        await robot.close()
    async with httpx.AsyncClient() as http:  # plain HTTP requests carrying the token: daphne logs them
        await http.get(relay.http + "/ws/app", params={"token": world.t1})
        await http.get(relay.http + "/api/devices/" + world.t1)
    bad = world.t1[:-4] + "AAAA"
    assert await c.handshake_status(relay.ws + "/ws/app?token=" + bad) == 403
    expired = AccessToken.for_user(world.u1)
    expired.set_exp(from_time=expired.current_time - timedelta(seconds=20), lifetime=timedelta(seconds=10))
    assert await c.handshake_status(relay.ws + "/ws/app?token=" + str(expired)) == 403
    await asyncio.sleep(0.5)
    output = relay.output()
    assert "/ws/app" in output and "/ws/device" in output  # the access log did record the requests
    for secret in (world.t1, world.t1[-20:], bad[-20:], str(expired)[-20:], sig, world.r1_secret):
        assert secret not in output
