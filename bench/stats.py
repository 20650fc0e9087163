"""Small statistics helpers of the bench: percentiles, summaries and CDF points (pure, no I/O)."""

from collections.abc import Iterable

PERCENTILES = (50, 90, 99)


def pct(values: Iterable[float], p: float) -> float | None:
    """The `p`-th percentile (0–100) of `values` with linear interpolation; None when empty."""
    data = sorted(values)
    if not data:
        return None
    k = (len(data) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (k - lo)


def summary(values_ms: Iterable[float]) -> dict:
    """`{"n","p50","p90","p99","max","mean"}` of a list of milliseconds, rounded to 3 decimals; `{"n": 0}` if empty."""
    data = sorted(values_ms)
    if not data:
        return {"n": 0}
    out = {"n": len(data)}
    for p in PERCENTILES:
        out[f"p{p}"] = round(pct(data, p), 3)
    out["max"] = round(data[-1], 3)
    out["mean"] = round(sum(data) / len(data), 3)
    return out


def cdf_points(values: Iterable[float], points: int = 101) -> list[list[float]]:
    """`points` pairs `[value, fraction]` spanning the distribution (for plotting a CDF without every sample)."""
    data = sorted(values)
    if not data:
        return []
    if points < 2:
        raise ValueError("points must be at least 2")
    return [[round(pct(data, 100 * i / (points - 1)), 4), round(i / (points - 1), 4)] for i in range(points)]
