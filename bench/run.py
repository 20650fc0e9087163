"""Run the relay benchmarks: `python -m bench.run [--quick] [--scenario NAME] [--json PATH] [--out DIR] [--write-docs]`.

Targets, one after the other, each started fresh: the raw WebSocket floor, the Channels floor, the relay
on one instance and on two (robot on A, apps on B; services mode only). Every scenario runs against
every target with the same load generator and frames; the report is JSON, a Markdown table with ratios
to the raw floor and the targets (met / not met), and PNG plots. Timings are never asserted. Exit
status: 0 ok, 1 a correctness failure of the relay (lost frames, counts that do not add up, duplicates,
misordering, error frames, refused handshakes, a stranger receiving frames, tracebacks in its log), 2
the bench could not run. Floors' own failures are reported as notes and do not change the status.
"""

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from . import procs, report
from .scenarios import RUNNERS, SCENARIOS, settle
from .stack import LOCAL, ROOT, TARGETS, Services, detect_mode, start_target

QUICK = {
    "latency_frames": 200,
    "p100_pairs": 100,
    "p100_rate": 20.0,
    "p100_seconds": 4.0,
    "p1000_pairs": 300,
    "p1000_rate": 2.0,
    "p1000_seconds": 4.0,
    "max_pairs": 20,
    "max_steps": [100, 250, 500, 1000, 2000, 4000, 6000, 8000, 12000],
    "max_step_seconds": 1.5,
    "max_p99_ms": 50.0,
    "max_rate_cap": 1e9,
    "setup_concurrent": 100,
    "setup_rounds": 2,
    "fanout_apps": 10,
    "fanout_events": 200,
    "fanout_rate": 100.0,
    "memory_levels": [250, 500, 1000],
    "memory_concurrency": 50,
    "scenario_seconds": 90.0,
    "memory_seconds": 120.0,
}
FULL = {
    **QUICK,
    "latency_frames": 1000,
    "p100_seconds": 20.0,
    "p1000_pairs": 1000,
    "p1000_seconds": 20.0,
    "max_pairs": 50,
    "max_steps": [100, 250, 500, 1000, 1500, 2000, 3000, 4000, 5000, 6000, 8000, 10000, 12500, 15000, 20000],
    "max_step_seconds": 4.0,
    "setup_rounds": 10,
    "fanout_events": 1000,
    "memory_levels": [1000, 5000, 10000],
    "memory_concurrency": 100,
    "scenario_seconds": 240.0,
    "memory_seconds": 420.0,
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run of about 2-3 minutes")
    parser.add_argument(
        "--scenario", action="append", choices=SCENARIOS, help="run only this scenario (repeatable); default all"
    )
    parser.add_argument("--target", action="append", choices=TARGETS, help="run only this target (repeatable)")
    parser.add_argument("--json", metavar="PATH", help="write every figure here (default OUT/bench-<mode>.json)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"), help="directory for JSON, table, plots")
    parser.add_argument(
        "--relay-root",
        default=str(ROOT),
        help="checkout whose relay to measure (e.g. a git worktree of an older commit)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a size, e.g. --set max_rate_cap=1000 --set memory_levels=500,1000",
    )
    parser.add_argument("--write-docs", action="store_true", help="rewrite a section of docs/performance.md")
    parser.add_argument("--section", default="latest", help="docs section for --write-docs (latest, before, …)")
    parser.add_argument("--label", default=None, help="heading of that docs section")
    parser.add_argument("--profile-json", default=None, help="profile JSON (bench.profile) to put in the docs")
    return parser.parse_args(argv)


def sizes(quick: bool, overrides: list[str]) -> dict:
    n = dict(QUICK if quick else FULL)
    for item in overrides:
        key, _, value = item.partition("=")
        if key not in n:
            raise SystemExit(f"--set: unknown size {key!r}; known: {', '.join(sorted(n))}")
        if isinstance(n[key], list):
            n[key] = [float(v) if "." in v else int(v) for v in value.split(",") if v]
        else:
            n[key] = type(n[key])(float(value)) if isinstance(n[key], int) else float(value)
    return n


def machine(relay_root: Path) -> dict:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "-C", str(relay_root), "log", "-1", "--format=%h %s"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()[:90]
        dirty = subprocess.run(
            ["git", "-C", str(relay_root), "status", "--porcelain", "--", "relay", "wimz"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
        commit += " (+ uncommitted relay changes)" if dirty else ""
    except (OSError, subprocess.SubprocessError):
        commit = "?"
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "python": platform.python_version(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "relay_commit": commit,
        "loadavg": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
    }


async def run_target(target, scenarios: list[str], n: dict) -> dict:
    out = {}
    for name in scenarios:
        budget = n["memory_seconds"] if name == "memory" else n["scenario_seconds"]
        deadline = time.perf_counter() + budget
        started = time.perf_counter()
        waited = await settle(target)
        print(f"  {target.name}: {name} (settled {waited} s) …", end="", flush=True)
        try:
            result = await asyncio.wait_for(RUNNERS[name](target, n, deadline), timeout=budget + 60)
        except TimeoutError:
            result = {"failures": [f"{name}: did not finish within {budget + 60:.0f} s"]}
        except Exception as exc:  # one scenario's crash is reported, the run goes on
            result = {"failures": [f"{name}: crashed: {type(exc).__name__}: {exc}"]}
        result["seconds"] = round(time.perf_counter() - started, 1)
        result["settle_seconds"] = waited
        out[name] = result
        print(
            f" {result['seconds']} s" + (f"  [{len(result['failures'])} failure(s)]" if result["failures"] else ""),
            flush=True,
        )
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    n = sizes(args.quick, args.set)
    mode = detect_mode()
    relay_root = Path(args.relay_root).resolve()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    scenarios = args.scenario or list(SCENARIOS)
    targets = args.target or list(TARGETS)
    skipped = {}
    if mode == LOCAL and "relay2" in targets:
        targets.remove("relay2")
        skipped["relay2"] = "local mode (in-memory layer) runs one instance only; set DATABASE_URL and REDIS_URL"
    nofile = procs.raise_nofile()
    need = max(n["memory_levels"]) + 2 * n["p1000_pairs"] + 100
    notes = []
    if nofile < need:
        capped = [lv for lv in n["memory_levels"] if lv + 100 <= nofile] or [max(100, nofile - 200)]
        notes.append(f"open-file limit {nofile} < {need}: memory levels capped to {capped}")
        n["memory_levels"] = capped
    pinned = procs.pin(0, procs.CLIENT_CORE)
    meta = {
        "mode": mode,
        "quick": args.quick,
        "sizes": n,
        "overrides": " ".join(args.set),
        **machine(relay_root),
        "client_pinned_to_core": procs.CLIENT_CORE if pinned else None,
        "server_core": procs.SERVER_CORE if pinned else None,
        "nofile": nofile,
    }
    print(
        f"WIM-Z relay bench ({'quick' if args.quick else 'full'}), {meta['nproc']} cores, Python {meta['python']}, "
        f"relay {meta['relay_commit']}",
        flush=True,
    )
    if not pinned:
        notes.append("not pinned (one core): servers and load generator share it")
    started = time.perf_counter()
    per, failures = {}, []
    max_idle = max(n["memory_levels"]) if "memory" in scenarios else 0
    pairs = max(
        n["p1000_pairs"] if "pairs1000" in scenarios else 0, n["p100_pairs"], n["setup_concurrent"], n["max_pairs"], 1
    )
    try:
        with Services(mode, relay_root) as services:
            meta["description"] = services.describe()
            print(services.describe(), flush=True)
            for name in targets:
                measured = bench_target(
                    name, services, scenarios, n, pairs=pairs, idle=max_idle, failures=failures, notes=notes
                )
                if measured is not None:
                    per[name] = measured
            if any(t.startswith("relay") for t in per):
                left = services.open_presence_rows()
                if left:
                    notes.append(f"{left} relay presence rows still open after all targets stopped")
    except Exception as exc:
        print(f"bench could not run: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    meta["total_seconds"] = round(time.perf_counter() - started, 1)
    results = {"meta": meta, "targets": per, "skipped": skipped, "failures": failures, "notes": notes}
    write_report(results, args, out_dir)
    return 1 if failures else 0


def bench_target(
    name: str, services: Services, scenarios: list[str], n: dict, *, pairs: int, idle: int, failures: list, notes: list
) -> dict | None:
    """Start target `name`, run `scenarios` against it and stop it; its results, None when it could not start.

    What went wrong is appended to `failures` for a relay target (a correctness failure) and to `notes` for
    a floor; a traceback in the server log marks the run failed (`services.failed`: its files are kept).
    """
    t0 = time.perf_counter()
    try:
        target = start_target(name, services, pairs=pairs, idle=idle)
    except Exception as exc:
        services.failed = True
        msg = f"{name}: could not start: {exc}"
        (failures if name.startswith("relay") else notes).append(msg[:2000])
        print(msg[:2000], file=sys.stderr)
        return None
    print(f"{target.label}: started in {time.perf_counter() - t0:.1f} s (pids {target.pids})", flush=True)
    try:
        measured = asyncio.run(run_target(target, scenarios, n))
    finally:
        target.stop()
    logs = target.logs()
    tracebacks = logs.count("Traceback")
    measured["server_log"] = {"tracebacks": tracebacks, "error_lines": logs.count(" ERROR ")}
    found = [f"{name}/{msg}" for r in measured.values() if isinstance(r, dict) for msg in r.get("failures", [])]
    if tracebacks:
        found.append(f"{name}: {tracebacks} traceback(s) in the server log ({services.tmp})")
        services.failed = True
    if target.kind == "relay":
        failures += found
    else:
        notes += found
    return measured


def write_report(results: dict, args: argparse.Namespace, out_dir: Path) -> None:
    """Write the run's JSON, Markdown table and plots (and with `--write-docs` its docs section); print a summary."""
    meta, per, failures, notes = results["meta"], results["targets"], results["failures"], results["notes"]
    mode = meta["mode"]
    json_path = Path(args.json) if args.json else out_dir / f"bench-{mode}{'-quick' if args.quick else ''}.json"
    json_path.write_text(json.dumps(results, indent=1))
    table = report.markdown(report.table_rows(per))
    (out_dir / "table.md").write_text(table + "\n")
    images = report.plots(per, out_dir, prefix=f"{args.section}-")
    print()
    print(table)
    print()
    print("Targets:")
    print("\n".join("  " + line for line in report.targets_summary(per)))
    for note in notes:
        print(f"note: {note}")
    print(f"\nJSON {json_path}; table {out_dir / 'table.md'}; plots {', '.join(str(p) for p in images) or 'none'}")
    if args.write_docs:
        profile = json.loads(Path(args.profile_json).read_text()) if args.profile_json else None
        print(f"docs: {report.write_docs(results, args.section, args.label, profile, images)}")
    verdict = "OK" if not failures else "FAILED\n  " + "\n  ".join(failures)
    print(f"total {meta['total_seconds']} s; correctness: {verdict}")


if __name__ == "__main__":
    sys.exit(main())
