"""Presence: which robot and app sockets are open, across every relay instance.

Online state lives in `Connection` rows (docs/protocol.md §11: online means the handshake was
accepted, socket open; docs/architecture.md "Presence rows"). A row is *live* while `disconnected_at` is null and its
`heartbeat_at` is younger than `WIMZ_PRESENCE_TTL` seconds; each relay process refreshes all its rows
every `WIMZ_PRESENCE_HEARTBEAT` seconds (`heartbeat_instance`), and a dead process's rows are closed by
a survivor (`close_instance`, `close_stale`). These are read when sockets connect or disconnect, never
per frame. All functions here are synchronous ORM code: call them through
`channels.db.database_sync_to_async` from async code.
"""

from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from .models import Connection


def _fresh_since() -> datetime:
    return timezone.now() - timedelta(seconds=settings.WIMZ_PRESENCE_TTL)


def live_connections() -> QuerySet[Connection]:
    """QuerySet of the live connection rows (open and recently heartbeated)."""
    return Connection.objects.filter(disconnected_at__isnull=True, heartbeat_at__gte=_fresh_since())


def connection_open(
    *,
    role: str,
    channel_name: str,
    path: str = "",
    user_id: int | None = None,
    device_pk: int | None = None,
    instance: str = "",
) -> Connection:
    """Record an accepted socket of relay process `instance`; returns its row (history and presence)."""
    now = timezone.now()
    return Connection.objects.create(
        role=role,
        channel_name=channel_name,
        path=path,
        user_id=user_id,
        device_id=device_pk,
        heartbeat_at=now,
        instance=instance,
    )


def connection_close(channel_name: str, close_code: int | None) -> bool:
    """Mark a socket closed; True when this call closed it (False if already closed or unknown)."""
    return bool(
        Connection.objects.filter(channel_name=channel_name, disconnected_at__isnull=True).update(
            disconnected_at=timezone.now(), close_code=close_code
        )
    )


def heartbeat_instance(instance: str) -> int:
    """Refresh every open row of relay process `instance` in one UPDATE; returns how many."""
    return Connection.objects.filter(instance=instance, disconnected_at__isnull=True).update(
        heartbeat_at=timezone.now()
    )


def robot_channels(device_ids: Iterable[str]) -> dict[str, str]:
    """`{device_id: channel}` of the robot socket currently open for each of `device_ids` that is online."""
    rows = (
        live_connections()
        .filter(role=Connection.Role.ROBOT, device__device_id__in=list(device_ids))
        .order_by("connected_at")
        .values_list("device__device_id", "channel_name")
    )
    return dict(rows)  # newest last, so it wins


def robot_channel(device_id: str) -> str | None:
    """Channel name of the robot socket currently open for `device_id`, or None when offline."""
    return (
        live_connections()
        .filter(role=Connection.Role.ROBOT, device__device_id=device_id)
        .order_by("-connected_at")
        .values_list("channel_name", flat=True)
        .first()
    )


def online_device_ids(device_ids: Iterable[str]) -> set[str]:
    """The subset of `device_ids` (strings) whose robot is online now."""
    return set(
        live_connections()
        .filter(role=Connection.Role.ROBOT, device__device_id__in=list(device_ids))
        .values_list("device__device_id", flat=True)
    )


def stats() -> dict[str, int]:
    """Cluster-wide counts: `robots_online`, `app_sockets`, `users_online` (ints)."""
    live = live_connections()
    robots = live.filter(role=Connection.Role.ROBOT).values("device_id").distinct().count()
    apps = live.filter(role=Connection.Role.APP)
    return {
        "robots_online": robots,
        "app_sockets": apps.count(),
        "users_online": apps.exclude(Q(user__isnull=True)).values("user_id").distinct().count(),
    }


def open_instances(*, exclude: str) -> list[str]:
    """The relay processes (other than `exclude`) that hold open presence rows."""
    return list(
        Connection.objects.filter(disconnected_at__isnull=True)
        .exclude(instance__in=[exclude, ""])
        .values_list("instance", flat=True)
        .distinct()
    )


def close_instance(instance: str) -> list[Connection]:
    """Close every open row of dead relay process `instance` (close code 1006) with a few UPDATEs (the
    caller holds the instance's claim, so no one else closes them); returns the rows, `device` loaded."""
    rows = list(Connection.objects.select_related("device").filter(instance=instance, disconnected_at__isnull=True))
    now = timezone.now()
    for start in range(0, len(rows), 500):
        Connection.objects.filter(
            pk__in=[r.pk for r in rows[start : start + 500]], disconnected_at__isnull=True
        ).update(disconnected_at=now, close_code=1006)
    return rows


def _close_rows(rows: QuerySet[Connection], *, now: bool) -> list[Connection]:
    closed = []
    at = timezone.now()
    for row in list(rows.select_related("device")):
        if Connection.objects.filter(pk=row.pk, disconnected_at__isnull=True).update(
            disconnected_at=at if now else row.heartbeat_at, close_code=1006
        ):
            closed.append(row)
    return closed


def close_stale() -> list[Connection]:
    """Close the rows of sockets whose instance died (no heartbeat for `WIMZ_PRESENCE_TTL` seconds).

    Each row is closed with one conditional UPDATE (close code 1006, disconnected at its last
    heartbeat), so instances sweeping at the same time close each row once. Returns the rows this
    call closed, with `device` loaded.
    """
    return _close_rows(
        Connection.objects.filter(disconnected_at__isnull=True, heartbeat_at__lt=_fresh_since()), now=False
    )
