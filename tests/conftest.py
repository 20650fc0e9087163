"""Shared fixtures: users, devices with their secrets, JWTs, and the channel layer for tests."""

import os
from dataclasses import dataclass

import pytest
from channels.layers import channel_layers
from rest_framework_simplejwt.tokens import AccessToken

from tests.support.factories import PASSWORD, DeviceFactory, UserFactory  # PASSWORD: tests import it here
from tests.support.signing import forget_used_timestamps


@pytest.fixture(scope="session", autouse=True)
def close_worker_thread_connections(django_db_setup, django_db_blocker):
    """After the run, close the connections that ORM calls from async tests opened on asgiref's worker
    thread (persistent without the pool, WIMZ_DB_POOL_MAX_SIZE=0); an open one keeps the test database
    from being dropped.
    """
    yield
    import asyncio

    from asgiref.sync import sync_to_async
    from django.db import connections

    with django_db_blocker.unblock():
        asyncio.run(sync_to_async(connections.close_all)())  # runs on that worker thread


@pytest.fixture(autouse=True)
def fresh_handshake_timestamps():
    """Each test's robot handshakes draw timestamps from now again (tests.support.signing.fresh_ts)."""
    forget_used_timestamps()


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """Tests hash passwords with MD5: the real hasher costs ~0.3 s a user and proves nothing here."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


LOCMEM_CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}


@pytest.fixture(autouse=True)
def clear_throttle_cache(settings):
    """DRF throttle counters live in the cache; each test starts with none, in local memory even when
    REDIS_URL is set (clearing a Redis cache flushes the whole Redis database, live relays' keys with
    it). Tests of the shared cache configure a Redis cache with a prefix of their own (`redis_cache`)."""
    from django.core.cache import cache

    settings.CACHES = LOCMEM_CACHES
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def redis_cache(settings, require_services):
    """The production cache (Django's RedisCache on REDIS_URL) under a fresh key prefix, removed afterwards."""
    import uuid

    import redis
    from django.core.cache import cache

    prefix = f"wimztest{uuid.uuid4().hex[:8]}"
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": os.environ["REDIS_URL"],
            "KEY_PREFIX": prefix,
        }
    }
    yield cache
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def api():
    """An unauthenticated DRF `APIClient` (JSON by default)."""
    from rest_framework.test import APIClient

    client = APIClient()
    client.default_format = "json"
    return client


@pytest.fixture(autouse=True)
def in_memory_channel_layer(settings):
    """Communicator tests run on a fresh in-memory channel layer (live-daphne tests use Redis)."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "relay.layer.RelayChannelLayer", "CONFIG": {"capacity": 2000}}}
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


@pytest.fixture
def make_user(db):
    """`make_user(email="u1@example.com", password=PASSWORD, **fields) -> User`."""

    def _make(email="u1@example.com", password=PASSWORD, **fields):
        return UserFactory(email=email, password=password, **fields)

    return _make


@pytest.fixture
def make_device(db):
    """`make_device(device_id="wimz_robot_01", owner=None, **fields) -> (Device, secret)`."""

    def _make(device_id="wimz_robot_01", owner=None, **fields):
        device = DeviceFactory(device_id=device_id, owner=owner, **fields)  # secret stored encrypted
        return device, device.plain_secret

    return _make


@pytest.fixture
def access_token():
    """`access_token(user) -> str`: a valid access JWT for `user` (simplejwt)."""

    def _token(user):
        return str(AccessToken.for_user(user))

    return _token


def services_available() -> bool:
    """True when DATABASE_URL points at PostgreSQL and REDIS_URL is set."""
    return os.environ.get("DATABASE_URL", "").startswith("postgres") and bool(os.environ.get("REDIS_URL"))


def _skip_or_fail_without_services() -> None:
    if not services_available():
        if os.environ.get("WIMZ_REQUIRE_SERVICES") == "1":
            pytest.fail("WIMZ_REQUIRE_SERVICES=1 but DATABASE_URL (postgres) / REDIS_URL are not set")
        pytest.skip("needs PostgreSQL (DATABASE_URL) and Redis (REDIS_URL); CI sets both")


@pytest.fixture
def require_services():
    """Skip (with the reason) without PostgreSQL + Redis; fail instead when WIMZ_REQUIRE_SERVICES=1 (CI)."""
    _skip_or_fail_without_services()


def pytest_runtest_setup(item):
    """A test marked `services` needs PostgreSQL + Redis whatever fixtures it uses: skipped without
    them, failed under WIMZ_REQUIRE_SERVICES=1."""
    if item.get_closest_marker("services") is not None:
        _skip_or_fail_without_services()


@dataclass
class World:
    """Users, devices, secrets and tokens for relay tests."""

    u1: object
    u2: object
    r1: object
    r2: object
    r1_secret: str
    r2_secret: str
    t1: str
    t2: str


@pytest.fixture
def world(transactional_db, make_user, make_device, access_token) -> World:
    """U1 owns R1 (`wimz_robot_01`), U2 owns R2 (`wimz_robot_02`); `t1`/`t2` are their access tokens."""
    u1 = make_user("u1@example.com")
    u2 = make_user("u2@example.com")
    r1, s1 = make_device("wimz_robot_01", owner=u1)
    r2, s2 = make_device("wimz_robot_02", owner=u2)
    return World(u1, u2, r1, r2, s1, s2, access_token(u1), access_token(u2))
