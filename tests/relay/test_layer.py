"""relay.layer: in-process delivery, Redis between instances, bounded queues, no silent loss.

Each test drives the layer directly (no socket). Two layer objects with the same Redis prefix stand
for two relay instances.
"""

import asyncio
import os
import uuid

import pytest
from channels.exceptions import ChannelFull

from relay.layer import ChannelGone, GroupSendShed, RelayChannelLayer, decode_envelope, encode_envelope


def _pair(capacity=100, **kwargs):
    prefix = f"wimztest{uuid.uuid4().hex[:8]}"
    url = os.environ["REDIS_URL"]
    return (
        RelayChannelLayer(redis_url=url, prefix=prefix, capacity=capacity, **kwargs),
        RelayChannelLayer(redis_url=url, prefix=prefix, capacity=capacity, **kwargs),
    )


async def _close(*layers):
    for layer in layers:
        await layer.close()


def test_envelope_round_trip_keeps_frame_text_byte_for_byte():
    """The frame text travels unescaped after a JSON header; other messages are one JSON document."""
    text = '{"type":"telemetry","note":"line\\nbreak ü","n":1}'
    data = encode_envelope("specific.a!b", "inst", {"type": "relay.frame", "text": text, "sid": "s"}, "ack:1")
    assert data.endswith(text.encode())
    assert decode_envelope(data) == ("specific.a!b", "inst", "ack:1", {"type": "relay.frame", "sid": "s", "text": text})
    assert decode_envelope(encode_envelope("g", "i", {"type": "relay.owner", "owner_id": None})) == (
        "g",
        "i",
        None,
        {"type": "relay.owner", "owner_id": None},
    )


async def test_local_send_and_receive_in_order():
    layer = RelayChannelLayer(capacity=10)
    channel = await layer.new_channel()
    for i in range(5):
        await layer.send(channel, {"type": "relay.frame", "text": str(i)})
    assert [(await layer.receive(channel))["text"] for _ in range(5)] == ["0", "1", "2", "3", "4"]


async def test_full_local_queue_raises_channel_full_by_count_and_by_bytes():
    """Frames past `capacity` or `capacity_bytes` are refused to the sender, not dropped."""
    layer = RelayChannelLayer(capacity=2, capacity_bytes=10)
    a = await layer.new_channel()
    await layer.send(a, {"type": "relay.frame", "text": "x"})
    await layer.send(a, {"type": "relay.frame", "text": "y"})
    with pytest.raises(ChannelFull):
        await layer.send(a, {"type": "relay.frame", "text": "z"})
    b = await layer.new_channel()
    await layer.send(b, {"type": "relay.frame", "text": "123456"})
    with pytest.raises(ChannelFull):
        await layer.send(b, {"type": "relay.frame", "text": "123456"})
    # Control messages (no text) still fit behind a full frame queue, up to twice the capacity.
    await layer.send(a, {"type": "relay.owner", "owner_id": 1})
    await layer.send(a, {"type": "relay.owner", "owner_id": 2})
    with pytest.raises(ChannelFull):
        await layer.send(a, {"type": "relay.owner", "owner_id": 3})


async def test_discarded_or_unknown_channel_is_gone_not_a_silent_drop():
    layer = RelayChannelLayer()
    channel = await layer.new_channel()
    await layer.group_add("owner.1.apps", channel)
    layer.discard_channel(channel)
    with pytest.raises(ChannelGone):
        await layer.send(channel, {"type": "relay.frame", "text": "x"})
    assert "owner.1.apps" not in layer.groups
    with pytest.raises(ChannelGone):
        await layer.send("specific.otherinstance!abc", {"type": "relay.frame", "text": "x"})


async def test_local_group_send_reports_full_members_after_delivering_to_the_rest():
    layer = RelayChannelLayer(capacity=1)
    full, reader = await layer.new_channel(), await layer.new_channel()
    for channel in (full, reader):
        await layer.group_add("owner.1.apps", channel)
    await layer.group_send("owner.1.apps", {"type": "relay.event", "text": "0"})
    assert (await layer.receive(reader))["text"] == "0"
    with pytest.raises(GroupSendShed) as shed:
        await layer.group_send("owner.1.apps", {"type": "relay.event", "text": "1"})
    assert shed.value.shed == 1
    assert (await layer.receive(reader))["text"] == "1"


async def test_cross_instance_send_is_one_publish_and_keeps_order(require_services):
    """A frame for another instance's channel reaches it through Redis, in order."""
    a, b = _pair()
    try:
        target = await b.new_channel()
        for i in range(50):
            await a.send(target, {"type": "relay.frame", "text": f'{{"n":{i}}}'})
        got = [await asyncio.wait_for(b.receive(target), 5) for _ in range(50)]
        assert [m["text"] for m in got] == [f'{{"n":{i}}}' for i in range(50)]
    finally:
        await _close(a, b)


async def test_concurrent_cross_instance_sends_are_pipelined_and_all_arrive(require_services):
    a, b = _pair(capacity=1000)
    try:
        target = await b.new_channel()
        await asyncio.gather(*(a.send(target, {"type": "relay.frame", "text": str(i)}) for i in range(300)))
        got = [(await asyncio.wait_for(b.receive(target), 5))["text"] for _ in range(300)]
        assert got == [str(i) for i in range(300)]  # gather starts them in order; one pipeline keeps it
    finally:
        await _close(a, b)


async def test_send_to_a_channel_of_a_process_that_is_gone_raises(require_services):
    a, b = _pair()
    try:
        target = await b.new_channel()
        await b.close()  # the instance stops listening
        with pytest.raises(ChannelGone):
            await a.send(target, {"type": "relay.frame", "text": "x"})
    finally:
        await _close(a)


async def test_remote_full_queue_tells_the_sender_with_relay_shed(require_services):
    """A frame that finds the receiving instance's queue full is not lost silently: the sender's
    channel (`reply_to`) gets `relay.shed` with the frame's `ref`."""
    a, b = _pair(capacity=1)
    try:
        sender, target = await a.new_channel(), await b.new_channel()
        for i in range(2):
            await a.send(target, {"type": "relay.frame", "text": str(i), "reply_to": sender, "ref": "telemetry"})
        notice = await asyncio.wait_for(a.receive(sender), 5)
        assert notice == {"type": "relay.shed", "ref": "telemetry", "count": 1}
        assert (await b.receive(target))["text"] == "0"
    finally:
        await _close(a, b)


async def test_group_with_members_on_two_instances_gets_each_message_once(require_services):
    a, b = _pair()
    try:
        local, remote = await a.new_channel(), await b.new_channel()
        await b.group_add("owner.7.apps", remote)
        await a.group_add("owner.7.apps", local)  # a learns b has members when it subscribes
        assert "owner.7.apps" in a.remote_interest
        await a.group_send("owner.7.apps", {"type": "relay.event", "text": "e1"})
        assert (await asyncio.wait_for(a.receive(local), 5))["text"] == "e1"
        assert (await asyncio.wait_for(b.receive(remote), 5))["text"] == "e1"
        await asyncio.sleep(0.2)
        assert a.receive_nowait(local) is None  # its own publish is not delivered twice
    finally:
        await _close(a, b)


async def test_group_with_only_local_members_costs_no_redis_round_trip(require_services):
    a, b = _pair()
    try:
        local = await a.new_channel()
        await a.group_add("owner.8.apps", local)
        assert "owner.8.apps" not in a.remote_interest
        published = []
        original = a._publish

        async def counting(key, payload):
            published.append(key)
            return await original(key, payload)

        a._publish = counting
        await a.group_send("owner.8.apps", {"type": "relay.event", "text": "x"})
        assert published == [] and (await a.receive(local))["text"] == "x"
        # Once b has a member too, a publishes (b announced itself when it subscribed).
        remote = await b.new_channel()
        await b.group_add("owner.8.apps", remote)
        await asyncio.sleep(0.2)
        await a.group_send("owner.8.apps", {"type": "relay.event", "text": "y"})
        assert published and (await asyncio.wait_for(b.receive(remote), 5))["text"] == "y"
    finally:
        await _close(a, b)


async def test_confirmed_group_send_waits_for_every_listening_instance(require_services):
    a, b = _pair()
    try:
        remote = await b.new_channel()
        await b.group_add("owner.9.apps", remote)
        assert await a.group_send_confirmed("owner.9.apps", {"type": "relay.device", "device_id": "r"})
        assert b.receive_nowait(remote) == {"type": "relay.device", "device_id": "r"}  # queued before it returned
    finally:
        await _close(a, b)


async def test_a_lost_subscription_is_restored_with_its_groups(require_services):
    """When an instance's Redis subscription drops (Redis restarted, connection killed), it subscribes
    again to its own channel and its groups, and announces its groups, so delivery resumes both ways."""
    import redis.asyncio as redis

    a, b = _pair()
    admin = redis.Redis.from_url(os.environ["REDIS_URL"])
    try:
        remote = await b.new_channel()
        await b.group_add("owner.11.apps", remote)
        local = await a.new_channel()
        await a.group_add("owner.11.apps", local)
        name = f"{b.prefix}-reader-{b.instance}"
        clients = await admin.client_list(_type="pubsub")
        (victim,) = [c for c in clients if c.get("name") == name]
        await admin.client_kill_filter(_id=victim["id"])
        a.remote_interest.discard("owner.11.apps")  # as if a had published while b was away
        for _ in range(50):  # b reconnects and announces itself (bounded: 5 s)
            await asyncio.sleep(0.1)
            if "owner.11.apps" in a.remote_interest:
                break
        assert "owner.11.apps" in a.remote_interest
        await a.group_send("owner.11.apps", {"type": "relay.event", "text": "after"})
        assert (await asyncio.wait_for(b.receive(remote), 5))["text"] == "after"
        await a.send(remote, {"type": "relay.frame", "text": "direct"})
        assert (await asyncio.wait_for(b.receive(remote), 5))["text"] == "direct"
    finally:
        await admin.aclose()
        await _close(a, b)


async def test_a_broken_redis_connection_is_retried_once_then_reported(require_services):
    """After a Redis restart a pooled connection fails its first use: the publish is retried once and
    goes through. If Redis stays unreachable the sender gets `LayerUnavailable` (a `ChannelFull`, so
    delivery answers RATE_LIMITED) instead of an unhandled error."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    from relay.layer import LayerUnavailable

    a, b = _pair()
    try:
        target = await b.new_channel()
        _, publisher = a._client()
        real, failures = publisher._send, []

        async def flaky(batch):
            if len(failures) < budget:
                failures.append(1)
                raise RedisConnectionError("Connection closed by server.")
            return await real(batch)

        publisher._send = flaky
        budget = 1
        await a.send(target, {"type": "relay.frame", "text": "once"})
        assert (await asyncio.wait_for(b.receive(target), 5))["text"] == "once"
        failures.clear()
        budget = 2
        with pytest.raises(LayerUnavailable):
            await a.send(target, {"type": "relay.frame", "text": "never"})
        assert b.receive_nowait(target) is None
    finally:
        await _close(a, b)
