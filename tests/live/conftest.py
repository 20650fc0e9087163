"""Live relays: real daphne processes on 127.0.0.1 sharing the test PostgreSQL database and Redis.

The processes see the rows the tests create because the tests use `transactional_db` (committed
data) and the processes connect to pytest-django's test database. Each module gets its own Redis key
prefix so runs never see each other's messages.
"""

import contextlib
import functools
import os
import signal
import time
import uuid
from pathlib import Path

import pytest
from django.core.management.base import CommandError
from django.db import OperationalError

from sim.process import RelayProcess

STATS_TOKEN = "live-test-operator-token"  # /stats for the live relays (WIMZ_STATS_TOKEN)
FLUSH_ATTEMPTS = 3


def retrying_deadlocks(teardown):
    """`teardown` (a test's database flush) run again, up to `FLUSH_ATTEMPTS` times, when PostgreSQL aborted
    it as a deadlock victim. The live relays keep querying the tables while a test's TRUNCATE takes them
    all; PostgreSQL then aborts one side, and when that is the flush the next test would start on the
    last one's rows. Any other failure is raised at once."""

    @functools.wraps(teardown)
    def run(*args, **kwargs):
        for attempt in range(1, FLUSH_ATTEMPTS + 1):
            try:
                return teardown(*args, **kwargs)
            except CommandError as exc:
                cause = exc.__cause__
                if attempt == FLUSH_ATTEMPTS or not (isinstance(cause, OperationalError) and "deadlock" in str(cause)):
                    raise
                time.sleep(0.2 * attempt)
        return None

    return run


@pytest.fixture(scope="session", autouse=True)
def flush_survives_a_deadlock():
    """For the live tests, pytest-django's flush after each transactional test retries a deadlock."""
    from django.test import TransactionTestCase

    original = TransactionTestCase._fixture_teardown
    TransactionTestCase._fixture_teardown = retrying_deadlocks(original)
    yield
    TransactionTestCase._fixture_teardown = original


class LiveRelay(RelayProcess):
    """A relay process with daphne's verbose logs (twisted's included) in its output, beside the relay's
    own lines and its access log (field report F8 reads them)."""

    def __init__(self, env: dict, log_path: Path):
        super().__init__(env, log_path, extra_args=("-v", "2"))
        self.env = env

    def wait_ready(self, timeout: float = 30.0) -> None:
        try:
            super().wait_ready(timeout)
        except RuntimeError as exc:
            pytest.fail(str(exc))


def relay_env(settings, **extra) -> dict:
    """Environment for a live relay: the test database, Redis with a fresh prefix, the test secret key."""
    db = settings.DATABASES["default"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(
        DEBUG="1",
        DJANGO_SECRET_KEY=settings.SECRET_KEY,
        WIMZ_SECRET_KEYS=",".join(settings.WIMZ_SECRET_KEYS),  # the rows this process encrypts open there
        DATABASE_URL=f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/"
        f"{db['NAME']}",
        REDIS_URL=os.environ["REDIS_URL"],
        WIMZ_CHANNEL_PREFIX=f"wimztest{uuid.uuid4().hex[:8]}",
        LOG_LEVEL="DEBUG",
        WIMZ_STATS_TOKEN=STATS_TOKEN,
        PYTHONUNBUFFERED="1",
    )
    env.update({k: str(v) for k, v in extra.items()})
    return env


@contextlib.contextmanager
def running_relays(env: dict, log_dir: Path, names=("a", "b")):
    """Start one `LiveRelay` per name on `env`, wait until each answers, stop them all afterwards
    (a stopped or paused one too: SIGCONT first, so that SIGTERM can reach it)."""
    relays = [LiveRelay(env, log_dir / f"relay-{name}.log") for name in names]
    try:
        for relay in relays:
            relay.wait_ready()
        yield relays
    finally:
        for relay in relays:
            if relay.proc.poll() is None:
                os.kill(relay.pid, signal.SIGCONT)
            relay.stop()


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
    failed_before = request.session.testsfailed
    with running_relays(env, tmp_path_factory.mktemp("relay-logs")) as relays:
        yield relays
    if request.session.testsfailed > failed_before:  # show what the relays said, for CI logs
        for name, relay in zip("ab", relays, strict=True):
            tail = "\n".join(
                line for line in relay.output().splitlines() if "[debug " not in line and '"level": "debug"' not in line
            )[-4000:]
            print(f"\n----- relay {name} output (tail) -----\n{tail}")
