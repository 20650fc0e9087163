"""Defects the protocol fuzzer (tests/fuzz/machine.py) found in the relay, each as its smallest
reproducer. Each was a strict xfail until its fix landed; now each guards its fix:

- a `hello` with a NUL character was an INTERNAL error on PostgreSQL (text cannot hold NUL);
- an error's `ref` echoed a long frame `type` whole (now cut to 64 characters, docs/protocol.md §15);
- a session id spelled otherwise (upper case, braces, no hyphens) reached the peer as spelled.
"""

import os

import pytest
from channels.db import database_sync_to_async

from devices.models import Device
from tests.relay import flows
from tests.support import asgi as ws

pytestmark = flows.RELAY_DB

ON_POSTGRES = os.environ.get("DATABASE_URL", "").startswith("postgres")


@pytest.mark.skipif(not ON_POSTGRES, reason="PostgreSQL refuses NUL in text; SQLite stores it")
@pytest.mark.parametrize(
    "hello",
    [
        {"type": "hello", "firmware_version": "1.0\x00"},
        {"type": "hello", "capabilities": ["video\x00"]},
    ],
    ids=["firmware_version", "capabilities"],
)
async def test_hello_with_a_nul_character_is_not_an_internal_error(world, hello):
    """Found by the fuzzer: a `hello` whose firmware_version (or a capability) holds U+0000."""
    robot = await ws.robot(flows.R1, world.r1_secret)
    await ws.send(robot, hello)
    answered = await flows.barrier(robot)
    await ws.close(robot)
    assert [f for f in answered if f.get("code") == "INTERNAL"] == [], answered
    row = await database_sync_to_async(Device.objects.get)(device_id=flows.R1)
    assert "\x00" not in row.firmware_version


async def test_an_error_ref_naming_a_long_type_is_truncated(world):
    """Found by the fuzzer: `{"type": "<300 characters>"}` from an app that owns one offline robot."""
    app = await ws.app(world.t1, drain_status=1)
    await ws.send(app, {"type": "x" * 300})
    try:
        answer = await ws.recv(app)  # asgi.recv checks every frame against the schema
    finally:
        await ws.close(app)
    assert answer["code"] == "DEVICE_OFFLINE"


@pytest.mark.parametrize(
    "spell",
    [lambda sid: "{" + sid.upper() + "}", lambda sid: sid.replace("-", ""), lambda sid: "urn:uuid:" + sid],
    ids=["braces, upper case", "no hyphens", "urn"],
)
async def test_a_session_id_spelled_otherwise_reaches_the_peer_canonical(world, spell):
    """Found by the fuzzer: the robot's offer names its session `{<SESSION ID IN UPPER CASE>}`."""
    robot, app = await flows.robot_app(world)
    sid, _, _ = await flows.open_session(app, robot)
    await ws.send(robot, {"type": "webrtc_offer", "session_id": spell(sid), "sdp": flows.OFFER})
    try:
        offer = await ws.recv(app)  # asgi.recv checks the frame against the schema
    finally:
        await ws.close(robot, app)
    assert offer["session_id"] == sid
