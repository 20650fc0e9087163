"""Domain errors of the devices app (all `core.errors.DomainError`, each with a stable `code`)."""

from core.errors import DomainError


class DeviceError(DomainError):
    """Base of the devices domain errors."""

    code = "device_error"


class InvalidDeviceId(DeviceError):
    """A device_id outside the rule of docs/protocol.md §4 (1–64 of `A–Z a–z 0–9 _ . -`, not `.`/`..`)."""

    code = "invalid_device_id"
    default_message = "device_id must be 1-64 characters of A-Z a-z 0-9 _ . - and not . or .."


class InvalidDeviceName(DeviceError):
    """A display name longer than 100 characters."""

    code = "invalid_name"
    default_message = "name must be at most 100 characters."


class DeviceAlreadyExists(DeviceError):
    """Provisioning an id that is already provisioned."""

    code = "device_exists"
    default_message = "A device with this device_id already exists."


class DeviceNotFound(DeviceError):
    """Not one of the user's active devices — also for ids that do not exist, so ids cannot be probed."""

    code = "not_found"
    default_message = "Device not found."
    http_status = 404


class InvalidPairingCode(DeviceError):
    """Wrong, spent or expired pairing code, or an inactive device: never says which (docs/protocol.md §7)."""

    code = "invalid_pairing_code"
    default_message = "This pairing code is invalid or has expired."


class DeviceOwned(DeviceError):
    """A valid pairing code for a device that another user owns (docs/protocol.md §17.4: 409, nothing changes)."""

    code = "device_owned"
    default_message = "This device is already paired with another account. It must be unpaired first."
    http_status = 409
