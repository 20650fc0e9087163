"""Helpers for driving the relay's WebSockets with channels' WebsocketCommunicator."""

import contextlib
import json
from urllib.parse import urlencode

from channels.testing import WebsocketCommunicator

from tests.support.frames import check_sent
from tests.support.signing import signed
from wimz.asgi import application

TIMEOUT = 3


def robot_headers(device_id: str, secret: str, ts: int | None = None) -> list[tuple[bytes, bytes]]:
    """The handshake headers a deployed robot sends (docs/protocol.md §4)."""
    return signed(device_id, secret, ts).asgi_headers()


async def connect(path: str, headers=None) -> tuple[WebsocketCommunicator, bool]:
    """Open a communicator on the full ASGI app (middleware included); returns (comm, accepted)."""
    comm = WebsocketCommunicator(application, path, headers=headers or [])
    accepted, _ = await comm.connect(timeout=TIMEOUT)
    return comm, accepted


async def robot(device_id: str, secret: str, ts: int | None = None, *, hello: bool = False) -> WebsocketCommunicator:
    """A connected robot socket (asserts the handshake was accepted)."""
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


async def nothing(comm: WebsocketCommunicator, timeout: float = 0.3) -> bool:
    """True when the socket receives nothing within `timeout` seconds."""
    return await comm.receive_nothing(timeout=timeout)


async def ping_ok(comm: WebsocketCommunicator) -> None:
    """Assert the socket still answers `ping` with `pong`."""
    await send(comm, {"type": "ping"})
    assert (await recv_type(comm, "pong")) == {"type": "pong"}


async def close(*comms: WebsocketCommunicator) -> None:
    """Disconnect every communicator (ignoring ones already closed)."""
    for comm in comms:
        with contextlib.suppress(Exception):  # already closed by the relay
            await comm.disconnect()
