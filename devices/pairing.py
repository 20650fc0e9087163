"""Pairing codes: short, single-use, expiring proofs of possession of a robot (docs/protocol.md §17).

A code is 8 characters from an alphabet without look-alikes (no 0/O, 1/I/L), drawn with `secrets`:
31^8 ≈ 8.5·10^11 values. Guessing is bounded per user, per address and by a cluster-wide budget of
failed guesses (`core.throttling`, docs/operations.md "Throttles and limits (HTTP)").
Users may type it in any case, with dashes or spaces (`abcd-efgh`). A robot code lives
`WIMZ_PAIRING_CODE_TTL` seconds, a provisioning code `WIMZ_PROVISIONING_CODE_TTL`.

Consumption is atomic: `pairing_code_lock` takes a row lock (PostgreSQL `SELECT … FOR UPDATE`, which
re-checks the row after a concurrent commit) and `pairing_code_mark_used` is a conditional UPDATE
(`used_at IS NULL`), so two concurrent pair calls cannot both use one code, on SQLite as well.
"""

import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from .models import Device, PairingCode

ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 8
_MAX_INPUT = 64


def generate_code() -> str:
    """A new random code: `CODE_LENGTH` characters of `ALPHABET` (from `secrets`)."""
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))


def normalize_code(raw: object) -> str | None:
    """The canonical form of user input (upper case, dashes/spaces removed), or None if it cannot be a code.

    Never raises: anything that is not a string of the right length over `ALPHABET` gives None.
    """
    if not isinstance(raw, str) or len(raw) > _MAX_INPUT:
        return None
    code = "".join(ch for ch in raw if ch not in "- \t").upper()
    if len(code) != CODE_LENGTH or any(ch not in ALPHABET for ch in code):
        return None
    return code


def pairing_code_issue(
    *, device: Device, kind: str = PairingCode.Kind.ROBOT, ttl: int | None = None, now: datetime | None = None
) -> PairingCode:
    """Create a live code for `device` and return it.

    `ttl` (seconds) defaults by `kind` to `WIMZ_PAIRING_CODE_TTL` or `WIMZ_PROVISIONING_CODE_TTL`.
    Issuing a robot code expires the device's earlier unused robot codes (the robot shows only its
    latest one); provisioning codes are left alone.
    """
    now = now or timezone.now()
    if ttl is None:
        provisioning = kind == PairingCode.Kind.PROVISIONING
        ttl = settings.WIMZ_PROVISIONING_CODE_TTL if provisioning else settings.WIMZ_PAIRING_CODE_TTL
    with transaction.atomic():
        if kind == PairingCode.Kind.ROBOT:
            pairing_codes_expire(device=device, kind=kind, now=now)
        for _ in range(10):
            try:
                with transaction.atomic():
                    return PairingCode.objects.create(
                        code=generate_code(), device=device, kind=kind, expires_at=now + timedelta(seconds=ttl)
                    )
            except IntegrityError:  # a collision with a stored code (live or spent): draw again
                continue
    raise RuntimeError("could not draw a unique pairing code")


def pairing_codes_live(*, now: datetime | None = None) -> QuerySet[PairingCode]:
    """QuerySet of codes that are unused and not yet expired."""
    return PairingCode.objects.filter(used_at__isnull=True, expires_at__gt=now or timezone.now())


def pairing_codes_expire(*, device: Device, kind: str | None = None, now: datetime | None = None) -> int:
    """Expire `device`'s live codes (of `kind`, or all); returns how many. `used_at` stays null (never used)."""
    now = now or timezone.now()
    codes = pairing_codes_live(now=now).filter(device=device)
    if kind is not None:
        codes = codes.filter(kind=kind)
    return codes.update(expires_at=now)


def pairing_code_lock(*, code: str, now: datetime | None = None) -> PairingCode | None:
    """The live code row for a *normalized* `code`, locked with its device; None when none is live.

    Call inside `transaction.atomic()`.
    """
    return pairing_codes_live(now=now).select_for_update().select_related("device").filter(code=code).first()


def pairing_code_mark_used(*, pairing_code: PairingCode, now: datetime | None = None) -> bool:
    """Mark a code used if still unused (conditional UPDATE); False when someone else used it first."""
    now = now or timezone.now()
    updated = PairingCode.objects.filter(pk=pairing_code.pk, used_at__isnull=True).update(used_at=now)
    if updated:
        pairing_code.used_at = now
    return bool(updated)
