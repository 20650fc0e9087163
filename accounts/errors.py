"""Domain errors of the accounts app (all `core.errors.DomainError`, each with a stable `code`).

`core.api.exception_handler` translates every one at the REST edge into `{"code","detail"}` with the
class's `http_status`.
"""

from core.errors import DomainError


class AccountError(DomainError):
    """Base of the accounts domain errors."""

    code = "account_error"


class EmailTaken(AccountError):
    """An account with this email address (compared case-insensitively) already exists."""

    code = "email_taken"
    default_message = "An account with this email address already exists."


class PasswordInvalid(AccountError):
    """The password was refused by Django's password validators; `message` lists the reasons."""

    code = "password_invalid"
    default_message = "This password is not allowed."


class InvalidCredentials(AccountError):
    """Unknown email, wrong password or inactive account — deliberately not told apart."""

    code = "invalid_credentials"
    default_message = "Email or password is incorrect."
    http_status = 401


class TokenInvalid(AccountError):
    """A refresh token that is malformed, expired or already blacklisted."""

    code = "token_not_valid"
    default_message = "Token is invalid or expired."
    http_status = 401
