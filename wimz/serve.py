"""Run the relay under daphne with the project's server flags: `python -m wimz.serve [--host H] [--port P]`.

One place for the flags that `make run`, the live tests and the demo share:
- `--websocket-max-message-size 1048576`: the transport cap of docs/protocol.md §3.3 (1 MiB; a
  connection that sends more is closed 1009 with a close frame, `RelayServer` turning autobahn's
  `failByDrop` off). The relay's own limit, `WIMZ_MAX_FRAME_BYTES`, is checked per frame below it and answered
  `MESSAGE_TOO_LARGE` with the socket kept open.
- `--websocket_timeout -1`: robots hold their socket for days; daphne's default closes it after 24 h.
- `--ping-interval 20 --ping-timeout 30`: WebSocket pings find half-open TCP connections (field report F1).
No `--proxy-headers`: daphne would take the leftmost X-Forwarded-For entry from any peer, a value the
client chooses. The client address is settled by `wimz.proxy` instead (only from `WIMZ_TRUSTED_PROXIES`),
in the ASGI scope. daphne's own access log (`--access-log`) is not written: the relay's is the structured
`wimz.access` logger (wimz/access.py, docs/operations.md "Logs"), without query strings.
Environment: `HOST` (127.0.0.1) and `PORT` (8000) as defaults for `--host`/`--port`.
"""

import argparse
import os
import sys
from functools import partial

TRANSPORT_CAP_BYTES = 1024 * 1024
SHUTDOWN_GRACE_SECONDS = 5.0  # per shutdown step on SIGTERM


def daphne_argv(host: str, port: int, extra: list[str] | None = None) -> list[str]:
    """The daphne command-line arguments (without the program name) for `host`:`port`."""
    return [
        "-b",
        host,
        "-p",
        str(port),
        "--websocket-max-message-size",
        str(TRANSPORT_CAP_BYTES),
        "--websocket_timeout",
        "-1",
        "--ping-interval",
        "20",
        "--ping-timeout",
        "30",
        *(extra or []),
        "wimz.asgi:application",
    ]


def relay_server_class():
    """daphne's `Server` with a shutdown that ends every session `server_shutdown`, bounded in time.

    On SIGTERM daphne 4.2 runs `kill_all_applications`, which (a) raises KeyError on the first
    connection that has no application instance yet and then cancels nothing, and (b) relies on
    cancellation reaching each consumer, which a cancel landing inside a channel layer's blocking receive
    does not always do — the process then hangs until killed. This version first asks every open
    socket of the process to shut down (`relay.consumers.shutdown_all`: sessions end `server_shutdown`,
    the other parties are told), then cancels what is left and waits at most a few seconds.
    """
    import asyncio
    import logging

    from daphne.server import Server
    from twisted.internet import defer

    logger = logging.getLogger("wimz.serve")
    _allow_service_restart_close()
    _no_twisted_access_log()

    class RelayServer(Server):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            # daphne's access log is free text with query strings (a `?token=<JWT>` sent over plain HTTP
            # would land there, field report F8); wimz.access writes the structured one instead.
            self.action_logger = None

        def create_application(self, protocol, scope):
            # Consumers read how much their socket has not yet sent (docs/protocol.md §19.2: a socket
            # that does not drain is shed, then closed), so no client can fill the server's memory.
            from relay.transport import TRANSPORT_BUFFERED_KEY, transport_buffered_bytes
            from wimz.proxy import resolve_scope

            scope[TRANSPORT_BUFFERED_KEY] = partial(transport_buffered_bytes, protocol)
            # The trusted-proxy rule (wimz.proxy), applied here so that daphne's own log lines name the same
            # client as the scope; the ASGI middleware then finds it done.
            scope = resolve_scope(scope)
            if scope.get("client"):
                protocol.client_addr = list(scope["client"])
            return super().create_application(protocol, scope)

        def run(self):
            from twisted.internet import reactor

            # The presence heartbeat and the instance liveness beat run on a timer from the start,
            # not only once a socket has connected (docs/architecture.md "Instance liveness and reaping").
            reactor.callWhenRunning(self._start_timers)
            reactor.callWhenRunning(self._close_instead_of_drop)
            super().run()

        def _close_instead_of_drop(self):
            # autobahn fails a connection that breaks a rule (a message over the transport cap above
            # all) by dropping TCP when `failByDrop` is on, its default: the client saw 1006 and no
            # reason. Off, it sends the close frame with the code first (1009 "message too big",
            # docs/protocol.md §16) and drops only if the client does not answer it. Runs before the
            # reactor accepts a connection; each protocol copies the factory's options when it connects.
            self.ws_factory.setProtocolOptions(failByDrop=False)

        def _start_timers(self):
            from relay.connections import ensure_heartbeat
            from wimz.sentry import enable_asyncio

            asyncio.get_event_loop().call_soon(enable_asyncio)
            asyncio.get_event_loop().call_soon(ensure_heartbeat)

        def kill_all_applications(self):
            async def stop():
                from relay.consumers import shutdown_all

                try:
                    count = await shutdown_all(timeout=SHUTDOWN_GRACE_SECONDS)
                    logger.info("shut down %d relay sockets", count)
                except Exception as exc:
                    logger.warning("relay shutdown incomplete: %s", type(exc).__name__)
                pending = [
                    instance
                    for details in list(self.connections.values())
                    if (instance := details.get("application_instance")) is not None and not instance.done()
                ]
                for instance in pending:
                    instance.cancel()
                if pending:
                    await asyncio.wait(pending, timeout=SHUTDOWN_GRACE_SECONDS)

            return defer.Deferred.fromFuture(asyncio.ensure_future(stop()))

    return RelayServer


def _no_twisted_access_log() -> None:
    """Stop twisted's HTTP access log (combined log format, the query string included), which daphne's
    verbose mode (`-v 2`) routes into the `daphne.server` logger: `wimz.access` is the relay's access log,
    one structured line per request, without query strings (docs/operations.md "Logs")."""
    from daphne.http_protocol import HTTPFactory

    HTTPFactory.log = lambda self, request: None


# Close codes a server may send (RFC 6455 §7.4.1, IANA WebSocket close code registry) that autobahn's
# `sendClose` refuses (it allows only 1000 and 3000-4999): 1001 going away, 1011 internal error,
# 1012 service restart, 1013 try again later.
_SERVER_CLOSE_CODES = frozenset({1001, 1011, 1012, 1013})


def _allow_service_restart_close() -> None:
    """Let the relay close a socket with 1012 (service restart), as docs/protocol.md §16 and §19.4 say.

    daphne passes a consumer's close code to autobahn's `sendClose`, which raises for 1012; the socket
    then dropped without a close frame (clients saw 1006). The registered server codes go out through
    autobahn's `sendCloseFrame` instead; every other code keeps daphne's path.
    """
    from daphne.ws_protocol import WebSocketProtocol

    if getattr(WebSocketProtocol, "_wimz_server_close", False):
        return

    def server_close(self, code=None):
        code = 1000 if code is None else code
        if code in _SERVER_CLOSE_CODES:
            self.sendCloseFrame(code=code, isReply=False)
        else:
            self.sendClose(code=code)

    WebSocketProtocol.serverClose = server_close
    WebSocketProtocol._wimz_server_close = True


def main(argv: list[str] | None = None) -> None:
    """Parse `--host/--port` (defaults from HOST/PORT) and run daphne in this process."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    args, extra = parser.parse_known_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wimz.settings")
    from django.conf import settings

    if settings.SERVE_REFUSED_REASON:  # say what to set, without a traceback
        sys.exit(f"wimz.serve: refusing to start: {settings.SERVE_REFUSED_REASON}")
    from channels.layers import get_channel_layer
    from daphne.cli import CommandLineInterface

    from core.logformat import set_instance

    # Every log line names this process by its channel-layer instance id, the id its channel names and
    # liveness key carry (core.logformat); the layer is the one the consumers use later.
    set_instance(getattr(get_channel_layer(), "instance", None))

    cli = CommandLineInterface()
    cli.server_class = relay_server_class()
    cli.run(daphne_argv(args.host, args.port, extra))


if __name__ == "__main__":
    main()
