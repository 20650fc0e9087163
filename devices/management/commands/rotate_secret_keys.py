"""`manage.py rotate_secret_keys [--batch-size N]`: re-encrypt every device secret under the first key.

Key rotation (docs/operations.md "Secrets at rest"): put the new key first in `WIMZ_SECRET_KEYS`, keeping
the old one after it, deploy that to every instance, run this, then drop the old key. Each stored token
is opened with whichever configured key made it and encrypted again under the first
(`MultiFernet.rotate`); the secrets themselves do not change, so robots notice nothing.

Rows are read in pk order, `--batch-size` per query, and each batch is written in one transaction. A
row is written only if it still holds the token that was read, so a secret rotated meanwhile
(`rotate_device_secret`, already under the new key) is never overwritten with the old one. A plain row
(written before the data migration) is encrypted. Output, then a non-zero exit if any row failed:

```
rotated 1200, encrypted 0 (were plain), changed meanwhile 1, failed 0 (of 1201 devices)
```

A failed row is a token none of the configured keys opens: its key was dropped already. Those
robots need the old key back (then run this again) or a new secret (`rotate_device_secret`).
"""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from devices import encryption
from devices.models import Device

_SHOW = 10  # failed device ids named in the error


class Command(BaseCommand):
    help = "Re-encrypt every device secret under the first key of WIMZ_SECRET_KEYS (key rotation)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=1000, help="rows per query and transaction")

    def handle(self, *args: Any, batch_size: int = 1000, **options: Any) -> None:
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        try:
            encryption.encrypt("")  # fail before reading anything when there are no usable keys
        except encryption.SecretKeysUnavailable as e:
            raise CommandError(e.message) from None
        counts = {"rotated": 0, "encrypted": 0, "changed": 0, "total": 0}
        failed: list[str] = []
        last = 0
        while True:
            rows = list(
                Device.objects.filter(pk__gt=last)
                .order_by("pk")
                .values_list("pk", "device_id", "secret_encrypted")[:batch_size]
            )
            if not rows:
                break
            last = rows[-1][0]
            with transaction.atomic():
                for pk, device_id, token in rows:
                    counts["total"] += 1
                    if encryption.is_encrypted(token):
                        try:
                            new, kind = encryption.rotate(token), "rotated"
                        except encryption.SecretUndecryptable:
                            failed.append(device_id)
                            continue
                    else:
                        new, kind = encryption.encrypt(token), "encrypted"
                    # Conditional: a secret rotated since the read keeps its new token.
                    written = Device.objects.filter(pk=pk, secret_encrypted=token).update(secret_encrypted=new)
                    counts[kind if written else "changed"] += 1
        self.stdout.write(
            f"rotated {counts['rotated']}, encrypted {counts['encrypted']} (were plain), changed meanwhile "
            f"{counts['changed']}, failed {len(failed)} (of {counts['total']} devices)"
        )
        if failed:
            more = f" and {len(failed) - _SHOW} more" if len(failed) > _SHOW else ""
            raise CommandError(
                f"{len(failed)} device secret(s) open with none of WIMZ_SECRET_KEYS (their key was dropped?): "
                f"{', '.join(failed[:_SHOW])}{more}. Put the old key back in WIMZ_SECRET_KEYS and run this "
                "again, or give those robots new secrets (rotate_device_secret)."
            )
