"""Encrypt every plain device secret in place (docs/operations.md "Secrets at rest").

Idempotent: a value that already has the shape of a Fernet token (`encryption.is_encrypted`) is left as it
is, so running it again, or over rows written by a newer relay, changes nothing. It needs
`WIMZ_SECRET_KEYS` only when there is a plain row to encrypt (a fresh database migrates without keys);
without keys it stops with `SecretKeysUnavailable` and, in the migration's transaction, writes nothing.

Reversible: going back decrypts every row to its plain secret (for a rollback to a release that reads
plain secrets), and stops, writing nothing, at a row that no configured key opens.
"""

from django.db import migrations

from devices import encryption

BATCH_SIZE = 1000


def _batches(Device):
    """Devices as (pk, device_id, secret_encrypted) in pk order, `BATCH_SIZE` rows per query."""
    last = 0
    while True:
        rows = list(Device.objects.filter(pk__gt=last).order_by("pk")
                    .values_list("pk", "device_id", "secret_encrypted")[:BATCH_SIZE])
        if not rows:
            return
        yield rows
        last = rows[-1][0]


def encrypt_plain_secrets(apps, schema_editor):
    """Replace each plain `secret_encrypted` value with its Fernet token; returns how many rows changed."""
    Device = apps.get_model("devices", "Device")
    changed = 0
    for rows in _batches(Device):
        plain = [Device(pk=pk, secret_encrypted=encryption.encrypt(value))
                 for pk, _, value in rows if not encryption.is_encrypted(value)]
        Device.objects.bulk_update(plain, ["secret_encrypted"])
        changed += len(plain)
    return changed


def decrypt_secrets(apps, schema_editor):
    """The reverse: each token back to its plain secret; returns how many rows changed."""
    Device = apps.get_model("devices", "Device")
    changed = 0
    for rows in _batches(Device):
        opened = []
        for pk, device_id, value in rows:
            if not encryption.is_encrypted(value):
                continue
            try:
                opened.append(Device(pk=pk, secret_encrypted=encryption.decrypt(value)))
            except encryption.SecretUndecryptable as e:
                raise encryption.SecretUndecryptable(f"device {device_id}: {e.message}") from None
        Device.objects.bulk_update(opened, ["secret_encrypted"])
        changed += len(opened)
    return changed


class Migration(migrations.Migration):
    dependencies = [
        ("devices", "0002_device_secret_encrypted"),
    ]

    operations = [
        migrations.RunPython(encrypt_plain_secrets, decrypt_secrets, elidable=False),
    ]
