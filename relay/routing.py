"""WebSocket routes: `/ws/device` (robots), `/ws/app` (apps) and the compat `/ws` (in-band auth)."""

from django.urls import path

from . import consumers

websocket_urlpatterns = [
    path("ws/device", consumers.RobotConsumer.as_asgi()),
    path("ws/app", consumers.AppConsumer.as_asgi()),
    path("ws", consumers.CompatConsumer.as_asgi()),
]
