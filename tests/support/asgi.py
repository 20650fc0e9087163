"""In-process clients: the relay's robot and app sockets through channels' WebsocketCommunicator.

The consumer-level twin of `tests.support.live` (real sockets on live daphnes): the same robot and app
roles, the same `recv`/`recv_type`/`nothing`, every received frame checked against the frame schema.
"""

import contextlib
import json
from urllib.parse import urlencode

from channels.testing import WebsocketCommunicator

from tests.support.frames import check_sent
from tests.support.signing import fresh_ts, signed
from wimz.asgi import application

TIMEOUT = 3


def robot_headers(device_id: str, secret: str, ts: int | None = None) -> list[tuple[bytes, bytes]]:
    """The handshake headers a deployed robot sends (docs/protocol.md §4), signed at `ts` (default: `fresh_ts`)."""
    return signed(device_id, secret, fresh_ts(device_id) if ts is None else ts).asgi_headers()


async def connect(path: str, headers=None) -> tuple[WebsocketCommunicator, bool]:
    """Open a communicator on the full ASGI app (middleware included); returns (comm, accepted)."""
    comm = WebsocketCommunicator(application, path, headers=headers or [])
    accepted, _ = await comm.connect(timeout=TIMEOUT)
    return comm, accepted


async def robot(device_id: str, secret: str, ts: int | None = None, *, hello: bool = False) -> WebsocketCommunicator:
    """A connected robot socket (asserts the handshake was accepted), signed at `ts` (default: a timestamp this
    process has not used for `device_id` yet, `tests.support.signing.fresh_ts`)."""
    comm, accepted = await connect("/ws/device", robot_headers(device_id, secret, ts))
    assert accepted, "robot handshake refused"
    if hello:
        await comm.send_json_to({"type": "hello", "device_id": device_id, "capabilities": ["video"]})
    return comm


async def app(token: str, *, drain_status: int = 0) -> WebsocketCommunicator:
    """A connected app socket; receives and discards `drain_status` snapshot frames."""
    comm, accepted = await connect("/ws/app?" + urlencode({"token": token}))
    assert accepted, "app handshake refused"
    for _ in range(drain_status):
        frame = await recv(comm)
        assert frame["type"] == "device_status", frame
    return comm


async def recv(comm: WebsocketCommunicator, timeout: float = TIMEOUT) -> dict:
    """The next JSON frame from the relay."""
    return check_sent(json.loads(await comm.receive_from(timeout=timeout)), comm.scope.get("path"))


async def recv_type(comm: WebsocketCommunicator, kind: str, timeout: float = TIMEOUT) -> dict:
    """Skip frames until one of type `kind` (device_status pushes may interleave)."""
    while True:
        frame = await recv(comm, timeout)
        if frame.get("type") == kind:
            return frame


async def send(comm: WebsocketCommunicator, frame) -> None:
    """Send a frame: a dict as JSON, a str as is, bytes as a binary frame."""
    if isinstance(frame, bytes):
        await comm.send_to(bytes_data=frame)
    elif isinstance(frame, str):
        await comm.send_to(text_data=frame)
    else:
        await comm.send_to(text_data=json.dumps(frame))


# How long a socket must stay quiet to count as receiving nothing. Tests first wait for the sender's own
# answer (or the receiver's other frames), so the relay has already routed the frame: in-memory
# channel-layer delivery takes milliseconds.
QUIET = 0.3


async def nothing(*comms: WebsocketCommunicator, timeout: float = QUIET) -> bool:
    """True when none of `comms` receives a frame within `timeout` seconds (one wait, then a look at each);
    raises AssertionError naming the first frame that did arrive. The one way the suites say "nothing arrived"
    (`tests.support.live.nothing` is its twin for real sockets)."""
    for i, comm in enumerate(comms):
        if not await comm.receive_nothing(timeout=timeout if i == 0 else 0.01):
            raise AssertionError(f"expected nothing on {comm.scope.get('path')}, got {await comm.receive_output()!r}")
    return True


async def ping_ok(comm: WebsocketCommunicator) -> None:
    """Assert the socket still answers `ping` with `pong`."""
    await send(comm, {"type": "ping"})
    assert (await recv_type(comm, "pong")) == {"type": "pong"}


async def close(*comms: WebsocketCommunicator) -> None:
    """Disconnect every communicator (ignoring ones already closed)."""
    for comm in comms:
        with contextlib.suppress(Exception):  # already closed by the relay
            await comm.disconnect()
