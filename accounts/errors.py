"""The project's domain errors: one base class with a stable machine-readable `code`.

Services and selectors raise `DomainError` subclasses. The REST API's exception handler
(`wimz.api.exception_handler`) translates every one at the edge into `{"code","detail"}` with the
class's `http_status`, so views need no per-call try/except (HackSoft styleguide, "Errors & exception
handling").
"""


class DomainError(Exception):
    """Base of every domain error.

    `code` is a stable snake_case identifier documented in the API (e.g. `invalid_pairing_code`);
    `message` is a human-readable sentence that never contains a secret.
    """

    code: str = "error"
    default_message: str = "The operation failed."
    http_status: int = 400  # the REST answer's status when this error reaches an API view

    def __init__(self, message: str | None = None, *, code: str | None = None):
        self.message = message or self.default_message
        if code is not None:
            self.code = code
        super().__init__(self.message)


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
