"""Shared by the device management commands: find a device by id or stop with a clear error."""

from django.core.management.base import CommandError

from devices.models import Device


def device_or_error(device_id: str) -> Device:
    """The device with this `device_id` (owner loaded); `CommandError` when there is none."""
    device = Device.objects.select_related("owner").filter(device_id=device_id).first()
    if device is None:
        raise CommandError(f"No device {device_id!r}.")
    return device
