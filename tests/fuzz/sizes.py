"""How much the fuzz tests run: small by default (they are part of `make test`), more under `make fuzz`.

| variable | default | meaning |
|---|---|---|
| `WIMZ_FUZZ_EXAMPLES` | 25 | protocol state machine: examples (each a fresh pair of users and robots) |
| `WIMZ_FUZZ_STEPS` | 40 | protocol state machine: steps per example |
| `WIMZ_FUZZ_API_EXAMPLES` | 6 | REST: generated calls per operation, per kind of caller (anonymous, authenticated) |
| `WIMZ_FUZZ_API_COVERAGE` | 0 | REST: 1 adds schemathesis' coverage phase (boundary values of every parameter) |
| `WIMZ_FUZZ_SECONDS` | 0 (none) | time budget per test: then no new batch of examples (protocol), no new call (REST) |
"""

import os
import time


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


EXAMPLES = _int("WIMZ_FUZZ_EXAMPLES", 25)
STEPS = _int("WIMZ_FUZZ_STEPS", 40)
API_EXAMPLES = _int("WIMZ_FUZZ_API_EXAMPLES", 6)
API_COVERAGE = os.environ.get("WIMZ_FUZZ_API_COVERAGE") == "1"
SECONDS = float(os.environ.get("WIMZ_FUZZ_SECONDS") or 0)


def deadline() -> float | None:
    """`time.monotonic()` after which no new fuzz work starts, or None without a budget."""
    return time.monotonic() + SECONDS if SECONDS > 0 else None
