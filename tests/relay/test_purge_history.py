"""`manage.py purge_history` (relay/retention.py, docs/operations.md "Retention")."""

import io
import uuid
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from accounts.models import RevokedLogin
from relay import retention
from relay.models import Connection, Session
from tests.support.factories import SessionFactory

pytestmark = pytest.mark.django_db


def _connection(user, *, closed_days_ago=None, heartbeat_days_ago=0):
    now = timezone.now()
    row = Connection.objects.create(
        role=Connection.Role.APP,
        user=user,
        channel_name=f"t.{uuid.uuid4().hex}",
        heartbeat_at=now - timedelta(days=heartbeat_days_ago),
    )
    if closed_days_ago is not None:
        Connection.objects.filter(pk=row.pk).update(
            disconnected_at=now - timedelta(days=closed_days_ago),
            connected_at=now - timedelta(days=closed_days_ago + 1),
        )
    return row


def _session(user, device, *, ended_days_ago=None, created_days_ago=0):
    now = timezone.now()
    row = SessionFactory(device=device, user=user)
    Session.objects.filter(pk=row.pk).update(
        created_at=now - timedelta(days=created_days_ago),
        ended_at=None if ended_days_ago is None else now - timedelta(days=ended_days_ago),
        state=Session.State.REQUESTED if ended_days_ago is None else Session.State.ENDED,
    )
    return row


@pytest.fixture
def history(make_user, make_device):
    user = make_user()
    device, _ = make_device(owner=user)
    rows = {
        "old_closed": _connection(user, closed_days_ago=40),
        "recent_closed": _connection(user, closed_days_ago=5),
        # open, its heartbeat long stale (a dead instance not swept yet): never purged
        "old_open": _connection(user, heartbeat_days_ago=400),
        "old_ended": _session(user, device, ended_days_ago=100, created_days_ago=100),
        "recent_ended": _session(user, device, ended_days_ago=10, created_days_ago=10),
        "old_live": _session(user, device, created_days_ago=400),  # never purged
    }
    now = timezone.now()
    expired = OutstandingToken.objects.create(
        user=user, jti="expired", token="t1", created_at=now - timedelta(days=40), expires_at=now - timedelta(days=1)
    )
    BlacklistedToken.objects.create(token=expired)
    OutstandingToken.objects.create(
        user=user, jti="live", token="t2", created_at=now, expires_at=now + timedelta(days=1)
    )
    RevokedLogin.objects.create(login_id="old", user_id=user.pk, expires_at=now - timedelta(seconds=1))
    RevokedLogin.objects.create(login_id="new", user_id=user.pk, expires_at=now + timedelta(days=1))
    return rows


def _run(*args) -> str:
    out = io.StringIO()
    call_command("purge_history", *args, stdout=out)
    return out.getvalue()


def test_purge_deletes_old_finished_history_and_never_live_rows(history, settings):
    settings.WIMZ_RETENTION_CONNECTIONS_DAYS = 30
    settings.WIMZ_RETENTION_SESSIONS_DAYS = 90
    out = _run("--batch-size", "1")
    assert "connections: deleted 1" in out and "sessions: deleted 1" in out
    assert "outstanding tokens: deleted 1" in out and "logout records: deleted 1" in out
    assert set(Connection.objects.values_list("pk", flat=True)) == {history["recent_closed"].pk, history["old_open"].pk}
    assert set(Session.objects.values_list("pk", flat=True)) == {history["recent_ended"].pk, history["old_live"].pk}
    assert list(OutstandingToken.objects.values_list("jti", flat=True)) == ["live"]
    assert not BlacklistedToken.objects.exists()
    assert list(RevokedLogin.objects.values_list("login_id", flat=True)) == ["new"]


def test_dry_run_counts_and_deletes_nothing(history, settings):
    settings.WIMZ_RETENTION_CONNECTIONS_DAYS = 1
    settings.WIMZ_RETENTION_SESSIONS_DAYS = 1
    out = _run("--dry-run")
    assert "connections: would delete 2" in out and "sessions: would delete 2" in out
    assert "outstanding tokens: would delete 1" in out and "logout records: would delete 1" in out
    assert Connection.objects.count() == 3 and Session.objects.count() == 3
    assert OutstandingToken.objects.count() == 2 and RevokedLogin.objects.count() == 2


def test_zero_days_keeps_that_history_forever(history, settings):
    settings.WIMZ_RETENTION_CONNECTIONS_DAYS = 0
    settings.WIMZ_RETENTION_SESSIONS_DAYS = 0
    out = _run()
    assert "connections: kept" in out and "sessions: kept" in out
    assert Connection.objects.count() == 3 and Session.objects.count() == 3


def test_batches_delete_everything_that_matches(make_user):
    user = make_user()
    for _ in range(7):
        _connection(user, closed_days_ago=60)
    expired = retention.connections_expired(before=timezone.now() - timedelta(days=30))
    assert retention.delete_in_batches(expired, batch_size=3) == 7
    assert not Connection.objects.exists()
    with pytest.raises(ValueError):
        retention.delete_in_batches(expired, batch_size=0)
