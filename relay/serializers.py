"""Input and output serializers of the relay's REST endpoints (TURN credentials, session history)."""

from typing import Any

from rest_framework import serializers

from relay.ice import TTL_MAX, TTL_MIN
from relay.models import Session

# The project's error body (core/api.py): `{"code": <stable snake_case>, "detail": <message>}`.
# Its OpenAPI component is named "RelayError" because accounts/ ("Error") and devices/
# ("DeviceError") declare the same shape and drf-spectacular refuses two classes under one name.


class TurnCredentialsInputSerializer(serializers.Serializer[None]):
    """Body of `POST /api/turn/credentials`: `{"ttl": seconds}`, optional (default `WIMZ_ICE_TTL`)."""

    ttl = serializers.IntegerField(
        required=False,
        min_value=TTL_MIN,
        max_value=TTL_MAX,
        help_text=f"Credential lifetime in seconds, {TTL_MIN}–{TTL_MAX}. Default: the relay's WIMZ_ICE_TTL.",
    )


class IceServerSerializer(serializers.Serializer[dict[str, Any]]):
    """One W3C RTCIceServer: `urls`, plus `username`/`credential` on TURN entries."""

    urls = serializers.ListField(child=serializers.CharField(), help_text="stun:, turn: or turns: URLs.")
    username = serializers.CharField(required=False, help_text="TURN entries only.")
    credential = serializers.CharField(required=False, help_text="TURN entries only.")


class TurnCredentialsOutputSerializer(serializers.Serializer[dict[str, Any]]):
    """Answer of `POST /api/turn/credentials` (docs/protocol.md §17): `{"iceServers", "ttl", "expires_at"}`."""

    iceServers = IceServerSerializer(many=True)  # camelCase: the wire name in docs/protocol.md §17
    ttl = serializers.IntegerField(help_text="Seconds the credentials stay valid.")
    expires_at = serializers.DateTimeField(help_text="ISO 8601 UTC instant the credentials expire.")


class _BlankAsNullChoiceField(serializers.ChoiceField):
    """A choice field that renders the model's blank value as `null` (docs/protocol.md §2: null when unknown)."""

    # The ignore: ChoiceField's stub says a choice renders as `str`; this one renders blank as None.
    def to_representation(self, value: str) -> str | None:  # type: ignore[override]
        return value or None


class SessionSerializer(serializers.ModelSerializer[Session]):
    """One signaling session of the history (docs/protocol.md §13).

    `state` is `requested | offered | answered | ended`; `end_reason` is one of the protocol's end
    reasons, `null` while the session is live; timestamps are ISO 8601 UTC or `null`;
    `*_ice_candidates` count the `webrtc_ice` frames each side sent.
    """

    session_id = serializers.UUIDField(source="id", read_only=True)
    device_id = serializers.CharField(source="device.device_id", read_only=True)
    end_reason = _BlankAsNullChoiceField(choices=Session.EndReason.choices, allow_null=True, read_only=True)

    class Meta:
        model = Session
        fields = (
            "session_id",
            "device_id",
            "state",
            "created_at",
            "offered_at",
            "answered_at",
            "ended_at",
            "end_reason",
            "app_ice_candidates",
            "robot_ice_candidates",
        )
        read_only_fields = fields
