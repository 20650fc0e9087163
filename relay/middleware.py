"""Handshake authentication for WebSockets: robot HMAC and app JWT, copied into the scope.

`RelayAuthMiddleware` runs before the URL router. It never rejects by itself: it puts the identity
(or None) in a copy of the scope, and the consumer refuses the handshake (HTTP 403) when there is
none — the same refusal for every failure (docs/protocol.md §4, field reports F6/F10).

Scope keys set:
- `relay_handshake_at` (float, `time.monotonic()`): when the handshake reached the relay.
- `relay_origin_ok` (bool): no `Origin` header (robots, native apps) or one in `WIMZ_ALLOWED_ORIGINS`.
- `relay_robot` (`RobotIdentity` | None) on `/ws/device`.
- `relay_app` (`AppIdentity` | None) on `/ws/app`.
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypedDict, cast
from urllib.parse import parse_qs

from asgiref.typing import ASGI3Application, ASGIReceiveCallable, ASGISendCallable, WebSocketScope
from channels.db import database_sync_to_async
from django.conf import settings
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.tokens import AccessToken

from devices.signing import check_device_signature

if TYPE_CHECKING:
    from channels.consumer import _ChannelScope  # types-channels only: the scope a consumer sees

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RobotIdentity:
    """A robot whose signature verified: its Device primary key and `device_id`, and the signed
    `(timestamp, signature)` it used, not spent yet: the connect transaction spends it
    (`relay.connections.robot_connected`) when the socket is accepted, so that a handshake refused for
    any other reason leaves the robot free to retry with the same signature (docs/protocol.md §4.3)."""

    device_pk: int
    device_id: str
    timestamp: object = None
    signature: str = ""


@dataclass(frozen=True)
class AppIdentity:
    """An authenticated app: the user's id, the access token's expiry (aware UTC datetime) and the login
    the token belongs to (its `login_id` claim; None for tokens issued before logins were named)."""

    user_id: int
    expires_at: datetime
    login_id: str | None = None


# `relay.transport.TRANSPORT_BUFFERED_KEY` is not an identifier: this part is in TypedDict's functional form.
_TransportScope = TypedDict("_TransportScope", {"wimz.transport_buffered": Callable[[], int]}, total=False)

if TYPE_CHECKING:

    class RelayScope(_ChannelScope, _TransportScope, total=False):
        """The scope a relay consumer sees: Channels' WebSocket scope plus the keys of this module's
        docstring, and `wimz.transport_buffered` when the server provides it (`relay.transport`)."""

        relay_handshake_at: float
        relay_origin_ok: bool
        relay_robot: "RobotIdentity | None"
        relay_robot_refusal: str
        relay_robot_claimed: object
        relay_app: "AppIdentity | None"


def _headers(scope: WebSocketScope) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in scope.get("headers", []):
        try:
            out[name.decode("latin-1").lower()] = value.decode("latin-1")
        except (AttributeError, UnicodeDecodeError):
            continue
    return out


def _query(scope: WebSocketScope) -> dict[str, str]:
    raw = scope.get("query_string", b"")
    try:
        parsed = parse_qs(raw.decode("latin-1"), keep_blank_values=True)
    except (AttributeError, UnicodeDecodeError, ValueError):
        return {}
    return {k: v[0] for k, v in parsed.items() if v}


def origin_allowed(headers: dict[str, str]) -> bool:
    """No Origin (robots, native apps) or an Origin in `WIMZ_ALLOWED_ORIGINS` (docs/protocol.md §3.5)."""
    origin = headers.get("origin")
    return origin is None or origin in settings.WIMZ_ALLOWED_ORIGINS


@database_sync_to_async
def authenticate_robot(
    device_id: str | None, timestamp: str | None, signature: str | None
) -> tuple[RobotIdentity | None, str]:
    """Verify a robot's signed credentials (see `devices.signing.check_device_signature`).

    Returns `(RobotIdentity, "")`, or `(None, reason)` with the failed check for the operator's log
    (the client only sees a bare refusal); never raises on malformed input. The signature is not spent
    here: `relay.connections.robot_connected` spends it when the socket is accepted, and refuses a
    replay then.
    """
    device, reason = check_device_signature(device_id, timestamp, signature, consume=False)
    if device is None:
        return None, reason
    # A signature that verified is a string.
    return RobotIdentity(device.pk, device.device_id, timestamp, cast(str, signature)), ""


@database_sync_to_async
def authenticate_app(raw_token: object) -> AppIdentity | None:
    """Validate an access JWT (simplejwt: signature, expiry, token type) and load its active user.

    Returns an `AppIdentity` or None for anything else: expired, garbage, empty, a refresh token, a
    token signed with another key, a deleted or deactivated user (field report F6), a login that was
    logged out (`accounts.services.login_is_revoked`). Never raises.
    """
    from accounts.models import User
    from accounts.services import LOGIN_CLAIM, login_is_revoked

    if not isinstance(raw_token, str) or not raw_token or len(raw_token) > 4096:
        return None
    try:
        token = AccessToken(raw_token)  # type: ignore[arg-type]  # simplejwt annotates the encoded JWT as Token
        user_id = token[jwt_settings.USER_ID_CLAIM]
        expires_at = datetime.fromtimestamp(int(token["exp"]), UTC)
        login_id = token.get(LOGIN_CLAIM)
    except (TokenError, KeyError, TypeError, ValueError):
        return None
    if not User.objects.filter(pk=user_id, is_active=True).exists() or login_is_revoked(login_id):
        return None
    return AppIdentity(int(user_id), expires_at, login_id if isinstance(login_id, str) else None)


def bearer_token(headers: dict[str, str]) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


class RelayAuthMiddleware:
    """ASGI middleware authenticating `/ws/device` (HMAC) and `/ws/app` (JWT) handshakes."""

    def __init__(self, inner: ASGI3Application) -> None:
        self.inner = inner

    async def __call__(self, scope: WebSocketScope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        scope = cast("RelayScope", dict(scope))
        scope["relay_handshake_at"] = time.monotonic()  # when the server handed the handshake over
        headers = _headers(scope)
        query = _query(scope)
        path = scope.get("path", "")
        scope["relay_origin_ok"] = origin_ok = origin_allowed(headers)
        # Only a handshake the router will take (exact path, docs/protocol.md §3.1) from an allowed
        # origin is authenticated: the others are refused anyway, and cost no database work.
        if origin_ok and path == "/ws/device":
            device_id = headers.get("x-device-id", query.get("device_id"))
            scope["relay_robot"], scope["relay_robot_refusal"] = await authenticate_robot(
                device_id,
                headers.get("x-timestamp", query.get("ts")),
                headers.get("x-signature", query.get("sig")),
            )
            scope["relay_robot_claimed"] = device_id
        elif origin_ok and path == "/ws/app":
            scope["relay_app"] = await authenticate_app(query.get("token") or bearer_token(headers))
        return await self.inner(scope, receive, send)
