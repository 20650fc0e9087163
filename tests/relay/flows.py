"""Building blocks for consumer-level relay tests: fixture data, session set-up, frame assertions.

Everything here drives the relay through its sockets (`tests.support.asgi`) or reads the history
rows the contract promises (docs/protocol.md §13: every session is a row of history).
"""

import asyncio
import json
import re
import time
import uuid

import pytest
from channels.db import database_sync_to_async
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator

from relay.models import Connection, Session
from tests import fixtures
from tests.support import asgi as ws

# A real aiortc 1.16 negotiation: offer, answer, candidates per side (tests/fixtures).
CALL = fixtures.aiortc_call()
OFFER = CALL["offer"]
ANSWER = CALL["answer"]
ROBOT_CANDIDATES = CALL["robot_candidates"]
APP_CANDIDATES = CALL["app_candidates"]
# Deployed clients' frames, one per line (`from`, `when`, `frame`).
DEPLOYED = fixtures.deployed_frames()

# Communicator tests need committed rows (the consumers' ORM calls run on another thread), hence
# transactional tests. Naming the apps the relay touches lets the per-test flush truncate only their
# tables and skip the post-migrate signal (permissions, content types): a flush on PostgreSQL costs
# a tenth of the full one. Use as `pytestmark = flows.RELAY_DB`.
RELAY_DB = pytest.mark.django_db(
    transaction=True,
    available_apps=[
        "django.contrib.contenttypes",
        "django.contrib.auth",
        "rest_framework_simplejwt.token_blacklist",
        "accounts",
        "devices",
        "relay",
    ],
)

R1 = "wimz_robot_01"
R2 = "wimz_robot_02"

ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|\+00:00)$")


def is_iso_utc(value) -> bool:
    """True for an ISO 8601 UTC timestamp string (docs/protocol.md §2)."""
    return isinstance(value, str) and bool(ISO_UTC.match(value))


def close_frame(session_id: str, reason: str) -> dict:
    """The `webrtc_close` a party gets when the relay ends a session or the other party closed it."""
    return {"type": "webrtc_close", "session_id": session_id, "reason": reason}


async def expect_error(comm, code: str, *, ref=None, timeout: float = ws.TIMEOUT) -> dict:
    """Receive the next frame and assert it is `{"type":"error","code":code,...}` (optionally `ref`)."""
    frame = await ws.recv(comm, timeout)
    assert frame.get("type") == "error", frame
    assert frame.get("code") == code, frame
    assert isinstance(frame.get("message"), str), frame
    if ref is not None:
        assert frame.get("ref") == ref, frame
    return frame


async def expect_close(comm, code: int, timeout: float = ws.TIMEOUT) -> None:
    """Assert the relay closed the socket with WebSocket close `code` (skipping text frames first)."""
    deadline = time.monotonic() + timeout
    while True:
        out = await comm.receive_output(timeout=max(0.01, deadline - time.monotonic()))
        if out["type"] == "websocket.close":
            assert out.get("code") == code, out
            return


def set_channel_capacity(settings, capacity: int) -> None:
    """Shrink the per-channel capacity of whatever channel layer the tests run on (a fresh layer)."""
    layers = json.loads(json.dumps(settings.CHANNEL_LAYERS))
    layers["default"].setdefault("CONFIG", {})["capacity"] = capacity
    settings.CHANNEL_LAYERS = layers
    channel_layers.backends.clear()


class Client:
    """The network side of one socket, as the relay's ASGI app sees it: the client can stop reading
    (`stall()`: every send to it blocks, as on a full TCP send buffer) and read again (`resume()`), or
    its connection can die without a close frame (`cut()`: sends raise, as on a reset transport).

    Use `await client.connect(path, headers)` to get a `WebsocketCommunicator` through it.
    """

    def __init__(self):
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.dead = False

    def stall(self):
        self.flowing.clear()

    def resume(self):
        self.flowing.set()

    def cut(self):
        self.dead = True
        self.flowing.set()

    async def __call__(self, scope, receive, send):
        async def client_send(message):
            if message["type"] == "websocket.send":
                await self.flowing.wait()
                if self.dead:
                    raise OSError("connection reset by peer")
            await send(message)

        return await ws.application(scope, receive, client_send)

    async def connect(self, path: str, headers=None) -> WebsocketCommunicator:
        comm = WebsocketCommunicator(self, path, headers=headers or [])
        accepted, _ = await comm.connect(timeout=ws.TIMEOUT)
        assert accepted, path
        return comm


async def robot_app(world, *, app_token=None, robot_id=R1, secret=None):
    """R1 online (no `hello`: online from the handshake), then one app of U1 with its snapshot drained."""
    robot = await ws.robot(robot_id, secret or world.r1_secret)
    app = await ws.app(app_token or world.t1, drain_status=1)
    return robot, app


async def open_session(app, robot, device_id: str | None = R1) -> tuple[str, dict, dict]:
    """`webrtc_request` from `app`; returns (session_id, credentials frame, robot's request frame)."""
    request = {"type": "webrtc_request"}
    if device_id is not None:
        request["device_id"] = device_id
    await ws.send(app, request)
    creds = await ws.recv_type(app, "webrtc_credentials")
    req = await ws.recv_type(robot, "webrtc_request")
    assert req["session_id"] == creds["session_id"]
    return creds["session_id"], creds, req


def offer_frame(session_id: str) -> dict:
    return {"type": "webrtc_offer", "session_id": session_id, "sdp": OFFER}


def answer_frame(session_id: str) -> dict:
    return {"type": "webrtc_answer", "session_id": session_id, "sdp": ANSWER}


def ice_frame(session_id: str, candidate: dict) -> dict:
    return {"type": "webrtc_ice", "session_id": session_id, "candidate": candidate}


async def answered_session(app, robot) -> str:
    """A session taken through request, offer and answer (so the setup timer no longer applies)."""
    session_id, _, _ = await open_session(app, robot)
    await ws.send(robot, offer_frame(session_id))
    assert (await ws.recv_type(app, "webrtc_offer"))["session_id"] == session_id
    await ws.send(app, answer_frame(session_id))
    assert (await ws.recv_type(robot, "webrtc_answer"))["session_id"] == session_id
    return session_id


@database_sync_to_async
def session_row(session_id: str) -> Session:
    """The history row of a session."""
    return Session.objects.get(pk=uuid.UUID(session_id))


@database_sync_to_async
def connection_rows(**filters) -> list[dict]:
    """Connection history rows matching `filters`, as dicts."""
    return list(Connection.objects.filter(**filters).values())


@database_sync_to_async
def session_count() -> int:
    return Session.objects.count()


async def receive_all(comm, count: int, timeout: float = ws.TIMEOUT) -> list[dict]:
    """Exactly the next `count` frames."""
    return [await ws.recv(comm, timeout) for _ in range(count)]


QUIET = ws.QUIET


async def settle(*comms, timeout: float = QUIET) -> list[list[dict]]:
    """Wait one quiet period, then return what each of `comms` has received so far (one list each)."""
    await asyncio.sleep(timeout)
    out = []
    for comm in comms:
        frames = []
        while not comm.output_queue.empty():
            frames.append(await ws.recv(comm))
        out.append(frames)
    return out


async def barrier(comm) -> list[dict]:
    """`ping` the relay on `comm` and return the frames received before the `pong`.

    A consumer handles its socket's frames in order, so once the pong is back the frame sent before it
    has been fully routed (every channel-layer send done).
    """
    await ws.send(comm, {"type": "ping"})
    frames = []
    while (frame := await ws.recv(comm)) != {"type": "pong"}:
        frames.append(frame)
    return frames
