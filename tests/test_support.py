"""The test-support layer keeps the promises its helpers make (tests/support)."""

import time

import pytest

from tests.support.signing import fresh_ts


@pytest.mark.parametrize("run", [1, 2])
def test_fresh_timestamps_start_from_now_in_every_test(run):
    """`fresh_ts` hands out distinct timestamps within a test, stepping back from now, and every test starts
    from now again: a memory kept across tests pushed a busy device's handshakes out of the skew window
    (a 5 s window test failed after the e2e and fuzz suites had run in the same process)."""
    first = fresh_ts("wimz_robot_support")
    assert abs(first - time.time()) <= 2
    more = [fresh_ts("wimz_robot_support") for _ in range(50)]
    assert len({first, *more}) == 51


def test_the_live_flush_retries_a_deadlock_and_nothing_else():
    """tests/live/conftest.retrying_deadlocks: a flush PostgreSQL aborted as a deadlock victim runs again;
    any other failure, or a deadlock on every attempt, is raised."""
    from django.core.management.base import CommandError
    from django.db import OperationalError

    from tests.live.conftest import FLUSH_ATTEMPTS, retrying_deadlocks

    def failing(message, times):
        calls = []

        def flush():
            calls.append(1)
            if len(calls) <= times:
                raise CommandError("couldn't be flushed") from OperationalError(message)
            return "flushed"

        return flush, calls

    flush, calls = failing("deadlock detected", 1)
    assert retrying_deadlocks(flush)() == "flushed" and len(calls) == 2
    flush, calls = failing("relation does not exist", 1)
    with pytest.raises(CommandError):
        retrying_deadlocks(flush)()
    assert len(calls) == 1
    flush, calls = failing("deadlock detected", FLUSH_ATTEMPTS)
    with pytest.raises(CommandError):
        retrying_deadlocks(flush)()
    assert len(calls) == FLUSH_ATTEMPTS
