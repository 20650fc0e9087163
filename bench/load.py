"""The load generator: WebSocket clients, the bench frames, and the delivery accounting.

Relay sockets are opened with `sim.client`, the client library the simulators and the live tests use.

One asyncio process (pinned to the client core) holds every client socket. The same frames go to the
floors and to the relay (about 1 KB of JSON text each):

- robot → app: `{"type":"telemetry","seq":N,"t":T,"k":K,"pad":"…"}` — a robot event for the relay
  (apps receive it with `device_id` and `timestamp` added), forwarded as is by the floors;
- app → robot: `{"type":"command","device_id":ID,"command":"bench","data":{"seq":N,"t":T,"k":K,"pad":"…"}}`
  — the relay adds `params` (= `data`), the floors forward it as is.

`t` is `time.perf_counter()` at send and the receiving socket's reader notes the arrival time, so a
latency is measured in this one process without clock sync (it includes this process' scheduling).
`k` tags the phase (e.g. a ramp step) a frame belongs to.

Accounting ("no silent loss"): for every phase and direction the bench counts frames sent, frames
delivered (distinct `seq` per receiving socket), `RATE_LIMITED` error frames received by the senders
(for an event the relay's message says how many app sockets missed it), and
`lost = expected − delivered − rate_limited − other_errors` (other error frames answering a bench
frame, e.g. `INTERNAL`, are counted apart: announced, but not the overload answer the protocol
promises). `lost > 0`, other errors, duplicates, misordering, a socket the server closed, or a negative
`lost` (the counts do not add up) are correctness failures.
"""

import asyncio
import contextlib
import itertools
import json
import re
import time
from collections import Counter, defaultdict

import websockets
from websockets.asyncio.client import connect

from sim import client

from .stack import Pair, Target
from .stats import summary

now = time.perf_counter
OPEN_TIMEOUT = 30.0
PAD = "x" * 940  # frames of about 1 KB
R2A, A2R = "r2a", "a2r"
_PHASES = itertools.count(1000)


def robot_frame(seq: int, k: int) -> str:
    """A robot event (~1 KB) carrying its sequence number, phase tag and send time."""
    return f'{{"type":"telemetry","seq":{seq},"t":{now():.7f},"k":{k},"pad":"{PAD}"}}'


def app_frame(device_id: str, seq: int, k: int) -> str:
    """An app command (~1 KB) to `device_id` carrying its sequence number, phase tag and send time."""
    return (
        f'{{"type":"command","device_id":"{device_id}","command":"bench",'
        f'"data":{{"seq":{seq},"t":{now():.7f},"k":{k},"pad":"{PAD}"}}}}'
    )


def shed_count(error: dict) -> int:
    """Sockets an event missed, from a RATE_LIMITED message ("… not delivered to N app socket(s)"); 1 otherwise."""
    match = re.search(r"to (\d+) app", error.get("message") or "")
    return int(match.group(1)) if match else 1


class Phase:
    """Counts and latencies of one phase (`k`): per direction sent, delivered, latency samples, RATE_LIMITED."""

    def __init__(self, k: int):
        self.k = k
        self.sent = Counter()
        self.expected = Counter()
        self.delivered = Counter()
        self.rate_limited = Counter()
        self.errored = Counter()  # other error frames answering a bench frame (INTERNAL, …)
        self.send_failed = Counter()
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.duplicates = 0
        self.misordered = 0
        self.seen: set = set()
        self.last_seq: dict = {}

    def accounting(self) -> dict:
        """Per direction and in all: expected, delivered, RATE_LIMITED, lost; plus duplicates, misordering."""
        out = {}
        for d in (R2A, A2R):
            if self.expected[d] or self.delivered[d] or self.rate_limited[d] or self.errored[d]:
                lost = self.expected[d] - self.delivered[d] - self.rate_limited[d] - self.errored[d]
                out[d] = {
                    "sent": self.sent[d],
                    "expected": self.expected[d],
                    "delivered": self.delivered[d],
                    "rate_limited": self.rate_limited[d],
                    "other_errors": self.errored[d],
                    "lost": lost,
                    "send_failed": self.send_failed[d],
                }
        total = {
            key: sum(v[key] for v in out.values())
            for key in ("sent", "expected", "delivered", "rate_limited", "other_errors", "lost", "send_failed")
        }
        total["duplicates"] = self.duplicates
        total["misordered"] = self.misordered
        total["adds_up"] = all(v["lost"] >= 0 for v in out.values()) and not self.duplicates
        return {**total, "by_direction": out}

    def latency_summary(self) -> dict:
        both = self.latency[R2A] + self.latency[A2R]
        return {"both": summary(both), R2A: summary(self.latency[R2A]), A2R: summary(self.latency[A2R])}


class Recorder:
    """Receives every frame of every bench socket; attributes data frames to their phase by `k`."""

    def __init__(self):
        self.phases: dict[int, Phase] = {}
        self.current = self.phase(0)
        self.errors = Counter()  # error codes other than RATE_LIMITED, and unparseable frames
        self.progress = asyncio.Event()

    def phase(self, k: int) -> Phase:
        if k not in self.phases:
            self.phases[k] = Phase(k)
        return self.phases[k]

    def start(self, k: int | None = None) -> Phase:
        """A new current phase with a tag unique in this process (`k` is ignored: kept for callers' readability).

        Unique tags keep a backlog from an earlier scenario (frames a slow server delivers late, possibly
        to a new socket of the same owner) out of this phase's counts.
        """
        self.current = self.phase(next(_PHASES))
        return self.current

    def on_frame(self, conn: "Client", raw, arrived: float) -> None:  # noqa: C901 - every frame the bench receives, kept flat: no call per frame
        if isinstance(raw, bytes):
            self.errors["binary frame"] += 1
            return
        head = raw[:48]  # a cheap look at the type before parsing 1 KB
        if '"telemetry"' in head or '"command"' in head:
            frame = json.loads(raw)
            if frame.get("type") == "telemetry":
                data, direction = frame, R2A
            elif frame.get("type") == "command" and isinstance(frame.get("data"), dict):
                data, direction = frame["data"], A2R
            else:
                conn.other.append(frame)
                return
            phase = self.phase(data.get("k", 0))
            seq = data["seq"]
            key = (conn.cid, seq)
            if key in phase.seen:
                phase.duplicates += 1
                return
            phase.seen.add(key)
            last = phase.last_seq.get(conn.cid)
            if last is not None and seq < last:
                phase.misordered += 1
            phase.last_seq[conn.cid] = seq
            phase.delivered[direction] += 1
            phase.latency[direction].append((arrived - data["t"]) * 1000)
            self.progress.set()
            return
        try:
            frame = json.loads(raw)
        except ValueError:
            self.errors["unparseable frame"] += 1
            return
        if frame.get("type") == "error":
            code = frame.get("code")
            if code != "RATE_LIMITED":
                self.errors[f"{code} (ref {frame.get('ref')})"] += 1
            if frame.get("ref") in ("telemetry", "command", None):
                # an answer to a bench frame this socket sent: a robot sends events, an app commands
                direction = R2A if conn.role == "robot" else A2R
                count = shed_count(frame) if direction == R2A and code == "RATE_LIMITED" else 1
                if code == "RATE_LIMITED":
                    self.current.rate_limited[direction] += count
                else:
                    self.current.errored[direction] += count
                self.progress.set()
                return
        conn.other.append(frame)
        if conn.waiters:
            conn.wake(frame, arrived)


class Client:
    """One bench socket with a background reader feeding the `Recorder`; other frames are kept in `other`."""

    _next = 0

    def __init__(self, ws, role: str, recorder: Recorder, pair: Pair):
        Client._next += 1
        self.cid = Client._next
        self.ws = ws
        self.role = role
        self.pair = pair
        self.seq = 0
        self.recorder = recorder
        self.other: list[dict] = []
        self.waiters: dict[str, list[asyncio.Future]] = {}
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        on_frame = self.recorder.on_frame
        try:
            async for raw in self.ws:
                on_frame(self, raw, now())
        except websockets.exceptions.ConnectionClosed:
            pass

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def wake(self, frame: dict, arrived: float) -> None:
        futures = self.waiters.get(frame.get("type"))
        if futures:
            fut = futures.pop(0)
            if not fut.done():
                fut.set_result((arrived, frame))

    async def take(self, frame_type: str, timeout: float = 10.0) -> tuple[float, dict]:
        """The next frame of `frame_type` from now on (not already received); TimeoutError after `timeout`."""
        fut = asyncio.get_running_loop().create_future()
        self.waiters.setdefault(frame_type, []).append(fut)
        return await asyncio.wait_for(fut, timeout)

    async def send_json(self, frame: dict) -> None:
        """Send one frame as compact JSON (`sim.client.send_json`)."""
        await client.send_json(self.ws, frame)

    async def close(self) -> None:
        with contextlib.suppress(Exception):  # already gone
            await self.ws.close()
        self._task.cancel()


_CONNECT = {
    "compression": None,
    "open_timeout": OPEN_TIMEOUT,
    "max_size": 2**20,
    "ping_interval": None,
    "close_timeout": 5,
    "max_queue": 1024,
}


async def open_robot(target: Target, pair: Pair, recorder: Recorder, base: str | None = None) -> Client:
    """The robot socket of `pair`: `/ws/device` with signed headers on a relay (`sim.client`), `/r/<key>` on a
    floor."""
    base = base or target.robot_base
    if target.kind == "relay":
        ws = await client.open_robot(base, pair.device_id, pair.secret, pair.next_timestamp(), **_CONNECT)
    else:
        ws = await connect(f"{base}/r/{pair.device_id}", **_CONNECT)
    return Client(ws, "robot", recorder, pair)


async def open_app(target: Target, pair: Pair, recorder: Recorder, base: str | None = None) -> Client:
    """An app socket of `pair`'s owner: `/ws/app?token=` on a relay (`sim.client`), `/a/<key>` on a floor."""
    base = base or target.app_base
    if target.kind == "relay":
        ws = await client.open_app(base, pair.token, **_CONNECT)
    else:
        ws = await connect(f"{base}/a/{pair.device_id}", **_CONNECT)
    return Client(ws, "app", recorder, pair)


async def open_bounded(factories, concurrency: int, deadline: float) -> tuple[list, list[float], int]:
    """Run connection factories with at most `concurrency` in flight until done or `deadline` (perf_counter).

    Returns (clients in factory order, handshake ms, failures); factories not started by the deadline are
    skipped (counted neither as opened nor as failed: the caller reports how many it got).
    """
    results: list = [None] * len(factories)
    times: list[float] = []
    failures = 0
    it = iter(enumerate(factories))

    async def worker():
        nonlocal failures
        for i, factory in it:
            if now() > deadline:
                return
            started = now()
            try:
                results[i] = await asyncio.wait_for(factory(), timeout=max(1.0, min(OPEN_TIMEOUT, deadline - now())))
                times.append((now() - started) * 1000)
            except (OSError, TimeoutError, websockets.exceptions.WebSocketException):
                failures += 1

    await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
    return [r for r in results if r is not None], times, failures


async def close_bounded(clients, concurrency: int = 200) -> None:
    """Close clients, at most `concurrency` closing handshakes in flight."""
    it = iter(clients)

    async def worker():
        for c in it:
            await c.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))


class Sender:
    """One sending socket and the frames it sends: robot events or app commands to its robot."""

    def __init__(self, client: Client, direction: str, receivers: int = 1):
        self.client = client
        self.direction = direction
        self.receivers = receivers

    def frame(self, k: int) -> str:
        seq = self.client.next_seq()
        if self.direction == R2A:
            return robot_frame(seq, k)
        return app_frame(self.client.pair.device_id, seq, k)


async def offered_load(senders: list[Sender], phase: Phase, rate: float, duration: float, deadline: float) -> dict:
    """Send `rate` frames/s in all for `duration` s, round-robin over `senders`, paced every 2 ms.

    Bounded by the frame count (rate × duration) and by `deadline`; a server that stops reading slows the
    sends down (the achieved rate says so) rather than piling frames up in this process.
    """
    total = max(1, int(rate * duration))
    started = now()
    sent = 0
    i = 0
    live = list(senders)
    while sent < total and now() < deadline and live:
        due = min(total, int((now() - started) * rate) + 1)
        while sent < due and live:
            s = live[i % len(live)]
            i += 1
            try:
                await s.client.ws.send(s.frame(phase.k))
            except websockets.exceptions.ConnectionClosed:
                phase.send_failed[s.direction] += 1  # the server closed this socket: it sends no more
                live.remove(s)
                continue
            phase.sent[s.direction] += 1
            phase.expected[s.direction] += s.receivers
            sent += 1
        await asyncio.sleep(0.002)
    elapsed = now() - started
    return {
        "offered_per_s": rate,
        "sent": sent,
        "send_seconds": round(elapsed, 3),
        "achieved_per_s": round(sent / elapsed, 1) if elapsed > 0 else None,
    }


async def drain(recorder: Recorder, phase: Phase, *, idle: float = 2.0, cap: float = 15.0) -> float:
    """Wait until every expected frame is delivered or refused, no progress for `idle` s, or `cap` s passed."""
    started = now()
    last_change = now()

    def done() -> int:
        return sum(phase.delivered.values()) + sum(phase.rate_limited.values()) + sum(phase.errored.values())

    seen = done()
    target = sum(phase.expected.values())
    while seen < target and now() - started < cap and now() - last_change < idle:
        recorder.progress.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(recorder.progress.wait(), timeout=0.1)
        current = done()
        if current != seen:
            seen, last_change = current, now()
    return now() - started
