"""Signals that `devices` sends after an ownership or credential change has been committed.

Receivers (the relay: `relay.ownership`) hear of a change only once it is in the database, never of
one that was rolled back. Every signal is sent with `sender=Device` and keyword arguments:

- `device_paired`: `device_id` (str), `device_pk` (int), `owner_id` (int, the new owner).
- `device_unpaired`: `device_id`, `device_pk`, `former_owner_id` (int).
- `device_revoked`: `device_id`, `device_pk`, `owner_id` (int or None), `deactivated` (bool: the device
  was taken out of service; False when only its secret was rotated).

`devices` knows nothing of its receivers; what "online" means is likewise provided from outside
(`register_online_provider`), so that this app never imports the relay.
"""

from collections.abc import Callable, Iterable
from typing import Any

from django.db import transaction
from django.dispatch import Signal

device_paired = Signal()
device_unpaired = Signal()
device_revoked = Signal()

_online_provider: Callable[[list[str]], set[str]] | None = None


def send_on_commit(signal: Signal, **kwargs: Any) -> None:
    """Send `signal` (sender `Device`) with `kwargs` once the current transaction commits."""
    from .models import Device

    transaction.on_commit(lambda: signal.send(sender=Device, **kwargs))


def register_online_provider(provider: Callable[[list[str]], set[str]]) -> None:
    """Install the function that answers which of a list of device ids are online (the relay's presence)."""
    global _online_provider
    _online_provider = provider


def online_device_ids(device_ids: Iterable[str]) -> set[str]:
    """The subset of `device_ids` whose robot is connected now (empty when no provider is installed)."""
    ids = list(device_ids)
    if not ids or _online_provider is None:
        return set()
    return _online_provider(ids)
