"""The secret sweep (docs/operations.md "Logs"): a whole flow through two real daphne processes at DEBUG in
JSON mode, then every output line is read. Every line is a JSON object with the fields every line carries;
none holds a token, secret, signature or pairing code the flow used; and the lines name the robot and the
user, so the logs are useful, not just empty.
"""

import asyncio
import json
import time
from datetime import timedelta
from urllib.parse import urlencode

import httpx
import pytest
from rest_framework_simplejwt.tokens import AccessToken

from accounts.models import User
from devices.signing import generate_secret
from tests.relay.flows import ANSWER, APP_CANDIDATES, OFFER, ROBOT_CANDIDATES
from tests.support import live as c
from tests.support.signing import signed

pytestmark = [pytest.mark.live, pytest.mark.services]

RELAY_ENV = {"LOG_FORMAT": "json"}  # live_relays: LOG_LEVEL=DEBUG already
DEVICE_ID = "wimz_sweep_01"
PASSWORD = "x-Sweep-pass-4242"
REQUIRED = ("timestamp", "level", "logger", "event", "instance")


async def test_no_secret_of_a_whole_flow_reaches_a_log_line(live_relays, transactional_db, make_device):
    a, b = live_relays
    _, secret = await c.db(lambda: make_device(DEVICE_ID))
    used: dict[str, str] = {"device secret": secret, "password": PASSWORD}
    base = int(time.time())  # signed timestamps base-3, base-2, base-1: each (timestamp, signature) is spent once
    async with httpx.AsyncClient(timeout=10) as http:
        creds = {"email": "sweep@example.com", "password": PASSWORD}
        registered = (await http.post(a.http + "/api/auth/register", json=creds)).json()
        logged_in = (await http.post(b.http + "/api/auth/login", json=creds)).json()
        refreshed = (await http.post(a.http + "/api/auth/refresh", json={"refresh": logged_in["refresh"]})).json()
        user_id = registered["user_id"]
        used.update(
            {
                "access 1": registered["access"],
                "refresh 1": registered["refresh"],
                "access 2": logged_in["access"],
                "refresh 2": logged_in["refresh"],
                "access 3": refreshed["access"],
                "refresh 3": refreshed["refresh"],
            }
        )
        bearer = {"Authorization": f"Bearer {refreshed['access']}"}

        code_headers = c.robot_headers(DEVICE_ID, secret, base - 3)
        code = await http.post(a.http + "/api/devices/pairing-code", headers=code_headers)
        assert code.status_code == 201, code.text
        used.update({"pairing code": code.json()["pairing_code"], "signature 1": code_headers["X-Signature"]})
        paired = await http.post(
            b.http + "/api/devices/pair", headers=bearer, json={"pairing_code": used["pairing code"]}
        )
        assert paired.status_code in (200, 201), paired.text
        # a token in the query string of plain HTTP requests
        await http.get(a.http + "/api/auth/me", params={"token": refreshed["access"]})
        await http.get(a.http + "/api/devices", headers=bearer, params={"sig": code_headers["X-Signature"]})

        robot_headers = c.robot_headers(DEVICE_ID, secret, base - 2)
        used["signature 2"] = robot_headers["X-Signature"]
        robot = await c.robot(a.ws, DEVICE_ID, secret, base - 2)
        app = await c.app(b.ws, refreshed["access"])
        try:
            assert (await c.recv_type(app, "device_status"))["device_id"] == DEVICE_ID
            await c.send(app, {"type": "webrtc_request", "device_id": DEVICE_ID})
            session_id = (await c.recv_type(app, "webrtc_credentials"))["session_id"]
            assert (await c.recv_type(robot, "webrtc_request"))["session_id"] == session_id
            await c.send(robot, {"type": "webrtc_offer", "session_id": session_id, "sdp": OFFER})
            await c.recv_type(app, "webrtc_offer")
            await c.send(app, {"type": "webrtc_answer", "session_id": session_id, "sdp": ANSWER})
            await c.recv_type(robot, "webrtc_answer")
            await c.send(robot, {"type": "webrtc_ice", "session_id": session_id, "candidate": ROBOT_CANDIDATES[0]})
            await c.recv_type(app, "webrtc_ice")
            await c.send(app, {"type": "webrtc_ice", "session_id": session_id, "candidate": APP_CANDIDATES[0]})
            await c.recv_type(robot, "webrtc_ice")
            # in-band renewal, accepted, then refused with a tampered token
            await c.send(app, {"type": "auth", "token": logged_in["access"]})
            assert (await c.recv_type(app, "auth_result"))["success"] is True
            tampered = refreshed["access"][:-4] + ("AAAA" if not refreshed["access"].endswith("AAAA") else "BBBB")
            used["tampered token"] = tampered
            await c.send(app, {"type": "auth", "token": tampered})
            assert (await c.recv_type(app, "error"))["code"] == "NOT_AUTHORIZED"
            await c.send(app, {"type": "webrtc_close", "session_id": session_id, "reason": "user_hangup"})
            await c.recv_type(robot, "webrtc_close")
        finally:
            await app.close()
            await robot.close()

        # refused handshakes (bad tokens, a bad signature) and one signed in the query string
        await _handshakes(a, b, used, user_id=user_id, tampered=tampered, secret=secret, query_ts=base - 1)

        for refresh in (registered["refresh"], refreshed["refresh"]):
            assert (await http.post(b.http + "/api/auth/logout", json={"refresh": refresh})).status_code == 200
    await asyncio.sleep(0.5)
    _check_log_lines((a.output() + b.output()).splitlines(), used, user_id=user_id, session_id=session_id)


async def _handshakes(a, b, used: dict[str, str], *, user_id: int, tampered: str, secret: str, query_ts: int) -> None:
    """Refused handshakes (bad tokens on B, a bad signature on A) and a robot's accepted one signed in the
    query string at `query_ts`; every token and signature they use goes into `used`."""
    expired = await c.db(lambda: _expired_token(user_id))
    used["expired token"] = expired
    for token in (tampered, expired, "garbage-token-value-123"):
        assert await c.handshake_status(b.ws + "/ws/app?" + urlencode({"token": token})) == 403
    wrong = c.robot_headers(DEVICE_ID, generate_secret(), int(time.time()))
    used["bad signature"] = wrong["X-Signature"]
    assert await c.handshake_status(a.ws + "/ws/device", wrong) == 403
    query_sig = signed(DEVICE_ID, secret, query_ts).sig
    used["query signature"] = query_sig
    assert (
        await c.handshake_status(
            a.ws + "/ws/device?" + urlencode({"device_id": DEVICE_ID, "ts": query_ts, "sig": query_sig})
        )
        == 101
    )


def _check_log_lines(lines: list[str], used: dict[str, str], *, user_id: int, session_id: str) -> None:
    """Every line is a JSON object with the `REQUIRED` fields; no value of `used` (named by its key) nor a
    token's tail is in them; and they are useful: the robot's, the user's and the session's lines name
    them, the access log has every request and handshake, and the relays logged at DEBUG."""
    records = []
    for line in lines:
        record = json.loads(line)  # every line is one JSON object
        assert all(record.get(key) for key in REQUIRED), line
        records.append(record)
    text = "\n".join(lines)
    assert "token=" not in text and "sig=" not in text  # no query string at all, not even scrubbed
    for name, value in used.items():
        assert value not in text, f"{name} reached the log"
        if len(value) > 40:  # tokens: not even their tail (the signature part of a JWT)
            assert value[-20:] not in text, f"the end of {name} reached the log"
    # useful, not empty: the robot's and the user's lines name them, the access log has every request
    # (bound to each socket's task at connect: its handshake line and the relay's lines for it carry it)
    accepted = {r["path"]: r for r in records if r["event"] == "websocket accepted"}
    assert accepted["/ws/device"].get("device_id") == DEVICE_ID and accepted["/ws/app"].get("user_id") == user_id
    assert any(r.get("device_id") == DEVICE_ID and r["logger"] == "relay.consumers" for r in records)
    assert any(r.get("user_id") == user_id and r["logger"] == "relay.consumers" for r in records)
    assert any(r.get("session_id") == session_id for r in records)
    access = {(r["event"], r["path"]) for r in records if r["logger"] == "wimz.access"}
    for path in (
        "/api/auth/register",
        "/api/auth/login",
        "/api/auth/refresh",
        "/api/devices/pairing-code",
        "/api/devices/pair",
        "/api/auth/logout",
        "/api/auth/me",
    ):
        assert ("http request", path) in access, path
    assert {
        ("websocket accepted", "/ws/device"),
        ("websocket accepted", "/ws/app"),
        ("websocket refused", "/ws/app"),
        ("websocket refused", "/ws/device"),
    } <= access
    debug = [r for r in records if r["level"] == "debug"]
    assert debug, "the relays ran at DEBUG"


def _expired_token(user_id: int) -> str:
    token = AccessToken.for_user(User.objects.get(pk=user_id))
    token.set_exp(from_time=token.current_time - timedelta(seconds=20), lifetime=timedelta(seconds=10))
    return str(token)
