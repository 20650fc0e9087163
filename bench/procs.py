"""Server processes of the bench: launch, pin to a core, wait until they listen, read CPU and memory, stop.

Everything listens on 127.0.0.1 only. CPU comes from `/proc/<pid>/stat` (utime + stime, which include
threads that have exited), memory from `VmRSS` of `/proc/<pid>/status`.
"""

import os
import resource
from pathlib import Path

from sim.process import RelayProcess

SERVER_CORE = 0
CLIENT_CORE = 1


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used by process `pid` so far (0.0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    """Resident set size of process `pid` in KiB (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def service_pids(names=("redis-server", "postgres")) -> list[int]:
    """Pids of processes whose command name is one of `names` (Redis and PostgreSQL backends on this machine)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() in names:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def services_cpu_seconds() -> float:
    """CPU seconds of every Redis and PostgreSQL process now alive (approximate: other users' work counts too)."""
    return sum(cpu_seconds(p) for p in service_pids())


def pin(pid: int, core: int) -> bool:
    """Pin `pid` (0 = this process) to `core` when the machine has more than one; True if pinned."""
    if (os.cpu_count() or 1) < 2 or core >= (os.cpu_count() or 1):
        return False
    try:
        os.sched_setaffinity(pid, {core})
    except OSError:
        return False
    return True


def raise_nofile() -> int:
    """Raise this process' open-file soft limit to the hard limit (children inherit it); returns the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft


class ServerProcess(RelayProcess):
    """One server child process on a free 127.0.0.1 port, pinned to the server core.

    `argv` may contain `{port}`, replaced by the chosen port. Output goes to `log_path`. `wait_ready()`
    polls `health_path` over HTTP (200 wanted) or, when it is None, a TCP connect (`RelayProcess`).
    """

    def __init__(
        self, name: str, argv: list[str], *, cwd: Path, env: dict, log_path: Path, health_path: str | None = None
    ):
        self.name = name
        self.health_path = health_path
        super().__init__(env, log_path, argv=argv, cwd=cwd)
        self.pinned = pin(self.proc.pid, SERVER_CORE)

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def rss(self) -> int:
        return rss_kib(self.pid)
