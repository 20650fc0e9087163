"""Signaling sessions: request, offer, answer, ICE, close, error and setup timeout, as handler tables.

docs/protocol.md §13. A session's two parties hold it in their `Party.sessions` (the other party's
channel), so an offer, answer or ICE candidate is forwarded without a database read. The session
row (`relay.session_rows`) is the cluster-wide truth and the history: written at each transition —
open, first offer, first answer, end (with the ICE counts) — and read only when a socket signals a
session it does not hold: another app socket of the session's user (docs/protocol.md §13.6), or an
id that is ended or not the sender's (§13.7).

Handlers take `(party, frame)` and return a `relay.party.Outcome`; errors are `RelayError`.
"""

import time
from typing import TypedDict, cast

from channels.db import database_sync_to_async
from django.conf import settings

from . import delivery, metrics, session_rows
from .addressing import address
from .delivery import FrameMessage, SessionEndMessage, SessionOpenMessage
from .models import Session
from .party import APP, Frame, LiveSession, Outcome, Party
from .protocol import Code, RelayError, error_frame, optional_device_id, require_candidate, require_sdp, session_id_of

EndReason = Session.EndReason


class _PartyLookup(TypedDict, total=False):
    """How `session_rows.session_for_party` finds a session of this socket: by user (an app) or by
    robot socket and device (a robot)."""

    user_id: int | None
    robot_channel: str | None
    device_pk: int | None


async def announce_end(
    ref: session_rows.SessionRef, reason: str, *, skip: str | None = None, frame: Frame | None = None
) -> None:
    """Tell every party still connected that a session ended: `webrtc_close` with `reason`.

    `skip` is the channel of the party that closed it (docs/protocol.md §13.6: not echoed). `frame` is
    the closer's own `webrtc_close`, forwarded with its keys kept and `reason` set.
    """
    close: Frame = dict(frame) if frame else {"type": "webrtc_close", "session_id": ref.session_id}
    close["reason"] = reason
    for channel in (ref.app_channel, ref.robot_channel):
        if channel != skip:
            await delivery.session_end(channel, sid=ref.session_id, frame=close)


async def _peer(party: Party, session_id: str) -> tuple[str, LiveSession | None]:
    """The other party's channel for `session_id`, and this socket's `LiveSession` if it holds it.

    A session this socket does not hold is looked up in its row: raises NOT_AUTHORIZED (not the
    sender's, or unknown) or SESSION_NOT_FOUND (the sender's, ended) — docs/protocol.md §13.7.
    """
    live = party.sessions.get(session_id)
    if live is not None:
        return live.peer, live
    lookup: _PartyLookup
    if party.role == APP:
        lookup = {"user_id": party.user_id}
    else:
        lookup = {"robot_channel": party.channel_name, "device_pk": party.device_pk}
    ref = await database_sync_to_async(session_rows.session_for_party)(session_id=session_id, side=party.role, **lookup)
    return (ref.robot_channel if party.role == APP else ref.app_channel), None


# --- forwarded signaling: offer (robot), answer (app), ICE (either) --------------------------------


def _canonical(frame: Frame, session_id: str) -> Frame:
    """`frame` naming its session as `session_id` (the canonical lower-case UUID): a sender that spelled
    it otherwise (upper case, braces, no hyphens) must not make the peer see an id it was never given
    (docs/protocol.md §2). The frame is copied only then; otherwise it is forwarded as it came."""
    return frame if frame.get("session_id") == session_id else {**frame, "session_id": session_id}


async def _forward(party: Party, frame: Frame, *, state: str | None) -> None:
    session_id = session_id_of(frame)
    frame = _canonical(frame, session_id)
    peer, live = await _peer(party, session_id)
    if state is None:  # ICE: at most WIMZ_MAX_ICE_PER_SESSION per socket and session (§15.1)
        cap = settings.WIMZ_MAX_ICE_PER_SESSION
        if live is not None:
            if 0 < cap <= live.ice:
                raise RelayError(Code.RATE_LIMITED, f"at most {cap} ICE candidates per session", session_id)
        elif not await database_sync_to_async(session_rows.session_count_ice)(
            session_id=session_id, side=party.role, limit=cap
        ):  # a socket that does not hold the session: counted on the row at once
            raise RelayError(Code.RATE_LIMITED, f"at most {cap} ICE candidates per session", session_id)
    await delivery.frame_to(peer, frame, ref=session_id, sid=session_id, reply_to=party.channel_name)
    if state is None:  # counted by the socket, written to the row when the session ends
        if live is not None:
            live.ice += 1
        return
    flag = "offered" if state == Session.State.OFFERED else "answered"
    if live is None or not getattr(live, flag):
        await database_sync_to_async(session_rows.session_mark)(session_id=session_id, state=state)
        if live is not None:
            setattr(live, flag, True)
            if live.requested_at is not None and state == Session.State.ANSWERED:
                metrics.SESSION_SETUP_SECONDS.observe(time.monotonic() - live.requested_at)


async def offer(party: Party, frame: Frame) -> Outcome:
    """`webrtc_offer` from the robot: to the app socket that opened the session (§13.1)."""
    require_sdp(frame, "offer")
    await _forward(party, frame, state=Session.State.OFFERED)
    return Outcome()


async def answer(party: Party, frame: Frame) -> Outcome:
    """`webrtc_answer` from an app of the session's user: to the session's robot (§13.1)."""
    require_sdp(frame, "answer")
    await _forward(party, frame, state=Session.State.ANSWERED)
    return Outcome()


async def ice(party: Party, frame: Frame) -> Outcome:
    """`webrtc_ice` from either party: to the other one, unchanged (§13.1)."""
    require_candidate(frame)
    await _forward(party, frame, state=None)
    return Outcome()


# --- open, close, error, timeout -------------------------------------------------------------------


async def request(party: Party, frame: Frame) -> Outcome:
    """`webrtc_request` from an app: open a session (§13.1). The app gets `webrtc_credentials`, the
    robot `webrtc_request`, both with the same `ice_servers`; sessions over the device's limit end
    `superseded` (§13.5). A robot that cannot take the request leaves no session row.
    """
    from .ice import issue_ice_servers

    requested_at = time.monotonic()
    target = address(party, optional_device_id(frame), ref="webrtc_request")
    user_id = cast(int, party.user_id)  # an app's Party always has its user
    # The user owns the target (addressing checked it), so the TURN policy's device rule holds.
    ice_servers = (await issue_ice_servers(user_id=user_id, owns_device=True)).ice_servers
    ref, superseded = await database_sync_to_async(session_rows.session_open)(
        user_id=user_id, target=target, app_channel=party.channel_name
    )
    for old in superseded:
        await announce_end(old, EndReason.SUPERSEDED)
    try:
        await delivery.session_open(
            ref.robot_channel,
            sid=ref.session_id,
            app_channel=party.channel_name,
            frame={"type": "webrtc_request", "session_id": ref.session_id, "ice_servers": ice_servers},
        )
    except RelayError as exc:
        # The robot never heard of it: the session did not happen, so it leaves no history row.
        await database_sync_to_async(session_rows.session_discard)(session_id=ref.session_id)
        if isinstance(exc, delivery.Undeliverable):
            raise RelayError(Code.DEVICE_OFFLINE, "device is offline", "webrtc_request") from exc
        raise
    party.sessions[ref.session_id] = LiveSession(
        device_id=ref.device_id, peer=ref.robot_channel, requested_at=requested_at
    )
    credentials: Frame = {
        "type": "webrtc_credentials",
        "session_id": ref.session_id,
        "device_id": ref.device_id,
        "ice_servers": ice_servers,
    }
    return Outcome(replies=[credentials], opened=ref)


def _end_db(party: Party, session_id: str, reason: str) -> session_rows.SessionRef | None:
    live = party.sessions.pop(session_id, None)
    if live is not None:
        session_rows.session_count_ice(session_id=session_id, side=party.role, count=live.ice)
    return session_rows.session_end(session_id=session_id, reason=reason)


async def close(party: Party, frame: Frame) -> Outcome:
    """`webrtc_close` from a party: every other party still connected gets it with `reason`
    `closed_by_app` / `closed_by_robot`; the sender is not echoed (§13.6).
    """
    session_id = session_id_of(frame)
    frame = _canonical(frame, session_id)
    await _peer(party, session_id)
    reason = EndReason.CLOSED_BY_APP if party.role == APP else EndReason.CLOSED_BY_ROBOT
    ended = await database_sync_to_async(_end_db)(party, session_id, reason)
    if ended is not None:
        await announce_end(ended, reason, skip=party.channel_name, frame=frame)
    return Outcome()


async def error(party: Party, frame: Frame) -> Outcome:
    """`webrtc_error` from the robot: forwarded to the app, then the session ends `robot_error` and
    both parties get `webrtc_close` (§13.3).
    """
    session_id = session_id_of(frame)
    peer, _ = await _peer(party, session_id)
    await delivery.notify(peer, _canonical(frame, session_id))
    ended = await database_sync_to_async(_end_db)(party, session_id, EndReason.ROBOT_ERROR)
    if ended is not None:
        await announce_end(ended, EndReason.ROBOT_ERROR)
    return Outcome()


async def setup_expired(party: Party, session_id: str) -> None:
    """The setup timer fired: end the session `setup_timeout` unless it was answered (§13.4)."""
    ref = await database_sync_to_async(session_rows.session_end)(
        session_id=session_id, reason=EndReason.SETUP_TIMEOUT, unless_answered=True
    )
    if ref is not None:
        await announce_end(ref, EndReason.SETUP_TIMEOUT)


# --- what the other side's messages change ----------------------------------------------------------


def opened_by_app(party: Party, message: SessionOpenMessage) -> str:
    """A robot receives `relay.session_open`: hold the session; returns the `webrtc_request` text."""
    # A robot's Party always names its device (relay.connections).
    party.sessions[message["sid"]] = LiveSession(device_id=cast(str, party.device_id), peer=message["app_channel"])
    return message["text"]


async def ended_elsewhere(party: Party, message: SessionEndMessage) -> None:
    """`relay.session_end`: forget the session, writing this side's ICE count to its row."""
    session_id = message["sid"]
    live = party.sessions.pop(session_id, None)
    if live is not None and live.ice:
        await database_sync_to_async(session_rows.session_count_ice)(
            session_id=session_id, side=party.role, count=live.ice
        )


async def check_party(party: Party, message: FrameMessage) -> bool:
    """A session frame arrives for this socket: True when it still holds the session. Otherwise the
    sender (`reply_to`) is told SESSION_NOT_FOUND — the session ended before the frame arrived.
    """
    session_id = message.get("sid")
    if session_id is None or session_id in party.sessions:
        return True
    reply_to = message.get("reply_to")
    if reply_to:
        metrics.REFUSED[Code.SESSION_NOT_FOUND].inc()
        await delivery.notify(reply_to, error_frame(Code.SESSION_NOT_FOUND, "session has ended", session_id))
    return False


ROBOT_HANDLERS = {"webrtc_offer": offer, "webrtc_ice": ice, "webrtc_error": error, "webrtc_close": close}
APP_HANDLERS = {"webrtc_request": request, "webrtc_answer": answer, "webrtc_ice": ice, "webrtc_close": close}
