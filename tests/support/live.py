"""Real-socket clients for live relays (daphne processes): the robot and app of `sim.client`, with checks.

The sockets are `sim.client`'s, the library the simulators and the benchmark use, so a live test connects
exactly as they do. What this layer adds is for tests: every received frame is checked against the frame
schema (`tests.support.frames.check_sent`), `nothing()` is the one way to say nothing arrived, and `db()`
runs ORM calls from an async test.
"""

import asyncio
import time

from asgiref.sync import sync_to_async
from django.db import connection
from websockets.asyncio.client import ClientConnection, connect

from sim import client
from tests.support.frames import check_sent

TIMEOUT = 5.0
handshake_status = client.handshake_status
robot_headers = client.robot_headers


async def robot(base: str, device_id: str, secret: str, ts: int | None = None, **kwargs) -> ClientConnection:
    """A robot socket on the relay at `base` (ws://host:port), signed at `ts` (default now); `kwargs` go to
    `websockets`' `connect`. Raises `InvalidStatus` when refused."""
    return await client.open_robot(base, device_id, secret, ts, **kwargs)


async def app(base: str, token: str, **kwargs) -> ClientConnection:
    """An app socket on the relay at `base`, token in the query string as the deployed app sends it."""
    return await client.open_app(base, token, **kwargs)


async def connect_url(url: str, headers: dict | None = None) -> ClientConnection:
    """A socket on any relay URL (path and query included), for handshakes the two roles do not make."""
    return await connect(url, additional_headers=headers or {})


async def recv(ws: ClientConnection, timeout: float = TIMEOUT) -> dict:
    """The next JSON frame, checked against the frame schema for the socket's path."""
    return check_sent(await client.recv_json(ws, timeout), ws.request.path if ws.request else None)


async def recv_type(ws: ClientConnection, kind: str, timeout: float = TIMEOUT) -> dict:
    """Skip frames until one of type `kind`; `TimeoutError` when none arrives within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        frame = await recv(ws, max(0.01, deadline - time.monotonic()))
        if frame.get("type") == kind:
            return frame


async def nothing(ws: ClientConnection, timeout: float = 0.5) -> bool:
    """True when no frame arrives within `timeout` seconds; raises AssertionError naming the frame otherwise."""
    try:
        frame = await asyncio.wait_for(ws.recv(), timeout)
    except TimeoutError:
        return True
    raise AssertionError(f"expected nothing, got {frame!r}")


async def send(ws: ClientConnection, frame: dict) -> None:
    """Send one JSON frame."""
    await client.send_json(ws, frame)


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
