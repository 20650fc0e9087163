"""REST authentication: simplejwt's JWT authentication, refusing tokens of a logged-out login."""

from django.contrib.auth.base_user import AbstractBaseUser
from rest_framework.exceptions import NotAuthenticated
from rest_framework.request import Request
from rest_framework_simplejwt.authentication import JWTAuthentication as SimpleJWTAuthentication
from rest_framework_simplejwt.exceptions import InvalidToken
from rest_framework_simplejwt.tokens import Token

from .models import User
from .services import LOGIN_CLAIM, login_is_revoked


class JWTAuthentication(SimpleJWTAuthentication):
    """`Authorization: Bearer <access JWT>` as simplejwt checks it, plus one indexed lookup: a token whose
    login was logged out (`accounts.models.RevokedLogin`) answers 401 `token_not_valid`."""

    # simplejwt annotates this return as a TypeVar bound by nothing (so no override can match); it returns
    # an instance of the user model.
    def get_user(self, validated_token: Token) -> AbstractBaseUser:  # type: ignore[override]  # see above
        user = super().get_user(validated_token)
        if login_is_revoked(validated_token.get(LOGIN_CLAIM)):
            raise InvalidToken("This login was logged out.")
        return user


def request_user(request: Request) -> User:
    """The `User` of a request that `IsAuthenticated` let through (`request.user` narrowed from
    `User | AnonymousUser`). Raises `NotAuthenticated` (401) for an anonymous request, which never
    reaches a view behind `IsAuthenticated`."""
    user = request.user
    if not isinstance(user, User):
        raise NotAuthenticated()
    return user
