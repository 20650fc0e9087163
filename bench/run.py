"""Run the relay benchmarks: `python -m bench.run [--quick] [--json out.json] [--relays 1|2]`.

With DATABASE_URL (PostgreSQL) and REDIS_URL set it runs in `services` mode: a throwaway database on
that server, Redis under a unique prefix, two relay processes (robot and apps on different
instances). Without them, `local` mode: SQLite temp file, in-memory layer, one relay process.

Prints one table of medians, tails and ratios from this single run. Timings are never asserted (the
machine is noisy); the exit status is 1 when a correctness check fails (loss, duplicates,
misordering, refused handshakes, presence rows left open), 2 when the bench itself could not run.
"""

import argparse
import asyncio
import json
import os
import platform
import sys
import time

from . import stack as stack_mod

NOISE_NOTE = (
    "Noisy machine: relays, PostgreSQL/Redis and this client share {cores} core(s); latencies include "
    "this client's event loop. Read medians and ratios, not single values; nothing here is asserted."
)


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts, about 30 s in all")
    parser.add_argument("--json", metavar="PATH", help="also write every figure to this JSON file")
    parser.add_argument("--relays", type=int, choices=(1, 2), default=2,
                        help="relay processes in services mode (local mode always runs one)")
    parser.add_argument("--log-level", default="INFO", help="relay LOG_LEVEL (default INFO, as deployed)")
    return parser.parse_args(argv)


def sizes(quick: bool) -> dict:
    """Counts per scenario for a full or `--quick` run."""
    return {
        "fanout_apps": 50,
        "fanout_events": 20 if quick else 100,
        "fanout_rate": 20.0,
        "burst_ice": 300,
        "burst_events": 100 if quick else 300,
        "setup_rounds": 10 if quick else 30,
        "connect_apps": 50 if quick else 200,
        "connect_robots": 50,
    }


async def run_all(st: "stack_mod.Stack", n: dict, people: dict) -> dict:
    """Run the four scenarios in order against the stack's relays; returns their results."""
    relays = st.relays
    robot_base, app_base = relays[0].ws, relays[-1].ws
    results = {}
    t = time.perf_counter()
    from . import scenarios as sc

    pids = [r.pid for r in relays]

    async def timed(key, coro):
        cpu = [stack_mod.cpu_seconds(p) for p in pids]
        own, wall, db = time.process_time(), time.perf_counter(), st.db_sessions()
        results[key] = await coro
        await asyncio.sleep(0.2)  # connections closed at the end of the scenario reach pg_stat_database
        db_after = st.db_sessions()
        results[key]["cpu"] = {
            "db_connections_opened": None if db is None or db_after is None else db_after - db,
            "wall_s": round(time.perf_counter() - wall, 2),
            "relays_cpu_s": [round(stack_mod.cpu_seconds(p) - c, 2) for p, c in zip(pids, cpu, strict=True)],
            "client_cpu_s": round(time.process_time() - own, 2),
        }

    await timed("fanout", sc.fanout(robot_base, app_base, people["fanout"][0], people["stranger"][0],
                                    apps=n["fanout_apps"], events=n["fanout_events"], rate=n["fanout_rate"]))
    await timed("burst", sc.burst(robot_base, app_base, people["burst"][0], ice=n["burst_ice"],
                                  events=n["burst_events"]))
    await timed("setup", sc.session_setup(robot_base, app_base, people["setup"][0], rounds=n["setup_rounds"]))
    await timed("connect", sc.connect_memory([r.ws for r in relays], pids, people["connect"],
                                             apps=n["connect_apps"]))
    results["scenario_seconds"] = round(time.perf_counter() - t, 1)
    return results


async def presence_left_open(st: "stack_mod.Stack", timeout: float = 10.0) -> int:
    """Open Connection rows once every socket is closed; polls up to `timeout` s for cleanup to finish."""
    from asgiref.sync import sync_to_async

    deadline = time.monotonic() + timeout
    while True:
        left = await sync_to_async(st.open_presence_rows)()
        if left == 0 or time.monotonic() > deadline:
            return left
        await asyncio.sleep(0.25)


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}" if value < 1000 else f"{value:.0f}"
    return str(value)


def _ratio(trend: dict) -> float | None:
    values = list(trend.values())
    return round(values[-1] / values[0], 1) if len(values) > 1 and values[0] else None


def table(results: dict) -> list[str]:
    """The compact report: one row per measured quantity."""
    rows = []

    def dist(scenario, metric, s, note=""):
        rows.append([scenario, metric, s.get("p50"), s.get("p95"), s.get("p99"), s.get("max"), s.get("p95/p50"), note])

    def value(scenario, metric, v, note=""):
        rows.append([scenario, metric, v, None, None, None, None, note])

    f = results["fanout"]
    name = f"1 fan-out {f['receivers']} apps×{f['events']} ev @{f['rate_per_s']:g}/s"
    dist(name, "delivery latency ms", f["latency_ms"],
         f"lost {f['lost']} (RATE_LIMITED {f['lost_announced_rate_limited']}, silent {f['lost_silently']}) "
         f"dup {f['duplicated']} misordered {f['receivers_out_of_order']} "
         f"other-user {f['leaked_to_other_user']}")
    rp = f["receiver_p95_ms"]
    value(name, "per-receiver p95 ms", rp["median"], f"best {rp['best']} / worst {rp['worst']}")
    dist(name, "skew first→last rcvr ms", f["fanout_skew_ms"])
    trend = f["latency_trend"]
    value(name, "last/first event p50", _ratio(trend), "  ".join(f"{k[6:-7]}: {v} ms" for k, v in trend.items())
          + " (≫1: the relay falls behind the event rate)")

    b = results["burst"]["ice"]
    name = f"2a ICE burst {b['frames']}"
    value(name, "deliver all ms", b["deliver_all_ms"], f"client wrote all in {b['client_send_ms']} ms")
    value(name, "frames/s", b["frames_per_s"],
          f"in order {b['in_order']} RATE_LIMITED {b['rate_limited']} silent loss {b['silently_lost']}")
    e = results["burst"]["events"]
    name = f"2b event burst {e['events']}×{e['receivers']}"
    value(name, "deliver all ms", e["deliver_all_ms"], f"client wrote all in {e['client_send_ms']} ms")
    value(name, "events/s", e["events_per_s"],
          f"misordered {e['receivers_out_of_order']} RATE_LIMITED {e['rate_limited']} silent loss "
          f"{e['silently_lost']}")

    s = results["setup"]
    name = f"3 session setup ×{s['completed']}/{s['rounds']}"
    dist(name, "request→credentials ms", s["request_to_credentials_ms"])
    dist(name, "request→answer@robot ms", s["request_to_answer_ms"])
    dist(name, "round incl. close ms", s["round_with_close_ms"])

    c = results["connect"]
    name = f"4 connect {c['app_sockets']} apps+{c['robot_sockets']} robots"
    dist(name, "app handshake ms", c["app_handshake_ms"],
         f"{c['app_handshakes_per_s']}/s, {c['concurrency']} in flight")
    dist(name, "robot handshake ms", c["robot_handshake_ms"], f"{c['robot_handshakes_per_s']}/s")
    value(name, "KiB RSS per socket", c["kib_per_socket"],
          f"RSS KiB before {c['rss_kib_before']} open {c['rss_kib_open']} closed {c['rss_kib_after_close']}")

    for key, label in (("fanout", "1"), ("burst", "2"), ("setup", "3"), ("connect", "4")):
        cpu = results[key]["cpu"]
        db = cpu["db_connections_opened"]
        value(f"{label} resources", "relay CPU s (sum)", sum(cpu["relays_cpu_s"]),
              f"per relay {cpu['relays_cpu_s']}, wall {cpu['wall_s']} s, client CPU {cpu['client_cpu_s']} s"
              + (f", PostgreSQL connections opened {db}" if db is not None else ""))

    header = ["scenario", "metric", "p50/value", "p95", "p99", "max", "p95/p50", "notes"]
    cells = [header] + [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header) - 1)]
    lines = []
    for i, row in enumerate(cells):
        line = "  ".join(c.ljust(w) if j < 2 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths, strict=False)))
        lines.append(f"{line}  {row[-1]}".rstrip())
        if i == 0:
            lines.append("-" * len(lines[0]))
    return lines


def main(argv=None) -> int:
    """Set up, run every scenario, print the table; exit 1 on a correctness failure."""
    args = parse_args(argv)
    mode = stack_mod.detect_mode()
    n = sizes(args.quick)
    cores = os.cpu_count() or 1
    started = time.perf_counter()
    st = stack_mod.Stack(mode, relays=args.relays, log_level=args.log_level)
    print(f"WIM-Z relay bench ({'quick' if args.quick else 'full'} run) — mode {st.describe()}", flush=True)
    try:
        with st:
            people = {
                "fanout": st.provision("fan", 1),
                "stranger": st.provision("stranger", 1),
                "burst": st.provision("burst", 1),
                "setup": st.provision("setup", 1),
                "connect": st.provision("conn", n["connect_robots"]),
            }
            setup_seconds = time.perf_counter() - started
            results = asyncio.run(run_all(st, n, people))
            results["presence_rows_left_open"] = asyncio.run(presence_left_open(st))
            errors_logged = sum(r.output().count(" ERROR ") for r in st.relays)
            tracebacks = sum(r.output().count("Traceback") for r in st.relays)
    except Exception as exc:
        print(f"bench could not run: {exc!r}; relay logs kept in {st.tmp}", file=sys.stderr)
        return 2

    failures = [msg for key in ("fanout", "burst", "setup", "connect") for msg in results[key]["failures"]]
    if results["presence_rows_left_open"]:
        failures.append(f"{results['presence_rows_left_open']} presence rows still open after every socket closed")
    if tracebacks:
        failures.append(f"relays logged {tracebacks} traceback(s)")
    total = time.perf_counter() - started
    print(f"setup {setup_seconds:.1f} s (migrate {st.migrate_seconds:.1f} s), scenarios "
          f"{results['scenario_seconds']} s, total {total:.1f} s; python {platform.python_version()}, {cores} cores")
    print(NOISE_NOTE.format(cores=cores))
    print()
    for line in table(results):
        print(line)
    print()
    print(f"relay ERROR lines: {errors_logged}, tracebacks: {tracebacks}; presence rows left open: "
          f"{results['presence_rows_left_open']}")
    print("correctness: " + ("OK" if not failures else "FAILED\n  " + "\n  ".join(failures)))
    if args.json:
        report = {"mode": mode, "description": st.describe(), "quick": args.quick, "cores": cores,
                  "python": platform.python_version(), "sizes": n, "total_seconds": round(total, 1),
                  "relay_error_lines": errors_logged, "relay_tracebacks": tracebacks,
                  "failures": failures, **results}
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=2)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
