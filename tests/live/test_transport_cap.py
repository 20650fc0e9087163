"""The transport cap under a real daphne: over 1 MiB closes 1009 with a close frame (docs/protocol.md §3.3,
§16); between `WIMZ_MAX_FRAME_BYTES` and the cap, an error frame and the socket stays."""

import json

import pytest
import websockets

from tests.support import live as c
from wimz.serve import TRANSPORT_CAP_BYTES

pytestmark = [pytest.mark.live, pytest.mark.services]


async def test_a_message_over_the_transport_cap_is_closed_1009_with_a_close_frame(live_relays, world):
    relay = live_relays[0]
    app = await c.app(relay.ws, world.t1)
    await c.recv_type(app, "device_status")
    # Over the relay's limit, under the cap: MESSAGE_TOO_LARGE, and the socket answers ping.
    await app.send(json.dumps({"type": "audio_message", "data": "x" * 300_000}))
    error = await c.recv(app)
    assert (error["type"], error["code"]) == ("error", "MESSAGE_TOO_LARGE")
    await c.send(app, {"type": "ping"})
    assert await c.recv(app) == {"type": "pong"}

    await app.send(json.dumps({"type": "audio_message", "data": "x" * TRANSPORT_CAP_BYTES}))
    with pytest.raises(websockets.exceptions.ConnectionClosed):
        await c.recv(app)
    assert app.protocol.close_rcvd is not None, "the relay dropped TCP without a close frame (1006)"
    assert app.protocol.close_rcvd.code == 1009
    assert "Traceback" not in relay.output()
