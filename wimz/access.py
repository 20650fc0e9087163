"""The access log and request ids: one `wimz.access` line per HTTP request and per WebSocket handshake.

`AccessLogMiddleware` wraps the whole ASGI application (inside `wimz.proxy.TrustedProxyMiddleware`, so the
client address is the settled one). For each HTTP request or WebSocket connection it binds a `request_id`
to the connection's task (`core.logformat.bind_log_context`), so that every line logged while serving it
carries the id, and writes (docs/operations.md "Logs"):

- `http request`: `method`, `path` (never the query string), `status`, `duration_ms`, `client`; the
  response carries the id as `X-Request-ID`;
- `websocket accepted` / `websocket refused`: `path`, `status` (101, or the refusal's: 403), `duration_ms`
  (handshake to answer), `client`, `role` (`robot`, `app`, `compat` by route; `unknown` otherwise);
- `websocket closed`: the same fields once an accepted socket has ended, `duration_ms` being its lifetime.

The request id is the `X-Request-ID` header only when the TCP peer is a trusted proxy (`WIMZ_TRUSTED_PROXIES`,
`wimz.proxy`) and the value is short and plain (`[A-Za-z0-9._:-]`, at most 128 characters); otherwise a new
random id. This replaces daphne's own access log (`wimz.serve`), which wrote free text with query strings.

Why not a library: the access log of the server (daphne's) cannot see the bound request id or the relay's
client address rule, and Django middleware sees neither WebSocket handshakes nor responses streamed past it.
"""

import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from structlog.contextvars import bound_contextvars

from core.logging import client_text
from wimz.proxy import PEER_TRUSTED_KEY

logger = logging.getLogger("wimz.access")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

REQUEST_ID_HEADER = b"x-request-id"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
PATH_LIMIT = 256  # characters of a request path shown in the access log
_ROLES = {"/ws/device": "robot", "/ws/app": "app", "/ws": "compat"}


def request_id(scope: Scope) -> str:
    """The id of this request: a trusted proxy's `X-Request-ID` (see the module docstring), else 32 random
    hex digits."""
    if scope.get(PEER_TRUSTED_KEY):
        for name, value in scope.get("headers") or ():
            if name.lower() == REQUEST_ID_HEADER:
                candidate = value.decode("latin-1").strip()
                if _REQUEST_ID.fullmatch(candidate):
                    return candidate
                break
    return uuid.uuid4().hex


def _fields(scope: Scope, started: float) -> dict[str, Any]:
    client = scope.get("client")
    return {
        "path": client_text(scope.get("path", ""), PATH_LIMIT),  # the ASGI path never holds the query string
        "client": client[0] if client else None,
        "duration_ms": round((time.monotonic() - started) * 1000, 1),
    }


class AccessLogMiddleware:
    """ASGI middleware: request ids and the `wimz.access` log for HTTP and WebSocket connections."""

    def __init__(self, inner: Callable[[Scope, Receive, Send], Awaitable[None]]):
        self.inner = inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope.get("type")
        if kind not in ("http", "websocket"):
            await self.inner(scope, receive, send)
            return
        rid = request_id(scope)
        with bound_contextvars(request_id=rid):
            if kind == "http":
                await self._http(scope, receive, send, rid)
            else:
                await self._websocket(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send, rid: str) -> None:
        started = time.monotonic()
        status: int | None = None

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message.get("status")
                message = {**message, "headers": [*message.get("headers", ()), (REQUEST_ID_HEADER, rid.encode())]}
            await send(message)

        try:
            await self.inner(scope, receive, send_with_id)
        except Exception:
            status = status or 500
            raise
        finally:
            logger.info(
                "http request",
                extra={"method": client_text(scope.get("method"), 16), **_fields(scope, started), "status": status},
            )

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.monotonic()
        role = _ROLES.get(scope.get("path", ""), "unknown")
        answered = False
        accepted = False

        async def send_observed(message: Message) -> None:
            # After the handshake's answer this is one test per frame the socket writes.
            nonlocal answered, accepted
            if not answered:
                kind = message["type"]
                if kind == "websocket.accept":
                    answered = accepted = True
                    logger.info("websocket accepted", extra={**_fields(scope, started), "status": 101, "role": role})
                elif kind in ("websocket.close", "websocket.http.response.start"):
                    answered = True  # a close before accept: the server refuses the handshake with 403
                    logger.info(
                        "websocket refused",
                        extra={**_fields(scope, started), "status": message.get("status", 403), "role": role},
                    )
            await send(message)

        try:
            await self.inner(scope, receive, send_observed)
        except Exception:
            if not answered:
                answered = True
                logger.info("websocket refused", extra={**_fields(scope, started), "status": 500, "role": role})
            raise
        finally:
            if accepted:
                logger.info("websocket closed", extra={**_fields(scope, started), "role": role})
            elif not answered:
                logger.info("websocket abandoned", extra={**_fields(scope, started), "status": None, "role": role})
