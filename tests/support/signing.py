"""The one robot-signature helper of the test suites: a signed handshake in every shape a test needs.

A robot proves itself with `X-Device-ID`, `X-Timestamp` and `X-Signature` headers (or `device_id`, `ts`,
`sig` query parameters), the signature being the hex HMAC-SHA256 of `"<device_id>:<timestamp>"`
(docs/protocol.md §4.1, §4.2). `signed(...)` builds one; its methods give the headers for channels'
WebsocketCommunicator, for the `websockets` client, for Django's test client, or a query string.

The signature comes from the client library `sim.client.sign`, never from the relay's own
`devices.signing.sign`: the tests sign as a deployed robot does, so a fault in the server's signing
code cannot be mirrored by the tests that check it.
"""

import time
from dataclasses import dataclass
from urllib.parse import urlencode

from sim.client import sign


@dataclass(frozen=True)
class Signed:
    """One signed handshake: `device_id`, `ts` (unix seconds) and `sig` (hex HMAC-SHA256)."""

    device_id: str
    ts: int
    sig: str

    def asgi_headers(self) -> list[tuple[bytes, bytes]]:
        """`[(name, value)]` bytes pairs, as an ASGI scope (and WebsocketCommunicator) carries them."""
        return [
            (b"x-device-id", self.device_id.encode()),
            (b"x-timestamp", str(self.ts).encode()),
            (b"x-signature", self.sig.encode()),
        ]

    def headers(self) -> dict[str, str]:
        """`{"X-Device-ID": …, "X-Timestamp": …, "X-Signature": …}` for an HTTP or `websockets` client."""
        return {"X-Device-ID": self.device_id, "X-Timestamp": str(self.ts), "X-Signature": self.sig}

    def meta(self) -> dict[str, str]:
        """The same headers as Django's test client takes them (`HTTP_X_…` keyword arguments)."""
        return {"HTTP_X_DEVICE_ID": self.device_id, "HTTP_X_TIMESTAMP": str(self.ts), "HTTP_X_SIGNATURE": self.sig}

    def query(self) -> str:
        """`device_id=…&ts=…&sig=…`, the query-parameter form of docs/protocol.md §4.2."""
        return urlencode({"device_id": self.device_id, "ts": self.ts, "sig": self.sig})


def signed(device_id: str, secret: str, ts: int | None = None, *, sig: str | None = None) -> Signed:
    """A handshake for `device_id` signed with `secret` at `ts` (default: now); `sig` overrides the
    signature (to send a wrong one)."""
    ts = int(time.time()) if ts is None else ts
    return Signed(device_id, ts, sig if sig is not None else sign(secret, device_id, ts))


_used_ts: dict[str, set[int]] = {}


def fresh_ts(device_id: str) -> int:
    """A handshake timestamp (unix seconds) not used yet for `device_id` in this test, as close to now as can be.

    A (device_id, timestamp, signature) triple is accepted once (docs/protocol.md §4.3, the replay rule), so two
    handshakes of one robot within the same second need different timestamps, as a robot's reconnect a second
    later has. Each test starts afresh (`forget_used_timestamps`, called before every test by
    tests/conftest.py): its database holds no spent signature of another test, and a memory kept for the whole
    run would push the timestamps of a busy device ever further into the past, out of the skew window.
    """
    used = _used_ts.setdefault(device_id, set())
    ts = int(time.time())
    while ts in used:
        ts -= 1
    used.add(ts)
    return ts


def forget_used_timestamps() -> None:
    """Forget the timestamps `fresh_ts` handed out (a new test: its database has no spent signatures)."""
    _used_ts.clear()
