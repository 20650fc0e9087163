"""The system under test: a throwaway bench database, its users and robots, and real relay processes.

Two modes, chosen from the environment:

- `services`: DATABASE_URL is PostgreSQL and REDIS_URL is set. A fresh database `wimz_bench_<hex>` is
  created on that server (and dropped afterwards), so a bench never writes into the database the URL
  names; the relays share it and Redis under a unique channel prefix, as deployed instances do.
- `local`: neither is set. A SQLite file in a temporary directory and the in-memory channel layer,
  hence exactly one relay process (in-memory layers cannot span processes).

Users and robots are provisioned through the Django ORM in the bench process (same database and
`DJANGO_SECRET_KEY` as the relays), access JWTs are minted with simplejwt, robots sign with
`devices.signing.sign`.
"""

import os
import secrets
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from wimz.serve import RelayProcess

ROOT = Path(__file__).resolve().parents[1]

SERVICES = "services"
LOCAL = "local"


def detect_mode(environ=os.environ) -> str:
    """`services` when DATABASE_URL is PostgreSQL and REDIS_URL is set, else `local`."""
    db = environ.get("DATABASE_URL", "")
    if db.startswith(("postgres://", "postgresql://")) and environ.get("REDIS_URL"):
        return SERVICES
    return LOCAL


def rss_kib(pid: int) -> int:
    """Resident set size of process `pid` in KiB (`VmRSS` of /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds process `pid` has used (/proc/<pid>/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Robot:
    """A provisioned robot: its `device_id` and HMAC secret."""

    device_id: str
    secret: str


@dataclass
class Owner:
    """A provisioned user: id, a valid access JWT and the robots they own."""

    user_id: int
    token: str
    robots: list[Robot] = field(default_factory=list)


class Relay(RelayProcess):
    """One relay process on a free 127.0.0.1 port (see `wimz.serve.RelayProcess`)."""


class Stack:
    """Bench database + Django in this process + relay processes; use as a context manager."""

    def __init__(self, mode: str, relays: int, log_level: str = "INFO"):
        self.mode = mode
        self.relay_count = 1 if mode == LOCAL else max(1, min(relays, 2))
        self.log_level = log_level
        self.secret_key = secrets.token_urlsafe(50)
        self.prefix = f"wimzbench{secrets.token_hex(4)}"
        self.tmp = Path(tempfile.mkdtemp(prefix="wimz-bench-"))
        self.relays: list[Relay] = []
        self._admin_url = None
        self._db_name = None
        self.redis_url = os.environ.get("REDIS_URL", "") if mode == SERVICES else ""
        self.db_url = self._create_database()
        self._seq = 0

    # --- database ---------------------------------------------------------------------------------

    def _create_database(self) -> str:
        if self.mode == LOCAL:
            return f"sqlite:///{self.tmp / 'bench.sqlite3'}"
        import psycopg

        parts = urlsplit(os.environ["DATABASE_URL"])
        self._db_name = f"wimz_bench_{secrets.token_hex(4)}"
        self._admin_url = urlunsplit(parts._replace(path="/postgres", query=""))
        with psycopg.connect(self._admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self._db_name}"')
        return urlunsplit(parts._replace(path=f"/{self._db_name}"))

    def _drop_database(self) -> None:
        if self._db_name is None:
            return
        import psycopg
        from django.db import connections

        connections.close_all()
        with psycopg.connect(self._admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self._db_name}" WITH (FORCE)')

    def db_sessions(self) -> int | None:
        """PostgreSQL sessions (connections) opened on the bench database so far; None in local mode.

        `pg_stat_database.sessions` (PostgreSQL 14+) counts every connection that has ended; the
        difference across a scenario says how many connections the relays opened for it.
        """
        if self._db_name is None:
            return None
        import psycopg

        try:
            with psycopg.connect(self._admin_url, autocommit=True) as conn:
                row = conn.execute("SELECT sessions FROM pg_stat_database WHERE datname = %s",
                                   (self._db_name,)).fetchone()
        except psycopg.Error:
            return None
        return int(row[0]) if row and row[0] is not None else None

    def describe(self) -> str:
        """One line naming the mode, database and channel layer."""
        if self.mode == SERVICES:
            return (f"services: PostgreSQL (throwaway database {self._db_name}) + Redis channel layer "
                    f"(prefix {self.prefix}), {self.relay_count} relay process(es)")
        return "local: SQLite temp file + in-memory channel layer, 1 relay process"

    # --- Django in the bench process --------------------------------------------------------------

    def _setup_django(self) -> float:
        os.environ.update(
            DJANGO_SETTINGS_MODULE="wimz.settings", DEBUG="1", DJANGO_SECRET_KEY=self.secret_key,
            DATABASE_URL=self.db_url, REDIS_URL=self.redis_url, WIMZ_CHANNEL_PREFIX=self.prefix,
            LOG_LEVEL="WARNING",
        )
        import django
        from django.core.management import call_command

        django.setup()
        started = time.perf_counter()
        call_command("migrate", interactive=False, verbosity=0)
        return time.perf_counter() - started

    def provision(self, tag: str, users: int, robots_per_user: int = 1) -> list[Owner]:
        """Create `users` users, each owning `robots_per_user` robots; returns them with tokens and secrets."""
        from rest_framework_simplejwt.tokens import AccessToken

        from accounts.models import User
        from devices.models import Device
        from devices.signing import generate_secret

        owners = []
        for u in range(users):
            self._seq += 1
            user = User.objects.create_user(email=f"{tag}-{u}-{self._seq}@bench.invalid")  # unusable password
            owner = Owner(user.pk, str(AccessToken.for_user(user)))
            for r in range(robots_per_user):
                robot = Robot(f"bench_{tag}_{u}_{r}_{self._seq}", generate_secret())
                Device.objects.create(device_id=robot.device_id, owner=user, secret=robot.secret)
                owner.robots.append(robot)
            owners.append(owner)
        return owners

    def open_presence_rows(self) -> int:
        """Connection rows still open (sockets the relays believe are live). Call from a sync context."""
        from django.db import connection

        from relay.models import Connection

        try:
            return Connection.objects.filter(disconnected_at__isnull=True).count()
        finally:
            connection.close()

    # --- relays -----------------------------------------------------------------------------------

    def relay_env(self) -> dict:
        """Environment of a relay process: the bench database, channel layer and secret key.

        Other `WIMZ_*` knobs pass through from the caller (e.g. `WIMZ_CHANNEL_CAPACITY=100` to see F2
        shedding); the ICE provider is pinned to `stun` so that no request leaves 127.0.0.1.
        """
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
        env.update(
            DEBUG="1", DJANGO_SECRET_KEY=self.secret_key, DATABASE_URL=self.db_url, REDIS_URL=self.redis_url,
            WIMZ_CHANNEL_PREFIX=self.prefix, WIMZ_ICE_PROVIDER="stun", LOG_LEVEL=self.log_level,
            PYTHONUNBUFFERED="1", DJANGO_SETTINGS_MODULE="wimz.settings",
        )
        return env

    def __enter__(self) -> "Stack":
        try:
            self.migrate_seconds = self._setup_django()
            env = self.relay_env()
            self.relays = [Relay(env, self.tmp / f"relay-{'ab'[i]}.log") for i in range(self.relay_count)]
            for relay in self.relays:
                relay.wait_ready()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        for relay in self.relays:
            relay.stop()
        try:
            self._drop_database()
        finally:
            self._clean_redis()
            if exc and exc[0] is None:
                shutil.rmtree(self.tmp, ignore_errors=True)

    def _clean_redis(self) -> None:
        if not self.redis_url:
            return
        try:
            import redis

            client = redis.Redis.from_url(self.redis_url)
            keys = list(client.scan_iter(match=f"{self.prefix}*", count=500))
            if keys:
                client.delete(*keys)
            client.close()
        except Exception as exc:  # cleanup only: the keys expire anyway
            print(f"note: could not delete Redis keys {self.prefix}*: {exc}", file=sys.stderr)
