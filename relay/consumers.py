"""WebSocket consumers (stub — being written)."""

from channels.generic.websocket import AsyncJsonWebsocketConsumer


class RobotConsumer(AsyncJsonWebsocketConsumer):
    pass


class AppConsumer(AsyncJsonWebsocketConsumer):
    pass


class CompatConsumer(AsyncJsonWebsocketConsumer):
    pass
