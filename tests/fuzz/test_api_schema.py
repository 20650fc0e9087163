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

The first runs found 15 statuses the relay sends that the schema did not document (400 and 401);
`core/schema.py` now declares them and `test_generic_errors_are_documented` keeps it so.
"""

import gc
import time
from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from rest_framework_simplejwt.tokens import AccessToken
from schemathesis.checks import negative_data_rejection, positive_data_acceptance
from schemathesis.config import SchemathesisConfig

from accounts.models import User
from tests.fuzz import sizes
from tests.relay import flows
from wimz.asgi import application

pytestmark = flows.RELAY_DB

# Loaded at collection, before pytest-django allows the test client's `testserver` host. The coverage
# phase (boundary values of every parameter, some hundred requests per operation) runs under `make fuzz`.
schema = schemathesis.openapi.from_asgi(
    "/api/schema/",
    application,
    headers={"Host": "localhost"},
    config=SchemathesisConfig.from_dict({"phases": {"coverage": {"enabled": sizes.API_COVERAGE}}}),
)

EXCLUDED = [positive_data_acceptance, negative_data_rejection]
STATUSES: Counter = Counter()  # (caller, status) -> calls, for the run's summary
_deadline: list = []  # the time budget starts with the first call

API_SETTINGS = settings(
    max_examples=sizes.API_EXAMPLES,
    deadline=None,
    database=None,
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
    """One generated request, checked against the schema (status, content type, headers, body)."""
    if not _deadline:
        _deadline.append(sizes.deadline())
    if _deadline[0] is not None and time.monotonic() > _deadline[0]:
        return
    response = case.call(headers=headers)
    STATUSES[caller, response.status_code] += 1
    case.validate_response(response, excluded_checks=EXCLUDED, headers=headers)


@schema.parametrize()
@API_SETTINGS
def test_anonymous_calls_conform(case, transactional_db):
    _call(case, "anonymous")


@schema.parametrize()
@API_SETTINGS
def test_authenticated_calls_conform(case, bearer):
    _call(case, "authenticated", bearer)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        (m.upper(), p)
        for p, ops in schema.raw_schema["paths"].items()
        for m in ops
        if m in {"get", "post", "patch", "put", "delete"}
    ],
)
def test_generic_errors_are_documented(method, path):
    """Found by this fuzzer: 15 statuses the relay sends were missing from the schema (400 for a body
    that fails validation, 401 without a valid token). `core.schema` declares them for every operation
    that takes a body / requires a token, so the schema cannot miss them for a new view either."""
    operation = schema.raw_schema["paths"][path][method.lower()]
    responses = operation["responses"]
    if "requestBody" in operation:
        assert "400" in responses, f"{method} {path} takes a body but documents no 400"
    security = operation.get("security")
    if security and {} not in security:
        assert "401" in responses, f"{method} {path} needs a token but documents no 401"


def test_zz_summary():
    """Print what the two fuzz tests above sent (run with -s to see it)."""
    print(
        f"\nREST fuzz: {sum(STATUSES.values())} calls; "
        + ", ".join(f"{caller} {status}: {n}" for (caller, status), n in sorted(STATUSES.items()))
    )
