"""Events (robot → its owner's apps) and commands or pass-through (app → robot): docs/protocol.md §9, §10.

The hot path: no database read, one channel-layer operation per frame. A robot's event goes to its
owner's app group (`Party.owner_id`, kept current by `relay.owner` messages); a command goes to the
robot socket the app's facts name (`relay.addressing`).
"""

from typing import cast

from channels.db import database_sync_to_async

from devices.models import Device

from . import delivery
from .addressing import address
from .party import Frame, Outcome, Party
from .protocol import Code, RelayError, optional_device_id, require_str, robot_event


async def event(party: Party, frame: Frame) -> Outcome:
    """A robot's event (any non-reserved type, or a legacy `{"event":…}` frame) to every app socket of
    its owner, with `device_id` and `timestamp` set (docs/protocol.md §9). A device with no owner talks
    to nobody. Raises RATE_LIMITED naming how many app sockets on this instance were full; full ones
    elsewhere are reported as they are found (`relay.shed`).
    """
    if party.owner_id is None:
        return Outcome()
    ref = frame.get("type")
    device_id = cast(str, party.device_id)  # a robot's Party always names its device (relay.connections)
    shed = await delivery.event_to_owner(
        party.owner_id, device_id, robot_event(frame, device_id), reply_to=party.channel_name, ref=ref
    )
    if shed:
        raise RelayError(Code.RATE_LIMITED, f"event not delivered to {shed} app socket(s)", ref)
    return Outcome()


async def command(party: Party, frame: Frame, kind: str) -> Outcome:
    """A `command` or pass-through frame from an app to the addressed (or only) robot of its user
    (docs/protocol.md §10, §12). Compat: a command's `data` is copied to `params` when absent.
    """
    if kind == "command":
        require_str(frame, "command")
    target = address(party, optional_device_id(frame), ref=kind)
    out = dict(frame)
    out.setdefault("device_id", target.device_id)
    if kind == "command" and "data" in frame and "params" not in frame:
        out["params"] = frame["data"]
    try:
        await delivery.frame_to(target.robot_channel, out, ref=kind, reply_to=party.channel_name)
    except delivery.Undeliverable as exc:
        raise RelayError(Code.DEVICE_OFFLINE, "device is offline", kind) from exc
    return Outcome()


@database_sync_to_async
def _record_hello(device_pk: int, frame: Frame) -> None:
    updates: dict[str, list[str] | str] = {}
    capabilities = frame.get("capabilities")
    # A NUL character cannot be stored (PostgreSQL text refuses it): such a value is ignored like any
    # other value that is not a string (docs/protocol.md §8.1).
    if isinstance(capabilities, list) and all(isinstance(c, str) and "\x00" not in c for c in capabilities):
        updates["capabilities"] = [c[:64] for c in capabilities[:32]]  # a client fills this row: bounded
    firmware = frame.get("firmware_version")
    if isinstance(firmware, str) and "\x00" not in firmware:
        updates["firmware_version"] = firmware[:64]
    if updates:
        Device.objects.filter(pk=device_pk).update(**updates)


async def hello(party: Party, frame: Frame) -> Outcome:
    """A robot's `hello`: record capabilities and firmware (docs/protocol.md §8.1). A `hello` naming
    another device answers BAD_REQUEST and changes nothing.
    """
    claimed = frame.get("device_id")
    if claimed is not None and claimed != party.device_id:
        raise RelayError(Code.BAD_REQUEST, "hello names another device_id", "hello")
    await _record_hello(cast(int, party.device_pk), frame)  # a robot's Party always has its device_pk
    return Outcome()
