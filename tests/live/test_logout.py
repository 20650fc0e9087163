"""Logout ends one login across instances (docs/protocol.md §16, §17.3), on PostgreSQL and Redis."""

import httpx
import pytest
import websockets

from tests.support import live as c

pytestmark = [pytest.mark.live, pytest.mark.services]


async def test_logout_on_one_instance_closes_that_logins_socket_on_the_other(live_relays, transactional_db):
    """Two logins of one user hold app sockets on instance B; logging out login A through instance A closes
    A's socket with 4003 and leaves B's open and usable."""
    a, b = live_relays
    creds = {"email": "phone-owner@example.com", "password": "x-Unusual-pass-42"}
    async with httpx.AsyncClient(timeout=10) as http:
        first = (await http.post(a.http + "/api/auth/register", json=creds)).json()
        second = (await http.post(b.http + "/api/auth/login", json=creds)).json()
        phone_a = await c.app(b.ws, first["access"])
        phone_b = await c.app(b.ws, second["access"])
        try:
            await c.send(phone_a, {"type": "ping"})
            assert (await c.recv_type(phone_a, "pong"))["type"] == "pong"
            r = await http.post(a.http + "/api/auth/logout", json={"refresh": first["refresh"]})
            assert r.status_code == 200, r.text
            with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
                await c.recv(phone_a, timeout=5)
            assert closed.value.rcvd.code == 4003
            await c.send(phone_b, {"type": "ping"})
            assert (await c.recv_type(phone_b, "pong"))["type"] == "pong"
            me = await http.get(b.http + "/api/auth/me", headers={"Authorization": f"Bearer {first['access']}"})
            assert me.status_code == 401
            assert await c.handshake_status(a.ws + "/ws/app?token=" + first["access"]) == 403
        finally:
            await phone_a.close()
            await phone_b.close()
