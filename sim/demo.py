"""Demo: one real WebRTC call (aiortc robot + app simulators) through a WIM-Z relay, measured.

    python -m sim.demo                      # starts its own relay on 127.0.0.1 (temp SQLite, DEBUG=1)
    python -m sim.demo --url http://127.0.0.1:8000
    python -m sim.demo --url https://relay.example --device-id ID --secret S --pairing-code CODE
    python -m sim.demo --turn               # also starts coturn; ICE through TURN-relayed candidates only

Steps: provision a robot (`manage.py provision_device --json`), register a user, pair it with the
pairing code, connect the robot simulator, run a call from the app simulator (≥ `--frames` decoded
frames, data-channel round trips, `webrtc_close`), then read the session's history row
(`GET /api/sessions/<id>`). Prints the figures; exits 0 only when every check passed.

Provisioning with `--url`: pass `--device-id/--secret/--pairing-code` for an already provisioned robot
(any relay); without them the demo runs `manage.py provision_device` here, which only reaches the
given relay's database when the relay is local (127.0.0.1/localhost) and shares this environment's
`DATABASE_URL` — the demo refuses other URLs without the three arguments.

The relay the demo starts itself listens on a free 127.0.0.1 port, uses a temporary SQLite file (or
`database_url`/`redis_url` when `run_demo` is given them, as the end-to-end test does) and is killed at
the end; its log is printed when something failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from sim.process import RelayProcess

from .app import AppSim, CallResult, RelayApi
from .common import SimError, quiet_libraries
from .robot import RobotSim
from .turn import LocalTurn

REPO = Path(__file__).resolve().parent.parent
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


@dataclass
class Provisioned:
    """A robot as `provision_device --json` prints it: id, secret (hex) and pairing code."""

    device_id: str
    secret: str
    pairing_code: str


async def _run(*args: str, env: dict[str, str], time_limit: float) -> str:
    """Run `python manage.py <args>` in the repository; its stdout, or `SimError` with stderr on failure."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "manage.py", *args, cwd=REPO, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with asyncio.timeout(time_limit):
            stdout, stderr = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise SimError(f"manage.py {args[0]} took longer than {time_limit:.0f} s") from None  # the message is all
    if process.returncode != 0:
        raise SimError(f"manage.py {args[0]} failed ({process.returncode}): {stderr.decode()[-2000:]}")
    return stdout.decode()


async def provision_device(device_id: str, env: dict[str, str]) -> Provisioned:
    """Create a robot with `manage.py provision_device DEVICE_ID --json` against `env`'s database."""
    output = await _run("provision_device", device_id, "--json", env=env, time_limit=60)
    try:
        return Provisioned(**json.loads(output))
    except (ValueError, TypeError) as exc:
        raise SimError(f"provision_device --json printed something else than one JSON object: {output!r}") from exc


class LocalRelay:
    """A relay run here on a free 127.0.0.1 port: `migrate`, then daphne; `stop()` kills it.

    Daphne runs as `python -m wimz.serve`, with the project's server flags. `env` is the environment
    of both processes: this process's environment with `DEBUG=1`, a temporary SQLite file as
    `DATABASE_URL` and a fresh `WIMZ_CHANNEL_PREFIX`, then `overrides` applied (a value of None
    removes the variable). `migrate=False` skips `migrate` (a test database already has the schema).
    `url` is the base URL once started; the daphne output goes to `log_path`.
    """

    def __init__(self, overrides: dict[str, str | None] | None = None, *, migrate: bool = True):
        self.workdir = Path(tempfile.mkdtemp(prefix="wimz-demo-"))
        self.env = {
            **os.environ,
            "DEBUG": "1",
            "DATABASE_URL": f"sqlite:///{self.workdir / 'relay.sqlite3'}",
            # Its own channel-layer prefix, should REDIS_URL point at a Redis another relay uses.
            "WIMZ_CHANNEL_PREFIX": f"wimzdemo{secrets.token_hex(4)}",
        }
        for key, value in (overrides or {}).items():
            if value is None:
                self.env.pop(key, None)
            else:
                self.env[key] = value
        self.migrate = migrate
        self.log_path = self.workdir / "relay.log"
        self.url = ""
        self.process: RelayProcess | None = None

    async def start(self, time_limit: float = 30.0) -> str:
        """Migrate, start daphne (`sim.process.RelayProcess`) and wait for `GET /health` 200; the base URL."""
        if self.migrate:
            await _run("migrate", "--noinput", env=self.env, time_limit=time_limit)
        self.process = RelayProcess(self.env, self.log_path)
        try:
            await asyncio.to_thread(self.process.wait_ready, time_limit)
        except RuntimeError as exc:
            raise SimError(str(exc)) from exc
        self.url = self.process.http
        return self.url

    async def stop(self) -> None:
        """Terminate daphne (kill after 5 s) and delete the temporary directory."""
        if self.process is not None:
            await asyncio.to_thread(self.process.stop, 5.0)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tail(self, lines: int = 60) -> str:
        """The last `lines` lines of daphne's output."""
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def log_problems(self) -> list[str]:
        """Lines of daphne's output that report an error or a traceback (a healthy call has none)."""
        with contextlib.suppress(OSError):
            text = self.log_path.read_text(errors="replace")
            return [line for line in text.splitlines() if " ERROR " in line or line.startswith("Traceback")]
        return []


@dataclass
class DemoResult:
    """Everything the demo measured and checked.

    `call` is the app's `CallResult` (times in ms from `webrtc_request`); `answer_delivered_ms` is
    request → the robot received `webrtc_answer`; `robot_close_reason` is the `reason` of the
    `webrtc_close` the robot got; `history` the session's row from `GET /api/sessions/<id>`.
    `problems` lists the failed checks (empty: success).
    """

    url: str
    device_id: str
    call: CallResult | None = None
    answer_delivered_ms: float | None = None
    robot_close_reason: str | None = None
    history: dict | None = None
    relay_log_problems: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every check passed."""
        return not self.problems

    def report(self) -> str:
        """A human-readable summary of the figures and checks."""
        lines = [f"relay                      {self.url}", f"robot                      {self.device_id}"]
        if self.call is not None:
            call = self.call
            lines += [
                f"session id                 {call.session_id}",
                f"request → answer sent      {call.answer_sent_ms:.1f} ms",
                "request → answer delivered "
                + ("n/a" if self.answer_delivered_ms is None else f"{self.answer_delivered_ms:.1f} ms"),
                "request → first frame      "
                + ("n/a" if call.first_frame_ms is None else f"{call.first_frame_ms:.1f} ms"),
                f"frames decoded             {call.frames_decoded}"
                + (f" ({call.frame_size[0]}x{call.frame_size[1]})" if call.frame_size else ""),
                "data-channel RTT           "
                + ("n/a" if call.datachannel_rtt_ms is None else f"{call.datachannel_rtt_ms:.2f} ms")
                + f" (samples: {', '.join(f'{rtt:.2f}' for rtt in call.datachannel_rtts_ms)})",
                f"ICE candidates app/robot   {call.local_candidates} sent / {call.remote_candidates} received",
                "ICE candidate pair used    " + "/".join(call.candidate_pair or ("n/a",)),
                f"robot got webrtc_close     reason={self.robot_close_reason}",
            ]
        lines.append("session history            " + (json.dumps(self.history) if self.history else "n/a"))
        lines += [f"relay log                  {line}" for line in self.relay_log_problems]
        lines.append("result                     " + ("OK" if self.ok else "FAILED"))
        lines += [f"  - {problem}" for problem in self.problems]
        return "\n".join(lines)


def check_history(history: dict | None, session_id: str) -> list[str]:
    """What is wrong with a session's history row after an app-closed call (empty list: nothing)."""
    if history is None:
        return ["no history row"]
    expected = {"session_id": session_id, "state": "ended", "end_reason": "closed_by_app"}
    problems = [f"history {key}={history.get(key)!r}, expected {value!r}" for key, value in expected.items()
                if history.get(key) != value]  # fmt: skip
    problems += [f"history {key} not set" for key in ("offered_at", "answered_at", "ended_at") if not history.get(key)]
    return problems


async def run_demo(
    url: str | None = None,
    *,
    device: Provisioned | None = None,
    frames: int = 30,
    call_time_limit: float = 30.0,
    relay_env: dict[str, str | None] | None = None,
    migrate: bool = True,
    turn: bool = False,
) -> DemoResult:
    """Run the demo call and return its `DemoResult` (check `.ok`).

    `url`: an existing relay; None starts a `LocalRelay(relay_env, migrate=migrate)` for the run.
    `turn`: also start coturn on 127.0.0.1 (`sim.turn.LocalTurn`), point the started relay's coturn
    provider at it and restrict both parties to TURN-relayed ICE candidates; the call must then use a
    relay/relay candidate pair. Only with a relay the demo starts (`url` None).
    `device`: an already provisioned robot; None provisions one with `manage.py provision_device`
    (against the started relay's database, or this environment's when `url` is local).
    Raises `SimError` when a step could not run at all (relay not starting, REST refusing, …).
    """
    if turn and url is not None:
        raise SimError("--turn starts a local TURN server for a relay the demo starts; it cannot reconfigure --url")
    turn_server = LocalTurn() if turn else None
    if turn_server is not None:
        relay_env = {**(relay_env or {}), **turn_server.env()}
    relay = LocalRelay(relay_env, migrate=migrate) if url is None else None
    api: RelayApi | None = None
    robot: RobotSim | None = None
    app: AppSim | None = None
    result: DemoResult | None = None
    try:
        if turn_server is not None:
            await turn_server.start()
        if relay is not None:
            url = await relay.start()
        if device is None:
            device = await _provision_for_demo(url, relay)
        result = DemoResult(url=url, device_id=device.device_id)

        api = RelayApi(url)
        await api.register(f"demo-{secrets.token_hex(6)}@example.com", secrets.token_urlsafe(18))
        await api.pair(device.pairing_code)

        robot = RobotSim(url, device.device_id, device.secret, relay_only=turn)
        await robot.start()
        app = AppSim(url, api.access, relay_only=turn)
        await app.connect()
        try:
            call = result.call = await app.call(device.device_id, frames=frames, time_limit=call_time_limit)
        except SimError as exc:
            result.problems.append(f"call failed: {exc}")
            return result

        await _check_robot_side(result, robot, call)
        result.history = await _ended_history(api, call.session_id)
        result.problems += check_history(result.history, call.session_id)
        result.problems += check_call(call, frames=frames, turn=turn)
        return result
    finally:
        for closer in (app and app.close, robot and robot.stop, api and api.aclose):
            if closer is not None:
                with contextlib.suppress(Exception):
                    await closer()
        await _stop_servers(result, relay, turn_server)


async def _provision_for_demo(url: str, relay: LocalRelay | None) -> Provisioned:
    """A new robot for the demo, in the started relay's database or, for a local `url`, this environment's."""
    if relay is None and urlsplit(url).hostname not in LOCAL_HOSTS:
        raise SimError("a remote --url needs --device-id, --secret and --pairing-code")
    env = relay.env if relay is not None else {**os.environ, "DEBUG": os.environ.get("DEBUG", "1")}
    return await provision_device(f"demo_robot_{secrets.token_hex(4)}", env)


async def _check_robot_side(result: DemoResult, robot: RobotSim, call: CallResult) -> None:
    """The robot's view of the call into `result`: when the answer reached it, and that it was told
    `webrtc_close` with reason `closed_by_app` (waiting up to 3 s for it)."""
    robot_session = robot.sessions.get(call.session_id)
    if robot_session is None:
        result.problems.append(f"the robot never got a webrtc_request for session {call.session_id}")
        return
    if robot_session.answer_received_at is not None:
        result.answer_delivered_ms = (robot_session.answer_received_at - call.request_sent_at) * 1000

    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(3.0):
            await robot_session.ended.wait()
    result.robot_close_reason = robot_session.close_reason
    if robot_session.close_reason != "closed_by_app":
        result.problems.append(f"robot's webrtc_close reason={robot_session.close_reason!r}, expected 'closed_by_app'")


async def _ended_history(api: RelayApi, session_id: str) -> dict | None:
    """The session's history row once it is `ended` (the row may lag the close frames by a moment: up
    to 5 s); the last row read when it never is, None when none could be read."""
    history = None
    for _ in range(25):
        with contextlib.suppress(SimError):
            history = await api.session(session_id)
        if history is not None and history.get("state") == "ended":
            break
        await asyncio.sleep(0.2)
    return history


def check_call(call: CallResult, *, frames: int, turn: bool) -> list[str]:
    """What is wrong with the app's figures of a call (empty list: nothing): too few decoded frames, no
    data-channel echo, relay error frames, and with `turn` a candidate pair not relayed through TURN."""
    problems = []
    if call.frames_decoded < frames:
        problems.append(f"{call.frames_decoded} frames decoded, expected at least {frames}")
    if call.datachannel_rtt_ms is None:
        problems.append("no data-channel echo came back")
    problems += [f"relay error frame {frame}" for frame in call.relay_errors]
    if turn and call.candidate_pair != ("relay", "relay"):
        problems.append(f"ICE candidate pair {call.candidate_pair}, expected relay/relay through TURN")
    return problems


async def _stop_servers(result: DemoResult | None, relay: LocalRelay | None, turn_server: LocalTurn | None) -> None:
    """Stop the relay and TURN server the demo started; the relay's log problems go into `result`, and
    both logs' last lines to stderr when a check failed."""
    if relay is not None:
        if result is not None:
            result.relay_log_problems = relay.log_problems()
            if not result.ok:
                print(f"--- relay log (last lines) ---\n{relay.log_tail()}\n---", file=sys.stderr)
        await relay.stop()
    if turn_server is not None:
        if result is not None and not result.ok:
            print(f"--- turnserver log (last lines) ---\n{turn_server.log_tail()}\n---", file=sys.stderr)
        await turn_server.stop()


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: 0 when the call met every check, 1 when not, 2 when it could not run."""
    parser = argparse.ArgumentParser(prog="python -m sim.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="relay base URL (default: start one on 127.0.0.1)")
    parser.add_argument("--device-id", help="an already provisioned robot (with --secret and --pairing-code)")
    parser.add_argument("--secret")
    parser.add_argument("--pairing-code")
    parser.add_argument("--frames", type=int, default=30, help="decoded frames required (default 30)")
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds for the whole demo (default 90)")
    parser.add_argument(
        "--turn",
        action="store_true",
        help="start coturn on 127.0.0.1 and allow TURN-relayed ICE candidates only (needs turnserver)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log every frame the simulators send and receive")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    quiet_libraries()
    if args.verbose:
        logging.getLogger("sim").setLevel(logging.DEBUG)
    given = [args.device_id, args.secret, args.pairing_code]
    if any(given) and not all(given):
        parser.error("--device-id, --secret and --pairing-code go together")
    device = Provisioned(*given) if all(given) else None

    async def bounded() -> DemoResult:
        async with asyncio.timeout(args.timeout):
            # Leave the second half of the time for setup and teardown, so a slow call still reports.
            return await run_demo(
                args.url, device=device, frames=args.frames, call_time_limit=args.timeout / 2, turn=args.turn
            )

    try:
        result = asyncio.run(bounded())
    except (SimError, OSError, TimeoutError, httpx.HTTPError) as exc:
        print(f"demo could not run: {exc!r}", file=sys.stderr)
        return 2
    print(result.report())
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
