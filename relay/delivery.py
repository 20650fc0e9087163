"""Delivery: the only code that knows the relay's channel-layer message shapes.

Every message a consumer receives from the channel layer is one of these (`type` → consumer method):

| type | fields | the receiving consumer |
|---|---|---|
| `relay.frame` | `text`, `sid`?, `reply_to`?, `ref`? | writes `text` (with `sid`: while a party of it) |
| `relay.event` | `text`, `device_id`, `reply_to`, `ref` | an app writes it while it owns `device_id` |
| `relay.device` | `device_id`, `device_pk`, `owned`?, `robot_channel`?, `text`? | an app updates its facts |
| `relay.session_open` | `sid`, `app_channel`, `text` | a robot holds the session, writes `webrtc_request` |
| `relay.session_end` | `sid`, `text` | forgets the session, writes `text` (`webrtc_close`) |
| `relay.owner` | `owner_id` | a robot updates its owner |
| `relay.shed` | `ref`, `count` | answers `RATE_LIMITED` to its socket |
| `relay.replaced` / `relay.revoked` / `relay.fenced` | `login_id`? (revoked) | closes 4009 / 4003 / 1012 |

Frames are serialised once, by the sender (`encode`), and travel as text: the receiver writes them
unchanged, and between instances the text is never re-encoded (`relay.layer`).

Errors: a full receiver raises `RelayError` `RATE_LIMITED` to the sender (docs/protocol.md §15, §19.2);
a receiver that is gone raises `Undeliverable`, which callers turn into the code that fits
(`DEVICE_OFFLINE` for a robot, `RATE_LIMITED` otherwise).
"""

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, NotRequired, Protocol, TypeAlias, TypedDict, Unpack, cast

from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer

from core.logging import client_text

from .layer import ChannelGone, GroupSendShed, Message
from .party import Frame
from .protocol import MAX_REF_CHARS, Code, RelayError

logger = logging.getLogger(__name__)

# The `ref` an error frame names: the offending frame's type or session id (docs/protocol.md §15).
Ref: TypeAlias = str | None


# --- the message shapes (the table above) ----------------------------------------------------------


class FrameMessage(TypedDict):
    """`relay.frame`: a frame to write; with `sid` only while the receiver is a party of that session."""

    type: Literal["relay.frame"]
    text: str
    sid: NotRequired[str]
    reply_to: NotRequired[str]
    ref: NotRequired[Ref]


class EventMessage(TypedDict):
    """`relay.event`: a robot event, written by an app while its user owns `device_id`."""

    type: Literal["relay.event"]
    text: str
    device_id: str
    reply_to: str
    ref: Ref


class DeviceFacts(TypedDict, total=False):
    """What a `relay.device` message may change: `owned`, and `robot_channel` (None: offline)."""

    owned: bool
    robot_channel: str | None


class DeviceMessage(DeviceFacts):
    """`relay.device`: an app updates its facts of `device_id`, then writes `text` if present."""

    type: Literal["relay.device"]
    device_id: str
    device_pk: int
    text: NotRequired[str]


class SessionOpenMessage(TypedDict):
    """`relay.session_open`: a robot holds session `sid` (peer `app_channel`) and writes `text`."""

    type: Literal["relay.session_open"]
    sid: str
    app_channel: str
    text: str


class SessionEndMessage(TypedDict):
    """`relay.session_end`: the receiver forgets session `sid` and writes `text` (`webrtc_close`)."""

    type: Literal["relay.session_end"]
    sid: str
    text: str


class OwnerMessage(TypedDict):
    """`relay.owner`: a robot's owner is now `owner_id` (None: unpaired)."""

    type: Literal["relay.owner"]
    owner_id: int | None


class ShedMessage(TypedDict):
    """`relay.shed`: `count` receivers could not take the message the sender sent with `ref`."""

    type: Literal["relay.shed"]
    ref: Ref
    count: int


class CloseMessage(TypedDict):
    """`relay.replaced` / `relay.revoked` / `relay.fenced`: the receiver closes 4009 / 4003 / 1012."""

    type: Literal["relay.replaced", "relay.revoked", "relay.fenced"]
    login_id: NotRequired[str]  # `relay.revoked` to an owner group: only the app sockets of this login close


# Every message a relay consumer receives from the channel layer.
RelayMessage: TypeAlias = (
    FrameMessage
    | EventMessage
    | DeviceMessage
    | SessionOpenMessage
    | SessionEndMessage
    | OwnerMessage
    | ShedMessage
    | CloseMessage
)


class RelayLayer(Protocol):
    """What delivery needs of the channel layer: Channels' API plus confirmed sends (`relay.layer`)."""

    async def send(self, channel: str, message: Message) -> None: ...
    async def group_send(self, group: str, message: Message) -> None: ...
    async def group_add(self, group: str, channel: str) -> None: ...
    async def group_discard(self, group: str, channel: str) -> None: ...
    async def send_confirmed(self, channel: str, message: Message, timeout: float = 1.0) -> bool: ...
    async def group_send_confirmed(self, group: str, message: Message, timeout: float = 1.0) -> bool: ...


if TYPE_CHECKING:  # mypy checks here that the relay's layer keeps providing what delivery needs
    from .layer import RelayChannelLayer

    _relay_layer: type[RelayLayer] = RelayChannelLayer


class Undeliverable(RelayError):
    """The receiving consumer has left (or its instance is gone); `RATE_LIMITED` unless re-coded."""


def encode(frame: Frame) -> str:
    """A frame as the compact JSON text written to sockets (UTF-8 kept, no spaces)."""
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


def owner_group(user_id: int) -> str:
    """The group of every app socket of user `user_id`: the audience of the robots that user owns.

    User ids are integers, so no client input ever reaches a group name.
    """
    return f"owner.{int(user_id)}.apps"


# Channels' accessor, typed as returning the relay's layer (wimz/settings.py configures no other).
# Cast once here, not per call: `layer()` runs for every frame.
_channel_layer = cast(Callable[[], RelayLayer], get_channel_layer)


def layer() -> RelayLayer:
    """The process's channel layer (`relay.layer.RelayChannelLayer`, wimz/settings.py)."""
    return _channel_layer()


def _short(ref: Ref) -> Ref:
    """A `ref` as it travels with a message: cut to `MAX_REF_CHARS` (a client's long frame type is not
    carried along, docs/protocol.md §15); a full-length slice returns the same string, no copy."""
    return ref[:MAX_REF_CHARS] if isinstance(ref, str) else ref


async def _send(channel: str, message: Message, ref: Ref) -> None:
    try:
        await layer().send(channel, message)
    except ChannelGone as exc:
        raise Undeliverable(Code.RATE_LIMITED, "receiver is no longer connected; frame not delivered", ref) from exc
    except ChannelFull as exc:
        raise RelayError(Code.RATE_LIMITED, "receiver is not keeping up; frame dropped", ref) from exc


async def frame_to(
    channel: str, frame: Frame, *, ref: Ref = None, sid: str | None = None, reply_to: str | None = None
) -> None:
    """Send `frame` to one socket. Raises `RelayError` RATE_LIMITED (full) / `Undeliverable` (gone).

    `sid`: the frame belongs to that session (the receiver drops it unless it is a party, and tells
    `reply_to`). `reply_to`: the sender's channel, told `relay.shed` when another instance's queue is full.
    """
    message: FrameMessage = {"type": "relay.frame", "text": encode(frame)}
    if sid is not None:
        message["sid"] = sid
    if reply_to is not None:
        message["reply_to"] = reply_to
        message["ref"] = _short(ref)
    await _send(channel, message, ref)


async def notify(channel: str, frame: Frame) -> bool:
    """Best-effort `frame_to` for relay-originated frames; False (and a log line) when not delivered."""
    try:
        await frame_to(channel, frame)
    except RelayError:
        logger.warning("relay frame %s not delivered: receiver full or gone", client_text(frame.get("type")))
        return False
    return True


async def event_to_owner(owner_id: int, device_id: str, frame: Frame, *, reply_to: str, ref: Ref) -> int:
    """A robot event to every app socket of `owner_id`; returns how many local app sockets were full.

    Full sockets on other instances are reported later to `reply_to` as `relay.shed`.
    """
    message: EventMessage = {
        "type": "relay.event",
        "text": encode(frame),
        "device_id": device_id,
        "reply_to": reply_to,
        "ref": _short(ref),
    }
    try:
        await layer().group_send(owner_group(owner_id), message)
    except GroupSendShed as exc:
        return exc.shed
    except ChannelFull as exc:  # the layer could not send at all (Redis unreachable: the cause says why)
        raise RelayError(Code.RATE_LIMITED, "relay could not deliver the event right now; retry", ref) from exc
    return 0


async def device_update(
    owner_id: int,
    *,
    device_id: str,
    device_pk: int,
    frame: Frame | None = None,
    confirm: bool = False,
    **facts: Unpack[DeviceFacts],
) -> None:
    """Tell every app socket of `owner_id` about a change of one of its devices (`relay.device`).

    `facts`: `owned` (bool: the user owns the active device now) and/or `robot_channel` (str, or None
    when offline). `frame` (e.g. `device_status`) is written after the update. With `confirm`, waits
    until every instance has queued it (docs/architecture.md "Ownership changes across instances").
    """
    # The ignore: strict mode wants every optional key (`text`) spelled out in a literal that unpacks
    # `**`; `text` is set just below, and `facts` (keyword arguments) cannot carry keys of its own.
    message: DeviceMessage = {"type": "relay.device", "device_id": device_id, "device_pk": device_pk, **facts}  # type: ignore[typeddict-item]
    if frame is not None:
        message["text"] = encode(frame)
    await _to_group(owner_group(owner_id), message, confirm=confirm)


async def session_open(robot_channel: str, *, sid: str, app_channel: str, frame: Frame) -> None:
    """Give a robot a new session (`relay.session_open`) and its `webrtc_request`. Raises like `frame_to`."""
    message: SessionOpenMessage = {
        "type": "relay.session_open",
        "sid": sid,
        "app_channel": app_channel,
        "text": encode(frame),
    }
    await _send(robot_channel, message, "webrtc_request")


async def session_end(channel: str, *, sid: str, frame: Frame) -> bool:
    """Tell a party its session ended (`relay.session_end` with the `webrtc_close` frame); best effort."""
    message: SessionEndMessage = {"type": "relay.session_end", "sid": sid, "text": encode(frame)}
    try:
        await _send(channel, message, sid)
    except RelayError:
        logger.warning("webrtc_close for a session not delivered: party full or gone")
        return False
    return True


async def control(channel: str, kind: str, *, confirm: bool = False, **fields: Any) -> bool:
    """Send a control message (`relay.owner`, `relay.replaced`, `relay.revoked`, `relay.fenced`,
    `relay.shed`: `kind` without `relay.`, `fields` as in `OwnerMessage`/`ShedMessage`) to one consumer;
    False (logged) when it is full or gone. With `confirm`, waits until it was queued.
    """
    message: dict[str, Any] = {"type": f"relay.{kind}", **fields}
    try:
        if confirm:
            return await layer().send_confirmed(channel, message)
        await layer().send(channel, message)
    except ChannelFull:
        logger.warning("relay.%s not delivered: consumer full or gone", kind)
        return False
    return True


async def group_control(group: str, kind: str, *, confirm: bool = False, **fields: Any) -> None:
    """Send a control message (e.g. `relay.revoked`) to every member of `group` on every instance;
    with `confirm`, wait until every instance has queued it."""
    await _to_group(group, {"type": f"relay.{kind}", **fields}, confirm=confirm)


async def _to_group(group: str, message: Message, *, confirm: bool) -> None:
    """A relay-originated message to every member of `group` (best effort: what is not delivered is
    logged, there is no sender to tell); with `confirm`, waits until every instance queued it."""
    try:
        if confirm:
            if not await layer().group_send_confirmed(group, message):
                logger.warning("%s not confirmed by every instance in time", message["type"])
        else:
            await layer().group_send(group, message)
    except GroupSendShed as exc:
        logger.warning("%s not delivered to %d full socket(s)", message["type"], exc.shed)
    except ChannelFull as exc:
        logger.warning("%s not delivered: %s", message["type"], type(exc).__name__)


async def join(group: str, channel: str) -> None:
    """Add a consumer's channel to a group."""
    await layer().group_add(group, channel)


async def leave(group: str, channel: str) -> None:
    """Remove a consumer's channel from a group."""
    await layer().group_discard(group, channel)


def forget_channel(channel: str) -> None:
    """The consumer of `channel` has ended: drop its queue so later sends to it fail loudly."""
    discard = getattr(layer(), "discard_channel", None)
    if discard is not None:
        discard(channel)
