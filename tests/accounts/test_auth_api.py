"""The accounts REST API: register, login, refresh, logout, me, validate (docs/protocol.md §17)."""

import pytest
from rest_framework_simplejwt import serializers as jwt_serializers

from accounts.models import User
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

AUTH_KEYS = {"user_id", "email", "access", "refresh", "token", "expires_in"}


def register(api, email="new@example.com", password=PASSWORD):
    return api.post("/api/auth/register", {"email": email, "password": password})


def login(api, email="u1@example.com", password=PASSWORD):
    return api.post("/api/auth/login", {"email": email, "password": password})


def test_register_answers_tokens_and_stores_email_lower_case(api):
    """Register answers 201 with exactly the protocol shape; `token` equals `access`; email stored lower-case."""
    r = register(api, email="  New.User@Example.COM ")
    assert r.status_code == 201, r.content
    body = r.json()
    assert set(body) == AUTH_KEYS
    assert body["token"] == body["access"]
    assert body["expires_in"] == 3600
    assert body["email"] == "new.user@example.com"
    user = User.objects.get(pk=body["user_id"])
    assert user.email == "new.user@example.com"
    assert user.check_password(PASSWORD)


def test_register_duplicate_email_any_case_is_400_email_taken(api, make_user):
    """A second registration of an address (in any case) answers 400 `email_taken`."""
    make_user("taken@example.com")
    r = register(api, email="TAKEN@example.com")
    assert r.status_code == 400
    assert r.json()["code"] == "email_taken"
    assert User.objects.filter(email__iexact="taken@example.com").count() == 1


@pytest.mark.parametrize("password", ["short", "password123", "12345678901", "new@example.com"])
def test_register_weak_password_is_400_password_invalid(api, password):
    """Django's password validators apply: a weak password answers 400 `password_invalid`, no user created."""
    r = register(api, email="new@example.com", password=password)
    assert r.status_code == 400
    assert r.json()["code"] == "password_invalid"
    assert r.json()["detail"]
    assert not User.objects.filter(email="new@example.com").exists()


def test_register_malformed_body_is_400_invalid(api):
    """A malformed email or a missing password answers 400 with code `invalid` and per-field errors."""
    r = api.post("/api/auth/register", {"email": "not-an-email", "password": PASSWORD})
    assert r.status_code == 400
    assert r.json()["code"] == "invalid"
    assert "email" in r.json()["errors"]
    r = api.post("/api/auth/register", {"email": "a@example.com"})
    assert r.status_code == 400 and "password" in r.json()["errors"]


def test_login_answers_tokens_case_insensitive_email(api, make_user):
    """Login answers 200 with the register shape; the email matches in any case; last_login is set."""
    user = make_user("u1@example.com")
    r = login(api, email="U1@Example.com")
    assert r.status_code == 200, r.content
    body = r.json()
    assert set(body) == AUTH_KEYS
    assert body["token"] == body["access"]
    assert body["user_id"] == user.pk
    user.refresh_from_db()
    assert user.last_login is not None


def test_login_failures_are_one_401_invalid_credentials(api, make_user):
    """Wrong password, unknown email and inactive account answer the same 401 `invalid_credentials` body."""
    make_user("u1@example.com")
    make_user("off@example.com", is_active=False)
    bodies = []
    for email, password in [
        ("u1@example.com", "wrong-password-1"),
        ("nobody@example.com", PASSWORD),
        ("off@example.com", PASSWORD),
    ]:
        r = login(api, email=email, password=password)
        assert r.status_code == 401
        bodies.append(r.json())
    assert bodies[0]["code"] == "invalid_credentials"
    assert bodies[0] == bodies[1] == bodies[2]


def test_refresh_rotates_and_old_refresh_is_refused(api, make_user):
    """With rotation on, refresh answers a new access and a new refresh; the old refresh then fails 401."""
    make_user()
    tokens = login(api).json()
    r = api.post("/api/auth/refresh", {"refresh": tokens["refresh"]})
    assert r.status_code == 200, r.content
    body = r.json()
    assert set(body) == {"access", "refresh"}
    assert body["refresh"] != tokens["refresh"]
    again = api.post("/api/auth/refresh", {"refresh": tokens["refresh"]})
    assert again.status_code == 401
    assert again.json()["code"] == "token_not_valid"
    assert api.post("/api/auth/refresh", {"refresh": body["refresh"]}).status_code == 200


def test_refresh_without_rotation_answers_access_only(api, make_user, monkeypatch):
    """With rotation off (`WIMZ_ROTATE_REFRESH_TOKENS=0`), refresh answers only `{"access"}` (simplejwt semantics)."""
    # simplejwt's serializers keep the settings object they imported, so patch that object.
    monkeypatch.setattr(jwt_serializers.api_settings, "ROTATE_REFRESH_TOKENS", False)
    make_user()
    tokens = login(api).json()
    r = api.post("/api/auth/refresh", {"refresh": tokens["refresh"]})
    assert r.status_code == 200
    assert set(r.json()) == {"access"}


def test_refresh_rejects_garbage_and_access_tokens(api, make_user):
    """A malformed token or an access token in place of a refresh token answers 401 `token_not_valid`."""
    make_user()
    tokens = login(api).json()
    for bad in ["garbage", tokens["access"]]:
        r = api.post("/api/auth/refresh", {"refresh": bad})
        assert r.status_code == 401
        assert r.json()["code"] == "token_not_valid"


def test_logout_blacklists_the_refresh_token(api, make_user):
    """After logout the refresh token can no longer be refreshed (401), and a second logout is refused."""
    make_user()
    tokens = login(api).json()
    r = api.post("/api/auth/logout", {"refresh": tokens["refresh"]})
    assert r.status_code == 200
    assert r.json() == {"status": "logged_out"}
    r = api.post("/api/auth/refresh", {"refresh": tokens["refresh"]})
    assert r.status_code == 401
    assert r.json()["code"] == "token_not_valid"
    assert api.post("/api/auth/logout", {"refresh": tokens["refresh"]}).status_code == 401


def test_logout_with_garbage_is_401(api):
    """Logout with a malformed refresh token answers 401 `token_not_valid`; without one, 400."""
    r = api.post("/api/auth/logout", {"refresh": "garbage"})
    assert r.status_code == 401 and r.json()["code"] == "token_not_valid"
    assert api.post("/api/auth/logout", {}).status_code == 400


def test_me_answers_the_current_user(api, make_user):
    """`GET /api/auth/me` with a Bearer access token answers the user's id, email and dates."""
    user = make_user()
    tokens = login(api).json()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
    r = api.get("/api/auth/me")
    assert r.status_code == 200
    body = r.json()
    assert body["user_id"] == user.pk
    assert body["email"] == "u1@example.com"
    assert body["date_joined"].endswith("Z")
    assert body["last_login"].endswith("Z")


def test_me_without_token_is_401(api):
    """`GET /api/auth/me` without a token answers 401 with a code."""
    r = api.get("/api/auth/me")
    assert r.status_code == 401
    assert r.json()["code"] == "not_authenticated"


def test_validate_compat(api, make_user, access_token):
    """`GET /api/auth/validate` answers `{"valid":true,"user_id","email"}` for a valid Bearer token."""
    user = make_user()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {access_token(user)}")
    r = api.get("/api/auth/validate")
    assert r.status_code == 200
    assert r.json() == {"valid": True, "user_id": user.pk, "email": user.email}


@pytest.mark.parametrize("header", [None, "Bearer garbage", "Bearer "])
def test_validate_rejects_missing_or_bad_token(api, header):
    """`GET /api/auth/validate` answers 401 with a code for a missing or invalid token."""
    if header is not None:
        api.credentials(HTTP_AUTHORIZATION=header)
    r = api.get("/api/auth/validate")
    assert r.status_code == 401
    assert r.json()["code"] in {"not_authenticated", "token_not_valid", "bad_authorization_header"}


def test_validate_rejects_refresh_token_and_inactive_user(api, make_user):
    """A refresh token is not an access token, and a deactivated user's token is refused (401)."""
    user = make_user()
    tokens = login(api).json()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['refresh']}")
    assert api.get("/api/auth/validate").status_code == 401
    User.objects.filter(pk=user.pk).update(is_active=False)
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
    assert api.get("/api/auth/validate").status_code == 401


@pytest.mark.parametrize("change", ["deleted", "deactivated"])
def test_refresh_of_a_deleted_or_inactive_user_answers_401(api, make_user, change):
    """A refresh token whose user was deleted (was: 500 NotSupportedError/DoesNotExist) or deactivated
    answers 401 `token_not_valid`, like any other unusable refresh token."""
    user = make_user()
    refresh = login(api).json()["refresh"]
    if change == "deleted":
        user.delete()
    else:
        user.is_active = False
        user.save()
    r = api.post("/api/auth/refresh", {"refresh": refresh})
    assert r.status_code == 401, r.content
    assert r.json()["code"] == "token_not_valid"
