"""Frame dispatch: the handler for each frame type a role may send (docs/protocol.md §7, §8).

Consumers call `robot_frame` / `app_frame` after parsing and authorising; the tables below name the
module that owns each rule. Any type not in a table is an event (robot) or a command/pass-through
(app); reserved types out of place were refused by the consumer (`UNKNOWN_TYPE`).
"""

from collections.abc import Awaitable, Callable
from typing import TypeAlias

from . import messaging, sessions
from .party import Frame, Outcome, Party

# A frame handler: `(party, frame)` → what the consumer does next; raises `RelayError`.
Handler: TypeAlias = Callable[[Party, Frame], Awaitable[Outcome]]

ROBOT_TABLE: dict[str, Handler] = {"hello": messaging.hello, **sessions.ROBOT_HANDLERS}
APP_TABLE: dict[str, Handler] = dict(sessions.APP_HANDLERS)


async def robot_frame(party: Party, kind: str, frame: Frame) -> Outcome:
    """Handle one frame from a robot; `kind` from `relay.protocol.frame_type`. Raises `RelayError`."""
    handler = ROBOT_TABLE.get(kind)
    if handler is None:
        return await messaging.event(party, frame)
    return await handler(party, frame)


async def app_frame(party: Party, kind: str, frame: Frame) -> Outcome:
    """Handle one frame from an app; `kind` from `relay.protocol.frame_type`. Raises `RelayError`.
    `auth` (renewal) is the consumer's.
    """
    handler = APP_TABLE.get(kind)
    if handler is None:
        return await messaging.command(party, frame, kind)
    return await handler(party, frame)
