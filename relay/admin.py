"""Django admin for the relay's history: signaling sessions and WebSocket connections, read-only.

Rows are written only by the relay (sessions.py, presence.py); an edit from the admin would
contradict what the parties were told over the wire, so add, change and delete are refused and
the pages are for looking only (staff need the `view` permission).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.db.models import Model, QuerySet
from django.http import HttpRequest

from relay.models import Connection, Session

# ModelAdmin is generic in django-stubs only (it cannot be subscripted at run time).
if TYPE_CHECKING:
    _ModelAdmin = admin.ModelAdmin[Any]
else:
    _ModelAdmin = admin.ModelAdmin


class ReadOnlyAdmin(_ModelAdmin):
    """A ModelAdmin with no add, change or delete permission: detail pages render as read-only views."""

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


class LiveFilter(admin.SimpleListFilter):
    """Filter by whether the row is still live (no end timestamp) or finished."""

    title = "live"
    parameter_name = "live"
    end_field = ""

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin[Any]) -> tuple[tuple[str, str], ...]:
        return (("yes", "live"), ("no", "finished"))

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "yes":
            return queryset.filter(**{f"{self.end_field}__isnull": True})
        if self.value() == "no":
            return queryset.filter(**{f"{self.end_field}__isnull": False})
        return queryset


class SessionLiveFilter(LiveFilter):
    """Live sessions have no `ended_at`."""

    end_field = "ended_at"


class ConnectionOpenFilter(LiveFilter):
    """Open connections have no `disconnected_at` (stale ones are rows whose instance died)."""

    title = "open"
    parameter_name = "open"
    end_field = "disconnected_at"


@admin.register(Session)
class SessionAdmin(ReadOnlyAdmin):
    """Signaling sessions (docs/protocol.md §13): state, end reason, timestamps and ICE counts.

    Search by robot `device_id`, owner email, or an exact session UUID.
    """

    list_display = (
        "id",
        "device",
        "user",
        "state",
        "end_reason",
        "created_at",
        "answered_at",
        "ended_at",
        "app_ice_candidates",
        "robot_ice_candidates",
    )
    list_filter = ("state", "end_reason", SessionLiveFilter)
    search_fields = ("device__device_id", "user__email")
    date_hierarchy = "created_at"
    list_select_related = ("device", "user")
    ordering = ("-created_at",)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Session], search_term: str
    ) -> tuple[QuerySet[Session], bool]:
        """Also match an exact session id: UUIDs are what apps and logs report."""
        matches, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        try:
            session_id = uuid.UUID(search_term.strip())
        except ValueError:
            return matches, may_have_duplicates
        # OR with the incoming queryset (already narrowed by the list filters), not the whole table.
        return matches | queryset.filter(pk=session_id), may_have_duplicates


@admin.register(Connection)
class ConnectionAdmin(ReadOnlyAdmin):
    """WebSocket connections of robots and apps, from accept to close (presence rows and history)."""

    list_display = (
        "role",
        "device",
        "user",
        "path",
        "connected_at",
        "heartbeat_at",
        "disconnected_at",
        "close_code",
    )
    list_filter = ("role", ConnectionOpenFilter, "path")
    search_fields = ("device__device_id", "user__email", "channel_name")
    date_hierarchy = "connected_at"
    list_select_related = ("device", "user")
    ordering = ("-connected_at",)
