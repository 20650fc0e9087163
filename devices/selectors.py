"""Reads of devices for their owners. Every owner-facing read goes through here (authorization by query)."""

from collections.abc import Iterable

from django.db.models import QuerySet

from accounts.models import User

from .errors import DeviceNotFound
from .ids import is_valid_device_id
from .models import Device
from .signals import online_device_ids


def device_qs_for_user(*, user: User) -> QuerySet[Device]:
    """The user's active devices (QuerySet, ordered by device_id)."""
    return Device.objects.filter(owner=user, is_active=True)


def device_annotate_online(devices: Iterable[Device]) -> list[Device]:
    """Set `is_online` on each device from presence, with one query for the whole list; returns a list."""
    listed = list(devices)
    online = online_device_ids([d.device_id for d in listed]) if listed else set()
    for device in listed:
        device.is_online = device.device_id in online
    return listed


def device_list_for_user(*, user: User) -> list[Device]:
    """The user's active devices, each with `is_online` set (two queries in all)."""
    return device_annotate_online(device_qs_for_user(user=user))


def device_get_for_user(*, user: User, device_id: str) -> Device:
    """One of the user's active devices, with `is_online` set.

    Raises `DeviceNotFound` alike for an id that does not exist, is malformed, is inactive or
    belongs to someone else (ids cannot be probed).
    """
    if not is_valid_device_id(device_id):
        raise DeviceNotFound()
    device = device_qs_for_user(user=user).filter(device_id=device_id).first()
    if device is None:
        raise DeviceNotFound()
    return device_annotate_online([device])[0]
