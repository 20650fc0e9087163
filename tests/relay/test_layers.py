"""relay.layers: group_send never loses a message silently (field report F2)."""

import os
import uuid

import pytest

from relay.layers import GroupSendShed, RelayInMemoryChannelLayer, RelayRedisChannelLayer


async def _fill_and_overflow(layer) -> tuple[str, str]:
    """A group of two members: `full` never reads (capacity 2), `reader` drains. Returns their names.

    Plain channel names, so that on Redis each has its own queue (process-local `specific.…!` names
    share one queue per process).
    """
    full, reader = f"full.{uuid.uuid4().hex}", f"reader.{uuid.uuid4().hex}"
    for channel in (full, reader):
        await layer.group_add("owner.1.apps", channel)
    for i in range(2):
        await layer.group_send("owner.1.apps", {"type": "relay.frame", "n": i})
        assert (await layer.receive(reader))["n"] == i
    return full, reader


async def test_in_memory_group_send_reports_full_members_and_still_delivers_to_the_rest():
    """With one member's channel full, group_send raises GroupSendShed(1) after delivering to the other."""
    layer = RelayInMemoryChannelLayer(capacity=2)
    full, reader = await _fill_and_overflow(layer)
    with pytest.raises(GroupSendShed) as shed:
        await layer.group_send("owner.1.apps", {"type": "relay.frame", "n": 2})
    assert shed.value.shed == 1
    assert (await layer.receive(reader))["n"] == 2


async def test_redis_group_send_reports_full_members(require_services):
    """channels-redis only logs an over-capacity member; the relay's layer raises GroupSendShed instead,
    after the members with room got the message. Fails if a channels-redis upgrade changes the report.
    """
    layer = RelayRedisChannelLayer(
        hosts=[{"address": os.environ["REDIS_URL"]}], prefix=f"wimzlayer{uuid.uuid4().hex[:8]}", capacity=2
    )
    try:
        full, reader = await _fill_and_overflow(layer)
        with pytest.raises(GroupSendShed) as shed:
            await layer.group_send("owner.1.apps", {"type": "relay.frame", "n": 2})
        assert shed.value.shed >= 1
        assert (await layer.receive(reader))["n"] == 2
    finally:
        await layer.flush()
        await layer.close_pools()


async def test_redis_group_send_without_overflow_raises_nothing(require_services):
    """A group whose members all have room delivers to every member and raises nothing."""
    layer = RelayRedisChannelLayer(hosts=[{"address": os.environ["REDIS_URL"]}],
                                   prefix=f"wimzlayer{uuid.uuid4().hex[:8]}", capacity=100)
    try:
        a, b = await layer.new_channel(), await layer.new_channel()
        for channel in (a, b):
            await layer.group_add("owner.2.apps", channel)
        await layer.group_send("owner.2.apps", {"type": "relay.frame", "n": 1})
        assert (await layer.receive(a))["n"] == 1 and (await layer.receive(b))["n"] == 1
    finally:
        await layer.flush()
        await layer.close_pools()
