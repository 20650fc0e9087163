"""Who receives what: delivery of relay frames to robot and app sockets through the channel layer.

(Stub — being written.)
"""


def on_device_unpaired(*, device_id: str, former_owner_id: int) -> None:
    """Tell the former owner's apps `device_status` `unpaired` and end the device's sessions (`unpaired`).

    Synchronous; call it after the unpair is committed (`transaction.on_commit`).
    """


def on_device_paired(*, device_id: str, owner_id: int) -> None:
    """Send the new owner's open apps a `device_status` for the device. Synchronous; call after commit."""
