"""How fast a lost relay instance is noticed, and what the liveness beat costs (docs/protocol.md §19.3).

`python -m bench.liveness [--runs 10] [--idle 20]` (services mode only: PostgreSQL + Redis). Each run:
robot on instance A, its owner's app on instance B, a session open; kill -9 of A; the time until the
app has both `webrtc_close` (robot_disconnected) and `device_status` offline. Then the load of two
idle instances on Redis (commands per second, from `INFO commandstats`) and PostgreSQL (transactions
per second on the bench database, from `pg_stat_database`) over `--idle` seconds. Every wait is
bounded; prints one JSON object.
"""

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import time

from sim import client

from .stack import SERVICES, Services, detect_mode

TIMEOUT = 30.0


async def _until(ws, wanted, timeout=TIMEOUT) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        frame = await client.recv_json(ws, max(0.1, deadline - time.monotonic()))
        if wanted(frame):
            return frame


async def one_run(services: Services, pair, ts: int) -> float:
    from sim.process import RelayProcess

    relays = [RelayProcess(services.env(), services.tmp / f"liveness-{name}-{ts}.log") for name in "ab"]
    try:
        for relay in relays:
            relay.wait_ready()
        a, b = relays
        robot = await client.open_robot(a.ws, pair.device_id, pair.secret, ts)
        app = await client.open_app(b.ws, pair.token)
        await _until(app, lambda f: f.get("type") == "device_status")
        await client.send_json(app, {"type": "webrtc_request", "device_id": pair.device_id})
        sid = (await _until(app, lambda f: f.get("type") == "webrtc_credentials"))["session_id"]
        await _until(robot, lambda f: f.get("type") == "webrtc_request")
        started = time.monotonic()
        os.kill(a.pid, signal.SIGKILL)
        seen = set()
        while seen != {"close", "offline"}:
            frame = await client.recv_json(app, TIMEOUT)
            if frame.get("type") == "webrtc_close" and frame.get("session_id") == sid:
                seen.add("close")
            if frame.get("type") == "device_status" and frame.get("status") == "offline":
                seen.add("offline")
        taken = time.monotonic() - started
        await app.close()
        return taken
    finally:
        for relay in relays:
            relay.stop()


def _count_commands(redis_url: str, prefix: str, seconds: float) -> dict:
    """Redis commands that name a key or channel under `prefix`, by command, over `seconds`
    (`redis-cli monitor`, stopped by `timeout`)."""
    import subprocess

    result = subprocess.run(
        ["timeout", str(seconds), "redis-cli", "-u", redis_url, "monitor"],
        capture_output=True,
        text=True,
        check=False,
    )
    counts: dict[str, int] = {}
    for line in result.stdout.splitlines():
        if prefix not in line or "] " not in line:
            continue
        name = line.split("] ", 1)[1].split(" ", 1)[0].strip('"').lower()
        counts[name] = counts.get(name, 0) + 1
    return counts


def _pg_xacts(db_name: str) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s", [db_name])
        value = cursor.fetchone()[0]
    connection.close()
    return int(value)


def idle_load(services: Services, seconds: float) -> dict:
    """Redis commands/s and PostgreSQL transactions/s of two idle relay instances (one robot socket
    each, so that each sees the other's open rows)."""
    from sim.process import RelayProcess

    relays = [RelayProcess(services.env(), services.tmp / f"idle-{name}.log") for name in "ab"]
    try:
        for relay in relays:
            relay.wait_ready()
        time.sleep(4)  # past the first beats
        before_p, t0 = _pg_xacts(services._db_name), time.monotonic()
        counts = _count_commands(services.redis_url, services.prefix, seconds)
        after_p, elapsed = _pg_xacts(services._db_name), time.monotonic() - t0
    finally:
        for relay in relays:
            relay.stop()
    per_s = {k: round(v / elapsed / 2, 3) for k, v in sorted(counts.items())}
    return {
        "instances": 2,
        "seconds": round(elapsed, 1),
        "redis_commands_per_s_per_instance": per_s,
        "postgres_transactions_per_s_per_instance": round((after_p - before_p) / elapsed / 2, 3),
        "note": "idle instances, no sockets; PostgreSQL includes the 30 s presence heartbeat if it falls in the window",
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.liveness", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--idle", type=float, default=20.0, help="seconds of idle load measurement")
    args = parser.parse_args(argv)
    if detect_mode() != SERVICES:
        print("bench.liveness needs DATABASE_URL (PostgreSQL) and REDIS_URL", file=sys.stderr)
        return 2
    with Services(SERVICES) as services:
        people = services.provision("live", 1, 0)
        pair = people.pairs[0]
        times = []
        for _ in range(max(1, min(args.runs, 50))):
            times.append(round(asyncio.run(one_run(services, pair, pair.next_timestamp())), 2))
        load = idle_load(services, min(args.idle, 120.0))
    print(
        json.dumps(
            {
                "kill_9_detection_s": {
                    "runs": len(times),
                    "min": min(times),
                    "median": statistics.median(times),
                    "max": max(times),
                    "all": times,
                },
                "idle_load": load,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
