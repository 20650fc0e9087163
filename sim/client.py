"""The relay's two kinds of client at the wire: a robot's signed `/ws/device` socket and an app's `/ws/app` socket.

This is the one client library the simulators, the live tests and the benchmark open their sockets with. It
imports only the standard library and `websockets`, never the relay's Django code, so what it sends is a second,
independent reading of the contract (docs/protocol.md §4 robot handshake, §5 app handshake, §2 frames).

Sockets are `websockets.asyncio.client.ClientConnection`s; a refused handshake raises the library's
`websockets.exceptions.InvalidStatus` (its `.response.status_code` is the relay's HTTP status).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

ROBOT_PATH = "/ws/device"
APP_PATH = "/ws/app"


def sign(secret: str, device_id: str, timestamp: int | str) -> str:
    """Hex HMAC-SHA256 (RFC 2104) of `"<device_id>:<timestamp>"` keyed by the device secret, both utf-8.

    `timestamp` is unix seconds. This is the `X-Signature` a deployed robot sends (docs/protocol.md §4.1).
    """
    return hmac.new(secret.encode(), f"{device_id}:{timestamp}".encode(), hashlib.sha256).hexdigest()


def robot_headers(device_id: str, secret: str, timestamp: int | None = None) -> dict[str, str]:
    """`{"X-Device-ID", "X-Timestamp", "X-Signature"}` for a robot handshake at `timestamp` (default: now)."""
    ts = int(time.time()) if timestamp is None else timestamp
    return {"X-Device-ID": device_id, "X-Timestamp": str(ts), "X-Signature": sign(secret, device_id, ts)}


def ws_url(base_url: str, path: str, **query: Any) -> str:
    """The WebSocket URL for `path` on the relay at `base_url` (`http://` → `ws://`, `https://` → `wss://`).

    `base_url` may already be `ws://`/`wss://`; `query` items become the query string.
    """
    parts = urlsplit(base_url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + path, urlencode(query), ""))


def http_url(base_url: str, path: str) -> str:
    """The HTTP URL for `path` on the relay at `base_url` (`ws://` → `http://`, `wss://` → `https://`)."""
    parts = urlsplit(base_url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + path, "", ""))


async def open_robot(
    base_url: str, device_id: str, secret: str, timestamp: int | None = None, **options: Any
) -> ClientConnection:
    """A robot socket: `/ws/device` on the relay at `base_url` with headers signed at `timestamp` (default now).

    `options` go to `websockets.asyncio.client.connect` (`open_timeout`, `max_size`, `ping_interval`, …).
    Raises `InvalidStatus` when the relay refuses the handshake (docs/protocol.md §4: a bare 403).
    """
    headers = robot_headers(device_id, secret, timestamp)
    return await connect(ws_url(base_url, ROBOT_PATH), additional_headers=headers, **options)


async def open_app(base_url: str, access_token: str, **options: Any) -> ClientConnection:
    """An app socket: `/ws/app?token=<access JWT>` on the relay at `base_url`, the form deployed apps use.

    `options` as for `open_robot`. Raises `InvalidStatus` when the relay refuses the handshake
    (docs/protocol.md §5).
    """
    return await connect(ws_url(base_url, APP_PATH, token=access_token), **options)


async def handshake_status(url: str, headers: dict[str, str] | None = None, timeout: float = 5.0) -> int:
    """The HTTP status of a WebSocket handshake at `url`: 101 when accepted (the socket is closed again), else
    the refusal's status. Raises `TimeoutError` after `timeout` seconds."""
    try:
        ws = await connect(url, additional_headers=headers or {}, open_timeout=timeout)
    except InvalidStatus as exc:
        return exc.response.status_code
    await ws.close()
    return 101


async def send_json(ws: ClientConnection, frame: dict[str, Any]) -> None:
    """Send `frame` as one compact JSON text frame (docs/protocol.md §2)."""
    await ws.send(json.dumps(frame, separators=(",", ":")))


async def recv_json(ws: ClientConnection, timeout: float) -> Any:
    """The next frame decoded from JSON. Raises `TimeoutError` after `timeout` seconds, `ValueError` for text
    that is not JSON, and the library's `ConnectionClosed` when the socket closes."""
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))
