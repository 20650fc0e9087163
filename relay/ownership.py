"""Ownership and credential changes, received from `devices.signals` after they were committed.

docs/protocol.md §17.4, §19.3. Each change is pushed to the sockets whose routing facts it changes —
the robot's socket (`relay.owner`: its new owner, or none; `relay.revoked`: close 4003) and the apps
of the owners concerned (`relay.device`) — and waits until every instance has queued it, so the
change holds for the next frame either side sends after the REST call returns, wherever the robot and
the apps are connected. Nothing is routed to a former owner: its apps drop the device from their
facts (and so refuse its events and their own commands for it) before they are told `unpaired`.
"""

import logging
from datetime import datetime
from typing import Any

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver

from accounts.models import User
from accounts.signals import login_revoked
from devices.models import Device
from devices.signals import device_paired, device_revoked, device_unpaired

from . import delivery, presence, session_rows
from .connections import device_status_frame
from .models import Session
from .session_rows import SessionRef
from .sessions import announce_end

logger = logging.getLogger(__name__)


def _facts(device_id: str) -> tuple[datetime | None, str | None]:
    """`(last_seen, robot channel or None)` of `device_id` (database reads)."""
    last_seen = Device.objects.filter(device_id=device_id).values_list("last_seen", flat=True).first()
    return last_seen, presence.robot_channel(device_id)


_device_facts = database_sync_to_async(_facts)


async def device_paired_async(*, device_id: str, device_pk: int, owner_id: int) -> None:
    """The device now belongs to `owner_id`: its robot learns its owner; the owner's apps add it and
    get `device_status` (online or offline)."""
    last_seen, robot_channel = await _device_facts(device_id)
    if robot_channel is not None:
        await delivery.control(robot_channel, "owner", owner_id=owner_id, confirm=True)
    status = "online" if robot_channel else "offline"
    await delivery.device_update(
        owner_id,
        device_id=device_id,
        device_pk=device_pk,
        owned=True,
        robot_channel=robot_channel,
        frame=device_status_frame(device_id, status, last_seen),
        confirm=True,
    )


async def device_unpaired_async(*, device_id: str, device_pk: int, former_owner_id: int) -> None:
    """The device has no owner now: the former owner's apps drop it, its sessions end `unpaired` on
    both sides, the apps get `device_status` `unpaired`, and its robot talks to nobody (docs/protocol.md §17.4)."""
    await delivery.device_update(former_owner_id, device_id=device_id, device_pk=device_pk, owned=False, confirm=True)

    @database_sync_to_async
    def _end() -> tuple[list[SessionRef], datetime | None, str | None]:
        ended = session_rows.sessions_end_where(reason=Session.EndReason.UNPAIRED, device__device_id=device_id)
        return ended, *_facts(device_id)

    ended, last_seen, robot_channel = await _end()
    if robot_channel is not None:
        await delivery.control(robot_channel, "owner", owner_id=None, confirm=True)
    for ref in ended:
        await announce_end(ref, Session.EndReason.UNPAIRED)
    await delivery.device_update(
        former_owner_id,
        device_id=device_id,
        device_pk=device_pk,
        frame=device_status_frame(device_id, "unpaired", last_seen),
    )


async def device_revoked_async(*, device_id: str, device_pk: int, owner_id: int | None, deactivated: bool) -> None:
    """The device was deactivated or its secret rotated: its open robot socket is closed (4003), which
    ends its sessions `robot_disconnected` and shows it offline; a deactivated device also leaves its
    owner's apps' facts at once."""
    if deactivated and owner_id is not None:
        await delivery.device_update(owner_id, device_id=device_id, device_pk=device_pk, owned=False, confirm=True)
    _, robot_channel = await _device_facts(device_id)
    if robot_channel is not None and not await delivery.control(robot_channel, "revoked", confirm=True):
        logger.warning("revoked robot socket not reached; it closes at its instance's next heartbeat")


@receiver(device_paired, dispatch_uid="relay.ownership.paired")
def on_device_paired(sender: object, **kwargs: Any) -> None:
    """`devices.signals.device_paired` receiver (synchronous, after commit)."""
    async_to_sync(device_paired_async)(**_fields(kwargs, "device_id", "device_pk", "owner_id"))


@receiver(device_unpaired, dispatch_uid="relay.ownership.unpaired")
def on_device_unpaired(sender: object, **kwargs: Any) -> None:
    """`devices.signals.device_unpaired` receiver (synchronous, after commit)."""
    async_to_sync(device_unpaired_async)(**_fields(kwargs, "device_id", "device_pk", "former_owner_id"))


@receiver(device_revoked, dispatch_uid="relay.ownership.revoked")
def on_device_revoked(sender: object, **kwargs: Any) -> None:
    """`devices.signals.device_revoked` receiver (synchronous, after commit)."""
    async_to_sync(device_revoked_async)(**_fields(kwargs, "device_id", "device_pk", "owner_id", "deactivated"))


async def user_deactivated_async(*, user_id: int) -> None:
    """A user account was deactivated: every app socket of that user, on every instance, is closed
    (4003) at once; their sessions then end `app_disconnected` (docs/protocol.md §16, §20)."""
    await delivery.group_control(delivery.owner_group(user_id), "revoked", confirm=True)


@receiver(post_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="relay.ownership.user_saved")
def on_user_saved(sender: type[User], instance: User, created: bool, **kwargs: Any) -> None:
    """A saved, inactive user (admin, shell `save()`): close their open app sockets after commit. A bulk
    `update()` sends no signal; each instance's heartbeat catches that within `WIMZ_PRESENCE_HEARTBEAT`."""
    if created or instance.is_active:
        return
    user_id = instance.pk
    transaction.on_commit(lambda: async_to_sync(user_deactivated_async)(user_id=user_id))


async def login_revoked_async(*, user_id: int, login_id: str) -> None:
    """A login was logged out: the app sockets of that login, on every instance, are closed (4003) at
    once; the user's sockets of other logins stay (docs/protocol.md §16, §17.3)."""
    await delivery.group_control(delivery.owner_group(user_id), "revoked", confirm=True, login_id=login_id)


@receiver(login_revoked, dispatch_uid="relay.ownership.login_revoked")
def on_login_revoked(sender: object, **kwargs: Any) -> None:
    """`accounts.signals.login_revoked` receiver (synchronous, after commit). A lost message is caught by
    the socket's instance at its next heartbeat (`relay.connections.heartbeat_once`)."""
    async_to_sync(login_revoked_async)(**_fields(kwargs, "user_id", "login_id"))


def _fields(kwargs: dict[str, Any], *names: str) -> dict[str, Any]:
    return {name: kwargs[name] for name in names}
