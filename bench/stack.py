"""The systems under test: a throwaway bench database, provisioned people, and the four targets.

Modes, chosen from the environment:

- `services`: DATABASE_URL is PostgreSQL and REDIS_URL is set. A fresh database `wimz_bench_<hex>` is
  created on that server (dropped at the end), so a bench never writes into the database the URL
  names; relays and the Channels floor use Redis under a unique `WIMZ_CHANNEL_PREFIX` whose keys are
  deleted at the end.
- `local`: neither is set. A SQLite file in a temporary directory and the in-memory channel layer,
  hence one relay instance only (the two-instance target is skipped).

Targets (each started fresh, measured, stopped, one after the other):

- `raw`: floor 1, `bench.floors.raw_ws` (websockets only);
- `channels`: floor 2, `bench.floors.channels_floor` under daphne with the relay's channel layer;
- `relay1`: one `python -m wimz.serve` process;
- `relay2`: two of them, the robot on instance A and the apps on instance B (services mode only).

The relay runs from `relay_root` (default: this checkout; `--relay-root` points at another checkout,
e.g. a git worktree of an older commit): its cwd, and its `manage.py migrate` for the bench database.
Users and devices are provisioned in the bench process through this checkout's ORM:
`bulk_create` users with one unusable password, devices through
`devices.management.commands.provision_device.provision_bulk`.
"""

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from .procs import ServerProcess

ROOT = Path(__file__).resolve().parents[1]
SERVICES = "services"
LOCAL = "local"
TARGETS = ("raw", "channels", "relay1", "relay2")
TARGET_LABELS = {
    "raw": "raw floor",
    "channels": "channels floor",
    "relay1": "relay 1 instance",
    "relay2": "relay 2 instances",
}


def detect_mode(environ=os.environ) -> str:
    """`services` when DATABASE_URL is PostgreSQL and REDIS_URL is set, else `local`."""
    db = environ.get("DATABASE_URL", "")
    if db.startswith(("postgres://", "postgresql://")) and environ.get("REDIS_URL"):
        return SERVICES
    return LOCAL


@dataclass
class Pair:
    """One robot and its owner: the key floors use is the device id."""

    device_id: str
    secret: str = ""
    token: str = ""
    user_id: int = 0
    last_ts: int = 0

    def next_timestamp(self) -> int:
        """A signing timestamp never used before by this robot (the relay refuses a replayed triple)."""
        ts = max(int(time.time()), self.last_ts + 1)
        self.last_ts = ts
        return ts


@dataclass
class People:
    """Everything a target's scenarios need: pairs, one fan-out owner with its robot, a stranger, idle robots."""

    pairs: list[Pair]
    fan: Pair
    stranger: Pair
    idle: list[Pair] = field(default_factory=list)


def synthetic_people(tag: str, pairs: int, idle: int) -> People:
    """Keys only, for the floors (no database)."""
    return People(
        [Pair(f"{tag}p{i}") for i in range(pairs)],
        Pair(f"{tag}fan"),
        Pair(f"{tag}stranger"),
        [Pair(f"{tag}idle{i}") for i in range(idle + 20)],
    )  # + warm-up sockets


class Services:
    """Bench database (+ Django in this process for provisioning) and the Redis prefix; a context manager."""

    def __init__(self, mode: str, relay_root: Path = ROOT):
        self.mode = mode
        self.relay_root = Path(relay_root).resolve()
        self.secret_key = secrets.token_urlsafe(50)
        self.prefix = f"wimzbench{secrets.token_hex(4)}"
        self.tmp = Path(tempfile.mkdtemp(prefix="wimz-bench-"))
        self.redis_url = os.environ.get("REDIS_URL", "") if mode == SERVICES else ""
        self._db_name = None
        self._admin_url = None
        self.db_url = ""
        self.migrate_seconds = 0.0
        self._seq = 0
        self.failed = False

    # --- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> "Services":
        try:
            self.db_url = self._create_database()
            self._setup_django()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            self._drop_database()
        finally:
            self._clean_redis()
            if exc and exc[0] is None and not self.failed:
                shutil.rmtree(self.tmp, ignore_errors=True)

    def describe(self) -> str:
        if self.mode == SERVICES:
            return (
                f"services: PostgreSQL (throwaway database {self._db_name}) + Redis channel layer "
                f"(prefix {self.prefix}); relay from {self.relay_root}"
            )
        return f"local: SQLite temp file + in-memory channel layer; relay from {self.relay_root}"

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

        try:
            from django.db import connections

            connections.close_all()
        except Exception:  # Django may not be set up yet
            pass
        with psycopg.connect(self._admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self._db_name}" WITH (FORCE)')

    def _clean_redis(self) -> None:
        if not self.redis_url:
            return
        try:
            import redis

            client = redis.Redis.from_url(self.redis_url)
            keys = list(client.scan_iter(match=f"{self.prefix}*", count=1000))
            for start in range(0, len(keys), 1000):
                client.delete(*keys[start : start + 1000])
            client.close()
        except Exception as exc:  # cleanup only: the keys expire anyway
            print(f"note: could not delete Redis keys {self.prefix}*: {exc}", file=sys.stderr)

    def env(self, **extra) -> dict:
        """Environment of a server process: bench database, channel layer, secret key, stun only."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
        env.update(
            DEBUG="1",
            DJANGO_SECRET_KEY=self.secret_key,
            DATABASE_URL=self.db_url,
            REDIS_URL=self.redis_url,
            WIMZ_CHANNEL_PREFIX=self.prefix,
            WIMZ_ICE_PROVIDER="stun",
            LOG_LEVEL="WARNING",
            PYTHONUNBUFFERED="1",
            DJANGO_SETTINGS_MODULE="wimz.settings",
            # The bench measures the relay's own speed, beyond what one client may send
            # (docs/operations.md "WebSocket limits"): buckets too big to refuse anything, so each
            # frame still pays for its bucket arithmetic; no socket caps.
            **{
                name: "1e9"
                for name in (
                    "WIMZ_FRAME_RATE",
                    "WIMZ_FRAME_BURST",
                    "WIMZ_SDP_RATE",
                    "WIMZ_SDP_BURST",
                    "WIMZ_ICE_RATE",
                    "WIMZ_ICE_BURST",
                )
            },
            WIMZ_MAX_ICE_PER_SESSION="0",
            WIMZ_MAX_APP_SOCKETS_PER_USER="0",
            WIMZ_MAX_UNAUTHENTICATED_PER_ADDRESS="0",
        )
        env.pop("PYTHONPATH", None)
        env.update(extra)
        return env

    def _setup_django(self) -> None:
        started = time.perf_counter()
        result = subprocess.run(  # our interpreter, the relay checkout's manage.py
            [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
            cwd=self.relay_root,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if result.returncode:
            raise RuntimeError(f"migrate failed in {self.relay_root}:\n{result.stdout[-2000:]}{result.stderr[-3000:]}")
        self.migrate_seconds = time.perf_counter() - started
        os.environ.update(self.env(LOG_LEVEL="WARNING"))
        import django

        django.setup()

    # --- provisioning -------------------------------------------------------------------------

    def provision(self, tag: str, pairs: int, idle: int) -> People:
        """`pairs` users each owning one robot, a fan-out owner, a stranger user, `idle` unowned robots."""
        from django.contrib.auth.hashers import make_password
        from django.db import connection
        from rest_framework_simplejwt.tokens import AccessToken

        from accounts.models import User
        from devices.management.commands.provision_device import DeviceSpec, provision_bulk

        self._seq += 1
        tag = f"{tag}{self._seq}"
        password = make_password(None)  # unusable; the apps authenticate with minted access tokens
        users = User.objects.bulk_create(
            [User(email=f"{tag}-{i}@bench.invalid", password=password) for i in range(pairs + 2)], batch_size=1000
        )
        if any(u.pk is None for u in users):
            by_email = dict(
                User.objects.filter(email__endswith="@bench.invalid", email__startswith=f"{tag}-").values_list(
                    "email", "pk"
                )
            )
            for u in users:
                u.pk = by_email[u.email]
        specs = [DeviceSpec(f"b{tag}_{i}", "", users[i]) for i in range(pairs + 1)]
        specs += [DeviceSpec(f"b{tag}_idle{i}", "") for i in range(idle + 20)]  # + warm-up sockets
        done = provision_bulk(specs)
        out = [
            Pair(
                p.device_id,
                p.secret,
                str(AccessToken.for_user(users[i])) if i <= pairs else "",
                users[i].pk if i <= pairs else 0,
            )
            for i, p in enumerate(done)
        ]
        stranger = Pair(f"b{tag}_nodevice", "", str(AccessToken.for_user(users[pairs + 1])), users[pairs + 1].pk)
        connection.close()
        return People(out[:pairs], out[pairs], stranger, out[pairs + 1 :])

    def open_presence_rows(self) -> int | None:
        """Presence rows still open (the relay's `Connection` model); None if it cannot be read."""
        from django.db import connection

        try:
            from relay.models import Connection

            return Connection.objects.filter(disconnected_at__isnull=True).count()
        except Exception:  # the relay's models may differ in another checkout
            return None
        finally:
            connection.close()


# --- targets --------------------------------------------------------------------------------------


class Target:
    """A running system under test: its server processes, where robots and apps connect, its people."""

    kind = "floor"

    def __init__(self, name: str, servers: list[ServerProcess], people: People):
        self.name = name
        self.label = TARGET_LABELS[name]
        self.servers = servers
        self.people = people

    @property
    def pids(self) -> list[int]:
        return [s.pid for s in self.servers]

    @property
    def robot_base(self) -> str:
        return self.servers[0].ws

    @property
    def app_base(self) -> str:
        return self.servers[-1].ws

    def cpu(self) -> float:
        return sum(s.cpu() for s in self.servers)

    def rss(self) -> int:
        return sum(s.rss() for s in self.servers)

    def stop(self) -> None:
        for s in self.servers:
            s.stop()

    def logs(self) -> str:
        return "".join(s.output() for s in self.servers)


class RelayTarget(Target):
    kind = "relay"


def start_target(name: str, services: Services, *, pairs: int, idle: int) -> Target:
    """Start target `name` fresh (servers pinned to the server core) and provision its people."""
    tmp = services.tmp
    if name == "raw":
        argv = [sys.executable, "-m", "bench.floors.raw_ws", "--port", "{port}"]
        servers = [
            ServerProcess(
                "raw floor", argv, cwd=ROOT, env=services.env(), log_path=tmp / "raw.log", health_path="/health"
            )
        ]
        people = synthetic_people("raw", pairs, idle)
        cls = Target
    elif name == "channels":
        from wimz.serve import daphne_argv

        flags = daphne_argv("127.0.0.1", 0)[:-1]
        flags[flags.index("-p") + 1] = "{port}"
        argv = [sys.executable, "-m", "daphne", *flags, "bench.floors.channels_floor:application"]
        env = services.env(WIMZ_CHANNEL_PREFIX=services.prefix + "floor")
        servers = [ServerProcess("channels floor", argv, cwd=ROOT, env=env, log_path=tmp / "channels.log")]
        people = synthetic_people("chn", pairs, idle)
        cls = Target
    else:
        count = 2 if name == "relay2" else 1
        argv = [sys.executable, "-m", "wimz.serve", "--host", "127.0.0.1", "--port", "{port}"]
        servers = [
            ServerProcess(
                f"relay {'AB'[i]}",
                argv,
                cwd=services.relay_root,
                env=services.env(),
                log_path=tmp / f"{name}-{'ab'[i]}.log",
                health_path="/health",
            )
            for i in range(count)
        ]
        people = services.provision(name, pairs, idle)
        cls = RelayTarget
    try:
        for s in servers:
            s.wait_ready()
    except BaseException:
        for s in servers:
            s.stop()
        raise
    return cls(name, servers, people)
