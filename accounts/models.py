"""The relay's user: an owner of robots, who logs in with an email address."""

from typing import Any, ClassVar

from django.contrib.auth.models import AbstractUser, BaseUserManager
from django.db import models


class UserManager(BaseUserManager["User"]):
    """Manager creating users keyed by email (no username)."""

    use_in_migrations = True

    def _create_user(self, email: str, password: str | None, **extra_fields: Any) -> "User":
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=self.normalize_email(email).lower(), **extra_fields)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra_fields: Any) -> "User":
        """Create a regular user; `password=None` makes an unusable password."""
        extra_fields.setdefault("is_staff", False)
        extra_fields.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra_fields)

    def create_superuser(self, email: str, password: str | None = None, **extra_fields: Any) -> "User":
        """Create a staff superuser (for Django admin)."""
        extra_fields.setdefault("is_staff", True)
        extra_fields.setdefault("is_superuser", True)
        return self._create_user(email, password, **extra_fields)


class User(AbstractUser):
    """A WIM-Z owner. `email` is the login (unique, stored lower-case); there is no username."""

    username = None  # type: ignore[assignment]  # Django's documented way to drop AbstractUser's field
    email = models.EmailField("email address", unique=True)

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    # The stubs type AbstractUser.objects as Django's UserManager, whose create_user takes a username first.
    objects: ClassVar[UserManager] = UserManager()  # type: ignore[assignment]  # email-keyed manager

    def __str__(self) -> str:
        return self.email


class RevokedLogin(models.Model):
    """A login that was logged out: its access and refresh tokens are refused from then on.

    A login is one register or login call. All its tokens carry its id in the `login_id` claim, through
    every refresh rotation (`accounts.services.LOGIN_CLAIM`). REST authentication, the refresh endpoint
    and the WebSocket handshake and in-band renewal refuse tokens whose login has a row here. A row is
    useless after `expires_at` (every token of the login has expired by then) and is purged by
    `manage.py purge_history`.
    """

    login_id = models.CharField(max_length=32, unique=True)
    user_id = models.BigIntegerField(db_index=True)  # no foreign key: a deleted user's row may stay until expiry
    revoked_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"login {self.login_id} of user {self.user_id} (logged out)"
