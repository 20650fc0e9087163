"""Floor 2: the relay's stack with no application logic — daphne + Channels + the relay's channel layer.

Run: `python -m daphne -b 127.0.0.1 -p P bench.floors.channels_floor:application` (the bench adds the
relay's daphne flags from `wimz.serve.daphne_argv`). Settings are `wimz.settings`, so `CHANNEL_LAYERS`
is exactly the relay's: `relay.layer` with `REDIS_URL` set (prefix `WIMZ_CHANNEL_PREFIX`), the
in-memory layer without it, and whatever layer the relay switches to next.

A socket on `/r/<key>` (robot) or `/a/<key>` (app) joins the group `pair.<key>.r` or `pair.<key>.a`;
each text frame it receives is `group_send` to the other role's group and written out unchanged by
its members. No authentication, no database, no JSON parsing. If the layer refuses a message
(`ChannelFull`), the sender gets `{"type":"error","code":"RATE_LIMITED"}` as from the relay; any other layer
error (e.g. Redis' connection pool exhausted) is answered `INTERNAL`.
"""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wimz.settings")
django.setup()

from channels.exceptions import ChannelFull  # noqa: E402
from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import re_path  # noqa: E402

RATE_LIMITED = '{"type":"error","code":"RATE_LIMITED","message":"floor: channel full","ref":null}'
INTERNAL = '{"type":"error","code":"INTERNAL","message":"floor: {}","ref":null}'


class ForwardConsumer(AsyncWebsocketConsumer):
    """Joins `pair.<key>.<role>`; forwards each text frame to the peer role's group."""

    async def connect(self):
        kwargs = self.scope["url_route"]["kwargs"]
        role, key = kwargs["role"], kwargs["key"]
        self.group = f"pair.{key}.{role}"
        self.peer_group = f"pair.{key}.{'a' if role == 'r' else 'r'}"
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None):
        if text_data is None:
            return
        try:
            await self.channel_layer.group_send(self.peer_group, {"type": "floor.frame", "text": text_data})
        except ChannelFull:
            await self.send(text_data=RATE_LIMITED)
        except Exception as exc:  # e.g. the Redis pool exhausted: answer, as the relay does
            await self.send(text_data=INTERNAL.replace("{}", type(exc).__name__))

    async def floor_frame(self, message):
        await self.send(text_data=message["text"])


application = ProtocolTypeRouter(
    {
        "websocket": URLRouter([re_path(r"^(?P<role>[ra])/(?P<key>[A-Za-z0-9_.-]{1,64})$", ForwardConsumer.as_asgi())]),
    }
)
