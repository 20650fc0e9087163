"""The WebSocket protocol fuzzer (tests/fuzz/machine.py) as a test: a bounded run in `make test`,
a longer one under `make fuzz` (sizes in tests/fuzz/sizes.py)."""

import time

from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from tests.fuzz import sizes
from tests.fuzz.machine import STATS, RelayMachine
from tests.relay import flows

pytestmark = flows.RELAY_DB

BATCH = 10  # examples per hypothesis run when a time budget applies


def machine_settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        stateful_step_count=sizes.STEPS,
        deadline=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


def test_protocol_state_machine(transactional_db):
    """Random sequences of connects, disconnects, ownership changes, signaling, commands, events and
    garbage keep every invariant of tests/fuzz/machine.py."""
    STATS.__init__()  # count this run only (the tests of test_fuzzer_catches run the machine too)
    deadline = sizes.deadline()
    started, done = time.monotonic(), 0
    while done < sizes.EXAMPLES:
        batch = sizes.EXAMPLES - done if deadline is None else min(BATCH, sizes.EXAMPLES - done)
        run_state_machine_as_test(RelayMachine, settings=machine_settings(batch))
        done += batch
        if deadline is not None and time.monotonic() > deadline:
            break
    print(f"\nprotocol fuzz: {STATS.summary()}; {time.monotonic() - started:.1f} s")
