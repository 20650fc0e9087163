"""Who receives what: the relay's routing rules, driven without a socket.

Consumers parse and authenticate, then hand every frame to a function here together with the
sender's `Party`. Receivers are decided from the database at the moment of the frame — a device's
current owner, the robot socket in the presence rows, the two parties recorded on a session row —
and reached through the channel layer, so a robot on one relay instance and its owner's apps on
another behave exactly as on one, and an unpair takes effect for the very next frame. Nothing is
kept in process memory.

- One socket (a session's party, the robot of a command): `send()` to its channel.
- A robot's audience: `group_send()` to the owner's app group (`relay.groups.owner_apps`), which
  channels-redis packs into one message per relay process.
Both surface a full channel (`ChannelFull`, or `relay.layers.GroupSendShed` for groups) to the sender
as `RATE_LIMITED` — never a silent drop (field report F2, conventions.md habit 6).
"""

import logging
import time
from dataclasses import dataclass, field

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from devices.models import Device

from . import groups, presence, sessions
from .layers import GroupSendShed
from .models import Connection, Session
from .protocol import (
    Code,
    RelayError,
    iso,
    optional_device_id,
    require_candidate,
    require_sdp,
    require_str,
    robot_event,
    session_id_of,
)

logger = logging.getLogger(__name__)

APP = sessions.APP
ROBOT = sessions.ROBOT
EndReason = Session.EndReason


@dataclass
class Party:
    """The authenticated sender of a frame: one robot socket or one app socket.

    `channel_name` is the socket's consumer channel. A robot has `device_pk`/`device_id`; an app has
    `user_id`.
    """

    role: str
    channel_name: str
    user_id: int | None = None
    device_pk: int | None = None
    device_id: str | None = None


@dataclass
class Outcome:
    """What the sender's consumer must do: `replies` to send back, `opened` session to time."""

    replies: list = field(default_factory=list)
    opened: sessions.SessionRef | None = None


# --- delivery ---------------------------------------------------------------------------------


async def deliver(channel: str, frame: dict, *, ref: str | None = None) -> None:
    """Send `frame` to one consumer channel (it is written to that socket as is).

    Raises `RelayError` RATE_LIMITED when the receiver's channel is full, so the sender learns what
    was shed (field report F2).
    """
    try:
        await get_channel_layer().send(channel, {"type": "relay.frame", "frame": frame})
    except ChannelFull:
        raise RelayError(Code.RATE_LIMITED, "receiver is not keeping up; frame dropped", ref or frame.get("type"))


async def notify(channel: str, frame: dict) -> bool:
    """Best-effort `deliver` for relay-originated frames (status, closes); False when shed."""
    try:
        await deliver(channel, frame)
    except RelayError:
        logger.warning("relay frame %s shed: receiver channel full", frame.get("type"))
        return False
    return True


async def to_owner(owner_id: int | None, frame: dict) -> int:
    """Deliver `frame` to every app socket of user `owner_id` (none when None).

    Returns how many sockets' channels were full and missed it (0 when all got it).
    """
    if owner_id is None:
        return 0
    try:
        await get_channel_layer().group_send(groups.owner_apps(owner_id), {"type": "relay.frame", "frame": frame})
    except GroupSendShed as exc:
        logger.warning("%s frame shed for %d app socket(s): channel full", frame.get("type"), exc.shed)
        return exc.shed
    return 0


async def join_owner_group(party: Party) -> None:
    """Add an app socket to its user's group; called on connect and on every heartbeat, which keeps
    the membership younger than the layer's `group_expiry` (a crashed instance's members age out).
    """
    await get_channel_layer().group_add(groups.owner_apps(party.user_id), party.channel_name)


# --- presence and status ------------------------------------------------------------------------


def device_status_frame(device_id: str, status: str, last_seen) -> dict:
    """`device_status` as protocol.md "Relay → app" defines it (`status` online/offline/unpaired)."""
    return {
        "type": "device_status",
        "device_id": device_id,
        "status": status,
        "online": status == "online",
        "last_seen": iso(last_seen),
    }


def _device_owner(device_pk: int, *, active_only: bool = True) -> int | None:
    """The current owner's user id of the device (an active one unless `active_only` is False), or None
    (protocol.md: a device with no owner talks to nobody).
    """
    devices = Device.objects.filter(pk=device_pk)
    if active_only:
        devices = devices.filter(is_active=True)
    return devices.values_list("owner_id", flat=True).first()


@database_sync_to_async
def _robot_connect_db(party: Party, path: str):
    previous = list(
        presence.live_connections()
        .filter(role=Connection.Role.ROBOT, device_id=party.device_pk)
        .values_list("channel_name", flat=True)
    )
    for channel in previous:
        presence.connection_close(channel, 4009)
    superseded = []
    for channel in previous:
        superseded += sessions.sessions_end_where(reason=EndReason.SUPERSEDED, robot_channel=channel)
    presence.connection_open(role=Connection.Role.ROBOT, channel_name=party.channel_name, path=path,
                             device_pk=party.device_pk)
    now = timezone.now()
    Device.objects.filter(pk=party.device_pk).update(last_seen=now)
    return previous, superseded, _device_owner(party.device_pk), now


async def robot_connected(party: Party, *, path: str = "") -> None:
    """A robot's handshake was accepted: record presence, replace its previous socket, tell the owner.

    protocol.md "Robot authentication": a second connection for the same device_id replaces the first
    (closed 4009, its sessions end `superseded` at their apps; the new socket is told nothing). The
    owner's apps get `device_status` online — not again when a socket merely replaced another, so
    owners see no spurious offline/online (field report F4).
    """
    previous, superseded, owner_id, now = await _robot_connect_db(party, path)
    for ref in superseded:
        await announce_end(ref, EndReason.SUPERSEDED)
    for channel in previous:
        try:
            await get_channel_layer().send(channel, {"type": "relay.replaced"})
        except ChannelFull:
            logger.warning("replaced robot socket's channel is full; it will expire")
    if not previous:
        await to_owner(owner_id, device_status_frame(party.device_id, "online", now))


@database_sync_to_async
def _robot_disconnect_db(party: Party, close_code, reason: str):
    was_current = presence.connection_close(party.channel_name, close_code)
    ended = sessions.sessions_end_where(reason=reason, robot_channel=party.channel_name)
    now = timezone.now()
    owner_id = None
    if was_current:
        Device.objects.filter(pk=party.device_pk).update(last_seen=now)
        if presence.robot_channel(party.device_id) is None:
            owner_id = _device_owner(party.device_pk, active_only=False)  # a deactivated robot goes offline too
    return ended, owner_id, now


async def robot_disconnected(
    party: Party, close_code: int | None, *, reason: str = EndReason.ROBOT_DISCONNECTED
) -> list[sessions.SessionRef]:
    """A robot socket closed: end its sessions with `reason` and tell the owner it is offline.

    `reason` is `robot_disconnected`, or `server_shutdown` when this relay instance is stopping.
    A socket closed because another replaced it (4009) says nothing: its row was closed by the new one.
    Returns the sessions it ended.
    """
    ended, owner_id, now = await _robot_disconnect_db(party, close_code, reason)
    for ref in ended:
        await announce_end(ref, reason, skip=party.channel_name)
    await to_owner(owner_id, device_status_frame(party.device_id, "offline", now))
    return ended


@database_sync_to_async
def _app_snapshot(party: Party, path: str) -> list[dict]:
    presence.connection_open(role=Connection.Role.APP, channel_name=party.channel_name, path=path,
                             user_id=party.user_id)
    devices = list(Device.objects.filter(owner_id=party.user_id, is_active=True).values_list("device_id", "last_seen"))
    online = presence.online_device_ids([d for d, _ in devices])
    return [device_status_frame(d, "online" if d in online else "offline", seen) for d, seen in devices]


async def app_connected(party: Party, *, path: str = "") -> list[dict]:
    """An app's handshake was accepted: record presence; returns one `device_status` per owned device
    (protocol.md "Relay → app": the snapshot right after the app connects).
    """
    await join_owner_group(party)
    return await _app_snapshot(party, path)


@database_sync_to_async
def _app_disconnect_db(party: Party, close_code, reason: str):
    presence.connection_close(party.channel_name, close_code)
    return sessions.sessions_end_where(reason=reason, app_channel=party.channel_name)


async def app_disconnected(
    party: Party, close_code: int | None, *, reason: str = EndReason.APP_DISCONNECTED
) -> list[sessions.SessionRef]:
    """An app socket closed: the sessions it opened end with `reason` (`app_disconnected`, or
    `server_shutdown` when this instance stops) and the robot is told. Returns the sessions it ended.
    """
    await get_channel_layer().group_discard(groups.owner_apps(party.user_id), party.channel_name)
    ended = await _app_disconnect_db(party, close_code, reason)
    for ref in ended:
        await announce_end(ref, reason, skip=party.channel_name)
    return ended


async def heartbeat(party: Party) -> None:
    """Keep the socket's presence row fresh (and a robot's `last_seen`)."""

    def _beat() -> bool:
        presence.heartbeat(party.channel_name)
        if party.role == ROBOT:
            return bool(Device.objects.filter(pk=party.device_pk, is_active=True).update(last_seen=timezone.now()))
        return True

    if not await database_sync_to_async(_beat)():
        # Deactivated while the revocation message could not be delivered: close now.
        await get_channel_layer().send(party.channel_name, {"type": "relay.revoked"})
        return
    if party.role == APP:
        await join_owner_group(party)
    await sweep_dead_instances()


_last_sweep = 0.0  # monotonic time of this process's last sweep (a rate limit, not routing state)


async def sweep_dead_instances(*, force: bool = False) -> int:
    """Clean up after relay instances that died without shutting down (killed, crashed, lost power).

    Their sockets' presence rows stop being refreshed; once older than `WIMZ_PRESENCE_TTL` they are
    closed here, their sessions end (`app_disconnected` / `robot_disconnected`) with `webrtc_close` to
    the surviving party, and the owners of robots that are now offline get `device_status` offline —
    what the dead instance would have done on a clean disconnect. Runs from consumers' heartbeats, at
    most once per `WIMZ_PRESENCE_HEARTBEAT` per process unless `force`. Returns rows closed.
    """
    global _last_sweep
    now = time.monotonic()
    if not force and now - _last_sweep < settings.WIMZ_PRESENCE_HEARTBEAT:
        return 0
    _last_sweep = now

    def _db():
        ended, offline = [], []
        rows = presence.close_stale()
        for row in rows:
            if row.role == Connection.Role.APP:
                reason, where = EndReason.APP_DISCONNECTED, {"app_channel": row.channel_name}
            else:
                reason, where = EndReason.ROBOT_DISCONNECTED, {"robot_channel": row.channel_name}
            ended += [(ref, reason) for ref in sessions.sessions_end_where(reason=reason, **where)]
            device = row.device
            if row.role == Connection.Role.ROBOT and device and presence.robot_channel(device.device_id) is None:
                owner_id = _device_owner(device.pk, active_only=False)
                offline.append((owner_id, device.device_id, device.last_seen))
        return rows, ended, offline

    rows, ended, offline = await database_sync_to_async(_db)()
    for row in rows:
        if row.role == Connection.Role.APP and row.user_id is not None:
            await get_channel_layer().group_discard(groups.owner_apps(row.user_id), row.channel_name)
    for ref, reason in ended:
        await announce_end(ref, reason)
    for owner_id, device_id, last_seen in offline:
        await to_owner(owner_id, device_status_frame(device_id, "offline", last_seen))
    if rows:
        logger.warning("closed %d socket(s) of relay instances that stopped heartbeating", len(rows))
    return len(rows)


# --- sessions -----------------------------------------------------------------------------------


async def announce_end(ref: sessions.SessionRef, reason: str, *, skip: str | None = None, frame=None) -> None:
    """Tell every party still connected that a session ended: `webrtc_close` with `reason`.

    `skip` is the channel of the party that closed it (protocol.md "Closing": not echoed). `frame` is
    the closer's own `webrtc_close`, forwarded with its keys kept and `reason` added.
    """
    close = dict(frame) if frame else {"type": "webrtc_close", "session_id": ref.session_id}
    close["reason"] = reason
    for channel in (ref.app_channel, ref.robot_channel):
        if channel != skip:
            await notify(channel, close)


async def session_setup_expired(session_id: str) -> None:
    """The setup timer fired: end the session `setup_timeout` unless it was answered (protocol.md "Sessions")."""
    ref = await database_sync_to_async(sessions.session_end)(
        session_id=session_id, reason=EndReason.SETUP_TIMEOUT, unless_answered=True
    )
    if ref is not None:
        await announce_end(ref, EndReason.SETUP_TIMEOUT)


async def _party_session(party: Party, frame: dict) -> sessions.SessionRef:
    session_id = session_id_of(frame)
    if party.role == APP:
        lookup = {"user_id": party.user_id}
    else:
        lookup = {"robot_channel": party.channel_name, "device_pk": party.device_pk}
    return await database_sync_to_async(sessions.session_for_party)(session_id=session_id, side=party.role, **lookup)


# Signaling frames forwarded unchanged to the session's other party: the session description type a
# frame must carry (None for ICE) and the state its delivery records (protocol.md "Sessions").
_SIGNALS = {
    "webrtc_offer": ("offer", Session.State.OFFERED),
    "webrtc_answer": ("answer", Session.State.ANSWERED),
    "webrtc_ice": (None, None),
}


async def _signal(party: Party, kind: str, frame: dict) -> None:
    """Forward an offer (robot), answer (app) or ICE candidate (either) to the session's other party,
    unchanged; record the state or count the candidate in the history row.
    """
    sdp_type, state = _SIGNALS[kind]
    if sdp_type:
        require_sdp(frame, sdp_type)
    else:
        require_candidate(frame)
    ref = await _party_session(party, frame)
    target = ref.robot_channel if party.role == APP else ref.app_channel
    await deliver(target, frame, ref=ref.session_id)

    def _record():
        if state:
            sessions.session_mark(session_id=ref.session_id, state=state)
        else:
            sessions.session_count_ice(session_id=ref.session_id, side=party.role)

    await database_sync_to_async(_record)()


async def _close_by(party: Party, frame: dict, reason: str) -> None:
    """The sender closes its session: every other party still connected gets the sender's
    `webrtc_close` with `reason` added; the sender is not echoed (protocol.md "Closing").
    """
    ref = await _party_session(party, frame)
    ended = await database_sync_to_async(sessions.session_end)(session_id=ref.session_id, reason=reason)
    if ended is not None:
        await announce_end(ended, reason, skip=party.channel_name, frame=frame)


# --- robot frames -------------------------------------------------------------------------------


@database_sync_to_async
def _record_hello(party: Party, frame: dict) -> None:
    updates = {}
    capabilities = frame.get("capabilities")
    if isinstance(capabilities, list) and all(isinstance(c, str) for c in capabilities):
        updates["capabilities"] = capabilities[:32]
    firmware = frame.get("firmware_version")
    if isinstance(firmware, str):
        updates["firmware_version"] = firmware[:64]
    if updates:
        Device.objects.filter(pk=party.device_pk).update(**updates)


async def robot_frame(party: Party, kind: str, frame: dict) -> Outcome:
    """Handle one frame from a robot (protocol.md "Robot → relay"); `kind` from `frame_type()`.

    Raises `RelayError` for frames answered with an error code.
    """
    if kind == "hello":
        claimed = frame.get("device_id")
        if claimed is not None and claimed != party.device_id:
            raise RelayError(Code.BAD_REQUEST, "hello names another device_id", "hello")
        await _record_hello(party, frame)
        return Outcome()
    if kind in ("webrtc_offer", "webrtc_ice"):
        await _signal(party, kind, frame)
        return Outcome()
    if kind == "webrtc_error":
        ref = await _party_session(party, frame)
        await notify(ref.app_channel, frame)
        ended = await database_sync_to_async(sessions.session_end)(
            session_id=ref.session_id, reason=EndReason.ROBOT_ERROR
        )
        if ended is not None:
            await announce_end(ended, EndReason.ROBOT_ERROR)
        return Outcome()
    if kind == "webrtc_close":
        await _close_by(party, frame, EndReason.CLOSED_BY_ROBOT)
        return Outcome()
    # Any other non-reserved type (or a legacy `{"event":…}` frame) is an event for the owner's apps.
    event = robot_event(frame, party.device_id)
    owner_id = await database_sync_to_async(_device_owner)(party.device_pk)
    shed = await to_owner(owner_id, event)
    if shed:
        raise RelayError(Code.RATE_LIMITED, f"event not delivered to {shed} app socket(s)", frame.get("type"))
    return Outcome()


# --- app frames ---------------------------------------------------------------------------------


async def app_frame(party: Party, kind: str, frame: dict) -> Outcome:
    """Handle one frame from an app (protocol.md "App → relay"); `kind` from `frame_type()`.

    Raises `RelayError` for frames answered with an error code. `auth` is handled by the consumer.
    """
    if kind == "webrtc_request":
        return await _webrtc_request(party, frame)
    if kind in ("webrtc_answer", "webrtc_ice"):
        await _signal(party, kind, frame)
        return Outcome()
    if kind == "webrtc_close":
        await _close_by(party, frame, EndReason.CLOSED_BY_APP)
        return Outcome()
    # `command` and pass-through: to the addressed (or only) robot of the user.
    if kind == "command":
        require_str(frame, "command")
    device_id = optional_device_id(frame)
    target = await database_sync_to_async(sessions.resolve_robot)(
        user_id=party.user_id, device_id=device_id, ref=kind
    )
    out = dict(frame)
    out.setdefault("device_id", target.device_id)
    if kind == "command" and "data" in frame and "params" not in frame:
        out["params"] = frame["data"]  # compat: deployed robots read `params` (protocol.md "App → relay")
    await deliver(target.robot_channel, out, ref=kind)
    return Outcome()


async def _webrtc_request(party: Party, frame: dict) -> Outcome:
    """Open a session (protocol.md "App → relay" `webrtc_request`): the app gets `webrtc_credentials`,
    the robot `webrtc_request`, both with the same `ice_servers`.
    """
    from .ice import get_ice_servers

    device_id = optional_device_id(frame)
    target = await database_sync_to_async(sessions.resolve_robot)(
        user_id=party.user_id, device_id=device_id, ref="webrtc_request"
    )
    ice = await get_ice_servers(user_id=party.user_id)
    ref, superseded = await database_sync_to_async(sessions.session_open)(
        user_id=party.user_id, target=target, app_channel=party.channel_name
    )
    for old in superseded:
        await announce_end(old, EndReason.SUPERSEDED)
    try:
        await deliver(
            ref.robot_channel,
            {"type": "webrtc_request", "session_id": ref.session_id, "ice_servers": ice.ice_servers},
            ref="webrtc_request",
        )
    except RelayError:
        # The robot never heard of it and the app gets RATE_LIMITED without its id: the session did
        # not happen, so it leaves no history row (no half-written state, no invented end reason).
        await database_sync_to_async(sessions.session_discard)(session_id=ref.session_id)
        raise
    credentials = {
        "type": "webrtc_credentials",
        "session_id": ref.session_id,
        "device_id": ref.device_id,
        "ice_servers": ice.ice_servers,
    }
    return Outcome(replies=[credentials], opened=ref)


# --- ownership changes (called from the REST API after commit) ----------------------------------


def on_device_unpaired(*, device_id: str, former_owner_id: int) -> None:
    """Tell the former owner's apps `device_status` `unpaired` and end the device's sessions (`unpaired`).

    protocol.md "Unpair". Synchronous (REST views); call it after the unpair is committed
    (`transaction.on_commit`). From then on no frame of the robot reaches the former owner: every
    event is routed by the ownership in the database at the moment it is sent.
    """
    async_to_sync(_device_unpaired)(device_id, former_owner_id)


async def _device_unpaired(device_id: str, former_owner_id: int) -> None:
    def _db():
        ended = sessions.sessions_end_where(reason=EndReason.UNPAIRED, device__device_id=device_id)
        last_seen = Device.objects.filter(device_id=device_id).values_list("last_seen", flat=True).first()
        return ended, last_seen

    ended, last_seen = await database_sync_to_async(_db)()
    for ref in ended:
        await announce_end(ref, EndReason.UNPAIRED)
    await to_owner(former_owner_id, device_status_frame(device_id, "unpaired", last_seen))


def on_device_revoked(*, device_id: str) -> None:
    """The device was deactivated or its secret rotated: close its open robot socket (4003).

    The socket's own disconnect then ends its sessions (`robot_disconnected`) and tells the owner it is
    offline; the robot must reconnect with a valid signature. Synchronous; call after commit.
    """
    async_to_sync(_device_revoked)(device_id)


async def _device_revoked(device_id: str) -> None:
    channel = await database_sync_to_async(presence.robot_channel)(device_id)
    if channel is not None:
        try:
            await get_channel_layer().send(channel, {"type": "relay.revoked"})
        except ChannelFull:
            logger.warning("revoked robot socket's channel is full; it closes at its next presence heartbeat")


def on_device_paired(*, device_id: str, owner_id: int) -> None:
    """Send the new owner's open apps a `device_status` for the device. Synchronous; call after commit."""
    async_to_sync(_device_paired)(device_id, owner_id)


async def _device_paired(device_id: str, owner_id: int) -> None:
    def _db():
        last_seen = Device.objects.filter(device_id=device_id).values_list("last_seen", flat=True).first()
        online = bool(presence.online_device_ids([device_id]))
        return last_seen, online

    last_seen, online = await database_sync_to_async(_db)()
    await to_owner(owner_id, device_status_frame(device_id, "online" if online else "offline", last_seen))


async def cluster_stats() -> dict:
    """`/stats` numbers for the whole cluster: robots online, app sockets, users online, active sessions."""

    def _db():
        counts = presence.stats()
        counts["active_sessions"] = Session.objects.filter(Q(ended_at__isnull=True)).count()
        return counts

    return await database_sync_to_async(_db)()
