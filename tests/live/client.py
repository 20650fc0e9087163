"""A minimal WebSocket client for live relays (the `websockets` library, as a robot or app would)."""

import asyncio
import json
import time
from urllib.parse import urlencode

import websockets
from asgiref.sync import sync_to_async
from django.db import connection
from websockets.asyncio.client import ClientConnection, connect

from tests.support.frames import check_sent
from tests.support.signing import signed

TIMEOUT = 5.0


def robot_headers(device_id: str, secret: str, ts: int | None = None) -> dict[str, str]:
    """Signed handshake headers (docs/protocol.md §4)."""
    return signed(device_id, secret, ts).headers()


async def robot(base: str, device_id: str, secret: str, ts: int | None = None, **kwargs) -> ClientConnection:
    """A robot socket on the relay at `base` (ws://host:port); `ts` defaults to now."""
    return await connect(base + "/ws/device", additional_headers=robot_headers(device_id, secret, ts), **kwargs)


async def app(base: str, token: str, **kwargs) -> ClientConnection:
    """An app socket on the relay at `base`, token in the query string as the deployed app sends it."""
    return await connect(base + "/ws/app?" + urlencode({"token": token}), **kwargs)


async def handshake_status(url: str, headers: dict | None = None) -> int:
    """The HTTP status of a WebSocket handshake: 101 when accepted, else the refusal's status."""
    try:
        ws = await connect(url, additional_headers=headers or {}, open_timeout=TIMEOUT)
    except websockets.exceptions.InvalidStatus as exc:
        return exc.response.status_code
    await ws.close()
    return 101


async def recv(ws: ClientConnection, timeout: float = TIMEOUT) -> dict:
    """The next JSON frame."""
    return check_sent(json.loads(await asyncio.wait_for(ws.recv(), timeout)), ws.request.path if ws.request else None)


async def recv_type(ws: ClientConnection, kind: str, timeout: float = TIMEOUT) -> dict:
    """Skip frames until one of type `kind`."""
    deadline = time.monotonic() + timeout
    while True:
        frame = await recv(ws, max(0.01, deadline - time.monotonic()))
        if frame.get("type") == kind:
            return frame


async def nothing(ws: ClientConnection, timeout: float = 0.5) -> bool:
    """True when no frame arrives within `timeout` seconds."""
    try:
        frame = await asyncio.wait_for(ws.recv(), timeout)
    except TimeoutError:
        return True
    raise AssertionError(f"expected nothing, got {frame!r}")


async def send(ws: ClientConnection, frame: dict) -> None:
    """Send one JSON frame."""
    await ws.send(json.dumps(frame))


async def db(fn):
    """Run the ORM callable `fn` in a worker thread and close that thread's connection afterwards
    (an open connection would keep the test database from being dropped).
    """

    def _run():
        try:
            return fn()
        finally:
            connection.close()

    return await sync_to_async(_run)()


async def connect_url(url: str, headers: dict | None = None) -> ClientConnection:
    """A socket on any relay URL (path and query included)."""
    return await connect(url, additional_headers=headers or {})
