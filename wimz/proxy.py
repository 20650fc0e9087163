"""The client's address behind trusted proxies, written into the ASGI scope (HTTP and WebSocket).

`X-Forwarded-For` and `X-Forwarded-Proto` are written by whoever sends the request, so they are
honoured only when the TCP peer is one of `WIMZ_TRUSTED_PROXIES` (IP addresses or CIDR networks;
none by default). Each proxy appends the address it saw to `X-Forwarded-For`, so the list is read
from the right: trusted proxies are skipped and the first address that is not a trusted proxy is
the client. Entries to its left were written by the client itself and are ignored, whatever they
say. From any other peer the headers are ignored and the peer is the client.

Both headers are then removed from the scope, so nothing downstream (Django's `request.META`, DRF's
throttles, the WebSocket consumers, logs) can read a forged value: `scope["client"]` and
`scope["scheme"]` are the one source of truth. docs/operations.md "Trusted proxies".

Why our own middleware: daphne's `--proxy-headers` takes the leftmost `X-Forwarded-For` entry from
any peer (a client-chosen value), and uvicorn's equivalent is tied to that server; the relay needs the
rule in the ASGI scope whatever server runs it.
"""

import ipaddress
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeAlias

from asgiref.typing import ASGIReceiveCallable, ASGISendCallable
from django.conf import settings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
# Any ASGI scope (HTTP, WebSocket, lifespan) as this module copies and rewrites it: a plain dict, since
# it sets keys of its own that asgiref's scope TypedDicts do not name.
RawScope: TypeAlias = dict[str, Any]

_FORWARDED_FOR = b"x-forwarded-for"
_FORWARDED_PROTO = b"x-forwarded-proto"
_RESOLVED_KEY = "wimz_client_resolved"  # scope marker: the rule ran once (daphne hook and middleware)
# Scope key: whether the TCP peer itself is a trusted proxy (read by wimz.access for `X-Request-ID`).
PEER_TRUSTED_KEY = "wimz_peer_trusted"
_SECURE_SCHEME = {"http": "https", "ws": "wss"}
_PLAIN_SCHEME = {"https": "http", "wss": "ws"}


def parse_networks(values: Iterable[str], setting: str = "WIMZ_TRUSTED_PROXIES") -> tuple[Network, ...]:
    """`["10.0.0.0/8", "127.0.0.1", "::1"]` → networks (a bare address is a /32 or /128).

    Raises `ValueError` naming `setting` and the bad entry, so a typo in the setting stops start-up.
    """
    networks = []
    for value in values:
        value = value.strip()
        if not value:
            continue
        try:
            networks.append(ipaddress.ip_network(value, strict=False))
        except ValueError as exc:
            raise ValueError(f"{setting}: {value!r} is not an IP address or network") from exc
    return tuple(networks)


def parse_address(value: str) -> Address | None:
    """An IP address from one forwarded entry (`1.2.3.4`, `1.2.3.4:5678`, `[2001:db8::1]:443`, `2001:db8::1`),
    or None when it is not one."""
    value = value.strip().strip('"')
    if value.startswith("["):
        value = value[1:].partition("]")[0]
    elif value.count(":") == 1:  # IPv4 with a port; a bare IPv6 address has several colons
        value = value.partition(":")[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped or address


def _trusted(address: Address | None, networks: tuple[Network, ...]) -> bool:
    return address is not None and any(address in network for network in networks)


def client_address(peer: str | None, forwarded_for: list[str], networks: tuple[Network, ...]) -> str | None:
    """The client's address for a request whose TCP peer is `peer` and whose `X-Forwarded-For` entries
    (all header lines, in order, split at commas) are `forwarded_for`.

    `peer` itself unless it is in `networks`; otherwise the rightmost entry that is not a trusted
    proxy. An entry that is no IP address stops the walk: the nearest trusted hop is then the client
    (what it wrote cannot be trusted, and an unparseable value must not become a throttle key).
    When every entry is a trusted proxy, the leftmost one is the client.
    """
    hop = peer
    if not _trusted(parse_address(peer or ""), networks):
        return peer
    for entry in reversed(forwarded_for):
        address = parse_address(entry)
        if address is None:
            return hop
        hop = str(address)
        if not _trusted(address, networks):
            return hop
    return hop


def _header_values(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> list[str]:
    values: list[str] = []
    for key, value in headers:
        if key.lower() == name:
            values.extend(part.strip() for part in value.decode("latin-1").split(","))
    return [v for v in values if v]


def resolve_scope(scope: RawScope, networks: tuple[Network, ...] | None = None) -> RawScope:
    """A copy of an HTTP/WebSocket ASGI `scope` whose `client` (and `scheme`) follow the trusted-proxy
    rule, without `X-Forwarded-For`/`X-Forwarded-Proto` headers. Other scope types come back unchanged.

    `client` becomes `[address, 0]` when the address came from `X-Forwarded-For` (the client's port is
    not known); `scope[PEER_TRUSTED_KEY]` says whether the TCP peer was a trusted proxy (so other headers
    it sets, such as `X-Request-ID`, may be believed). `networks` defaults to
    `settings.WIMZ_TRUSTED_PROXIES`. Idempotent.
    """
    if scope.get("type") not in ("http", "websocket") or scope.get(_RESOLVED_KEY):
        return scope
    networks = settings.WIMZ_TRUSTED_PROXIES if networks is None else networks
    headers = scope.get("headers") or []
    scope = dict(scope)
    scope[_RESOLVED_KEY] = True
    scope["headers"] = [(k, v) for k, v in headers if k.lower() not in (_FORWARDED_FOR, _FORWARDED_PROTO)]
    client = scope.get("client")
    peer = client[0] if client else None
    scope[PEER_TRUSTED_KEY] = _trusted(parse_address(peer or ""), networks)
    if not scope[PEER_TRUSTED_KEY]:
        return scope
    address = client_address(peer, _header_values(headers, _FORWARDED_FOR), networks)
    if address != peer:
        scope["client"] = [address, 0]
    protos = _header_values(headers, _FORWARDED_PROTO)
    if protos:  # the nearest proxy's word (the last value) decides
        proto = protos[-1].lower()
        scheme = scope.get("scheme") or ("ws" if scope["type"] == "websocket" else "http")
        if proto == "https":
            scope["scheme"] = _SECURE_SCHEME.get(scheme, scheme)
        elif proto == "http":
            scope["scheme"] = _PLAIN_SCHEME.get(scheme, scheme)
    return scope


class TrustedProxyMiddleware:
    """ASGI middleware applying `resolve_scope` to every HTTP and WebSocket connection."""

    def __init__(self, inner: Callable[[RawScope, ASGIReceiveCallable, ASGISendCallable], Awaitable[None]]) -> None:
        self.inner = inner

    async def __call__(self, scope: RawScope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        return await self.inner(resolve_scope(scope), receive, send)
