"""Input and output serializers of the accounts API."""

from typing import Any, TypedDict

from rest_framework import serializers
from rest_framework_simplejwt.serializers import TokenRefreshSerializer

from .models import User


class Credentials(TypedDict):
    """`validated_data` of `CredentialsInputSerializer` and `RegisterInputSerializer`."""

    email: str
    password: str


class RefreshInput(TypedDict):
    """`validated_data` of `RefreshInputSerializer`."""

    refresh: str


class CredentialsInputSerializer(serializers.Serializer[None]):
    """`{"email": str, "password": str}` for login (email not format-checked: bad ones just fail)."""

    email = serializers.CharField(max_length=254, trim_whitespace=True)
    password = serializers.CharField(max_length=256, trim_whitespace=False, style={"input_type": "password"})


class RegisterInputSerializer(CredentialsInputSerializer):
    """`{"email": str (valid address), "password": str}` for registration."""

    email = serializers.EmailField(max_length=254)


class AuthOutputSerializer(serializers.Serializer[dict[str, Any]]):
    """Answer of register and login (docs/protocol.md §17); `token` equals `access` (compat)."""

    user_id = serializers.IntegerField()
    email = serializers.EmailField()
    access = serializers.CharField()
    refresh = serializers.CharField()
    token = serializers.CharField(help_text="Same as `access` (compat for deployed apps).")
    expires_in = serializers.IntegerField(help_text="Access token lifetime in seconds.")


class RefreshInputSerializer(serializers.Serializer[None]):
    """`{"refresh": str}`."""

    refresh = serializers.CharField()


class RefreshSerializer(TokenRefreshSerializer):
    """simplejwt's refresh (rotation and blacklisting unchanged), after `services.auth_refresh_check`:
    a token of a deleted or inactive user answers 401 `token_not_valid`."""

    def validate(self, attrs: dict[str, Any]) -> dict[str, str]:
        from .services import auth_refresh_check

        auth_refresh_check(refresh=attrs["refresh"])
        return super().validate(attrs)


class RefreshOutputSerializer(serializers.Serializer[dict[str, Any]]):
    """`{"access": str, "refresh"?: str}` — `refresh` present when rotation is on."""

    access = serializers.CharField()
    refresh = serializers.CharField(required=False)


class LogoutOutputSerializer(serializers.Serializer[dict[str, Any]]):
    """`{"status": "logged_out"}`."""

    status = serializers.CharField()


class MeOutputSerializer(serializers.Serializer[User]):
    """`{"user_id", "email", "date_joined", "last_login"}` (ISO 8601 UTC, `last_login` may be null)."""

    user_id = serializers.IntegerField(source="pk")
    email = serializers.EmailField()
    date_joined = serializers.DateTimeField()
    last_login = serializers.DateTimeField(allow_null=True)


class ValidateOutputSerializer(serializers.Serializer[dict[str, Any]]):
    """`{"valid": true, "user_id", "email"}` (compat)."""

    valid = serializers.BooleanField()
    user_id = serializers.IntegerField()
    email = serializers.EmailField()
