"""A relay as a child process, for tests, the benchmark, the demo and anyone scripting a local relay.

`RelayProcess` runs `python -m wimz.serve` (the production entry point, with the project's daphne flags)
on a free 127.0.0.1 port, with the environment it is given, and stops it with SIGTERM (the relay's own
shutdown path). It lives here, beside the client simulators, not in the production module.
"""

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS picks it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RelayProcess:
    """The relay as a child process (`python -m wimz.serve`) on a free 127.0.0.1 port.

    For the live tests, the bench and anyone scripting a local relay. `env` is the child's whole
    environment; its output (its log lines, the access log included) goes to `log_path`.
    `wait_ready()` polls `GET <health_path>` (a TCP connect when it is None); `stop()` sends SIGTERM
    (the relay's shutdown path) and SIGKILL after `grace` seconds. `argv` (with `{port}` replaced by
    the chosen port) and `cwd` start another server the same way (the bench's floors).
    """

    name = "relay"
    health_path: str | None = "/health"

    def __init__(
        self,
        env: dict,
        log_path: Path,
        *,
        extra_args: tuple[str, ...] = (),
        argv: list[str] | None = None,
        cwd: Path | None = None,
    ):
        self.port = free_port()
        self.log_path = Path(log_path)
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        if argv is None:
            argv = [sys.executable, "-m", "wimz.serve", "--host", "127.0.0.1", "--port", "{port}", *extra_args]
        self.proc = subprocess.Popen(  # our own interpreter and modules, fixed arguments
            [a.replace("{port}", str(self.port)) for a in argv],
            cwd=cwd or REPO,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def http(self) -> str:
        """Base HTTP URL, `http://127.0.0.1:<port>`."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        """Base WebSocket URL, `ws://127.0.0.1:<port>`."""
        return f"ws://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """The relay's process id (daphne runs in the `wimz.serve` process itself)."""
        return self.proc.pid

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Poll until the server answers; raise `RuntimeError` with the output's tail otherwise (stopped)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                if self.health_path is None:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                        return
                with urllib.request.urlopen(self.http + self.health_path, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.name} on port {self.port} did not start:\n{self.output()[-3000:]}")

    def output(self) -> str:
        """Everything the process printed so far."""
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds; idempotent."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if not self._log.closed:
            self._log.close()
