"""WebSocket consumers: parse, authorise, hand off to `relay.dispatch`, map errors to frames.

One class serves the three routes: `/ws/device` (robot, HMAC handshake), `/ws/app` (app, JWT
handshake) and the compat `/ws` (identity from an in-band `auth` first frame). After authentication
every route behaves the same (docs/protocol.md §6). A consumer holds its socket's `Party` — identity
and routing facts — and applies the channel-layer messages that keep those facts current; every rule
lives in a module of its own (`relay.dispatch` names them).
"""

import asyncio
import contextlib
import functools
import logging
import time
import weakref
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar, cast

from asgiref.typing import ASGIReceiveCallable, ASGIReceiveEvent, ASGISendCallable
from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from channels.utils import await_many_dispatch
from django.conf import settings

from core.logformat import bind_log_context
from core.logging import client_text, log_unexpected

from . import connections, delivery, dispatch, limits, metrics, sessions
from .addressing import apply_device_update
from .delivery import (
    CloseMessage,
    DeviceMessage,
    EventMessage,
    FrameMessage,
    OwnerMessage,
    SessionEndMessage,
    SessionOpenMessage,
    ShedMessage,
)
from .middleware import AppIdentity, RobotIdentity, authenticate_app, authenticate_robot
from .models import Session
from .party import APP, ROBOT, Frame, Party
from .protocol import (
    APP_TYPES,
    RESERVED_TYPES,
    ROBOT_TYPES,
    CloseCode,
    Code,
    RelayError,
    error_frame,
    frame_type,
    iso,
    parse_text_frame,
)
from .session_rows import SessionRef
from .transport import TRANSPORT_BUFFERED_KEY

if TYPE_CHECKING:
    from channels.consumer import _ChannelScope  # types-channels only

    from .layer import RelayChannelLayer
    from .middleware import RelayScope

_T = TypeVar("_T")
# What the consumer loop waits on: the socket's next ASGI event, or its channel's next message.
_Awaited: TypeAlias = "asyncio.Future[ASGIReceiveEvent] | asyncio.Future[None]"

logger = logging.getLogger(__name__)

# Compat `/ws`: a socket that has not authenticated within this many seconds is closed (4003).
IN_BAND_AUTH_TIMEOUT = 10.0


class RelayConsumer(AsyncWebsocketConsumer):
    """A robot or app socket. Subclasses set `route_role` (`robot`, `app`, or None for compat `/ws`)."""

    route_role: str | None = None
    # Narrowed for mypy: RelayAuthMiddleware builds the scope, and wimz/settings.py configures only the
    # relay's layer (a test's other layer still works at runtime: `__call__` falls back to Channels' loop).
    scope: "RelayScope"
    channel_layer: "RelayChannelLayer"

    async def __call__(self, scope: "_ChannelScope", receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        """Channels' consumer loop, reordered for routing facts: channel-layer messages already queued
        for this socket (changes of its facts, frames for it) are handled, in order, before its next
        socket frame is routed — Channels' own loop would route the frame first.
        """
        self.scope = cast("RelayScope", scope)
        self.channel_layer = cast("RelayChannelLayer", get_channel_layer(self.channel_layer_alias))
        self.channel_name = await self.channel_layer.new_channel()
        # Channels types its channel receive as an ASGI receive; it yields channel-layer messages.
        self.channel_receive = cast(
            ASGIReceiveCallable, functools.partial(self.channel_layer.receive, self.channel_name)
        )
        self.base_send = send
        if not hasattr(self.channel_layer, "ready_future"):  # another layer: Channels' loop
            with contextlib.suppress(StopConsumer):
                # types-channels types each callable as returning a receive callable, not a message.
                await await_many_dispatch([self.channel_receive, receive], self.dispatch)  # type: ignore[list-item]
            return
        socket = asyncio.ensure_future(receive())
        ready: asyncio.Future[None] | None = self.channel_layer.ready_future(self.channel_name)
        try:
            while True:
                waiting: set[_Awaited] = {socket, ready} if ready else {socket}
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                await self._apply_queued()
                if ready is not None and ready.done():
                    # cancelled: the channel was discarded (the socket is closing)
                    ready = None if ready.cancelled() else self.channel_layer.ready_future(self.channel_name)
                if socket.done():
                    message = socket.result()
                    socket = asyncio.ensure_future(receive())
                    await self.dispatch(cast("dict[str, Any]", message))  # an ASGI event is a message dict
        except StopConsumer:
            pass
        finally:
            for task in (socket, ready):
                if task is None:
                    continue
                if not task.done():
                    task.cancel()
                    task.add_done_callback(_retrieve)
                elif not task.cancelled():
                    task.exception()  # retrieved, so that asyncio does not log it

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Channels' dispatch without its per-message `aclose_old_connections()`: that is a thread hop
        (sync_to_async) for every frame, and this consumer touches the database only through
        `database_sync_to_async`, which closes stale connections itself. Profiled: a fifth of the
        relay's CPU under load."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def connect(self) -> None:
        """Accept an authenticated handshake; refuse (HTTP 403) anything else, the same way for all."""
        self.party: Party | None = None
        self.token_expires_at: datetime | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.closing = False
        self.limiter = limits.FrameLimiter(limits.Limits.from_settings())
        self.unauthenticated_from: str | None = None  # compat `/ws`: the address whose slot it holds
        scope = self.scope
        if not scope.get("relay_origin_ok", False):
            logger.info("websocket handshake refused: origin not allowed (%s)", client_text(scope.get("path")))
            metrics.handshake_refused(self.route_role, "origin")
            await self.close()
            return
        waited = time.monotonic() - scope.get("relay_handshake_at", time.monotonic())
        if waited > settings.WIMZ_HANDSHAKE_BUDGET:
            # Under a connect storm the server drops a handshake it has not answered within its own
            # timeout (daphne: 5 s); doing the presence work for it anyway would announce a robot
            # online that never connected. Refuse (403) at once so the client retries.
            logger.warning("websocket handshake refused: it waited %.1f s for the relay (overloaded)", waited)
            metrics.handshake_refused(self.route_role, "overloaded")
            await self.close()
            return
        if self.route_role == ROBOT:
            identity = scope.get("relay_robot")
            if identity is None:
                # The device id and the failed check, for the operator; the robot only gets a bare 403.
                logger.info(
                    "robot handshake refused: device %s, %s",
                    client_text(scope.get("relay_robot_claimed")),
                    scope.get("relay_robot_refusal") or "no credentials",
                )
                metrics.handshake_refused(ROBOT, "auth")
                await self.close()
                return
            # Presence first, then accept: once the robot sees its handshake accepted, frames for it route.
            if not await self._become_robot(identity):
                logger.info("robot handshake refused: signature already used")
                metrics.handshake_refused(ROBOT, "replay")
                await self.close()
                return
            await self.accept()
        elif self.route_role == APP:
            app_identity = scope.get("relay_app")
            if app_identity is None:
                logger.info("app handshake refused")
                metrics.handshake_refused(APP, "auth")
                await self.close()
                return
            if not await self._become_app(app_identity, accept=True):
                # Accepted, told why, closed: a 403 would read as a bad token to the app.
                await self.accept()
                await self._too_many_sockets()
        else:
            address = (scope.get("client") or ("?",))[0]
            if not limits.unauthenticated.acquire(address):
                logger.info(
                    "websocket handshake refused: too many unauthenticated sockets from %s", client_text(address)
                )
                metrics.handshake_refused(None, "too_many_unauthenticated")
                await self.close()
                return
            self.unauthenticated_from = address
            await self.accept()
            self._spawn(self._in_band_auth_deadline())

    # --- identity -------------------------------------------------------------------------------

    async def _become_robot(self, identity: RobotIdentity) -> bool:
        """Record the robot's presence, spending its signature; False (nothing recorded) on a replay."""
        bind_log_context(device_id=identity.device_id)  # every later line of this socket's task carries it
        party = Party(ROBOT, self.channel_name, device_pk=identity.device_pk, device_id=identity.device_id)
        if not await connections.robot_connected(
            party, path=self.scope.get("path", ""), signature=(identity.timestamp, identity.signature)
        ):
            return False
        self.party = party
        self.routed = metrics.ROUTED[ROBOT]
        _open_consumers.add(self)
        connections.ensure_heartbeat()
        logger.info("robot %s connected", identity.device_id)
        return True

    async def _become_app(self, identity: AppIdentity, *, accept: bool = False, greeting: Frame | None = None) -> bool:
        """Record the app's presence, then send `greeting` (if any) and its snapshot; False (nothing
        recorded or sent) when its user already has `WIMZ_MAX_APP_SOCKETS_PER_USER` open app sockets."""
        bind_log_context(user_id=identity.user_id)  # every later line of this socket's task carries it
        party = Party(APP, self.channel_name, user_id=identity.user_id, login_id=identity.login_id)
        snapshot = await connections.app_connected(party, path=self.scope.get("path", ""))
        if snapshot is None:
            return False
        self.party = party
        self.routed = metrics.ROUTED[APP]
        self.token_expires_at = identity.expires_at
        _open_consumers.add(self)
        if accept:
            await self.accept()
        if greeting is not None:
            await self.send_frame(greeting)
        for frame in snapshot:
            await self.send_frame(frame)
        connections.ensure_heartbeat()
        self._spawn(self._token_expiry())
        logger.info("app of user %s connected", identity.user_id)
        return True

    async def _too_many_sockets(self) -> None:
        logger.info("app socket refused: its user has %d open app sockets", settings.WIMZ_MAX_APP_SOCKETS_PER_USER)
        metrics.handshake_refused(APP, "too_many_sockets")
        self.closing = True
        await self.send_frame(
            error_frame(
                Code.RATE_LIMITED,
                "too many open app sockets for this user "
                f"(at most {settings.WIMZ_MAX_APP_SOCKETS_PER_USER}); close one",
            )
        )
        await self.close(code=CloseCode.NOT_DRAINING)

    async def _rate_limited(self, kind: str | None) -> None:
        """A frame over its socket's rate (docs/protocol.md §15.1): RATE_LIMITED, not handled; after
        `WIMZ_RATE_LIMIT_CLOSE_AFTER` refusals within the window, close 4008."""
        metrics.REFUSED[Code.RATE_LIMITED].inc()
        if self.limiter.refused():
            logger.warning(
                "closing a %s socket that keeps sending over its rate limit (4008)",
                self.party.role if self.party else "unauthenticated",
            )
            self.closing = True
            await self.close(code=CloseCode.NOT_DRAINING)
            return
        await self.send_frame(error_frame(Code.RATE_LIMITED, "too many frames; slow down", kind))

    # --- frames from the socket -----------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Decode one frame and dispatch it; every failure becomes an error frame, the socket stays."""
        if self.closing:
            return
        if not self.limiter.allow_frame():  # before any parsing: a flood costs as little as possible
            await self._rate_limited(None)
            return
        if text_data is None:  # a binary frame: it took its token like any frame, and is refused
            metrics.REFUSED[Code.BAD_REQUEST].inc()
            await self.send_frame(error_frame(Code.BAD_REQUEST, "binary frames are not supported; send JSON text"))
            return
        kind = None
        try:
            frame = parse_text_frame(text_data, max_bytes=settings.WIMZ_MAX_FRAME_BYTES)
            kind = frame_type(frame, allow_legacy_event=self.party is None or self.party.role == ROBOT)
            if not self.limiter.allow_type(kind):
                await self._rate_limited(kind)
                return
            if kind == "ping":
                await self.send_frame({"type": "pong"})
                return
            if kind == "pong":
                return
            if self.party is None:
                await self._compat_auth(kind, frame)
                return
            if self.party.role == APP and await self._token_has_expired():
                metrics.REFUSED[Code.TOKEN_EXPIRED].inc()
                return
            await self._dispatch(kind, frame)
        except RelayError as exc:
            metrics.REFUSED[exc.code].inc()
            await self.send_frame(exc.frame())
        except Exception:
            # Whatever the frame held, the log gets one line (a traceback once a minute per raise site).
            log_unexpected(logger, "unhandled error while handling a %s frame", client_text(kind))
            metrics.REFUSED[Code.INTERNAL].inc()
            await self.send_frame(error_frame(Code.INTERNAL, "internal error", kind if isinstance(kind, str) else None))

    async def _apply_queued(self) -> None:
        """Handle the channel-layer messages already queued for this socket before its next frame, so
        the frame is routed by facts at least as new as every change delivered so far (a replaced robot,
        an unpair): Channels would otherwise dispatch the socket's frame first."""
        take = getattr(self.channel_layer, "receive_nowait", None)
        if take is None:
            return
        while (message := take(self.channel_name)) is not None:
            await self.dispatch(message)

    async def _dispatch(self, kind: str, frame: Frame) -> None:
        party = cast(Party, self.party)  # `receive` hands a frame off only once the socket has a party
        allowed = ROBOT_TYPES if party.role == ROBOT else APP_TYPES
        if kind in RESERVED_TYPES and kind not in allowed:
            raise RelayError(Code.UNKNOWN_TYPE, f"'{kind}' is not accepted from this side", kind)
        if party.role == ROBOT:
            outcome = await dispatch.robot_frame(party, kind, frame)
        elif kind == "auth":  # in-band renewal of the app's token, answered here (docs/protocol.md §5)
            await self._renew(frame)
            return
        else:
            outcome = await dispatch.app_frame(party, kind, frame)
        self.routed[kind].inc()  # pre-resolved children: one dict lookup (relay.metrics)
        for reply in outcome.replies:
            await self.send_frame(reply)
        if outcome.opened is not None:
            self._spawn(self._setup_timer(outcome.opened.session_id))

    # --- app token lifetime (docs/protocol.md §5, "In-band renewal") ---------------

    async def _renew(self, frame: Frame) -> None:
        identity = await authenticate_app(frame.get("token"))  # missing/invalid alike: NOT_AUTHORIZED
        # Only an app socket renews: it has its party and its token's expiry (`_become_app`).
        party = cast(Party, self.party)
        if identity is None or identity.user_id != party.user_id:
            raise RelayError(Code.NOT_AUTHORIZED, "token refused; the current token stays in force", "auth")
        self.token_expires_at = max(cast(datetime, self.token_expires_at), identity.expires_at)
        party.login_id = identity.login_id  # the socket now runs on this login's token
        await self.send_frame({"type": "auth_result", "success": True, "expires_at": iso(self.token_expires_at)})

    async def _token_has_expired(self) -> bool:
        if self.token_expires_at is not None and datetime.now(UTC) >= self.token_expires_at:
            await self._expire()
            return True
        return False

    async def _expire(self) -> None:
        if self.closing:
            return
        self.closing = True
        await self.send_frame(error_frame(Code.TOKEN_EXPIRED, "access token expired; reconnect with a new token"))
        await self.close(code=CloseCode.TOKEN_EXPIRED)

    async def _token_expiry(self) -> None:
        """Close the socket (4001) as soon as its token expires without renewal."""
        while not self.closing:
            # Started by `_become_app` once the expiry is set; renewal only moves it later.
            remaining = (cast(datetime, self.token_expires_at) - datetime.now(UTC)).total_seconds()
            if remaining <= 0:
                await self._expire()
                return
            await asyncio.sleep(min(remaining, 60.0))

    # --- compat `/ws` in-band auth ---------------------------------------------------------------

    async def _compat_auth(self, kind: str, frame: Frame) -> None:
        if kind != "auth":
            raise RelayError(Code.NOT_AUTHORIZED, "authenticate first with an 'auth' frame", kind)
        if "device_id" in frame:
            robot, refusal = await authenticate_robot(
                frame.get("device_id"), frame.get("timestamp"), frame.get("token")
            )
            if robot is None:
                logger.info(
                    "in-band robot auth refused on /ws: device %s, %s", client_text(frame.get("device_id")), refusal
                )
            # The socket becomes the robot's (signature spent) before it is told so; frames routed to it
            # wait in its queue until this frame is handled, so `auth_result` still comes first.
            if robot is not None and await self._become_robot(robot):
                self._release_address()
                await self.send_frame({"type": "auth_result", "success": True, "message": "authenticated"})
                return
            metrics.handshake_refused(ROBOT, "auth" if robot is None else "replay")
        else:
            app = await authenticate_app(frame.get("token"))
            if app is not None:
                self._release_address()
                greeting: Frame = {
                    "type": "auth_result",
                    "success": True,
                    "message": "authenticated",
                    "expires_at": iso(app.expires_at),
                }
                if not await self._become_app(app, greeting=greeting):
                    await self.send_frame(
                        {"type": "auth_result", "success": False, "message": "too many open app sockets for this user"}
                    )
                    await self._too_many_sockets()
                return
            metrics.handshake_refused(APP, "auth")
        logger.info("in-band auth refused on /ws")
        await self.send_frame({"type": "auth_result", "success": False, "message": "authentication failed"})
        self.closing = True
        await self.close(code=CloseCode.AUTH_FAILED)

    def _release_address(self) -> None:
        """The compat socket authenticated or closed: give back its unauthenticated slot."""
        if self.unauthenticated_from is not None:
            limits.unauthenticated.release(self.unauthenticated_from)
            self.unauthenticated_from = None

    async def _in_band_auth_deadline(self) -> None:
        await asyncio.sleep(IN_BAND_AUTH_TIMEOUT)
        if self.party is None and not self.closing:
            self.closing = True
            metrics.handshake_refused(None, "auth_timeout")
            await self.send_frame({"type": "auth_result", "success": False, "message": "authentication timed out"})
            await self.close(code=CloseCode.AUTH_FAILED)

    # --- timers -----------------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _setup_timer(self, session_id: str) -> None:
        await asyncio.sleep(settings.WIMZ_SESSION_SETUP_TIMEOUT)
        if self.party is not None:
            await sessions.setup_expired(self.party, session_id)

    # --- messages from the channel layer ---------------------------------------------------------

    async def relay_frame(self, message: FrameMessage) -> None:
        """`relay.frame`: write the frame text; a session frame only while this socket is a party."""
        if "sid" in message and (self.party is None or not await sessions.check_party(self.party, message)):
            return
        await self._relay_text(message)

    async def relay_event(self, message: EventMessage) -> None:
        """`relay.event`: a robot event, written while this app's user owns the robot."""
        if self.party is not None and message["device_id"] in self.party.devices:
            await self._relay_text(message)
        else:
            logger.debug("event of a device this socket's user no longer owns: not forwarded")

    async def _relay_text(self, message: FrameMessage | EventMessage) -> None:
        """Write another socket's frame — unless this socket is not draining what it was sent: then the
        sender (`reply_to`) is told RATE_LIMITED instead, so the server's buffer for a client that does
        not read stays bounded (`WIMZ_SOCKET_BUFFER_BYTES`, docs/protocol.md §19.2)."""
        buffered = self.scope.get(TRANSPORT_BUFFERED_KEY)
        if buffered is not None and buffered() > settings.WIMZ_SOCKET_BUFFER_BYTES:
            reply_to = message.get("reply_to")
            if reply_to:
                await delivery.control(reply_to, "shed", ref=message.get("ref"), count=1)
            else:
                logger.warning("relayed frame not written: socket not draining and no sender to tell")
            return
        await self.send_text(message["text"])

    async def relay_device(self, message: DeviceMessage) -> None:
        """`relay.device`: a change of one of the user's devices; then its `device_status`, if any."""
        if self.party is not None and self.party.role == APP:
            apply_device_update(self.party, message)
        if "text" in message:
            await self.send_text(message["text"])

    async def relay_owner(self, message: OwnerMessage) -> None:
        """`relay.owner`: this robot's owner changed (None: unpaired)."""
        if self.party is not None and self.party.role == ROBOT:
            self.party.owner_id = message["owner_id"]

    async def relay_session_open(self, message: SessionOpenMessage) -> None:
        """`relay.session_open`: an app opened a session with this robot; write its `webrtc_request`."""
        if self.party is not None and self.party.role == ROBOT:
            await self.send_text(sessions.opened_by_app(self.party, message))

    async def relay_session_end(self, message: SessionEndMessage) -> None:
        """`relay.session_end`: a session of this socket ended; write its `webrtc_close`."""
        if self.party is not None:  # None while this instance shuts down: the close is still written
            await sessions.ended_elsewhere(self.party, message)
        await self.send_text(message["text"])

    async def relay_shed(self, message: ShedMessage) -> None:
        """`relay.shed`: frames this socket sent were not delivered (receiver full): RATE_LIMITED."""
        count = message.get("count", 1)
        metrics.REFUSED[Code.RATE_LIMITED].inc()
        await self.send_frame(
            error_frame(
                Code.RATE_LIMITED,
                f"frame not delivered to {count} socket(s): receiver not keeping up",
                message.get("ref"),
            )
        )

    async def relay_fenced(self, message: CloseMessage) -> None:
        """`relay.fenced`: this instance was declared dead while paused and its sockets were cleaned up
        after; close with 1012 so the client reconnects (docs/protocol.md §19.3)."""
        self.closing = True
        await self.close(code=1012)

    async def relay_replaced(self, message: CloseMessage) -> None:
        """`relay.replaced`: a newer socket for this device took over; close with 4009."""
        self.closing = True
        await self.close(code=CloseCode.REPLACED)

    async def relay_revoked(self, message: CloseMessage) -> None:
        """`relay.revoked`: the device was deactivated or its secret rotated, or the app's user was
        deactivated, or (with `login_id`) the login this app socket runs on was logged out; close with 4003."""
        login_id = message.get("login_id")
        if login_id is not None and (self.party is None or self.party.login_id != login_id):
            return  # another login of the same user
        self.closing = True
        await self.close(code=CloseCode.AUTH_FAILED)

    async def send_frame(self, frame: Frame) -> None:
        """Send one JSON frame; a socket already gone is not an error (field report F1)."""
        await self.send_text(delivery.encode(frame))  # a frame that cannot be serialised is a bug: let it surface

    async def send_text(self, text: str) -> None:
        """Write one text frame; a socket already gone is not an error. A socket whose client has left
        more than four times `WIMZ_SOCKET_BUFFER_BYTES` unread is closed 4008 instead (it does not read
        what the relay answers it; docs/protocol.md §16)."""
        buffered = self.scope.get(TRANSPORT_BUFFERED_KEY)
        if buffered is not None and buffered() > 4 * settings.WIMZ_SOCKET_BUFFER_BYTES:
            if not self.closing:
                self.closing = True
                logger.warning("closing a %s socket that does not read (4008)", self.party.role if self.party else "?")
                with contextlib.suppress(Exception):
                    await self.close(code=CloseCode.NOT_DRAINING)
            return
        with contextlib.suppress(Exception):
            await self.send(text_data=text)

    # --- close -------------------------------------------------------------------------------------

    async def disconnect(self, code: int) -> None:
        """Clean up whatever happens: timers cancelled, presence closed, sessions ended and announced."""
        await self._cleanup(code)

    async def _cleanup(self, code: int, reason: str | None = None) -> list[SessionRef]:
        for task in list(getattr(self, "tasks", ())):
            task.cancel()
        if getattr(self, "unauthenticated_from", None) is not None:
            self._release_address()
        party = getattr(self, "party", None)
        self.party = None  # clean up once, whichever of disconnect/shutdown comes first
        _open_consumers.discard(self)
        if party is None:
            self._forget_channel(code)
            return []
        try:
            if party.role == ROBOT:
                return await connections.robot_disconnected(party, code, **({"reason": reason} if reason else {}))
            return await connections.app_disconnected(party, code, **({"reason": reason} if reason else {}))
        except Exception:
            logger.exception("cleanup after %s disconnect failed", party.role)
            return []
        finally:
            self._forget_channel(code)

    def _forget_channel(self, code: int) -> None:
        """After the socket closed (not on shutdown's first step), drop this consumer's channel queue."""
        if code != 1012 and getattr(self, "channel_name", None):
            delivery.forget_channel(self.channel_name)

    async def shutdown_sessions(self) -> None:
        """This instance is stopping: end this socket's sessions `server_shutdown` (docs/protocol.md §13).

        The other party of each session gets `webrtc_close` with reason `server_shutdown` through the
        channel layer (it may be on another instance, or on this one and still open); this socket gets
        it directly.
        """
        self.closing = True  # frames arriving until the socket closes are ignored, never re-authenticated
        ended = await self._cleanup(1012, reason=Session.EndReason.SERVER_SHUTDOWN)
        for ref in ended:
            await self.send_frame(
                {"type": "webrtc_close", "session_id": ref.session_id, "reason": Session.EndReason.SERVER_SHUTDOWN}
            )

    async def shutdown_close(self) -> None:
        """Close the socket with 1012 (service restart): the client should reconnect, to another instance."""
        self.closing = True
        with contextlib.suppress(Exception):
            await self.close(code=1012)


def _retrieve(task: asyncio.Future[_T]) -> None:
    """Done callback: take a finished task's exception so asyncio does not log it as never retrieved."""
    if not task.cancelled():
        task.exception()


# Consumers of this process with an authenticated socket, for `shutdown_all` only. Not routing state:
# routing never reads it; it exists because daphne's own shutdown (cancelling each application) cannot
# be relied on to reach the consumer — a cancellation that lands inside a channel layer's blocking receive
# can be swallowed, and the process then hangs until it is killed.
_open_consumers: "weakref.WeakSet[RelayConsumer]" = weakref.WeakSet()


async def shutdown_all(timeout: float = 5.0, settle: float = 0.3) -> int:
    """Shut down every open socket of this process, bounded by `timeout` seconds per step.

    Step 1 ends every socket's sessions `server_shutdown` and announces them; after `settle` seconds —
    time for announcements between two sockets of this same process to arrive — step 2 closes every
    socket with 1012. Called by `wimz.serve` when daphne stops (SIGTERM). Returns how many sockets.
    """
    consumers = list(_open_consumers)
    if not consumers:
        return 0
    for step in ("shutdown_sessions", "shutdown_close"):
        results = await asyncio.wait_for(
            asyncio.gather(*(getattr(c, step)() for c in consumers), return_exceptions=True), timeout
        )
        for result in results:
            if isinstance(result, Exception):
                logger.warning("%s of a socket failed: %s", step, type(result).__name__)
        if step == "shutdown_sessions":
            await asyncio.sleep(settle)
    return len(consumers)


class RobotConsumer(RelayConsumer):
    """`/ws/device`: a robot authenticated by its HMAC handshake."""

    route_role = ROBOT


class AppConsumer(RelayConsumer):
    """`/ws/app`: an app authenticated by its access JWT."""

    route_role = APP


class CompatConsumer(RelayConsumer):
    """`/ws` (compat): robot or app, identified by an in-band `auth` first frame."""

    route_role = None


class UnknownPathConsumer(AsyncWebsocketConsumer):
    """Any other WebSocket path: the handshake is refused (HTTP 403) and nothing else happens."""

    async def connect(self) -> None:
        logger.info("websocket handshake refused: unknown path")
        metrics.handshake_refused("unknown", "path")
        await self.close()
