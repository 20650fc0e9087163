"""History retention: delete finished `Connection` and `Session` rows older than their retention.

Live rows are never touched: an open connection (`disconnected_at` null — the presence record the relay
routes by) and a live session (`ended_at` null) stay whatever their age; stale open rows of a dead
instance are closed by the sweep (`relay.connections`) first and only then age out. Deletes go in
batches of primary keys so that no single statement locks a large part of a table.
docs/operations.md "Retention".
"""

from datetime import datetime
from typing import Any

from django.db.models import QuerySet

from .models import Connection, Session

DEFAULT_BATCH_SIZE = 1000


def connections_expired(*, before: datetime) -> QuerySet[Connection]:
    """Closed connection rows whose socket closed before `before` (open rows never match)."""
    return Connection.objects.filter(disconnected_at__isnull=False, disconnected_at__lt=before)


def sessions_expired(*, before: datetime) -> QuerySet[Session]:
    """Ended session rows that ended before `before` (live sessions never match)."""
    return Session.objects.filter(ended_at__isnull=False, ended_at__lt=before)


def delete_in_batches(queryset: QuerySet[Any], *, batch_size: int = DEFAULT_BATCH_SIZE, dry_run: bool = False) -> int:
    """Delete every row of `queryset`, `batch_size` primary keys per DELETE; returns how many rows.

    With `dry_run` nothing is deleted and the count of matching rows is returned. Raises `ValueError`
    for a batch size below 1.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    if dry_run:
        return queryset.count()
    deleted = 0
    while True:
        pks = list(queryset.order_by("pk").values_list("pk", flat=True)[:batch_size])
        if not pks:
            return deleted
        # The filter is repeated in the DELETE, so a row that became live meanwhile is never removed.
        count, per_model = queryset.filter(pk__in=pks).delete()
        deleted += per_model.get(queryset.model._meta.label, count)
