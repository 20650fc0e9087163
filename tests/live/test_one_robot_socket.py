"""One live robot socket per device across instances (docs/protocol.md §4.4, §19.3): two handshakes of
the same device at the same moment, one on each instance, always end with exactly one socket open and
one live presence row; the other socket is closed 4009. Repeated, since it is a race.
"""

import asyncio
import time

import pytest

from relay.models import Connection
from tests.support import live as c

pytestmark = [pytest.mark.live, pytest.mark.services]

R1 = "wimz_robot_01"
TRIALS = 8


async def test_simultaneous_handshakes_on_two_instances_leave_one_live_socket(live_relays, world):
    a, b = live_relays
    base = int(time.time()) - 200
    for trial in range(TRIALS):
        ts = base + 2 * trial  # each handshake signs a timestamp of its own (a triple is accepted once)
        first, second = await asyncio.gather(
            c.robot(a.ws, R1, world.r1_secret, ts=ts), c.robot(b.ws, R1, world.r1_secret, ts=ts + 1)
        )
        closed = []
        for ws in (first, second):
            try:
                await asyncio.wait_for(ws.wait_closed(), 2)
                closed.append(ws)
            except TimeoutError:
                pass
        assert len(closed) == 1, f"trial {trial}: {len(closed)} sockets closed"
        assert closed[0].close_code == 4009
        live = await c.db(lambda: Connection.objects.filter(role="robot", disconnected_at__isnull=True).count())
        assert live == 1, f"trial {trial}: {live} live robot rows"
        for ws in (first, second):
            await ws.close()
        for _ in range(50):  # the surviving socket's row closes once its client has gone (bounded)
            if not await c.db(lambda: Connection.objects.filter(role="robot", disconnected_at__isnull=True).exists()):
                break
            await asyncio.sleep(0.1)
