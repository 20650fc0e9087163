"""ICE servers for signaling sessions and `POST /api/turn/credentials` (docs/protocol.md §14).

`get_ice_servers()` is the one entry point. It asks the provider named by `settings.WIMZ_ICE_PROVIDER`
for a list of RTCIceServer dicts (W3C WebRTC `RTCIceServer`: `urls`, and `username`/`credential`
for TURN) and never raises: when the provider fails it answers STUN-only servers with
`fallback=True` and logs one WARNING naming the provider and the kind of failure — never the API
token, the shared secret or a credential (field reports F8, F11). docs/protocol.md §14: "The provider failing
never crashes a session."

Providers:

* `stun` (default): `[{"urls": settings.WIMZ_STUN_URLS}]`; no secret needed.
* `cloudflare`: Cloudflare Realtime TURN, `POST .../v1/turn/keys/{KEY_ID}/credentials/
  generate-ice-servers` with `Authorization: Bearer <API token>` and body `{"ttl": seconds}`; the
  answer `{"iceServers": [...]}` is validated and normalised (Cloudflare Realtime docs, "Generate
  Credentials"; older docs show `iceServers` as one object, newer ones as a list — both accepted).
* `coturn`: TURN REST ephemeral credentials, checked by coturn with `use-auth-secret` /
  `static-auth-secret` (draft-uberti-behave-turn-rest-00 §2.2): username `"<unix expiry>:<user id>"`,
  credential `base64(HMAC-SHA1(secret, username))`.

Settings are read on every call, never at import time.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, NotRequired, TypedDict, Unpack
from urllib.parse import quote

import httpx
from django.conf import settings

from . import metrics

logger = logging.getLogger(__name__)

PROVIDER_STUN = "stun"
PROVIDER_CLOUDFLARE = "cloudflare"
PROVIDER_COTURN = "coturn"

# Credential lifetime bounds, seconds. Below a minute a credential can expire during ICE gathering;
# above a day a leaked credential stays useful too long (draft-uberti-behave-turn-rest-00 §2.1
# recommends a day at most; Cloudflare refuses more than 48 h).
TTL_MIN = 60
TTL_MAX = 86400
DEFAULT_CLOUDFLARE_TIMEOUT = 3.0

CLOUDFLARE_URL = "https://rtc.live.cloudflare.com/v1/turn/keys/{key_id}/credentials/generate-ice-servers"

# URI schemes of RFC 7064 (stun, stuns) and RFC 7065 (turn, turns).
_STUN_SCHEMES = ("stun:", "stuns:")
_TURN_SCHEMES = ("turn:", "turns:")
_ICE_SCHEMES = _STUN_SCHEMES + _TURN_SCHEMES


class IceServer(TypedDict):
    """One W3C WebRTC `RTCIceServer` as the relay hands it out: `urls`, plus `username`/`credential`
    (both present) on TURN entries."""

    urls: list[str]
    username: NotRequired[str]
    credential: NotRequired[str]


class IceOptions(TypedDict, total=False):
    """The optional keyword arguments of `get_ice_servers` that `issue_ice_servers` passes through."""

    provider: str | None
    clock: Callable[[], float] | None
    client: httpx.AsyncClient | None


# The optional string fields of an RTCIceServer a provider's answer may carry.
_CREDENTIAL_KEYS: tuple[Literal["username"], Literal["credential"]] = ("username", "credential")


class IceProviderError(Exception):
    """A provider could not produce ICE servers.

    `kind` is one of `config` (missing/invalid setting), `timeout`, `network`, `http_status`,
    `malformed` (answer is not the documented JSON), `unknown_provider`, `internal`. The message is
    safe to log: it never holds a token, secret or credential.
    """

    def __init__(self, kind: str, message: str = ""):
        super().__init__(message or kind)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class IceServers:
    """ICE servers handed to both parties of a session, or to `POST /api/turn/credentials`.

    Attributes:
        ice_servers: list of RTCIceServer dicts, each `{"urls": [str, ...]}` plus `"username"` and
            `"credential"` (both `str`) on TURN entries. Possibly empty when no STUN URL is configured.
        ttl: lifetime of the credentials in seconds (already clamped to `[TTL_MIN, TTL_MAX]`).
        expires_at: aware UTC datetime, issue time + `ttl`; when to fetch fresh servers.
        provider: the provider that produced `ice_servers` (`"stun"` after a fallback).
        fallback: True when the configured provider failed and STUN-only servers were served.
        failure: the failure kind (see `IceProviderError`) when `fallback` is True, else None.
    """

    ice_servers: list[IceServer]
    ttl: int
    expires_at: datetime
    provider: str
    fallback: bool = False
    failure: str | None = None


DEFAULT_TTL = 600


def clamp_ttl(ttl: int | None) -> int:
    """Return `ttl` seconds clamped to `[TTL_MIN, TTL_MAX]`; None or a non-integer → `WIMZ_ICE_TTL`."""
    if ttl is None or isinstance(ttl, bool) or not isinstance(ttl, int):
        ttl = getattr(settings, "WIMZ_ICE_TTL", DEFAULT_TTL)
        if isinstance(ttl, bool) or not isinstance(ttl, int):
            ttl = DEFAULT_TTL
    return max(TTL_MIN, min(TTL_MAX, ttl))


def stun_servers() -> list[IceServer]:
    """STUN-only ICE servers from `settings.WIMZ_STUN_URLS`: `[{"urls": [...]}]`, or `[]` when unset."""
    urls = [str(url) for url in getattr(settings, "WIMZ_STUN_URLS", []) if url]
    return [{"urls": urls}] if urls else []


def normalize_ice_servers(raw: object) -> list[IceServer]:
    """Validate a provider's `iceServers` value and return a list of RTCIceServer dicts.

    `raw` may be one object or a list of objects (Cloudflare docs show both). Each object needs
    `urls` — a string or a non-empty list of strings with a stun:/stuns:/turn:/turns: scheme
    (RFC 7064, RFC 7065) — and may carry string `username`/`credential`. The output keeps only
    `urls` (always a list), `username` and `credential`.

    Raises:
        IceProviderError("malformed"): on any other shape, or when no entry is left.
    """
    entries = [raw] if isinstance(raw, dict) else raw
    if not isinstance(entries, list) or not entries:
        raise IceProviderError("malformed", "iceServers is not a non-empty list or object")
    servers: list[IceServer] = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise IceProviderError("malformed", "an iceServers entry is not an object")
        urls = entry.get("urls")
        if isinstance(urls, str):
            urls = [urls]
        if (
            not isinstance(urls, list)
            or not urls
            or not all(isinstance(url, str) and url.lower().startswith(_ICE_SCHEMES) for url in urls)
        ):
            raise IceProviderError("malformed", "an iceServers entry has no valid urls")
        server: IceServer = {"urls": list(urls)}
        for key in _CREDENTIAL_KEYS:
            if key in entry:
                if not isinstance(entry[key], str):
                    raise IceProviderError("malformed", f"an iceServers entry has a non-string {key}")
                server[key] = entry[key]
        servers.append(server)
    return servers


async def cloudflare_ice_servers(
    *,
    key_id: str,
    api_token: str,
    ttl: int,
    deadline: float = DEFAULT_CLOUDFLARE_TIMEOUT,
    client: httpx.AsyncClient | None = None,
) -> list[IceServer]:
    """Ask Cloudflare Realtime TURN for ICE servers valid `ttl` seconds.

    `POST https://rtc.live.cloudflare.com/v1/turn/keys/{key_id}/credentials/generate-ice-servers`,
    `Authorization: Bearer <api_token>`, JSON body `{"ttl": ttl}`; a 2xx answer (the docs show 201)
    `{"iceServers": [...]}` is returned through `normalize_ice_servers`. The whole exchange is capped
    at `deadline` seconds (httpx's own timeouts apply per phase, so a total deadline wraps them).
    Redirects are not followed. `client` lets a caller share a connection pool (or a test inject one).

    Raises:
        IceProviderError: kind `config`, `timeout`, `network`, `http_status` or `malformed`.
    """
    if not key_id or not api_token:
        raise IceProviderError("config", "WIMZ_CLOUDFLARE_TURN_KEY_ID / WIMZ_CLOUDFLARE_TURN_API_TOKEN not set")
    url = CLOUDFLARE_URL.format(key_id=quote(key_id, safe=""))
    headers = {"Authorization": f"Bearer {api_token}", "Accept": "application/json"}
    try:
        async with asyncio.timeout(deadline):
            if client is None:
                async with httpx.AsyncClient(timeout=deadline) as own_client:
                    response = await own_client.post(url, headers=headers, json={"ttl": ttl})
            else:
                response = await client.post(url, headers=headers, json={"ttl": ttl}, timeout=deadline)
    except (TimeoutError, httpx.TimeoutException):
        raise IceProviderError("timeout", f"no answer within {deadline:g} s") from None
    except httpx.HTTPError as exc:
        # The exception text may quote the URL; only its class is reported.
        raise IceProviderError("network", type(exc).__name__) from None
    if not response.is_success:
        raise IceProviderError("http_status", f"HTTP {response.status_code}")
    try:
        data = response.json()
    except ValueError:
        raise IceProviderError("malformed", "answer is not JSON") from None
    if not isinstance(data, dict) or "iceServers" not in data:
        raise IceProviderError("malformed", "answer has no iceServers")
    return normalize_ice_servers(data["iceServers"])


def turn_rest_credentials(*, secret: str, user_id: int | str, expiry: int) -> tuple[str, str]:
    """TURN REST API credentials for coturn's `use-auth-secret` mode.

    draft-uberti-behave-turn-rest-00 §2.2: username is `"<expiry>:<user id>"` with `expiry` a unix
    timestamp in seconds; the password (RTCIceServer `credential`) is
    `base64(HMAC-SHA1(key=secret, msg=username))`, both UTF-8 encoded.

    Returns:
        `(username, credential)`.
    """
    username = f"{int(expiry)}:{user_id}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


def coturn_ice_servers(
    *, secret: str, urls: list[str], stun_urls: list[str], user_id: int | str, expiry: int
) -> list[IceServer]:
    """ICE servers for a coturn deployment: one STUN entry, then one TURN entry with credentials.

    `urls` are the operator's `WIMZ_COTURN_URLS`: `turn:`/`turns:` URLs go into the TURN entry,
    `stun:`/`stuns:` URLs join `stun_urls` in the STUN entry (duplicates removed, order kept).

    Raises:
        IceProviderError("config"): no secret, no TURN URL, or a URL with another scheme.
    """
    if not secret:
        raise IceProviderError("config", "WIMZ_COTURN_SECRET not set")
    turn, stun = [], [str(url) for url in stun_urls if url]
    for url in urls:
        lowered = str(url).lower()
        if lowered.startswith(_TURN_SCHEMES):
            turn.append(str(url))
        elif lowered.startswith(_STUN_SCHEMES):
            stun.append(str(url))
        else:
            raise IceProviderError("config", "WIMZ_COTURN_URLS holds a URL that is not stun:/turn:/turns:")
    if not turn:
        raise IceProviderError("config", "WIMZ_COTURN_URLS holds no turn:/turns: URL")
    username, credential = turn_rest_credentials(secret=secret, user_id=user_id, expiry=expiry)
    servers: list[IceServer] = [{"urls": list(dict.fromkeys(stun))}] if stun else []
    servers.append({"urls": turn, "username": username, "credential": credential})
    return servers


async def get_ice_servers(
    *,
    user_id: int | str,
    ttl: int | None = None,
    provider: str | None = None,
    clock: Callable[[], float] | None = None,
    client: httpx.AsyncClient | None = None,
) -> IceServers:
    """ICE servers for `user_id` from the configured provider, falling back to STUN-only.

    Args:
        user_id: the app user the session belongs to; part of the coturn username (the robot of a
            session gets the same servers, docs/protocol.md §14).
        ttl: credential lifetime in seconds; None → `settings.WIMZ_ICE_TTL`; clamped to
            `[TTL_MIN, TTL_MAX]`.
        provider: overrides `settings.WIMZ_ICE_PROVIDER` (`stun` | `cloudflare` | `coturn`).
        clock: returns unix seconds (default `time.time`); injectable for tests.
        client: httpx client for the Cloudflare call (default: a fresh one).

    Returns:
        `IceServers`. Never raises: a failing provider (missing config, HTTP error status, timeout,
        network error, malformed answer) yields STUN-only servers with `fallback=True`, after at
        most `settings.WIMZ_CLOUDFLARE_TIMEOUT` seconds, and one WARNING log line.
    """
    now = (clock or time.time)()
    ttl = clamp_ttl(ttl)
    expiry = int(now) + ttl
    expires_at = datetime.fromtimestamp(expiry, tz=UTC)
    name = (provider if provider is not None else getattr(settings, "WIMZ_ICE_PROVIDER", PROVIDER_STUN)) or ""
    name = name.strip().lower() or PROVIDER_STUN
    started = time.monotonic()
    try:
        if name == PROVIDER_STUN:
            servers = stun_servers()
        elif name == PROVIDER_CLOUDFLARE:
            timeout = getattr(settings, "WIMZ_CLOUDFLARE_TIMEOUT", DEFAULT_CLOUDFLARE_TIMEOUT)
            if not isinstance(timeout, int | float) or timeout <= 0:
                timeout = DEFAULT_CLOUDFLARE_TIMEOUT
            servers = await cloudflare_ice_servers(
                key_id=getattr(settings, "WIMZ_CLOUDFLARE_TURN_KEY_ID", ""),
                api_token=getattr(settings, "WIMZ_CLOUDFLARE_TURN_API_TOKEN", ""),
                ttl=ttl,
                deadline=float(timeout),
                client=client,
            )
        elif name == PROVIDER_COTURN:
            servers = coturn_ice_servers(
                secret=getattr(settings, "WIMZ_COTURN_SECRET", ""),
                urls=list(getattr(settings, "WIMZ_COTURN_URLS", [])),
                stun_urls=list(getattr(settings, "WIMZ_STUN_URLS", [])),
                user_id=user_id,
                expiry=expiry,
            )
        else:
            raise IceProviderError("unknown_provider", "WIMZ_ICE_PROVIDER is not stun, cloudflare or coturn")
    except IceProviderError as exc:
        metrics.ice_provider_call(name, exc.kind, time.monotonic() - started)
        return _fallback(name, exc.kind, str(exc), ttl, expires_at)
    except Exception as exc:  # the provider failing never crashes a session (docs/protocol.md §14)
        metrics.ice_provider_call(name, "internal", time.monotonic() - started)
        return _fallback(name, "internal", type(exc).__name__, ttl, expires_at)
    metrics.ice_provider_call(name, "ok", time.monotonic() - started)
    logger.debug("ICE servers from provider %s: %d entries, ttl %d s", name, len(servers), ttl)
    return IceServers(ice_servers=servers, ttl=ttl, expires_at=expires_at, provider=name)


async def issue_ice_servers(
    *, user_id: int, ttl: int | None = None, owns_device: bool | None = None, **kwargs: Unpack[IceOptions]
) -> IceServers:
    """ICE servers for `user_id` under the relay's TURN policy (docs/protocol.md §14, "Who gets TURN").

    TURN credentials go only to a user who owns at least one active device (`owns_device`; None: looked
    up), at most `WIMZ_TURN_ISSUE_LIMIT` times per `WIMZ_TURN_ISSUE_WINDOW` seconds per user; anyone
    else gets STUN-only servers, as after a provider failure (so deployed apps, which expect 200 and
    `iceServers`, keep working). A robot never asks: it receives the servers of the session its owner's
    app opened. With the `stun` provider there is nothing to guard, and nothing is looked up. Other
    keyword arguments go to `get_ice_servers`. Never raises.
    """
    name = (kwargs.get("provider") or getattr(settings, "WIMZ_ICE_PROVIDER", PROVIDER_STUN) or "").strip().lower()
    if name in ("", PROVIDER_STUN):
        return await get_ice_servers(user_id=user_id, ttl=ttl, **kwargs)
    if owns_device is None:
        from devices.models import Device

        owns_device = await Device.objects.filter(owner_id=user_id, is_active=True).aexists()
    if not owns_device:
        logger.debug("ICE servers for user %s: STUN only (no device)", user_id)
        return _stun_only(clamp_ttl(ttl), kwargs.get("clock"), failure="no_device")
    if not await _take_issuance(user_id):
        logger.warning(
            "TURN credentials for user %s over WIMZ_TURN_ISSUE_LIMIT; serving STUN-only ice_servers", user_id
        )
        return _stun_only(clamp_ttl(ttl), kwargs.get("clock"), failure="rate_limited")
    return await get_ice_servers(user_id=user_id, ttl=ttl, **kwargs)


async def _take_issuance(user_id: int) -> bool:
    """Count one TURN issuance for `user_id` in the current window; False over the limit.

    Counted in Django's cache (fixed windows): shared by every instance when the cache is (Redis), per
    process with the default local-memory cache. A failing cache never refuses.
    """
    from django.core.cache import cache

    limit = getattr(settings, "WIMZ_TURN_ISSUE_LIMIT", 0)
    window = max(1, int(getattr(settings, "WIMZ_TURN_ISSUE_WINDOW", 600)))
    if limit <= 0:
        return True
    key = f"wimz:turn-issued:{int(user_id)}:{int(time.time()) // window}"
    try:
        if await cache.aadd(key, 1, timeout=window):
            return True
        return await cache.aincr(key) <= limit
    except Exception as exc:  # the cap is a guard, not a dependency
        logger.warning("TURN issuance cap not checked: %s", type(exc).__name__)
        return True


def _stun_only(ttl: int, clock: Callable[[], float] | None, *, failure: str) -> IceServers:
    expiry = int((clock or time.time)()) + ttl
    return IceServers(
        ice_servers=stun_servers(),
        ttl=ttl,
        expires_at=datetime.fromtimestamp(expiry, tz=UTC),
        provider=PROVIDER_STUN,
        fallback=True,
        failure=failure,
    )


def _fallback(provider: str, kind: str, reason: str, ttl: int, expires_at: datetime) -> IceServers:
    # `reason` comes from IceProviderError messages written above (or an exception class name):
    # none of them carries the token, the secret or a credential.
    logger.warning("ICE provider %r failed (%s: %s); serving STUN-only ice_servers", provider, kind, reason)
    return IceServers(
        ice_servers=stun_servers(),
        ttl=ttl,
        expires_at=expires_at,
        provider=PROVIDER_STUN,
        fallback=True,
        failure=kind,
    )
