"""`manage.py deactivate_device DEVICE_ID`: take a robot out of service.

Its signatures are refused from now on, its live pairing codes expire, an open robot socket is
closed (4003, docs/protocol.md §16) and the owner's apps no longer list it. The owner is kept, so
`reactivate_device` restores it.
"""

import logging
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from devices.services import device_deactivate

from ._lookup import device_or_error

logger = logging.getLogger("devices.operator")


class Command(BaseCommand):
    help = "Deactivate a robot: refuse its signatures, close its socket, hide it from its owner."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("device_id")

    def handle(self, *args: Any, device_id: str, **options: Any) -> None:
        device = device_or_error(device_id)
        if not device.is_active:
            self.stdout.write(f"{device.device_id} is already inactive.")
            return
        device_deactivate(device=device)
        logger.info("device %s deactivated by manage.py deactivate_device", device.device_id)
        self.stdout.write(self.style.SUCCESS(f"{device.device_id} deactivated."))
