"""End to end: the demo's real WebRTC call (aiortc robot + app) through a real daphne relay.

Which database the relay uses:
- with PostgreSQL and Redis (`DATABASE_URL`/`REDIS_URL`, as CI sets them) the relay process runs on
  pytest-django's test database (`transactional_db`, so its rows are flushed afterwards) and on Redis
  with a fresh channel prefix — the environment the live tests build (`tests.live.conftest.relay_env`);
- without them the demo's own relay uses a temporary SQLite file and the in-memory channel layer
  (one process), exactly as `make demo` does.
"""

import asyncio

import pytest

from sim.demo import run_demo
from tests.conftest import services_available
from tests.live.conftest import relay_env

pytestmark = [pytest.mark.demo, pytest.mark.live]

FRAMES = 30


@pytest.fixture
def demo_relay(transactional_db, settings):
    """`(env overrides, migrate)` for the demo's relay: the test database with services, else its own SQLite.

    `transactional_db` always: with services the relay process must see committed rows (and they are
    flushed afterwards); without them it only costs an empty in-memory database.
    """
    if services_available():
        return relay_env(settings), False  # pytest-django already migrated the test database
    return None, True


async def test_demo_call_through_relay(demo_relay):
    """A robot and an app paired through REST hold a call through the relay: ≥ 30 decoded frames, a
    data-channel echo, `webrtc_close` reason `closed_by_app` at the robot, and a history row that is
    ended, answered and closed by the app, with the ICE candidates each side trickled.
    """
    overrides, migrate = demo_relay
    async with asyncio.timeout(60):
        result = await run_demo(frames=FRAMES, relay_env=overrides, migrate=migrate)
    report = result.report()
    call = result.call
    assert call is not None, report
    assert call.frames_decoded >= FRAMES, report
    assert call.datachannel_rtt_ms is not None and call.datachannel_rtt_ms > 0, report
    assert result.robot_close_reason == "closed_by_app", report
    history = result.history
    assert history is not None, report
    assert history["session_id"] == call.session_id and history["device_id"] == result.device_id, report
    assert history["state"] == "ended", report
    assert history["answered_at"] and history["offered_at"] and history["ended_at"], report
    assert history["end_reason"] == "closed_by_app", report
    assert history["app_ice_candidates"] == call.local_candidates, report
    assert history["robot_ice_candidates"] == call.remote_candidates, report
    assert result.ok, report
