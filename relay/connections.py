"""Connections and presence: connect, disconnect, the per-process heartbeat, the sweep, `/stats`.

Every state transition of a socket writes its `Connection` row (`relay.presence`) and tells whoever
must know through the channel layer (`relay.delivery`): the owner's apps learn that a robot is online
or offline and where its socket is; a replaced robot socket is closed 4009. A connecting socket
loads its routing facts (`relay.party.Party`) here, once; afterwards only events change them.

docs/protocol.md §4.4 (robot outcome), §5 (app), §11 (`device_status`); docs/architecture.md "Presence rows".
"""

import asyncio
import contextvars
import logging
import time
import weakref
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TypeVar, cast

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import User
from devices.models import Device
from devices.signing import consume_signature

from . import delivery, liveness, presence, session_rows
from .models import Connection, Session
from .party import APP, ROBOT, Frame, Party
from .protocol import iso

logger = logging.getLogger(__name__)

EndReason = Session.EndReason

_T = TypeVar("_T")


def device_status_frame(device_id: str, status: str, last_seen: datetime | None) -> Frame:
    """`device_status` (docs/protocol.md §11): `status` is `online`, `offline` or `unpaired`."""
    return {
        "type": "device_status",
        "device_id": device_id,
        "status": status,
        "online": status == "online",
        "last_seen": iso(last_seen),
    }


def _instance() -> str:
    return getattr(delivery.layer(), "instance", "")


# Parties with an open socket in this process: for the one heartbeat per process (and nothing else;
# no routing decision reads it).
_local: "weakref.WeakSet[Party]" = weakref.WeakSet()


def local_parties() -> list[Party]:
    """The parties with an open socket in this process, now (for the scrape-time gauges of
    `relay.metrics`; call it on the event loop's thread, which changes the set)."""
    return list(_local)


# --- robots -------------------------------------------------------------------------------------


@database_sync_to_async
def _robot_connect_db(
    party: Party, path: str, instance: str, signature: tuple[object, str] | None
) -> tuple[list[str], list[session_rows.SessionRef], int | None, datetime] | None:
    # One transaction under the device row's lock: two handshakes of one device on two instances at
    # once are serialized, so the second always finds (and replaces, 4009) the first — never two live
    # robot sockets for a device. Pairing and unpairing update the same row, so the owner read here is
    # the owner at the moment this socket's row is committed.
    device_pk, device_id = cast(int, party.device_pk), cast(str, party.device_id)  # set for a robot
    with transaction.atomic():
        owner_id = (
            Device.objects.select_for_update()
            .filter(pk=device_pk, is_active=True)
            .values_list("owner_id", flat=True)
            .first()
        )
        # The handshake's signature is spent here, with the acceptance it pays for: a handshake refused
        # earlier (origin, path, an overloaded relay) leaves it unspent for the robot's retry.
        if signature is not None and not consume_signature(device_id, *signature):
            return None
        previous = list(
            presence.live_connections()
            .filter(role=Connection.Role.ROBOT, device_id=device_pk)
            .values_list("channel_name", flat=True)
        )
        for channel in previous:
            presence.connection_close(channel, 4009)
        superseded: list[session_rows.SessionRef] = []
        for channel in previous:
            superseded += session_rows.sessions_end_where(reason=EndReason.SUPERSEDED, robot_channel=channel)
        presence.connection_open(
            role=Connection.Role.ROBOT,
            channel_name=party.channel_name,
            path=path,
            device_pk=device_pk,
            instance=instance,
        )
        now = timezone.now()
        Device.objects.filter(pk=device_pk).update(last_seen=now)
    return previous, superseded, owner_id, now


async def robot_connected(party: Party, *, path: str = "", signature: tuple[object, str] | None = None) -> bool:
    """A robot's handshake was accepted: record presence, replace its previous socket, tell the owner.

    docs/protocol.md §4.4: a second connection for the same device replaces the first (closed 4009, its
    sessions end `superseded` at their apps; the new socket is told nothing). The owner's apps learn
    where the robot's socket now is, and get `device_status` online — not when a socket merely replaced
    another, so owners see no spurious offline/online. Sets `party.owner_id`.

    `signature`: the handshake's `(timestamp, signature)`, spent in the same transaction (docs/protocol.md
    §4.3, replay rule). Returns False, having changed nothing, when it was spent already (a replay).
    """
    from .sessions import announce_end

    done = await _robot_connect_db(party, path, _instance(), signature)
    if done is None:
        return False
    previous, superseded, owner_id, now = done
    party.owner_id = owner_id
    _local.add(party)
    for ref in superseded:
        await announce_end(ref, EndReason.SUPERSEDED)
    for channel in previous:
        await delivery.control(channel, "replaced")
    if owner_id is not None:
        device_id = cast(str, party.device_id)  # set for a robot
        frame = None if previous else device_status_frame(device_id, "online", now)
        # Confirmed: once this robot's handshake is accepted, every instance's apps route to this socket.
        await delivery.device_update(
            owner_id,
            device_id=device_id,
            device_pk=cast(int, party.device_pk),
            robot_channel=party.channel_name,
            frame=frame,
            confirm=True,
        )
    return True


@database_sync_to_async
def _robot_disconnect_db(
    party: Party, close_code: int | None, reason: str
) -> tuple[list[session_rows.SessionRef], int | None, datetime]:
    _write_ice_counts(party)
    device_pk, device_id = cast(int, party.device_pk), cast(str, party.device_id)  # set for a robot
    was_current = presence.connection_close(party.channel_name, close_code)
    ended = session_rows.sessions_end_where(reason=reason, robot_channel=party.channel_name)
    now = timezone.now()
    owner_id: int | None = None
    if was_current:
        Device.objects.filter(pk=device_pk).update(last_seen=now)
        if presence.robot_channel(device_id) is None:
            # A deactivated robot goes offline for its owner too.
            owner_id = Device.objects.filter(pk=device_pk).values_list("owner_id", flat=True).first()
    return ended, owner_id, now


async def robot_disconnected(
    party: Party, close_code: int | None, *, reason: str = EndReason.ROBOT_DISCONNECTED
) -> list[session_rows.SessionRef]:
    """A robot socket closed: end its sessions with `reason` and tell the owner it is offline.

    `reason` is `robot_disconnected`, or `server_shutdown` when this instance stops. A socket closed
    because another replaced it (4009) says nothing: its row was closed by the new one. Returns the
    sessions it ended.
    """
    from .sessions import announce_end

    _local.discard(party)
    ended, owner_id, now = await _robot_disconnect_db(party, close_code, reason)
    party.sessions.clear()
    for ref in ended:
        await announce_end(ref, reason, skip=party.channel_name)
    if owner_id is not None:
        device_id = cast(str, party.device_id)  # set for a robot
        await delivery.device_update(
            owner_id,
            device_id=device_id,
            device_pk=cast(int, party.device_pk),
            robot_channel=None,
            frame=device_status_frame(device_id, "offline", now),
        )
    return ended


# --- apps ---------------------------------------------------------------------------------------


@database_sync_to_async
def _app_connect_db(party: Party, path: str, instance: str) -> list[Frame] | None:
    cap = settings.WIMZ_MAX_APP_SOCKETS_PER_USER
    user_id = cast(int, party.user_id)  # set for an app
    with transaction.atomic():
        if cap > 0:
            # The user's row lock serializes this user's connects on every instance, so the count of
            # open app sockets cannot be raced past the cap (docs/protocol.md §15.1).
            list(User.objects.select_for_update().filter(pk=user_id).values_list("pk", flat=True))
            if presence.live_connections().filter(role=Connection.Role.APP, user_id=user_id).count() >= cap:
                return None
        presence.connection_open(
            role=Connection.Role.APP, channel_name=party.channel_name, path=path, user_id=user_id, instance=instance
        )
    devices = list(
        Device.objects.filter(owner_id=user_id, is_active=True)
        .order_by("device_id")
        .values_list("device_id", "pk", "last_seen")
    )
    party.devices = {device_id: pk for device_id, pk, _ in devices}
    party.robots = presence.robot_channels(party.devices) if devices else {}
    return [device_status_frame(d, "online" if d in party.robots else "offline", seen) for d, _, seen in devices]


async def app_connected(party: Party, *, path: str = "") -> list[Frame] | None:
    """An app's handshake was accepted: join the owner group, record presence, load the facts.

    Returns one `device_status` per owned device (docs/protocol.md §11: the snapshot right after the app
    connects). The group is joined before the facts are read, so no change is missed in between.
    Returns None, having recorded nothing, when the user already has `WIMZ_MAX_APP_SOCKETS_PER_USER`
    open app sockets on all instances together (docs/protocol.md §15.1).
    """
    group = delivery.owner_group(cast(int, party.user_id))  # set for an app
    await delivery.join(group, party.channel_name)
    frames = await _app_connect_db(party, path, _instance())
    if frames is None:
        await delivery.leave(group, party.channel_name)
        return None
    _local.add(party)
    return frames


@database_sync_to_async
def _app_disconnect_db(party: Party, close_code: int | None, reason: str) -> list[session_rows.SessionRef]:
    _write_ice_counts(party)
    presence.connection_close(party.channel_name, close_code)
    return session_rows.sessions_end_where(reason=reason, app_channel=party.channel_name)


async def app_disconnected(
    party: Party, close_code: int | None, *, reason: str = EndReason.APP_DISCONNECTED
) -> list[session_rows.SessionRef]:
    """An app socket closed: the sessions it opened end with `reason` (`app_disconnected`, or
    `server_shutdown` when this instance stops) and the robot is told. Returns the sessions it ended.
    """
    from .sessions import announce_end

    _local.discard(party)
    await delivery.leave(delivery.owner_group(cast(int, party.user_id)), party.channel_name)  # set for an app
    ended = await _app_disconnect_db(party, close_code, reason)
    party.sessions.clear()
    for ref in ended:
        await announce_end(ref, reason, skip=party.channel_name)
    return ended


def _write_ice_counts(party: Party) -> None:
    for session_id, live in party.sessions.items():
        session_rows.session_count_ice(session_id=session_id, side=party.role, count=live.ice)
        live.ice = 0


# --- the per-process heartbeat ------------------------------------------------------------------

_heartbeat_tasks: list[asyncio.Task[None]] = []


def ensure_heartbeat() -> None:
    """Start this process's timers on the running loop if they are not running: the presence
    heartbeat (every `WIMZ_PRESENCE_HEARTBEAT` s) and, with Redis, the instance liveness beat (every
    `WIMZ_INSTANCE_BEAT` s). Called when the server starts and by every connecting socket."""
    loop = _running_loop()
    if loop is None:  # every caller runs on the loop (a consumer, or wimz.serve's call_soon)
        raise RuntimeError("ensure_heartbeat() needs a running event loop")
    if _heartbeat_tasks and all(not t.done() and t.get_loop() is loop for t in _heartbeat_tasks):
        return
    for task in _heartbeat_tasks:
        task.cancel()
    # Empty contexts: these serve the whole process, so their log lines carry no socket's ids (the socket
    # that happened to start them has bound its own, core.logformat).
    _heartbeat_tasks[:] = [loop.create_task(_heartbeat_forever(), context=contextvars.Context())]
    if liveness.enabled():
        _heartbeat_tasks.append(loop.create_task(_liveness_forever(), context=contextvars.Context()))
        _heartbeat_tasks.append(loop.create_task(_reaper_forever(), context=contextvars.Context()))


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


async def _heartbeat_forever() -> None:
    while True:
        await asyncio.sleep(settings.WIMZ_PRESENCE_HEARTBEAT)
        try:
            await heartbeat_once()
        except Exception:
            logger.exception("presence heartbeat failed")


@database_sync_to_async
def _beat_db(
    instance: str, robot_pks: list[int], user_ids: list[int], login_ids: list[str]
) -> tuple[set[int], set[int], set[str]]:
    from django.contrib.auth import get_user_model

    from accounts.models import RevokedLogin

    presence.heartbeat_instance(instance)
    now = timezone.now()
    inactive: set[int] = set()
    gone_users: set[int] = set()
    for chunk in _chunks(robot_pks, 500):
        Device.objects.filter(pk__in=chunk).update(last_seen=now)
        inactive.update(Device.objects.filter(pk__in=chunk, is_active=False).values_list("pk", flat=True))
    for chunk in _chunks(user_ids, 500):
        active = set(get_user_model().objects.filter(pk__in=chunk, is_active=True).values_list("pk", flat=True))
        gone_users.update(set(chunk) - active)
    revoked: set[str] = set()
    for login_chunk in _chunks(login_ids, 500):
        revoked.update(RevokedLogin.objects.filter(login_id__in=login_chunk).values_list("login_id", flat=True))
    return inactive, gone_users, revoked


async def _liveness_forever() -> None:
    # Redis only: a busy ORM thread (thousands of handshakes queued) must never delay this beat, or a
    # loaded instance would be declared dead.
    while True:
        try:
            await liveness_once()
        except Exception as exc:
            logger.warning("instance liveness beat failed: %s", type(exc).__name__)
        await asyncio.sleep(settings.WIMZ_INSTANCE_BEAT)


async def _reaper_forever() -> None:
    while True:
        await asyncio.sleep(settings.WIMZ_INSTANCE_BEAT)
        try:
            await reap_dead_instances()
        except Exception as exc:
            logger.warning("looking for dead relay instances failed: %s", type(exc).__name__)


async def liveness_once() -> None:
    """One liveness beat (docs/architecture.md "Instance liveness and reaping"): refresh its own key (one Redis round
    trip, no database); if it had been declared dead meanwhile (paused past the TTL), close its sockets
    1012 so they reconnect."""
    if not await liveness.refresh(_instance()):
        logger.warning("this relay instance was declared dead while paused; closing its sockets")
        for party in list(_local):
            await delivery.control(party.channel_name, "fenced")


async def reap_dead_instances() -> int:
    """Clean up after every instance that holds open presence rows but whose liveness key expired,
    for those this process wins the claim of. Returns how many rows it closed."""
    me = _instance()
    others = await database_sync_to_async(presence.open_instances)(exclude=me)
    closed = 0
    for instance in await liveness.dead(others):
        if await liveness.claim(instance):
            liveness.forget(instance)
            closed += await reap_instance(instance)
    return closed


async def reap_instance(instance: str) -> int:
    """Clean up after dead relay process `instance` as it would have on clean disconnects: its rows
    are closed (1006), its sessions end `app_disconnected` / `robot_disconnected` with `webrtc_close`
    to the surviving party, and the owners of robots now offline get `device_status` offline.
    Returns rows closed."""
    disconnect = getattr(delivery.layer(), "disconnect_instance", None)
    if disconnect is not None:
        await disconnect(instance)  # a paused process stops receiving (and being waited for) at once
    closed = await _clean_up_rows(lambda: presence.close_instance(instance))
    if closed:
        logger.warning("cleaned up %d socket(s) of dead relay instance %s", closed, instance)
    return closed


async def heartbeat_once() -> None:
    """One beat of this process: its presence rows and its robots' `last_seen` in a few UPDATEs (not one
    query per socket); robots deactivated while their revocation was lost, app sockets of users
    deactivated or deleted without a signal (a bulk `update()`), and app sockets of a logged-out login
    whose close message was lost, are closed (4003); then the sweep.
    """
    parties = list(_local)
    robots = [p for p in parties if p.role == ROBOT]
    apps = [p for p in parties if p.role == APP]
    inactive, gone_users, revoked_logins = await _beat_db(
        # A robot's Party has its device_pk, an app's its user_id.
        _instance(),
        cast(list[int], [p.device_pk for p in robots]),
        sorted(cast(set[int], {p.user_id for p in apps})),
        sorted({p.login_id for p in apps if p.login_id}),
    )
    for party in robots:
        if party.device_pk in inactive:
            await delivery.control(party.channel_name, "revoked")
    for party in apps:
        if party.user_id in gone_users or party.login_id in revoked_logins:
            await delivery.control(party.channel_name, "revoked")
    await sweep_dead_instances()


_last_sweep = 0.0  # monotonic time of this process's last sweep (a rate limit, not routing state)


async def sweep_dead_instances(*, force: bool = False) -> int:
    """Clean up after relay instances that died without shutting down (killed, crashed, lost power).

    Their sockets' presence rows stop being refreshed; once older than `WIMZ_PRESENCE_TTL` they are
    closed here, their sessions end (`app_disconnected` / `robot_disconnected`) with `webrtc_close` to
    the surviving party, and the owners of robots that are now offline get `device_status` offline —
    what the dead instance would have done on a clean disconnect. Runs on every heartbeat, at most once
    per `WIMZ_PRESENCE_HEARTBEAT` per process unless `force`. Returns rows closed. (With Redis, the
    liveness beat, `liveness_once`, finds a dead instance much sooner; this is the fallback.)
    """
    global _last_sweep
    now = time.monotonic()
    if not force and now - _last_sweep < settings.WIMZ_PRESENCE_HEARTBEAT * 0.9:
        return 0
    _last_sweep = now

    closed = await _clean_up_rows(presence.close_stale)
    if closed:
        logger.warning("closed %d socket(s) of relay instances that stopped heartbeating", closed)
    return closed


async def _clean_up_rows(close_rows: Callable[[], list[Connection]]) -> int:
    """Close presence rows with `close_rows()` (sync ORM), then end and announce what they held."""
    from .sessions import announce_end

    def _db() -> tuple[
        list[Connection], list[tuple[session_rows.SessionRef, str]], list[tuple[int | None, str, int, datetime | None]]
    ]:
        rows = close_rows()
        apps = {r.channel_name for r in rows if r.role == Connection.Role.APP}
        robots = {r.channel_name for r in rows if r.role == Connection.Role.ROBOT}
        ended: list[tuple[session_rows.SessionRef, str]] = []
        for chunk in _chunks(sorted(apps | robots), 500):
            live = (
                Session.objects.filter(ended_at__isnull=True)
                .filter(Q(app_channel__in=chunk) | Q(robot_channel__in=chunk))
                .values_list("pk", "app_channel")
            )
            for session_id, app_channel in list(live):
                reason = EndReason.APP_DISCONNECTED if app_channel in apps else EndReason.ROBOT_DISCONNECTED
                ref = session_rows.session_end(session_id=str(session_id), reason=reason)
                if ref is not None:
                    ended.append((ref, reason))
        devices = {r.device.device_id: r.device for r in rows if r.role == Connection.Role.ROBOT and r.device}
        still_online: set[str] = set()
        for chunk in _chunks(sorted(devices), 500):
            still_online |= presence.online_device_ids(chunk)
        offline = [
            (d.owner_id, d.device_id, d.pk, d.last_seen) for d in devices.values() if d.device_id not in still_online
        ]
        return rows, ended, offline

    rows, ended, offline = await database_sync_to_async(_db)()
    for ref, reason in ended:
        await announce_end(ref, reason)
    for owner_id, device_id, device_pk, last_seen in offline:
        if owner_id is not None:
            await delivery.device_update(
                owner_id,
                device_id=device_id,
                device_pk=device_pk,
                robot_channel=None,
                frame=device_status_frame(device_id, "offline", last_seen),
            )
    return len(rows)


def _chunks(items: list[_T], size: int) -> Iterator[list[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def cluster_stats() -> dict[str, int]:
    """`/stats` for the whole cluster: `robots_online`, `app_sockets`, `users_online`, `active_sessions`."""

    def _db() -> dict[str, int]:
        counts = presence.stats()
        counts["active_sessions"] = Session.objects.filter(Q(ended_at__isnull=True)).count()
        return counts

    return await database_sync_to_async(_db)()


__all__ = [
    "APP",
    "ROBOT",
    "app_connected",
    "app_disconnected",
    "cluster_stats",
    "device_status_frame",
    "ensure_heartbeat",
    "heartbeat_once",
    "local_parties",
    "robot_connected",
    "robot_disconnected",
    "sweep_dead_instances",
]
