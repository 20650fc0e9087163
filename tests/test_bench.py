"""The bench's pure helpers (percentiles, the Markdown table, profile parsing); no server is started."""

import pytest

from bench import report
from bench.profile import package_of, parse_collapsed, summarize
from bench.stats import cdf_points, pct, summary


def test_pct_interpolates_and_handles_empty():
    assert pct([], 50) is None
    assert pct([5], 99) == 5
    assert pct([1, 2, 3, 4], 50) == 2.5
    assert pct(range(101), 90) == 90
    assert pct([3, 1, 2], 0) == 1 and pct([3, 1, 2], 100) == 3


def test_summary_and_cdf():
    s = summary([float(i) for i in range(1, 101)])
    assert s["n"] == 100 and s["p50"] == pytest.approx(50.5) and s["max"] == 100 and s["p99"] == pytest.approx(99.01)
    assert summary([]) == {"n": 0}
    points = cdf_points(range(11), points=3)
    assert points == [[0, 0.0], [5, 0.5], [10, 1.0]]


def _target(r2a_p50, lost=0, kib=None, cpu_ratio=None):
    out = {
        "latency": {
            "latency_ms": {
                "r2a": {"n": 10, "p50": r2a_p50, "p90": r2a_p50, "p99": r2a_p50},
                "a2r": {"n": 10, "p50": r2a_p50, "p90": r2a_p50, "p99": r2a_p50},
            }
        },
        "pairs100": {
            "latency_ms": {"both": {"n": 5, "p50": 1.0, "p99": 4.0}},
            "accounting": {"delivered": 100 - lost, "rate_limited": 0, "lost": lost, "other_errors": 0},
        },
    }
    if kib is not None:
        out["memory"] = {"levels": [{"sockets": 1000, "kib_per_socket": kib, "rss_growth_kib": kib * 1000}]}
    if cpu_ratio is not None:
        out["fanout"] = {"cpu_ratio_many_to_one": cpu_ratio, "stranger_received": 0}
    return out


def test_table_ratios_targets_and_markdown():
    per = {"raw": _target(0.1), "channels": _target(1.0), "relay1": _target(2.0, lost=3, kib=20, cpu_ratio=1.5)}
    rows = report.table_rows(per)
    assert rows[0] == report.COLUMNS
    by_label = {r[0]: r for r in rows[1:]}
    row = by_label["1 pair robot→app one-way p50 ms"]
    assert row[1:5] == ["0.10", "1.00", "2.00", "–"]
    assert row[5] == "×20.0; –" and row[6] == "×2.0; –"
    # 2.0 ms against 3 × raw (0.3) fails, against 3 × channels (3.0) passes; no relay2 figure → n/a
    assert row[8] == "**not met**; met; n/a; n/a"
    assert by_label["100 pairs × 20/s: lost"][8] == "**not met**"
    assert by_label["idle robot socket KiB RSS at 1,000"][8] == "met"
    assert by_label["fan-out cost 10 apps / 1 app (server CPU)"][8].startswith("met")
    text = report.markdown(rows)
    lines = text.splitlines()
    assert lines[0].startswith("| figure |") and lines[1].startswith("|---|")
    assert all(line.count("|") == lines[0].count("|") for line in lines)
    assert any(line.startswith("NOT MET") for line in report.targets_summary(per))


def test_profile_parsing_inclusive_counts_a_function_once_per_stack():
    text = (
        "main (wimz/serve.py:10);f (relay/consumers.py:5);f (relay/consumers.py:9);g (json/encoder.py:1) 3\n"
        "main (wimz/serve.py:10);h (channels_redis/core.py:7) 1\n"
    )
    total, inclusive, self_, pkg_incl, _ = parse_collapsed(text)
    assert total == 4
    assert inclusive["f (relay/consumers.py)"] == 3 and inclusive["main (wimz/serve.py)"] == 4
    assert self_["g (json/encoder.py)"] == 3 and pkg_incl["relay"] == 3 and pkg_incl["channels_redis"] == 1
    s = summarize(text)
    assert s["inclusive"][0] == {"function": "main (wimz/serve.py)", "inclusive_pct": 100.0, "self_pct": 0.0}
    assert s["hot_paths"][0]["pct"] == 75.0
    assert package_of("/work/.venv/lib/python3.11/site-packages/daphne/server.py") == "daphne"
