"""REST input the database itself refuses is a 400, never a 500 with a traceback (docs/protocol.md §17.1).

A fresh-user attack round found `GET /api/sessions?device_id=%00` answering 500 on PostgreSQL (text
cannot hold NUL) and writing a traceback per request.
"""

import logging

import pytest

pytestmark = [pytest.mark.django_db, pytest.mark.services]


def test_a_nul_in_a_query_parameter_is_a_400(client_for_user, caplog):
    caplog.set_level(logging.INFO)
    response = client_for_user.get("/api/sessions", {"device_id": "\x00"})
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert not [r for r in caplog.records if r.exc_info]


@pytest.fixture
def client_for_user(make_user, access_token):
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access_token(make_user())}")
    return client
