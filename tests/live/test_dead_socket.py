"""Field report F1 under daphne: an app whose TCP connection is cut without a close frame."""

import asyncio

import pytest

from relay.models import Connection
from tests.support import live as c

pytestmark = [pytest.mark.live, pytest.mark.services]


async def _events(ws, count: int, timeout: float = 20.0) -> list[int]:
    seqs = []
    while len(seqs) < count:
        frame = await c.recv(ws, timeout)
        if frame["type"] == "status_update":
            seqs.append(frame["seq"])
    return seqs


async def test_cut_app_connection_is_cleaned_up_and_others_miss_nothing(live_relays, world):
    """R1 (on A) streams 500 `status_update`; A1 (on B) is cut mid-stream (TCP abort, no close frame);
    R1 sends 10 more; A1 reconnects as A1'. A2 gets all 510 exactly once and in order, A1' only the last
    10, R1 gets `webrtc_close` `app_disconnected` for A1's session, A1's presence row is closed, and no
    traceback is logged.
    """
    a, b = live_relays
    robot = await c.robot(a.ws, "wimz_robot_01", world.r1_secret)
    a1 = await c.app(b.ws, world.t1)
    a2 = await c.app(b.ws, world.t1)
    a1b = None
    try:
        for app in (a1, a2):
            await c.recv_type(app, "device_status")
        await c.send(a1, {"type": "webrtc_request"})
        sid = (await c.recv_type(a1, "webrtc_credentials"))["session_id"]
        await c.recv_type(robot, "webrtc_request")

        for seq in range(500):
            await c.send(robot, {"type": "status_update", "seq": seq})
            if seq == 250:
                a1.transport.abort()  # the TCP connection dies; no close frame
        close = await c.recv_type(robot, "webrtc_close", timeout=15)
        assert close == {"type": "webrtc_close", "session_id": sid, "reason": "app_disconnected"}
        assert await _events(a2, 500) == list(range(500))

        a1b = await c.app(b.ws, world.t1)
        await c.recv_type(a1b, "device_status")
        for seq in range(500, 510):
            await c.send(robot, {"type": "status_update", "seq": seq})
        assert await _events(a2, 10) == list(range(500, 510))
        assert await _events(a1b, 10) == list(range(500, 510))
        await asyncio.sleep(0.3)
        assert await c.nothing(a2) and await c.nothing(a1b) and await c.nothing(robot)
        open_apps = await c.db(lambda: Connection.objects.filter(role="app", disconnected_at__isnull=True).count())
        assert open_apps == 2  # A2 and A1'; the dead A1 is no longer a member
        assert "Traceback" not in b.output() and "Traceback" not in a.output()
    finally:
        for ws in (robot, a1, a2, a1b):
            if ws is not None:
                await ws.close()
