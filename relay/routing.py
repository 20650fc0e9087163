"""WebSocket routes: `/ws/device` (robots), `/ws/app` (apps) and the compat `/ws` (in-band auth)."""

from django.urls import path, re_path

from . import consumers

websocket_urlpatterns = [
    path("ws/device", consumers.RobotConsumer.as_asgi()),
    path("ws/app", consumers.AppConsumer.as_asgi()),
    path("ws", consumers.CompatConsumer.as_asgi()),
    # Any other path (a typo, a trailing slash) is refused with 403 like a failed handshake, instead
    # of the router's "No route found" exception: a 500 and a traceback in the log per attempt.
    re_path(r"", consumers.UnknownPathConsumer.as_asgi()),
]
