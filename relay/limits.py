"""What one socket may cost the relay: frame rates, refusals before a close, unauthenticated sockets.

docs/protocol.md §15.1. Pure bookkeeping, no I/O: a consumer holds one `FrameLimiter` and asks it per
frame (a few float operations, no database, no channel-layer operation); the consumer answers
`RATE_LIMITED` and closes 4008 when told to.

Rates are token buckets, in the spirit of the per-connection limits of AWS Kinesis Video Streams
signaling (SDP offer/answer 5/s, ICE candidates 20/s): a bucket holds up to `burst` tokens, refills at
`rate` tokens a second, and each frame takes one. The buckets are written here rather than taken from
a library because they sit on the per-frame path: a dozen lines of arithmetic on the consumer's own
object, where the rate-limit libraries for Python are built around shared stores (Redis, a cache)
and would add an operation per frame.
"""

import time
from dataclasses import dataclass

from django.conf import settings

clock = time.monotonic  # seconds; tests replace it to count tokens without timing anything


class TokenBucket:
    """`burst` tokens, refilled at `rate` a second; `take()` spends one when there is one.

    A `rate` of 0 (or less) never refuses. Times are `clock()` seconds.
    """

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float):
        self.rate = rate
        self.burst = max(1.0, burst)
        self.tokens = self.burst
        self.stamp = now

    def take(self, now: float) -> bool:
        """Spend one token; False (nothing spent) when the bucket is empty."""
        if self.rate <= 0:
            return True
        tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if tokens < 1.0:
            self.tokens = tokens
            return False
        self.tokens = tokens - 1.0
        return True


@dataclass(frozen=True)
class Limits:
    """Per-socket limits, read from settings once per socket (`from_settings`).

    `frame_rate`/`frame_burst`: every text frame. `types`: frame type → `(rate, burst)` for the types
    that cost more (SDP, ICE, session requests). `close_after` refusals within `window` seconds close
    the socket 4008 (0: never).
    """

    frame_rate: float
    frame_burst: float
    types: dict[str, tuple[float, float]]
    close_after: int
    window: float

    @classmethod
    def from_settings(cls) -> "Limits":
        """The limits of docs/protocol.md §15.1 from `WIMZ_FRAME_*`, `WIMZ_SDP_*`, `WIMZ_ICE_*`,
        `WIMZ_RATE_LIMIT_*` (a rate of 0 switches that limit off)."""
        sdp = (settings.WIMZ_SDP_RATE, settings.WIMZ_SDP_BURST)
        return cls(
            frame_rate=settings.WIMZ_FRAME_RATE,
            frame_burst=settings.WIMZ_FRAME_BURST,
            types={
                "webrtc_request": sdp,
                "webrtc_offer": sdp,
                "webrtc_answer": sdp,
                "webrtc_ice": (settings.WIMZ_ICE_RATE, settings.WIMZ_ICE_BURST),
            },
            close_after=settings.WIMZ_RATE_LIMIT_CLOSE_AFTER,
            window=settings.WIMZ_RATE_LIMIT_WINDOW,
        )


class FrameLimiter:
    """One socket's buckets and its recent refusals. Not shared: each consumer owns one."""

    __slots__ = ("frames", "limits", "refusals", "types", "window_start")

    def __init__(self, limits: Limits, now: float | None = None):
        now = clock() if now is None else now
        self.limits = limits
        self.frames = TokenBucket(limits.frame_rate, limits.frame_burst, now)
        self.types = {kind: TokenBucket(rate, burst, now) for kind, (rate, burst) in limits.types.items()}
        self.refusals = 0
        self.window_start = now

    def allow_frame(self) -> bool:
        """Any text frame: one token of the socket's frame bucket."""
        return self.frames.take(clock())

    def allow_type(self, kind: str) -> bool:
        """A frame of `kind`: one token of that type's bucket (types without one always pass)."""
        bucket = self.types.get(kind)
        return bucket is None or bucket.take(clock())

    def refused(self) -> bool:
        """Count one refused frame; True when that makes `close_after` refusals within `window`
        seconds (sustained abuse: the consumer closes the socket 4008)."""
        now = clock()
        if now - self.window_start > self.limits.window:
            self.window_start, self.refusals = now, 0
        self.refusals += 1
        return 0 < self.limits.close_after <= self.refusals


class AddressSlots:
    """Unauthenticated sockets open per client address on this instance (compat `/ws` before its
    `auth` frame), at most `WIMZ_MAX_UNAUTHENTICATED_PER_ADDRESS` (0: no cap).

    Per instance on purpose: such a socket exists for at most the in-band auth deadline and has no
    presence row, and a cap per instance bounds what each instance holds. Only the count lives here,
    and no routing reads it.
    """

    def __init__(self) -> None:
        self._open: dict[str, int] = {}

    def acquire(self, address: str) -> bool:
        """Take a slot for `address`; False when it already holds the cap."""
        cap = settings.WIMZ_MAX_UNAUTHENTICATED_PER_ADDRESS
        count = self._open.get(address, 0)
        if 0 < cap <= count:
            return False
        self._open[address] = count + 1
        return True

    def release(self, address: str) -> None:
        """Give back a slot taken by `acquire`."""
        count = self._open.get(address, 0) - 1
        if count > 0:
            self._open[address] = count
        else:
            self._open.pop(address, None)

    def count(self, address: str) -> int:
        """Slots `address` holds now."""
        return self._open.get(address, 0)


unauthenticated = AddressSlots()
