"""Reports of a bench run: the Markdown table with ratios and targets, PNG plots, and docs/performance.md.

`python -m bench.report RESULTS.json [--write-docs] [--section latest|before] [--label TEXT] [--profile P.json]`
rebuilds the table, plots and (with `--write-docs`) the matching section of docs/performance.md from a
saved run, without running anything. `python -m bench.run --write-docs` does the same right after a run.
"""

import argparse
import json
import operator
import re
import shutil
from pathlib import Path

from .stack import ROOT, TARGET_LABELS, TARGETS

DOCS = ROOT / "docs" / "performance.md"
DOCS_IMG = ROOT / "docs" / "performance"
COLUMNS = [
    "figure",
    *(TARGET_LABELS[t] for t in TARGETS),
    "relay/raw floor (1 inst; 2 inst)",
    "relay/channels floor (1; 2)",
    "target",
    "met?",
]


def dig(data, *path):
    """`data[path[0]][path[1]]…`, None when any step is missing."""
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def _level(mem: dict | None, sockets: int):
    for row in (mem or {}).get("levels", []):
        if row["sockets"] == sockets:
            return row["kib_per_socket"]
    return None


def _counts(result: dict | None) -> str | None:
    acc = dig(result, "accounting")
    if not acc:
        return None
    text = f"{acc['delivered']} / {acc['rate_limited']} / {acc['lost']}"
    if acc.get("other_errors"):
        text += f" (+{acc['other_errors']} other errors)"
    return text


def _lost(result):
    return dig(result, "accounting", "lost")


class Row:
    """One table row: a label, how to read the figure from one target's results, and its targets.

    `targets` is a list of `(target name, op, bound, text)`; `bound` is a number or a function of the
    run's results per target (e.g. 3 × the raw floor's p50).
    """

    def __init__(self, label, get, targets=(), ratio=True):
        self.label = label
        self.get = get
        self.targets = list(targets)
        self.ratio = ratio

    def values(self, per_target: dict) -> dict:
        return {t: (self.get(per_target[t]) if t in per_target else None) for t in TARGETS}


LE, LT, GE, EQ = operator.le, operator.lt, operator.ge, operator.eq
OPS = {LE: "≤", LT: "<", GE: "≥", EQ: "="}


def floor_times(floor, direction, factor):
    """A bound of `factor` × that floor's 1-pair p50 in `direction`."""

    def bound(per):
        v = dig(per, floor, "latency", "latency_ms", direction, "p50")
        return None if v is None else factor * v

    return bound


def latency_targets(direction):
    """'1 pair one-way p50 ≤ 3 × floor (1 instance), ≤ 4 × floor (2 instances)', against each floor: the raw floor
    says what the whole stack costs, the channels floor what our code adds to it."""
    return [
        ("relay1", LE, floor_times("raw", direction, 3), "≤ 3 × raw floor"),
        ("relay1", LE, floor_times("channels", direction, 3), "≤ 3 × channels floor"),
        ("relay2", LE, floor_times("raw", direction, 4), "≤ 4 × raw floor (2 inst)"),
        ("relay2", LE, floor_times("channels", direction, 4), "≤ 4 × channels floor (2 inst)"),
    ]


def _kib(n):
    return lambda r: _level(dig(r, "memory"), n)


ROWS = [
    Row(
        "1 pair robot→app one-way p50 ms",
        lambda r: dig(r, "latency", "latency_ms", "r2a", "p50"),
        latency_targets("r2a"),
    ),
    Row("1 pair robot→app p90 / p99 ms", lambda r: _pair(dig(r, "latency", "latency_ms", "r2a"), "p90", "p99")),
    Row(
        "1 pair app→robot one-way p50 ms",
        lambda r: dig(r, "latency", "latency_ms", "a2r", "p50"),
        latency_targets("a2r"),
    ),
    Row("1 pair app→robot p90 / p99 ms", lambda r: _pair(dig(r, "latency", "latency_ms", "a2r"), "p90", "p99")),
    Row("100 pairs × 20/s: p50 ms", lambda r: dig(r, "pairs100", "latency_ms", "both", "p50")),
    Row(
        "100 pairs × 20/s: p99 ms",
        lambda r: dig(r, "pairs100", "latency_ms", "both", "p99"),
        [("relay1", LE, 10, "≤ 10 ms")],
    ),
    Row("100 pairs × 20/s: delivered / RATE_LIMITED / lost", lambda r: _counts(dig(r, "pairs100")), ratio=False),
    Row("100 pairs × 20/s: lost", lambda r: _lost(dig(r, "pairs100")), [("relay1", EQ, 0, "0 lost")], ratio=False),
    Row("1,000 pairs × 2/s: p50 / p99 ms", lambda r: _pair(dig(r, "pairs1000", "latency_ms", "both"), "p50", "p99")),
    Row("1,000 pairs × 2/s: delivered / RATE_LIMITED / lost", lambda r: _counts(dig(r, "pairs1000")), ratio=False),
    Row("1,000 pairs × 2/s: lost", lambda r: _lost(dig(r, "pairs1000")), [("relay1", EQ, 0, "0 lost")], ratio=False),
    Row("1,000 pairs × 2/s: pairs opened", lambda r: dig(r, "pairs1000", "pairs"), ratio=False),
    Row("max sustained relayed frames/s", lambda r: dig(r, "max", "max_sustained_per_s")),
    Row(
        "server CPU µs per frame at that rate",
        lambda r: dig(r, "max", "server_us_per_frame"),
        [("relay1", LE, 200, "≤ 200 µs"), ("relay2", LE, 400, "≤ 400 µs (2 inst)")],
    ),
    Row(
        "relayed frames/s per server core",
        lambda r: dig(r, "max", "frames_per_core_s"),
        [("relay1", GE, 5000, "≥ 5,000"), ("relay2", GE, 2500, "≥ 2,500 (2 inst)")],
    ),
    Row("lowest ramp step: offered/s, server µs per frame, p99 ms", lambda r: _first_step(dig(r, "max")), ratio=False),
    Row("client CPU % at max (≥ 90: client-bound)", lambda r: dig(r, "max", "client_cpu_pct_at_max"), ratio=False),
    Row(
        "session setup ×100 concurrent: request→credentials p50 ms",
        lambda r: dig(r, "setup", "request_to_credentials_ms", "p50"),
        [("relay1", LE, 3, "≤ 3 ms")],
    ),
    Row(
        "session setup: request→credentials p99 ms",
        lambda r: dig(r, "setup", "request_to_credentials_ms", "p99"),
        [("relay1", LE, 10, "≤ 10 ms")],
    ),
    Row(
        "session setup: request→answer at robot p50 / p99 ms",
        lambda r: _pair(dig(r, "setup", "request_to_answer_at_robot_ms"), "p50", "p99"),
    ),
    Row("idle robot socket KiB RSS at 1,000", _kib(1000), [("relay1", LE, 25, "≤ 25 KiB")]),
    Row("idle robot socket KiB RSS at 5,000", _kib(5000), [("relay1", LE, 25, "≤ 25 KiB")]),
    Row("idle robot socket KiB RSS at 10,000", _kib(10000), [("relay1", LE, 25, "≤ 25 KiB")]),
    Row("idle robot socket KiB RSS at the largest level", lambda r: _last_level(dig(r, "memory"))),
    Row(
        "idle robot sockets held (most)",
        lambda r: max((x["sockets"] for x in dig(r, "memory", "levels") or []), default=None),
        [("relay1", GE, 10000, "10,000 on 1 instance")],
        ratio=False,
    ),
    Row(
        "fan-out 1 event → 10 apps: server µs per event",
        lambda r: dig(r, "fanout", "phases", "to_10", "cpu", "server_us_per_event"),
    ),
    Row(
        "fan-out 1 event → 1 app: server µs per event",
        lambda r: dig(r, "fanout", "phases", "to_1", "cpu", "server_us_per_event"),
    ),
    Row(
        "fan-out cost 10 apps / 1 app (server CPU)",
        lambda r: dig(r, "fanout", "cpu_ratio_many_to_one"),
        [("relay1", LT, 3, "< 3 single sends"), ("relay2", LT, 3, "< 3 (2 inst)")],
        ratio=False,
    ),
    Row(
        "fan-out latency p50 10 apps / 1 app", lambda r: dig(r, "fanout", "latency_p50_ratio_many_to_one"), ratio=False
    ),
    Row(
        "fan-out: frames a stranger received",
        lambda r: dig(r, "fanout", "stranger_received"),
        [("relay1", EQ, 0, "0"), ("relay2", EQ, 0, "0")],
        ratio=False,
    ),
]


def _last_level(mem):
    levels = (mem or {}).get("levels") or []
    return f"{levels[-1]['kib_per_socket']:.1f} @ {levels[-1]['sockets']:,}" if levels else None


def _first_step(m):
    f = (m or {}).get("first_step")
    if not f:
        return None
    return f"{_fmt(f['offered_per_s'])}, {_fmt(f['server_us_per_frame'])} µs, {_fmt(f['p99_ms'])} ms"


def _pair(s: dict | None, a: str, b: str):
    if not s or s.get("n", 0) == 0:
        return None
    return f"{_fmt(s.get(a))} / {_fmt(s.get(b))}"


def _fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        if abs(v) >= 10:
            return f"{v:.1f}"
        return f"{v:.2f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _first_number(v):
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str):
        m = re.match(r"\s*([\d.]+)", v.replace(",", ""))
        return float(m.group(1)) if m else None
    return None


def evaluate(row: Row, per: dict) -> list[tuple[str, str, bool | None]]:
    """For each target of `row`: (target text, column, met? — None when a figure is missing)."""
    out = []
    values = row.values(per)
    for column, op, bound, text in row.targets:
        b = bound(per) if callable(bound) else bound
        v = _first_number(values.get(column))
        met = None if v is None or b is None else bool(op(v, b))
        out.append((text if not callable(bound) else f"{text} ({_fmt(b)})", column, met))
    return out


def table_rows(per: dict) -> list[list[str]]:
    """The table as cells: COLUMNS then one row per figure."""
    rows = [COLUMNS]
    for row in ROWS:
        values = row.values(per)
        cells = [row.label, *(_fmt(values[t]) for t in TARGETS)]
        for floor in ("raw", "channels"):
            ratio = "–"
            if row.ratio:
                base = _first_number(values[floor])
                parts = []
                for t in ("relay1", "relay2"):
                    v = _first_number(values[t])
                    parts.append(f"×{v / base:.1f}" if base and v is not None else "–")
                ratio = "; ".join(parts)
            cells.append(ratio)
        checks = evaluate(row, per)
        cells.append("; ".join(text for text, _, _ in checks) or "")
        cells.append("; ".join({True: "met", False: "**not met**", None: "n/a"}[met] for _, _, met in checks) or "")
        rows.append(cells)
    return rows


def markdown(rows: list[list[str]]) -> str:
    """A GitHub Markdown table."""
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows[1:]]
    return "\n".join(lines)


def targets_summary(per: dict) -> list[str]:
    """One line per target: met / not met / n/a, with the figure."""
    out = []
    for row in ROWS:
        values = row.values(per)
        for text, column, met in evaluate(row, per):
            status = {True: "met", False: "NOT MET", None: "n/a"}[met]
            value = _fmt(values.get(column))
            out.append(f"{status:8s} {row.label} [{TARGET_LABELS[column]}] = {value} (target {text})")
    return out


# --- plots ---------------------------------------------------------------------------------------------


_COLORS = {"raw": "tab:gray", "channels": "tab:blue", "relay1": "tab:red", "relay2": "tab:orange"}


def plots(per: dict, out_dir: Path, prefix: str = "") -> list[Path]:
    """latency CDF, latency vs offered load, memory vs sockets as PNGs in `out_dir`; [] without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, draw in (
        ("latency-cdf", _plot_latency_cdf),
        ("latency-vs-load", _plot_latency_vs_load),
        ("memory-vs-sockets", _plot_memory),
    ):
        fig = draw(plt, per)
        fig.tight_layout()
        paths.append(out_dir / f"{prefix}{name}.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


def _label(ax, xlabel: str, ylabel: str, title: str) -> None:
    """Axis labels, title, a light grid and a legend when something was plotted."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def _plot_latency_cdf(plt, per: dict):
    """One-way latency CDFs: one pair (both directions) and 100 pairs, side by side."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for t in TARGETS:
        for d, style in (("r2a", "-"), ("a2r", "--")):
            pts = dig(per, t, "latency", "cdf", d)
            if pts:
                axes[0].plot(
                    [p[0] for p in pts],
                    [p[1] for p in pts],
                    style,
                    color=_COLORS[t],
                    label=f"{TARGET_LABELS[t]} {'robot→app' if d == 'r2a' else 'app→robot'}",
                )
        pts = dig(per, t, "pairs100", "cdf")
        if pts:
            axes[1].plot([p[0] for p in pts], [p[1] for p in pts], color=_COLORS[t], label=TARGET_LABELS[t])
    for ax, title in zip(axes, ("1 pair, one frame at a time", "100 pairs × 20 frames/s"), strict=True):
        ax.set_xscale("log")
        _label(ax, "one-way latency (ms, log)", "fraction of frames", title)
    return fig


def _plot_latency_vs_load(plt, per: dict):
    """p50 and p99 latency at each step of the max-throughput ramp."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for t in TARGETS:
        steps = dig(per, t, "max", "steps") or []
        if steps:
            x = [s["offered_per_s"] for s in steps]
            ax.plot(
                x,
                [s["latency_ms"].get("p50") for s in steps],
                "-o",
                color=_COLORS[t],
                ms=3,
                label=f"{TARGET_LABELS[t]} p50",
            )
            ax.plot(
                x, [s["latency_ms"].get("p99") for s in steps], ":", color=_COLORS[t], label=f"{TARGET_LABELS[t]} p99"
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    _label(
        ax,
        "offered frames/s (all pairs, both directions)",
        "one-way latency (ms)",
        "Latency vs offered load (ramp ends at the first step not sustained)",
    )
    return fig


def _plot_memory(plt, per: dict):
    """Server RSS growth against the number of idle robot sockets."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for t in TARGETS:
        levels = dig(per, t, "memory", "levels") or []
        if levels:
            ax.plot(
                [0] + [lv["sockets"] for lv in levels],
                [0] + [lv["rss_growth_kib"] / 1024 for lv in levels],
                "-o",
                color=_COLORS[t],
                ms=3,
                label=TARGET_LABELS[t],
            )
    _label(ax, "idle robot sockets", "server RSS growth (MiB, all instances)", "Memory vs idle sockets")
    return fig


# --- docs/performance.md -----------------------------------------------------------------------------

DOC_HEAD = """# Performance of the WIM-Z relay

Measured by the benchmark suite in `bench/` (`make bench`; how to run it and what every scenario does:
[`bench/README.md`](../bench/README.md)). Every figure is shown beside two floors measured in the same
run — a minimal raw WebSocket relay (`bench/floors/raw_ws.py`) and the relay's own stack with no
application logic (`bench/floors/channels_floor.py`: daphne + Channels + the relay's channel layer, a
consumer that only forwards) — so each row shows what the stack costs and what our code adds.
Servers run on core 0, the load generator on core 1; PostgreSQL and Redis float. Timings are never
asserted; the machine is shared and noisy, so read medians and ratios.

The sections below are rewritten by `python -m bench.run --write-docs` (section `latest`) and
`python -m bench.run --write-docs --section before --label "…"`; text outside the markers is kept.
"""


def _block(section: str, body: str) -> str:
    return f"<!-- bench:{section}:begin -->\n{body.rstrip()}\n<!-- bench:{section}:end -->"


def section_text(results: dict, per: dict, images: list[Path], label: str, profile: dict | None) -> str:
    meta = results.get("meta", {})
    lines = [
        f"## {label}",
        "",
        f"Run {meta.get('date', '?')} ({'quick' if meta.get('quick') else 'full'} sizes), mode "
        f"**{meta.get('mode', '?')}** ({meta.get('description', '')}); relay checkout "
        f"`{meta.get('relay_commit', '?')}`.",
        f"Machine: {meta.get('nproc', '?')} cores ({meta.get('cpu_model', '?')}), Python "
        f"{meta.get('python', '?')}, load average at start {meta.get('loadavg', '?')}; bench took "
        f"{meta.get('total_seconds', '?')} s.",
        "",
    ]
    if meta.get("overrides"):
        lines += [f"Sizes changed with `--set`: `{meta['overrides']}`.", ""]
    if results.get("skipped"):
        lines += ["Skipped: " + "; ".join(f"{k}: {v}" for k, v in results["skipped"].items()), ""]
    lines += [markdown(table_rows(per)), ""]
    lines += [
        f"Correctness: {'OK' if not results.get('failures') else 'FAILED'}"
        + ("" if not results.get("failures") else " — " + "; ".join(results["failures"][:8])),
        "",
    ]
    if results.get("notes"):
        lines += ["Notes: " + "; ".join(results["notes"]), ""]
    for img in images:
        lines.append(f"![{img.stem}](performance/{img.name})")
    if images:
        lines.append("")
    if profile:
        lines += profile_text(profile)
    return "\n".join(lines)


def profile_text(profile: dict, top: int = 20) -> list[str]:
    """'Where the time goes': the profile's top inclusive and self functions as Markdown."""
    lines = [
        f"### Where the time goes ({profile.get('label', 'profile')})",
        "",
        f"{profile.get('sampler', 'py-spy')} at {profile.get('rate_hz', '?')} Hz for "
        f"{profile.get('seconds', '?')} s against one relay process under {profile.get('load', '?')}; "
        f"{profile.get('samples', 0)} samples of active (GIL-holding or running) threads. Relay CPU "
        f"{profile.get('server_cpu_pct', '?')} % of a core, "
        f"{profile.get('server_us_per_frame', '?')} µs per relayed frame.",
        "",
        "| inclusive % | self % | function |",
        "|---:|---:|---|",
    ]
    for row in profile.get("inclusive", [])[:top]:
        lines.append(f"| {row['inclusive_pct']:.1f} | {row['self_pct']:.1f} | `{row['function']}` |")
    lines.append("")
    if profile.get("hot_paths"):
        lines += ["Hottest stack tails (leaf ← callers):", ""]
        lines += [f"- {p['pct']:.1f} % `{p['path']}`" for p in profile["hot_paths"][:8]]
        lines.append("")
    if profile.get("by_package"):
        lines += ["Inclusive share by package (a sample counts once per package on its stack):", ""]
        lines += ["| package | inclusive % | self % |", "|---|---:|---:|"]
        lines += [
            f"| {p['package']} | {p['inclusive_pct']:.1f} | {p['self_pct']:.1f} |" for p in profile["by_package"][:15]
        ]
        lines.append("")
    return lines


def write_docs(
    results: dict,
    section: str = "latest",
    label: str | None = None,
    profile: dict | None = None,
    images: list[Path] | None = None,
    docs: Path = DOCS,
) -> Path:
    """Rewrite the `section` block of docs/performance.md (creating the file if needed); copies the plots."""
    per = results.get("targets", {})
    DOCS_IMG.mkdir(parents=True, exist_ok=True)
    copied = []
    for img in images or []:
        dest = DOCS_IMG / (img.name if img.name.startswith(f"{section}-") else f"{section}-{img.name}")
        if img.resolve() != dest.resolve():
            shutil.copyfile(img, dest)
        copied.append(dest)
    label = label or ("Latest run" if section == "latest" else section)
    body = _block(section, section_text(results, per, copied, label, profile))
    text = docs.read_text() if docs.exists() else DOC_HEAD
    pattern = re.compile(rf"<!-- bench:{section}:begin -->.*?<!-- bench:{section}:end -->", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: body, text)
    elif section == "latest" and "<!-- bench:" in text:
        first = text.index("<!-- bench:")
        text = text[:first] + body + "\n\n" + text[first:]
    else:
        text = text.rstrip() + "\n\n" + body + "\n"
    docs.write_text(text)
    return docs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.splitlines()[0])
    parser.add_argument("results", help="a JSON file written by `python -m bench.run --json`")
    parser.add_argument("--write-docs", action="store_true", help="rewrite the section of docs/performance.md")
    parser.add_argument("--section", default="latest", help="docs section (latest, before, …)")
    parser.add_argument("--label", default=None, help="section heading")
    parser.add_argument("--profile", default=None, help="a profile JSON from `python -m bench.profile`")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"), help="where the plots go")
    args = parser.parse_args(argv)
    results = json.loads(Path(args.results).read_text())
    per = results.get("targets", {})
    print(markdown(table_rows(per)))
    print("\n".join(targets_summary(per)))
    images = plots(per, Path(args.out), prefix=f"{args.section}-")
    if args.write_docs:
        profile = json.loads(Path(args.profile).read_text()) if args.profile else None
        print(f"wrote {write_docs(results, args.section, args.label, profile, images)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
