"""Hypothesis strategies for the protocol fuzzer: JSON payloads, frame types, garbage frames.

Values stay within the relay's limits (docs/protocol.md §3.3: `WIMZ_MAX_FRAME_BYTES`) unless a
strategy is named for crossing one. Garbage frames come with the error code the relay must answer
(docs/protocol.md §7, §15), so the machine can check the exact answer.
"""

import functools
import json
import string

from hypothesis import strategies as st

from relay.protocol import APP_TYPES, RESERVED_TYPES, ROBOT_TYPES

# Keys the relay reads or writes on the frames the fuzzer sends; random extra keys avoid them so
# that the frame's kind is decided by the fields the rule chose.
CONTROL_KEYS = frozenset(
    {
        "type",
        "event",
        "device_id",
        "timestamp",
        "fz",
        "session_id",
        "params",
        "data",
        "command",
        "sdp",
        "candidate",
        "token",
        "reason",
        "capabilities",
        "firmware_version",
    }
)

# Any text, NUL and astral characters included (lone surrogates are their own garbage class).
text = st.text(max_size=24)
# Long strings, up to the 256 characters an error's `ref` may hold (docs/schema/relay-frames.schema.json):
# the relay echoes a longer `type` whole in the error's `ref` (a known defect, reproduced by
# tests/fuzz/test_findings.py), so longer ones would only find that again.
long_text = st.text(min_size=200, max_size=256)
# `hello` strings without NUL: PostgreSQL cannot store one, and the relay answers INTERNAL to such a
# `hello` (a known defect, reproduced by tests/fuzz/test_findings.py); leaving NUL out lets the
# fuzzer look for the next one.
hello_text = st.text(max_size=24).filter(lambda s: "\x00" not in s)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text
)

json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=16,
)


def extra_keys() -> st.SearchStrategy[dict]:
    """Random keys (any text but the control keys) with random JSON values."""
    return st.dictionaries(text.filter(lambda k: k not in CONTROL_KEYS), json_values, max_size=3)


def nested(depth: int) -> list:
    """A list nested `depth` levels deep: `[[[…]]]`."""
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


# Nesting depths around the interpreter's recursion limit (1000): a value that parses may still be
# too deep to encode again a few stack frames further in.
deep_depths = st.one_of(st.integers(1, 40), st.integers(900, 1000), st.integers(1000, 1200))

# Non-reserved type names: events (robot) and pass-through frames (app), some long.
free_types = st.one_of(
    st.sampled_from(["status_update", "telemetry", "detection", "battery", "audio_message", "get_status", "x"]),
    st.text(min_size=1, max_size=24),
    long_text,
).filter(lambda t: t not in RESERVED_TYPES and t != "command")

_ID_CHARS = frozenset(string.ascii_letters + string.digits + "_.-")

# `device_id` values outside the alphabet of docs/protocol.md §2 (BAD_REQUEST, §10).
invalid_device_ids = st.one_of(
    st.text(max_size=70).filter(lambda s: not (0 < len(s) <= 64 and set(s) <= _ID_CHARS)),
    st.integers(),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
    st.just({}),
)


def _not_a_json_object(raw: str) -> bool:
    try:
        return not isinstance(json.loads(raw), dict)
    except ValueError:
        return True


@functools.cache
def garbage(role: str, max_bytes: int) -> st.SearchStrategy[tuple[str, object, str, str | None]]:
    """`(label, frame, code, ref)`: a frame `role`'s socket may send and the error it must get.

    `frame` is bytes (a binary message), a str (sent as is) or a dict (sent as JSON). `ref` is the
    error's expected `ref` (None: no `ref` key).
    """
    out_of_place = sorted(RESERVED_TYPES - (APP_TYPES if role == "app" else ROBOT_TYPES))
    other_keys = extra_keys()
    choices = [
        st.binary(min_size=1, max_size=64).map(lambda b: ("binary", b, "BAD_REQUEST", None)),
        st.text(min_size=1, max_size=40)
        .filter(_not_a_json_object)
        .map(lambda t: ("not an object", t, "BAD_REQUEST", None)),
        json_values.filter(lambda v: not isinstance(v, dict)).map(
            lambda v: ("json, not an object", json.dumps(v), "BAD_REQUEST", None)
        ),
        st.tuples(json_values.filter(lambda v: not isinstance(v, str) and v is not None), other_keys).map(
            lambda t: ("non-string type", {"type": t[0], **t[1]}, "BAD_REQUEST", None)
        ),
        other_keys.map(lambda k: ("empty type", {"type": "", **k}, "BAD_REQUEST", None)),
        other_keys.map(lambda k: ("no type", k, "BAD_REQUEST", None)),
        st.tuples(st.sampled_from(out_of_place), other_keys, st.sampled_from([None, "wimz_robot_01"])).map(
            lambda t: (
                "reserved type out of place",
                {"type": t[0], **t[1], **({"device_id": t[2]} if t[2] else {})},
                "UNKNOWN_TYPE",
                t[0],
            )
        ),
        st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1e999"]).map(
            lambda c: ("non-finite number", '{"type":"telemetry","v":' + c + "}", "BAD_REQUEST", None)
        ),
        st.integers(4301, 6000).map(
            lambda n: (
                "integer beyond the parser's digit limit",
                '{"type":"telemetry","v":' + "7" * n + "}",
                "BAD_REQUEST",
                None,
            )
        ),
        st.sampled_from(["\\ud800", "\\udfff", "a\\udbffb"]).map(
            lambda s: ("escaped lone surrogate", '{"type":"telemetry","s":"' + s + '"}', "BAD_REQUEST", None)
        ),
        st.sampled_from(["\ud800", "x\udc00y"]).map(
            lambda s: ("raw lone surrogate", '{"type":"telemetry","s":"' + s + '"}', "BAD_REQUEST", None)
        ),
        st.integers(5000, 60000).map(
            lambda n: (
                "nested beyond any recursion limit",
                '{"type":"telemetry","v":' + "[" * n + "]" * n + "}",
                "BAD_REQUEST",
                None,
            )
        ),
        st.sampled_from(["a", "é", "😀"]).map(
            lambda ch: (
                "over the frame limit",
                '{"type":"telemetry","v":"' + ch * (max_bytes // len(ch.encode()) + 1) + '"}',
                "MESSAGE_TOO_LARGE",
                None,
            )
        ),
    ]
    if role == "app":
        choices.append(
            other_keys.map(lambda k: ("legacy event from an app", {"event": "detection", **k}, "BAD_REQUEST", None))
        )
    return st.one_of(*choices)
