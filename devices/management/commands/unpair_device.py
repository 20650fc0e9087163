"""`manage.py unpair_device DEVICE_ID`: remove a robot's owner.

The owner's apps get `device_status` `unpaired`, the device's sessions end `unpaired`
(docs/protocol.md §17.4), and the robot can be paired again with a new pairing code.
"""

import logging
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from devices.services import device_unpair

from ._lookup import device_or_error

logger = logging.getLogger("devices.operator")


class Command(BaseCommand):
    help = "Unpair a robot from its owner (ends its sessions)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("device_id")

    def handle(self, *args: Any, device_id: str, **options: Any) -> None:
        device = device_or_error(device_id)
        if device.owner is None:
            self.stdout.write(f"{device.device_id} has no owner.")
            return
        device_unpair(user=device.owner, device=device)
        logger.info("device %s unpaired by manage.py unpair_device", device.device_id)
        self.stdout.write(self.style.SUCCESS(f"{device.device_id} unpaired."))
