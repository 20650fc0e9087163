"""WebSocket routes: `/ws/device` (robots), `/ws/app` (apps) and the compat `/ws` (in-band auth)."""

from django.urls import path, re_path

from . import consumers

# The ignores: django-stubs types a route's view as a Django view only; Channels' URLRouter takes
# the same `path()`/`re_path()` patterns with an ASGI application (a consumer's `as_asgi()`).
websocket_urlpatterns = [
    path("ws/device", consumers.RobotConsumer.as_asgi()),  # type: ignore[arg-type]
    path("ws/app", consumers.AppConsumer.as_asgi()),  # type: ignore[arg-type]
    path("ws", consumers.CompatConsumer.as_asgi()),  # type: ignore[arg-type]
    # Any other path (a typo, a trailing slash) is refused with 403 like a failed handshake, instead
    # of the router's "No route found" exception: a 500 and a traceback in the log per attempt.
    re_path(r"", consumers.UnknownPathConsumer.as_asgi()),  # type: ignore[arg-type]
]
