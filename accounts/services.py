"""Account services: registration, login, JWT issue and logout (simplejwt).

All functions are keyword-only and raise `accounts.errors` domain errors, never HTTP errors.
"""

import uuid
from typing import TypedDict

from django.contrib.auth import authenticate
from django.contrib.auth.models import update_last_login
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone
from rest_framework.request import Request
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.tokens import RefreshToken

from . import signals
from .errors import EmailTaken, InvalidCredentials, PasswordInvalid, TokenInvalid
from .models import RevokedLogin, User

# The claim naming the login (one register/login call) a token belongs to. Set on the refresh token at
# issue; simplejwt copies it into every access token made from it and keeps it through rotation.
LOGIN_CLAIM = "login_id"


class AuthTokens(TypedDict):
    """A new JWT pair (`auth_tokens_issue`): `expires_in` is the access token lifetime in seconds."""

    access: str
    refresh: str
    expires_in: int


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


def auth_login(*, email: str, password: str, request: Request | HttpRequest | None = None) -> User:
    """Check email + password (email matched case-insensitively) and return the active user.

    Updates `last_login`. Raises `InvalidCredentials` for an unknown email, a wrong password or an
    inactive user alike, so that accounts cannot be probed.
    """
    user = authenticate(request, email=normalize_email(email), password=password or "")
    if user is None or not user.is_active:
        raise InvalidCredentials()
    update_last_login(User, user)  # a signal receiver: `sender` is unused
    return user


def auth_tokens_issue(*, user: User) -> AuthTokens:
    """A new JWT pair for `user`, starting a new login (a fresh `login_id` claim in both tokens).

    Returns `{"access": str, "refresh": str, "expires_in": int}` where `expires_in` is the access
    token lifetime in seconds (`WIMZ_ACCESS_TOKEN_LIFETIME`).
    """
    from rest_framework_simplejwt.token_blacklist.models import OutstandingToken

    refresh = RefreshToken.for_user(user)  # records the outstanding token (blacklist app)
    refresh[LOGIN_CLAIM] = uuid.uuid4().hex
    OutstandingToken.objects.filter(jti=refresh[jwt_settings.JTI_CLAIM]).update(token=str(refresh))
    return {
        "access": str(refresh.access_token),
        "refresh": str(refresh),
        "expires_in": int(jwt_settings.ACCESS_TOKEN_LIFETIME.total_seconds()),
    }


def login_is_revoked(login_id: object) -> bool:
    """True when the login named by a token's `login_id` claim was logged out (one indexed lookup).

    Tokens without the claim (issued before logins were named) are not revocable: False.
    """
    return isinstance(login_id, str) and RevokedLogin.objects.filter(login_id=login_id).exists()


def auth_refresh_check(*, refresh: str) -> None:
    """Refuse a refresh token whose user no longer exists or is inactive, before simplejwt rotates it.

    Raises `TokenInvalid` (401 `token_not_valid`) for that and for a malformed, expired or blacklisted
    token; returns None for a token that may be refreshed. (simplejwt's own check looks the user up
    with `get()`, and a deleted user's token then answered 500.)
    """
    try:
        token = RefreshToken(refresh)  # type: ignore[arg-type]  # simplejwt annotates the encoded JWT as Token
    except TokenError as e:
        raise TokenInvalid(str(e)) from e
    user_id = token.get(jwt_settings.USER_ID_CLAIM)
    try:
        user = User.objects.filter(**{jwt_settings.USER_ID_FIELD: user_id}).first() if user_id else None
    except (TypeError, ValueError):
        user = None
    if user is None or not jwt_settings.USER_AUTHENTICATION_RULE(user):
        raise TokenInvalid("The token's user does not exist or is inactive.")
    if login_is_revoked(token.get(LOGIN_CLAIM)):
        raise TokenInvalid("This login was logged out.")


def auth_logout(*, refresh: str) -> None:
    """Log out the login of a refresh token: the token is blacklisted and the whole login is revoked.

    Every access token of that login is refused from then on (REST and WebSocket), and after commit the
    relay closes that login's open app sockets (4003); the user's other logins are untouched
    (`accounts.signals.login_revoked`). Raises `TokenInvalid` when the token is malformed, expired, not
    a refresh token or already blacklisted.
    """
    try:
        token = RefreshToken(refresh)  # type: ignore[arg-type]  # simplejwt annotates the encoded JWT as Token
        token.blacklist()
    except TokenError as e:
        raise TokenInvalid(str(e)) from e
    login_id = token.get(LOGIN_CLAIM)
    user_id = token.get(jwt_settings.USER_ID_CLAIM)
    if not isinstance(login_id, str) or user_id is None:
        return  # a token issued before logins were named: only the refresh token is blacklisted
    lifetime = jwt_settings.REFRESH_TOKEN_LIFETIME + jwt_settings.ACCESS_TOKEN_LIFETIME
    with transaction.atomic():
        _, created = RevokedLogin.objects.get_or_create(
            login_id=login_id, defaults={"user_id": int(user_id), "expires_at": timezone.now() + lifetime}
        )
        if created:
            signals.send_on_commit(signals.login_revoked, user_id=int(user_id), login_id=login_id)
