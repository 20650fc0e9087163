"""The bench scenarios: real WebSocket clients (the `websockets` library) against relay processes.

Every scenario is bounded in count and in time, talks to 127.0.0.1 only, and returns a dict of
figures plus `failures`: correctness problems (loss, duplicates, misordering, refused handshakes)
that make the run exit non-zero. Timings are never asserted.

Latencies are measured inside this one process with `time.perf_counter()`: a frame carries its send
time (`t`) and the receiving socket's reader notes its arrival, so no clock sync is involved, but
the figures include this client's own scheduling (one event loop parsing every frame).
"""

import asyncio
import json
import re
import time
from collections import Counter
from functools import partial
from urllib.parse import urlencode

import websockets
from websockets.asyncio.client import ClientConnection, connect

from devices.signing import sign

from .stack import Owner, Robot, rss_kib

OPEN_TIMEOUT = 20.0
now = time.perf_counter


# --- statistics ---------------------------------------------------------------------------------


def pct(values, p: float) -> float | None:
    """The `p`-th percentile (0–100) of `values`, linear interpolation; None when empty."""
    data = sorted(values)
    if not data:
        return None
    k = (len(data) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (k - lo)


def summary(values_ms) -> dict:
    """n, p50, p95, p99, max and p95/p50 of a list of milliseconds (rounded for printing)."""
    values = list(values_ms)
    if not values:
        return {"n": 0}
    p50, p95, p99 = pct(values, 50), pct(values, 95), pct(values, 99)
    return {
        "n": len(values),
        "p50": round(p50, 2),
        "p95": round(p95, 2),
        "p99": round(p99, 2),
        "max": round(max(values), 2),
        "p95/p50": round(p95 / p50, 2) if p50 else None,
    }


# --- clients --------------------------------------------------------------------------------------


async def open_robot(base: str, robot: Robot) -> ClientConnection:
    """A robot socket (`/ws/device`, signed handshake headers)."""
    ts = int(time.time())
    headers = {"X-Device-ID": robot.device_id, "X-Timestamp": str(ts),
               "X-Signature": sign(robot.secret, robot.device_id, ts)}
    return await connect(base + "/ws/device", additional_headers=headers, open_timeout=OPEN_TIMEOUT)


async def open_app(base: str, token: str) -> ClientConnection:
    """An app socket (`/ws/app?token=`), as the deployed app connects."""
    return await connect(base + "/ws/app?" + urlencode({"token": token}), open_timeout=OPEN_TIMEOUT)


async def close_all(sockets) -> None:
    """Close sockets concurrently, ignoring any already gone."""
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)


class BenchError(Exception):
    """A frame the scenario did not expect (an error frame, or nothing in time)."""


class Inbox:
    """Reads one socket in the background; every frame is kept with its arrival time, by type."""

    def __init__(self, ws: ClientConnection, name: str):
        self.ws = ws
        self.name = name
        self.by_type: dict[str, list[tuple[float, dict]]] = {}
        self.taken: Counter = Counter()
        self.closed = False
        self._new = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            async for raw in self.ws:
                t = now()
                frame = json.loads(raw)
                self.by_type.setdefault(frame.get("type", "?"), []).append((t, frame))
                self._new.set()
        except websockets.exceptions.ConnectionClosed:
            pass
        finally:
            self.closed = True
            self._new.set()

    def frames(self, kind: str) -> list[tuple[float, dict]]:
        """(arrival, frame) of every frame of type `kind` so far."""
        return self.by_type.get(kind, [])

    def count(self, kind: str) -> int:
        """How many frames of type `kind` arrived."""
        return len(self.by_type.get(kind, ()))

    def errors(self) -> Counter:
        """Error frames so far, counted by `code`."""
        return Counter(f.get("code") for _, f in self.frames("error"))

    async def until(self, predicate, timeout: float) -> bool:
        """Wait until `predicate()` holds (True) or `timeout` seconds pass / the socket closes (False)."""
        deadline = now() + timeout
        while not predicate():
            remaining = deadline - now()
            if remaining <= 0 or self.closed:
                return predicate()
            self._new.clear()
            try:
                await asyncio.wait_for(self._new.wait(), remaining)
            except TimeoutError:
                return predicate()
        return True

    async def take(self, kind: str, timeout: float = 10.0) -> tuple[float, dict]:
        """The next not yet taken frame of type `kind`; an error frame arriving first raises `BenchError`."""
        errors_before = self.count("error")

        def ready():
            return self.count(kind) > self.taken[kind] or self.count("error") > errors_before

        if not await self.until(ready, timeout):
            raise BenchError(f"{self.name}: no {kind} within {timeout} s")
        if self.count("error") > errors_before:
            raise BenchError(f"{self.name}: error frame while waiting for {kind}: {self.frames('error')[-1][1]}")
        item = self.frames(kind)[self.taken[kind]]
        self.taken[kind] += 1
        return item

    async def stop(self) -> None:
        """Stop reading (the socket itself is closed by the caller)."""
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def send(ws: ClientConnection, frame: dict) -> None:
    """Send one JSON text frame."""
    await ws.send(json.dumps(frame, separators=(",", ":")))


async def open_many(factories, concurrency: int) -> tuple[list, list[float], int]:
    """Run socket-opening coroutine factories with at most `concurrency` in flight.

    Returns (sockets, handshake times in ms, failures).
    """
    gate = asyncio.Semaphore(concurrency)
    times: list[float] = []
    failures = 0

    async def one(factory):
        nonlocal failures
        async with gate:
            started = now()
            try:
                ws = await factory()
            except (OSError, TimeoutError, websockets.exceptions.WebSocketException):
                failures += 1
                return None
            times.append((now() - started) * 1000)
            return ws

    opened = await asyncio.gather(*(one(f) for f in factories))
    return [ws for ws in opened if ws is not None], times, failures


async def settle(progress, target: int, *, idle: float = 5.0, cap: float = 60.0) -> None:
    """Wait until `progress()` reaches `target`, it stops growing for `idle` s, or `cap` s pass.

    A relay that falls behind still gets to deliver late frames: lateness shows in the latency
    figures, and only frames that never arrive count as lost.
    """
    deadline = now() + cap
    last, last_change = progress(), now()
    while last < target and now() < deadline and now() - last_change < idle:
        await asyncio.sleep(0.1)
        current = progress()
        if current != last:
            last, last_change = current, now()


def order_problems(seqs: list[int], expected: int) -> tuple[int, int, bool]:
    """(lost, duplicated, misordered) for the sequence numbers one receiver got of 0..expected-1."""
    unique = set(seqs)
    lost = len(set(range(expected)) - unique)
    duplicated = len(seqs) - len(unique)
    misordered = any(b <= a for a, b in zip(seqs, seqs[1:], strict=False))
    return lost, duplicated, misordered


# --- 1. event fan-out (F3) ------------------------------------------------------------------------


async def fanout(robot_base: str, app_base: str, owner: Owner, stranger: Owner, *, apps: int = 50,
                 events: int = 100, rate: float = 20.0) -> dict:
    """One robot, `apps` app sockets of its owner, `events` events at `rate`/s, each with its send time.

    Reports delivery latency over every (receiver, event), its spread across receivers, the fan-out
    skew (last minus first receiver of the same event), and loss/duplicates/misordering. A socket of
    another user (B1 of F3) must get none of the events.
    """
    failures = []
    robot_ws = await open_robot(robot_base, owner.robots[0])
    robot = Inbox(robot_ws, "robot")
    sockets, _, refused = await open_many([partial(open_app, app_base, owner.token)] * apps, concurrency=10)
    if refused:
        failures.append(f"fan-out: {refused} app handshakes failed")
    inboxes = [Inbox(ws, f"app{i}") for i, ws in enumerate(sockets)]
    stranger_ws = await open_app(robot_base, stranger.token)
    stranger_box = Inbox(stranger_ws, "stranger")
    await asyncio.sleep(0.5)  # let the snapshots arrive before the clock starts

    started = now()
    for seq in range(events):
        delay = started + seq / rate - now()
        if delay > 0:
            await asyncio.sleep(delay)
        await send(robot_ws, {"type": "bench_event", "seq": seq, "t": now()})
    send_seconds = now() - started

    await settle(lambda: sum(b.count("bench_event") for b in inboxes), apps * events)
    await asyncio.sleep(0.3)  # duplicates and stray frames have a moment to show up

    latencies, per_receiver_p95, lost, dup, misordered = [], [], 0, 0, 0
    arrivals: dict[int, list[float]] = {}
    for box in inboxes:
        seqs, mine = [], []
        for arrived, frame in box.frames("bench_event"):
            seqs.append(frame["seq"])
            mine.append((arrived - frame["t"]) * 1000)
            arrivals.setdefault(frame["seq"], []).append(arrived)
        latencies += mine
        per_receiver_p95.append(pct(mine, 95) or 0.0)
        lo, du, mis = order_problems(seqs, events)
        lost, dup, misordered = lost + lo, dup + du, misordered + mis
    skew = [(max(a) - min(a)) * 1000 for a in arrivals.values() if len(a) > 1]
    by_event = {}
    for box in inboxes:
        for arrived, frame in box.frames("bench_event"):
            by_event.setdefault(frame["seq"], []).append((arrived - frame["t"]) * 1000)
    seen = sorted(by_event)
    picks = sorted({seen[0], seen[len(seen) // 2], seen[-1]}) if seen else []
    trend = {f"event_{k}_p50_ms": round(pct(by_event[k], 50), 1) for k in picks}
    leaked = stranger_box.count("bench_event")
    robot_errors = robot.errors()
    lost += (apps - len(inboxes)) * events
    announced = sum(_shed_count(f) for _, f in robot.frames("error")
                    if f.get("code") == "RATE_LIMITED" and f.get("ref") == "bench_event")
    if lost or dup or misordered:
        failures.append(f"fan-out: lost {lost} ({announced} announced to the robot as RATE_LIMITED, "
                        f"{lost - announced} silently), duplicated {dup}, receivers out of order {misordered}")
    if leaked:
        failures.append(f"fan-out: another user's socket got {leaked} events")
    if set(robot_errors) - {"RATE_LIMITED"}:
        failures.append(f"fan-out: robot got error frames {dict(robot_errors)}")

    for box in [*inboxes, robot, stranger_box]:
        await box.stop()
    await close_all([*sockets, robot_ws, stranger_ws])
    return {
        "receivers": len(inboxes),
        "events": events,
        "rate_per_s": rate,
        "send_seconds": round(send_seconds, 2),
        "latency_ms": summary(latencies),
        "receiver_p95_ms": {"best": round(min(per_receiver_p95), 2), "median": round(pct(per_receiver_p95, 50), 2),
                            "worst": round(max(per_receiver_p95), 2)},
        "fanout_skew_ms": summary(skew),
        "latency_trend": trend,
        "expected_deliveries": apps * events,
        "delivered": len(latencies),
        "lost": lost,
        "lost_announced_rate_limited": announced,
        "lost_silently": lost - announced,
        "duplicated": dup,
        "receivers_out_of_order": misordered,
        "leaked_to_other_user": leaked,
        "robot_errors": dict(robot_errors),
        "failures": failures,
    }


# --- 2. signaling burst (F2) -----------------------------------------------------------------------


async def _open_session(app: Inbox, robot: Inbox) -> str:
    await send(app.ws, {"type": "webrtc_request"})
    _, credentials = await app.take("webrtc_credentials")
    _, request = await robot.take("webrtc_request")
    if request["session_id"] != credentials["session_id"]:
        raise BenchError("robot and app were told different session ids")
    return credentials["session_id"]


def _shed_count(error: dict) -> int:
    """App sockets an event missed, from its RATE_LIMITED message ("event not delivered to N app socket(s)")."""
    match = re.search(r"to (\d+) app", error.get("message", ""))
    return int(match.group(1)) if match else 1


def _ice(session_id: str, seq: int) -> dict:
    return {"type": "webrtc_ice", "session_id": session_id,
            "candidate": {"candidate": f"candidate:{seq} 1 udp 2122260223 192.0.2.1 {40000 + seq} typ host",
                          "sdpMid": "0", "sdpMLineIndex": 0}}


async def burst(robot_base: str, app_base: str, owner: Owner, *, ice: int = 300, events: int = 300) -> dict:
    """F2: a robot sends `ice` webrtc_ice back to back into one session, then `events` events back to
    back to three app sockets. Every frame must arrive in order, or the robot must hear RATE_LIMITED
    for what was shed; silent loss fails.
    """
    failures = []
    robot_ws = await open_robot(robot_base, owner.robots[0])
    robot = Inbox(robot_ws, "robot")
    app_sockets = [await open_app(app_base, owner.token) for _ in range(3)]
    apps = [Inbox(ws, f"app{i}") for i, ws in enumerate(app_sockets)]
    session_id = await _open_session(apps[0], robot)

    # (a) ICE burst, robot → app, one session.
    frames = [json.dumps(_ice(session_id, i), separators=(",", ":")) for i in range(ice)]
    started = now()
    for raw in frames:
        await robot_ws.send(raw)
    sent = now() - started

    def ice_settled():
        shed = robot.errors().get("RATE_LIMITED", 0)
        return apps[0].count("webrtc_ice") + shed >= ice

    await apps[0].until(ice_settled, timeout=30.0)
    arrived = apps[0].frames("webrtc_ice")
    seqs = [int(f["candidate"]["candidate"].split()[0].split(":")[1]) for _, f in arrived]
    lost, dup, misordered = order_problems(seqs, ice)
    shed = robot.errors().get("RATE_LIMITED", 0)
    silent = lost - shed
    all_ms = (arrived[-1][0] - started) * 1000 if arrived else None
    ice_result = {
        "frames": ice,
        "client_send_ms": round(sent * 1000, 1),
        "deliver_all_ms": round(all_ms, 1) if all_ms else None,
        "frames_per_s": round(len(arrived) / (all_ms / 1000), 1) if all_ms else None,
        "delivered": len(arrived),
        "rate_limited": shed,
        "silently_lost": silent,
        "duplicated": dup,
        "in_order": not misordered,
    }
    if silent > 0 or dup or misordered:
        failures.append(f"ICE burst: silently lost {silent}, duplicated {dup}, misordered {misordered}")
    if set(robot.errors()) - {"RATE_LIMITED"}:
        failures.append(f"ICE burst: robot got error frames {dict(robot.errors())}")

    # (b) event burst, robot → three app sockets.
    errors_before = robot.count("error")
    started = now()
    for seq in range(events):
        await send(robot_ws, {"type": "bench_burst", "seq": seq, "t": now()})
    sent = now() - started

    def events_settled(box):
        return lambda: box.count("bench_burst") + robot.count("error") - errors_before >= events

    await asyncio.gather(*(box.until(events_settled(box), timeout=30.0) for box in apps))
    ev_lost = ev_dup = ev_mis = 0
    last_arrival = started
    for box in apps:
        got = box.frames("bench_burst")
        lo, du, mis = order_problems([f["seq"] for _, f in got], events)
        ev_lost, ev_dup, ev_mis = ev_lost + lo, ev_dup + du, ev_mis + mis
        if got:
            last_arrival = max(last_arrival, got[-1][0])
    shed_frames = [f for _, f in robot.frames("error")[errors_before:]
                   if f.get("code") == "RATE_LIMITED" and f.get("ref") == "bench_burst"]
    ev_shed = sum(_shed_count(f) for f in shed_frames)  # one error per event names how many sockets missed it
    ev_silent = ev_lost - ev_shed
    deliver_ms = (last_arrival - started) * 1000
    event_result = {
        "events": events,
        "receivers": len(apps),
        "client_send_ms": round(sent * 1000, 1),
        "deliver_all_ms": round(deliver_ms, 1),
        "events_per_s": round(events / (deliver_ms / 1000), 1) if deliver_ms else None,
        "rate_limited": ev_shed,
        "silently_lost": ev_silent,
        "duplicated": ev_dup,
        "receivers_out_of_order": ev_mis,
    }
    if ev_silent > 0 or ev_dup or ev_mis:
        failures.append(f"event burst: silently lost {ev_silent}, duplicated {ev_dup}, misordered {ev_mis}")

    await send(apps[0].ws, {"type": "webrtc_close", "session_id": session_id})
    await robot.take("webrtc_close")
    for box in [*apps, robot]:
        await box.stop()
    await close_all([*app_sockets, robot_ws])
    return {"ice": ice_result, "events": event_result, "failures": failures}


# --- 3. session setup ------------------------------------------------------------------------------


async def session_setup(robot_base: str, app_base: str, owner: Owner, *, rounds: int = 30) -> dict:
    """`rounds` sequential sessions: request → credentials → robot request → offer → answer → close.

    Times request→credentials (app), request→answer delivered to the robot, and the whole round
    including the close reaching the robot.
    """
    robot_ws = await open_robot(robot_base, owner.robots[0])
    app_ws = await open_app(app_base, owner.token)
    robot, app = Inbox(robot_ws, "robot"), Inbox(app_ws, "app")
    to_credentials, to_answer, to_closed, failures = [], [], [], []
    offer = {"type": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"}
    answer = {"type": "answer", "sdp": "v=0\r\no=- 3 4 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"}
    try:
        for _ in range(rounds):
            started = now()
            await send(app_ws, {"type": "webrtc_request"})
            t_cred, credentials = await app.take("webrtc_credentials")
            session_id = credentials["session_id"]
            _, request = await robot.take("webrtc_request")
            if request["session_id"] != session_id:
                raise BenchError("robot got a request for another session")
            await send(robot_ws, {"type": "webrtc_offer", "session_id": session_id, "sdp": offer})
            await app.take("webrtc_offer")
            await send(app_ws, {"type": "webrtc_answer", "session_id": session_id, "sdp": answer})
            t_answer, _ = await robot.take("webrtc_answer")
            await send(app_ws, {"type": "webrtc_close", "session_id": session_id})
            t_closed, _ = await robot.take("webrtc_close")
            to_credentials.append((t_cred - started) * 1000)
            to_answer.append((t_answer - started) * 1000)
            to_closed.append((t_closed - started) * 1000)
    except BenchError as exc:
        failures.append(f"session setup: {exc}")
    for box in (robot, app):
        await box.stop()
    await close_all([robot_ws, app_ws])
    return {
        "rounds": rounds,
        "completed": len(to_answer),
        "request_to_credentials_ms": summary(to_credentials),
        "request_to_answer_ms": summary(to_answer),
        "round_with_close_ms": summary(to_closed),
        "failures": failures,
    }


# --- 4. connect rate and memory ----------------------------------------------------------------------


async def connect_memory(bases: list[str], pids: list[int], owners: list[Owner], *, apps: int,
                         concurrency: int = 10) -> dict:
    """Open `apps` app sockets (spread over the owners), then one robot per owner, at most
    `concurrency` handshakes in flight, spread round-robin over the relays. Reports handshake times,
    handshakes/s, and the relay processes' RSS before, with everything open, and after closing.
    """
    failures = []
    before = [rss_kib(p) for p in pids]
    app_factories = [partial(open_app, bases[i % len(bases)], owners[i % len(owners)].token) for i in range(apps)]
    robot_factories = [partial(open_robot, bases[i % len(bases)], o.robots[0]) for i, o in enumerate(owners)]
    started = now()
    app_sockets, app_ms, app_failed = await open_many(app_factories, concurrency)
    app_seconds = now() - started
    started = now()
    robot_sockets, robot_ms, robot_failed = await open_many(robot_factories, concurrency)
    robot_seconds = now() - started
    if app_failed or robot_failed:
        failures.append(f"connect: {app_failed} app and {robot_failed} robot handshakes failed")
    await asyncio.sleep(1.0)
    during = [rss_kib(p) for p in pids]
    sockets = len(app_sockets) + len(robot_sockets)
    started = now()
    await close_all([*app_sockets, *robot_sockets])
    close_seconds = now() - started
    await asyncio.sleep(2.0)
    after = [rss_kib(p) for p in pids]
    grown = sum(during) - sum(before)
    return {
        "app_sockets": len(app_sockets),
        "robot_sockets": len(robot_sockets),
        "concurrency": concurrency,
        "app_handshake_ms": summary(app_ms),
        "robot_handshake_ms": summary(robot_ms),
        "app_handshakes_per_s": round(len(app_sockets) / app_seconds, 1) if app_seconds else None,
        "robot_handshakes_per_s": round(len(robot_sockets) / robot_seconds, 1) if robot_seconds else None,
        "close_all_ms": round(close_seconds * 1000, 1),
        "rss_kib_before": before,
        "rss_kib_open": during,
        "rss_kib_after_close": after,
        "kib_per_socket": round(grown / sockets, 1) if sockets else None,
        "failures": failures,
    }

