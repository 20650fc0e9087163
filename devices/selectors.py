"""Reads of devices for their owners. Every owner-facing read goes through here (authorization by query)."""

from django.db.models import QuerySet

from .errors import DeviceNotFound
from .models import Device, is_valid_device_id
from .signals import online_device_ids


def device_qs_for_user(*, user) -> QuerySet[Device]:
    """The user's active devices (QuerySet, ordered by device_id)."""
    return Device.objects.filter(owner=user, is_active=True)


def device_annotate_online(devices) -> list[Device]:
    """Set `is_online` on each device from presence, with one query for the whole list; returns a list."""
    devices = list(devices)
    online = online_device_ids([d.device_id for d in devices]) if devices else set()
    for device in devices:
        device.is_online = device.device_id in online
    return devices


def device_list_for_user(*, user) -> list[Device]:
    """The user's active devices, each with `is_online` set (two queries in all)."""
    return device_annotate_online(device_qs_for_user(user=user))


def device_get_for_user(*, user, device_id: str) -> Device:
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
