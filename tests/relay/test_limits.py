"""What one socket or user may cost (docs/protocol.md §15.1): frame rates per socket (token buckets),
refusals before 4008, ICE candidates per session, app sockets per user, unauthenticated sockets per
address.

The buckets are proved by counts, never by timing: the limiter's clock is frozen (`frozen_clock`), so a
bucket of burst B lets exactly B frames through until the test moves the clock.
"""

import pytest

from relay import limits
from tests.relay import flows
from tests.relay.flows import R1, R2, ice_frame
from tests.support import asgi as ws

pytestmark = flows.RELAY_DB


class FrozenClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def frozen_clock(monkeypatch):
    clock = FrozenClock()
    monkeypatch.setattr(limits, "clock", clock)
    return clock


def candidate(i: int) -> dict:
    return {"candidate": f"candidate:{i} 1 udp 1 192.0.2.2 {i} typ host", "sdpMid": "0", "sdpMLineIndex": 0}


def seq_of(frame: dict) -> int:
    return int(frame["candidate"]["candidate"].split(":")[1].split()[0])


async def drain(comm) -> list[dict]:
    """Everything `comm` received up to the pong of a ping sent now."""
    return await flows.barrier(comm)


async def test_ice_bucket_passes_exactly_its_burst_then_its_rate(world, settings, frozen_clock):
    """ICE at 20/s with a burst of 60: of 80 candidates sent at one instant, the first 60 reach the app
    in order and the robot gets RATE_LIMITED (ref `webrtc_ice`) for each of the other 20; one second
    later 20 more pass. The socket stays usable throughout."""
    settings.WIMZ_ICE_RATE, settings.WIMZ_ICE_BURST = 20.0, 60.0
    robot, app = await flows.robot_app(world)
    session_id, _, _ = await flows.open_session(app, robot)
    for i in range(80):
        await ws.send(robot, ice_frame(session_id, candidate(i)))
    refused = await drain(robot)
    assert [(f["code"], f.get("ref")) for f in refused] == [("RATE_LIMITED", "webrtc_ice")] * 20
    assert [seq_of(f) for f in await flows.receive_all(app, 60)] == list(range(60))
    assert await ws.nothing(app)

    frozen_clock.now += 1.0
    for i in range(80, 110):
        await ws.send(robot, ice_frame(session_id, candidate(i)))
    assert len(await drain(robot)) == 10
    assert [seq_of(f) for f in await flows.receive_all(app, 20)] == list(range(80, 100))
    await ws.ping_ok(robot)
    await ws.close(robot, app)


async def test_one_users_flood_is_refused_by_count_while_another_user_is_served(world, settings, frozen_clock):
    """U1's app floods commands: exactly the frame burst is forwarded to R1 and every frame beyond it is
    answered RATE_LIMITED, while U2's command, sent in the middle of the flood, reaches R2 and nothing
    of U2's is refused. Neither user's frames reach the other's robot."""
    settings.WIMZ_FRAME_RATE, settings.WIMZ_FRAME_BURST = 100.0, 50.0
    settings.WIMZ_RATE_LIMIT_CLOSE_AFTER = 0
    r1, a1 = await flows.robot_app(world)
    r2 = await ws.robot(R2, world.r2_secret)
    b1 = await ws.app(world.t2, drain_status=1)
    for i in range(40):
        await ws.send(a1, {"type": "command", "device_id": R1, "command": "motor", "seq": i})
    await ws.send(b1, {"type": "command", "device_id": R2, "command": "dispense_treat"})
    for i in range(40, 120):
        await ws.send(a1, {"type": "command", "device_id": R1, "command": "motor", "seq": i})
    got = await ws.recv(r2)
    assert got["command"] == "dispense_treat"
    assert await drain(b1) == []
    refused = await flows.receive_all(a1, 70)
    assert {(f["code"], f.get("ref")) for f in refused} == {("RATE_LIMITED", None)}
    assert [f["seq"] for f in await flows.receive_all(r1, 50)] == list(range(50))
    frozen_clock.now += 1.0
    assert await drain(a1) == []  # exactly 70 refused, and the socket answers again
    assert await ws.nothing(r1, r2)
    await ws.close(r1, a1, r2, b1)


async def test_sustained_refusals_close_the_socket_4008(world, settings, frozen_clock):
    """With a burst of 5 and 10 refusals allowed per window, a socket sending 20 frames at once gets 5
    handled, 9 RATE_LIMITED, then close 4008; another socket of the same user is not affected."""
    settings.WIMZ_FRAME_BURST = 5.0
    settings.WIMZ_RATE_LIMIT_CLOSE_AFTER, settings.WIMZ_RATE_LIMIT_WINDOW = 10, 10.0
    robot, app = await flows.robot_app(world)
    other = await ws.app(world.t1, drain_status=1)
    for _ in range(20):
        await ws.send(app, {"type": "ping"})
    frames = [await ws.recv(app) for _ in range(14)]
    assert frames[:5] == [{"type": "pong"}] * 5
    assert {f["code"] for f in frames[5:]} == {"RATE_LIMITED"}
    await flows.expect_close(app, 4008)
    await ws.ping_ok(other)
    await ws.close(robot, other)


async def test_refusals_spread_over_windows_do_not_close(world, settings, frozen_clock):
    """The same refusals spread over several windows only ever answer RATE_LIMITED."""
    settings.WIMZ_FRAME_RATE, settings.WIMZ_FRAME_BURST = 1.0, 1.0
    settings.WIMZ_RATE_LIMIT_CLOSE_AFTER, settings.WIMZ_RATE_LIMIT_WINDOW = 3, 10.0
    app = await ws.app(world.t1, drain_status=1)
    for _ in range(4):
        frozen_clock.now += 11.0  # a new window, and one token
        for _ in range(3):  # one pong, two refusals
            await ws.send(app, {"type": "ping"})
        assert [f.get("code", f["type"]) for f in [await ws.recv(app) for _ in range(3)]] == [
            "pong",
            "RATE_LIMITED",
            "RATE_LIMITED",
        ]
    frozen_clock.now += 11.0
    await ws.ping_ok(app)
    await ws.close(app)


async def test_sdp_and_request_buckets(settings, frozen_clock):
    """`webrtc_request`, `webrtc_offer` and `webrtc_answer` each have a bucket of their own (5/s, burst
    10 by default), `webrtc_ice` one of 20/s, burst 60; other types only the frame bucket."""
    limiter = limits.FrameLimiter(limits.Limits.from_settings())
    for kind in ("webrtc_request", "webrtc_offer", "webrtc_answer"):
        assert [limiter.allow_type(kind) for _ in range(11)] == [True] * 10 + [False]
    assert [limiter.allow_type("webrtc_ice") for _ in range(61)] == [True] * 60 + [False]
    assert all(limiter.allow_type("command") for _ in range(1000))
    frozen_clock.now += 0.2
    assert limiter.allow_type("webrtc_offer") and not limiter.allow_type("webrtc_offer")
    settings.WIMZ_ICE_RATE = 0
    off = limits.FrameLimiter(limits.Limits.from_settings())
    assert all(off.allow_type("webrtc_ice") for _ in range(1000))


async def test_ice_candidates_per_session_are_capped(world, settings):
    """At most WIMZ_MAX_ICE_PER_SESSION candidates per socket and session: the 6th and later answer
    RATE_LIMITED with the session id as ref, are not forwarded, and the row counts 5."""
    settings.WIMZ_MAX_ICE_PER_SESSION = 5
    robot, app = await flows.robot_app(world)
    session_id, _, _ = await flows.open_session(app, robot)
    for i in range(8):
        await ws.send(robot, ice_frame(session_id, candidate(i)))
    refused = await drain(robot)
    assert [(f["code"], f["ref"]) for f in refused] == [("RATE_LIMITED", session_id)] * 3
    assert [seq_of(f) for f in await flows.receive_all(app, 5)] == list(range(5))
    assert await ws.nothing(app)
    await ws.send(app, {"type": "webrtc_close", "session_id": session_id})
    assert (await ws.recv_type(robot, "webrtc_close"))["reason"] == "closed_by_app"
    assert (await flows.session_row(session_id)).robot_ice_candidates == 5
    await ws.close(robot, app)


async def test_ice_cap_holds_for_a_socket_that_does_not_hold_the_session(world, settings):
    """Another app socket of the session's user may signal the session (§13.6); its candidates are
    counted on the row at once and capped the same way."""
    settings.WIMZ_MAX_ICE_PER_SESSION = 3
    robot, app = await flows.robot_app(world)
    other = await ws.app(world.t1, drain_status=1)
    session_id, _, _ = await flows.open_session(app, robot)
    for i in range(5):
        await ws.send(other, ice_frame(session_id, candidate(i)))
    assert [f["code"] for f in await drain(other)] == ["RATE_LIMITED"] * 2
    assert [seq_of(f) for f in await flows.receive_all(robot, 3)] == [0, 1, 2]
    await ws.close(robot, app, other)


async def test_app_sockets_per_user_are_capped_at_connect(world, settings):
    """With WIMZ_MAX_APP_SOCKETS_PER_USER=3, U1's 4th app socket (on /ws/app or compat /ws) is accepted,
    told RATE_LIMITED and closed 4008, leaving no presence row; once one closes, a new one connects.
    U2 is not affected."""
    settings.WIMZ_MAX_APP_SOCKETS_PER_USER = 3
    apps = [await ws.app(world.t1, drain_status=1) for _ in range(3)]
    fourth, accepted = await ws.connect(f"/ws/app?token={world.t1}")
    assert accepted
    await flows.expect_error(fourth, "RATE_LIMITED")
    await flows.expect_close(fourth, 4008)
    compat, _ = await ws.connect("/ws")
    await ws.send(compat, {"type": "auth", "token": world.t1})
    assert (await ws.recv(compat))["success"] is False
    await flows.expect_error(compat, "RATE_LIMITED")
    await flows.expect_close(compat, 4008)
    rows = await flows.connection_rows(role="app", user_id=world.u1.pk)
    assert len([r for r in rows if r["disconnected_at"] is None]) == 3
    b = [await ws.app(world.t2, drain_status=1) for _ in range(3)]
    await ws.ping_ok(b[-1])

    await apps[0].disconnect()
    await flows.barrier(apps[1])
    again = await ws.app(world.t1, drain_status=1)
    await ws.ping_ok(again)
    await ws.close(*apps[1:], again, *b)


async def test_unauthenticated_compat_sockets_per_address_are_capped(world, settings):
    """With WIMZ_MAX_UNAUTHENTICATED_PER_ADDRESS=2, a third unauthenticated `/ws` socket from one address
    is refused (403); a socket that authenticates frees its slot, as does one that closes."""
    settings.WIMZ_MAX_UNAUTHENTICATED_PER_ADDRESS = 2
    first, ok1 = await ws.connect("/ws")
    second, ok2 = await ws.connect("/ws")
    assert ok1 and ok2
    _, ok3 = await ws.connect("/ws")
    assert not ok3
    await ws.send(first, {"type": "auth", "token": world.t1})
    assert (await ws.recv(first))["success"] is True
    third, ok = await ws.connect("/ws")
    assert ok
    await ws.close(second)
    fourth, ok = await ws.connect("/ws")
    assert ok
    await ws.close(first, third, fourth)
    await flows.settle()
    assert limits.unauthenticated.count("?") == 0
