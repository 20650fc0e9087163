"""Floor 1: a minimal WebSocket relay on `websockets` — `python -m bench.floors.raw_ws --port P`.

`/r/<key>` is the robot of pair `<key>`, `/a/<key>` an app socket of it; each text frame is forwarded
unchanged to the other side (robot → every app socket of the key, app → the key's robot). No
authentication, no JSON parsing, no channel layer: what one asyncio process costs to move a frame
from one socket to another. A frame with no peer connected is dropped (the bench never sends one).
"""

import argparse
import asyncio
import http
import signal

from websockets.asyncio.server import serve

MAX_SIZE = 1024 * 1024
peers: dict[str, dict[str, set]] = {}


async def handler(ws) -> None:
    path = ws.request.path
    role, _, key = path.strip("/").partition("/")
    if role not in ("r", "a") or not key:
        await ws.close(4004, "path must be /r/<key> or /a/<key>")
        return
    other = "a" if role == "r" else "r"
    members = peers.setdefault(key, {"r": set(), "a": set()})
    members[role].add(ws)
    try:
        async for message in ws:
            for peer in tuple(members[other]):
                try:
                    await peer.send(message)
                except Exception:  # a peer that went away
                    continue
    finally:
        members[role].discard(ws)
        if not members["r"] and not members["a"]:
            peers.pop(key, None)


def health(connection, request):
    """`GET /health` (no upgrade) answers 200, so the bench can wait for the floor without a failed handshake."""
    if request.path == "/health":
        return connection.respond(http.HTTPStatus.OK, "ok\n")
    return None


async def main(host: str, port: int) -> None:
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with serve(
        handler,
        host,
        port,
        process_request=health,
        compression=None,
        max_size=MAX_SIZE,
        max_queue=1024,
        ping_interval=20,
        ping_timeout=30,
    ):
        await stop


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(main(args.host, args.port))
