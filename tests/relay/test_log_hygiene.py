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
from tests.relay import wsutil as ws
from tests.relay.flows import R1

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
    assert await flows.silent(receiver)

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
