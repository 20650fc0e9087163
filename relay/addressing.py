"""Which robot an app frame addresses (docs/protocol.md §12), decided from the app socket's own facts.

No database read: `Party.devices` (the user's active devices) and `Party.robots` (where each online
robot's socket is) are loaded at connect and kept current by `relay.device` messages.
"""

from typing import TYPE_CHECKING

from .party import Party
from .protocol import Code, RelayError
from .session_rows import Target

if TYPE_CHECKING:
    from .delivery import DeviceMessage


def address(party: Party, device_id: str | None, *, ref: str | None = None) -> Target:
    """The robot an app frame addresses, after authorization and availability checks.

    docs/protocol.md §12: `device_id` may be omitted when the user owns exactly one device (none →
    NO_DEVICE, several → BAD_REQUEST "device_id required"); authorization before availability — a
    device that is not the user's (or does not exist) → NOT_AUTHORIZED, the user's own offline robot →
    DEVICE_OFFLINE. Raises `RelayError`; returns a `Target`.
    """
    devices = party.devices
    device_pk: int | None  # narrowed to int by both branches
    if device_id is None:
        if not devices:
            raise RelayError(Code.NO_DEVICE, "you own no device", ref)
        if len(devices) > 1:
            raise RelayError(Code.BAD_REQUEST, "device_id required", ref)
        device_id, device_pk = next(iter(devices.items()))
    else:
        device_pk = devices.get(device_id)
        if device_pk is None:
            raise RelayError(Code.NOT_AUTHORIZED, "not your device", ref)
    channel = party.robots.get(device_id)
    if channel is None:
        raise RelayError(Code.DEVICE_OFFLINE, "device is offline", ref)
    return Target(device_pk, device_id, channel)


def apply_device_update(party: Party, message: "DeviceMessage") -> None:
    """Apply a `relay.device` message to an app's facts: `owned` adds or removes the device,
    `robot_channel` records where its robot's socket is (None: offline).
    """
    device_id = message["device_id"]
    if "owned" in message:
        if message["owned"]:
            party.devices[device_id] = message["device_pk"]
        else:
            party.devices.pop(device_id, None)
            party.robots.pop(device_id, None)
    if "robot_channel" in message and device_id in party.devices:
        channel = message["robot_channel"]
        if channel:
            party.robots[device_id] = channel
        else:
            party.robots.pop(device_id, None)
