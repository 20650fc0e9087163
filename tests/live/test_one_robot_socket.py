"""One live robot socket per device across instances (docs/protocol.md §4.4, §19.3): two handshakes of
the same device at the same moment, one on each instance, always end with exactly one socket open and
one live presence row; the other socket is closed 4009. Repeated, since it is a race.
"""

import argparse
import asyncio
import time

import pytest

from relay.models import Connection
from sim import robot as sim_robot
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


async def test_the_robot_simulator_does_not_fight_the_socket_that_replaced_it(live_relays, world):
    """`python -m sim.robot` reconnects after a dropped socket, but not after 4009: a newer socket of the same
    device id replaced it, and taking it back would make the two replace each other every second."""
    a, b = live_relays
    args = argparse.Namespace(url=a.ws, device_id=R1, secret=world.r1_secret, width=64, height=48, once=False)
    cli = asyncio.create_task(sim_robot._run_cli(args))
    try:
        for _ in range(100):  # the simulator's socket is live (bounded: 10 s)
            if await c.db(lambda: Connection.objects.filter(role="robot", disconnected_at__isnull=True).exists()):
                break
            await asyncio.sleep(0.1)
        newer = await c.robot(b.ws, R1, world.r1_secret, ts=int(time.time()) - 60)  # never the simulator's second
        assert await asyncio.wait_for(cli, 10) == 3
        assert await c.nothing(newer, 2.5)  # left alone: no 4009 comes back to the newer socket
        await newer.close()
    finally:
        cli.cancel()
