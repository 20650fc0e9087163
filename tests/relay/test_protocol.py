"""relay/protocol.py without sockets: frame parsing, types, field checks, the event shape."""

import json
import uuid
from datetime import UTC, datetime

import pytest

from relay import protocol
from relay.protocol import Code, RelayError


def code_of(fn, *args, **kwargs) -> str:
    with pytest.raises(RelayError) as info:
        fn(*args, **kwargs)
    return info.value.code


# --- parse_text_frame -------------------------------------------------------------------------


def test_parse_text_frame_returns_the_json_object():
    """A JSON object frame decodes to the same dict, keys and values untouched."""
    frame = {"type": "status_update", "battery": 87, "nested": {"a": [1, None, True]}}
    assert protocol.parse_text_frame(json.dumps(frame), max_bytes=1000) == frame


@pytest.mark.parametrize("text", ["not json", "{", "", "   ", "{'type': 'ping'}", "NaN]"])
def test_parse_text_frame_rejects_non_json_as_bad_request(text):
    """Text that is not JSON answers BAD_REQUEST (docs/protocol.md §15)."""
    assert code_of(protocol.parse_text_frame, text, max_bytes=1000) == Code.BAD_REQUEST


@pytest.mark.parametrize("text", ["[]", "42", '"ping"', "null", "true", '[{"type":"ping"}]'])
def test_parse_text_frame_rejects_json_that_is_not_an_object(text):
    """JSON that is not an object answers BAD_REQUEST: every frame is one JSON object."""
    assert code_of(protocol.parse_text_frame, text, max_bytes=1000) == Code.BAD_REQUEST


def test_parse_text_frame_deeply_nested_json_is_bad_request_not_recursion_error():
    """A pathologically nested frame is BAD_REQUEST, never an escaping RecursionError, and its message is the
    nesting rule's (docs/protocol.md §7), not "not valid JSON": the frame is valid JSON, only too deep."""
    text = '{"type":"a","d":' + "[" * 100_000 + "]" * 100_000 + "}"
    with pytest.raises(RelayError) as raised:
        protocol.parse_text_frame(text, max_bytes=10**6)
    assert raised.value.code == Code.BAD_REQUEST
    assert f"deeper than {protocol.MAX_NESTING} levels" in str(raised.value)


def test_parse_text_frame_size_limit_is_in_utf8_bytes_and_checked_first():
    """Over-limit frames are MESSAGE_TOO_LARGE (even if not JSON); the limit counts UTF-8 bytes."""
    assert code_of(protocol.parse_text_frame, "x" * 101, max_bytes=100) == Code.MESSAGE_TOO_LARGE
    ascii_frame = json.dumps({"type": "a", "d": "x" * 70})
    assert len(ascii_frame) <= 100
    assert protocol.parse_text_frame(ascii_frame, max_bytes=100)["d"] == "x" * 70
    # 40 Cyrillic letters are 40 characters but 80 bytes.
    wide = json.dumps({"type": "a", "d": "ж" * 40}, ensure_ascii=False)
    assert len(wide) < 100 < len(wide.encode())
    assert code_of(protocol.parse_text_frame, wide, max_bytes=100) == Code.MESSAGE_TOO_LARGE


def test_parse_text_frame_exactly_at_the_limit_is_accepted():
    """A frame of exactly `max_bytes` bytes is within the limit."""
    text = json.dumps({"type": "a", "d": ""})
    text = text[:-2] + "y" * (64 - len(text)) + '"}'
    assert len(text.encode()) == 64
    assert protocol.parse_text_frame(text, max_bytes=64)["type"] == "a"


def test_parse_text_frame_raw_lone_surrogate_is_bad_request():
    """A text frame holding a raw lone surrogate (not an escape) cannot be sent on as UTF-8 either:
    BAD_REQUEST, never a UnicodeEncodeError (docs/protocol.md §8)."""
    assert code_of(protocol.parse_text_frame, '{"type":"a","d":"\ud800"}', max_bytes=1000) == Code.BAD_REQUEST
    assert protocol.parse_text_frame('{"type":"a","d":"\u00e9\U0001f600"}', max_bytes=1000)["d"] == "\u00e9\U0001f600"


# --- frame_type -------------------------------------------------------------------------------


def test_frame_type_returns_the_string_type():
    """`type` is returned as is for both roles."""
    assert protocol.frame_type({"type": "webrtc_ice"}, allow_legacy_event=False) == "webrtc_ice"
    assert protocol.frame_type({"type": "status_update"}, allow_legacy_event=True) == "status_update"


def test_frame_type_legacy_event_without_type_is_an_event_for_robots_only():
    """`{"event":…}` without `type` is a (legacy) robot event; from an app it lacks a type."""
    assert protocol.frame_type({"event": "detection"}, allow_legacy_event=True) == "event"
    assert code_of(protocol.frame_type, {"event": "detection"}, allow_legacy_event=False) == Code.BAD_REQUEST


def test_frame_type_with_both_type_and_event_uses_type():
    """A frame with a `type` is typed by it even when it also has an `event` key."""
    assert protocol.frame_type({"type": "telemetry", "event": "x"}, allow_legacy_event=True) == "telemetry"


@pytest.mark.parametrize(
    "frame",
    [
        {},
        {"type": 123},
        {"type": None},
        {"type": ""},
        {"type": ["ping"]},
        {"type": {"a": 1}},
        {"device_id": "R1"},
        {"type": True},
    ],
)
def test_frame_type_missing_or_mistyped_type_is_bad_request(frame):
    """A missing, empty or non-string `type` answers BAD_REQUEST."""
    assert code_of(protocol.frame_type, frame, allow_legacy_event=True) == Code.BAD_REQUEST


# --- optional_device_id -----------------------------------------------------------------------


def test_optional_device_id_absent_or_null_is_none():
    """No `device_id` (or null) means "the default device": None."""
    assert protocol.optional_device_id({"type": "command"}) is None
    assert protocol.optional_device_id({"type": "command", "device_id": None}) is None


@pytest.mark.parametrize("device_id", ["wimz_robot_01", "A", "a.b-c_D9", "x" * 64])
def test_optional_device_id_accepts_the_protocol_alphabet(device_id):
    """1–64 characters of `A–Z a–z 0–9 _ . -` are valid device ids."""
    assert protocol.optional_device_id({"device_id": device_id}) == device_id


@pytest.mark.parametrize(
    "device_id",
    [
        "робот-1",
        "",
        "x" * 65,
        "wimz robot",
        "wimz/robot",
        "a:b",
        "ä",
        42,
        1.5,
        True,
        ["wimz_robot_01"],
        {"id": "x"},
        "wimz_robot_01\n",
        "１２３",
    ],
)
def test_optional_device_id_rejects_everything_else_as_bad_request(device_id):
    """Non-strings and ids outside the alphabet (e.g. "робот-1") are BAD_REQUEST, never an exception."""
    with pytest.raises(RelayError) as info:
        protocol.optional_device_id({"type": "command", "device_id": device_id})
    assert info.value.code == Code.BAD_REQUEST
    assert info.value.ref == "command"


# --- session_id_of ----------------------------------------------------------------------------


def test_session_id_of_returns_the_canonical_uuid():
    """A UUID session_id (any case, with or without hyphens) is returned in canonical form."""
    sid = uuid.uuid4()
    assert protocol.session_id_of({"session_id": str(sid)}) == str(sid)
    assert protocol.session_id_of({"session_id": str(sid).upper()}) == str(sid)
    assert protocol.session_id_of({"session_id": sid.hex}) == str(sid)


@pytest.mark.parametrize(
    "frame", [{}, {"session_id": None}, {"session_id": ""}, {"session_id": 5}, {"session_id": ["x"]}]
)
def test_session_id_of_missing_or_non_string_is_bad_request(frame):
    """A missing or non-string session_id answers BAD_REQUEST."""
    assert code_of(protocol.session_id_of, frame) == Code.BAD_REQUEST


@pytest.mark.parametrize("raw", ["x", "not-a-uuid", "робот", "1" * 1000])
def test_session_id_of_non_uuid_string_is_not_authorized(raw):
    """A string that is not a UUID names no session: NOT_AUTHORIZED, as any unknown id (no probing)."""
    with pytest.raises(RelayError) as info:
        protocol.session_id_of({"session_id": raw})
    assert info.value.code == Code.NOT_AUTHORIZED
    assert len(info.value.ref) <= 64


# --- field checks -----------------------------------------------------------------------------


def test_require_sdp_accepts_a_session_description_of_the_expected_type():
    """`sdp` must be `{"type": <expected>, "sdp": str}`."""
    protocol.require_sdp({"sdp": {"type": "offer", "sdp": "v=0\r\n"}}, "offer")
    for bad in [None, "v=0", {"type": "answer", "sdp": "v=0"}, {"type": "offer"}, {"type": "offer", "sdp": 1}]:
        assert code_of(protocol.require_sdp, {"type": "webrtc_offer", "sdp": bad}, "offer") == Code.BAD_REQUEST


def test_require_candidate_accepts_objects_and_null_end_of_candidates():
    """`candidate` is required; an object or null (end of candidates) is accepted."""
    protocol.require_candidate({"candidate": {"candidate": "", "sdpMid": None, "sdpMLineIndex": 0}})
    protocol.require_candidate({"candidate": None})
    assert code_of(protocol.require_candidate, {}) == Code.BAD_REQUEST
    assert code_of(protocol.require_candidate, {"candidate": "candidate:1 1 udp"}) == Code.BAD_REQUEST


def test_require_str_names_the_field():
    """A missing or empty string field is BAD_REQUEST whose message names it."""
    with pytest.raises(RelayError) as info:
        protocol.require_str({"type": "command"}, "command")
    assert info.value.code == Code.BAD_REQUEST and "command" in info.value.message


# --- robot_event ------------------------------------------------------------------------------


def test_robot_event_overwrites_device_id_with_the_authenticated_id():
    """A robot's event always carries its authenticated id, whatever `device_id` it claimed."""
    event = protocol.robot_event({"type": "status_update", "device_id": "wimz_robot_02"}, "wimz_robot_01")
    assert event["device_id"] == "wimz_robot_01"


def test_robot_event_adds_an_iso_utc_timestamp_only_when_absent():
    """A server `timestamp` (ISO 8601 UTC) is added when absent; a robot's own value is kept as is."""
    before = datetime.now(UTC)
    event = protocol.robot_event({"type": "battery", "level": 80}, "wimz_robot_01")
    stamp = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
    assert stamp.tzinfo is not None and stamp.utcoffset().total_seconds() == 0
    assert before <= stamp <= datetime.now(UTC)
    assert protocol.robot_event({"type": "battery", "timestamp": 1767225600.25}, "r")["timestamp"] == 1767225600.25
    assert protocol.robot_event({"type": "battery", "timestamp": None}, "r")["timestamp"] is None


def test_robot_event_keeps_every_other_key_and_does_not_mutate_the_input():
    """Forwarding never changes or removes the sender's keys; the input dict is left untouched."""
    frame = {"event": "detection", "data": {"detected": True, "confidence": 0.91}, "device_id": "x"}
    original = json.loads(json.dumps(frame))
    event = protocol.robot_event(frame, "wimz_robot_01")
    assert frame == original
    assert {k: v for k, v in event.items() if k not in ("device_id", "timestamp")} == {
        "event": "detection",
        "data": {"detected": True, "confidence": 0.91},
    }


# --- vocabulary -------------------------------------------------------------------------------


def test_reserved_types_are_exactly_the_contract_list():
    """The relay-reserved types are those of docs/protocol.md §8."""
    assert {
        "ping",
        "pong",
        "auth",
        "auth_result",
        "hello",
        "error",
        "device_status",
        "webrtc_request",
        "webrtc_credentials",
        "webrtc_offer",
        "webrtc_answer",
        "webrtc_ice",
        "webrtc_close",
        "webrtc_error",
    } == protocol.RESERVED_TYPES


def test_each_role_may_send_only_its_tables_reserved_types():
    """Robot: hello/offer/ice/error/close (+ping/pong); app: auth/request/answer/ice/close (+ping/pong)."""
    assert {
        "ping",
        "pong",
        "hello",
        "webrtc_offer",
        "webrtc_ice",
        "webrtc_error",
        "webrtc_close",
    } == protocol.ROBOT_TYPES
    assert {
        "ping",
        "pong",
        "auth",
        "webrtc_request",
        "webrtc_answer",
        "webrtc_ice",
        "webrtc_close",
    } == protocol.APP_TYPES


def test_error_frame_shape():
    """`{"type":"error","code","message"}` plus `ref` only when given."""
    assert protocol.error_frame("BAD_REQUEST", "m") == {"type": "error", "code": "BAD_REQUEST", "message": "m"}
    assert protocol.RelayError("NOT_AUTHORIZED", "m", "webrtc_ice").frame() == {
        "type": "error",
        "code": "NOT_AUTHORIZED",
        "message": "m",
        "ref": "webrtc_ice",
    }


def test_error_codes_are_the_upper_case_contract_codes():
    """Every code of docs/protocol.md §15 exists, upper case, spelled as deployed clients expect."""
    codes = {v for k, v in vars(Code).items() if not k.startswith("_")}
    assert codes == {
        "BAD_REQUEST",
        "UNKNOWN_TYPE",
        "NOT_AUTHORIZED",
        "NO_DEVICE",
        "DEVICE_OFFLINE",
        "SESSION_NOT_FOUND",
        "MESSAGE_TOO_LARGE",
        "RATE_LIMITED",
        "TURN_ERROR",
        "TOKEN_EXPIRED",
        "INTERNAL",
    }


def test_iso_is_utc_with_z_and_none_for_unknown():
    """Timestamps are ISO 8601 UTC strings; unknown is None (→ JSON null)."""
    assert protocol.iso(None) is None
    assert protocol.iso(datetime(2026, 1, 1, tzinfo=UTC)) == "2026-01-01T00:00:00Z"
    assert protocol.now_iso().endswith("Z")


@pytest.mark.parametrize(
    "text",
    [
        '{"type":"x","n":NaN}',
        '{"type":"x","n":Infinity}',
        '{"type":"x","n":-Infinity}',
        '{"type":"x","n":1e400}',
        '{"type":"x","n":[-1E+309]}',
    ],
)
def test_nan_and_infinity_are_not_json(text):
    """`NaN`/`Infinity` (accepted by Python's json, excluded by RFC 8259), and numbers only a float infinity
    could hold (`1e400`, which would go out as `Infinity`), answer BAD_REQUEST, never forwarded to a receiver
    whose JSON parser would throw."""
    with pytest.raises(RelayError) as err:
        protocol.parse_text_frame(text, max_bytes=1000)
    assert err.value.code == "BAD_REQUEST"


def test_tiny_and_ordinary_floats_are_kept():
    """Underflow is not an error (`1e-400` is 0.0, a finite number); ordinary floats pass unchanged."""
    assert protocol.parse_text_frame('{"type":"x","a":1e-400,"b":0.5,"c":-2.5e3}', max_bytes=1000) == {
        "type": "x",
        "a": 0.0,
        "b": 0.5,
        "c": -2500.0,
    }


def test_lone_surrogate_escape_is_bad_request_but_a_pair_is_a_character():
    """A lone `\\ud800` cannot be sent on as UTF-8: BAD_REQUEST. A surrogate pair is one character (an emoji)."""
    with pytest.raises(RelayError) as err:
        protocol.parse_text_frame('{"type":"telemetry","v":"\\udfff"}', max_bytes=1000)
    assert err.value.code == "BAD_REQUEST"
    assert protocol.parse_text_frame('{"type":"x","v":"\\ud83d\\ude00"}', max_bytes=1000)["v"] == "\U0001f600"
