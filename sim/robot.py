"""Robot simulator: a WIM-Z robot that streams a generated video over WebRTC through the relay.

    python -m sim.robot --url http://127.0.0.1:8000 --device-id wimz_robot_01 --secret <hex secret>

It signs in at `/ws/device` (HMAC headers of protocol.md), sends `hello`, and answers each
`webrtc_request` with an aiortc offer carrying one generated video track (a moving colour pattern,
320×240 at 30 fps) and a data channel `wimz` that echoes every message. It applies the app's answer and
trickled candidates, closes the peer connection on `webrtc_close`, answers `ping` with `pong` and
acknowledges `command` frames with a `command_ack` event. `RobotSim` is the same robot as a library.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from fractions import Fraction

import av
from aiortc import RTCDataChannel, RTCPeerConnection, RTCSessionDescription, VideoStreamTrack
from websockets.exceptions import ConnectionClosed, InvalidStatus

from .client import open_robot
from .common import JsonSocket, RemoteCandidates, SimError, quiet_libraries, rtc_configuration, sdp_candidates

log = logging.getLogger("sim.robot")

DATA_CHANNEL_LABEL = "wimz"
REPLACED = 4009  # close code: a newer socket of the same device id took over (docs/protocol.md §16)
CAPABILITIES = ("video", "audio", "commands")


class PatternVideoTrack(VideoStreamTrack):
    """A generated video: diagonal luma stripes moving right and a slowly cycling colour, yuv420p.

    `width`×`height` pixels (even numbers) at aiortc's video clock (30 frames per second); no numpy,
    each plane is filled from bytes. `frames_sent` counts the frames handed to the encoder.
    """

    def __init__(self, width: int = 320, height: int = 240):
        super().__init__()
        self.width, self.height = width, height
        self.frames_sent = 0
        # A 0..255 ramp long enough to slice any row (any shift, any line size) out of it.
        self._ramp = bytes(range(256)) * (2 + (width + 64) // 256)

    async def recv(self) -> av.VideoFrame:
        """The next frame, paced to 30 fps by `next_timestamp()`."""
        pts, time_base = await self.next_timestamp()
        n = self.frames_sent
        self.frames_sent += 1
        frame = av.VideoFrame(self.width, self.height, "yuv420p")
        luma, cb, cr = frame.planes
        rows = bytearray()
        for y in range(luma.height):
            start = (4 * n + y) % 256  # each row shifted by one: diagonal stripes moving with time
            rows += self._ramp[start : start + luma.line_size]
        luma.update(bytes(rows))
        cb.update(bytes([(2 * n) % 256]) * cb.buffer_size)
        cr.update(bytes([(255 - 3 * n) % 256]) * cr.buffer_size)
        frame.pts = pts
        frame.time_base = time_base if isinstance(time_base, Fraction) else Fraction(time_base)
        return frame


@dataclass
class RobotSession:
    """One signaling session as the robot sees it.

    Times are `time.perf_counter()` seconds (comparable with the app simulator's in one process);
    `close_reason` is the `reason` of the relay's `webrtc_close` (or `"robot_stopped"`/`"disconnected"`);
    `ended` is set once the peer connection is closed.
    """

    session_id: str
    pc: RTCPeerConnection
    track: PatternVideoTrack
    channel: RTCDataChannel
    candidates: RemoteCandidates = field(default_factory=RemoteCandidates)
    requested_at: float = 0.0
    offer_sent_at: float | None = None
    answer_received_at: float | None = None
    closed_at: float | None = None
    close_reason: str | None = None
    messages_echoed: int = 0
    ended: asyncio.Event = field(default_factory=asyncio.Event)


class RobotSim:
    """A simulated robot connected to the relay at `url` (`http(s)://` or `ws(s)://` base URL).

    `await start()` connects (raises `SimError` when the handshake is refused) and serves frames in the
    background until `await stop()`. `sessions` maps session ids to `RobotSession`, `commands` lists
    the `command` frames received, `errors` the relay's `error` frames. `trickle` also sends the
    candidates of the offer as `webrtc_ice` frames (aiortc has them all in the SDP already).
    `relay_only` gathers TURN-relayed candidates only (`rtc_configuration`).
    """

    def __init__(
        self,
        url: str,
        device_id: str,
        secret: str,
        *,
        width: int = 320,
        height: int = 240,
        trickle: bool = True,
        capabilities: tuple[str, ...] = CAPABILITIES,
        relay_only: bool = False,
    ):
        self.url, self.device_id, self.secret = url, device_id, secret
        self.relay_only = relay_only
        self.width, self.height, self.trickle = width, height, trickle
        self.capabilities = list(capabilities)
        self.sessions: dict[str, RobotSession] = {}
        self.commands: list[dict] = []
        self.errors: list[dict] = []
        self.socket: JsonSocket | None = None
        self._reader: asyncio.Task | None = None
        self._last_timestamp = 0
        self.close_code: int | None = None  # the relay's close code once the socket closed (None: no close frame)

    async def start(self, open_timeout: float = 10.0) -> None:
        """Open `/ws/device` with signed headers, send `hello`, and start serving frames."""
        timestamp = await self._fresh_timestamp()
        try:
            connection = await open_robot(self.url, self.device_id, self.secret, timestamp, open_timeout=open_timeout)
        except InvalidStatus as exc:
            raise SimError(f"robot handshake refused with HTTP {exc.response.status_code}") from exc
        self.socket = JsonSocket(connection, f"robot {self.device_id}")
        await self.socket.send({"type": "hello", "device_id": self.device_id, "capabilities": self.capabilities})
        self._reader = asyncio.create_task(self._serve(), name=f"robot-{self.device_id}")

    async def stop(self) -> None:
        """Close every peer connection and the WebSocket; wait for the reader to end."""
        if self.socket is not None:
            await self.socket.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self._close_all("robot_stopped")

    async def wait_closed(self) -> None:
        """Wait until the relay closes the WebSocket (or `stop()` is called)."""
        if self._reader is not None:
            await asyncio.shield(self._reader)

    async def _fresh_timestamp(self) -> int:
        """Unix seconds never used before by this robot: the relay refuses a replayed signature."""
        now = int(time.time())
        if now <= self._last_timestamp:
            now = self._last_timestamp + 1
            await asyncio.sleep(max(0.0, now - time.time() + 0.001))
        self._last_timestamp = now
        return now

    async def _serve(self) -> None:
        try:
            while True:
                frame = await self.socket.recv()
                try:
                    await self._dispatch(frame)
                except Exception:
                    log.exception("robot %s: failed handling %s", self.device_id, frame)
        except ConnectionClosed as exc:
            self.close_code = exc.rcvd.code if exc.rcvd else None
            log.info("robot %s: WebSocket closed (%s)", self.device_id, self.close_code or "no close frame")
        finally:
            await self._close_all("disconnected")

    async def _dispatch(self, frame: dict | str) -> None:
        if not isinstance(frame, dict):
            log.warning("robot %s: not a JSON object from the relay: %r", self.device_id, frame)
            return
        kind = frame.get("type")
        if kind == "ping":
            await self.socket.send({"type": "pong", "timestamp": time.time()})
        elif kind == "webrtc_request":
            await self._on_request(frame)
        elif kind == "webrtc_answer":
            await self._on_answer(frame)
        elif kind == "webrtc_ice":
            session = self.sessions.get(frame.get("session_id"))
            if session is not None and isinstance(frame.get("candidate"), dict):
                await session.candidates.add(frame["candidate"])
        elif kind == "webrtc_close":
            await self._close_session(frame.get("session_id"), frame.get("reason") or "closed")
        elif kind == "command":
            await self._on_command(frame)
        elif kind == "error":
            log.warning("robot %s: relay error %s", self.device_id, frame)
            self.errors.append(frame)
        else:
            log.info("robot %s: %s frame ignored", self.device_id, kind)

    async def _on_request(self, frame: dict) -> None:
        session_id = frame.get("session_id")
        if not isinstance(session_id, str):
            log.warning("robot %s: webrtc_request without session_id: %s", self.device_id, frame)
            return
        requested_at = time.perf_counter()
        pc = RTCPeerConnection(rtc_configuration(frame.get("ice_servers"), relay_only=self.relay_only))
        track = PatternVideoTrack(self.width, self.height)
        pc.addTrack(track)
        channel = pc.createDataChannel(DATA_CHANNEL_LABEL)
        session = RobotSession(session_id, pc, track, channel, requested_at=requested_at)
        self.sessions[session_id] = session

        @channel.on("message")
        def echo(message):
            session.messages_echoed += 1
            channel.send(message)

        try:
            await pc.setLocalDescription(await pc.createOffer())
        except Exception as exc:
            log.exception("robot %s: offer failed", self.device_id)
            await self.socket.send({"type": "webrtc_error", "session_id": session_id, "error": str(exc)})
            await self._close_session(session_id, "robot_error")
            return
        offer = pc.localDescription
        await self.socket.send(
            {"type": "webrtc_offer", "session_id": session_id, "sdp": {"type": offer.type, "sdp": offer.sdp}}
        )
        session.offer_sent_at = time.perf_counter()
        if self.trickle:
            for candidate in sdp_candidates(offer.sdp):
                await self.socket.send({"type": "webrtc_ice", "session_id": session_id, "candidate": candidate})

    async def _on_answer(self, frame: dict) -> None:
        session = self.sessions.get(frame.get("session_id"))
        if session is None or session.closed_at is not None:
            log.warning("robot %s: answer for an unknown or closed session: %s", self.device_id, frame)
            return
        sdp = frame.get("sdp")
        text = sdp.get("sdp") if isinstance(sdp, dict) else sdp
        session.answer_received_at = time.perf_counter()
        await session.pc.setRemoteDescription(RTCSessionDescription(sdp=text, type="answer"))
        await session.candidates.attach(session.pc)

    async def _on_command(self, frame: dict) -> None:
        self.commands.append(frame)
        ack = {"type": "command_ack", "command": frame.get("command"), "success": True}
        for key in ("id", "command_id"):
            if key in frame:
                ack[key] = frame[key]
        await self.socket.send(ack)

    async def _close_session(self, session_id, reason: str) -> None:
        session = self.sessions.get(session_id)
        if session is None or session.closed_at is not None:
            return
        session.closed_at, session.close_reason = time.perf_counter(), reason
        await session.pc.close()
        session.ended.set()

    async def _close_all(self, reason: str) -> None:
        for session_id in list(self.sessions):
            await self._close_session(session_id, reason)


async def _run_cli(args: argparse.Namespace) -> int:
    """Keep a robot connected until interrupted, reconnecting with a growing pause (1–30 s); returns 2 when the
    handshake is refused and 3 when another connection of the same device id replaced this one (4009)."""
    robot = RobotSim(args.url, args.device_id, args.secret, width=args.width, height=args.height)
    pause = 1.0
    while True:
        try:
            await robot.start()
        except SimError as exc:
            log.error("%s", exc)
            return 2
        except OSError as exc:
            log.warning("cannot reach the relay (%s); retrying in %.0f s", exc, pause)
        else:
            log.info("robot %s online at %s", args.device_id, args.url)
            pause = 1.0
            await robot.wait_closed()
            if robot.close_code == REPLACED:
                # Another socket of this device id took over (docs/protocol.md §16): reconnecting would take
                # it back, and the two would replace each other for ever.
                log.error(
                    "robot %s: replaced by a newer connection of the same device id (4009); not reconnecting",
                    args.device_id,
                )
                return 3
        if args.once:
            return 0
        await asyncio.sleep(pause)
        pause = min(pause * 2, 30.0)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2: handshake refused, 3: replaced, 4009)."""
    parser = argparse.ArgumentParser(prog="python -m sim.robot", description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="relay base URL")
    parser.add_argument("--device-id", required=True)
    parser.add_argument("--secret", required=True, help="the device secret from provision_device")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--once", action="store_true", help="exit when the WebSocket closes instead of reconnecting")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every frame")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    quiet_libraries()
    if args.verbose:
        logging.getLogger("sim").setLevel(logging.DEBUG)
    try:
        return asyncio.run(_run_cli(args))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
