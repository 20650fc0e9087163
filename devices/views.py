"""Devices REST API: the owner's devices (JWT), pairing, and the robot's signed pairing-code request.

Thin views: input serializer → selector/service → output serializer. Domain errors become
`core.api.ApiError` (`{"code","detail"}`) here and only here. Ownership is checked by the selectors:
a device that is not yours answers 404 `not_found` exactly like one that does not exist.
"""

from typing import Any, TypedDict

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import request_user
from core.api import ERROR_SCHEMA, ApiError
from core.throttling import PairAddressThrottle, PairFailureGlobalThrottle, PairUserThrottle, RobotAddressThrottle

from . import selectors, services
from .errors import InvalidPairingCode
from .models import Device
from .serializers import (
    CompatDeviceListOutputSerializer,
    CompatPairOutputSerializer,
    CompatUnpairInput,
    CompatUnpairInputSerializer,
    CompatUnpairOutputSerializer,
    DeviceOutputSerializer,
    DeviceRenameInput,
    DeviceRenameInputSerializer,
    PairInput,
    PairInputSerializer,
    RobotPairingCodeOutputSerializer,
    UnpairOutputSerializer,
)
from .signing import verify_device_signature


def _pair_input(data: Any) -> tuple[str, str | None]:
    """`(code, name)` from a pair body (`pairing_code` or compat `code`); 400 `pairing_code_required` if no code."""
    body = PairInputSerializer(data=data)
    body.is_valid(raise_exception=True)
    fields: PairInput = body.validated_data
    code = fields.get("pairing_code") or fields.get("code")
    if not code:
        raise ApiError(
            "A pairing code is required to pair a device; a device_id alone is not enough. "
            "Ask the robot for its pairing code.",
            code="pairing_code_required",
        )
    return code, fields.get("name")


PAIR_THROTTLES = [PairUserThrottle, PairAddressThrottle, PairFailureGlobalThrottle]


def _pair(request: Request, view: APIView) -> Device:
    """Run `device_pair` for a pair body; returns the device with `is_online` set.

    A wrong code counts against the cluster-wide failed-guess budget (`PairFailureGlobalThrottle`).
    """
    code, name = _pair_input(request.data)
    try:
        device = services.device_pair(user=request_user(request), code=code, name=name)
    except InvalidPairingCode:
        PairFailureGlobalThrottle().record_failure(request, view)
        raise
    return selectors.device_annotate_online([device])[0]


class _Unpaired(TypedDict):
    device_id: str
    status: str


def _unpair(request: Request, device_id: str) -> _Unpaired:
    user = request_user(request)
    device = selectors.device_get_for_user(user=user, device_id=device_id)
    services.device_unpair(user=user, device=device)
    return {"device_id": device.device_id, "status": "unpaired"}


class DeviceListApi(APIView):
    """`GET /api/devices` → `[Device]`: the user's active devices with presence (`is_online`)."""

    permission_classes = (IsAuthenticated,)

    @extend_schema(responses={200: DeviceOutputSerializer(many=True)}, summary="List my devices")
    def get(self, request: Request) -> Response:
        devices = selectors.device_list_for_user(user=request_user(request))
        return Response(DeviceOutputSerializer(devices, many=True).data)


class DeviceDetailApi(APIView):
    """`GET /api/devices/<device_id>` → Device; `PATCH` `{"name"}` → Device. 404 `not_found` if not yours."""

    permission_classes = (IsAuthenticated,)

    @extend_schema(responses={200: DeviceOutputSerializer, 404: ERROR_SCHEMA}, summary="One of my devices")
    def get(self, request: Request, device_id: str) -> Response:
        device = selectors.device_get_for_user(user=request_user(request), device_id=device_id)
        return Response(DeviceOutputSerializer(device).data)

    @extend_schema(
        request=DeviceRenameInputSerializer,
        responses={200: DeviceOutputSerializer, 400: ERROR_SCHEMA, 404: ERROR_SCHEMA},
        summary="Rename one of my devices",
    )
    def patch(self, request: Request, device_id: str) -> Response:
        device = selectors.device_get_for_user(user=request_user(request), device_id=device_id)
        body = DeviceRenameInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        rename: DeviceRenameInput = body.validated_data
        device = services.device_rename(device=device, name=rename["name"])
        return Response(DeviceOutputSerializer(device).data)


class DevicePairApi(APIView):
    """`POST /api/devices/pair` `{"pairing_code", "name"?}` → 201 Device.

    Errors (docs/protocol.md §7): 400 `pairing_code_required` (no code, e.g. only a device_id),
    400 `invalid_pairing_code` (wrong, spent or expired — the device's existence is not revealed),
    409 `device_owned` (another user owns it; nothing changes, the code stays unused), 429 `throttled`
    (per user, per client address, and the cluster-wide budget of failed guesses).
    Pairing a device you already own succeeds (idempotent).
    """

    permission_classes = (IsAuthenticated,)
    throttle_classes = PAIR_THROTTLES

    @extend_schema(
        request=PairInputSerializer,
        responses={201: DeviceOutputSerializer, 400: ERROR_SCHEMA, 409: ERROR_SCHEMA, 429: ERROR_SCHEMA},
        summary="Pair a robot with a pairing code",
    )
    def post(self, request: Request) -> Response:
        return Response(DeviceOutputSerializer(_pair(request, self)).data, status=status.HTTP_201_CREATED)


class DeviceUnpairApi(APIView):
    """`POST /api/devices/<device_id>/unpair` → 200 `{"device_id","status":"unpaired"}`; 404 `not_found` if not yours.

    After commit the owner's apps get `device_status` `unpaired` and the device's sessions end (`unpaired`).
    """

    permission_classes = (IsAuthenticated,)

    @extend_schema(request=None, responses={200: UnpairOutputSerializer, 404: ERROR_SCHEMA}, summary="Unpair a device")
    def post(self, request: Request, device_id: str) -> Response:
        return Response(UnpairOutputSerializer(_unpair(request, device_id)).data)


class RobotPairingCodeApi(APIView):
    """`POST /api/devices/pairing-code` — for the ROBOT, no JWT — → 201 `{"pairing_code","expires_at","expires_in"}`.

    Authenticated like the robot's WebSocket (docs/protocol.md §4): headers `X-Device-ID`,
    `X-Timestamp` (unix seconds) and `X-Signature` (hex HMAC-SHA256 of `"<device_id>:<timestamp>"`);
    timestamp within the skew window, each signature accepted once. Any failure answers 403
    `device_auth_failed` and says nothing about which check failed. Earlier robot codes of the device
    expire. Throttled per client address (`WIMZ_THROTTLE_ROBOT_ADDRESS`), before the signature is checked.
    """

    authentication_classes = ()
    permission_classes = (AllowAny,)
    throttle_classes = (RobotAddressThrottle,)

    @extend_schema(
        request=None,
        parameters=[
            OpenApiParameter("X-Device-ID", OpenApiTypes.STR, OpenApiParameter.HEADER, required=True),
            OpenApiParameter("X-Timestamp", OpenApiTypes.INT, OpenApiParameter.HEADER, required=True),
            OpenApiParameter("X-Signature", OpenApiTypes.STR, OpenApiParameter.HEADER, required=True),
        ],
        responses={201: RobotPairingCodeOutputSerializer, 403: ERROR_SCHEMA, 429: ERROR_SCHEMA},
        summary="Robot: get a pairing code to show to its owner (signed request)",
    )
    def post(self, request: Request) -> Response:
        device = verify_device_signature(
            request.headers.get("X-Device-ID"), request.headers.get("X-Timestamp"), request.headers.get("X-Signature")
        )
        if device is None:
            raise ApiError(
                "Device authentication failed.", code="device_auth_failed", status_code=status.HTTP_403_FORBIDDEN
            )
        code = services.device_pairing_code_issue(device=device)
        expires_in = max(0, int((code.expires_at - timezone.now()).total_seconds()))
        body = {"pairing_code": code.code, "expires_at": code.expires_at, "expires_in": expires_in}
        return Response(RobotPairingCodeOutputSerializer(body).data, status=status.HTTP_201_CREATED)


class CompatDeviceListApi(APIView):
    """compat `GET /api/user/devices` → `{"devices":[{"device_id","name","is_online","last_seen","paired_at"}]}`."""

    permission_classes = (IsAuthenticated,)

    @extend_schema(responses={200: CompatDeviceListOutputSerializer}, summary="List my devices (compat)")
    def get(self, request: Request) -> Response:
        devices = selectors.device_list_for_user(user=request_user(request))
        return Response(CompatDeviceListOutputSerializer({"devices": devices}).data)


class CompatPairApi(APIView):
    """compat `POST /api/user/pair-device` `{"pairing_code"}` (or `{"code"}`), `"name"?` → 200 `CompatPair`.

    `CompatPair` is `{"success": true, "device": {"device_id","name","is_online","last_seen","paired_at"}}`.

    Same rules and errors as `POST /api/devices/pair`; `{"device_id"}` alone → 400 `pairing_code_required`.
    """

    permission_classes = (IsAuthenticated,)
    throttle_classes = PAIR_THROTTLES

    @extend_schema(
        request=PairInputSerializer,
        responses={200: CompatPairOutputSerializer, 400: ERROR_SCHEMA, 409: ERROR_SCHEMA, 429: ERROR_SCHEMA},
        summary="Pair a robot with a pairing code (compat)",
    )
    def post(self, request: Request) -> Response:
        device = _pair(request, self)
        return Response(CompatPairOutputSerializer({"success": True, "device": device}).data)


class CompatUnpairApi(APIView):
    """compat `POST /api/user/unpair-device` `{"device_id"}` → 200 `{"success":true,"device_id","status":"unpaired"}`.

    404 `not_found` when the device is not yours (or does not exist).
    """

    permission_classes = (IsAuthenticated,)

    @extend_schema(
        request=CompatUnpairInputSerializer,
        responses={200: CompatUnpairOutputSerializer, 404: ERROR_SCHEMA},
        summary="Unpair a device (compat)",
    )
    def post(self, request: Request) -> Response:
        body = CompatUnpairInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        unpair: CompatUnpairInput = body.validated_data
        result = _unpair(request, unpair["device_id"])
        return Response(CompatUnpairOutputSerializer({"success": True, **result}).data)
