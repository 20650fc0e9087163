"""What a consumer may know of its socket's transport, provided by the server (`wimz.serve`).

No Django imports: the server module imports this before Django is set up.
"""

from typing import Final

# Scope key of a callable returning the bytes written to this socket that the kernel has not taken yet.
TRANSPORT_BUFFERED_KEY: Final = "wimz.transport_buffered"


def transport_buffered_bytes(protocol: object) -> int:
    """Bytes written to `protocol`'s TCP transport that the kernel has not taken yet (twisted's
    `FileDescriptor` buffers: `dataBuffer` from `offset`, plus `_tempDataLen`); 0 when unknown."""
    transport = getattr(protocol, "transport", None)
    if transport is None:
        return 0
    pending = len(getattr(transport, "dataBuffer", b"")) - getattr(transport, "offset", 0)
    return max(0, pending) + getattr(transport, "_tempDataLen", 0)
