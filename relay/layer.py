"""The relay's channel layer: in-process delivery, and Redis pub/sub between instances.

A Channels layer (`send`, `receive`, `new_channel`, `group_add`, `group_discard`, `group_send`,
`flush`) built for the relay's per-frame path (docs/architecture.md "Delivery between instances"):

- **Same instance**: a message for a channel of this process is put straight into that channel's
  bounded queue. It never leaves the process.
- **Other instance**: every process subscribes to one Redis pub/sub channel of its own
  (`<prefix>:p:<instance>`); a channel name carries its process's instance id
  (`specific.<instance>!<random>`), so a `send()` to it costs one `PUBLISH`. Concurrent publishes are
  pipelined: while one batch is in flight the next accumulates.
- **Groups**: members are kept by the process that hosts them; a process with members subscribes to
  `<prefix>:g:<group>`. `group_send` delivers to local members directly and publishes once for the
  other instances — only when another instance may have members (it announced itself when it
  subscribed; a publish that reaches nobody else clears the mark). So a group with all members on
  this process costs no Redis round trip, and one with members elsewhere costs one.
- **Bounded, never silent**: each channel queue holds at most `capacity` frames and `capacity_bytes`
  of frame text. A full local queue raises `ChannelFull` (`GroupSendShed` for groups, after the
  members with room got the message). A message that arrives from another instance for a full queue
  is answered with `{"type": "relay.shed", ...}` to the channel named in its `reply_to`, so the
  sender learns it was not delivered. A `send()` to a channel whose process is gone (no subscriber)
  or whose consumer has left raises `ChannelGone` (a `ChannelFull`).

Without `redis_url` (the embedded default) the layer is the in-process part alone, for one instance.

Which socket may receive what is not decided here: the layer keeps only queues and group members,
the delivery state any Channels layer keeps; routing rules live in `relay.messaging` and `relay.sessions`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import secrets
import uuid
from collections import deque
from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, TypeAlias, cast

from channels.exceptions import ChannelFull
from channels.layers import BaseChannelLayer

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.client import PubSub

# A channel-layer message: a `type` and JSON-serialisable fields. The layer only reads it (it queues
# the very object it was given), so it takes any mapping — `relay.delivery`'s TypedDicts among them.
Message: TypeAlias = Mapping[str, Any]
# A batch entry of `_Publisher`: Redis channel, payload, and the future that gets the receiver count.
_Publish: TypeAlias = tuple[str, bytes, "asyncio.Future[int]"]

logger = logging.getLogger(__name__)

_ENVELOPE_SEP = b"\n"


class GroupSendShed(ChannelFull):
    """`group_send` delivered to the members that had room; `shed` members' channels were full."""

    def __init__(self, shed: int):
        super().__init__(f"{shed} group member channel(s) full")
        self.shed = shed


class ChannelGone(ChannelFull):
    """The channel's consumer has left, or the process that hosted it no longer listens."""


class LayerUnavailable(ChannelFull):
    """Redis could not be reached (restarted, network): the message was not sent."""


class _Queue:
    """One channel's bounded FIFO with a single waiting receiver."""

    __slots__ = ("bytes", "items", "waiter")

    def __init__(self) -> None:
        self.items: deque[Message] = deque()
        self.bytes = 0
        self.waiter: asyncio.Future[None] | None = None


def encode_envelope(target: str, origin: str, message: Message, ack: str | None = None) -> bytes:
    """Pack `message` for Redis: a JSON header line, then the frame text (if any) as raw UTF-8.

    `target` is a channel or group name, `origin` the sending instance id, `ack` an optional Redis list
    key the receiver pushes to once it has queued the message. The frame text is appended unescaped,
    so a relayed frame is never JSON-encoded twice.
    """
    text = message.get("text")
    if isinstance(text, str):
        rest = {k: v for k, v in message.items() if k != "text"}
        header = json.dumps([target, origin, ack, rest, True], separators=(",", ":"))
        return header.encode() + _ENVELOPE_SEP + text.encode("utf-8")
    return json.dumps([target, origin, ack, message, False], separators=(",", ":")).encode()


def decode_envelope(data: bytes) -> tuple[str, str, str | None, dict[str, Any]]:
    """Inverse of `encode_envelope`: `(target, origin, ack, message)`. Raises ValueError on garbage."""
    head, _, text = data.partition(_ENVELOPE_SEP)
    target, origin, ack, message, has_text = json.loads(head)
    if has_text:
        message["text"] = text.decode("utf-8")
    return target, origin, ack, message


class RelayChannelLayer(BaseChannelLayer):
    """Channels layer: in-process queues, plus Redis pub/sub across instances when `redis_url` is set.

    Config (settings `CHANNEL_LAYERS["default"]["CONFIG"]`): `redis_url` (None: one process only),
    `prefix` (Redis channel prefix), `capacity` (frames per channel queue), `capacity_bytes` (frame
    text bytes per queue), `socket_timeout` (seconds, Redis connections). Control messages (no `text`)
    may use up to twice `capacity`, so state changes are not lost behind a backlog of frames.
    """

    extensions: ClassVar[list[str]] = ["groups", "flush"]

    def __init__(
        self,
        redis_url: str | None = None,
        prefix: str = "wimz",
        capacity: int = 2000,
        capacity_bytes: int = 8 * 1024 * 1024,
        expiry: int = 60,
        socket_timeout: float = 15.0,
        **kwargs: Any,
    ):
        super().__init__(expiry=expiry, capacity=capacity)
        self.redis_url = redis_url
        self.prefix = prefix
        self.capacity_bytes = capacity_bytes
        self.socket_timeout = socket_timeout
        self.instance = uuid.uuid4().hex[:16]
        self.channel_prefix = f"specific.{self.instance}!"
        self.queues: dict[str, _Queue] = {}
        self.groups: dict[str, set[str]] = {}
        self.channel_groups: dict[str, set[str]] = {}  # the groups each local channel is in
        self.remote_interest: set[str] = set()  # groups another instance may have members of
        self._clients: dict[asyncio.AbstractEventLoop, tuple[Redis, _Publisher]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._commands: asyncio.Queue[tuple[str, str]] = asyncio.Queue()  # ("subscribe" | "unsubscribe", key)
        self._subscribed: set[str] = set()
        self._pending_subs: dict[str, asyncio.Future[None]] = {}
        self._ready: asyncio.Future[None] | None = None
        self._background: set[asyncio.Task[None]] = set()  # `_in_background` tasks not yet done

    # --- names -------------------------------------------------------------------------------------

    def _process_key(self, instance: str) -> str:
        return f"{self.prefix}:p:{instance}"

    def _group_key(self, group: str) -> str:
        return f"{self.prefix}:g:{group}"

    def is_local(self, channel: str) -> bool:
        """True when `channel` belongs to a consumer of this process."""
        return channel.startswith(self.channel_prefix)

    # --- channels ----------------------------------------------------------------------------------

    async def new_channel(self, prefix: str = "specific") -> str:
        """A new channel of this process (`specific.<instance>!<random>`), listening before it returns."""
        name = self.channel_prefix + secrets.token_hex(8)
        self.queues[name] = _Queue()
        if self.redis_url:
            await self._ensure_reader()
        return name

    def discard_channel(self, channel: str) -> None:
        """Forget a channel whose consumer has ended: its queue is dropped, later sends raise `ChannelGone`."""
        queue = self.queues.pop(channel, None)
        if queue is not None and queue.waiter is not None and not queue.waiter.done():
            queue.waiter.cancel()
        for group in list(self.channel_groups.get(channel, ())):
            self._leave(group, channel)

    def _put(self, channel: str, message: Message) -> None:
        """Queue `message` for a local channel. Raises `ChannelGone` / `ChannelFull`."""
        queue = self.queues.get(channel)
        if queue is None:
            raise ChannelGone(channel)
        text = message.get("text")
        size = len(text) if isinstance(text, str) else 0
        limit = self.capacity if size else 2 * self.capacity
        if len(queue.items) >= limit or (size and queue.bytes + size > self.capacity_bytes):
            raise ChannelFull(channel)
        queue.items.append(message)
        queue.bytes += size
        waiter = queue.waiter
        if waiter is not None and not waiter.done():
            queue.waiter = None
            loop = waiter.get_loop()
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if loop is running:
                waiter.set_result(None)
            else:
                loop.call_soon_threadsafe(_wake, waiter)

    async def send(self, channel: str, message: Message) -> None:
        """Deliver `message` to `channel`: in process when local, one Redis PUBLISH otherwise.

        Raises `ChannelFull` (local queue full), `ChannelGone` (no such consumer / process).
        """
        if self.is_local(channel):
            self._put(channel, message)
            return
        if not self.redis_url:
            raise ChannelGone(channel)
        instance = channel[len("specific.") :].partition("!")[0]
        receivers = await self._publish(self._process_key(instance), encode_envelope(channel, self.instance, message))
        if not receivers:
            raise ChannelGone(channel)

    async def receive(self, channel: str) -> dict[str, Any]:
        """The next message of local `channel` (waits). Raises `ChannelGone` once the channel is discarded."""
        await self.wait_ready(channel)
        # Not None: `wait_ready` returned with a message queued, and nothing ran since. The message is
        # the sender's own object, a dict (a TypedDict of relay.delivery, or one `decode_envelope` made).
        return cast(dict[str, Any], self.receive_nowait(channel))

    async def wait_ready(self, channel: str) -> None:
        """Wait until local `channel` has a message, without taking it (see `receive_nowait`).
        Raises `ChannelGone` for a channel that does not exist (or is discarded while waiting)."""
        queue = self.queues.get(channel)
        if queue is None:
            raise ChannelGone(channel)
        while not queue.items:
            waiter = asyncio.get_running_loop().create_future()
            queue.waiter = waiter
            try:
                await waiter
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if self.queues.get(channel) is not queue and not (task is not None and task.cancelling()):
                    raise ChannelGone(channel) from None  # discarded while waiting (not a cancel of this task)
                raise
            finally:
                if queue.waiter is waiter:
                    queue.waiter = None

    def ready_future(self, channel: str) -> asyncio.Future[None]:
        """A future that is done once local `channel` has a message (at once if it has one); cancelled
        when the channel is discarded. Lighter than a task running `wait_ready` — one per idle socket."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self.queues.get(channel)
        if queue is None:
            future.cancel()
        elif queue.items:
            future.set_result(None)
        else:
            queue.waiter = future
        return future

    def receive_nowait(self, channel: str) -> Message | None:
        """The next message already queued for local `channel`, or None (never waits)."""
        queue = self.queues.get(channel)
        if queue is None or not queue.items:
            return None
        message = queue.items.popleft()
        text = message.get("text")
        if isinstance(text, str):
            queue.bytes -= len(text)
        return message

    # --- groups ------------------------------------------------------------------------------------

    async def group_add(self, group: str, channel: str) -> None:
        """Add local `channel` to `group`; the first local member subscribes this process to the group."""
        self.require_valid_group_name(group)
        members = self.groups.setdefault(group, set())
        first = not members
        members.add(channel)
        self.channel_groups.setdefault(channel, set()).add(group)
        if first and self.redis_url:
            await self._subscribe(self._group_key(group))
            # Tell the instances that already have members that this one has some now.
            others = await self._publish(
                self._group_key(group), encode_envelope(group, self.instance, {"type": "__interest"})
            )
            if others > 1:
                self.remote_interest.add(group)

    async def group_discard(self, group: str, channel: str) -> None:
        """Remove `channel` from `group`; the last local member unsubscribes this process."""
        self._leave(group, channel)

    def _leave(self, group: str, channel: str) -> None:
        joined = self.channel_groups.get(channel)
        if joined is not None:
            joined.discard(group)
            if not joined:
                del self.channel_groups[channel]
        members = self.groups.get(group)
        if not members or channel not in members:
            return
        members.discard(channel)
        if not members:
            del self.groups[group]
            self.remote_interest.discard(group)
            if self.redis_url:
                key = self._group_key(group)
                self._subscribed.discard(key)
                self._commands.put_nowait(("unsubscribe", key))

    async def group_send(self, group: str, message: Message) -> None:
        """Deliver to every member of `group` on every instance.

        Local members first (in process); then one PUBLISH when other instances may have members.
        Raises `GroupSendShed` when local members' queues were full (the rest got it); full members on
        other instances are reported to `message["reply_to"]` as `relay.shed`.
        """
        shed = self._deliver_local_group(group, message)
        if self.redis_url and (group not in self.groups or group in self.remote_interest):
            receivers = await self._publish(self._group_key(group), encode_envelope(group, self.instance, message))
            if group in self.groups and receivers <= 1:
                self.remote_interest.discard(group)  # only we listen now
        if shed:
            raise GroupSendShed(shed)

    def _deliver_local_group(self, group: str, message: Message) -> int:
        shed = 0
        for channel in tuple(self.groups.get(group, ())):
            try:
                self._put(channel, message)
            except ChannelFull:
                shed += 1
        return shed

    async def disconnect_instance(self, instance: str) -> int:
        """Close the Redis subscription of relay process `instance` (found dead): from then on publishes
        to it reach nobody, so sends to its channels fail at once instead of waiting in a paused
        process, and confirmations do not wait for it. Returns connections closed."""
        if not self.redis_url:
            return 0
        client, _ = self._client()
        name = f"{self.prefix}-reader-{instance}"
        closed = 0
        for entry in await client.client_list(_type="pubsub"):
            if entry.get("name") == name:
                closed += int(await client.client_kill_filter(_id=entry["id"]) or 0)
        return closed

    async def ping(self) -> None:
        """Check Redis (a PING, and that this process's subscription is up); nothing without Redis."""
        if self.redis_url:
            client, _ = self._client()
            await client.ping()
            await self._ensure_reader()

    async def flush(self) -> None:
        """Drop every queue and group of this process (tests)."""
        self.queues.clear()
        self.groups.clear()
        self.channel_groups.clear()
        self.remote_interest.clear()

    async def send_confirmed(self, channel: str, message: Message, timeout: float = 1.0) -> bool:
        """`send`, then wait (up to `timeout` s) until the receiving process has queued it.

        For ownership changes that must take effect before the REST call that made them returns
        (docs/architecture.md "Ownership changes across instances"). Returns False when it did not come in time.
        """
        if self.is_local(channel) or not self.redis_url:
            await self.send(channel, message)
            return True
        ack = f"{self.prefix}:ack:{secrets.token_hex(8)}"
        instance = channel[len("specific.") :].partition("!")[0]
        receivers = await self._publish(
            self._process_key(instance), encode_envelope(channel, self.instance, message, ack)
        )
        if not receivers:
            raise ChannelGone(channel)
        try:
            return await self._await_acks(ack, 1, timeout)
        except _redis_errors():
            return False

    async def group_send_confirmed(self, group: str, message: Message, timeout: float = 1.0) -> bool:
        """`group_send`, then wait (up to `timeout` s) until every listening instance has queued it.

        Returns False when some confirmation did not come in time. Shed members are not an error here.
        """
        self._deliver_local_group(group, message)
        if not self.redis_url:
            return True
        ack = f"{self.prefix}:ack:{secrets.token_hex(8)}"
        receivers = await self._publish(self._group_key(group), encode_envelope(group, self.instance, message, ack))
        expected = receivers - (1 if group in self.groups else 0)
        if expected <= 0:
            return True
        try:
            return await self._await_acks(ack, expected, timeout)
        except _redis_errors():
            return False

    async def _await_acks(self, key: str, expected: int, timeout: float) -> bool:
        client, _ = self._client()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        got = 0
        try:
            while got < expected:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return False
                if await client.blpop([key], timeout=max(0.01, min(remaining, 1.0))):
                    got += 1
        finally:
            with contextlib.suppress(Exception):
                await client.delete(key)
        return True

    # --- Redis -------------------------------------------------------------------------------------

    def _client(self) -> tuple[Redis, _Publisher]:
        import redis.asyncio as redis

        loop = asyncio.get_running_loop()
        entry = self._clients.get(loop)
        if entry is None:
            # `cast`: every caller runs only with `redis_url` set.
            client = redis.Redis.from_url(
                cast(str, self.redis_url), socket_timeout=self.socket_timeout, socket_connect_timeout=5
            )
            entry = (client, _Publisher(client))
            self._clients[loop] = entry
        return entry

    async def _publish(self, key: str, payload: bytes) -> int:
        """PUBLISH (pipelined); returns the receivers. Raises `LayerUnavailable` when Redis is unreachable."""
        _, publisher = self._client()
        try:
            return await publisher.publish(key, payload)
        except _redis_errors() as exc:
            raise LayerUnavailable(type(exc).__name__) from exc

    async def _ensure_reader(self, timeout: float = 5.0) -> None:
        """Start this process's subscription if needed and wait (up to `timeout` s) until it is up.
        Raises `ConnectionError` when Redis cannot be reached in time."""
        if self._reader is None or self._reader.done():
            loop = asyncio.get_running_loop()
            self._ready = loop.create_future()
            # An empty context: the reader serves the whole process, so its log lines must not carry the
            # ids bound by the socket whose first message happened to start it (core.logformat).
            self._reader = loop.create_task(self._read_forever(), context=contextvars.Context())
        try:
            # `cast`: `_ready` is set whenever `_reader` is.
            await asyncio.wait_for(asyncio.shield(cast("asyncio.Future[None]", self._ready)), timeout)
        except TimeoutError:
            raise ConnectionError("channel layer: Redis subscription not ready") from None

    async def _subscribe(self, key: str) -> None:
        """Subscribe this process to `key`; returns once Redis confirmed it (or after 5 s)."""
        await self._ensure_reader()
        future = self._pending_subs.get(key)
        if key not in self._subscribed:
            self._subscribed.add(key)
            future = asyncio.get_running_loop().create_future()
            self._pending_subs[key] = future
            self._commands.put_nowait(("subscribe", key))
        if future is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(future), 5.0)

    async def _write_commands(self, pubsub: PubSub) -> None:
        """(Un)subscribe in the order asked, on the reader's connection, so a quick leave-and-rejoin
        of a group can never end unsubscribed."""
        while True:
            command, key = await self._commands.get()
            try:
                if command == "subscribe":
                    await pubsub.subscribe(key)
                elif key not in self._subscribed:
                    await pubsub.unsubscribe(key)
            except Exception as exc:
                # The connection is broken: close it, so that the reader reconnects and subscribes to
                # everything in `_subscribed` again (this key included).
                logger.warning("channel layer could not %s (%s); reconnecting", command, type(exc).__name__)
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                return

    async def _read_forever(self) -> None:
        import redis.asyncio as redis

        backoff = 0.1
        writer = None
        reconnected = False
        while True:
            # `cast`: the reader is started only with `redis_url` set (`_ensure_reader`'s callers).
            client = redis.Redis.from_url(
                cast(str, self.redis_url),
                socket_timeout=None,
                socket_connect_timeout=5,
                client_name=f"{self.prefix}-reader-{self.instance}",
            )
            pubsub = client.pubsub()
            try:
                own = self._process_key(self.instance)
                keys = [own, *sorted(self._subscribed)]
                for key in keys:
                    self._pending_subs.setdefault(key, asyncio.get_running_loop().create_future())
                await pubsub.subscribe(*keys)
                writer = asyncio.ensure_future(self._write_commands(pubsub))
                if reconnected:
                    await self._announce_groups()
                reconnected = True
                while True:
                    item = await pubsub.get_message(timeout=None)
                    if item is None:
                        continue
                    kind = item.get("type")
                    if kind == "message":
                        self._dispatch(item["data"])
                    elif kind == "subscribe":
                        self._subscription_confirmed(item["channel"].decode(), own)
                        backoff = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis gone or restarted: resubscribe, and say so
                logger.warning("channel layer lost its Redis subscription (%s); reconnecting", type(exc).__name__)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
            finally:
                if writer is not None:
                    writer.cancel()
                    writer = None
                self._commands = asyncio.Queue()  # the new connection subscribes to `_subscribed` afresh
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                with contextlib.suppress(Exception):
                    await client.aclose()

    def _subscription_confirmed(self, key: str, own: str) -> None:
        """Redis confirmed the subscription to `key`: wake its `_subscribe` waiter, and once this process's
        own key (`own`) is subscribed, `_ensure_reader`'s."""
        future = self._pending_subs.pop(key, None)
        if future is not None and not future.done():
            future.set_result(None)
        if key == own and self._ready is not None and not self._ready.done():
            self._ready.set_result(None)

    async def _announce_groups(self) -> None:
        """After a lost subscription: other instances may have stopped publishing to our groups, and
        we may have missed their announcements — announce ours again and publish to all of them until
        a publish shows that nobody else listens."""
        self.remote_interest.update(self.groups)
        for group in list(self.groups):
            await self._publish(self._group_key(group), encode_envelope(group, self.instance, {"type": "__interest"}))

    def _dispatch(self, data: bytes) -> None:
        """One message from Redis: queue it for its local channel or group members; report sheds."""
        try:
            target, origin, ack, message = decode_envelope(data)
        except (ValueError, TypeError, UnicodeDecodeError):
            logger.warning("channel layer ignored a malformed Redis message")
            return
        if target.startswith("specific."):
            try:
                self._put(target, message)
                shed = 0
            except ChannelFull:
                shed = 1
        elif origin == self.instance:
            return  # our own group publish: local members already have it
        elif message.get("type") == "__interest":
            self.remote_interest.add(target)
            return
        else:
            self.remote_interest.add(target)  # an instance sending to the group may host members too
            shed = self._deliver_local_group(target, message)
        if ack:
            self._in_background(self._ack(ack))
        if shed:
            self._report_shed(message, shed)

    def _report_shed(self, message: Message, shed: int) -> None:
        reply_to = message.get("reply_to")
        if not reply_to:
            logger.warning("%s message shed for %d full channel(s); no sender to tell", message.get("type"), shed)
            return
        notice = {"type": "relay.shed", "ref": message.get("ref"), "count": shed}
        self._in_background(self.send(reply_to, notice))

    async def _ack(self, key: str) -> None:
        client, _ = self._client()
        pipe = client.pipeline(transaction=False)
        pipe.rpush(key, 1)
        pipe.expire(key, 10)
        await pipe.execute()

    def _in_background(self, coro: Awaitable[None]) -> None:
        """Run `coro` as a task whose failure is only logged (`_quiet`), referenced until it is done: the
        event loop keeps only a weak reference to a task, which could otherwise be collected mid-flight."""
        task = asyncio.ensure_future(self._quiet(coro))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @staticmethod
    async def _quiet(coro: Awaitable[None]) -> None:
        try:
            await coro
        except Exception as exc:
            logger.warning("channel layer background call failed: %s", type(exc).__name__)

    async def close(self) -> None:
        """Stop listening and close Redis connections (tests, shutdown)."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader
            self._reader = None
        for client, _ in list(self._clients.values()):
            with contextlib.suppress(Exception):
                await client.aclose()
        self._clients.clear()


def _redis_errors() -> tuple[type[Exception], ...]:
    """The exceptions that mean Redis could not be reached (redis-py's and the OS's)."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class _Publisher:
    """PUBLISH with automatic pipelining: calls made while a batch is in flight go out together."""

    def __init__(self, client: Redis) -> None:
        self.client = client
        self.pending: list[_Publish] = []
        self.flushing = False
        self._flusher: asyncio.Task[None] | None = None  # referenced: the loop keeps tasks weakly

    async def publish(self, key: str, payload: bytes) -> int:
        """Publish `payload` on `key`; returns how many subscribers received it."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.pending.append((key, payload, future))
        if not self.flushing:
            self.flushing = True
            self._flusher = asyncio.ensure_future(self._flush())
        return await future

    async def _flush(self) -> None:
        try:
            while self.pending:
                batch, self.pending = self.pending, []
                try:
                    results = await self._send(batch)
                except _redis_errors():
                    # A pooled connection that broke (Redis restarted) fails its first use; the client
                    # reconnects on the next one. A broken send did not reach Redis: try once more.
                    try:
                        results = await self._send(batch)
                    except Exception as exc:
                        results = [exc] * len(batch)
                except Exception as exc:
                    results = [exc] * len(batch)
                for (_, _, future), result in zip(batch, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(int(result))
        finally:
            self.flushing = False

    async def _send(self, batch: list[_Publish]) -> list[int | Exception]:
        if len(batch) == 1:
            return [await self.client.publish(batch[0][0], batch[0][1])]
        pipe = self.client.pipeline(transaction=False)
        for key, payload, _ in batch:
            pipe.publish(key, payload)
        return await pipe.execute(raise_on_error=False)
