"""The bench scenarios. Each takes a running `Target` and its sizes and returns a dict of figures with
`failures` (correctness problems: loss, counts that do not add up, duplicates, misordering, error frames,
refused handshakes, a stranger receiving frames). Every loop is bounded in count and by a deadline.

Scenario names (for `--scenario`): latency, pairs100, pairs1000, max, setup, fanout, memory.
"""

import asyncio
import contextlib
import time
from functools import partial

from .load import (
    A2R,
    R2A,
    Client,
    Recorder,
    Sender,
    close_bounded,
    drain,
    now,
    offered_load,
    open_app,
    open_bounded,
    open_robot,
)
from .procs import services_cpu_seconds
from .stack import Pair, Target
from .stats import cdf_points, summary

# memory first: it wants a fresh server process (RSS growth of earlier scenarios would hide the sockets' cost)
SCENARIOS = ("memory", "latency", "pairs100", "pairs1000", "max", "setup", "fanout")
OPEN_CONCURRENCY = 50
DRAIN_IDLE, DRAIN_CAP = 10.0, 60.0  # after the last send: wait ≤ 60 s, and ≤ 10 s without progress


async def settle(target: Target, quiet_pct: float = 10.0, cap: float = 60.0) -> float:
    """Wait until the target's servers use < `quiet_pct` % of a core over 0.5 s (a backlog of closes or frames
    from the previous scenario is done), at most `cap` s; returns the seconds waited."""
    started = now()
    while now() - started < cap:
        before, t0 = target.cpu(), now()
        await asyncio.sleep(0.5)
        if 100 * (target.cpu() - before) / (now() - t0) < quiet_pct:
            break
    return round(now() - started, 1)


class Window:
    """CPU and wall time of the target's servers, this client and the machine's Redis/PostgreSQL over a span."""

    def __init__(self, target: Target):
        self.target = target
        self.wall, self.server = now(), target.cpu()
        self.client, self.services = time.process_time(), services_cpu_seconds()

    def close(self, frames: int | None = None) -> dict:
        wall = now() - self.wall
        server = self.target.cpu() - self.server
        out = {
            "wall_s": round(wall, 3),
            "server_cpu_s": round(server, 3),
            "server_cpu_pct": round(100 * server / wall, 1) if wall > 0 else None,
            "client_cpu_s": round(time.process_time() - self.client, 3),
            "client_cpu_pct": round(100 * (time.process_time() - self.client) / wall, 1) if wall > 0 else None,
            "services_cpu_s": round(services_cpu_seconds() - self.services, 3),
        }
        if frames:
            out["server_us_per_frame"] = round(1e6 * server / frames, 1)
            out["services_us_per_frame"] = round(1e6 * out["services_cpu_s"] / frames, 1)
        return out


def check_phase(name: str, acc: dict, failures: list, errors=None) -> None:
    """Append a failure when a phase lost frames, its counts do not add up, or frames came twice/out of order."""
    if acc["lost"] > 0 or not acc["adds_up"] or acc["misordered"] or acc["other_errors"] or acc["send_failed"]:
        failures.append(
            f"{name}: sent {acc['sent']}, expected {acc['expected']} deliveries, delivered "
            f"{acc['delivered']}, RATE_LIMITED {acc['rate_limited']}, other errors {acc['other_errors']}, "
            f"lost {acc['lost']}, duplicates {acc['duplicates']}, misordered {acc['misordered']}, "
            f"sends on closed sockets {acc['send_failed']}"
        )
    if errors:
        failures.append(f"{name}: error frames {dict(errors)}")


async def open_pairs(target: Target, pairs: list[Pair], rec: Recorder, deadline: float) -> tuple[list, list, dict]:
    """Robot then app socket for each pair (robots on instance A, apps on B), bounded; returns complete pairs."""
    started = now()
    robots, robot_ms, robot_failed = await open_bounded(
        [partial(open_robot, target, p, rec) for p in pairs], OPEN_CONCURRENCY, deadline
    )
    have = {c.pair.device_id for c in robots}
    apps, app_ms, app_failed = await open_bounded(
        [partial(open_app, target, p, rec) for p in pairs if p.device_id in have], OPEN_CONCURRENCY, deadline
    )
    by_id = {c.pair.device_id: c for c in apps}
    robots_ok = [r for r in robots if r.pair.device_id in by_id]
    apps_ok = [by_id[r.pair.device_id] for r in robots_ok]
    await close_bounded([r for r in robots if r.pair.device_id not in by_id])
    info = {
        "pairs_wanted": len(pairs),
        "pairs_open": len(robots_ok),
        "open_seconds": round(now() - started, 2),
        "robot_handshake_ms": summary(robot_ms),
        "app_handshake_ms": summary(app_ms),
        "handshakes_failed": robot_failed + app_failed,
    }
    return robots_ok, apps_ok, info


def interleaved(robots: list[Client], apps: list[Client]) -> list[Sender]:
    """Senders alternating robot → app and app → robot over every pair (half the frames each way)."""
    out = []
    for r, a in zip(robots, apps, strict=True):
        out += [Sender(r, R2A), Sender(a, A2R)]
    return out


# --- 1. one pair, one-way latency both directions ------------------------------------------------


async def latency(target: Target, n: dict, deadline: float) -> dict:
    """Unloaded one-way latency: one frame at a time, alternating directions, the next after delivery + 2 ms."""
    rec = Recorder()
    failures = []
    pair = target.people.pairs[0]
    robot = await open_robot(target, pair, rec)
    app = await open_app(target, pair, rec)
    await asyncio.sleep(0.3)
    senders = [Sender(robot, R2A), Sender(app, A2R)]

    async def one(sender: Sender, phase) -> None:
        d = sender.direction
        before = phase.delivered[d] + phase.rate_limited[d]
        await sender.client.ws.send(sender.frame(phase.k))
        phase.sent[d] += 1
        phase.expected[d] += 1
        limit = now() + 5.0
        while phase.delivered[d] + phase.rate_limited[d] == before and now() < limit:
            rec.progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(rec.progress.wait(), timeout=0.5)

    warm = rec.start(0)
    for i in range(min(20, n["latency_frames"])):
        await one(senders[i % 2], warm)
    phase = rec.start(1)
    window = Window(target)
    for i in range(2 * n["latency_frames"]):
        if now() > deadline:
            failures.append("latency: deadline reached")
            break
        await one(senders[i % 2], phase)
        await asyncio.sleep(0.002)
    acc = phase.accounting()
    cpu = window.close(acc["delivered"])
    check_phase("latency", acc, failures, rec.errors)
    await close_bounded([robot, app])
    return {
        "frames_per_direction": n["latency_frames"],
        "latency_ms": phase.latency_summary(),
        "cdf": {d: cdf_points(phase.latency[d]) for d in (R2A, A2R)},
        "accounting": acc,
        "cpu": cpu,
        "failures": failures,
    }


# --- 2./3. many pairs at a fixed rate ---------------------------------------------------------------


async def pairs_at_rate(target: Target, pairs: int, rate: float, seconds: float, deadline: float, name: str) -> dict:
    """`pairs` pairs, each sending `rate` frames/s (half robot → app, half app → robot) for `seconds`."""
    rec = Recorder()
    failures = []
    robots, apps, info = await open_pairs(target, target.people.pairs[:pairs], rec, deadline)
    if info["pairs_open"] < pairs:
        failures.append(
            f"{name}: only {info['pairs_open']} of {pairs} pairs opened ({info['handshakes_failed']} handshakes failed)"
        )
    await asyncio.sleep(1.0)  # snapshots and online pushes settle before the clock starts
    phase = rec.start(1)
    window = Window(target)
    load = await offered_load(interleaved(robots, apps), phase, rate * len(robots), seconds, deadline)
    drained = await drain(rec, phase, idle=DRAIN_IDLE, cap=DRAIN_CAP)
    acc = phase.accounting()
    cpu = window.close(acc["delivered"])
    check_phase(name, acc, failures, rec.errors)
    await close_bounded([*robots, *apps])
    return {
        "pairs": len(robots),
        "rate_per_pair": rate,
        "seconds": seconds,
        **info,
        "load": load,
        "drain_s": round(drained, 2),
        "latency_ms": phase.latency_summary(),
        "cdf": cdf_points(phase.latency[R2A] + phase.latency[A2R]),
        "accounting": acc,
        "cpu": cpu,
        "failures": failures,
    }


async def pairs100(target: Target, n: dict, deadline: float) -> dict:
    return await pairs_at_rate(target, n["p100_pairs"], n["p100_rate"], n["p100_seconds"], deadline, "pairs100")


async def pairs1000(target: Target, n: dict, deadline: float) -> dict:
    return await pairs_at_rate(target, n["p1000_pairs"], n["p1000_rate"], n["p1000_seconds"], deadline, "pairs1000")


# --- 4. max sustained frames/s ---------------------------------------------------------------------


async def max_rate(target: Target, n: dict, deadline: float) -> dict:
    """Stepped offered load over `max_pairs` pairs; the ramp ends at the first step that is not sustained.

    A step is sustained when nothing is lost or RATE_LIMITED, p99 ≤ `max_p99_ms`, and the client managed
    to send at ≥ 90 % of the offered rate. The result is the highest sustained step, with server CPU per
    frame at that step (and frames/s per server core = 10^6 / µs per frame).
    """
    rec = Recorder()
    failures = []
    robots, apps, info = await open_pairs(target, target.people.pairs[: n["max_pairs"]], rec, deadline)
    senders = interleaved(robots, apps)
    await asyncio.sleep(1.0)
    steps = []
    best = None
    for k, rate in enumerate(r for r in n["max_steps"] if r <= n["max_rate_cap"]):
        if now() + n["max_step_seconds"] + 5 > deadline:
            failures.append("max: deadline reached before the ramp ended")
            break
        phase = rec.start(k + 1)
        window = Window(target)
        load = await offered_load(senders, phase, rate, n["max_step_seconds"], deadline)
        drained = await drain(rec, phase, idle=DRAIN_IDLE, cap=DRAIN_CAP)
        acc = phase.accounting()
        cpu = window.close(acc["delivered"])
        lat = phase.latency_summary()["both"]
        sustained = (
            acc["lost"] == 0
            and acc["rate_limited"] == 0
            and acc["adds_up"]
            and (lat.get("p99") or 0) <= n["max_p99_ms"]
            and (load["achieved_per_s"] or 0) >= 0.9 * rate
        )
        step = {
            "offered_per_s": rate,
            "achieved_per_s": load["achieved_per_s"],
            "delivered_per_s": round(acc["delivered"] / load["send_seconds"], 1) if load["send_seconds"] else None,
            "latency_ms": lat,
            "accounting": {k2: v for k2, v in acc.items() if k2 != "by_direction"},
            "cpu": cpu,
            "drain_s": round(drained, 2),
            "sustained": sustained,
        }
        steps.append(step)
        check_phase(f"max step {rate}/s", acc, failures)
        if not sustained:
            break
        best = step
        await asyncio.sleep(0.5)
    if rec.errors:
        failures.append(f"max: error frames {dict(rec.errors)}")
    await close_bounded([*robots, *apps])
    out = {
        "pairs": len(robots),
        **info,
        "p99_bound_ms": n["max_p99_ms"],
        "step_seconds": n["max_step_seconds"],
        "steps": steps,
        "failures": failures,
    }
    if best:
        us = best["cpu"].get("server_us_per_frame")
        out.update(
            max_sustained_per_s=best["offered_per_s"],
            server_us_per_frame=us,
            frames_per_core_s=round(1e6 / us) if us else None,
            client_cpu_pct_at_max=best["cpu"]["client_cpu_pct"],
            client_bound=(best["cpu"]["client_cpu_pct"] or 0) >= 90,
            ramp_capped=best is steps[-1],
        )
    else:
        out.update(max_sustained_per_s=0, server_us_per_frame=None, frames_per_core_s=None)
    if steps:  # the cost at the lowest step, sustained or not (the one figure an overloaded server still gives)
        out["first_step"] = {
            "offered_per_s": steps[0]["offered_per_s"],
            "server_us_per_frame": steps[0]["cpu"].get("server_us_per_frame"),
            "p99_ms": steps[0]["latency_ms"].get("p99"),
        }
    return out


# --- 5. session setup ---------------------------------------------------------------------------------

OFFER = {"type": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"}
ANSWER = {"type": "answer", "sdp": "v=0\r\no=- 3 4 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"}


async def setup(target: Target, n: dict, deadline: float) -> dict:
    """`setup_concurrent` apps send `webrtc_request` at the same instant, `setup_rounds` times; each session runs
    request → credentials → robot request → offer → answer → close. Relay only (floors have no signaling)."""
    if target.kind != "relay":
        return {"skipped": "floors have no signaling", "failures": []}
    rec = Recorder()
    failures = []
    robots, apps, info = await open_pairs(target, target.people.pairs[: n["setup_concurrent"]], rec, deadline)
    await asyncio.sleep(1.0)
    to_cred, to_robot, to_answer, problems = [], [], [], []

    async def one(robot: Client, app: Client, go: asyncio.Event) -> None:
        await go.wait()
        try:
            cred = asyncio.ensure_future(app.take("webrtc_credentials"))
            req = asyncio.ensure_future(robot.take("webrtc_request"))
            await asyncio.sleep(0)
            started = now()
            await app.send_json({"type": "webrtc_request", "device_id": app.pair.device_id})
            t_cred, credentials = await cred
            t_req, request = await req
            sid = credentials["session_id"]
            if request.get("session_id") != sid:
                raise RuntimeError("robot and app were told different session ids")
            offer = asyncio.ensure_future(app.take("webrtc_offer"))
            await robot.send_json({"type": "webrtc_offer", "session_id": sid, "sdp": OFFER})
            await offer
            answer = asyncio.ensure_future(robot.take("webrtc_answer"))
            await app.send_json({"type": "webrtc_answer", "session_id": sid, "sdp": ANSWER})
            t_ans, _ = await answer
            closed = asyncio.ensure_future(robot.take("webrtc_close"))
            await app.send_json({"type": "webrtc_close", "session_id": sid})
            await closed
            to_cred.append((t_cred - started) * 1000)
            to_robot.append((t_req - started) * 1000)
            to_answer.append((t_ans - started) * 1000)
        except (TimeoutError, RuntimeError, KeyError) as exc:
            problems.append(f"{type(exc).__name__}: {exc}")

    window = Window(target)
    rounds = 0
    for _ in range(n["setup_rounds"]):
        if now() > deadline:
            failures.append("setup: deadline reached")
            break
        go = asyncio.Event()
        tasks = [asyncio.create_task(one(r, a, go)) for r, a in zip(robots, apps, strict=True)]
        await asyncio.sleep(0.05)
        go.set()
        await asyncio.gather(*tasks)
        rounds += 1
        await asyncio.sleep(0.3)
    cpu = window.close()
    if problems:
        failures.append(f"setup: {len(problems)} sessions failed, e.g. {problems[0]}")
    if rec.errors:
        failures.append(f"setup: error frames {dict(rec.errors)}")
    await close_bounded([*robots, *apps])
    return {
        "concurrent": len(robots),
        "rounds": rounds,
        **info,
        "completed": len(to_answer),
        "request_to_credentials_ms": summary(to_cred),
        "request_to_robot_request_ms": summary(to_robot),
        "request_to_answer_at_robot_ms": summary(to_answer),
        "cpu": cpu,
        "failures": failures,
    }


# --- 6. fan-out ----------------------------------------------------------------------------------------


async def fanout(target: Target, n: dict, deadline: float) -> dict:
    """One robot's events to `fanout_apps` app sockets of its owner, then to 1; plus a stranger socket that
    must receive nothing. Compares server CPU and latency per event (10 apps vs 1 app)."""
    rec, stranger_rec = Recorder(), Recorder()
    failures = []
    people = target.people
    robot = await open_robot(target, people.fan, rec)
    apps, _, refused = await open_bounded([partial(open_app, target, people.fan, rec)] * n["fanout_apps"], 10, deadline)
    if refused or len(apps) < n["fanout_apps"]:
        failures.append(f"fanout: {refused} app handshakes failed")
    stranger = await open_app(target, people.stranger, stranger_rec)  # a user with no device / another key
    await asyncio.sleep(0.5)
    results = {}
    for k, receivers in ((1, len(apps)), (2, 1)):
        if receivers == 1:
            await close_bounded(apps[1:])
            await asyncio.sleep(0.5)
        phase = rec.start(k)
        window = Window(target)
        sender = Sender(robot, R2A, receivers=receivers)
        load = await offered_load([sender], phase, n["fanout_rate"], n["fanout_events"] / n["fanout_rate"], deadline)
        await drain(rec, phase, idle=2.0, cap=15.0)
        acc = phase.accounting()
        cpu = window.close()
        events = max(1, phase.sent[R2A])
        cpu["server_us_per_event"] = round(1e6 * cpu["server_cpu_s"] / events, 1)
        check_phase(f"fanout to {receivers}", acc, failures)
        results[f"to_{receivers}"] = {
            "receivers": receivers,
            "events": phase.sent[R2A],
            "load": load,
            "latency_ms": summary(phase.latency[R2A]),
            "accounting": acc,
            "cpu": cpu,
        }
    leaked = sum(sum(p.delivered.values()) for p in stranger_rec.phases.values())
    if leaked:
        failures.append(f"fanout: a stranger's socket received {leaked} frames of another user's robot")
    if rec.errors:
        failures.append(f"fanout: error frames {dict(rec.errors)}")
    await close_bounded([robot, apps[0] if apps else robot, stranger])
    many, one = results[f"to_{len(apps)}"], results["to_1"]
    cpu_ratio = (
        many["cpu"]["server_us_per_event"] / one["cpu"]["server_us_per_event"]
        if one["cpu"]["server_us_per_event"]
        else None
    )
    lat_ratio = many["latency_ms"].get("p50", 0) / one["latency_ms"]["p50"] if one["latency_ms"].get("p50") else None
    return {
        "apps": len(apps),
        "rate_per_s": n["fanout_rate"],
        "phases": results,
        "cpu_ratio_many_to_one": round(cpu_ratio, 2) if cpu_ratio else None,
        "latency_p50_ratio_many_to_one": round(lat_ratio, 2) if lat_ratio else None,
        "stranger_received": leaked,
        "failures": failures,
    }


# --- 7. memory per idle robot socket ----------------------------------------------------------------


async def memory(target: Target, n: dict, deadline: float) -> dict:
    """Open idle robot sockets up to each level (spread over the instances), RSS 2 s after each level."""
    rec = Recorder()
    failures = []
    idle = target.people.idle
    levels = [lv for lv in n["memory_levels"] if lv <= len(idle)]
    bases = [s.ws for s in target.servers]
    warm = min(20, len(idle) - max(levels, default=0))
    if warm > 0:  # the first connections import and allocate what every later one reuses
        got, _, _ = await open_bounded(
            [partial(open_robot, target, p, rec, bases[i % len(bases)]) for i, p in enumerate(idle[-warm:])],
            10,
            deadline,
        )
        await close_bounded(got)
    await asyncio.sleep(1.0)
    base_rss = target.rss()
    opened: list[Client] = []
    rows = []
    capped = None
    started = now()
    for level in levels:
        want = idle[len(opened) : level]
        factories = [
            partial(open_robot, target, p, rec, bases[(len(opened) + i) % len(bases)]) for i, p in enumerate(want)
        ]
        level_started = now()
        got, ms, failed = await open_bounded(factories, n["memory_concurrency"], deadline)
        opened += got
        if failed:
            failures.append(f"memory: {failed} robot handshakes failed on the way to {level}")
        if len(opened) < level:
            capped = f"stopped at {len(opened)} of {level} sockets (deadline or failures)"
            break
        await asyncio.sleep(2.0)
        rss = target.rss()
        rows.append(
            {
                "sockets": len(opened),
                "rss_kib": rss,
                "rss_growth_kib": rss - base_rss,
                "kib_per_socket": round((rss - base_rss) / len(opened), 2),
                "open_seconds": round(now() - level_started, 2),
                "handshake_ms": summary(ms),
            }
        )
    if rec.errors:
        failures.append(f"memory: error frames {dict(rec.errors)}")
    close_started = now()
    await close_bounded(opened)
    return {
        "base_rss_kib": base_rss,
        "levels": rows,
        "capped": capped,
        "open_all_seconds": round(close_started - started, 1),
        "close_seconds": round(now() - close_started, 1),
        "failures": failures,
    }


RUNNERS = {
    "latency": latency,
    "pairs100": pairs100,
    "pairs1000": pairs1000,
    "max": max_rate,
    "setup": setup,
    "fanout": fanout,
    "memory": memory,
}
