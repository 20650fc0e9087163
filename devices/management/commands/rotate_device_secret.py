"""`manage.py rotate_device_secret DEVICE_ID [--json]`: give a robot a new secret, printed once.

Signatures made with the old secret fail from now on (the robot must be updated). With `--json`
stdout is exactly one JSON object `{"device_id","secret"}`.
"""

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from devices.errors import DeviceError
from devices.models import Device
from devices.services import device_rotate_secret


class Command(BaseCommand):
    help = "Rotate a robot's secret and print the new one (shown only once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("device_id")
        parser.add_argument(
            "--json", action="store_true", dest="as_json", help='print one JSON object {"device_id","secret"}'
        )

    def handle(self, *args: Any, device_id: str, as_json: bool = False, **options: Any) -> None:
        device = Device.objects.filter(device_id=device_id).first()
        if device is None:
            raise CommandError(f"No device {device_id!r}.")
        try:
            secret = device_rotate_secret(device=device)
        except DeviceError as e:  # SecretKeysUnavailable: no WIMZ_SECRET_KEYS; nothing changed
            raise CommandError(f"Cannot rotate the secret of {device_id!r}: {e.message}") from None
        if as_json:
            self.stdout.write(json.dumps({"device_id": device.device_id, "secret": secret}))
            return
        self.stdout.write(self.style.SUCCESS(f"New secret for {device.device_id}: {secret}"))
        self.stdout.write(self.style.WARNING("The secret is shown only this once; the old one no longer works."))
