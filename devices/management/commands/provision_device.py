"""`manage.py provision_device DEVICE_ID [--name N] [--owner EMAIL] [--json]`: create a robot.

Prints the device secret once (it is never shown again; put it on the robot) and a provisioning
pairing code (valid `WIMZ_PROVISIONING_CODE_TTL` seconds). With `--json` stdout is exactly one JSON
object `{"device_id","secret","pairing_code"}` and nothing else.
"""

import json

from django.core.management.base import BaseCommand, CommandError

from accounts.models import User
from devices.errors import DeviceError
from devices.services import device_provision


class Command(BaseCommand):
    help = "Provision a robot: create it with a new secret (printed once) and a provisioning pairing code."

    def add_arguments(self, parser):
        parser.add_argument("device_id", help="1-64 characters of A-Z a-z 0-9 _ . -")
        parser.add_argument("--name", default="", help="display name")
        parser.add_argument("--owner", default=None, help="email of an existing user to pair the robot with now")
        parser.add_argument(
            "--json",
            action="store_true",
            dest="as_json",
            help='print one JSON object {"device_id","secret","pairing_code"}',
        )

    def handle(self, *args, device_id, name, owner, as_json: bool = False, **options):
        owner_user = None
        if owner:
            owner_user = User.objects.filter(email__iexact=owner.strip()).first()
            if owner_user is None:
                raise CommandError(f"No user with email {owner!r}.")
        try:
            device, secret, code = device_provision(device_id=device_id, name=name, owner=owner_user)
        except DeviceError as e:
            raise CommandError(f"Cannot provision {device_id!r}: {e.message}") from e
        if as_json:
            self.stdout.write(json.dumps({"device_id": device.device_id, "secret": secret, "pairing_code": code}))
            return
        self.stdout.write(self.style.SUCCESS(f"Provisioned device {device.device_id}"))
        if owner_user:
            self.stdout.write(f"Owner:         {owner_user.email}")
        self.stdout.write(f"Secret:        {secret}")
        self.stdout.write(f"Pairing code:  {code}")
        self.stdout.write(self.style.WARNING("The secret is shown only this once: store it on the robot now."))
