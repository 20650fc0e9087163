"""Relay REST API: TURN credentials (docs/protocol.md §17) and the owner's signaling session history.

Thin views: parse with an input serializer, call one function, render with an output serializer.
Errors answer the project's `{"code", "detail"}` body (core/api.py).
"""

from typing import TYPE_CHECKING, Any

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.authentication import request_user
from accounts.models import User
from core.api import ERROR_SCHEMA, ApiError
from relay.ice import TTL_MAX, TTL_MIN, issue_ice_servers
from relay.models import Session
from relay.serializers import (
    SessionSerializer,
    TurnCredentialsInputSerializer,
    TurnCredentialsOutputSerializer,
)

if TYPE_CHECKING:  # adrf ships no types; its APIView is DRF's with async handlers
    from rest_framework.views import APIView as AsyncAPIView
else:
    from adrf.views import APIView as AsyncAPIView


class TurnCredentialsApi(AsyncAPIView):
    """`POST /api/turn/credentials` `{"ttl": 3600}` → 200 `{"iceServers": [...], "ttl", "expires_at"}`.

    docs/protocol.md §17 and "ICE servers". `ttl` is optional (default `WIMZ_ICE_TTL`) and must be an
    integer number of seconds in `[60, 86400]`, else 400 `invalid_ttl`. When the configured provider
    fails (Cloudflare down or slow, coturn misconfigured) the answer is still 200, with STUN-only
    `iceServers` (no entry has `username`/`credential`): a call can often connect without TURN, and
    the app asks again later. Errors: 401 `not_authenticated`/`token_not_valid`, 400 `invalid_ttl`.

    The answer is marked `Cache-Control: no-store`: it carries credentials.
    """

    @extend_schema(
        request=TurnCredentialsInputSerializer,
        responses={200: TurnCredentialsOutputSerializer, 400: ERROR_SCHEMA, 401: ERROR_SCHEMA},
        summary="Get ICE servers (STUN, and TURN credentials when a TURN provider is configured)",
        description=(
            'Body `{"ttl": seconds}` is optional; `ttl` must be an integer in '
            f"[{TTL_MIN}, {TTL_MAX}] (400 `invalid_ttl` otherwise). If the TURN provider fails the "
            "answer is still 200 with STUN-only `iceServers` (no `username`/`credential`)."
        ),
        tags=["webrtc"],
    )
    async def post(self, request: Request) -> Response:
        body = request.data if request.data is not None else {}
        data = TurnCredentialsInputSerializer(data=body)
        if not data.is_valid():
            if isinstance(data.errors, dict) and "ttl" in data.errors:
                raise ApiError(
                    f"ttl must be an integer number of seconds between {TTL_MIN} and {TTL_MAX}.", code="invalid_ttl"
                )
            raise ApiError('The body must be a JSON object such as {"ttl": 3600}.', code="invalid")
        # An async view (adrf): the Cloudflare round trip (up to WIMZ_CLOUDFLARE_TIMEOUT) runs on the
        # event loop. A sync view would hold the one thread on which Channels runs every ORM call of
        # this process, stalling all signaling for as long as the provider takes.
        # TURN only for an owner of a device, under a per-user cap; STUN-only otherwise (§14).
        servers = await issue_ice_servers(user_id=request_user(request).pk, ttl=data.validated_data.get("ttl"))
        output = TurnCredentialsOutputSerializer(
            {"iceServers": servers.ice_servers, "ttl": servers.ttl, "expires_at": servers.expires_at}
        )
        return Response(output.data, headers={"Cache-Control": "no-store"})


class SessionPagination(LimitOffsetPagination):
    """`?limit=` (default 50, at most 200) and `?offset=`; answers `{"count","next","previous","results"}`."""

    default_limit = 50
    max_limit = 200


def session_list(*, user: User, device_id: str | None = None) -> QuerySet[Session]:
    """Selector: `user`'s sessions, newest first, optionally only those of robot `device_id`."""
    sessions = Session.objects.filter(user=user).select_related("device").order_by("-created_at", "-id")
    if device_id:
        sessions = sessions.filter(device__device_id=device_id)
    return sessions


@extend_schema(tags=["sessions"])
class SessionListApi(generics.ListAPIView[Session]):
    """`GET /api/sessions[?device_id=…&limit=…&offset=…]`: the caller's signaling sessions, newest first.

    Only sessions opened by the authenticated user are listed (docs/protocol.md §1). 401 without a
    valid access token.
    """

    serializer_class = SessionSerializer
    pagination_class = SessionPagination

    def get_queryset(self) -> QuerySet[Session]:
        return session_list(user=request_user(self.request), device_id=self.request.query_params.get("device_id"))

    @extend_schema(
        summary="List my signaling sessions (newest first)",
        parameters=[
            OpenApiParameter("device_id", OpenApiTypes.STR, description="Only the sessions of this robot."),
        ],
        responses={200: SessionSerializer(many=True), 401: ERROR_SCHEMA},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


@extend_schema(tags=["sessions"])
class SessionDetailApi(generics.RetrieveAPIView[Session]):
    """`GET /api/sessions/<session_id>`: one of the caller's sessions.

    Another user's session answers 404 `not_found`, exactly as an id that never existed, so ids
    cannot be probed (docs/protocol.md §15, NOT_AUTHORIZED rule, applied to HTTP).
    """

    serializer_class = SessionSerializer
    lookup_field = "id"
    lookup_url_kwarg = "session_id"

    def get_queryset(self) -> QuerySet[Session]:
        return session_list(user=request_user(self.request))

    @extend_schema(
        summary="One of my signaling sessions",
        responses={200: SessionSerializer, 401: ERROR_SCHEMA, 404: ERROR_SCHEMA},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)
