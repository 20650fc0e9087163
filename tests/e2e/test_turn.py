"""A real TURN server in the loop: coturn (Debian's `coturn` package) on 127.0.0.1 with a shared secret.

- The relay's coturn provider (docs/protocol.md §14) hands out TURN REST credentials that coturn
  accepts, and a credential past its expiry is refused by coturn itself.
- The demo's aiortc call runs with ICE restricted to TURN-relayed candidates (`relay` transport
  policy on both sides): the video is decoded through coturn, on a relay/relay candidate pair.

`.ci/run` installs coturn when it is missing; without `turnserver` these tests skip, except under
`WIMZ_REQUIRE_SERVICES=1` (CI), where they fail.
"""

import asyncio
import os
import shutil
import time

import pytest

from relay import ice
from sim.demo import run_demo
from sim.turn import LocalTurn, allocate
from tests.conftest import services_available
from tests.live.conftest import relay_env

pytestmark = [pytest.mark.demo, pytest.mark.live]

FRAMES = 30


@pytest.fixture(autouse=True)
def needs_turnserver():
    """Skip without coturn, unless CI requires every service-backed test to run."""
    if shutil.which("turnserver", path=os.environ.get("PATH", "") + ":/usr/bin:/usr/sbin") is None:
        if os.environ.get("WIMZ_REQUIRE_SERVICES") == "1":
            pytest.fail("WIMZ_REQUIRE_SERVICES=1 but turnserver (Debian package coturn) is not installed")
        pytest.skip("turnserver (Debian package coturn) is not installed; .ci/run installs it")


@pytest.fixture
async def turn():
    """A running coturn on 127.0.0.1, stopped afterwards."""
    server = LocalTurn()
    await server.start()
    yield server
    await server.stop()


async def test_coturn_accepts_the_relays_credentials_and_refuses_expired_ones(turn, settings):
    """`get_ice_servers(provider="coturn")` against a real coturn: the TURN entry allocates; the same
    code with a clock one lifetime in the past gives a credential coturn refuses (401), as does one
    signed with another secret."""
    settings.WIMZ_COTURN_SECRET, settings.WIMZ_COTURN_URLS = turn.secret, [turn.url]

    def turn_entry(result: ice.IceServers) -> dict:
        [entry] = [s for s in result.ice_servers if any(u.startswith("turn:") for u in s["urls"])]
        return entry

    fresh = await ice.get_ice_servers(user_id=42, ttl=600, provider="coturn")
    assert not fresh.fallback and fresh.provider == "coturn"
    entry = turn_entry(fresh)
    assert await allocate(turn.url, entry["username"], entry["credential"]) is True

    past = time.time() - 2 * 600
    expired = turn_entry(await ice.get_ice_servers(user_id=42, ttl=600, provider="coturn", clock=lambda: past))
    assert int(expired["username"].split(":")[0]) < time.time()
    assert await allocate(turn.url, expired["username"], expired["credential"]) is False

    settings.WIMZ_COTURN_SECRET = "not-the-shared-secret"
    forged = turn_entry(await ice.get_ice_servers(user_id=42, ttl=600, provider="coturn"))
    assert await allocate(turn.url, forged["username"], forged["credential"]) is False


@pytest.fixture
def demo_relay(transactional_db, settings):
    """`(env overrides, migrate)` for the demo's relay: the test database with services, else its own SQLite."""
    if services_available():
        return relay_env(settings), False
    return None, True


async def test_call_through_coturn_with_relay_candidates_only(demo_relay):
    """The demo call with `turn=True`: the relay's coturn provider serves a TURN entry, both aiortc
    parties gather relayed candidates only, ≥ 30 frames are decoded over a relay/relay pair."""
    overrides, migrate = demo_relay
    async with asyncio.timeout(90):
        result = await run_demo(frames=FRAMES, relay_env=overrides, migrate=migrate, turn=True)
    report = result.report()
    call = result.call
    assert call is not None, report
    turn_entries = [s for s in call.ice_servers if any(u.startswith("turn:") for u in s["urls"])]
    assert turn_entries and turn_entries[0]["username"] and turn_entries[0]["credential"], report
    assert call.candidate_pair == ("relay", "relay"), report
    assert call.frames_decoded >= FRAMES, report
    assert result.ok, report
