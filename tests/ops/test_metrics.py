"""`/metrics` (docs/operations.md "Metrics"): who may scrape it, that it answers any Host, that the values
are exactly what a real flow through the consumers did, that client-chosen frame types cannot grow the
label set, that django-prometheus' HTTP and database metrics work here, and that the Grafana dashboard
queries only metrics the relay exports."""

import json
import re
from pathlib import Path

import pytest
from asgiref.testing import ApplicationCommunicator
from prometheus_client import REGISTRY

from relay import metrics
from tests.relay import flows
from tests.relay.flows import R1, answer_frame, ice_frame, offer_frame
from tests.support import asgi as ws
from wimz.asgi import application
from wimz.proxy import parse_networks

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy/grafana/wimz-relay.json"
TOKEN = "metrics-token-for-tests-0123456789"


async def http(path="/metrics", *, peer="10.0.0.5", headers=(), method="GET", host="relay.example.com"):
    """One request through the whole ASGI application (trusted-proxy rule included) from TCP peer `peer`;
    returns (status, headers dict, body)."""
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", host.encode()), *[(k.encode(), v.encode()) for k, v in headers]],
        "client": [peer, 40000],
        "server": ["10.1.2.3", 8000],
    }
    comm = ApplicationCommunicator(application, scope)
    await comm.send_input({"type": "http.request", "body": b""})
    start = await comm.receive_output(5)
    body = b""
    while True:
        chunk = await comm.receive_output(5)
        body += chunk.get("body", b"")
        if not chunk.get("more_body"):
            break
    await comm.wait(5)
    return start["status"], {k.decode().lower(): v.decode() for k, v in start.get("headers", [])}, body


def value(name: str, **labels) -> float:
    """A sample's current value in this process's registry (0 when the child does not exist yet)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def exported_names(text: str) -> set[str]:
    """Every sample name the exposition `text` can hold, from its `# TYPE` lines (a labelled family with
    no child yet has no sample line, but its name is still what a query names)."""
    names = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M):
        names.add(name)
        base = name.removesuffix("_total")
        if kind == "counter":
            names |= {base + "_total", base + "_created"}
        elif kind in ("histogram", "summary"):
            names |= {name + suffix for suffix in ("_bucket", "_count", "_sum", "_created")}
    return names


# --- access ---------------------------------------------------------------------------------------------


async def test_metrics_are_closed_by_default(settings):
    """Neither WIMZ_METRICS_TOKEN nor WIMZ_METRICS_ALLOW: 403 for everyone, a bearer token included."""
    settings.WIMZ_METRICS_TOKEN, settings.WIMZ_METRICS_ALLOW = "", ()
    status, _, body = await http(peer="127.0.0.1")
    assert status == 403 and json.loads(body)["code"] == "permission_denied"
    status, _, _ = await http(headers=[("authorization", "Bearer anything")])
    assert status == 403


async def test_the_token_opens_metrics_and_a_wrong_one_does_not(settings):
    settings.WIMZ_METRICS_TOKEN, settings.WIMZ_METRICS_ALLOW = TOKEN, ()
    status, headers, body = await http(headers=[("authorization", f"Bearer {TOKEN}")])
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "# TYPE wimz_relay_frames_total counter" in body.decode()
    for wrong in (f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", f"Basic {TOKEN}", "Bearer ", ""):
        status, _, body = await http(headers=[("authorization", wrong)] if wrong else [])
        assert status == 403 and b"wimz_relay" not in body, wrong


async def test_the_allowlist_uses_the_client_address_the_proxy_rule_settled(settings):
    """An allowed client gets in; another does not, not even by writing X-Forwarded-For itself; behind a
    trusted proxy the forwarded client address is the one checked."""
    settings.WIMZ_METRICS_TOKEN, settings.WIMZ_METRICS_ALLOW = "", parse_networks(["10.0.0.0/8", "::1"])
    settings.WIMZ_TRUSTED_PROXIES = parse_networks(["192.168.100.1"])
    assert (await http(peer="10.9.8.7"))[0] == 200
    assert (await http(peer="::1"))[0] == 200
    assert (await http(peer="172.16.0.9"))[0] == 403
    assert (await http(peer="172.16.0.9", headers=[("x-forwarded-for", "10.0.0.5")]))[0] == 403
    assert (await http(peer="192.168.100.1", headers=[("x-forwarded-for", "10.0.0.5")]))[0] == 200
    assert (await http(peer="192.168.100.1", headers=[("x-forwarded-for", "172.16.0.9")]))[0] == 403


async def test_with_both_set_both_must_match(settings):
    settings.WIMZ_METRICS_TOKEN, settings.WIMZ_METRICS_ALLOW = TOKEN, parse_networks(["10.0.0.0/8"])
    bearer = [("authorization", f"Bearer {TOKEN}")]
    assert (await http(peer="10.0.0.5", headers=bearer))[0] == 200
    assert (await http(peer="10.0.0.5"))[0] == 403
    assert (await http(peer="172.16.0.9", headers=bearer))[0] == 403


@pytest.mark.parametrize("host", ["10.1.2.3:8000", "wimz-relay-7d9f-abcde", "[fd00::12]:8000"])
async def test_metrics_answer_whatever_the_host(settings, host):
    """Prometheus scrapes a pod by its IP: a Host outside ALLOWED_HOSTS, HTTPS redirect on, still 200 (the
    same Host on another path is refused 400)."""
    settings.ALLOWED_HOSTS = ["relay.example.com"]
    settings.SECURE_SSL_REDIRECT = True
    settings.WIMZ_METRICS_TOKEN, settings.WIMZ_METRICS_ALLOW = TOKEN, ()
    bearer = ("authorization", f"Bearer {TOKEN}")
    assert (await http(host=host, headers=[bearer]))[0] == 200
    assert (await http(path="/stats", host=host, headers=[bearer]))[0] == 400


def test_a_bad_allowlist_entry_names_the_setting():
    with pytest.raises(ValueError, match=re.escape("WIMZ_METRICS_ALLOW: 'ten.0.0.0/8'")):
        parse_networks(["ten.0.0.0/8"], setting="WIMZ_METRICS_ALLOW")


# --- the values are what happened --------------------------------------------------------------------


FRAMES = "wimz_relay_frames_total"
GAUGES = ("wimz_relay_robot_sockets", "wimz_relay_app_sockets", "wimz_relay_users_online", "wimz_relay_live_sessions")


def counters() -> dict:
    """The counters a flow changes, now."""
    out = {
        (kind, d): value(FRAMES, type=kind, direction=d)
        for kind in ("webrtc_request", "webrtc_answer", "webrtc_ice", "webrtc_close", "command", "passthrough")
        for d in ("app_to_robot",)
    }
    out |= {
        (kind, "robot_to_app"): value(FRAMES, type=kind, direction="robot_to_app")
        for kind in ("webrtc_offer", "webrtc_ice", "event", "hello")
    }
    out |= {
        ("refused", code): value("wimz_relay_frames_refused_total", code=code)
        for code in ("UNKNOWN_TYPE", "BAD_REQUEST", "NOT_AUTHORIZED")
    }
    out |= {
        ("handshake", role): value("wimz_relay_handshakes_refused_total", role=role, reason="auth")
        for role in ("robot", "app")
    }
    out |= {
        ("ended", reason): value("wimz_relay_sessions_ended_total", reason=reason)
        for reason in ("closed_by_app", "app_disconnected", "robot_disconnected")
    }
    out[("setup", "count")] = value("wimz_relay_session_setup_seconds_count")
    out[("ice", "stun")] = value("wimz_relay_ice_provider_seconds_count", provider="stun", outcome="ok")
    return out


def gauges() -> tuple[float, ...]:
    return tuple(value(name) for name in GAUGES)


def changed(before: dict, after: dict) -> dict:
    return {key: after[key] - before[key] for key in before if after[key] != before[key]}


@flows.RELAY_DB
async def test_a_real_flow_is_counted_exactly(world, settings):
    """Robot and app connect, a session goes request → offer → answer → ICE both ways → close by the
    app, the robot sends an event and a hello, the app a command and a pass-through frame, one frame is
    refused, two handshakes are refused; every counter moved by exactly that, the gauges counted the
    open sockets and session, and are back where they started once both sockets closed."""
    settings.WIMZ_ICE_PROVIDER = "stun"
    base_gauges, before = gauges(), counters()

    _, accepted = await ws.connect("/ws/device", ws.robot_headers(R1, "0" * 64))
    assert not accepted
    _, accepted = await ws.connect("/ws/app?token=not-a-jwt")
    assert not accepted

    robot, app = await flows.robot_app(world)
    assert gauges() == tuple(g + d for g, d in zip(base_gauges, (1, 1, 1, 0), strict=True))
    await ws.send(robot, {"type": "hello", "device_id": R1, "capabilities": ["video"]})
    await ws.send(robot, {"type": "battery", "level": 80})
    assert (await ws.recv_type(app, "battery"))["level"] == 80
    await ws.send(app, {"type": "command", "device_id": R1, "command": "dispense_treat", "data": {}})
    await ws.send(app, {"type": "joystick", "device_id": R1, "x": 1})
    assert (await ws.recv(robot))["type"] == "command"
    assert (await ws.recv(robot))["type"] == "joystick"

    session_id, _, _ = await flows.open_session(app, robot)
    assert gauges()[3] == base_gauges[3] + 1
    await ws.send(robot, offer_frame(session_id))
    await ws.recv_type(app, "webrtc_offer")
    await ws.send(app, answer_frame(session_id))
    await ws.recv_type(robot, "webrtc_answer")
    await ws.send(robot, ice_frame(session_id, flows.ROBOT_CANDIDATES[0]))
    await ws.recv_type(app, "webrtc_ice")
    await ws.send(app, ice_frame(session_id, flows.APP_CANDIDATES[0]))
    await ws.recv_type(robot, "webrtc_ice")
    await ws.send(app, {"type": "webrtc_offer", "session_id": session_id, "sdp": flows.OFFER})  # not the app's
    await flows.expect_error(app, "UNKNOWN_TYPE", ref="webrtc_offer")
    await ws.send(app, {"type": "webrtc_close", "session_id": session_id})
    assert (await ws.recv_type(robot, "webrtc_close"))["reason"] == "closed_by_app"
    await flows.barrier(app)
    assert gauges()[3] == base_gauges[3]

    await ws.close(robot, app)
    assert changed(before, counters()) == {
        ("hello", "robot_to_app"): 1,
        ("event", "robot_to_app"): 1,
        ("webrtc_offer", "robot_to_app"): 1,
        ("webrtc_ice", "robot_to_app"): 1,
        ("command", "app_to_robot"): 1,
        ("passthrough", "app_to_robot"): 1,
        ("webrtc_request", "app_to_robot"): 1,
        ("webrtc_answer", "app_to_robot"): 1,
        ("webrtc_ice", "app_to_robot"): 1,
        ("webrtc_close", "app_to_robot"): 1,
        ("refused", "UNKNOWN_TYPE"): 1,
        ("handshake", "robot"): 1,
        ("handshake", "app"): 1,
        ("ended", "closed_by_app"): 1,
        ("setup", "count"): 1,
        ("ice", "stun"): 1,
    }
    assert gauges() == base_gauges


@flows.RELAY_DB
async def test_sessions_ended_by_a_disconnect_are_counted_once(world):
    """An app socket closes during a session: one `app_disconnected`, none for the robot's side."""
    before = counters()
    robot, app = await flows.robot_app(world)
    await flows.open_session(app, robot)
    await ws.close(app)
    assert (await ws.recv_type(robot, "webrtc_close"))["reason"] == "app_disconnected"
    await ws.close(robot)
    delta = changed(before, counters())
    assert delta[("ended", "app_disconnected")] == 1 and ("ended", "robot_disconnected") not in delta


@flows.RELAY_DB
async def test_client_chosen_types_cannot_grow_the_label_set(world, settings):
    """1,000 distinct robot event types and 1,000 distinct app pass-through types: two label values,
    `event` and `passthrough`, each counted 1,000 times; no type name reaches /metrics."""
    settings.WIMZ_FRAME_RATE = 0
    settings.WIMZ_METRICS_TOKEN, settings.WIMZ_METRICS_ALLOW = TOKEN, ()
    children = len(metrics.FRAMES.collect()[0].samples)
    events = value(FRAMES, type="event", direction="robot_to_app")
    passthrough = value(FRAMES, type="passthrough", direction="app_to_robot")
    robot, app = await flows.robot_app(world)
    for n in range(1000):
        await ws.send(robot, {"type": f"custom_event_{n}"})
        await ws.send(app, {"type": f"custom_pass_{n}", "device_id": R1})
    await flows.barrier(robot)
    await flows.barrier(app)
    await ws.close(robot, app)
    assert value(FRAMES, type="event", direction="robot_to_app") == events + 1000
    assert value(FRAMES, type="passthrough", direction="app_to_robot") == passthrough + 1000
    assert len(metrics.FRAMES.collect()[0].samples) == children
    _, _, body = await http(headers=[("authorization", f"Bearer {TOKEN}")])
    assert b"custom_" not in body


def test_unknown_label_values_fall_back_and_are_not_stored():
    table = metrics.ROUTED["robot"]
    size = len(table)
    assert table["no-such-type"] is table.fallback and table["webrtc_offer"] is not table.fallback
    assert len(table) == size
    assert metrics.REFUSED["NOT_A_CODE"] is metrics.REFUSED.fallback


async def test_ice_provider_failures_are_observed_by_kind(settings):
    from relay.ice import get_ice_servers

    settings.WIMZ_CLOUDFLARE_TURN_KEY_ID = settings.WIMZ_CLOUDFLARE_TURN_API_TOKEN = ""
    before = value("wimz_relay_ice_provider_seconds_count", provider="cloudflare", outcome="config")
    unknown = value("wimz_relay_ice_provider_seconds_count", provider="unknown", outcome="unknown_provider")
    assert (await get_ice_servers(user_id=1, provider="cloudflare")).fallback
    assert (await get_ice_servers(user_id=1, provider="something-else")).fallback
    assert value("wimz_relay_ice_provider_seconds_count", provider="cloudflare", outcome="config") == before + 1
    assert value("wimz_relay_ice_provider_seconds_count", provider="unknown", outcome="unknown_provider") == unknown + 1


# --- django-prometheus: HTTP under ASGI, the database behind the pool ---------------------------------


@pytest.mark.django_db(transaction=True)
async def test_http_metrics_count_async_views_under_asgi():
    """django-prometheus' middleware pair around the async `/stats` view, through the ASGI application."""
    labels = {"view": "stats", "method": "GET"}
    requests = value("django_http_requests_latency_seconds_by_view_method_count", **labels)
    forbidden = value("django_http_responses_total_by_status_view_method_total", status="403", **labels)
    status, _, _ = await http(path="/stats", peer="127.0.0.1", host="localhost")
    assert status == 403
    assert value("django_http_requests_latency_seconds_by_view_method_count", **labels) == requests + 1
    assert value("django_http_responses_total_by_status_view_method_total", status="403", **labels) == forbidden + 1


@pytest.mark.django_db
def test_database_metrics_count_queries_through_the_configured_backend(settings):
    """django-prometheus' backend wrapper is the engine (with the psycopg pool on PostgreSQL): a query
    is counted and timed."""
    from django.db import connection

    assert connection.settings_dict["ENGINE"].startswith("django_prometheus.db.backends.")
    if connection.vendor == "postgresql" and settings.DATABASES["default"].get("OPTIONS", {}).get("pool"):
        assert connection.pool is not None
    labels = {"alias": "default", "vendor": connection.vendor}
    executed = value("django_db_execute_total", **labels)
    timed = value("django_db_query_duration_seconds_count", **labels)
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    assert value("django_db_execute_total", **labels) == executed + 1
    assert value("django_db_query_duration_seconds_count", **labels) == timed + 1


# --- the dashboard ---------------------------------------------------------------------------------------


def dashboard_exprs() -> list[str]:
    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("expr"), str):
                yield node["expr"]
            for child in node.values():
                yield from walk(child)
        elif isinstance(node, list):
            for child in node:
                yield from walk(child)

    return list(walk(json.loads(DASHBOARD.read_text())))


async def test_the_dashboard_queries_only_exported_metrics_and_shows_every_relay_metric(settings):
    """Every metric name a panel of deploy/grafana/wimz-relay.json queries is in /metrics, and every
    `wimz_relay_*` family of /metrics is on the dashboard, so the two cannot drift apart."""
    settings.WIMZ_METRICS_TOKEN, settings.WIMZ_METRICS_ALLOW = TOKEN, ()
    status, _, body = await http(headers=[("authorization", f"Bearer {TOKEN}")])
    assert status == 200
    text = body.decode()
    exported = exported_names(text)
    exprs = dashboard_exprs()
    assert len(exprs) >= 10
    queried = {name for expr in exprs for name in re.findall(r"\b(?:wimz|django|process|python)_[a-z0-9_]+", expr)}
    assert queried, exprs
    assert sorted(queried - exported) == []
    families = set(re.findall(r"^# TYPE (wimz_relay_\S+) ", text, re.M))
    assert len(families) >= 10
    shown = {family for family in families if any(name.startswith(family) for name in queried)}
    assert sorted(families - shown) == []
