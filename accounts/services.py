"""Account services: registration, login, JWT issue and logout (simplejwt).

All functions are keyword-only and raise `accounts.errors` domain errors, never HTTP errors.
"""

from django.contrib.auth import authenticate
from django.contrib.auth.models import update_last_login
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.tokens import RefreshToken

from .errors import EmailTaken, InvalidCredentials, PasswordInvalid, TokenInvalid
from .models import User


def normalize_email(email: str) -> str:
    """The stored form of an email address: stripped and lower-case (the whole address)."""
    return (email or "").strip().lower()


def user_create(*, email: str, password: str) -> User:
    """Create an active user with a password checked by `AUTH_PASSWORD_VALIDATORS`.

    The email is stored lower-case. Raises `EmailTaken` when the address is already registered
    (also when a concurrent registration wins the unique constraint) and `PasswordInvalid`, whose
    message joins the validators' reasons, when the password is refused.
    """
    email = normalize_email(email)
    if User.objects.filter(email__iexact=email).exists():
        raise EmailTaken()
    try:
        validate_password(password, user=User(email=email))
    except ValidationError as e:
        raise PasswordInvalid(" ".join(e.messages)) from e
    try:
        with transaction.atomic():
            return User.objects.create_user(email=email, password=password)
    except IntegrityError as e:
        raise EmailTaken() from e


def auth_login(*, email: str, password: str, request=None) -> User:
    """Check email + password (email matched case-insensitively) and return the active user.

    Updates `last_login`. Raises `InvalidCredentials` for an unknown email, a wrong password or an
    inactive user alike, so that accounts cannot be probed.
    """
    user = authenticate(request, email=normalize_email(email), password=password or "")
    if user is None or not user.is_active:
        raise InvalidCredentials()
    update_last_login(None, user)
    return user


def auth_tokens_issue(*, user: User) -> dict:
    """A new JWT pair for `user`.

    Returns `{"access": str, "refresh": str, "expires_in": int}` where `expires_in` is the access
    token lifetime in seconds (`WIMZ_ACCESS_TOKEN_LIFETIME`).
    """
    refresh = RefreshToken.for_user(user)
    return {
        "access": str(refresh.access_token),
        "refresh": str(refresh),
        "expires_in": int(jwt_settings.ACCESS_TOKEN_LIFETIME.total_seconds()),
    }


def auth_refresh_check(*, refresh: str) -> None:
    """Refuse a refresh token whose user no longer exists or is inactive, before simplejwt rotates it.

    Raises `TokenInvalid` (401 `token_not_valid`) for that and for a malformed, expired or blacklisted
    token; returns None for a token that may be refreshed. (simplejwt's own check looks the user up
    with `get()`, and a deleted user's token then answered 500.)
    """
    try:
        token = RefreshToken(refresh)
    except TokenError as e:
        raise TokenInvalid(str(e)) from e
    user_id = token.get(jwt_settings.USER_ID_CLAIM)
    try:
        user = User.objects.filter(**{jwt_settings.USER_ID_FIELD: user_id}).first() if user_id else None
    except (TypeError, ValueError):
        user = None
    if user is None or not jwt_settings.USER_AUTHENTICATION_RULE(user):
        raise TokenInvalid("The token's user does not exist or is inactive.")


def auth_logout(*, refresh: str) -> None:
    """Blacklist a refresh token so that it can no longer be refreshed.

    Raises `TokenInvalid` when the token is malformed, expired, not a refresh token or already
    blacklisted. Access tokens already issued stay valid until they expire (short-lived by design).
    """
    try:
        token = RefreshToken(refresh)
        token.blacklist()
    except TokenError as e:
        raise TokenInvalid(str(e)) from e
