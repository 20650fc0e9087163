"""Device services: provisioning, secret rotation, pairing, unpairing, renaming, (re)activation.

Keyword-only, typed, raising `devices.errors` domain errors. Pairing, unpairing, deactivation and
secret rotation send a signal of `devices.signals` after the transaction commits, so receivers (the
relay) never hear about a change that was rolled back.
"""

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import User

from . import encryption, pairing, signals
from .errors import (
    DeviceAlreadyExists,
    DeviceNotFound,
    DeviceOwned,
    InvalidDeviceId,
    InvalidDeviceName,
    InvalidPairingCode,
)
from .ids import is_valid_device_id
from .models import NAME_MAX_LENGTH as NAME_MAX_LENGTH
from .models import Device, PairingCode
from .signing import generate_secret


def device_provision(*, device_id: str, name: str = "", owner: User | None = None) -> tuple[Device, str, str]:
    """Create a robot with a fresh secret and a provisioning pairing code.

    Returns `(device, secret, pairing_code)`; the secret is shown to the operator once, stored only
    encrypted and never returned by the API. With `owner` the device is paired to that user at once.
    Raises `InvalidDeviceId` (docs/protocol.md §4 alphabet), `InvalidDeviceName` (over 100
    characters), `DeviceAlreadyExists` or `SecretKeysUnavailable` (no `WIMZ_SECRET_KEYS`; nothing written).
    """
    if not is_valid_device_id(device_id):
        raise InvalidDeviceId()
    _check_name(name or "")
    secret = generate_secret()
    token = encryption.encrypt(secret)
    now = timezone.now()
    try:
        with transaction.atomic():
            if Device.objects.filter(device_id=device_id).exists():
                raise DeviceAlreadyExists()
            device = Device.objects.create(
                device_id=device_id,
                name=name or "",
                owner=owner,
                secret_encrypted=token,
                paired_at=now if owner else None,
            )
            code = pairing.pairing_code_issue(device=device, kind=PairingCode.Kind.PROVISIONING, now=now)
            if owner is not None:
                _notify_paired(device, owner.pk)
    except IntegrityError as e:  # lost a race with a concurrent provisioning of the same id
        raise DeviceAlreadyExists() from e
    return device, secret, code.code


def device_rotate_secret(*, device: Device) -> str:
    """Give `device` a new secret and return it (shown once; stored encrypted). Signatures made with the old one
    fail from now on. Raises `SecretKeysUnavailable` (no `WIMZ_SECRET_KEYS`) before changing anything."""
    secret = generate_secret()
    device.set_secret(secret)
    Device.objects.filter(pk=device.pk).update(secret_encrypted=device.secret_encrypted)
    _notify_revoked(device, deactivated=False)  # a socket opened with the old secret must not outlive it
    return secret


def device_pairing_code_issue(*, device: Device) -> PairingCode:
    """A new robot pairing code for `device` (the robot asked with a signed request); earlier robot codes expire."""
    return pairing.pairing_code_issue(device=device, kind=PairingCode.Kind.ROBOT)


@transaction.atomic
def device_pair(*, user: User, code: str, name: str | None = None) -> Device:
    """Pair the device that `code` proves possession of to `user`; return the device.

    docs/protocol.md §7: a wrong, spent or expired code, or one for an inactive device, raises
    `InvalidPairingCode` without saying whether the device exists. A live code for a device owned by
    another user raises `DeviceOwned` and changes nothing — the code is not consumed. A device already
    owned by `user` succeeds (idempotent; `name` is applied if given). On success the code is spent,
    the device's other live codes expire, and the relay is told after commit.
    """
    if name is not None:
        _check_name(name)
    normalized = pairing.normalize_code(code)
    if normalized is None:
        raise InvalidPairingCode()
    now = timezone.now()
    pairing_code = pairing.pairing_code_lock(code=normalized, now=now)
    if pairing_code is None or not pairing_code.device.is_active:
        raise InvalidPairingCode()
    device = pairing_code.device
    if device.owner_id is not None and device.owner_id != user.pk:
        raise DeviceOwned()
    if not pairing.pairing_code_mark_used(pairing_code=pairing_code, now=now):
        raise InvalidPairingCode()  # consumed by a concurrent request (SQLite has no row locks)
    already_mine = device.owner_id == user.pk
    fields: dict[str, object] = {"owner": user}
    if not already_mine:
        fields["paired_at"] = now
    if name is not None:
        fields["name"] = name
    # Conditional update: on a database without row locks a concurrent pair of the same device by
    # another user (with another code) makes this match nothing, and the whole call rolls back.
    target = Device.objects.filter(pk=device.pk)
    target = target.filter(owner_id=user.pk) if already_mine else target.filter(owner__isnull=True)
    if not target.update(**fields):
        raise DeviceOwned()
    for field, value in fields.items():
        setattr(device, field, value)
    pairing.pairing_codes_expire(device=device, now=now)
    if not already_mine:
        _notify_paired(device, user.pk)
    return device


def device_unpair(*, user: User, device: Device) -> None:
    """Remove `user`'s ownership of `device`; after commit the relay ends its sessions (`unpaired`).

    Raises `DeviceNotFound` when `user` does not own the device (same answer as for unknown ids).
    """
    with transaction.atomic():
        updated = Device.objects.filter(pk=device.pk, owner_id=user.pk).update(owner=None, paired_at=None)
        if not updated:
            raise DeviceNotFound()
        device.owner, device.paired_at = None, None
        pairing.pairing_codes_expire(device=device)
        signals.send_on_commit(
            signals.device_unpaired, device_id=device.device_id, device_pk=device.pk, former_owner_id=user.pk
        )


def device_rename(*, device: Device, name: str) -> Device:
    """Set the device's display name (up to 100 characters, may be empty) and return the device.

    Raises `InvalidDeviceName` for a longer name.
    """
    _check_name(name)
    device.name = name
    device.save(update_fields=["name"])
    return device


def device_deactivate(*, device: Device) -> Device:
    """Take a device out of service: its signatures are refused and its live pairing codes expire.

    The owner is kept (so reactivating in admin restores it) but inactive devices are absent from
    the owner's list. An open robot socket is closed (4003) after commit; its sessions then end
    `robot_disconnected` and the owner's apps see it offline.
    """
    with transaction.atomic():
        Device.objects.filter(pk=device.pk).update(is_active=False)
        device.is_active = False
        pairing.pairing_codes_expire(device=device)
        _notify_revoked(device, deactivated=True)
    return device


def device_reactivate(*, device: Device) -> Device:
    """Put a deactivated device back in service: its signatures are accepted again and, when it has an
    owner, the owner's apps list it again (they get `device_status` after commit, as on pairing).

    A device that is already active is left as it is (no signal).
    """
    with transaction.atomic():
        if not Device.objects.filter(pk=device.pk, is_active=False).update(is_active=True):
            device.is_active = True
            return device
        device.is_active = True
        if device.owner_id is not None:
            _notify_paired(device, device.owner_id)
    return device


def _check_name(name: str) -> None:
    if len(name) > NAME_MAX_LENGTH:
        raise InvalidDeviceName()


def _notify_revoked(device: Device, *, deactivated: bool) -> None:
    signals.send_on_commit(
        signals.device_revoked,
        device_id=device.device_id,
        device_pk=device.pk,
        owner_id=device.owner_id,
        deactivated=deactivated,
    )


def _notify_paired(device: Device, owner_id: int) -> None:
    signals.send_on_commit(signals.device_paired, device_id=device.device_id, device_pk=device.pk, owner_id=owner_id)
