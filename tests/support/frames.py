"""Check every frame the relay sends against the machine-readable protocol description.

`docs/schema/relay-frames.schema.json` (JSON Schema 2020-12) describes each frame the relay writes to
a robot or an app socket (docs/protocol.md §8.3, §8.4). The suites' receive helpers call
`check_sent` on every frame they read, so a frame the relay sends that the description does not
allow fails the test that received it.
"""

import json
from functools import cache
from pathlib import Path

from jsonschema import Draft202012Validator

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "docs" / "schema" / "relay-frames.schema.json"

# The socket path tells the receiver's role; the compat `/ws` socket may be either (docs/protocol.md §6).
_ROLE_OF_PATH = {"/ws/device": "to_robot", "/ws/device/": "to_robot", "/ws/app": "to_app", "/ws/app/": "to_app"}


@cache
def _validator(definition: str | None) -> Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    if definition is not None:
        schema = {key: value for key, value in schema.items() if key != "anyOf"} | {"$ref": f"#/$defs/{definition}"}
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def check_sent(frame, path: str | None = None):
    """Return `frame` (a decoded JSON value the relay sent) after checking it against the description
    for the socket at `path` (`/ws/device`, `/ws/app`, `/ws` or None for either role).

    Raises AssertionError naming the frame and the first violations.
    """
    validator = _validator(_ROLE_OF_PATH.get((path or "").split("?")[0]))
    errors = sorted(validator.iter_errors(frame), key=lambda e: e.path)
    if errors:
        detail = "; ".join(f"{list(e.absolute_path)}: {e.message[:200]}" for e in errors[:3])
        raise AssertionError(
            f"the relay sent a frame docs/schema/relay-frames.schema.json does not allow: "
            f"{json.dumps(frame)[:300]} ({detail})"
        )
    return frame
