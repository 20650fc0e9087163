from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        """Register the OpenAPI description of the REST authentication (drf-spectacular extension)."""
        from . import schema  # noqa: F401
