"""ASGI entry point: HTTP through Django, WebSockets through the relay's consumers.

The Django application is built before the websocket routing is imported, so that models and
settings are ready when the consumers' modules load.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wimz.settings")
django_asgi_app = get_asgi_application()

from django.conf import settings  # noqa: E402
from django.core.exceptions import ImproperlyConfigured  # noqa: E402

if settings.SERVE_REFUSED_REASON:
    # DEBUG off without a real DJANGO_SECRET_KEY (it signs every JWT) or without WIMZ_SECRET_KEYS (they
    # decrypt every robot secret): refuse to serve, saying which.
    raise ImproperlyConfigured(settings.SERVE_REFUSED_REASON)

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from relay.middleware import RelayAuthMiddleware  # noqa: E402
from relay.routing import websocket_urlpatterns  # noqa: E402
from wimz.access import AccessLogMiddleware  # noqa: E402
from wimz.proxy import TrustedProxyMiddleware  # noqa: E402

# The client's address and scheme are settled first (X-Forwarded-* only from WIMZ_TRUSTED_PROXIES), so
# that throttles, logs and the WebSocket consumers all see the same client (docs/operations.md). Then each
# connection gets its request id and its access log line (wimz/access.py, docs/operations.md "Logs").
application = TrustedProxyMiddleware(
    AccessLogMiddleware(
        ProtocolTypeRouter(
            {
                # Static files (admin, Swagger UI) straight from the apps' static folders: the relay serves a
                # handful of staff pages, which does not justify a separate static server or collectstatic.
                "http": ASGIStaticFilesHandler(django_asgi_app),
                # No AllowedHostsOriginValidator: robots and native apps send no Origin header, and the
                # browser-origin policy of docs/protocol.md §3.5 is applied by RelayAuthMiddleware itself.
                "websocket": RelayAuthMiddleware(URLRouter(websocket_urlpatterns)),
            }
        )
    )
)
