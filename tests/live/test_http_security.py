"""HTTP-side security under real daphne processes on PostgreSQL and Redis: the client address behind
(untrusted and trusted) proxies, throttles shared by two instances (docs/operations.md)."""

import itertools

import httpx
import pytest

from tests.live.conftest import relay_env, running_relays

pytestmark = [pytest.mark.live, pytest.mark.services]

RELAY_ENV = {
    "WIMZ_THROTTLE_LOGIN_ACCOUNT": "3/min",
    "WIMZ_THROTTLE_LOGIN_ADDRESS": "1000/min",
    "WIMZ_THROTTLE_REGISTER_ADDRESS": "4/min",
}

_n = itertools.count(1)


def forged() -> dict:
    i = next(_n)
    return {"X-Forwarded-For": f"198.51.100.{i % 250}, 203.0.113.{i % 250}"}


async def test_throttles_hold_across_instances_and_forged_forwarded_for(live_relays, world):
    """Login guesses against one account and registrations from one address, alternating between two
    instances, each with a new client-written X-Forwarded-For: the limits hold for the cluster."""
    a, b = live_relays
    async with httpx.AsyncClient(timeout=10) as http:
        answers = [
            (
                await http.post(
                    relay.http + "/api/auth/login",
                    json={"email": "u1@example.com", "password": "nope"},
                    headers=forged(),
                )
            ).status_code
            for relay in (a, b, a, b)
        ]
        assert answers == [401, 401, 401, 429]
        answers = [
            (
                await http.post(
                    relay.http + "/api/auth/register",
                    json={"email": f"reg{i}@example.com", "password": "x-Unusual-pass-42"},
                    headers=forged(),
                )
            ).status_code
            for i, relay in enumerate((b, a, b, a, b))
        ]
        assert answers == [201, 201, 201, 201, 429]
    log = a.output() + b.output()
    assert "198.51.100." not in log and "203.0.113." not in log  # forged addresses are logged nowhere


async def test_behind_a_trusted_proxy_the_address_it_saw_is_the_client(settings, world, tmp_path):
    """With WIMZ_TRUSTED_PROXIES naming the peer (127.0.0.1 plays nginx here), the rightmost untrusted
    X-Forwarded-For entry is the client: the register throttle counts per that address whatever the
    client wrote on the left, and daphne's access log names it, for HTTP and WebSocket alike."""
    env = relay_env(settings, WIMZ_TRUSTED_PROXIES="127.0.0.1", WIMZ_THROTTLE_REGISTER_ADDRESS="2/min")
    with running_relays(env, tmp_path, names=("proxied",)) as (relay,):
        async with httpx.AsyncClient(timeout=10) as http:

            async def register(xff):
                r = await http.post(
                    relay.http + "/api/auth/register",
                    headers={"X-Forwarded-For": xff},
                    json={"email": f"p{next(_n)}@example.com", "password": "x-Unusual-pass-42"},
                )
                return r.status_code

            # one client (192.0.2.10, as nginx saw it) forging the left part each time
            assert [await register(f"10.9.9.{i}, 192.0.2.10") for i in range(3)] == [201, 201, 429]
            # another client behind the same proxy has its own bucket
            assert await register("192.0.2.11") == 201
        from tests.support import live as c

        assert await c.handshake_status(relay.ws + "/ws/app?token=x", {"X-Forwarded-For": "6.6.6.6, 192.0.2.12"}) == 403
        log = relay.output()
    assert "192.0.2.10" in log and "192.0.2.12" in log
    assert "10.9.9." not in log and "6.6.6.6" not in log
