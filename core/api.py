"""The REST edge of the project's errors.

- `ApiError`: the base of errors a view raises itself.
- `exception_handler` (DRF's `EXCEPTION_HANDLER`): every REST error answers
  `{"code": <stable snake_case code>, "detail": ...}` (docs/protocol.md §17.1); a `core.errors.DomainError`
  from a service is translated here once for every view, so views need no per-call try/except.
- `not_found` / `bad_request`: Django's `handler404` / `handler400`, JSON under `/api/`.
"""

from typing import Any

from django.db import DataError
from django.http import HttpRequest, HttpResponse
from drf_spectacular.utils import inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import APIException
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from .errors import DomainError

# The OpenAPI shape of every REST error body (one component for the whole API).
ERROR_SCHEMA = inline_serializer("Error", fields={"code": serializers.CharField(), "detail": serializers.CharField()})


class ApiError(APIException):
    """Base of the project's REST errors; `code` is stable and documented in the OpenAPI schema.

    Raise `ApiError(detail, code=..., status_code=...)` or a subclass from a view; the exception
    handler renders `{"code": code, "detail": detail}` with the given HTTP status.
    """

    status_code: int = status.HTTP_400_BAD_REQUEST
    default_code = "bad_request"
    default_detail = "Bad request."

    def __init__(self, detail: str | None = None, code: str | None = None, status_code: int | None = None):
        super().__init__(detail=detail, code=code)
        self.code = code or self.default_code
        if status_code is not None:
            self.status_code = status_code


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF exception handler adding a stable `code` to every error body.

    Validation errors answer `{"code": "invalid", "detail": "...", "errors": {field: [...]}}`;
    other errors `{"code": <exc code>, "detail": <message>}`. A `DomainError` from a service answers its
    `code`, `message` and `http_status`.
    """
    if isinstance(exc, DomainError):  # services' errors, translated here once for every view
        exc = ApiError(exc.message, code=exc.code, status_code=exc.http_status)
    elif isinstance(exc, DataError):
        # The database refused a client's value that no serializer checked (a NUL character in a query
        # parameter: PostgreSQL text cannot hold it). The client's input, so 400, not a 500 traceback.
        exc = ApiError("A value in the request cannot be stored or searched for.", code="invalid")
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, ApiError):
        response.data = {"code": exc.code, "detail": str(exc.detail)}
    elif isinstance(response.data, dict) and "detail" in response.data:
        code = getattr(response.data["detail"], "code", None) or getattr(exc, "default_code", "error")
        body = {"code": str(code), "detail": str(response.data["detail"])}
        extra = {k: v for k, v in response.data.items() if k != "detail"}
        body.update(extra)
        response.data = body
    else:
        response.data = {"code": "invalid", "detail": "Invalid input.", "errors": response.data}
    return response


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """`handler404`: API paths answer JSON `{"code":"not_found","detail":"Not found."}` like every other
    API error; other paths get Django's default page.
    """
    from django.http import JsonResponse
    from django.views.defaults import page_not_found

    if request.path.startswith("/api/"):
        return JsonResponse({"code": "not_found", "detail": "Not found."}, status=404)
    return page_not_found(request, exception)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """`handler400` (e.g. a body over DATA_UPLOAD_MAX_MEMORY_SIZE): JSON under /api/, like `not_found`."""
    from django.http import JsonResponse
    from django.views.defaults import bad_request as default_bad_request

    if request.path.startswith("/api/"):
        return JsonResponse({"code": "bad_request", "detail": "Bad request."}, status=400)
    return default_bad_request(request, exception or Exception("bad request"))
