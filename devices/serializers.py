"""Input and output serializers of the devices API. No serializer has a `secret` field."""

from collections.abc import Mapping
from typing import Any, TypedDict

from rest_framework import serializers

from .models import Device


class DeviceRenameInput(TypedDict):
    """`validated_data` of `DeviceRenameInputSerializer`."""

    name: str


class PairInput(TypedDict, total=False):
    """`validated_data` of `PairInputSerializer`: every key optional."""

    pairing_code: str
    code: str
    name: str
    device_id: str


class CompatUnpairInput(TypedDict):
    """`validated_data` of `CompatUnpairInputSerializer`."""

    device_id: str


class DeviceOutputSerializer(serializers.ModelSerializer[Device]):
    """`{"device_id","name","is_online","last_seen","paired_at","firmware_version","capabilities"}`.

    Timestamps are ISO 8601 UTC strings or null. `is_online` comes from presence (set by the selector).
    """

    is_online = serializers.BooleanField(default=False)

    class Meta:
        model = Device
        fields = ("device_id", "name", "is_online", "last_seen", "paired_at", "firmware_version", "capabilities")
        read_only_fields = fields


class CompatDeviceOutputSerializer(serializers.ModelSerializer[Device]):
    """compat (docs/protocol.md §17): `{"device_id","name","is_online","last_seen","paired_at"}`."""

    is_online = serializers.BooleanField(default=False)

    class Meta:
        model = Device
        fields = ("device_id", "name", "is_online", "last_seen", "paired_at")
        read_only_fields = fields


class CompatDeviceListOutputSerializer(serializers.Serializer[dict[str, Any]]):
    """compat: `{"devices": [CompatDevice, ...]}`."""

    devices = CompatDeviceOutputSerializer(many=True)


class DeviceRenameInputSerializer(serializers.Serializer[None]):
    """`{"name": str}` (0–100 characters, surrounding whitespace trimmed)."""

    name = serializers.CharField(max_length=100, allow_blank=True)


class PairInputSerializer(serializers.Serializer[None]):
    """`{"pairing_code": str, "name"?: str}`; compat also accepts the key `code` for the pairing code.

    A body without a code (e.g. only a `device_id`) is refused by the view with 400
    `pairing_code_required`: a device_id alone never pairs (docs/protocol.md §17).
    """

    pairing_code = serializers.CharField(required=False, allow_blank=True, max_length=64)
    code = serializers.CharField(
        required=False, allow_blank=True, max_length=64, help_text="compat alias of pairing_code"
    )
    name = serializers.CharField(required=False, max_length=100, allow_blank=True)
    device_id = serializers.CharField(required=False, help_text="Ignored: a device_id alone never pairs.")


class UnpairOutputSerializer(serializers.Serializer[Mapping[str, Any]]):
    """`{"device_id": str, "status": "unpaired"}`."""

    device_id = serializers.CharField()
    status = serializers.CharField()


class CompatUnpairInputSerializer(serializers.Serializer[None]):
    """compat: `{"device_id": str}`."""

    device_id = serializers.CharField(max_length=64)


class CompatPairOutputSerializer(serializers.Serializer[dict[str, Any]]):
    """compat: `{"success": true, "device": CompatDevice}`."""

    success = serializers.BooleanField()
    device = CompatDeviceOutputSerializer()


class CompatUnpairOutputSerializer(UnpairOutputSerializer):
    """compat: `{"success": true, "device_id": str, "status": "unpaired"}`."""

    success = serializers.BooleanField()


class RobotPairingCodeOutputSerializer(serializers.Serializer[dict[str, Any]]):
    """`{"pairing_code": str (8 chars), "expires_at": ISO 8601 UTC, "expires_in": seconds}`."""

    pairing_code = serializers.CharField()
    expires_at = serializers.DateTimeField()
    expires_in = serializers.IntegerField()
