"""What the per-frame metric costs: `python -m bench.metrics_cost` (docs/performance.md, "Metrics").

Times, in one process and without a server, the exact statement the consumer runs for every routed
frame (`self.routed[kind].inc()`: one dict lookup in the pre-resolved table, one `inc()`), for a reserved
type and for a client-chosen type that falls back to `event`, beside an empty loop and beside
resolving the child per frame with `labels()` (what the pre-resolved table avoids). Best of 7 runs of
1,000,000 frames each; prints nanoseconds per frame.
"""

import os
import timeit


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wimz.settings")
    os.environ.setdefault("DEBUG", "1")
    import django

    django.setup()
    from relay import metrics

    routed = metrics.ROUTED["robot"]
    frames = metrics.FRAMES
    number = 1_000_000
    cases = {
        "empty loop": ("pass", {}),
        "routed[reserved type].inc()": ("routed[kind].inc()", {"routed": routed, "kind": "webrtc_ice"}),
        "routed[client type].inc() (fallback: event)": ("routed[kind].inc()", {"routed": routed, "kind": "telemetry"}),
        "FRAMES.labels(type, direction).inc() (not used)": (
            "frames.labels(kind, 'robot_to_app').inc()",
            {"frames": frames, "kind": "webrtc_ice"},
        ),
    }
    base = None
    for name, (stmt, names) in cases.items():
        best = min(timeit.repeat(stmt, globals=names, number=number, repeat=7)) / number * 1e9
        base = best if base is None else base
        extra = "" if name == "empty loop" else f"  (+{best - base:.0f} ns over the empty loop)"
        print(f"{name:50s} {best:7.1f} ns/frame{extra}")


if __name__ == "__main__":
    main()
