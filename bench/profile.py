"""Where the relay's time goes: `python -m bench.profile [--relay-root DIR] [--seconds 15] [--json PATH]`.

Starts one relay (same services mode, throwaway database and Redis prefix as `bench.run`), puts it under
the 100 pairs × 20 frames/s load (half robot → app, half app → robot), and samples it with py-spy
(`py-spy record --pid … --format raw --nonblocking`: no pause of the relay, active threads only). Prints
the top functions by inclusive share (a sample counts once per function on its stack), their self
share, and the inclusive share per package (relay, channels_redis, daphne, twisted, django, …).

py-spy needs ptrace rights on the relay process (root, or `kernel.yama.ptrace_scope` 0/1 for a child).
If it cannot attach, the run says so and exits 2; nothing else falls back silently.
"""

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from . import procs
from .load import Recorder, drain, offered_load
from .scenarios import Window, interleaved, open_pairs
from .stack import ROOT, Services, detect_mode, start_target

FRAME_RE = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def parse_collapsed(text: str) -> tuple[int, Counter, Counter, Counter, Counter]:
    """(samples, inclusive, self, package inclusive, package self) from py-spy's raw (collapsed) output."""
    total = 0
    inclusive, self_, pkg_incl, pkg_self = Counter(), Counter(), Counter(), Counter()
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = []
        for raw in stack.split(";"):
            m = FRAME_RE.match(raw)
            func, file = (m.group("func"), m.group("file")) if m else (raw, "?")
            frames.append((f"{func} ({file})", package_of(file)))
        for name in {f for f, _ in frames}:
            inclusive[name] += n
        for pkg in {p for _, p in frames}:
            pkg_incl[pkg] += n
        if frames:
            self_[frames[-1][0]] += n
            pkg_self[frames[-1][1]] += n
    return total, inclusive, self_, pkg_incl, pkg_self


def package_of(file: str) -> str:
    """`channels_redis/core.py` → channels_redis, `relay/consumers.py` → relay, `<string>` → <string>."""
    file = file.replace("\\", "/")
    for marker in ("site-packages/", "dist-packages/"):
        if marker in file:
            file = file.split(marker, 1)[1]
    parts = [p for p in file.split("/") if p]
    if len(parts) > 1 and parts[0] in ("tmp", "work", "usr", "root"):
        # an absolute path py-spy did not shorten: keep the part after the checkout or lib directory
        for anchor in ("relay", "devices", "accounts", "wimz", "bench"):
            if anchor in parts:
                return anchor
        parts = parts[-2:]
    return parts[0].removesuffix(".py") if parts else "?"


def hot_paths(text: str, depth: int = 4, top: int = 12) -> list[dict]:
    """The heaviest stack tails (last `depth` frames, line numbers dropped) with their share of samples."""
    paths, total = Counter(), 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        total += int(count)
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
        paths[" ← ".join(reversed(frames[-depth:]))] += int(count)
    return [{"path": p, "pct": round(100 * c / total, 2)} for p, c in paths.most_common(top)] if total else []


def summarize(text: str, top: int = 40) -> dict:
    total, inclusive, self_, pkg_incl, pkg_self = parse_collapsed(text)
    if not total:
        return {"samples": 0, "inclusive": [], "by_package": []}
    rows = [
        {"function": f, "inclusive_pct": round(100 * c / total, 2), "self_pct": round(100 * self_[f] / total, 2)}
        for f, c in inclusive.most_common(top)
    ]
    self_rows = [{"function": f, "self_pct": round(100 * c / total, 2)} for f, c in self_.most_common(top)]
    packages = [
        {"package": p, "inclusive_pct": round(100 * c / total, 2), "self_pct": round(100 * pkg_self[p] / total, 2)}
        for p, c in pkg_incl.most_common()
    ]
    return {
        "samples": total,
        "inclusive": rows,
        "self": self_rows,
        "by_package": packages,
        "hot_paths": hot_paths(text),
    }


async def profile_run(target, args) -> dict:
    rec = Recorder()
    deadline = time.perf_counter() + args.seconds + 120
    robots, apps, info = await open_pairs(target, target.people.pairs[: args.pairs], rec, deadline)
    await asyncio.sleep(1.0)
    phase = rec.start(1)
    raw_path = Path(args.out) / f"profile-{args.tag}.txt"
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    window = Window(target)
    load = asyncio.create_task(
        offered_load(interleaved(robots, apps), phase, args.rate * len(robots), args.seconds + 2, deadline)
    )
    await asyncio.sleep(1.0)
    cmd = [
        spy,
        "record",
        "--pid",
        str(target.pids[0]),
        "--duration",
        str(int(args.seconds)),
        "--rate",
        str(args.rate_hz),
        "--format",
        "raw",
        "--output",
        str(raw_path),
        "--nonblocking",
    ]
    result = await asyncio.to_thread(
        subprocess.run, cmd, capture_output=True, text=True, timeout=args.seconds + 60, check=False
    )
    sent = await load
    await drain(rec, phase, idle=3.0, cap=30.0)
    acc = phase.accounting()
    cpu = window.close(acc["delivered"])
    for c in [*robots, *apps]:
        await c.close()
    if result.returncode or not raw_path.exists():
        raise RuntimeError(
            f"py-spy could not sample the relay (exit {result.returncode}): {(result.stderr or result.stdout)[-1500:]}"
        )
    out = summarize(raw_path.read_text())
    out.update(
        sampler="py-spy",
        rate_hz=args.rate_hz,
        seconds=args.seconds,
        raw=str(raw_path),
        load=f"{len(robots)} pairs × {args.rate:g} frames/s",
        pairs=info["pairs_open"],
        sent=sent,
        accounting={k: v for k, v in acc.items() if k != "by_direction"},
        latency_ms=phase.latency_summary()["both"],
        server_cpu_pct=cpu["server_cpu_pct"],
        server_us_per_frame=cpu.get("server_us_per_frame"),
        cpu=cpu,
    )
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.splitlines()[0])
    parser.add_argument("--relay-root", default=str(ROOT), help="checkout whose relay to profile")
    parser.add_argument("--seconds", type=float, default=15.0, help="sampling time (the load runs 3 s longer)")
    parser.add_argument("--rate-hz", type=int, default=100, help="py-spy samples per second")
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--rate", type=float, default=20.0, help="frames/s per pair (half each way)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    parser.add_argument("--tag", default="latest", help="file name tag: profile-<tag>.json/.txt")
    parser.add_argument("--label", default=None, help="heading used in docs/performance.md")
    parser.add_argument("--json", default=None, help="summary JSON (default OUT/profile-<tag>.json)")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    procs.raise_nofile()
    procs.pin(0, procs.CLIENT_CORE)
    try:
        with Services(detect_mode(), Path(args.relay_root)) as services:
            target = start_target("relay1", services, pairs=args.pairs, idle=0)
            try:
                result = asyncio.run(profile_run(target, args))
            finally:
                target.stop()
            result["mode"] = services.describe()
    except Exception as exc:
        print(f"profile could not run: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    result["label"] = args.label or f"relay at {args.relay_root}"
    result["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    path = Path(args.json) if args.json else Path(args.out) / f"profile-{args.tag}.json"
    path.write_text(json.dumps(result, indent=1))
    print(
        f"{result['label']}: {result['samples']} samples, relay CPU {result['server_cpu_pct']} % of a core, "
        f"{result['server_us_per_frame']} µs per relayed frame, load {result['load']}, accounting "
        f"{result['accounting']}"
    )
    print(f"\n{'incl %':>7} {'self %':>7}  function")
    for row in result["inclusive"][: args.top]:
        print(f"{row['inclusive_pct']:7.1f} {row['self_pct']:7.1f}  {row['function']}")
    print(f"\n{'self %':>7}  function (top self)")
    for row in result["self"][:15]:
        print(f"{row['self_pct']:7.1f}  {row['function']}")
    print(f"\n{'incl %':>7} {'self %':>7}  package")
    for row in result["by_package"][:15]:
        print(f"{row['inclusive_pct']:7.1f} {row['self_pct']:7.1f}  {row['package']}")
    print("\nhot paths (leaf ← callers):")
    for row in result["hot_paths"][:10]:
        print(f"{row['pct']:7.1f}  {row['path']}")
    print(f"\nsummary {path}; raw stacks {result['raw']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
