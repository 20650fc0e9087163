"""Account services and the user admin."""

import pytest

from accounts import services
from accounts.errors import EmailTaken, InvalidCredentials, PasswordInvalid
from accounts.models import User
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def test_user_create_normalizes_and_refuses_duplicates():
    """`user_create` stores the email lower-case and raises `EmailTaken` for a duplicate in any case."""
    user = services.user_create(email="Mixed@Example.com", password=PASSWORD)
    assert user.email == "mixed@example.com"
    with pytest.raises(EmailTaken) as e:
        services.user_create(email="MIXED@example.com", password=PASSWORD)
    assert e.value.code == "email_taken"


def test_user_create_validates_password():
    """`user_create` raises `PasswordInvalid` with the validators' reasons."""
    with pytest.raises(PasswordInvalid) as e:
        services.user_create(email="a@example.com", password="123")
    assert "short" in e.value.message


def test_auth_login_refuses_wrong_password(make_user):
    """`auth_login` raises `InvalidCredentials` for a wrong password and returns the user otherwise."""
    user = make_user()
    assert services.auth_login(email="U1@example.com", password=PASSWORD) == user
    with pytest.raises(InvalidCredentials):
        services.auth_login(email="u1@example.com", password="nope")


def test_user_admin_pages(admin_client, make_user):
    """The user admin lists, searches by email and opens the add and change forms."""
    user = make_user("findme@example.com")
    r = admin_client.get("/admin/accounts/user/", {"q": "findme"})
    assert r.status_code == 200
    assert b"findme@example.com" in r.content
    assert admin_client.get("/admin/accounts/user/?is_active__exact=1").status_code == 200
    assert admin_client.get("/admin/accounts/user/add/").status_code == 200
    assert admin_client.get(f"/admin/accounts/user/{user.pk}/change/").status_code == 200


def test_user_admin_add_creates_lower_case_user(admin_client):
    """Adding a user in admin stores the email lower-case with a usable password."""
    r = admin_client.post(
        "/admin/accounts/user/add/",
        {"email": "Added@Example.com", "password1": PASSWORD, "password2": PASSWORD, "usable_password": "true"},
    )
    assert r.status_code == 302, r.content[:2000]
    user = User.objects.get(email="added@example.com")
    assert user.check_password(PASSWORD)
