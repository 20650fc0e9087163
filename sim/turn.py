"""A throwaway coturn TURN server on 127.0.0.1 for the demo and the tests, and a TURN allocation probe.

`LocalTurn` starts Debian's `turnserver` (coturn) in the TURN REST mode the relay's coturn provider
speaks (`use-auth-secret` with a static shared secret, docs/protocol.md §14): UDP only, no TLS, no
CLI, loopback peers allowed (both call parties are on this machine), relay ports in a random window.
`allocate` makes one TURN Allocate with a username/credential pair (RFC 8656 §7) and says whether
the server granted it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import shutil
import socket
import tempfile
from pathlib import Path

from aioice import stun
from aioice.turn import create_turn_endpoint

from .common import SimError


def _free_udp_port() -> int:
    """A UDP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalTurn:
    """coturn on 127.0.0.1: `await start()`, then `env()` for the relay, `url`, `secret`; `await stop()`.

    Raises `SimError` from `start()` when `turnserver` is not installed (Debian package `coturn`) or
    does not answer a STUN binding request within `time_limit` seconds.
    """

    def __init__(self, *, realm: str = "wimz.test"):
        self.realm = realm
        self.secret = secrets.token_urlsafe(24)
        self.port = _free_udp_port()
        self.url = f"turn:127.0.0.1:{self.port}?transport=udp"
        self._process: asyncio.subprocess.Process | None = None
        self._dir = Path(tempfile.mkdtemp(prefix="wimz-turn-"))
        self.log_path = self._dir / "turnserver.log"

    def env(self) -> dict[str, str]:
        """Settings that point the relay's coturn provider at this server (docs/protocol.md §14)."""
        return {
            "WIMZ_ICE_PROVIDER": "coturn",
            "WIMZ_COTURN_SECRET": self.secret,
            "WIMZ_COTURN_URLS": self.url,
            "WIMZ_STUN_URLS": f"stun:127.0.0.1:{self.port}",
        }

    async def start(self, time_limit: float = 10.0) -> None:
        """Start `turnserver` and wait until it answers a STUN binding request."""
        binary = shutil.which("turnserver", path=os.environ.get("PATH", "") + os.pathsep + "/usr/bin:/usr/sbin")
        if binary is None:
            raise SimError("turnserver not found: install Debian's coturn package (apt-get install coturn)")
        low = random.randrange(20000, 60000, 1000)
        args = [
            binary,
            "-n",
            "--listening-ip=127.0.0.1",
            "--relay-ip=127.0.0.1",
            f"--listening-port={self.port}",
            f"--min-port={low}",
            f"--max-port={low + 999}",
            "--use-auth-secret",
            f"--static-auth-secret={self.secret}",
            f"--realm={self.realm}",
            "--no-tls",
            "--no-dtls",
            "--no-tcp",
            "--no-cli",
            "--allow-loopback-peers",
            "--fingerprint",
            "--simple-log",
            f"--log-file={self.log_path}",
            f"--pidfile={self._dir / 'pid'}",
            "--no-stdout-log",
        ]
        self._process = await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + time_limit
        while loop.time() < deadline:
            if self._process.returncode is not None:
                raise SimError(f"turnserver exited with {self._process.returncode}: {self.log_tail()}")
            if await self._answers_binding():
                return
            await asyncio.sleep(0.1)
        await self.stop()
        raise SimError(f"turnserver did not answer on 127.0.0.1:{self.port} within {time_limit} s")

    async def _answers_binding(self) -> bool:
        """One STUN Binding request (RFC 8489 §6) to the server; True when a response came back."""
        loop = asyncio.get_running_loop()
        answered = loop.create_future()

        class Probe(asyncio.DatagramProtocol):
            def datagram_received(self, data, addr):
                if not answered.done():
                    answered.set_result(data)

        transport, _ = await loop.create_datagram_endpoint(Probe, remote_addr=("127.0.0.1", self.port))
        try:
            request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
            transport.sendto(bytes(request))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.3):
                    await answered
            return answered.done()
        finally:
            transport.close()

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of coturn's log (for failure reports)."""
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    async def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s) and remove its files."""
        if self._process is not None and self._process.returncode is None:
            self._process.terminate()
            try:
                await asyncio.wait_for(self._process.wait(), 5)
            except TimeoutError:
                self._process.kill()
                await self._process.wait()
        shutil.rmtree(self._dir, ignore_errors=True)


async def allocate(url: str, username: str, credential: str, *, time_limit: float = 5.0) -> bool:
    """Make one TURN allocation at `url` (`turn:host:port?transport=udp`) with these credentials.

    Returns True when the server granted a relayed address, False when it refused the credentials
    (a 401/403/438 error response, RFC 8656 §7.2). Raises `SimError` when the server did not answer.
    """
    hostport = url.split(":", 1)[1].split("?", 1)[0]
    host, port = hostport.rsplit(":", 1)
    try:
        async with asyncio.timeout(time_limit):
            transport, _ = await create_turn_endpoint(asyncio.DatagramProtocol, (host, int(port)), username, credential)
    except stun.TransactionFailed as exc:
        code = exc.response.attributes.get("ERROR-CODE", (0, ""))[0]
        if code in (401, 403, 438):
            return False
        raise SimError(f"TURN allocation failed with {exc.response.attributes.get('ERROR-CODE')}") from exc
    except TimeoutError as exc:
        raise SimError(f"no TURN answer from {host}:{port} within {time_limit} s") from exc
    transport.close()
    return True
