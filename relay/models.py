"""History and presence: one row per WebSocket connection, one row per signaling session."""

import uuid

from django.conf import settings
from django.db import models


class Connection(models.Model):
    """One robot or app WebSocket, from accept to close.

    An open row (`disconnected_at` null, `heartbeat_at` fresh) is the presence record the relay
    routes by: `channel_name` is the consumer's channel on the channel layer, reachable from every
    relay instance. Closed rows are history.
    """

    class Role(models.TextChoices):
        ROBOT = "robot", "robot"
        APP = "app", "app"

    role = models.CharField(max_length=8, choices=Role.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="connections"
    )
    device = models.ForeignKey(
        "devices.Device", null=True, blank=True, on_delete=models.SET_NULL, related_name="connections"
    )
    channel_name = models.CharField(max_length=200, unique=True)
    # The relay process (channel-layer instance id) that holds the socket: heartbeats are one UPDATE
    # per process, and a dead process's rows are found by it.
    instance = models.CharField(max_length=32, blank=True, db_index=True)
    path = models.CharField(max_length=32, blank=True)
    connected_at = models.DateTimeField(auto_now_add=True)
    heartbeat_at = models.DateTimeField()
    disconnected_at = models.DateTimeField(null=True, blank=True)
    close_code = models.IntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-connected_at"]  # noqa: RUF012 - a list, as in the migrations' state: a tuple would be a new migration
        indexes = (
            models.Index(fields=["role", "user", "disconnected_at"], name="conn_role_user_open"),
            models.Index(fields=["role", "device", "disconnected_at"], name="conn_role_device_open"),
        )

    def __str__(self) -> str:
        who = self.device_id if self.role == self.Role.ROBOT else self.user_id
        return f"{self.role} {who} ({self.channel_name})"


class Session(models.Model):
    """A WebRTC signaling session between one app connection and one robot (docs/protocol.md §13).

    States `requested → offered → answered → ended`; `end_reason` is one of `EndReason`.
    `app_channel`/`robot_channel` are the two parties' channel-layer names: the offer and robot ICE
    go back to the one app connection that opened the session.
    """

    class State(models.TextChoices):
        REQUESTED = "requested"
        OFFERED = "offered"
        ANSWERED = "answered"
        ENDED = "ended"

    class EndReason(models.TextChoices):
        CLOSED_BY_APP = "closed_by_app"
        CLOSED_BY_ROBOT = "closed_by_robot"
        APP_DISCONNECTED = "app_disconnected"
        ROBOT_DISCONNECTED = "robot_disconnected"
        SUPERSEDED = "superseded"
        SETUP_TIMEOUT = "setup_timeout"
        ROBOT_ERROR = "robot_error"
        UNPAIRED = "unpaired"
        SERVER_SHUTDOWN = "server_shutdown"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    device = models.ForeignKey("devices.Device", on_delete=models.CASCADE, related_name="sessions")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sessions")
    app_channel = models.CharField(max_length=200)
    robot_channel = models.CharField(max_length=200)
    state = models.CharField(max_length=16, choices=State.choices, default=State.REQUESTED)
    created_at = models.DateTimeField(auto_now_add=True)
    offered_at = models.DateTimeField(null=True, blank=True)
    answered_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=32, choices=EndReason.choices, blank=True)
    app_ice_candidates = models.PositiveIntegerField(default=0)
    robot_ice_candidates = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created_at"]  # noqa: RUF012 - a list, as in the migrations' state: a tuple would be a new migration
        indexes = (
            models.Index(fields=["device", "ended_at"], name="session_device_live"),
            models.Index(fields=["app_channel", "ended_at"], name="session_app_live"),
            models.Index(fields=["robot_channel", "ended_at"], name="session_robot_live"),
        )

    def __str__(self) -> str:
        return f"session {self.id} ({self.state})"
