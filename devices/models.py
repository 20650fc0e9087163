"""Robots (devices), their pairing codes and the signatures already used to authenticate."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from . import encryption

# Re-exported (`X as X`: explicit for mypy): the rule lives in ids.py.
from .ids import DEVICE_ID_RULE as DEVICE_ID_RULE
from .ids import is_valid_device_id as is_valid_device_id

NAME_MAX_LENGTH = 100  # characters of `Device.name`


def validate_device_id(value: object) -> None:
    """Model/serializer/admin-form validator; raises `ValidationError` for an id `is_valid_device_id` refuses."""
    if not is_valid_device_id(value):
        raise ValidationError(DEVICE_ID_RULE, code="invalid_device_id")


class Device(models.Model):
    """A WIM-Z robot.

    The per-device HMAC key (docs/protocol.md §4) is stored encrypted, as a Fernet token in
    `secret_encrypted` (devices/encryption.py, docs/operations.md "Secrets at rest"): `set_secret` stores
    one, `reveal_secret` opens it for a signature check. It is shown once when issued (provisioning,
    rotation) and never again: it is excluded from every serializer and admin form.
    """

    device_id = models.CharField(max_length=64, unique=True, validators=[validate_device_id])
    name = models.CharField(max_length=NAME_MAX_LENGTH, blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="devices"
    )
    # A Fernet token, never the secret: 184 characters for today's 64-hex secrets, 268 for the longest
    # secret the column ever held (128 characters). Read it only through `reveal_secret`.
    secret_encrypted = models.CharField(max_length=512, editable=False)
    firmware_version = models.CharField(max_length=64, blank=True)
    capabilities = models.JSONField(default=list, blank=True)
    last_seen = models.DateTimeField(null=True, blank=True)
    paired_at = models.DateTimeField(null=True, blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    # Presence, not a column: set by `selectors.device_annotate_online` and the admin changelist (absent
    # until then; the output serializers default it to False).
    is_online: bool

    class Meta:
        ordering = ["device_id"]  # noqa: RUF012 - a list, as in the migrations' state: a tuple would be a new migration

    def __str__(self) -> str:
        return self.device_id

    def set_secret(self, secret: str) -> None:
        """Store `secret` encrypted under the first of `WIMZ_SECRET_KEYS` (not saved: the caller saves).

        Raises `encryption.SecretKeysUnavailable` without usable keys.
        """
        self.secret_encrypted = encryption.encrypt(secret)

    def reveal_secret(self) -> str:
        """The plain secret (64 hex characters), decrypted from `secret_encrypted`: once per signature check.

        Raises `encryption.SecretUndecryptable` when no configured key opens it (a dropped key) and
        `encryption.SecretKeysUnavailable` without usable keys.
        """
        return encryption.decrypt(self.secret_encrypted)


class PairingCode(models.Model):
    """A short, single-use, expiring code that proves possession of a robot.

    `kind` says where it came from: `robot` (requested by the robot with a signed request, short
    lifetime) or `provisioning` (printed at provisioning, longer lifetime).
    """

    class Kind(models.TextChoices):
        ROBOT = "robot", "requested by the robot"
        PROVISIONING = "provisioning", "issued at provisioning"

    code = models.CharField(max_length=16, unique=True)
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="pairing_codes")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.ROBOT)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"pairing code for {self.device_id}"


class UsedSignature(models.Model):
    """A (device_id, timestamp, signature) triple already accepted: a replay is refused.

    Rows older than twice the skew window are useless (their timestamp is out of the window) and
    are purged by `devices.signing`.
    """

    device_id = models.CharField(max_length=64)
    timestamp = models.BigIntegerField()
    signature = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = (
            models.UniqueConstraint(fields=["device_id", "timestamp", "signature"], name="unique_used_signature"),
        )

    def __str__(self) -> str:
        return f"signature used by {self.device_id} at {self.timestamp}"
