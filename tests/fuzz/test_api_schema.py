"""schemathesis over the relay's OpenAPI schema (drf-spectacular, served at `/api/schema/`).

Every operation gets generated requests — anonymous, and with a registered user's access token —
through the relay's own ASGI application (`wimz.asgi.application`, as daphne serves it). No answer may
be a 5xx, and every answer must match the schema: status code, content type, headers, body; an
operation that needs a token must refuse a request without one (`ignored_auth`). Sizes:
tests/fuzz/sizes.py.

Two of schemathesis' checks are left out: `positive_data_acceptance` (a schema cannot say which
pairing code is live or which password the validators take, so a schema-valid request may well be
refused) and `negative_data_rejection` (DRF is lenient on purpose: an unknown or malformed `offset`
falls back to the default page, a JSON `null` body to "no TTL asked").

`KNOWN_UNDOCUMENTED` lists the status codes the relay sends that its schema does not document: the
fuzz run tolerates exactly those, and `test_known_undocumented_status_is_documented` (strict xfail)
fails as soon as the schema documents one, so the list shrinks with each fix.
"""

import gc
import time
from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from rest_framework_simplejwt.tokens import AccessToken
from schemathesis.checks import negative_data_rejection, positive_data_acceptance, status_code_conformance
from schemathesis.config import SchemathesisConfig

from accounts.models import User
from tests.fuzz import sizes
from tests.relay import flows
from wimz.asgi import application

pytestmark = flows.RELAY_DB

# Loaded at collection, before pytest-django allows the test client's `testserver` host. The coverage
# phase (boundary values of every parameter, some hundred requests per operation) runs under `make fuzz`.
schema = schemathesis.openapi.from_asgi(
    "/api/schema/", application, headers={"Host": "localhost"},
    config=SchemathesisConfig.from_dict({"phases": {"coverage": {"enabled": sizes.API_COVERAGE}}}),
)

# (method, path) -> statuses the relay answers that the schema does not list (found by this fuzzer).
KNOWN_UNDOCUMENTED = {
    ("POST", "/api/auth/login"): {400},
    ("POST", "/api/auth/logout"): {400},
    ("POST", "/api/auth/refresh"): {400},
    ("GET", "/api/devices"): {401},
    ("GET", "/api/devices/{device_id}"): {401},
    ("PATCH", "/api/devices/{device_id}"): {401},
    ("POST", "/api/devices/{device_id}/unpair"): {401},
    ("POST", "/api/devices/pair"): {401},
    ("GET", "/api/user/devices"): {401},
    ("POST", "/api/user/pair-device"): {401},
    ("POST", "/api/user/unpair-device"): {400, 401},
}

EXCLUDED = [positive_data_acceptance, negative_data_rejection]
STATUSES: Counter = Counter()  # (caller, status) -> calls, for the run's summary
_deadline: list = []  # the time budget starts with the first call

API_SETTINGS = settings(
    max_examples=sizes.API_EXAMPLES, deadline=None, database=None,
    phases=[Phase.explicit, Phase.generate, Phase.target, Phase.shrink],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@pytest.fixture(scope="module", autouse=True)
def collect_request_threads_connections():
    """Django's ASGI handler runs each request's ORM code on a thread of its own; with persistent
    connections (CONN_MAX_AGE) each such thread leaves its PostgreSQL connection open until the
    garbage collector closes it, which would keep the test database from being dropped."""
    yield
    gc.collect()


@pytest.fixture
def bearer(transactional_db) -> dict:
    """The Authorization header of a registered user."""
    user = User.objects.create_user(email="fuzz-api@example.com", password="fuzz-api-password-9")
    return {"Authorization": f"Bearer {AccessToken.for_user(user)}"}


def _call(case, caller: str, headers: dict | None = None) -> None:
    """One generated request, checked (a status in `KNOWN_UNDOCUMENTED` skips only the status check)."""
    if not _deadline:
        _deadline.append(sizes.deadline())
    if _deadline[0] is not None and time.monotonic() > _deadline[0]:
        return
    response = case.call(headers=headers)
    STATUSES[caller, response.status_code] += 1
    known = KNOWN_UNDOCUMENTED.get((case.method.upper(), case.path), set())
    excluded = EXCLUDED + ([status_code_conformance] if response.status_code in known else [])
    case.validate_response(response, excluded_checks=excluded, headers=headers)


@schema.parametrize()
@API_SETTINGS
def test_anonymous_calls_conform(case, transactional_db):
    _call(case, "anonymous")


@schema.parametrize()
@API_SETTINGS
def test_authenticated_calls_conform(case, bearer):
    _call(case, "authenticated", bearer)


@pytest.mark.xfail(strict=True, reason="the relay's views do not declare these responses to drf-spectacular "
                   "(accounts/views.py, devices/views.py: `extend_schema(responses=...)` lists no 400 for a "
                   "body that fails validation and no 401 for a missing or bad token), so /api/schema/ leaves "
                   "them out and clients generated from it do not expect them")
@pytest.mark.parametrize(("method", "path", "status"),
                         [(m, p, s) for (m, p), codes in sorted(KNOWN_UNDOCUMENTED.items()) for s in sorted(codes)])
def test_known_undocumented_status_is_documented(method, path, status):
    responses = schema.raw_schema["paths"][path][method.lower()]["responses"]
    assert str(status) in responses, f"{method} {path} answers {status}, the schema lists {sorted(responses)}"


def test_zz_summary():
    """Print what the two fuzz tests above sent (run with -s to see it)."""
    print(f"\nREST fuzz: {sum(STATUSES.values())} calls; " + ", ".join(
        f"{caller} {status}: {n}" for (caller, status), n in sorted(STATUSES.items())))
