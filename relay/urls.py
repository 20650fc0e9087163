"""URL routes of the relay app, included under `/api/` by wimz/urls.py (no trailing slash, docs/protocol.md §17.1)."""

from django.urls import path

from relay import api

urlpatterns = [
    path("turn/credentials", api.TurnCredentialsApi.as_view(), name="turn-credentials"),
    path("sessions", api.SessionListApi.as_view(), name="session-list"),
    path("sessions/<uuid:session_id>", api.SessionDetailApi.as_view(), name="session-detail"),
]
