"""Instance liveness: notice a relay process that died without cleaning up, within seconds.

docs/architecture.md "Instance liveness and reaping". Each relay process keeps one Redis key of its own alive,
`<prefix>:live:<instance>`, refreshed every `WIMZ_INSTANCE_BEAT` seconds (3) with a TTL of
`WIMZ_INSTANCE_TTL` seconds (8): one write per instance per beat, whatever its number of sockets.
An instance whose key is missing in two looks at least one beat apart while it still has open
presence rows is dead (two looks, so that a Redis restart, which drops every key at once, does not
make live instances look dead before they refresh); exactly one survivor claims it
(`SET <prefix>:claim:<instance> NX`) and cleans up after it (`relay.connections.reap_instance`).
An instance that was only paused and finds its claim when it resumes has been cleaned up after: it
closes its sockets (1012) so that they reconnect, instead of keeping sockets the rest of the cluster
no longer routes to.

Without Redis there is one process and nothing to watch: every function here does nothing.
"""

import asyncio
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

from django.conf import settings

if TYPE_CHECKING:
    from redis.asyncio import Redis

# event loop -> Redis client (a connection pool, not routing state)
_clients: dict[asyncio.AbstractEventLoop, "Redis"] = {}
_missing_since: dict[str, float] = {}  # instance -> when this process first saw its key missing


def enabled() -> bool:
    """True when the relay runs with Redis (several instances possible)."""
    return bool(getattr(settings, "REDIS_URL", ""))


def _prefix() -> str:
    # `cast`: wimz/settings.py builds `CONFIG` as a dict, but without an annotation there mypy infers
    # the join of its two branches' value types (`Collection[str]`).
    config = cast(dict[str, Any], settings.CHANNEL_LAYERS["default"].get("CONFIG", {}))
    prefix: str = config.get("prefix", "wimz")
    return prefix


def _client() -> "Redis":
    import redis.asyncio as redis

    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=5)
        _clients[loop] = client
    return client


def live_key(instance: str) -> str:
    """The Redis key that says `instance` is alive."""
    return f"{_prefix()}:live:{instance}"


def claim_key(instance: str) -> str:
    """The Redis key a survivor sets to clean up after a dead `instance`."""
    return f"{_prefix()}:claim:{instance}"


async def refresh(instance: str) -> bool:
    """Keep `instance` alive for another `WIMZ_INSTANCE_TTL` seconds (one round trip).

    Returns False when a survivor has claimed it meanwhile (it was paused past the TTL and has been
    cleaned up after); the claim is then removed, so the instance counts as alive again from now on.
    """
    ttl_ms = int(settings.WIMZ_INSTANCE_TTL * 1000)
    pipe = _client().pipeline(transaction=False)
    pipe.exists(claim_key(instance))
    pipe.set(live_key(instance), b"1", px=ttl_ms)
    claimed, _ = await pipe.execute()
    if claimed:
        await _client().delete(claim_key(instance))
    return not claimed


async def dead(instances: Iterable[str], *, now: float | None = None) -> list[str]:
    """Those of `instances` (ids with open presence rows) whose liveness key this process has now seen
    missing twice, at least `WIMZ_INSTANCE_BEAT` seconds apart (`now`: `time.monotonic()`)."""
    now = time.monotonic() if now is None else now
    instances = [i for i in instances if i]
    if not instances:
        _missing_since.clear()
        return []
    alive = await _client().mget([live_key(i) for i in instances])
    missing = {i for i, value in zip(instances, alive, strict=True) if value is None}
    for instance in list(_missing_since):
        if instance not in missing:
            del _missing_since[instance]
    out = []
    for instance in sorted(missing):
        first = _missing_since.setdefault(instance, now)
        if now - first >= settings.WIMZ_INSTANCE_BEAT * 0.9:
            out.append(instance)
    return out


def forget(instance: str) -> None:
    """Stop tracking `instance` (it has been cleaned up after)."""
    _missing_since.pop(instance, None)


async def claim(instance: str) -> bool:
    """Claim the clean-up of dead `instance`; True for exactly one caller across the cluster."""
    return bool(await _client().set(claim_key(instance), b"1", nx=True, ex=300))
