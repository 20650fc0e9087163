"""Log hygiene against hostile frames: no forged lines, no amplification, no secrets (docs/protocol.md §7,
§15, §20).

The log is read as the operator sees it: through a handler configured like `settings.LOGGING`'s console
handler (the project's formatter and `ScrubSecretsFilter`).
"""

import io
import json
import logging

import pytest

from core import logging as core_logging
from core.logging import ScrubSecretsFilter, client_text, scrub
from relay import dispatch
from tests.relay import flows
from tests.relay.flows import R1
from tests.support import asgi as ws

pytestmark = flows.RELAY_DB


@pytest.fixture
def relay_log():
    """Everything logged (DEBUG and up, every logger) while the test runs, as the console would show it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler.addFilter(ScrubSecretsFilter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    core_logging._last_traceback.clear()
    yield stream
    root.removeHandler(handler)
    root.setLevel(old_level)


def nested(depth: int):
    """A JSON value nesting `depth` arrays: `[[...[1]...]]`."""
    value = 1
    for _ in range(depth):
        value = [value]
    return value


async def test_a_newline_in_a_frame_type_cannot_forge_a_log_line(world, relay_log, monkeypatch):
    """A frame whose `type` holds a newline and that makes the relay fail unexpectedly is logged as one
    record whose message is one line, the newline written `\\n`: nothing starts a line of its own."""

    async def broken(party, kind, frame):
        raise RuntimeError("boom")

    monkeypatch.setattr(dispatch, "app_frame", broken)
    robot, app = await flows.robot_app(world)
    await ws.send(app, {"type": "status\n2026-01-01 00:00:00 CRITICAL root FORGED"})
    await flows.expect_error(app, "INTERNAL")
    await ws.ping_ok(app)
    lines = relay_log.getvalue().splitlines()
    assert not [line for line in lines if line.startswith("2026-01-01 00:00:00 CRITICAL")], lines
    [line] = [line for line in lines if "unhandled error" in line]
    assert "status\\n2026-01-01 00:00:00 CRITICAL root FORGED frame" in line
    await ws.close(robot, app)


async def test_a_repeated_unexpected_error_logs_one_traceback_then_one_line_each(world, relay_log, monkeypatch):
    """An unexpected error a client can trigger at will costs one log line per frame: the traceback is
    logged once for its raise site, later ones are one line naming the exception and the site."""

    async def broken(party, kind, frame):
        raise RuntimeError("boom")

    monkeypatch.setattr(dispatch, "app_frame", broken)
    robot, app = await flows.robot_app(world)
    for _ in range(5):
        await ws.send(app, {"type": "teleport"})
        await flows.expect_error(app, "INTERNAL", ref="teleport")
    out = relay_log.getvalue()
    assert out.count("Traceback") == 1
    assert out.count("unhandled error while handling a teleport frame") == 5
    assert out.count("RuntimeError at test_log_hygiene.py") == 4
    await ws.close(robot, app)


@pytest.mark.parametrize("side", ["robot", "app"])
async def test_deep_nesting_is_bad_request_and_logs_next_to_nothing(world, relay_log, side):
    """600 levels of nesting (3.6 KB) from either side: BAD_REQUEST naming the limit, nothing forwarded,
    the socket still answers ping, and the whole log of that frame stays under 1 KB (it was ~160 KB of
    traceback per frame). 32 levels are forwarded; 33 are refused."""
    robot, app = await flows.robot_app(world)
    sender, receiver = (robot, app) if side == "robot" else (app, robot)
    kind = "status_update" if side == "robot" else "command"
    base = {"type": kind, "command": "motor", "device_id": R1}
    text = json.dumps({**base, "data": nested(600)})
    assert len(text) < 4000
    before = len(relay_log.getvalue())
    await ws.send(sender, text)
    error = await flows.expect_error(sender, "BAD_REQUEST")
    assert "32 levels" in error["message"]
    await ws.ping_ok(sender)
    assert len(relay_log.getvalue()) - before < 1000, relay_log.getvalue()[before:][:2000]
    assert "Traceback" not in relay_log.getvalue()
    assert await ws.nothing(receiver)

    await ws.send(sender, {**base, "data": nested(31)})  # 32 levels with the frame itself
    forwarded = await ws.recv(receiver)
    assert forwarded["data"] == nested(31)
    await ws.send(sender, {**base, "data": nested(32)})
    await flows.expect_error(sender, "BAD_REQUEST")
    await ws.close(robot, app)


async def test_a_wide_but_shallow_frame_is_not_refused(world):
    """Many brackets are fine when they do not nest: 500 small objects in one list are forwarded."""
    robot, app = await flows.robot_app(world)
    points = [{"x": i, "y": [i, i]} for i in range(500)]
    await ws.send(robot, {"type": "map_update", "points": points})
    assert (await ws.recv(app))["points"] == points
    await ws.close(robot, app)


async def test_ref_is_cut_to_64_characters_everywhere(world):
    """A 10 000-character frame type is not echoed back: every error's `ref` holds its first 64
    characters (here DEVICE_OFFLINE from a pass-through, and NOT_AUTHORIZED before compat auth)."""
    long_type = "t" * 10_000
    app = await ws.app(world.t1, drain_status=1)  # R1 offline
    await ws.send(app, {"type": long_type})
    await flows.expect_error(app, "DEVICE_OFFLINE", ref="t" * 64)
    compat, accepted = await ws.connect("/ws")
    assert accepted
    await ws.send(compat, {"type": long_type})
    await flows.expect_error(compat, "NOT_AUTHORIZED", ref="t" * 64)
    await ws.close(app, compat)


def test_client_text_escapes_and_truncates():
    """The one helper for client strings in log lines: control characters and line separators escaped,
    64 characters kept, anything not a string shown by its type only."""
    assert client_text("a\nb\rc\td\x00e\u2028f") == "a\\nb\\rc\\td\\x00e\\u2028f"
    assert client_text("x" * 70) == "x" * 64 + "…(+6 chars)"
    assert client_text({"type": "x" * 10_000}) == "<dict>"
    assert client_text(None) == "<none>"


def test_the_filter_keeps_every_message_on_one_line():
    """Backstop: a value that reached a message unescaped still cannot start a line of its own."""
    record = logging.LogRecord("relay", logging.INFO, __file__, 1, "refused %s", ("/ws\nFORGED",), None)
    ScrubSecretsFilter().filter(record)
    assert record.getMessage() == "refused /ws\\nFORGED"
    assert scrub("ok") == "ok"


SIG = "9f" * 32  # 64 hex characters, like a device secret or an HMAC signature
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyX2lkIjoxfQ.c2lnbmF0dXJlLXBhcnQ"
SCRUB_CASES = [
    # (what was logged, the secret that must be gone, what must stay)
    (f"provision: device_secret={SIG} name=Kitchen", SIG, "name=Kitchen"),
    ("rotate secret=abcd1234 ok", "abcd1234", "ok"),
    (f"GET /ws/app?token={JWT}&x=1", JWT, "x=1"),
    ("GET /ws/device?device_id=r1&ts=1767225600&sig=deadbeef", "deadbeef", "device_id=r1"),
    ("POST /login password=hunter2&email=a@example.com", "hunter2", "email=a@example.com"),
    ("pairing_code=K7PX3MQ2 claim_code=AB12CD34", "K7PX3MQ2", "pairing_code=***"),
    ("claim-code=AB12CD34", "AB12CD34", "claim-code=***"),
    ("api_key=sk_live_123 access_token=tok_456", "sk_live_123", "access_token=***"),
    ('frame {"type": "auth", "token": "opaque-token-value"}', "opaque-token-value", '"type": "auth"'),
    ('{"device_id":"wimz_robot_01","signature":"' + SIG + '"}', SIG, '"device_id":"wimz_robot_01"'),
    ("{'pairing_code': 'K7PX3MQ2', 'name': 'x'}", "K7PX3MQ2", "'name': 'x'"),
    ('{"password": "with \\"quote\\" inside"}', "quote", '"password": "***"'),
    ("X-Signature: abcdef0123 next", "abcdef0123", "next"),
    ("Authorization: Bearer opaque.token-value", "opaque.token-value", "Authorization: Bearer ***"),
    ("authorization: Basic dXNlcjpwYXNz", "dXNlcjpwYXNz", "Basic ***"),
    ("X-Device-Secret: s3cr3t", "s3cr3t", "X-Device-Secret: ***"),
    (f"websocket handshake refused: unknown path /ws/device/{SIG}", SIG, "/ws/device/"),
    ("GET /api/token/opaque-value/more", "opaque-value", "/more"),
    ("GET /pairing-code/K7PX3MQ2 HTTP/1.1", "K7PX3MQ2", "HTTP/1.1"),
    (f"unhandled error while handling a {SIG} frame", SIG, "frame"),
    (f"unhandled error while handling a {JWT} frame", JWT, "frame"),
    (f"unhandled error while handling a token={SIG[:20]} frame", SIG[:20], "frame"),
    (f"cut jwt {JWT[:40]}…(+100 chars)", JWT[:40], "cut jwt"),
]


@pytest.mark.parametrize(("line", "secret", "kept"), SCRUB_CASES, ids=[c[0][:40] for c in SCRUB_CASES])
def test_scrub_covers_every_form_of_secret(line, secret, kept):
    """Every secret-named key (secret, token, signature, password, authorization, pairing/claim code,
    API keys, in any compound such as `device_secret` or `X-Signature`) loses its value in `k=v`,
    JSON `"k": "v"`, repr `'k': 'v'`, header `K: v` and path `/k/v` forms; so do bearer and basic
    credentials, JWTs (whole or cut) and 64-hex secrets wherever they appear, frame types and paths
    included. The rest of the line stays readable."""
    cleaned = scrub(line)
    assert secret not in cleaned, cleaned
    assert kept in cleaned, cleaned


@pytest.mark.parametrize(
    "line",
    [
        "robot wimz_robot_01 connected",
        "app of user 3 connected",
        "session 0b7f6a52-3c1e-4d3c-9a53-0d7e5b7f3c11 ended",
        "channel specific.1f2e3d4c5b6a7988!0a1b2c3d4e5f6a7b",
        "http request POST /api/auth/register 201 request_id=d10610c502c6425484ae07bf1071b88c",
        "GET /api/auth/me 200",
        "ICE provider 'cloudflare' failed (timeout: no answer within 3 s); serving STUN-only ice_servers",
    ],
)
def test_scrub_leaves_ordinary_lines_alone(line):
    """Ids the relay logs (device ids, user ids, session UUIDs, channel names) are not secrets."""
    assert scrub(line) == line
