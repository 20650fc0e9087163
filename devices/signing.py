"""Per-device secrets and the robot's HMAC signature (docs/protocol.md §4).

A robot signs `"<device_id>:<unix seconds>"` with HMAC-SHA256 keyed by its secret and sends the hex
digest. Verification is constant-time, accepts a timestamp within ±`WIMZ_DEVICE_AUTH_SKEW` seconds of
the server clock and accepts each (device_id, timestamp, signature) triple once.
"""

import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from . import encryption
from .ids import is_valid_device_id
from .models import Device, UsedSignature

logger = logging.getLogger("devices.signing")


def generate_secret() -> str:
    """A new device secret: 32 random bytes as 64 hex characters (from `secrets`)."""
    return secrets.token_hex(32)


def sign(secret: str, device_id: str, timestamp: int | str) -> str:
    """Hex HMAC-SHA256 of `"<device_id>:<timestamp>"` keyed by `secret` — what a robot sends."""
    message = f"{device_id}:{timestamp}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _parse_timestamp(value: object) -> int | None:
    """Unix seconds from an int or a decimal string; None when malformed (never raises)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 12:
        return int(value)
    return None


def verify_device_signature(
    device_id: object,
    timestamp: object,
    signature: object,
    *,
    now: Callable[[], float] = time.time,
    consume: bool = True,
) -> Device | None:
    """Check a robot's signed credentials; return the active `Device`, or None on any failure.

    `device_id`, `timestamp` (unix seconds, int or digit string) and `signature` (hex) come straight
    from headers, query or an in-band `auth` frame and may be anything: malformed input returns None,
    never raises. With `consume` the triple is recorded so that a replay within the skew window is
    refused (a unique row, so the rule holds across relay instances). The caller learns nothing about
    which check failed (docs/protocol.md §4.3: it says nothing about which part failed); the operator
    does, through `check_device_signature`.
    """
    return check_device_signature(device_id, timestamp, signature, now=now, consume=consume)[0]


# Why a signature check failed, for the operator's log (never for the client, docs/protocol.md §4.3).
REFUSAL_REASONS = (
    "malformed_device_id",
    "malformed_signature",
    "malformed_timestamp",
    "timestamp_out_of_window",
    "unknown_or_inactive_device",
    "secret_undecryptable",
    "bad_signature",
    "replayed",
)


def check_device_signature(
    device_id: object,
    timestamp: object,
    signature: object,
    *,
    now: Callable[[], float] = time.time,
    consume: bool = True,
) -> tuple[Device | None, str]:
    """`verify_device_signature` that also says why it refused: `(device, "")` on success, else
    `(None, reason)` with `reason` one of `REFUSAL_REASONS`. The reason goes to logs only; it never
    holds the secret or the signature."""
    if not is_valid_device_id(device_id):
        return None, "malformed_device_id"
    if not isinstance(signature, str) or len(signature) != 64 or not signature.isascii():
        # (hmac.compare_digest raises TypeError on non-ASCII str: latin-1 headers)
        return None, "malformed_signature"
    ts = _parse_timestamp(timestamp)
    if ts is None:
        return None, "malformed_timestamp"
    if abs(now() - ts) > settings.WIMZ_DEVICE_AUTH_SKEW:
        return None, "timestamp_out_of_window"
    device = Device.objects.filter(device_id=device_id, is_active=True).first()
    if device is None:
        # Spend comparable work (a decryption too) so that unknown ids are not told apart by timing.
        hmac.compare_digest(sign(encryption.decoy_secret(), device_id, ts), signature.lower())
        return None, "unknown_or_inactive_device"
    try:
        secret = device.reveal_secret()  # the one decryption of this check (docs/operations.md "Secrets at rest")
    except encryption.SecretUndecryptable:
        logger.error(
            "device %s: stored secret opens with none of WIMZ_SECRET_KEYS (dropped key?); signature refused", device_id
        )
        return None, "secret_undecryptable"
    if not hmac.compare_digest(sign(secret, device_id, ts), signature.lower()):
        return None, "bad_signature"
    if consume and not _consume(device_id, ts, signature.lower()):
        return None, "replayed"
    return device, ""


def consume_signature(device_id: str, timestamp: object, signature: str) -> bool:
    """Spend a triple that `verify_device_signature(..., consume=False)` accepted; False when it was
    spent already (a replay, possibly on another instance). For callers that verify first and spend
    only once everything else about the request is accepted (the relay's WebSocket handshake,
    docs/protocol.md §4.3). Run it inside the transaction that records the acceptance, so that a
    failure rolls the spending back too.
    """
    ts = _parse_timestamp(timestamp)
    if ts is None or not isinstance(signature, str):
        return False
    return _consume(device_id, ts, signature.lower())


def _consume(device_id: str, ts: int, signature: str) -> bool:
    """Record a used triple; False when it was already used (a replay)."""
    try:
        with transaction.atomic():
            UsedSignature.objects.create(device_id=device_id, timestamp=ts, signature=signature)
    except IntegrityError:
        return False
    cutoff = timezone.now() - timedelta(seconds=2 * settings.WIMZ_DEVICE_AUTH_SKEW)
    UsedSignature.objects.filter(created_at__lt=cutoff).delete()
    return True
