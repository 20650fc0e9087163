"""Structured logs (docs/operations.md "Logs"): JSON lines with the fields every line carries, each socket's
ids bound to its own lines, and the access log (`wimz.access`) without query strings.

The log is read as the operator sees it: through a handler built like `settings.LOGGING`'s console handler
(`core.logformat.formatter` behind `ScrubSecretsFilter`).
"""

import asyncio
import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlencode

import pytest
from asgiref.testing import ApplicationCommunicator

from core.logformat import formatter
from core.logging import ScrubSecretsFilter
from relay import connections, dispatch
from tests.relay import flows
from tests.relay.flows import R1, R2
from tests.support import asgi as ws
from wimz.asgi import application

pytestmark = flows.RELAY_DB

ROOT = Path(__file__).resolve().parents[2]
REQUIRED = ("timestamp", "level", "logger", "event", "instance")


@pytest.fixture
def json_log():
    """Everything logged (DEBUG and up, every logger) while the test runs, in JSON mode."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter("json"))
    handler.addFilter(ScrubSecretsFilter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(old_level)


def records(stream: io.StringIO) -> list[dict]:
    """Each line parsed as JSON (fails on a line that is not one object)."""
    out = []
    for line in stream.getvalue().splitlines():
        record = json.loads(line)
        assert isinstance(record, dict), line
        out.append(record)
    return out


async def http_get(path: str, query: str = "", *, client=("127.0.0.1", 50000), headers=()) -> tuple[int, dict]:
    """One GET through the whole ASGI application; returns (status, response headers)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), *headers],
        "client": client,
        "server": ("127.0.0.1", 8000),
    }
    comm = ApplicationCommunicator(application, scope)
    await comm.send_input({"type": "http.request", "body": b"", "more_body": False})
    start = await comm.receive_output(5)
    while (await comm.receive_output(5)).get("more_body"):
        pass
    await comm.wait(5)
    return start["status"], {k.decode().lower(): v.decode() for k, v in start["headers"]}


async def ws_handshake(path: str, query: str = "", *, client=("127.0.0.1", 50001)) -> str:
    """A WebSocket handshake through the whole ASGI application; returns the answer's type and closes."""
    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": "ws",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [],
        "client": client,
        "server": ("127.0.0.1", 8000),
        "subprotocols": [],
    }
    comm = ApplicationCommunicator(application, scope)
    await comm.send_input({"type": "websocket.connect"})
    answer = await comm.receive_output(5)
    if answer["type"] == "websocket.accept":
        await comm.send_input({"type": "websocket.disconnect", "code": 1000})
    await comm.wait(5)
    return answer["type"]


async def test_json_mode_every_line_is_an_object_with_the_required_fields(world, json_log):
    """(a) A robot and an app connect, a session opens and ends, an HTTP request is served, an exception
    with secrets in its message and in `extra` is logged: every line is one JSON object with `timestamp`
    (ISO 8601 UTC), `level`, `logger`, `event` and `instance`; the secrets are not in any line."""
    robot, app = await flows.robot_app(world)
    session_id, _, _ = await flows.open_session(app, robot)
    await ws.send(app, flows.close_frame(session_id, "user_hangup"))
    await ws.recv_type(robot, "webrtc_close")
    await ws.close(robot, app)
    await http_get("/health")
    try:
        raise ValueError(f"boom with token={world.t1}")
    except ValueError:
        logging.getLogger("tests.ops").exception(
            "failed with Bearer %s", world.t2, extra={"note": f"?token={world.t1}", "obj": object()}
        )
    lines = records(json_log)
    assert len(lines) > 5
    for record in lines:
        assert all(record.get(key) for key in REQUIRED), record
        assert flows.is_iso_utc(record["timestamp"]) and record["timestamp"].endswith("Z"), record
    [failed] = [r for r in lines if r["event"].startswith("failed with")]
    assert failed["level"] == "error" and failed["logger"] == "tests.ops"
    assert "Traceback" in failed["exception"] and "ValueError" in failed["exception"]
    assert failed["note"] == "?token=***" and failed["obj"] == "<object>"
    assert {"session opened", "session ended"} <= {r["event"] for r in lines}
    opened = next(r for r in lines if r["event"] == "session opened")
    assert opened["session_id"] == session_id and opened["device_id"] == R1
    text = json_log.getvalue()
    for secret in (world.t1, world.t2, world.r1_secret):
        assert secret not in text


async def test_two_sockets_lines_carry_their_own_ids(world, json_log, monkeypatch):
    """(b) Two robots and two apps of two users, connected together; each makes the relay log a line
    while handling its frame (an unexpected error), interleaved. Each line carries the `device_id` /
    `user_id` of the socket it came from, and no other socket's."""

    async def broken(party, kind, frame):
        raise RuntimeError("boom")

    monkeypatch.setattr(dispatch, "app_frame", broken)
    monkeypatch.setattr(dispatch, "robot_frame", broken)
    r1 = await ws.robot(R1, world.r1_secret)
    r2 = await ws.robot(R2, world.r2_secret)
    a1 = await ws.app(world.t1, drain_status=1)
    a2 = await ws.app(world.t2, drain_status=1)
    sockets = {"r1": r1, "a2": a2, "r2": r2, "a1": a1}
    for _ in range(2):
        for name, comm in sockets.items():
            await ws.send(comm, {"type": f"probe_{name}"})
        for comm in sockets.values():
            await flows.expect_error(comm, "INTERNAL")
    lines = [r for r in records(json_log) if r["event"].startswith("unhandled error")]
    expected = {
        "r1": {"device_id": R1},
        "r2": {"device_id": R2},
        "a1": {"user_id": world.u1.pk},
        "a2": {"user_id": world.u2.pk},
    }
    for name, ids in expected.items():
        mine = [r for r in lines if f"probe_{name}" in r["event"]]
        assert len(mine) == 2, (name, lines)
        for record in mine:
            assert {k: record.get(k) for k in ("device_id", "user_id")} == {
                "device_id": None,
                "user_id": None,
                **ids,
            }, record
            assert record.get("request_id")
    # one request id per socket, the same on each of its lines
    assert len({r["request_id"] for r in lines}) == 4
    await ws.close(*sockets.values())


async def test_process_wide_tasks_do_not_carry_the_ids_of_the_socket_that_started_them(
    world, json_log, settings, monkeypatch
):
    """The presence heartbeat is started by the first socket that connects (from its task, after it bound
    its ids); its lines must not carry that socket's `device_id` or `request_id`."""

    async def failing():
        raise RuntimeError("beat")

    for task in connections._heartbeat_tasks:
        task.cancel()
    connections._heartbeat_tasks.clear()
    settings.WIMZ_PRESENCE_HEARTBEAT = 0.05
    monkeypatch.setattr(connections, "heartbeat_once", failing)
    robot = await ws.robot(R1, world.r1_secret)
    try:
        await asyncio.sleep(0.3)
    finally:
        for task in connections._heartbeat_tasks:
            task.cancel()
        await ws.close(robot)
    beats = [r for r in records(json_log) if r["event"] == "presence heartbeat failed"]
    assert beats
    for record in beats:
        assert "device_id" not in record and "request_id" not in record, record
    assert any(r.get("device_id") == R1 for r in records(json_log))


async def test_access_log_lines_have_no_query_string(world, json_log, settings):
    """(c) An HTTP request and WebSocket handshakes (accepted and refused) carrying `?token=`: one
    `wimz.access` line each with method/path/status/duration_ms/client/request_id (role for WebSockets),
    the path without its query string, and the token nowhere; the HTTP response carries the request id."""
    status, headers = await http_get("/api/auth/me", urlencode({"token": world.t1}))
    assert status == 401
    assert await ws_handshake("/ws/app", urlencode({"token": world.t1})) == "websocket.accept"
    assert await ws_handshake("/ws/app", urlencode({"token": world.t1[:-4] + "AAAA"})) == "websocket.close"
    access = [r for r in records(json_log) if r["logger"] == "wimz.access"]
    [http] = [r for r in access if r["event"] == "http request"]
    assert {k: http[k] for k in ("method", "path", "status", "client")} == {
        "method": "GET",
        "path": "/api/auth/me",
        "status": 401,
        "client": "127.0.0.1",
    }
    assert isinstance(http["duration_ms"], float) and http["duration_ms"] >= 0
    assert http["request_id"] == headers["x-request-id"]
    [accepted] = [r for r in access if r["event"] == "websocket accepted"]
    [refused] = [r for r in access if r["event"] == "websocket refused"]
    [closed] = [r for r in access if r["event"] == "websocket closed"]
    for record, status in ((accepted, 101), (refused, 403)):
        assert {k: record[k] for k in ("path", "status", "client", "role")} == {
            "path": "/ws/app",
            "status": status,
            "client": "127.0.0.1",
            "role": "app",
        }, record
        assert record["duration_ms"] >= 0 and record["request_id"]
    assert accepted["user_id"] == world.u1.pk and closed["user_id"] == world.u1.pk
    assert closed["request_id"] == accepted["request_id"] != refused["request_id"]
    text = json_log.getvalue()
    assert "token" not in text and world.t1[-20:] not in text


async def test_request_id_is_taken_only_from_a_trusted_proxy(world, json_log, settings):
    """`X-Request-ID` is the request id only when the TCP peer is a trusted proxy and the value is plain;
    from anyone else (or a value with other characters) a new id is made."""
    from wimz.proxy import parse_networks

    settings.WIMZ_TRUSTED_PROXIES = parse_networks(["10.0.0.1"])
    given = [(b"x-request-id", b"edge-1234.abc")]
    _, trusted = await http_get("/health", client=("10.0.0.1", 1), headers=given)
    _, direct = await http_get("/health", client=("192.0.2.7", 1), headers=given)
    _, forged = await http_get("/health", client=("10.0.0.1", 1), headers=[(b"x-request-id", b"a\nb")])
    assert trusted["x-request-id"] == "edge-1234.abc"
    assert direct["x-request-id"] not in ("edge-1234.abc", "") and len(direct["x-request-id"]) == 32
    assert len(forged["x-request-id"]) == 32
    ids = [r["request_id"] for r in records(json_log) if r["event"] == "http request"]
    assert ids == [trusted["x-request-id"], direct["x-request-id"], forged["x-request-id"]]


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_log_format_setting_selects_the_renderer(fmt, tmp_path):
    """`LOG_FORMAT` picks the renderer of `settings.LOGGING`'s handler: `json` writes one object per line,
    `text` (the default) readable console lines; both scrub. `LOG_LEVEL` sets the root level."""
    code = (
        "import django, logging; django.setup(); "
        "logging.getLogger('relay.x').info('hello token=abc', extra={'session_id': 's1'}); "
        "logging.getLogger('relay.x').debug('hidden')"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "wimz.settings",
        "DEBUG": "1",
        "LOG_LEVEL": "INFO",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
    }
    env.pop("REDIS_URL", None)
    if fmt == "json":
        env["LOG_FORMAT"] = "json"
    else:
        env.pop("LOG_FORMAT", None)
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True
    )
    [line] = result.stderr.splitlines()
    if fmt == "json":
        record = json.loads(line)
        assert {k: record[k] for k in ("level", "logger", "event", "session_id")} == {
            "level": "info",
            "logger": "relay.x",
            "event": "hello token=***",
            "session_id": "s1",
        }
    else:
        assert not line.startswith("{") and "hello token=***" in line and "[relay.x]" in line
        assert "session_id=s1" in line and "info" in line
