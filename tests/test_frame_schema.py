"""docs/schema/relay-frames.schema.json: the machine-readable description of what the relay sends.

The suites' receive helpers validate every frame against it (tests/support/frames.py); these tests
prove that the description refuses what the relay must not send, and that it names the same error
codes, end reasons and reserved types as the code.
"""

import json

import pytest

from relay.models import Session
from relay.protocol import RESERVED_TYPES, Code
from tests.support.frames import SCHEMA_PATH, check_sent

SID = "9354fb04-4d62-46e8-880c-202a2436779f"
SCHEMA = json.loads(SCHEMA_PATH.read_text())

VALID = {
    "/ws/app": [
        {
            "type": "device_status",
            "device_id": "wimz_robot_01",
            "status": "online",
            "online": True,
            "last_seen": "2026-01-01T00:00:00.859053Z",
        },
        {
            "type": "device_status",
            "device_id": "wimz_robot_01",
            "status": "unpaired",
            "online": False,
            "last_seen": None,
        },
        {
            "type": "webrtc_credentials",
            "session_id": SID,
            "device_id": "wimz_robot_01",
            "ice_servers": [{"urls": ["stun:stun.cloudflare.com:3478"]}],
        },
        {
            "type": "status_update",
            "battery": 87,
            "device_id": "wimz_robot_01",
            "timestamp": "2026-01-01T00:00:05.305135Z",
        },
        {"event": "detection", "data": {}, "device_id": "wimz_robot_01", "timestamp": "2026-01-01T00:00:05Z"},
        {"type": None, "event": "detection", "device_id": "wimz_robot_01", "timestamp": "2026-01-01T00:00:05Z"},
        {"type": "webrtc_close", "session_id": SID, "reason": "robot_disconnected"},
        {"type": "auth_result", "success": True, "expires_at": "2026-01-01T01:00:00Z"},
        {"type": "error", "code": "NOT_AUTHORIZED", "message": "token refused", "ref": "auth"},
        {"type": "pong"},
    ],
    "/ws/device": [
        {"type": "webrtc_request", "session_id": SID, "ice_servers": []},
        {
            "type": "command",
            "device_id": "wimz_robot_01",
            "command": "motor",
            "data": {"left": 0.5},
            "params": {"left": 0.5},
        },
        {"type": "command", "device_id": None, "command": "motor"},
        {"type": "webrtc_close", "session_id": SID, "device_id": "wimz_robot_01", "reason": "closed_by_app"},
        {"type": "webrtc_ice", "session_id": SID, "candidate": None},
    ],
}

INVALID = {
    "error without a code": ("/ws/app", {"type": "error", "message": "x"}),
    "error with an unknown code": ("/ws/app", {"type": "error", "code": "OOPS", "message": "x"}),
    "online that contradicts status": (
        "/ws/app",
        {"type": "device_status", "device_id": "r", "status": "offline", "online": True, "last_seen": None},
    ),
    "credentials with an extra key": (
        "/ws/app",
        {"type": "webrtc_credentials", "session_id": SID, "device_id": "r", "ice_servers": [], "secret": "x"},
    ),
    "event without the robot's id": ("/ws/app", {"type": "status_update", "timestamp": "2026-01-01T00:00:00Z"}),
    "close without a reason": ("/ws/app", {"type": "webrtc_close", "session_id": SID}),
    "close with an unknown reason": ("/ws/device", {"type": "webrtc_close", "session_id": SID, "reason": "bored"}),
    "a request naming the device to the robot": (
        "/ws/device",
        {"type": "webrtc_request", "session_id": SID, "ice_servers": [], "device_id": "r"},
    ),
    "credentials sent to a robot": (
        "/ws/device",
        {"type": "webrtc_credentials", "session_id": SID, "device_id": "r", "ice_servers": []},
    ),
    "an event with a null type and no event key": (
        "/ws/app",
        {"type": None, "device_id": "r", "timestamp": "2026-01-01T00:00:00Z"},
    ),
    "an event sent to a robot": ("/ws/device", {"type": "status_update", "timestamp": "2026-01-01T00:00:00Z"}),
    "a session id that is not a uuid": ("/ws/app", {"type": "webrtc_ice", "session_id": "x", "candidate": None}),
    "ice servers with a bare url": (
        "/ws/app",
        {"type": "webrtc_credentials", "session_id": SID, "device_id": "r", "ice_servers": [{"urls": "stun:x"}]},
    ),
}


@pytest.mark.parametrize(("path", "frame"), [(p, f) for p, frames in VALID.items() for f in frames])
def test_documented_frames_are_valid(path, frame):
    """The frames docs/protocol.md §8.3/§8.4 shows pass for their role and for the compat `/ws` socket."""
    assert check_sent(frame, path) == frame
    assert check_sent(frame, "/ws") == frame


@pytest.mark.parametrize("name", list(INVALID))
def test_frames_the_relay_must_not_send_are_refused(name):
    """Each shape the relay must never send fails the check the receive helpers apply."""
    path, frame = INVALID[name]
    with pytest.raises(AssertionError, match="does not allow"):
        check_sent(frame, path)


def test_the_description_names_what_the_code_names():
    """Error codes (§15), end reasons (§13.3) and reserved types (§8) are the code's own lists."""
    defs = SCHEMA["$defs"]
    codes = {v for k, v in vars(Code).items() if k.isupper()}
    assert set(defs["error"]["properties"]["code"]["enum"]) == codes
    assert set(defs["end_reason"]["enum"]) == set(Session.EndReason.values)
    assert set(defs["reserved_type"]["enum"]) == set(RESERVED_TYPES)
