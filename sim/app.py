"""App simulator: a phone app that logs in, opens a video session with its robot and measures it.

    python -m sim.app --url http://127.0.0.1:8000 --email me@example.com --password … [--device-id ID]
                      [--frames 30] [--timeout 30]

It logs in over REST (`POST /api/auth/login`), opens `/ws/app?token=…`, sends `webrtc_request`,
answers the robot's offer with aiortc (receive-only video plus the robot's `wimz` data channel),
trickles its candidates, counts DECODED video frames, measures a data-channel round trip
(`"ping <t>"` echoed by the robot), then sends `webrtc_close` and prints a report. `AppSim` and
`RelayApi` are the same client as a library; `AppSim.call()` returns a `CallResult`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import statistics
import time
from dataclasses import dataclass, field

import httpx
from aiortc import MediaStreamError, RTCPeerConnection, RTCSessionDescription
from websockets.exceptions import ConnectionClosed, InvalidStatus

from .client import http_url, open_app
from .common import (
    JsonSocket,
    RemoteCandidates,
    SimError,
    nominated_pair,
    quiet_libraries,
    rtc_configuration,
    sdp_candidates,
)

log = logging.getLogger("sim.app")


class RelayApi:
    """The relay's REST API as the app uses it (JSON over httpx; `access` is the Bearer JWT once known).

    Every method raises `SimError` with the status and body when the relay answers an unexpected status.
    """

    def __init__(self, url: str, *, timeout: float = 10.0):
        self.url = url
        self.access: str | None = None
        self.client = httpx.AsyncClient(timeout=timeout)

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self.client.aclose()

    async def register(self, email: str, password: str) -> dict:
        """`POST /api/auth/register` → `{"user_id","email","access","refresh","token","expires_in"}` (201)."""
        body = await self._call("POST", "/api/auth/register", {201}, json={"email": email, "password": password})
        self.access = body["access"]
        return body

    async def login(self, email: str, password: str) -> dict:
        """`POST /api/auth/login` → the same shape as `register` (200); keeps the access token."""
        body = await self._call("POST", "/api/auth/login", {200}, json={"email": email, "password": password})
        self.access = body["access"]
        return body

    async def pair(self, pairing_code: str) -> dict:
        """`POST /api/devices/pair` `{"pairing_code"}` → the paired device (201)."""
        return await self._call("POST", "/api/devices/pair", {200, 201}, json={"pairing_code": pairing_code})

    async def session(self, session_id: str) -> dict:
        """`GET /api/sessions/<id>` → the session's history row (`state`, `*_at`, `end_reason`, ICE counts)."""
        return await self._call("GET", f"/api/sessions/{session_id}", {200})

    async def health(self) -> bool:
        """True when `GET /health` answers 200."""
        try:
            return (await self.client.get(http_url(self.url, "/health"))).status_code == 200
        except httpx.TransportError:
            return False

    async def _call(self, method: str, path: str, expected: set[int], **kwargs) -> dict:
        headers = {"Authorization": f"Bearer {self.access}"} if self.access else {}
        response = await self.client.request(method, http_url(self.url, path), headers=headers, **kwargs)
        if response.status_code not in expected:
            raise SimError(f"{method} {path} answered {response.status_code}: {response.text[:500]}")
        return response.json()


@dataclass
class CallResult:
    """What one video call measured. Durations are milliseconds from sending `webrtc_request`.

    `frames_decoded` counts frames returned by the remote track's `recv()` (decoded by aiortc);
    `frame_size` is (width, height) of the last one. `datachannel_rtts_ms` are the round trips of
    `"ping <t>"` messages echoed by the robot; `datachannel_rtt_ms` is their median (None if none came
    back). `request_sent_at` is the `time.perf_counter()` of the request, to compare with robot times.
    `relay_errors` are `error`/`webrtc_error` frames and `other_frames` everything else the relay sent
    during the call that was not signaling for this session (events, `device_status`, …).
    `candidate_pair` is `(local type, remote type)` of the ICE pair the video used (`relay` through TURN).
    """

    session_id: str
    device_id: str
    ice_servers: list
    request_sent_at: float
    credentials_ms: float
    offer_received_ms: float
    answer_sent_ms: float
    first_frame_ms: float | None = None
    frames_decoded: int = 0
    frame_size: tuple[int, int] | None = None
    datachannel_rtts_ms: list[float] = field(default_factory=list)
    remote_candidates: int = 0
    local_candidates: int = 0
    closed_by_app: bool = False
    relay_errors: list[dict] = field(default_factory=list)
    other_frames: list = field(default_factory=list)
    candidate_pair: tuple[str, str] | None = None

    @property
    def datachannel_rtt_ms(self) -> float | None:
        """Median data-channel round trip in ms, None when no echo came back."""
        return statistics.median(self.datachannel_rtts_ms) if self.datachannel_rtts_ms else None

    def report(self) -> str:
        """A human-readable multi-line summary."""
        rtt = self.datachannel_rtt_ms
        lines = [
            f"session id                 {self.session_id}",
            f"device                     {self.device_id}",
            f"ice servers                {self.ice_servers}",
            f"request → credentials      {self.credentials_ms:.1f} ms",
            f"request → offer received   {self.offer_received_ms:.1f} ms",
            f"request → answer sent      {self.answer_sent_ms:.1f} ms",
            f"request → first frame      {_ms(self.first_frame_ms)}",
            f"frames decoded             {self.frames_decoded}"
            + (f" ({self.frame_size[0]}x{self.frame_size[1]})" if self.frame_size else ""),
            f"data-channel RTT           {_ms(rtt)}"
            + (f" (median of {len(self.datachannel_rtts_ms)})" if self.datachannel_rtts_ms else ""),
            f"ICE candidates sent/recv   {self.local_candidates}/{self.remote_candidates}",
        ]
        lines += [f"relay error                {frame}" for frame in self.relay_errors]
        return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"


class _Call:
    """State of the call in progress: futures the WebSocket reader resolves."""

    def __init__(self, device_id: str | None):
        loop = asyncio.get_running_loop()
        self.device_id = device_id
        self.session_id: str | None = None
        self.credentials: asyncio.Future = loop.create_future()
        self.offer: asyncio.Future = loop.create_future()
        self.failed: asyncio.Future = loop.create_future()
        self.candidates = RemoteCandidates()
        self.errors: list[dict] = []
        self.other: list = []

    def fail(self, frame: dict) -> None:
        if not self.failed.done():
            self.failed.set_result(frame)


class _Media:
    """What the robot sends on the call's peer connection `pc`: its video track, whose frames are decoded
    and counted (`frames`, `size` of the last one; `first_frame` resolves with the `perf_counter()` of the
    first, `enough_frames` once `wanted` were decoded), and its data channel (`channel_ready`)."""

    def __init__(self, pc: RTCPeerConnection, wanted: int):
        loop = asyncio.get_running_loop()
        self.wanted = wanted
        self.frames = 0
        self.size: tuple[int, int] | None = None
        self.first_frame: asyncio.Future = loop.create_future()
        self.enough_frames: asyncio.Future = loop.create_future()
        self.channel_ready: asyncio.Future = loop.create_future()
        self._consumers: list[asyncio.Task] = []
        pc.on("track", self._on_track)
        pc.on("datachannel", self._on_datachannel)

    def _on_track(self, track) -> None:
        if track.kind == "video":
            self._consumers.append(asyncio.create_task(self._consume(track)))

    def _on_datachannel(self, channel) -> None:
        if not self.channel_ready.done():
            self.channel_ready.set_result(channel)

    async def _consume(self, track) -> None:
        """Decode every frame of the robot's video track until it ends."""
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            self.frames += 1
            self.size = (frame.width, frame.height)
            if not self.first_frame.done():
                self.first_frame.set_result(time.perf_counter())
            if self.frames >= self.wanted and not self.enough_frames.done():
                self.enough_frames.set_result(None)

    async def stop(self) -> None:
        """Cancel the track consumers and wait for them to end."""
        for task in self._consumers:
            task.cancel()
        await asyncio.gather(*self._consumers, return_exceptions=True)


class AppSim:
    """A simulated app connected to `/ws/app` with an access JWT.

    `await connect()` opens the socket (raises `SimError` when refused); `await call(...)` runs one
    video session and returns a `CallResult`; `await close()` closes everything. `device_status` maps
    device ids to the last `device_status` frame received. `relay_only` gathers TURN-relayed
    candidates only (`rtc_configuration`).
    """

    def __init__(self, url: str, access_token: str, *, relay_only: bool = False):
        self.url, self.access_token = url, access_token
        self.relay_only = relay_only
        self.socket: JsonSocket | None = None
        self.device_status: dict[str, dict] = {}
        self._status_event = asyncio.Event()
        self._call: _Call | None = None
        self._reader: asyncio.Task | None = None

    async def connect(self, open_timeout: float = 10.0) -> None:
        """Open `/ws/app?token=<access JWT>` and start reading frames."""
        try:
            connection = await open_app(self.url, self.access_token, open_timeout=open_timeout)
        except InvalidStatus as exc:
            raise SimError(f"app handshake refused with HTTP {exc.response.status_code}") from exc
        self.socket = JsonSocket(connection, "app")
        self._reader = asyncio.create_task(self._serve(), name="app-reader")

    async def close(self) -> None:
        """Close the WebSocket and wait for the reader to end."""
        if self.socket is not None:
            await self.socket.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    async def wait_online(self, device_id: str, within: float) -> bool:
        """Wait up to `within` s for a `device_status` saying `device_id` is online; True if it did."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                while not self.device_status.get(device_id, {}).get("online"):
                    self._status_event.clear()
                    await self._status_event.wait()
        return bool(self.device_status.get(device_id, {}).get("online"))

    async def call(
        self, device_id: str | None = None, *, frames: int = 30, time_limit: float = 30.0, rtt_samples: int = 5
    ) -> CallResult:
        """Run one video session with `device_id` (None: the user's only robot) and return its figures.

        Waits (within `time_limit` seconds) for the robot to be online, requests the session, answers the offer,
        waits for `frames` decoded frames and `rtt_samples` data-channel echoes, then sends
        `webrtc_close`. Raises `SimError` when the relay answers an error, the session closes early or
        `time_limit` seconds pass; the WebSocket stays open (for a later `call()` or `close()`).
        """
        deadline = time.monotonic() + time_limit
        if device_id is not None:
            await self.wait_online(device_id, min(time_limit / 2, 10.0))
        call = self._call = _Call(device_id)
        pc: RTCPeerConnection | None = None
        media: _Media | None = None
        try:
            started = time.perf_counter()
            await self.socket.send(
                {"type": "webrtc_request", **({"device_id": device_id} if device_id is not None else {})}
            )
            credentials = await self._step(call, call.credentials, "webrtc_credentials", deadline)
            credentials_at = time.perf_counter()
            offer = await self._step(call, call.offer, "webrtc_offer", deadline)
            offer_at = time.perf_counter()

            pc = RTCPeerConnection(rtc_configuration(credentials.get("ice_servers"), relay_only=self.relay_only))
            media = _Media(pc, frames)

            sdp = offer.get("sdp")
            await pc.setRemoteDescription(
                RTCSessionDescription(sdp=sdp.get("sdp") if isinstance(sdp, dict) else sdp, type="offer")
            )
            await call.candidates.attach(pc)
            await pc.setLocalDescription(await pc.createAnswer())
            answer = pc.localDescription
            answer_sdp = {"type": answer.type, "sdp": answer.sdp}
            await self.socket.send({"type": "webrtc_answer", "session_id": call.session_id, "sdp": answer_sdp})
            answered_at = time.perf_counter()
            local = sdp_candidates(answer.sdp)
            for candidate in local:
                await self.socket.send({"type": "webrtc_ice", "session_id": call.session_id, "candidate": candidate})

            result = CallResult(
                session_id=call.session_id,
                device_id=credentials.get("device_id"),
                ice_servers=credentials.get("ice_servers"),
                request_sent_at=started,
                credentials_ms=(credentials_at - started) * 1000,
                offer_received_ms=(offer_at - started) * 1000,
                answer_sent_ms=(answered_at - started) * 1000,
                local_candidates=len(local),
            )
            channel = await self._step(call, media.channel_ready, "the robot's data channel", deadline)
            result.datachannel_rtts_ms = await self._round_trips(call, channel, rtt_samples, deadline)
            first_frame_at = await self._step(call, media.first_frame, "a decoded frame", deadline)
            result.first_frame_ms = (first_frame_at - started) * 1000
            await self._step(call, media.enough_frames, f"{frames} decoded frames", deadline)
            result.frames_decoded, result.frame_size = media.frames, media.size
            result.candidate_pair = nominated_pair(pc)

            await self.socket.send({"type": "webrtc_close", "session_id": call.session_id})
            result.closed_by_app = True
            result.remote_candidates = call.candidates.received
            result.relay_errors, result.other_frames = call.errors, call.other
            return result
        finally:
            self._call = None
            if pc is not None:
                await pc.close()
            if media is not None:
                await media.stop()

    async def _round_trips(self, call: _Call, channel, samples: int, deadline: float) -> list[float]:
        """Send `samples` `"ping <perf_counter>"` messages one after another; the echo times in ms."""
        echoes: asyncio.Queue = asyncio.Queue()
        channel.on("message", lambda message: echoes.put_nowait((time.perf_counter(), message)))
        rtts = []
        for _ in range(samples):
            text = f"ping {time.perf_counter():.6f}"
            sent = time.perf_counter()
            channel.send(text)
            while True:
                received, message = await self._step(call, echoes.get(), "a data-channel echo", deadline)
                if message == text:
                    rtts.append((received - sent) * 1000)
                    break
        return rtts

    async def _step(self, call: _Call, awaitable, what: str, deadline: float):
        """Await `awaitable` unless the call fails first or the deadline passes (then `SimError`)."""
        waiter = asyncio.ensure_future(awaitable)
        try:
            remaining = max(0.0, deadline - time.monotonic())
            done, _ = await asyncio.wait({waiter, call.failed}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not waiter.done():
                waiter.cancel()
        if waiter in done:
            return waiter.result()
        if call.failed.done():
            raise SimError(f"call failed while waiting for {what}", call.failed.result())
        raise SimError(f"timed out waiting for {what} (session {call.session_id})")

    async def _serve(self) -> None:
        try:
            while True:
                await self._dispatch(await self.socket.recv())
        except ConnectionClosed as exc:
            log.info("app: WebSocket closed (%s)", exc.rcvd.code if exc.rcvd else "no close frame")
            if self._call is not None:
                self._call.fail({"type": "connection_closed", "code": exc.rcvd.code if exc.rcvd else None})

    async def _dispatch(self, frame: dict | str) -> None:
        call = self._call
        kind = frame.get("type") if isinstance(frame, dict) else None
        if kind == "device_status" and isinstance(frame.get("device_id"), str):
            self.device_status[frame["device_id"]] = frame
            self._status_event.set()
        if call is None:
            if kind not in ("device_status", "pong"):
                log.info("app: frame outside a call: %s", frame)
            return
        mine = call.session_id is not None and frame.get("session_id") == call.session_id
        if kind == "webrtc_credentials" and call.session_id is None:
            call.session_id = frame.get("session_id")
            call.credentials.set_result(frame)
        elif kind == "webrtc_offer" and mine and not call.offer.done():
            call.offer.set_result(frame)
        elif kind == "webrtc_ice" and mine and isinstance(frame.get("candidate"), dict):
            await call.candidates.add(frame["candidate"])
        elif kind == "webrtc_close" and mine:
            call.fail(frame)
        elif kind in ("error", "webrtc_error"):
            call.errors.append(frame)
            call.fail(frame)
        elif kind != "pong":
            call.other.append(frame)


async def _run_cli(args: argparse.Namespace) -> int:
    api = RelayApi(args.url)
    app = None
    try:
        async with asyncio.timeout(args.timeout + 15):
            await api.login(args.email, args.password)
            app = AppSim(args.url, api.access)
            await app.connect()
            result = await app.call(args.device_id, frames=args.frames, time_limit=args.timeout)
    except (SimError, TimeoutError, OSError, httpx.HTTPError) as exc:
        print(f"call failed: {exc!r}")
        return 1
    finally:
        if app is not None:
            await app.close()
        await api.aclose()
    print(result.report())
    return 0 if result.frames_decoded >= args.frames else 1


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; exit status 0 when at least `--frames` frames were decoded."""
    parser = argparse.ArgumentParser(prog="python -m sim.app", description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="relay base URL")
    parser.add_argument("--email", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--device-id", help="robot to call (default: the user's only robot)")
    parser.add_argument("--frames", type=int, default=30, help="decoded frames to wait for")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds for the whole call")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every frame")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    quiet_libraries()
    if args.verbose:
        logging.getLogger("sim").setLevel(logging.DEBUG)
    return asyncio.run(_run_cli(args))


if __name__ == "__main__":
    raise SystemExit(main())
