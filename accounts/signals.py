"""Signals of the accounts app, sent after the change commits (accounts never imports the relay).

`login_revoked(user_id: int, login_id: str)`: a login was logged out (`accounts.services.auth_logout`);
the relay closes that login's open app sockets (`relay.ownership`).
"""

from typing import Any

from django.db import transaction
from django.dispatch import Signal

login_revoked = Signal()


def send_on_commit(signal: Signal, **kwargs: Any) -> None:
    """Send `signal` with `kwargs` once the current transaction commits (at once outside one)."""
    transaction.on_commit(lambda: signal.send(sender=None, **kwargs))
