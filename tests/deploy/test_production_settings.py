"""Production settings: `.env.example` runs `make run` as-is, the production example passes
`manage.py check --deploy`, `/health` answers any Host, HTTPS detection only behind trusted proxies."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _env_file(path: Path) -> dict[str, str]:
    """`NAME=value` lines of an env file (comments and blank lines skipped), as systemd reads them."""
    pairs = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            pairs[name] = value
    return pairs


def _clean_env(**extra) -> dict[str, str]:
    """This process's environment without any relay setting, plus `extra`."""
    names = set(_env_file(ROOT / ".env.example")) | set(_env_file(ROOT / "deploy/env.production.example"))
    names |= {"DEBUG", "DJANGO_SECRET_KEY", "DATABASE_URL", "REDIS_URL", "ALLOWED_HOSTS"}
    env = {k: v for k, v in os.environ.items() if k not in names}
    env.update(extra, DJANGO_SETTINGS_MODULE="wimz.settings")
    return env


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_env_example_copied_as_is_serves_localhost_under_make_run():
    """`cp .env.example .env; make run` (which sets DEBUG=1) answers requests for 127.0.0.1/localhost.

    An unknown path must get Django's 404, not the 400 of a Host refused by ALLOWED_HOSTS.
    """
    env = _clean_env(**{**_env_file(ROOT / ".env.example"), "DEBUG": "1"})
    code = (
        "import django; django.setup()\n"
        "from django.test import Client\n"
        "for host in ('127.0.0.1:8000', 'localhost:8000'):\n"
        "    print(host, Client().get('/no-such-page', HTTP_HOST=host).status_code)\n"
    )
    result = _run([sys.executable, "-c", code], env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["127.0.0.1:8000", "404", "localhost:8000", "404"], result.stdout


def test_production_example_passes_check_deploy_without_warnings():
    """`DJANGO_SECRET_KEY=<50+ random chars> env $(cat deploy/env.production.example) manage.py check --deploy`
    reports no issue at all (HSTS, secure cookies, SSL redirect, hosts, DEBUG off)."""
    lines = (ROOT / "deploy/env.production.example").read_text().split()
    assert all("=" in item and not item.startswith("#") for item in lines), "the file must work with env $(cat …)"
    env = _clean_env(DJANGO_SECRET_KEY=secrets.token_urlsafe(50), **dict(item.split("=", 1) for item in lines))
    result = _run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout, result.stdout + result.stderr


@pytest.mark.parametrize("method", ["get", "head"])
def test_health_answers_probes_whatever_their_host(client, transactional_db, settings, method):
    """A probe to the pod IP (a Host not in ALLOWED_HOSTS) gets 200 from /health, even with the HTTPS
    redirect on; any other path with that Host is still refused (400)."""
    settings.ALLOWED_HOSTS = ["relay.example.com"]
    settings.SECURE_SSL_REDIRECT = True
    response = getattr(client, method)("/health", HTTP_HOST="10.1.2.3:8000")
    assert response.status_code == 200
    if method == "get":
        assert response.json()["status"] == "ok"
    assert client.get("/stats", HTTP_HOST="10.1.2.3:8000").status_code == 400
    assert client.get("/health/", HTTP_HOST="10.1.2.3:8000").status_code == 400


def test_forwarded_proto_is_ignored_without_trusted_proxies():
    """Without WIMZ_TRUSTED_PROXIES a client's `X-Forwarded-Proto: https` does not make its request secure;
    with proxies configured the header (set by the proxy) counts."""
    code = (
        "import django; django.setup()\n"
        "from django.test import RequestFactory\n"
        "print(RequestFactory().get('/', HTTP_X_FORWARDED_PROTO='https').is_secure())\n"
    )
    plain = _run([sys.executable, "-c", code], _clean_env(DEBUG="1"))
    proxied = _run([sys.executable, "-c", code], _clean_env(DEBUG="1", WIMZ_TRUSTED_PROXIES="127.0.0.1"))
    assert (plain.stdout.strip(), proxied.stdout.strip()) == ("False", "True"), plain.stderr + proxied.stderr


def test_admin_path_is_configurable():
    """WIMZ_ADMIN_PATH moves Django admin; the old `/admin/` is then a 404."""
    code = (
        "import django; django.setup()\n"
        "from django.test import Client\n"
        "print(*(Client().get(path, HTTP_HOST='localhost').status_code for path in ('/staff-x/', '/admin/')))\n"
    )
    result = _run([sys.executable, "-c", code], _clean_env(DEBUG="1", WIMZ_ADMIN_PATH="/staff-x"))
    assert result.stdout.split() == ["302", "404"], result.stdout + result.stderr
