"""REST endpoints of the relay: POST /api/turn/credentials, GET /api/sessions[/<id>], the OpenAPI schema."""

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from relay.models import Session
from tests.support.factories import SessionFactory

TURN_URL = "/api/turn/credentials"
CF_URL = "https://rtc.live.cloudflare.com/v1/turn/keys/kid/credentials/generate-ice-servers"


@pytest.fixture
def u1(make_user):
    """The first owner."""
    return make_user("u1@example.com")


@pytest.fixture
def u2(make_user):
    """Another owner."""
    return make_user("u2@example.com")


@pytest.fixture
def client_for(access_token):
    """`client_for(user) -> APIClient` sending `Authorization: Bearer <access JWT>`."""

    def _client(user):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {access_token(user)}")
        return client

    return _client


@pytest.fixture
def stun(settings):
    """The STUN-only provider with one URL."""
    settings.WIMZ_ICE_PROVIDER = "stun"
    settings.WIMZ_STUN_URLS = ["stun:stun.cloudflare.com:3478"]
    settings.WIMZ_ICE_TTL = 3600
    return settings


def make_session(user, device, *, minutes_ago=0, **fields):
    """A Session row of `user` on `device`, created `minutes_ago` minutes before now."""
    session = SessionFactory(user=user, device=device, **fields)
    created = timezone.now() - timedelta(minutes=minutes_ago)
    Session.objects.filter(pk=session.pk).update(created_at=created)
    session.refresh_from_db()
    return session


def parse_iso(value):
    """An aware datetime from the API's ISO 8601 UTC string (with a `Z` suffix)."""
    assert value.endswith("Z")
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# --- POST /api/turn/credentials ----------------------------------------------------------------


@pytest.mark.django_db
def test_turn_credentials_requires_auth(stun):
    """Without a token the endpoint answers 401 with the project's error body."""
    response = APIClient().post(TURN_URL, {"ttl": 3600}, format="json")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


@pytest.mark.django_db
def test_turn_credentials_rejects_a_bad_token(stun):
    """A malformed bearer token answers 401, not 500."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer not-a-jwt")
    response = client.post(TURN_URL, {"ttl": 3600}, format="json")
    assert response.status_code == 401


def test_turn_credentials_shape(stun, u1, client_for):
    """An authenticated POST answers 200 {"iceServers": [...], "ttl", "expires_at"} (docs/protocol.md
    §17.6), marked no-store, with expires_at = now + ttl in ISO 8601 UTC."""
    before = datetime.now(UTC)
    response = client_for(u1).post(TURN_URL, {"ttl": 3600}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"iceServers", "ttl", "expires_at"}
    assert body["iceServers"] == [{"urls": ["stun:stun.cloudflare.com:3478"]}]
    assert body["ttl"] == 3600
    expires_at = parse_iso(body["expires_at"])
    assert abs((expires_at - before).total_seconds() - 3600) <= 5
    assert response["Cache-Control"] == "no-store"


def test_turn_credentials_ttl_is_optional(stun, u1, client_for):
    """An empty body (or no body) uses WIMZ_ICE_TTL."""
    stun.WIMZ_ICE_TTL = 900
    assert client_for(u1).post(TURN_URL, {}, format="json").json()["ttl"] == 900
    assert client_for(u1).post(TURN_URL).json()["ttl"] == 900


@pytest.mark.parametrize("ttl", [0, -1, 59, 86401, "abc", 12.5, None, True, [3600]])
def test_turn_credentials_bad_ttl(stun, u1, client_for, ttl):
    """A ttl that is not an integer in [60, 86400] answers 400 with the stable code `invalid_ttl`."""
    response = client_for(u1).post(TURN_URL, {"ttl": ttl}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_ttl"


def test_turn_credentials_body_not_an_object(stun, u1, client_for):
    """A JSON body that is not an object answers 400 `invalid`."""
    response = client_for(u1).post(TURN_URL, [3600], format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"


def test_turn_credentials_coturn(settings, u1, client_for, make_device):
    """With coturn the answer holds a TURN entry whose username ends with the caller's user id and
    never the shared secret."""
    make_device("wimz_robot_01", owner=u1)  # TURN goes to owners of a device only
    settings.WIMZ_ICE_PROVIDER = "coturn"
    settings.WIMZ_COTURN_SECRET = "api-test-secret"
    settings.WIMZ_COTURN_URLS = ["turn:turn.example.com:3478"]
    response = client_for(u1).post(TURN_URL, {"ttl": 600}, format="json")
    assert response.status_code == 200
    turn = [s for s in response.json()["iceServers"] if "credential" in s]
    assert len(turn) == 1
    assert turn[0]["urls"] == ["turn:turn.example.com:3478"]
    assert turn[0]["username"].endswith(f":{u1.pk}")
    assert "api-test-secret" not in response.content.decode()


def test_turn_credentials_provider_failure_is_still_200(settings, u1, client_for, respx_mock):
    """When Cloudflare fails the endpoint still answers 200, with STUN-only iceServers."""
    settings.WIMZ_ICE_PROVIDER = "cloudflare"
    settings.WIMZ_CLOUDFLARE_TURN_KEY_ID = "kid"
    settings.WIMZ_CLOUDFLARE_TURN_API_TOKEN = "tok"
    settings.WIMZ_STUN_URLS = ["stun:stun.cloudflare.com:3478"]
    respx_mock.post(CF_URL).mock(return_value=httpx.Response(503))
    response = client_for(u1).post(TURN_URL, {"ttl": 3600}, format="json")
    assert response.status_code == 200
    assert response.json()["iceServers"] == [{"urls": ["stun:stun.cloudflare.com:3478"]}]


def test_turn_credentials_cloudflare_success(settings, u1, client_for, respx_mock, make_device):
    """With Cloudflare the iceServers of its answer are passed through, the ttl requested is the body's."""
    make_device("wimz_robot_01", owner=u1)
    settings.WIMZ_ICE_PROVIDER = "cloudflare"
    settings.WIMZ_CLOUDFLARE_TURN_KEY_ID = "kid"
    settings.WIMZ_CLOUDFLARE_TURN_API_TOKEN = "tok"
    servers = [{"urls": ["turn:turn.cloudflare.com:3478"], "username": "u", "credential": "c"}]
    route = respx_mock.post(CF_URL).mock(return_value=httpx.Response(201, json={"iceServers": servers}))
    response = client_for(u1).post(TURN_URL, {"ttl": 7200}, format="json")
    assert response.status_code == 200
    assert response.json()["iceServers"] == servers
    assert route.calls.last.request.content == b'{"ttl":7200}'


# --- GET /api/sessions -------------------------------------------------------------------------


@pytest.mark.django_db
def test_sessions_require_auth():
    """Without a token the session list and detail answer 401."""
    assert APIClient().get("/api/sessions").status_code == 401
    assert APIClient().get(f"/api/sessions/{uuid.uuid4()}").status_code == 401


def test_sessions_list_own_only_newest_first(u1, u2, make_device, client_for):
    """A user sees only the sessions they opened, newest first, each with the documented fields."""
    r1, _ = make_device("wimz_robot_01", owner=u1)
    r2, _ = make_device("wimz_robot_02", owner=u2)
    old = make_session(u1, r1, minutes_ago=10, state="ended", end_reason="closed_by_app", app_ice_candidates=3)
    new = make_session(u1, r1, minutes_ago=1)
    make_session(u2, r2, minutes_ago=5)

    response = client_for(u1).get("/api/sessions")
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2
    assert [s["session_id"] for s in body["results"]] == [str(new.pk), str(old.pk)]
    first, second = body["results"]
    assert set(first) == {
        "session_id",
        "device_id",
        "state",
        "created_at",
        "offered_at",
        "answered_at",
        "ended_at",
        "end_reason",
        "app_ice_candidates",
        "robot_ice_candidates",
    }
    assert first["device_id"] == "wimz_robot_01"
    assert first["state"] == "requested"
    assert first["end_reason"] is None
    assert first["ended_at"] is None
    assert second["end_reason"] == "closed_by_app"
    assert second["app_ice_candidates"] == 3
    assert parse_iso(second["created_at"]) < parse_iso(first["created_at"])


def test_sessions_filter_by_device(u1, make_device, client_for):
    """`?device_id=` keeps only that robot's sessions; an unknown id gives an empty page."""
    r1, _ = make_device("wimz_robot_01", owner=u1)
    r3, _ = make_device("wimz_robot_03", owner=u1)
    s1 = make_session(u1, r1)
    make_session(u1, r3)
    client = client_for(u1)
    body = client.get("/api/sessions", {"device_id": "wimz_robot_01"}).json()
    assert [s["session_id"] for s in body["results"]] == [str(s1.pk)]
    assert client.get("/api/sessions", {"device_id": "nope"}).json()["count"] == 0


def test_sessions_filter_does_not_reach_other_users(u1, u2, make_device, client_for):
    """Filtering by another user's device_id shows nothing of theirs."""
    r2, _ = make_device("wimz_robot_02", owner=u2)
    make_session(u2, r2)
    assert client_for(u1).get("/api/sessions", {"device_id": "wimz_robot_02"}).json()["count"] == 0


def test_sessions_are_paginated(u1, make_device, client_for):
    """`?limit=&offset=` pages the history; `next` links the following page."""
    r1, _ = make_device("wimz_robot_01", owner=u1)
    ids = [str(make_session(u1, r1, minutes_ago=m).pk) for m in range(5)]  # newest first
    client = client_for(u1)
    page = client.get("/api/sessions", {"limit": 2, "offset": 2}).json()
    assert page["count"] == 5
    assert [s["session_id"] for s in page["results"]] == ids[2:4]
    assert page["next"] and page["previous"]


def test_session_detail_own(u1, make_device, client_for):
    """A user can read one of their sessions by id."""
    r1, _ = make_device("wimz_robot_01", owner=u1)
    session = make_session(u1, r1, state="answered", robot_ice_candidates=4)
    response = client_for(u1).get(f"/api/sessions/{session.pk}")
    assert response.status_code == 200
    body = response.json()
    assert body["session_id"] == str(session.pk)
    assert body["state"] == "answered"
    assert body["robot_ice_candidates"] == 4


def test_session_detail_of_another_user_is_404(u1, u2, make_device, client_for):
    """Another user's session answers 404 exactly like an id that does not exist."""
    r2, _ = make_device("wimz_robot_02", owner=u2)
    theirs = make_session(u2, r2)
    client = client_for(u1)
    other = client.get(f"/api/sessions/{theirs.pk}")
    missing = client.get(f"/api/sessions/{uuid.uuid4()}")
    assert other.status_code == missing.status_code == 404
    assert other.json() == missing.json()
    assert other.json()["code"] == "not_found"


def test_session_detail_non_uuid_is_404(u1, client_for):
    """A session id that is not a UUID does not match the route (404)."""
    assert client_for(u1).get("/api/sessions/not-a-uuid").status_code == 404


# --- OpenAPI -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_openapi_schema_documents_the_endpoints():
    """/api/schema/ renders (200) and documents /api/turn/credentials and /api/sessions[/{id}]."""
    response = APIClient().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    paths = schema["paths"]
    assert "post" in paths["/api/turn/credentials"]
    assert "get" in paths["/api/sessions"]
    assert "get" in paths["/api/sessions/{session_id}"]
    names = {p["name"] for p in paths["/api/sessions"]["get"]["parameters"]}
    assert {"device_id", "limit", "offset"} <= names
    assert "400" in paths["/api/turn/credentials"]["post"]["responses"]
