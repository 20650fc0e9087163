"""The device id rule (docs/protocol.md §2, §4), with no Django import: the relay's frame parser
(`relay/protocol.py`) checks ids with it without loading any model.
"""

import re
from typing import TypeGuard

# docs/protocol.md §2, §4: 1–64 characters of A–Z a–z 0–9 _ . -, and not "." or "..": an id is a path
# segment of the REST API (`/api/devices/<device_id>`), where those two are dot-segments that clients
# and proxies resolve away (RFC 3986 §5.2.4), so such a device could never be reached.
DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
DOT_SEGMENTS = frozenset({".", ".."})
DEVICE_ID_RULE = "device_id must be 1-64 characters of A-Z a-z 0-9 _ . - and not . or .."


def is_valid_device_id(value: object) -> TypeGuard[str]:
    """True when `value` is a string of 1–64 characters of `A–Z a–z 0–9 _ . -` other than `.` and `..`
    (docs/protocol.md §4): a safe URL path segment."""
    return isinstance(value, str) and bool(DEVICE_ID_RE.fullmatch(value)) and value not in DOT_SEGMENTS
