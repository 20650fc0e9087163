"""`manage.py list_devices [--owner EMAIL] [--online|--offline] [--inactive] [--json]`: the robots, for operators.

One line per device: id, owner, online, active, last seen (ISO 8601 UTC, seconds), firmware. With
`--json` stdout is one JSON object per line with the same fields (`last_seen` null when never seen).
Never prints a secret.
"""

import json
from datetime import datetime
from typing import Any, TypedDict

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import User
from devices.models import Device
from devices.signals import online_device_ids


class _Row(TypedDict):
    device_id: str
    owner: str | None
    online: bool
    active: bool
    last_seen: str | None
    firmware_version: str


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")


class Command(BaseCommand):
    help = "List robots with owner, presence, state and firmware (never their secrets)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--owner", help="only devices of the user with this email")
        presence = parser.add_mutually_exclusive_group()
        presence.add_argument("--online", action="store_true", help="only robots connected now")
        presence.add_argument("--offline", action="store_true", help="only robots not connected now")
        parser.add_argument("--inactive", action="store_true", help="only deactivated devices")
        parser.add_argument("--json", action="store_true", dest="as_json", help="one JSON object per line")

    def handle(
        self,
        *args: Any,
        owner: str | None = None,
        online: bool = False,
        offline: bool = False,
        inactive: bool = False,
        as_json: bool = False,
        **options: Any,
    ) -> None:
        query = Device.objects.select_related("owner").order_by("device_id")
        if owner is not None:
            user = User.objects.filter(email__iexact=owner).first()
            if user is None:
                raise CommandError(f"No user with email {owner!r}.")
            query = query.filter(owner=user)
        if inactive:
            query = query.filter(is_active=False)
        devices = list(query)
        connected = online_device_ids([d.device_id for d in devices])
        if online or offline:
            devices = [d for d in devices if (d.device_id in connected) == online]
        for device in devices:
            row: _Row = {
                "device_id": device.device_id,
                "owner": device.owner.email if device.owner else None,
                "online": device.device_id in connected,
                "active": device.is_active,
                "last_seen": _iso(device.last_seen),
                "firmware_version": device.firmware_version,
            }
            if as_json:
                self.stdout.write(json.dumps(row))
            else:
                self.stdout.write(
                    "  ".join(
                        [
                            row["device_id"],
                            row["owner"] or "-",
                            "online" if row["online"] else "offline",
                            "active" if row["active"] else "inactive",
                            row["last_seen"] or "never",
                            row["firmware_version"] or "-",
                        ]
                    )
                )
        if not as_json:
            self.stderr.write(f"{len(devices)} device(s)")
