"""Accounts REST API (docs/protocol.md §17): register, login, refresh, logout, me, validate.

Thin views: parse with an input serializer, call one service, render with an output serializer.
Domain errors become `ApiError` here, and only here.
"""

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.views import TokenRefreshView

from core.api import ERROR_SCHEMA
from core.throttling import LoginAccountThrottle, LoginAddressThrottle, RegisterAddressThrottle

from . import services
from .authentication import JWTAuthentication, request_user
from .models import User
from .serializers import (
    AuthOutputSerializer,
    Credentials,
    CredentialsInputSerializer,
    LogoutOutputSerializer,
    MeOutputSerializer,
    RefreshInput,
    RefreshInputSerializer,
    RefreshOutputSerializer,
    RefreshSerializer,
    RegisterInputSerializer,
    ValidateOutputSerializer,
)


def _auth_body(user: User) -> dict[str, Any]:
    tokens = services.auth_tokens_issue(user=user)
    data = {"user_id": user.pk, "email": user.email, **tokens, "token": tokens["access"]}
    return AuthOutputSerializer(data).data


class RegisterApi(APIView):
    """`POST /api/auth/register` `{"email","password"}` → 201 `AuthOutput`.

    `AuthOutput` is `{"user_id","email","access","refresh","token","expires_in"}` (docs/protocol.md §17).

    Errors: 400 `email_taken`, 400 `password_invalid`, 400 `invalid` (malformed body), 429 `throttled`
    (per client address, `WIMZ_THROTTLE_REGISTER_ADDRESS`).
    """

    authentication_classes = ()
    permission_classes = (AllowAny,)
    throttle_classes = (RegisterAddressThrottle,)

    @extend_schema(
        request=RegisterInputSerializer,
        responses={201: AuthOutputSerializer, 400: ERROR_SCHEMA, 429: ERROR_SCHEMA},
        summary="Create an account and log in",
    )
    def post(self, request: Request) -> Response:
        data = RegisterInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        credentials: Credentials = data.validated_data
        user = services.user_create(**credentials)
        return Response(_auth_body(user), status=status.HTTP_201_CREATED)


class LoginApi(APIView):
    """`POST /api/auth/login` `{"email","password"}` → 200 `AuthOutput` (same shape as register).

    Errors: 401 `invalid_credentials` (unknown email, wrong password and inactive account alike),
    400 `invalid` (malformed body), 429 `throttled` (per account and per client address).
    """

    authentication_classes = ()
    permission_classes = (AllowAny,)
    throttle_classes = (LoginAddressThrottle, LoginAccountThrottle)

    @extend_schema(
        request=CredentialsInputSerializer,
        responses={200: AuthOutputSerializer, 401: ERROR_SCHEMA, 429: ERROR_SCHEMA},
        summary="Log in with email and password",
    )
    def post(self, request: Request) -> Response:
        data = CredentialsInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        credentials: Credentials = data.validated_data
        user = services.auth_login(request=request, **credentials)
        return Response(_auth_body(user))


class RefreshApi(TokenRefreshView):
    """`POST /api/auth/refresh` `{"refresh"}` → 200 `{"access"}` plus a new `"refresh"` when rotation is on.

    simplejwt semantics: with rotation the old refresh token is blacklisted. Errors: 401
    `token_not_valid` (malformed, expired, blacklisted, or its user is inactive or deleted).
    """

    serializer_class = RefreshSerializer

    @extend_schema(
        request=RefreshInputSerializer,
        responses={200: RefreshOutputSerializer, 401: ERROR_SCHEMA},
        summary="Exchange a refresh token for a new access token",
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().post(request, *args, **kwargs)


class LogoutApi(APIView):
    """`POST /api/auth/logout` `{"refresh"}` → 200 `{"status":"logged_out"}`: the login of that refresh token ends.

    Its refresh token is blacklisted, its access tokens are refused from now on, and its open app sockets
    are closed (4003); the user's other logins stay (docs/protocol.md §17.3).

    No access token needed: holding the refresh token is the proof. Errors: 401 `token_not_valid`.
    """

    authentication_classes = ()
    permission_classes = (AllowAny,)

    @extend_schema(
        request=RefreshInputSerializer,
        responses={200: LogoutOutputSerializer, 401: ERROR_SCHEMA},
        summary="Blacklist a refresh token",
    )
    def post(self, request: Request) -> Response:
        data = RefreshInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        body: RefreshInput = data.validated_data
        services.auth_logout(refresh=body["refresh"])
        return Response(LogoutOutputSerializer({"status": "logged_out"}).data)


class MeApi(APIView):
    """`GET /api/auth/me` → `{"user_id","email","date_joined","last_login"}` for the authenticated user."""

    permission_classes = (IsAuthenticated,)

    @extend_schema(responses={200: MeOutputSerializer, 401: ERROR_SCHEMA}, summary="The current user")
    def get(self, request: Request) -> Response:
        return Response(MeOutputSerializer(request_user(request)).data)


class ValidateApi(APIView):
    """`GET /api/auth/validate` (compat) with `Authorization: Bearer <access>` → `{"valid":true,"user_id","email"}`.

    An invalid, expired or missing token answers 401 (`not_authenticated` / `token_not_valid`).
    """

    authentication_classes = (JWTAuthentication,)
    permission_classes = (IsAuthenticated,)

    @extend_schema(
        responses={200: ValidateOutputSerializer, 401: ERROR_SCHEMA}, summary="Check an access token (compat)"
    )
    def get(self, request: Request) -> Response:
        user = request_user(request)
        return Response(ValidateOutputSerializer({"valid": True, "user_id": user.pk, "email": user.email}).data)
