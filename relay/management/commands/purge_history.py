"""`manage.py purge_history [--dry-run] [--batch-size N]`: delete history past its retention.

- Connection rows closed more than `WIMZ_RETENTION_CONNECTIONS_DAYS` days ago;
- Session rows ended more than `WIMZ_RETENTION_SESSIONS_DAYS` days ago;
- expired outstanding (and so blacklisted) refresh tokens: simplejwt's `flushexpiredtokens`;
- logout records (`accounts.models.RevokedLogin`) whose tokens have all expired.

Open connections and live sessions are never deleted (`relay.retention`). A retention of 0 days keeps
that kind of row forever. Prints one count per kind; `--dry-run` prints what would go and deletes
nothing. docs/operations.md "Retention".
"""

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from rest_framework_simplejwt.token_blacklist.models import OutstandingToken

from accounts.models import RevokedLogin
from relay import retention


class Command(BaseCommand):
    help = "Delete connection and session history past its retention, expired tokens and logout records."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="count what would be deleted; delete nothing")
        parser.add_argument(
            "--batch-size",
            type=int,
            default=retention.DEFAULT_BATCH_SIZE,
            help=f"rows per DELETE (default {retention.DEFAULT_BATCH_SIZE})",
        )

    def handle(
        self, *args: Any, dry_run: bool = False, batch_size: int = retention.DEFAULT_BATCH_SIZE, **options: Any
    ) -> None:
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        now = timezone.now()
        verb = "would delete" if dry_run else "deleted"
        kinds = [
            ("connections", settings.WIMZ_RETENTION_CONNECTIONS_DAYS, retention.connections_expired),
            ("sessions", settings.WIMZ_RETENTION_SESSIONS_DAYS, retention.sessions_expired),
        ]
        for name, days, expired in kinds:
            if days <= 0:
                self.stdout.write(f"{name}: kept (retention 0 = forever)")
                continue
            count = retention.delete_in_batches(
                expired(before=now - timedelta(days=days)), batch_size=batch_size, dry_run=dry_run
            )
            self.stdout.write(f"{name}: {verb} {count} (finished more than {days} days ago)")
        tokens = OutstandingToken.objects.filter(expires_at__lte=now)
        count = tokens.count()
        if not dry_run:
            call_command("flushexpiredtokens")  # simplejwt's; blacklist rows go with their tokens
        self.stdout.write(f"outstanding tokens: {verb} {count} (expired)")
        count = retention.delete_in_batches(
            RevokedLogin.objects.filter(expires_at__lt=now), batch_size=batch_size, dry_run=dry_run
        )
        self.stdout.write(f"logout records: {verb} {count} (all their tokens expired)")
