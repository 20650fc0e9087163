"""Live relays: real daphne processes on 127.0.0.1 sharing the test PostgreSQL database and Redis.

The processes see the rows the tests create because the tests use `transactional_db` (committed
data) and the processes connect to pytest-django's test database. Each module gets its own Redis key
prefix so runs never see each other's messages.
"""

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveRelay:
    """One daphne process running the relay (`python -m wimz.serve`); output goes to `log_path`."""

    def __init__(self, env: dict, log_path: Path):
        self.port = free_port()
        self.log_path = log_path
        self.log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "wimz.serve", "--host", "127.0.0.1", "--port", str(self.port),
             "--access-log", "-", "-v", "2"],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Poll `/health` until 200, or fail with the process output."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if httpx.get(self.http + "/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        pytest.fail(f"relay on port {self.port} did not start:\n{self.log_path.read_text(errors='replace')[-3000:]}")

    def output(self) -> str:
        """Everything the process printed so far (logs and access log)."""
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if not self.log.closed:
            self.log.close()


def relay_env(settings, **extra) -> dict:
    """Environment for a live relay: the test database, Redis with a fresh prefix, the test secret key."""
    db = settings.DATABASES["default"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(
        DEBUG="1",
        DJANGO_SECRET_KEY=settings.SECRET_KEY,
        DATABASE_URL=f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/"
        f"{db['NAME']}",
        REDIS_URL=os.environ["REDIS_URL"],
        WIMZ_CHANNEL_PREFIX=f"wimztest{uuid.uuid4().hex[:8]}",
        LOG_LEVEL="DEBUG",
        PYTHONUNBUFFERED="1",
    )
    env.update({k: str(v) for k, v in extra.items()})
    return env


@pytest.fixture(scope="module")
def live_relays(request, django_db_setup, django_db_blocker, tmp_path_factory):
    """Two relay instances (A, B) sharing PostgreSQL and Redis. Needs both services (CI sets them)."""
    from django.conf import settings

    from tests.conftest import services_available

    if not services_available():
        if os.environ.get("WIMZ_REQUIRE_SERVICES") == "1":
            pytest.fail("WIMZ_REQUIRE_SERVICES=1 but DATABASE_URL (postgres) / REDIS_URL are not set")
        pytest.skip("live relays need PostgreSQL (DATABASE_URL) and Redis (REDIS_URL); CI sets both")
    extra = getattr(request.module, "RELAY_ENV", {})
    env = relay_env(settings, **extra)
    logs = tmp_path_factory.mktemp("relay-logs")
    relays = [LiveRelay(env, logs / f"relay-{name}.log") for name in ("a", "b")]
    failed_before = request.session.testsfailed
    try:
        for relay in relays:
            relay.wait_ready()
        yield relays
    finally:
        for relay in relays:
            relay.stop()
        if request.session.testsfailed > failed_before:  # show what the relays said, for CI logs
            for name, relay in zip("ab", relays, strict=True):
                tail = "\n".join(
                    line for line in relay.output().splitlines() if " DEBUG " not in line
                )[-4000:]
                print(f"\n----- relay {name} output (tail) -----\n{tail}")
