from django.apps import AppConfig


class RelayConfig(AppConfig):
    name = "relay"
    verbose_name = "Relay (connections and sessions)"

    def ready(self) -> None:
        """Connect the ownership receivers and provide presence to `devices` (which never imports relay)."""
        from devices.signals import register_online_provider

        from . import ownership, presence  # noqa: F401 - connects the receivers

        register_online_provider(presence.online_device_ids)
