"""`manage.py reactivate_device DEVICE_ID`: put a deactivated robot back in service.

Its signatures (with its current secret) are accepted again and its owner's apps list it again
(`device_status`, docs/protocol.md §11).
"""

import logging
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from devices.services import device_reactivate

from ._lookup import device_or_error

logger = logging.getLogger("devices.operator")


class Command(BaseCommand):
    help = "Reactivate a deactivated robot."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("device_id")

    def handle(self, *args: Any, device_id: str, **options: Any) -> None:
        device = device_or_error(device_id)
        if device.is_active:
            self.stdout.write(f"{device.device_id} is already active.")
            return
        device_reactivate(device=device)
        logger.info("device %s reactivated by manage.py reactivate_device", device.device_id)
        self.stdout.write(self.style.SUCCESS(f"{device.device_id} reactivated."))
