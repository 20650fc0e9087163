"""OpenAPI (drf-spectacular) description of the relay's REST authentication."""

from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme


class LoginAwareJWTScheme(SimpleJWTScheme):
    """`accounts.authentication.JWTAuthentication` is simplejwt's Bearer scheme on the wire (it only also
    refuses logged-out logins), so the schema documents it as simplejwt's `jwtAuth`."""

    target_class = "accounts.authentication.JWTAuthentication"
