"""REST throttles (core/throttling.py, docs/operations.md "Throttles and limits (HTTP)").

Every test forges a new X-Forwarded-For per request from one untrusted peer: the limit must hold.
"""

import itertools
import time

import pytest
from rest_framework.throttling import SimpleRateThrottle

from devices.models import PairingCode
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

_forged = (f"198.51.100.{i % 250}, 203.0.113.{i % 250}" for i in itertools.count(1))


def forged() -> dict:
    """Request extras: a new client-written X-Forwarded-For each time, from the same peer (127.0.0.1)."""
    return {"HTTP_X_FORWARDED_FOR": next(_forged)}


@pytest.fixture
def rates(monkeypatch):
    """`rates(scope=rate, ...)`: set throttle rates for this test."""

    def _set(**values):
        for scope, rate in values.items():
            monkeypatch.setitem(SimpleRateThrottle.THROTTLE_RATES, scope, rate)

    return _set


def login(api, email="u1@example.com", password=PASSWORD, **extra):
    return api.post("/api/auth/login", {"email": email, "password": password}, **extra)


def test_login_per_address_holds_across_forged_forwarded_for(api, make_user, rates):
    rates(login_address="3/min", login_account=None)
    for i in range(3):
        assert login(api, email=f"nobody{i}@example.com", **forged()).status_code == 401
    r = login(api, email="other@example.com", **forged())
    assert r.status_code == 429 and r.json()["code"] == "throttled"


def test_login_per_account_holds_across_addresses(api, make_user, rates):
    """Guesses against one account are bounded whatever the address (real or forged)."""
    rates(login_account="3/min", login_address=None)
    make_user()
    for i in range(3):
        assert login(api, password="wrong", REMOTE_ADDR=f"198.51.100.{i}", **forged()).status_code == 401
    r = login(api, email="  U1@Example.com ", REMOTE_ADDR="198.51.100.77")  # same account, other spelling
    assert r.status_code == 429
    # other accounts are not affected
    assert login(api, email="u2@example.com", REMOTE_ADDR="198.51.100.78").status_code == 401


def test_login_per_account_is_a_window_not_a_lockout(api, make_user, rates, monkeypatch):
    """Once the window has passed the victim logs in again: failed guesses never lock an account for good."""
    rates(login_account="2/min", login_address=None)
    make_user()
    clock = [time.time()]
    monkeypatch.setattr(SimpleRateThrottle, "timer", lambda self: clock[0])
    for _ in range(2):
        assert login(api, password="wrong").status_code == 401
    assert login(api).status_code == 429
    clock[0] += 61
    assert login(api).status_code == 200


def test_register_per_address_holds_across_forged_forwarded_for(api, rates):
    rates(register_address="2/min")
    for i in range(2):
        assert (
            api.post("/api/auth/register", {"email": f"n{i}@example.com", "password": PASSWORD}, **forged()).status_code
            == 201
        )
    r = api.post("/api/auth/register", {"email": "n9@example.com", "password": PASSWORD}, **forged())
    assert r.status_code == 429


def test_robot_pairing_code_requests_per_address(api, make_device, robot_headers, rates):
    """Signed (anonymous) robot requests are throttled per address, forged X-Forwarded-For or not, and even
    with bad signatures."""
    rates(robot_address="3/min")
    device, secret = make_device()
    now = int(time.time())
    assert (
        api.post("/api/devices/pairing-code", **robot_headers(device.device_id, secret, now), **forged()).status_code
        == 201
    )
    assert (
        api.post(
            "/api/devices/pairing-code", **robot_headers(device.device_id, "0" * 64, now + 1), **forged()
        ).status_code
        == 403
    )
    assert (
        api.post(
            "/api/devices/pairing-code", **robot_headers(device.device_id, secret, now + 2), **forged()
        ).status_code
        == 201
    )
    r = api.post("/api/devices/pairing-code", **robot_headers(device.device_id, secret, now + 3), **forged())
    assert r.status_code == 429


def test_pair_guesses_per_user(make_user, client_for, rates):
    rates(pair_user="2/min", pair_address=None, pair_failed_global=None)
    client = client_for(make_user())
    for i in range(2):
        assert (
            client.post("/api/devices/pair", {"pairing_code": "ZZZZZZZZ"}, REMOTE_ADDR=f"198.51.100.{i}").status_code
            == 400
        )
    assert (
        client.post("/api/user/pair-device", {"pairing_code": "ZZZZZZZZ"}, REMOTE_ADDR="198.51.100.9").status_code
        == 429
    )


def test_pair_guesses_per_address_hold_across_accounts_and_forged_forwarded_for(make_user, client_for, rates):
    rates(pair_user=None, pair_address="3/min", pair_failed_global=None)
    clients = [client_for(make_user(f"p{i}@example.com")) for i in range(4)]
    for client in clients[:3]:
        assert client.post("/api/devices/pair", {"pairing_code": "ZZZZZZZZ"}, **forged()).status_code == 400
    assert clients[3].post("/api/devices/pair", {"pairing_code": "ZZZZZZZZ"}, **forged()).status_code == 429


def test_failed_pair_guesses_have_one_budget_for_the_whole_relay(make_user, make_device, client_for, rates):
    """Accounts and addresses are free: failed guesses share one cluster-wide budget; only failures use it."""
    rates(pair_user=None, pair_address=None, pair_failed_global="3/hour")
    owner = make_user("owner@example.com")
    device, _ = make_device(owner=None)
    code = PairingCode.objects.create(
        code="KX2HF53P",
        device=device,
        kind=PairingCode.Kind.PROVISIONING,
        expires_at=device.created_at.replace(year=device.created_at.year + 1),
    )
    # a success does not use the budget
    assert client_for(owner).post("/api/devices/pair", {"pairing_code": code.code}).status_code == 201
    for i in range(3):
        client = client_for(make_user(f"g{i}@example.com"))
        assert (
            client.post("/api/devices/pair", {"pairing_code": "ZZZZZZZZ"}, REMOTE_ADDR=f"198.51.100.{i}").status_code
            == 400
        )
    fresh = client_for(make_user("fresh@example.com"))
    r = fresh.post("/api/user/pair-device", {"pairing_code": "ZZZZZZZZ"}, REMOTE_ADDR="198.51.100.200")
    assert r.status_code == 429 and r.json()["code"] == "throttled"


def test_throttles_hold_in_the_shared_redis_cache(api, make_user, rates, redis_cache):
    """With REDIS_URL the counters live in Redis (Django's RedisCache): a second instance (here: a fresh cache
    connection, nothing in process memory) sees the same count."""
    from django.core.cache import caches

    rates(login_account="2/min", login_address=None)
    make_user()
    assert type(caches["default"]).__name__ == "RedisCache"
    for _ in range(2):
        assert login(api, password="wrong", **forged()).status_code == 401
    caches["default"].close()
    del caches["default"]  # as another process would: a new client, no local state
    assert login(api, **forged()).status_code == 429


def test_production_settings_use_redis_for_the_cache_when_redis_url_is_set(monkeypatch):
    """wimz/settings.py: RedisCache on REDIS_URL, else local memory (one process)."""
    import importlib

    import wimz.settings as project_settings

    try:
        monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/9")
        assert importlib.reload(project_settings).CACHES["default"]["BACKEND"] == (
            "django.core.cache.backends.redis.RedisCache"
        )
        monkeypatch.delenv("REDIS_URL")
        assert "locmem" in importlib.reload(project_settings).CACHES["default"]["BACKEND"]
    finally:
        monkeypatch.undo()
        importlib.reload(project_settings)
