"""REST authentication: simplejwt's JWT authentication, refusing tokens of a logged-out login."""

from rest_framework_simplejwt.authentication import JWTAuthentication as SimpleJWTAuthentication
from rest_framework_simplejwt.exceptions import InvalidToken

from .services import LOGIN_CLAIM, login_is_revoked


class JWTAuthentication(SimpleJWTAuthentication):
    """`Authorization: Bearer <access JWT>` as simplejwt checks it, plus one indexed lookup: a token whose
    login was logged out (`accounts.models.RevokedLogin`) answers 401 `token_not_valid`."""

    def get_user(self, validated_token):
        user = super().get_user(validated_token)
        if login_is_revoked(validated_token.get(LOGIN_CLAIM)):
            raise InvalidToken("This login was logged out.")
        return user
