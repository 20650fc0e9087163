"""Project-level checks: settings from the environment, deploy files, log scrubbing."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from core.logging import ScrubSecretsFilter, scrub

ROOT = Path(__file__).resolve().parents[1]


def _start_settings(code: str = "import wimz.asgi", **env) -> subprocess.CompletedProcess:
    """Run `code` (by default: build the relay's ASGI application, as the server does) in a fresh
    interpreter with `env` instead of this process's DEBUG / DJANGO_SECRET_KEY / WIMZ_SECRET_KEYS."""
    clean = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "DJANGO_SECRET_KEY", "WIMZ_SECRET_KEYS"}}
    clean.update(env)
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "wimz.settings"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_debug_off_refuses_a_missing_secret_key_and_says_what_to_set():
    """With DEBUG off and no DJANGO_SECRET_KEY the app does not start; the message names the variable."""
    result = _start_settings(DEBUG="0")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_debug_off_refuses_the_published_development_secret_key():
    """The key the project once shipped for DEBUG is refused as well when DEBUG is off."""
    from wimz.settings import PUBLISHED_DEV_SECRET_KEY

    result = _start_settings(DEBUG="0", DJANGO_SECRET_KEY=PUBLISHED_DEV_SECRET_KEY)
    assert result.returncode != 0 and "DJANGO_SECRET_KEY" in result.stderr


def test_debug_never_signs_with_a_published_key(tmp_path):
    """DEBUG without DJANGO_SECRET_KEY (or with the published one) signs with this checkout's random key,
    created once in a gitignored file, so that restarts keep tokens and sessions; another checkout gets
    another key."""
    from django.conf import settings as live

    from wimz.settings import PUBLISHED_DEV_SECRET_KEY, dev_secret_key

    assert live.SECRET_KEY != PUBLISHED_DEV_SECRET_KEY and len(live.SECRET_KEY) >= 50
    code = "from django.conf import settings; print(settings.SECRET_KEY)"
    first = _start_settings(code, DEBUG="1")
    again = _start_settings(code, DEBUG="1", DJANGO_SECRET_KEY=PUBLISHED_DEV_SECRET_KEY)
    assert first.returncode == 0 and again.returncode == 0, first.stderr + again.stderr
    assert first.stdout.strip() == again.stdout.strip() != PUBLISHED_DEV_SECRET_KEY
    assert ".dev-secret-key" in (ROOT / ".gitignore").read_text().splitlines()
    other = dev_secret_key(tmp_path / "key")
    assert other == dev_secret_key(tmp_path / "key") != first.stdout.strip()
    assert (tmp_path / "key").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("key", ["abc", "changeme", "django-insecure-" + "x1y2z3" * 10, "ab" * 40, "k" * 49 + "z"])
def test_debug_off_refuses_short_placeholder_or_low_entropy_keys(key):
    """With DEBUG off a key that is short, a placeholder, Django's insecure prefix or made of < 5 distinct
    characters refuses to serve, saying why; a 50-character random key is accepted (next tests)."""
    result = _start_settings(DEBUG="0", DJANGO_SECRET_KEY=key)
    assert result.returncode != 0 and "DJANGO_SECRET_KEY is" in result.stderr, result.stderr[-300:]
    assert len(key) < 8 or key not in result.stderr  # the refused key itself is never echoed


def test_management_commands_run_without_a_secret_key():
    """Commands sign nothing: `manage.py check` runs with DEBUG off and no key (only serving refuses)."""
    result = _start_settings(
        "import sys; from django.core.management import execute_from_command_line; "
        "execute_from_command_line(['manage.py', 'check'])",
        DEBUG="0",
    )
    assert result.returncode == 0, result.stderr


def test_debug_off_starts_with_a_real_secret_key():
    """A real (50 random characters) key with DEBUG off starts (with WIMZ_SECRET_KEYS, next tests)."""
    import secrets

    from cryptography.fernet import Fernet

    key = secrets.token_urlsafe(38)
    assert len(key) >= 50
    result = _start_settings(
        DEBUG="0",
        DJANGO_SECRET_KEY=key,
        ALLOWED_HOSTS="relay.example.com",
        WIMZ_SECRET_KEYS=Fernet.generate_key().decode(),
    )
    assert result.returncode == 0, result.stderr


def test_debug_off_refuses_to_serve_without_device_secret_keys():
    """docs/operations.md "Secrets at rest": with DEBUG off and a real DJANGO_SECRET_KEY but no
    WIMZ_SECRET_KEYS, building the relay's application (and `python -m wimz.serve`) refuses, naming the
    setting and how to make a key; management commands that need no device secret still run."""
    import secrets

    key = secrets.token_urlsafe(38)
    for code in ("import wimz.asgi", "from wimz.serve import main; main(['--port', '1'])"):
        result = _start_settings(code, DEBUG="0", DJANGO_SECRET_KEY=key, ALLOWED_HOSTS="relay.example.com")
        assert result.returncode != 0, code
        assert "WIMZ_SECRET_KEYS is missing" in result.stderr and "Fernet.generate_key()" in result.stderr, (
            result.stderr[-500:]
        )
    check = _start_settings(
        "from django.core.management import execute_from_command_line; "
        "execute_from_command_line(['manage.py', 'check'])",
        DEBUG="0",
        DJANGO_SECRET_KEY=key,
    )
    assert check.returncode == 0, check.stderr


@pytest.mark.parametrize("debug", ["0", "1"])
def test_a_malformed_device_secret_key_refuses_to_serve_without_echoing_it(debug):
    """An entry of WIMZ_SECRET_KEYS that is not a Fernet key refuses to serve, DEBUG or not (no robot could be
    verified); the message says which entry, never the key."""
    import secrets

    from cryptography.fernet import Fernet

    bad = "not-a-fernet-key-" + secrets.token_hex(8)
    result = _start_settings(
        DEBUG=debug,
        DJANGO_SECRET_KEY=secrets.token_urlsafe(38),
        ALLOWED_HOSTS="localhost",
        WIMZ_SECRET_KEYS=f"{Fernet.generate_key().decode()},{bad}",
    )
    assert result.returncode != 0 and "WIMZ_SECRET_KEYS entry 2 is not a Fernet key" in result.stderr, result.stderr[
        -500:
    ]
    assert bad not in result.stderr


def test_debug_derives_a_device_secret_key_of_the_checkout():
    """DEBUG without WIMZ_SECRET_KEYS uses one Fernet key derived (HKDF) from this checkout's `.dev-secret-key`:
    the same on every run (secrets stored by one run open in the next), another checkout's differs, and an
    explicit WIMZ_SECRET_KEYS wins."""
    from cryptography.fernet import Fernet

    from wimz.settings import dev_fernet_key, dev_secret_key

    code = "from django.conf import settings; print(','.join(settings.WIMZ_SECRET_KEYS))"
    first, again = _start_settings(code, DEBUG="1"), _start_settings(code, DEBUG="1")
    assert first.returncode == 0 and again.returncode == 0, first.stderr + again.stderr
    assert first.stdout.strip() == again.stdout.strip() == dev_fernet_key(dev_secret_key())
    Fernet(first.stdout.strip())  # a valid key
    assert dev_fernet_key("another checkout") != first.stdout.strip()
    mine = Fernet.generate_key().decode()
    assert _start_settings(code, DEBUG="1", WIMZ_SECRET_KEYS=mine).stdout.strip() == mine


def test_env_example_documents_every_setting_read_from_the_environment():
    """Every variable wimz/settings.py reads appears in .env.example."""
    settings_src = (ROOT / "wimz/settings.py").read_text()
    names = set(re.findall(r'env\.\w+\(\s*"([A-Z0-9_]+)"', settings_src))
    example = (ROOT / ".env.example").read_text()
    missing = sorted(n for n in names if not re.search(rf"^#?\s*{n}=", example, re.MULTILINE))
    assert names and not missing, missing


def test_docker_compose_runs_two_relays_on_postgres_and_redis():
    """docker-compose.yml parses and wires two relay instances to PostgreSQL, Redis and nginx."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "migrate", "relay-a", "relay-b", "nginx"} <= set(services)
    for name in ("relay-a", "relay-b"):
        env = services[name]["environment"]
        assert env["DATABASE_URL"].startswith("postgres://") and env["REDIS_URL"].startswith("redis://")
    mounted = services["nginx"]["volumes"][0].split(":")[0]
    assert (ROOT / mounted).exists()
    assert "wimz.serve" in (ROOT / "Dockerfile").read_text()


def test_nginx_example_never_logs_query_strings():
    """F8: the deploy example's access log records the path only (no $request, $args or $request_uri)."""
    conf = (ROOT / "docs/nginx.conf").read_text()
    log_format = conf.split("log_format", 1)[1].split(";", 1)[0]
    assert "$uri" in log_format
    for variable in ("$request ", '$request"', "$args", "$query_string", "$request_uri"):
        assert variable not in log_format


def test_scrub_removes_tokens_signatures_and_jwts():
    """Log lines lose `token=`, `sig=`, bearer tokens and anything shaped like a JWT."""
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyX2lkIjoxfQ.c2lnbmF0dXJlLXBhcnQ"
    line = f"GET /ws/app?token={jwt}&x=1 sig=abcdef Authorization: Bearer {jwt} raw {jwt}"
    cleaned = scrub(line)
    assert jwt not in cleaned and "abcdef" not in cleaned
    assert "token=***" in cleaned and "x=1" in cleaned


def test_scrub_filter_rewrites_records_with_arguments_and_tracebacks():
    """The logging filter renders %-arguments and exception text before scrubbing them."""
    import logging

    try:
        raise ValueError("bad ?token=secret-value")
    except ValueError:
        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "connect %s", ("/ws/app?token=abc",), sys.exc_info()
        )
    assert ScrubSecretsFilter().filter(record)
    assert record.getMessage() == "connect /ws/app?token=***"
    assert "secret-value" not in record.exc_text


def test_unknown_api_paths_answer_json_404(client):
    """A path under /api/ that matches no route (e.g. a session id that is not a UUID) answers the API's
    JSON error shape, not an HTML page.
    """
    response = client.get("/api/sessions/not-a-uuid")
    assert response.status_code == 404
    assert response.json() == {"code": "not_found", "detail": "Not found."}


async def test_admin_and_swagger_static_files_are_served_by_the_relay(transactional_db):
    """The ASGI app serves the admin's and Swagger UI's static files itself (no CDN, no collectstatic)."""
    import asyncio

    from wimz.asgi import application

    for path in ("/static/admin/css/base.css", "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui.css"):
        sent = []
        inbox = asyncio.Queue()
        inbox.put_nowait({"type": "http.request", "body": b"", "more_body": False})

        async def receive(inbox=inbox):
            return await inbox.get()  # the request, then nothing (the client never disconnects)

        async def send(message, sent=sent):
            sent.append(message)

        scope = {
            "type": "http",
            "method": "GET",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "headers": [],
            "scheme": "http",
            "server": ("testserver", 80),
            "client": ("127.0.0.1", 1),
            "http_version": "1.1",
            "asgi": {"version": "3.0"},
            "root_path": "",
        }
        await application(scope, receive, send)
        assert sent[0]["status"] == 200, path
        assert b"".join(m.get("body", b"") for m in sent[1:])


def test_health_and_stats_answer_405_to_other_methods(client, db):
    """/health and /stats are GET only: other methods get 405, not the CSRF failure page."""
    for path in ("/health", "/stats"):
        assert client.post(path).status_code == 405


async def test_unknown_websocket_paths_are_refused_not_crashed(transactional_db):
    """A WebSocket to an unknown path (e.g. `/ws/app/` with a trailing slash) is refused like a failed
    handshake (403), not a 500 with a traceback."""
    from channels.testing import WebsocketCommunicator

    from wimz.asgi import application

    for path in ("/ws/app/", "/nope", "/ws/device/x"):
        comm = WebsocketCommunicator(application, path)
        connected, _ = await comm.connect(timeout=3)
        assert not connected, path


def test_health_answers_head_for_load_balancer_probes(client, transactional_db, settings):
    """Load balancers often probe with HEAD: /health and /stats accept it (GET and HEAD only).

    `transactional_db`: these async views reach the ORM through Channels' database_sync_to_async, whose
    close_old_connections() would close a connection held inside the `db` fixture's test transaction.
    """
    settings.WIMZ_STATS_TOKEN = "op-token"
    for path in ("/health", "/stats"):
        assert client.head(path, HTTP_AUTHORIZATION="Bearer op-token").status_code == 200


def test_stats_answers_only_staff_and_the_operator_token(client, transactional_db, settings, make_user, access_token):
    """/stats is not public: anonymous callers, ordinary users (session or JWT), a wrong or empty operator
    token get 403 `permission_denied`; a staff admin session and `Bearer <WIMZ_STATS_TOKEN>` get the counts."""
    settings.WIMZ_STATS_TOKEN = "op-token"
    keys = {"robots_online", "app_sockets", "users_online", "active_sessions"}
    user = make_user("plain@example.com")
    for headers in (
        {},
        {"HTTP_AUTHORIZATION": "Bearer nope"},
        {"HTTP_AUTHORIZATION": "Bearer "},
        {"HTTP_AUTHORIZATION": f"Bearer {access_token(user)}"},
    ):
        r = client.get("/stats", **headers)
        assert r.status_code == 403 and r.json()["code"] == "permission_denied", headers
    client.force_login(user)
    assert client.get("/stats").status_code == 403
    assert set(client.get("/stats", HTTP_AUTHORIZATION="Bearer op-token").json()) == keys
    client.force_login(make_user("staff@example.com", is_staff=True))
    assert set(client.get("/stats").json()) == keys
    settings.WIMZ_STATS_TOKEN = ""
    client.logout()
    assert client.get("/stats", HTTP_AUTHORIZATION="Bearer ").status_code == 403


@pytest.mark.parametrize(("raw", "expected"), [("1e9", "1000000000.0"), ("2.5", "2.5"), ("", "100.0")])
def test_float_settings_are_parsed_as_numbers(raw, expected):
    """`WIMZ_FRAME_RATE=1e9` is 1e9 (django-environ's float parser made it 19.0: the bench ran with a
    19 frames/s bucket it meant to switch off)."""
    code = "from django.conf import settings; print(settings.WIMZ_FRAME_RATE)"
    result = _start_settings(code, DEBUG="1", WIMZ_FRAME_RATE=raw)
    assert result.returncode == 0, result.stderr[-500:]
    assert result.stdout.strip() == expected


def test_a_float_setting_that_is_not_a_number_stops_start_up():
    """`WIMZ_FRAME_RATE=30s` is refused, naming the variable, instead of silently read as 30."""
    code = "from django.conf import settings; print(settings.WIMZ_FRAME_RATE)"
    result = _start_settings(code, DEBUG="1", WIMZ_FRAME_RATE="30s")
    assert result.returncode != 0 and "WIMZ_FRAME_RATE must be a number" in result.stderr


def test_pre_commit_runs_the_checks_make_test_runs():
    """`.pre-commit-config.yaml` is valid for pre-commit and runs ruff check, ruff format --check, mypy
    (make typecheck) and the migrations check, the same first steps as `make test` (Makefile)."""
    result = subprocess.run(
        [str(Path(sys.executable).parent / "pre-commit"), "validate-config", ".pre-commit-config.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    entries = [hook["entry"] for repo in config["repos"] for hook in repo["hooks"]]
    makefile = (ROOT / "Makefile").read_text()
    for check in ("ruff check", "ruff format --check", "makemigrations --check"):
        assert any(check in entry for entry in entries) and check in makefile, check
    assert any("make typecheck" in entry for entry in entries) and "$(BIN)/mypy" in makefile
