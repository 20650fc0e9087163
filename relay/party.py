"""What a socket knows: its identity and the routing facts its frames need, kept current by events.

A `Party` is held by one consumer (one robot or app socket). Its facts are loaded from the database
when the socket connects and then changed only by channel-layer messages (`relay.delivery`), which
every instance sends for every change — so a frame is routed without a database read and the rules
still hold with the robot and the app on different instances:

- a robot knows its device and its current owner (`owner_id`, None while unpaired);
- an app knows which active devices its user owns (`devices`) and where each one's robot socket is
  (`robots`, absent while offline);
- both know their live sessions (`sessions`: the other party's channel, what was recorded, ICE counts).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    from .session_rows import SessionRef

ROBOT = "robot"
APP = "app"

# A parsed JSON frame (an object) of the wire protocol, as handlers read and build it.
Frame: TypeAlias = dict[str, Any]


@dataclass
class LiveSession:
    """A session this socket is a party of: `peer` is the other party's channel."""

    device_id: str
    peer: str
    offered: bool = False
    answered: bool = False
    ice: int = 0  # candidates this socket forwarded, written to the history row when the session ends
    requested_at: float | None = None  # the opening app's socket: time.monotonic() its webrtc_request arrived


@dataclass(eq=False)  # identity: one Party per socket (hashable, for weak sets)
class Party:
    """One authenticated socket: `role` (`robot`/`app`), its `channel_name` and its routing facts.

    A robot has `device_pk`/`device_id`/`owner_id`; an app has `user_id`, `login_id` (the login of the
    token it runs on: a logout of that login closes it), `devices` (device_id → pk) and `robots`
    (device_id → robot channel).
    """

    role: str
    channel_name: str
    user_id: int | None = None
    device_pk: int | None = None
    device_id: str | None = None
    owner_id: int | None = None
    login_id: str | None = None
    devices: dict[str, int] = field(default_factory=dict)
    robots: dict[str, str] = field(default_factory=dict)
    sessions: dict[str, LiveSession] = field(default_factory=dict)


@dataclass
class Outcome:
    """What a frame handler asks of the sender's consumer: `replies` to write back, a session
    `opened` (whose setup timer the consumer starts)."""

    replies: list[Frame] = field(default_factory=list)
    opened: SessionRef | None = None
