"""A robot's signature is spent only by a handshake that is accepted (docs/protocol.md §4.3, replay rule).

A handshake refused for another reason (a browser Origin, a trailing-slash path, an overloaded relay)
must leave the robot free to retry at once with the very same (device, timestamp, signature).
"""

import time

from devices.models import UsedSignature
from sim.client import sign
from tests.relay import flows
from tests.relay.flows import R1
from tests.support import asgi as ws

pytestmark = flows.RELAY_DB


async def used_count() -> int:
    return await flows.database_sync_to_async(UsedSignature.objects.count)()


async def test_refused_handshakes_do_not_spend_the_signature(world, settings):
    """Origin refused, `/ws/device/`, and a handshake that waited past the budget: each 403, none spends
    the triple; the same headers then connect, and only then is a replay refused."""
    settings.WIMZ_ALLOWED_ORIGINS = []
    headers = ws.robot_headers(R1, world.r1_secret, int(time.time()))
    _, accepted = await ws.connect("/ws/device", [*headers, (b"origin", b"https://evil.test")])
    assert not accepted
    _, accepted = await ws.connect("/ws/device/", headers)
    assert not accepted
    settings.WIMZ_HANDSHAKE_BUDGET = -1.0  # every handshake counts as having waited too long
    _, accepted = await ws.connect("/ws/device", headers)
    assert not accepted
    settings.WIMZ_HANDSHAKE_BUDGET = 4.0
    assert await used_count() == 0

    robot, accepted = await ws.connect("/ws/device", headers)
    assert accepted, "the retry with the same signature was refused"
    assert await used_count() == 1
    _, replay = await ws.connect("/ws/device", headers)
    assert not replay, "a replay of an accepted signature must be refused"
    await ws.ping_ok(robot)  # the refused replay did not replace the live socket
    await ws.close(robot)


async def test_compat_auth_spends_the_signature_once(world):
    """Compat `/ws`: an in-band robot `auth` spends its triple; the same frame on another socket fails
    (4003), and the first socket stays the robot's."""
    ts = int(time.time())
    frame = {"type": "auth", "device_id": R1, "timestamp": ts, "token": sign(world.r1_secret, R1, ts)}
    first, _ = await ws.connect("/ws")
    await ws.send(first, frame)
    assert (await ws.recv(first))["success"] is True
    second, _ = await ws.connect("/ws")
    await ws.send(second, frame)
    assert (await ws.recv(second))["success"] is False
    await flows.expect_close(second, 4003)
    await ws.ping_ok(first)
    assert await used_count() == 1
    await ws.close(first)
