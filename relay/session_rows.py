"""Session rows: the history and cluster-wide truth of signaling sessions (docs/protocol.md §13).

States `requested → offered → answered → ended`. Every transition is one conditional UPDATE on the
session row, so two relay instances racing on the same session (an answer arriving while the setup
timer fires, say) can never both win: the loser sees the row already moved on. Rows are written at
transitions only (open, first offer, first answer, end, ICE counts at the end) and read only off the
per-frame path: when a party signals a session its socket does not hold (another app socket of the
user, an ended or foreign id). All functions are synchronous ORM code; `relay.sessions` calls them
through `database_sync_to_async`.
"""

import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from devices.models import Device

from . import metrics
from .models import Session
from .protocol import Code, RelayError

ROBOT = "robot"
APP = "app"

logger = logging.getLogger(__name__)
metrics.declare_end_reasons(Session.EndReason.values)


@dataclass(frozen=True)
class SessionRef:
    """What signaling needs to know of a session: its id, device and both parties' channels."""

    session_id: str
    device_id: str
    user_id: int
    app_channel: str
    robot_channel: str

    @classmethod
    def of(cls, session: Session) -> "SessionRef":
        return cls(
            str(session.id), session.device.device_id, session.user_id, session.app_channel, session.robot_channel
        )


@dataclass(frozen=True)
class Target:
    """A robot an app may address: the device and its robot socket's channel."""

    device_pk: int
    device_id: str
    robot_channel: str


def session_open(*, user_id: int, target: Target, app_channel: str) -> tuple[SessionRef, list[SessionRef]]:
    """Create a session for `target` and end what it supersedes.

    docs/protocol.md §13.5: when a request would exceed `WIMZ_MAX_SESSIONS_PER_DEVICE` live
    sessions, the oldest live sessions of that device end with reason `superseded`. Returns the new
    session and the superseded ones (for their parties to be told). Raises NOT_AUTHORIZED when
    `user_id` no longer owns the active device (and creates nothing).
    """
    limit = max(1, settings.WIMZ_MAX_SESSIONS_PER_DEVICE)
    with transaction.atomic():
        # Lock the device row so that concurrent requests for one robot count sessions one at a time, and
        # check under that lock that the requester still owns the active device: the app socket's facts
        # may be a moment old, and a session opened just after an unpair committed would outlive it
        # (the unpair ends only the sessions it can see). Unpair and deactivation update this same row.
        owned = (
            Device.objects.select_for_update()
            .filter(pk=target.device_pk, owner_id=user_id, is_active=True)
            .values_list("pk", flat=True)
            .first()
        )
        if owned is None:
            raise RelayError(Code.NOT_AUTHORIZED, "not your device", "webrtc_request")
        live = list(
            Session.objects.select_related("device")
            .filter(device_id=target.device_pk, ended_at__isnull=True)
            .order_by("created_at")
        )
        superseded = []
        for old in live[: max(0, len(live) - limit + 1)]:
            ended = session_end(session_id=str(old.id), reason=Session.EndReason.SUPERSEDED)
            if ended is not None:
                superseded.append(ended)
        session = Session.objects.create(
            device_id=target.device_pk, user_id=user_id, app_channel=app_channel, robot_channel=target.robot_channel
        )
    session.device = Device(pk=target.device_pk, device_id=target.device_id)
    ref = SessionRef.of(session)
    logger.info(
        "session opened", extra={"session_id": ref.session_id, "device_id": ref.device_id, "user_id": ref.user_id}
    )
    return ref, superseded


def session_discard(*, session_id: str) -> None:
    """Delete a session that was created but never reached its robot (its `webrtc_request` was shed)."""
    Session.objects.filter(pk=session_id, offered_at__isnull=True).delete()


def session_for_party(
    *,
    session_id: str,
    side: str,
    user_id: int | None = None,
    robot_channel: str | None = None,
    device_pk: int | None = None,
) -> SessionRef:
    """The live session `session_id` if the caller is one of its parties; returns a `SessionRef`.

    `side` is `app` (any socket of the session's user, docs/protocol.md §13.6) or `robot` (the
    session's device, `device_pk`; a live session is signaled only by the robot socket it was opened
    with, `robot_channel`). Raises SESSION_NOT_FOUND for the party's own ended session — also to the
    robot after it reconnected on a new socket, as to a reconnected app (docs/protocol.md
    §13.7) — and NOT_AUTHORIZED for ids that are someone
    else's or never existed (docs/protocol.md §15).
    """
    session = Session.objects.select_related("device").filter(pk=session_id).first()
    if session is None:
        raise RelayError(Code.NOT_AUTHORIZED, "unknown session", session_id)
    is_party = (session.user_id == user_id) if side == APP else (session.device_id == device_pk)
    if not is_party:
        raise RelayError(Code.NOT_AUTHORIZED, "unknown session", session_id)
    if session.ended_at is not None:
        raise RelayError(Code.SESSION_NOT_FOUND, "session has ended", session_id)
    if side == ROBOT and session.robot_channel != robot_channel:
        raise RelayError(Code.NOT_AUTHORIZED, "unknown session", session_id)
    return SessionRef.of(session)


def session_mark(*, session_id: str, state: str) -> None:
    """Record the offer (`offered`) or the answer (`answered`) with its timestamp, once and in order.

    A repeated offer/answer (renegotiation) is forwarded but keeps the first timestamp; a session that
    ended meanwhile is left alone.
    """
    now = timezone.now()
    live = Session.objects.filter(pk=session_id, ended_at__isnull=True)
    if state == Session.State.OFFERED:
        live.filter(offered_at__isnull=True).update(offered_at=now)
        live.filter(state=Session.State.REQUESTED).update(state=Session.State.OFFERED)
    elif state == Session.State.ANSWERED:
        live.filter(answered_at__isnull=True).update(answered_at=now, state=Session.State.ANSWERED)


def session_count_ice(*, session_id: str, side: str, count: int = 1, limit: int = 0) -> bool:
    """Add `count` forwarded ICE candidates of `side` (`app` or `robot`) to the history row.

    With `limit` > 0, only while the row counts fewer than `limit` for that side; returns False when it
    did not count (the limit is reached, or no such row).
    """
    if count <= 0:
        return True
    field = "app_ice_candidates" if side == APP else "robot_ice_candidates"
    rows = Session.objects.filter(pk=session_id)
    if limit > 0:
        rows = rows.filter(**{f"{field}__lt": limit})
    return bool(rows.update(**{field: F(field) + count}))


def session_end(*, session_id: str, reason: str, unless_answered: bool = False) -> SessionRef | None:
    """End a live session with `reason` (one of `Session.EndReason`).

    Returns its `SessionRef` when this call ended it, None when it had already ended (or, with
    `unless_answered`, when it was answered — the setup-timeout rule of docs/protocol.md §13).
    """
    live = Session.objects.filter(pk=session_id, ended_at__isnull=True)
    if unless_answered:
        live = live.filter(answered_at__isnull=True)
    if not live.update(ended_at=timezone.now(), end_reason=reason, state=Session.State.ENDED):
        return None
    # Counted once the end is committed (at once outside a transaction): a rolled-back end never counts.
    transaction.on_commit(metrics.SESSIONS_ENDED.labels(reason).inc)
    ref = SessionRef.of(Session.objects.select_related("device").get(pk=session_id))
    logger.info(
        "session ended",
        extra={"session_id": ref.session_id, "device_id": ref.device_id, "user_id": ref.user_id, "reason": reason},
    )
    return ref


def sessions_end_where(*, reason: str, **filters: Any) -> list[SessionRef]:
    """End every live session matching `filters` (e.g. `app_channel=…`, `robot_channel=…`,
    `device__device_id=…`) with `reason`; returns the ones this call ended.
    """
    ids = list(Session.objects.filter(ended_at__isnull=True, **filters).values_list("pk", flat=True))
    ended = []
    for session_id in ids:
        ref = session_end(session_id=str(session_id), reason=reason)
        if ref is not None:
            ended.append(ref)
    return ended
