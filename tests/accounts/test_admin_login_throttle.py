"""Django admin's login form is behind the same throttles as `POST /api/auth/login` (docs/operations.md
"Throttles and limits (HTTP)"): a fresh-user attack round guessed an admin password 40 times unhindered."""

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def _attempt(client: Client, password: str, address: str = "203.0.113.7"):
    return client.post("/admin/login/", {"username": "admin@example.com", "password": password}, REMOTE_ADDR=address)


def test_admin_password_guesses_are_throttled_per_account(make_user):
    """After the per-account limit (`WIMZ_THROTTLE_LOGIN_ACCOUNT`, 10/min) of wrong passwords the form
    answers 429 with Retry-After, from any address, and does not check the password (so the right one
    does not get in either)."""
    from rest_framework.throttling import SimpleRateThrottle

    limit = int(SimpleRateThrottle.THROTTLE_RATES["login_account"].split("/")[0])
    make_user("admin@example.com", password="the-right-one-42", is_staff=True, is_superuser=True)
    client = Client(enforce_csrf_checks=False)
    answers = [_attempt(client, f"wrong-{i}").status_code for i in range(limit)]
    assert answers == [200] * limit  # the form, re-shown with an error
    refused = _attempt(client, "the-right-one-42", address="198.51.100.9")
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert "_auth_user_id" not in client.session


def test_admin_login_still_works_within_the_limit(make_user):
    """A staff member with the right password logs in (302 to the admin index)."""
    make_user("admin@example.com", password="the-right-one-42", is_staff=True, is_superuser=True)
    client = Client()
    response = _attempt(client, "the-right-one-42")
    assert response.status_code == 302 and "_auth_user_id" in client.session
