"""Device secrets encrypted at rest (docs/operations.md "Secrets at rest").

A robot's HMAC secret (docs/protocol.md §4) is stored as a Fernet token (AES-128-CBC + HMAC-SHA256,
the `cryptography` package) under the keys of `settings.WIMZ_SECRET_KEYS`: the first key encrypts,
every key decrypts (`MultiFernet`), which is what lets `manage.py rotate_secret_keys` move rows to a
new key while the old one still opens them. Plain secrets exist only in memory: when issued (shown
once) and during one signature check. Nothing here logs, and no error message carries a secret,
a token or a key.
"""

import base64
import binascii
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings

from .errors import DeviceError

# A Fernet token is version byte 0x80, 8-byte timestamp, 16-byte IV, AES-CBC ciphertext (a multiple of
# 16 bytes, at least one block) and a 32-byte HMAC, url-safe base64 encoded.
_TOKEN_OVERHEAD = 1 + 8 + 16 + 32
_DECOY_SECRET = "0" * 64


class SecretKeysUnavailable(DeviceError):
    """`WIMZ_SECRET_KEYS` is missing (DEBUG off) or malformed: no device secret can be encrypted or read."""

    code = "secret_keys_unavailable"
    default_message = (
        "WIMZ_SECRET_KEYS is missing or not a list of Fernet keys, so device secrets cannot be encrypted or "
        'decrypted. Set it (docs/operations.md "Secrets at rest").'
    )


class SecretUndecryptable(DeviceError):
    """A stored token that none of the configured keys opens: encrypted under a key that was dropped from
    `WIMZ_SECRET_KEYS` before `rotate_secret_keys` moved it, or damaged."""

    code = "secret_undecryptable"
    default_message = (
        "The device's stored secret opens with none of the WIMZ_SECRET_KEYS (encrypted under a key that was "
        "dropped?). Put the old key back, or give the robot a new secret (rotate_device_secret)."
    )


@lru_cache(maxsize=8)
def _multi_fernet(keys: tuple[str, ...]) -> MultiFernet:
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except (ValueError, TypeError):  # no key, or one that is not 32 url-safe base64 bytes
        raise SecretKeysUnavailable() from None  # `from None`: nothing of the key in a traceback


def _keys() -> MultiFernet:
    """The `MultiFernet` of the current settings (built once per key list: settings may change in tests)."""
    return _multi_fernet(tuple(settings.WIMZ_SECRET_KEYS))


def encrypt(secret: str) -> str:
    """The Fernet token (ASCII, 184 characters for a 64-character secret) of `secret` under the first key.

    Raises `SecretKeysUnavailable` without usable keys.
    """
    return _keys().encrypt(secret.encode()).decode("ascii")


def decrypt(token: str) -> str:
    """The secret that `token` holds, opened with whichever configured key made it (about 7 µs; 9 µs during
    a rotation; docs/operations.md "Secrets at rest").

    Raises `SecretUndecryptable` when no configured key opens it (or it is no token at all) and
    `SecretKeysUnavailable` without usable keys.
    """
    try:
        return _keys().decrypt(token.encode("ascii")).decode()
    except (InvalidToken, UnicodeError):
        raise SecretUndecryptable() from None


def rotate(token: str) -> str:
    """`token` re-encrypted under the first key (`MultiFernet.rotate`; the secret is unchanged).

    Raises `SecretUndecryptable` / `SecretKeysUnavailable` as `decrypt` does.
    """
    try:
        return _keys().rotate(token.encode("ascii")).decode("ascii")
    except (InvalidToken, UnicodeError):
        raise SecretUndecryptable() from None


def is_encrypted(value: str) -> bool:
    """True when `value` has the shape of a Fernet token (whatever key made it); False for a plain secret.

    Device secrets are 64 hex characters, which never decode to a token (a token's first character is
    `g`, not a hex digit), so the data migration and `rotate_secret_keys` can tell the two apart without
    any key.
    """
    if not isinstance(value, str) or not value.isascii():
        return False
    try:
        raw = base64.urlsafe_b64decode(value.encode("ascii"))
    except (binascii.Error, ValueError):
        return False
    body = len(raw) - _TOKEN_OVERHEAD
    return raw[:1] == b"\x80" and body >= 16 and body % 16 == 0


@lru_cache(maxsize=8)
def _decoy_token(keys: tuple[str, ...]) -> str:
    return _multi_fernet(keys).encrypt(_DECOY_SECRET.encode()).decode("ascii")


def decoy_secret() -> str:
    """Decrypt a fixed token and return its (useless) secret: the signature check of an unknown device id
    spends the same decryption as a known one, so the two are not told apart by timing."""
    return decrypt(_decoy_token(tuple(settings.WIMZ_SECRET_KEYS)))
