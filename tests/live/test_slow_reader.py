"""A client that stops reading cannot fill the server's memory, and nothing sent to it is lost silently.

Real daphne (the transport buffer is the server's), PostgreSQL + Redis, a small
`WIMZ_SOCKET_BUFFER_BYTES` so that the bound is reached quickly: the robot on instance A streams
large events to its owner's app on instance B, which reads nothing until the robot is done. Every
event is either delivered (once the app reads) or answered `RATE_LIMITED` to the robot.
"""

import asyncio
import time

import pytest

from tests.support import live as c

pytestmark = [pytest.mark.live, pytest.mark.services]

RELAY_ENV = {"WIMZ_SOCKET_BUFFER_BYTES": 256 * 1024}
R1 = "wimz_robot_01"
EVENTS = 200
PAD = "x" * 64 * 1024


async def test_a_socket_that_does_not_read_is_shed_not_buffered_without_bound(live_relays, world):
    a, b = live_relays
    robot = await c.robot(a.ws, R1, world.r1_secret)
    app = await c.app(b.ws, world.t1, max_queue=1)
    try:
        await asyncio.sleep(0.5)  # the app's snapshot is in; from now on it reads nothing
        for i in range(EVENTS):
            await c.send(robot, {"type": "telemetry", "seq": i, "pad": PAD})
        limited = 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the robot's answers: RATE_LIMITED for what was shed
            try:
                frame = await c.recv(robot, 3)
            except TimeoutError:
                break
            assert frame.get("code") == "RATE_LIMITED", frame
            limited += 1
        assert limited > 0  # 12.8 MB for a reader that reads nothing: far past the 256 KiB bound
        seqs = []
        while True:  # now the app reads everything the server kept for it
            try:
                frame = await c.recv(app, 3)
            except TimeoutError:
                break
            if frame.get("type") == "telemetry":
                seqs.append(frame["seq"])
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        assert len(seqs) + limited == EVENTS, (len(seqs), limited)
    finally:
        await app.close()
        await robot.close()
