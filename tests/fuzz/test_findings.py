"""Defects the protocol fuzzer (tests/fuzz/machine.py) found in the relay, each as its smallest
reproducer, marked `xfail(strict=True)` until the relay is fixed: a fix turns the xfail into a pass,
which strict mode reports, so the mark goes away with the fix.
"""

import os

import pytest
from channels.db import database_sync_to_async

from devices.models import Device
from tests.relay import flows
from tests.relay import wsutil as ws

pytestmark = flows.RELAY_DB

ON_POSTGRES = os.environ.get("DATABASE_URL", "").startswith("postgres")


@pytest.mark.skipif(not ON_POSTGRES, reason="PostgreSQL refuses NUL in text; SQLite stores it")
@pytest.mark.xfail(strict=True, reason="relay/messaging.py `_record_hello` writes a robot's `hello` strings to "
                   "PostgreSQL unchecked: a NUL character makes the UPDATE raise DataError and the robot gets "
                   "INTERNAL (docs/protocol.md §7: bad input gets a clear error, §8.1: hello gets no answer)")
@pytest.mark.parametrize("hello", [
    {"type": "hello", "firmware_version": "1.0\x00"},
    {"type": "hello", "capabilities": ["video\x00"]},
], ids=["firmware_version", "capabilities"])
async def test_hello_with_a_nul_character_is_not_an_internal_error(world, hello):
    """Found by the fuzzer: a `hello` whose firmware_version (or a capability) holds U+0000."""
    robot = await flows.robot(flows.R1, world.r1_secret)
    await ws.send(robot, hello)
    answered = await flows.barrier(robot)
    await ws.close(robot)
    assert [f for f in answered if f.get("code") == "INTERNAL"] == [], answered
    row = await database_sync_to_async(Device.objects.get)(device_id=flows.R1)
    assert "\x00" not in row.firmware_version


@pytest.mark.xfail(strict=True, reason="relay/addressing.py and relay/messaging.py put the frame's `type` in the "
                   "error's `ref` whole: a pass-through type longer than 256 characters comes back longer than "
                   "docs/schema/relay-frames.schema.json allows (`ref` maxLength 256: 'truncated'); session ids "
                   "are cut to 64 (relay/protocol.py `session_id_of`), types are not")
async def test_an_error_ref_naming_a_long_type_is_truncated(world):
    """Found by the fuzzer: `{"type": "<300 characters>"}` from an app that owns one offline robot."""
    app = await ws.app(world.t1, drain_status=1)
    await ws.send(app, {"type": "x" * 300})
    try:
        answer = await ws.recv(app)  # wsutil.recv checks every frame against the schema
    finally:
        await ws.close(app)
    assert answer["code"] == "DEVICE_OFFLINE"


@pytest.mark.xfail(strict=True, reason="relay/protocol.py `session_id_of` takes any spelling uuid.UUID parses "
                   "(upper case, braces, `urn:uuid:`, no hyphens) and relay/sessions.py forwards the frame "
                   "unchanged, so the app gets an offer whose session_id is not the one its webrtc_credentials "
                   "named (docs/schema/relay-frames.schema.json: a session_id is the canonical lower-case form)")
@pytest.mark.parametrize("spell", [lambda sid: "{" + sid.upper() + "}", lambda sid: sid.replace("-", ""),
                                   lambda sid: "urn:uuid:" + sid], ids=["braces, upper case", "no hyphens", "urn"])
async def test_a_session_id_spelled_otherwise_reaches_the_peer_canonical(world, spell):
    """Found by the fuzzer: the robot's offer names its session `{<SESSION ID IN UPPER CASE>}`."""
    robot, app = await flows.robot_app(world)
    sid, _, _ = await flows.open_session(app, robot)
    await ws.send(robot, {"type": "webrtc_offer", "session_id": spell(sid), "sdp": flows.OFFER})
    try:
        offer = await ws.recv(app)  # wsutil.recv checks the frame against the schema
    finally:
        await ws.close(robot, app)
    assert offer["session_id"] == sid
