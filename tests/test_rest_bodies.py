"""Bodies a client shapes badly get a 400 with the JSON error body (docs/protocol.md §17.1), never a 500 and
a traceback, and the log stays at WARNING or below.

A fresh-user attack round found a 2 KB JSON body of 1,000 nested brackets answering 500 on every JSON
endpoint, unauthenticated ones included: the decoder's `RecursionError` is not the `ValueError` DRF turns
into a parse error.
"""

import logging

import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

DEEP = "[" * 5000 + "]" * 5000


@pytest.fixture
def api(make_user, access_token):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access_token(make_user())}")
    return client


@pytest.mark.parametrize(
    "path", ["/api/auth/login", "/api/auth/register", "/api/auth/refresh", "/api/devices/pair", "/api/turn/credentials"]
)
def test_a_body_nested_too_deeply_is_a_parse_error(api, path, caplog):
    caplog.set_level(logging.INFO)
    response = api.post(path, DEEP, content_type="application/json")
    assert response.status_code == 400, response.content[:200]
    assert response.json()["code"] == "parse_error"
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


def _levels(caplog, prefix: str) -> list[int]:
    return [r.levelno for r in caplog.records if r.name.startswith(prefix)]


def test_a_host_not_allowed_is_logged_as_a_warning_not_an_error(client, caplog, settings):
    """Django logs a disallowed Host at ERROR; a client alone causes it, so the relay logs it at WARNING
    (operators alert on ERROR). The answer is still the JSON 400."""
    settings.ALLOWED_HOSTS = ["relay.example"]
    caplog.set_level(logging.INFO)
    response = client.get("/api/auth/me", HTTP_HOST="evil.example")
    assert response.status_code == 400
    assert _levels(caplog, "django.security.DisallowedHost") == [logging.WARNING]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_an_over_size_body_is_logged_as_a_warning_not_an_error(client, caplog, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    caplog.set_level(logging.INFO)
    response = client.post("/api/auth/login", "x" * 2000, content_type="application/json")
    assert response.status_code == 400
    assert _levels(caplog, "django.security.RequestDataTooBig") == [logging.WARNING]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
