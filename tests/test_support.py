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
