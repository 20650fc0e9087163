"""Channel layers whose `group_send` reports what it could not deliver.

Both stock layers drop a group message for a member whose channel is full and tell nobody
(InMemoryChannelLayer swallows `ChannelFull`; channels-redis logs "N of M channels over capacity" at
INFO). Field report F2 forbids silent loss, so these subclasses raise `GroupSendShed` (a
`ChannelFull`) after delivering to every member that had room; `relay.signaling` turns it into
`RATE_LIMITED` for the sender.

Why group_send at all (rather than one `send()` per member): channels-redis packs one message per
relay process for all of a group's members on that process, instead of one per socket, and the
receiving process drains its queue one message at a time. Per-socket sends made a 50-socket
fan-out at 20 events/s (field report F3) queue for seconds; see bench/README.md.
"""

import contextvars
import logging

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer
from channels_redis.core import RedisChannelLayer


class GroupSendShed(ChannelFull):
    """`group_send` delivered to the members that had room; `shed` members' channels were full."""

    def __init__(self, shed: int):
        super().__init__(f"{shed} group member channel(s) full")
        self.shed = shed


class RelayInMemoryChannelLayer(InMemoryChannelLayer):
    """In-memory layer (one process, the embedded default) whose `group_send` raises `GroupSendShed`."""

    async def group_send(self, group, message):
        """Send `message` to every member of `group` in turn; raise `GroupSendShed` if any was full."""
        assert isinstance(message, dict), "Message is not a dict"
        self.require_valid_group_name(group)
        self._clean_expired()
        shed = 0
        for channel in list(self.groups.get(group, {})):
            try:
                await self.send(channel, message)
            except ChannelFull:
                shed += 1
        if shed:
            raise GroupSendShed(shed)


# channels-redis 4.3 reports full members only through this log record (core.py, group_send):
# "%s of %s channels over capacity in group %s". The probe below catches it while one of our
# group_send calls runs (a context variable scopes it to that call) and turns it into an exception.
# tests/relay/test_layers.py fails if a channels-redis upgrade changes the record.
_OVER_CAPACITY_MSG = "%s of %s channels over capacity in group %s"
_shed_sink: contextvars.ContextVar[list | None] = contextvars.ContextVar("wimz_group_shed", default=None)


class _OverCapacityProbe(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        sink = _shed_sink.get()
        if sink is not None and record.msg == _OVER_CAPACITY_MSG and record.args:
            sink.append(int(record.args[0]))
            return False  # reported to the sender as RATE_LIMITED instead of an INFO line
        return True


_probe_installed = False


def _install_probe() -> None:
    global _probe_installed
    if _probe_installed:
        return
    logger = logging.getLogger("channels_redis.core")
    logger.addFilter(_OverCapacityProbe())
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)  # the record must be created for the probe to see it
    _probe_installed = True


class RelayRedisChannelLayer(RedisChannelLayer):
    """channels-redis layer whose `group_send` raises `GroupSendShed` when members were over capacity."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _install_probe()

    async def group_send(self, group, message):
        """channels-redis `group_send`; raise `GroupSendShed` when some members' channels were full."""
        sink: list[int] = []
        token = _shed_sink.set(sink)
        try:
            await super().group_send(group, message)
        finally:
            _shed_sink.reset(token)
        if sink:
            raise GroupSendShed(sum(sink))
