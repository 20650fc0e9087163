"""`/health` (database and channel layer) and `/stats` (cluster-wide counts)."""

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, cast

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe

from . import connections

if TYPE_CHECKING:
    from .layer import RelayChannelLayer

logger = logging.getLogger(__name__)

CHECK_TIMEOUT = 2.0  # seconds per dependency check


def _database_ok() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


async def _channel_layer_ok() -> None:
    """A message round trip through the channel layer, and through Redis when it is configured."""
    layer = cast("RelayChannelLayer", get_channel_layer())  # the only layer wimz/settings.py configures
    channel = await layer.new_channel("health.")
    try:
        await layer.send(channel, {"type": "health.ping"})
        message = await layer.receive(channel)
        if message.get("type") != "health.ping":
            raise RuntimeError("channel layer returned another message")
        ping = getattr(layer, "ping", None)
        if ping is not None:
            await ping()
    finally:
        discard = getattr(layer, "discard_channel", None)
        if discard is not None:
            discard(channel)


async def _check(name: str, coro_factory: Callable[[], Awaitable[None]]) -> str | None:
    try:
        await asyncio.wait_for(coro_factory(), CHECK_TIMEOUT)
    except Exception as exc:  # any failure is reported by name, never raised
        logger.warning("health check %s failed: %s", name, type(exc).__name__)
        return name
    return None


@csrf_exempt  # so that other methods get 405 from require_safe, not the CSRF page
@require_safe
async def health(request: HttpRequest) -> JsonResponse:
    """`GET /health` → 200 `{"status":"ok","checks":{"database":"ok","channel_layer":"ok"}}`.

    Answers 503 `{"status":"unavailable","failed":[names],"checks":{...}}` naming what failed.
    """
    failed = [
        name
        for name in await asyncio.gather(
            _check("database", lambda: sync_to_async(_database_ok)()),
            _check("channel_layer", _channel_layer_ok),
        )
        if name
    ]
    checks = {name: ("failed" if name in failed else "ok") for name in ("database", "channel_layer")}
    if failed:
        return JsonResponse({"status": "unavailable", "failed": failed, "checks": checks}, status=503)
    return JsonResponse({"status": "ok", "checks": checks})


def _operator_token_ok(request: HttpRequest) -> bool:
    """`Authorization: Bearer <WIMZ_STATS_TOKEN>`, compared in constant time; never with no token set."""
    expected = settings.WIMZ_STATS_TOKEN
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return (
        bool(expected) and scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected.encode())
    )


@csrf_exempt
@require_safe
async def stats(request: HttpRequest) -> JsonResponse:
    """`GET /stats` → `{"robots_online","app_sockets","users_online","active_sessions"}` (ints).

    Counted from the shared presence and session rows, so the numbers are the whole cluster's, not
    one process's. Only for staff (a Django admin session) or the operator token
    (`Authorization: Bearer <WIMZ_STATS_TOKEN>`); anyone else gets 403
    `{"code":"permission_denied",...}` (docs/protocol.md §17.2).
    """
    if not _operator_token_ok(request):
        user = await request.auser()
        if not (user.is_active and user.is_staff):
            return JsonResponse(
                {"code": "permission_denied", "detail": "Staff or the operator token only."}, status=403
            )
    return JsonResponse(await connections.cluster_stats())
