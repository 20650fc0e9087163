"""Frame vocabulary of the relay: reserved types, error codes, parsing and field checks.

Source: docs/protocol.md §8, "Errors" and "Precise rules". Every function here is pure: no I/O, no
Django models, so the rules can be tested without a socket.
"""

import json
import re
import uuid
from datetime import UTC, datetime
from typing import NoReturn, overload

from devices.ids import is_valid_device_id

from .party import Frame

# docs/protocol.md §8: relay-reserved types.
RESERVED_TYPES = frozenset(
    {
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
    }
)
# Reserved types each role may send (docs/protocol.md §8.1, §8.2).
ROBOT_TYPES = frozenset({"ping", "pong", "hello", "webrtc_offer", "webrtc_ice", "webrtc_error", "webrtc_close"})
APP_TYPES = frozenset({"ping", "pong", "auth", "webrtc_request", "webrtc_answer", "webrtc_ice", "webrtc_close"})


class Code:
    """Error codes of docs/protocol.md §15 (upper case, as deployed clients expect)."""

    BAD_REQUEST = "BAD_REQUEST"
    UNKNOWN_TYPE = "UNKNOWN_TYPE"
    NOT_AUTHORIZED = "NOT_AUTHORIZED"
    NO_DEVICE = "NO_DEVICE"
    DEVICE_OFFLINE = "DEVICE_OFFLINE"
    SESSION_NOT_FOUND = "SESSION_NOT_FOUND"
    MESSAGE_TOO_LARGE = "MESSAGE_TOO_LARGE"
    RATE_LIMITED = "RATE_LIMITED"
    TURN_ERROR = "TURN_ERROR"
    TOKEN_EXPIRED = "TOKEN_EXPIRED"
    INTERNAL = "INTERNAL"


class CloseCode:
    """WebSocket close codes the relay uses (docs/protocol.md §16)."""

    TOKEN_EXPIRED = 4001  # app token expired without renewal
    AUTH_FAILED = 4003  # compat `/ws` in-band auth refused/late; a robot deactivated or its secret rotated
    NOT_DRAINING = 4008  # the client left too much of what it was sent unread (docs/protocol.md §19.2)
    REPLACED = 4009  # a newer socket for the same device_id took over


class RelayError(Exception):
    """A protocol error answered to the sender as `{"type":"error","code","message","ref"?}`.

    `code` is one of `Code`; `ref` is the offending frame's type or session_id (docs/protocol.md §15).
    The socket stays open.
    """

    def __init__(self, code: str, message: str, ref: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref

    def frame(self) -> Frame:
        """The error frame for this error."""
        return error_frame(self.code, self.message, self.ref)


# docs/protocol.md §15: `ref` names the offending frame (its type or session id) in at most this many
# characters, so that an error never echoes a client's long string back (or into a log line).
MAX_REF_CHARS = 64
# docs/protocol.md §7: objects and arrays nested deeper than this are refused (BAD_REQUEST). No frame of
# the protocol nests more than a few levels; every later step (copying, encoding, the channel layer)
# may then walk a frame without any risk of exhausting the interpreter's recursion limit.
MAX_NESTING = 32


def error_frame(code: str, message: str, ref: str | None = None) -> Frame:
    """`{"type":"error","code":code,"message":message}` plus `ref` when given (docs/protocol.md §15).

    A `ref` that is not a string is left out; a longer one is cut to `MAX_REF_CHARS` characters.
    """
    frame: Frame = {"type": "error", "code": code, "message": message}
    if isinstance(ref, str):
        frame["ref"] = ref[:MAX_REF_CHARS]
    return frame


def now_iso() -> str:
    """The current time as an ISO 8601 UTC string with a `Z` suffix (docs/protocol.md §2)."""
    return iso(datetime.now(UTC))


@overload
def iso(value: datetime) -> str: ...
@overload
def iso(value: None) -> None: ...
@overload
def iso(value: datetime | None) -> str | None: ...
def iso(value: datetime | None) -> str | None:
    """An aware datetime as ISO 8601 UTC (`2026-01-01T00:00:00.123456Z`), or None."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_text_frame(text: str, *, max_bytes: int) -> Frame:
    """Decode one text frame into a JSON object.

    Raises `RelayError` MESSAGE_TOO_LARGE when the UTF-8 size exceeds `max_bytes` (checked before
    parsing), BAD_REQUEST when it is not JSON (including `NaN`/`Infinity`, which RFC 8259 excludes, and
    numbers such as `1e400` that only a float infinity could hold),
    not an object, nests objects/arrays deeper than `MAX_NESTING` levels, or holds a lone UTF-16
    surrogate that could not be sent on as UTF-8 (docs/protocol.md §8, §3.3, §7).
    """
    if text.isascii():
        size = len(text)
    else:
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError:  # a raw lone surrogate (a test client can send one; a socket cannot)
            # from None: the cause holds the client's whole frame text and says no more than the message.
            raise RelayError(Code.BAD_REQUEST, "frame contains a lone UTF-16 surrogate (\\uD800-\\uDFFF)") from None
    if size > max_bytes:
        raise RelayError(Code.MESSAGE_TOO_LARGE, f"frame of {size} bytes exceeds the limit of {max_bytes} bytes")
    try:
        frame = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except ValueError:
        raise RelayError(Code.BAD_REQUEST, "frame is not valid JSON") from None  # the cause quotes client text
    except RecursionError:  # so deep that the decoder itself gave up: far past the nesting limit
        raise RelayError(Code.BAD_REQUEST, f"frame nests objects/arrays deeper than {MAX_NESTING} levels") from None
    if not isinstance(frame, dict):
        raise RelayError(Code.BAD_REQUEST, "frame must be a JSON object")
    # Only a frame with more brackets than the limit can nest deeper than it: the common frame pays two
    # C-level scans of its text, and only bracket-rich frames are walked.
    if (text.count("{") + text.count("[") > MAX_NESTING) and _too_deep(frame, MAX_NESTING):
        raise RelayError(Code.BAD_REQUEST, f"frame nests objects/arrays deeper than {MAX_NESTING} levels")
    if _SURROGATE_ESCAPE.search(text) and not _encodable(frame):
        raise RelayError(Code.BAD_REQUEST, "frame contains a lone UTF-16 surrogate (\\uD800-\\uDFFF)")
    return frame


# `\uD800`–`\uDFFF` escapes: a pair encodes one character (fine), a lone one decodes to a string that
# cannot be sent as UTF-8 to the receiver. Only frames with such an escape pay for the full check.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _too_deep(value: Frame, limit: int) -> bool:
    """True when `value` (parsed JSON) nests dicts/lists more than `limit` levels (the top level is 1);
    iterative, and it stops at the first container beyond the limit."""
    stack: list[tuple[Frame | list[object], int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def _reject_constant(name: str) -> NoReturn:
    """`NaN`, `Infinity`, `-Infinity` are not JSON (RFC 8259 §6); receivers such as Dart's jsonDecode
    refuse them, so the relay does not forward them."""
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(literal: str) -> float:
    """A JSON number literal as a float; one too large for a float (`1e400`) would become infinity and
    be sent on as `Infinity`, which is not JSON (RFC 8259 §6), so it is refused."""
    value = float(literal)
    if value in (_INF, -_INF):
        raise ValueError(f"{literal[:32]} is out of range")
    return value


_INF = float("inf")


def _encodable(frame: Frame) -> bool:
    try:
        json.dumps(frame, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def frame_type(frame: Frame, *, allow_legacy_event: bool) -> str:
    """The frame's `type`; for robots a legacy `{"event":…}` frame without `type` is an event.

    Returns the type string, or `"event"` for a legacy robot event. Raises BAD_REQUEST when `type` is
    missing or not a string.
    """
    kind = frame.get("type")
    if kind is None and allow_legacy_event and "event" in frame:
        return "event"
    if not isinstance(kind, str) or not kind:
        raise RelayError(Code.BAD_REQUEST, "frame needs a string 'type'")
    return kind


def require_str(frame: Frame, key: str, ref: str | None = None) -> str:
    """`frame[key]` when it is a non-empty string, else BAD_REQUEST naming the field."""
    value = frame.get(key)
    if not isinstance(value, str) or not value:
        raise RelayError(Code.BAD_REQUEST, f"'{key}' must be a non-empty string", ref or frame.get("type"))
    return value


def optional_device_id(frame: Frame) -> str | None:
    """A frame's `device_id` when present (validated against the protocol's alphabet), else None.

    Raises BAD_REQUEST for a non-string or an id outside `A–Z a–z 0–9 _ . -` (1–64 chars), so that no
    such value ever reaches a database query or a channel-layer name (docs/protocol.md §4).
    """
    if "device_id" not in frame or frame["device_id"] is None:
        return None
    value = frame["device_id"]
    if not is_valid_device_id(value):
        raise RelayError(Code.BAD_REQUEST, "device_id must be 1-64 characters of A-Z a-z 0-9 _ . -", frame.get("type"))
    return value


def session_id_of(frame: Frame) -> str:
    """A frame's `session_id` as a canonical UUID string.

    A missing or non-string id is BAD_REQUEST; a string that is not a UUID cannot name any session and
    answers NOT_AUTHORIZED, like every id that does not exist (docs/protocol.md §15).
    """
    raw = require_str(frame, "session_id")
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        # from None: a malformed id is answered like an unknown one (docs/protocol.md §15).
        raise RelayError(Code.NOT_AUTHORIZED, "unknown session", raw[:64]) from None


def require_sdp(frame: Frame, expected: str) -> None:
    """Check `frame["sdp"]` is `{"type": expected, "sdp": str}`; BAD_REQUEST otherwise (docs/protocol.md §8)."""
    sdp = frame.get("sdp")
    if not isinstance(sdp, dict) or sdp.get("type") != expected or not isinstance(sdp.get("sdp"), str):
        raise RelayError(
            Code.BAD_REQUEST,
            f'\'sdp\' must be a session description {{"type":"{expected}","sdp":…}}',
            frame.get("type"),
        )


def require_candidate(frame: Frame) -> None:
    """Check `frame["candidate"]` is an ICE candidate object (or null for end-of-candidates)."""
    if "candidate" not in frame:
        raise RelayError(Code.BAD_REQUEST, "'candidate' is required", frame.get("type"))
    candidate = frame["candidate"]
    if candidate is not None and not isinstance(candidate, dict):
        raise RelayError(Code.BAD_REQUEST, "'candidate' must be an ICE candidate object", frame.get("type"))


def robot_event(frame: Frame, device_id: str) -> Frame:
    """The event as apps receive it: the robot's keys unchanged, `device_id` set to the authenticated
    id (overwriting any other value) and a server `timestamp` added when absent (docs/protocol.md
    §9).
    """
    event = dict(frame)
    event["device_id"] = device_id
    if "timestamp" not in event:
        event["timestamp"] = now_iso()
    return event
