"""OpenAPI postprocessing: the error answers every endpoint can give, declared once for all of them.

DRF answers 400 `invalid` for a body that fails validation and 401 for a missing or bad token on every
authenticated endpoint, whatever the view declares. A view's `extend_schema(responses=...)` lists the
answers of its own logic; this hook adds the two generic ones wherever they apply, so the published
schema (and clients generated from it) never misses them (docs/protocol.md §17.1).
"""

from typing import Any

ERROR_REF = {"$ref": "#/components/schemas/Error"}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ERROR_REF}}}


def add_generic_error_responses(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular `POSTPROCESSING_HOOKS` entry: for each operation, add 400 when it takes a body
    and 401 when it requires authentication (a security requirement without the anonymous `{}`), unless
    the view declared them itself."""
    for methods in result.get("paths", {}).values():
        for operation in methods.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            if "requestBody" in operation and "400" not in responses:
                responses["400"] = _error("The body failed validation (`invalid`, with `errors` by field).")
            security = operation.get("security")
            if security and {} not in security and "401" not in responses:
                responses["401"] = _error("No valid access token (`not_authenticated` or `token_not_valid`).")
    return result
