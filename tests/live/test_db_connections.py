"""PostgreSQL connections of a real daphne process stay bounded under HTTP traffic (docs/operations.md
"Database connections")."""

import asyncio

import httpx
import pytest
from django.db import connection

from tests.live.conftest import relay_env, running_relays
from tests.support import live as c

pytestmark = [pytest.mark.live, pytest.mark.services]

APP_NAME = "wimz-conn-test"


def _relay_connections() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [APP_NAME])
        return cursor.fetchone()[0]


async def test_http_requests_do_not_pile_up_database_connections(settings, world, tmp_path, access_token):
    """200 REST requests and 100 health checks, 20 at a time: the relay holds at most the pool's size in
    connections, during the burst and after it (Django's persistent connections under ASGI left one per
    request thread: 32 after 200 requests)."""
    env = relay_env(settings, PGAPPNAME=APP_NAME)
    token = await c.db(lambda: access_token(world.u1))
    with running_relays(env, tmp_path, names=("db",)) as (relay,):
        async with httpx.AsyncClient(timeout=20, limits=httpx.Limits(max_connections=20)) as http:
            headers = {"Authorization": f"Bearer {token}"}
            for _ in range(10):
                batch = [http.get(relay.http + "/api/devices", headers=headers) for _ in range(20)]
                batch += [http.get(relay.http + "/health") for _ in range(10)]
                answers = await asyncio.gather(*batch)
                assert all(r.status_code == 200 for r in answers)
            peak = await c.db(_relay_connections)
        await asyncio.sleep(1)
        after = await c.db(_relay_connections)
        bound = settings.WIMZ_DB_POOL_MAX_SIZE
        print(f"relay connections: {peak} right after the burst, {after} a second later (bound {bound})")
        assert peak <= bound and after <= bound
    for _ in range(50):  # a stopped relay leaves none behind (PostgreSQL notices within a moment)
        if not await c.db(_relay_connections):
            break
        await asyncio.sleep(0.2)
    assert await c.db(_relay_connections) == 0
