"""Pieces both simulators share: ICE servers, ICE candidates and a JSON WebSocket (URLs and handshakes are
`sim.client`'s)."""

from __future__ import annotations

import json
import logging
import time

from aiortc import RTCConfiguration, RTCIceCandidate, RTCIceServer, RTCIceTransportPolicy, RTCPeerConnection
from aiortc.sdp import candidate_from_sdp
from websockets.asyncio.client import ClientConnection

log = logging.getLogger("sim")


def quiet_libraries() -> None:
    """Keep aioice's per-candidate-pair and httpx's per-request INFO lines out of the CLIs' output."""
    for name in ("aioice", "aiortc", "httpx"):
        logging.getLogger(name).setLevel(logging.WARNING)


class SimError(Exception):
    """A call could not go on: the relay refused something or a step timed out.

    `frame` is the relay frame that caused it (an `error`/`webrtc_error`/`webrtc_close` dict), if any.
    """

    def __init__(self, message: str, frame: dict | None = None):
        super().__init__(message if frame is None else f"{message}: {json.dumps(frame)}")
        self.frame = frame


def rtc_configuration(ice_servers: list[dict] | None, *, relay_only: bool = False) -> RTCConfiguration:
    """An aiortc `RTCConfiguration` from the relay's `ice_servers` (a list of RTCIceServer dicts).

    Each dict has `urls` (a string or a list of strings) and, for TURN, `username`/`credential`;
    entries without `urls` are skipped. An empty list gives host candidates only. `relay_only` sets
    the ICE transport policy to `relay` (W3C WebRTC `RTCIceTransportPolicy`): only TURN-relayed
    candidates are gathered, so media can only flow through the TURN server.
    """
    servers = [
        RTCIceServer(urls=entry["urls"], username=entry.get("username"), credential=entry.get("credential"))
        for entry in ice_servers or []
        if isinstance(entry, dict) and entry.get("urls")
    ]
    policy = RTCIceTransportPolicy.RELAY if relay_only else RTCIceTransportPolicy.ALL
    return RTCConfiguration(iceServers=servers, iceTransportPolicy=policy)


def nominated_pair(pc: RTCPeerConnection) -> tuple[str, str] | None:
    """`(local type, remote type)` of the ICE candidate pair the call uses (`host`, `srflx`, `relay`, …),
    or None before ICE has nominated one. Reads aioice's connection, which aiortc does not expose."""
    for transceiver in pc.getTransceivers():
        connection = getattr(transceiver.receiver.transport.transport, "_connection", None)
        pair = getattr(connection, "_nominated", {}).get(1)
        if pair is not None:
            return pair.local_candidate.type, pair.remote_candidate.type
    return None


def sdp_candidates(sdp: str) -> list[dict]:
    """The ICE candidates of a session description as trickle-ICE dicts, in SDP order.

    Each dict is `{"candidate": "candidate:…", "sdpMid": <mid or None>, "sdpMLineIndex": <m-line index>}`,
    the shape of a browser's `RTCIceCandidate.toJSON()` and of protocol.md's `webrtc_ice` frames.
    aiortc gathers every candidate before `setLocalDescription` returns, so this is its whole list.
    """
    found = []
    mline, mid = -1, None
    for line in sdp.splitlines():
        if line.startswith("m="):
            mline, mid = mline + 1, None
        elif line.startswith("a=mid:"):
            mid = line[len("a=mid:") :]
        elif line.startswith("a=candidate:") and mline >= 0:
            found.append({"candidate": line[2:], "sdpMid": mid, "sdpMLineIndex": mline})
    return found


def candidate_from_frame(candidate: dict) -> RTCIceCandidate | None:
    """An aiortc `RTCIceCandidate` from a `webrtc_ice` frame's `candidate` dict; None for an empty one.

    The dict is `{"candidate": "candidate:…", "sdpMid": …, "sdpMLineIndex": …}`; an empty `candidate`
    string is a browser's end-of-candidates marker, which aiortc does not need.
    """
    text = candidate.get("candidate") or ""
    if not text:
        return None
    parsed = candidate_from_sdp(text.split(":", 1)[1] if text.startswith("candidate:") else text)
    parsed.sdpMid = candidate.get("sdpMid")
    parsed.sdpMLineIndex = candidate.get("sdpMLineIndex")
    return parsed


class RemoteCandidates:
    """Remote trickle-ICE candidates of one session, held until the remote description is set.

    Candidates may arrive before the offer/answer they belong to (field report F5); aiortc can only
    place a candidate once the remote description created its transceivers.
    """

    def __init__(self) -> None:
        self.pc: RTCPeerConnection | None = None
        self.pending: list[dict] = []
        self.received = 0

    async def add(self, candidate: dict) -> None:
        """Add one `webrtc_ice` `candidate` dict now, or keep it until `attach()`."""
        self.received += 1
        if self.pc is None:
            self.pending.append(candidate)
        else:
            await self._apply(candidate)

    async def attach(self, pc: RTCPeerConnection) -> None:
        """Call after `setRemoteDescription`: add the held candidates and every later one directly."""
        self.pc = pc
        pending, self.pending = self.pending, []
        for candidate in pending:
            await self._apply(candidate)

    async def _apply(self, candidate: dict) -> None:
        try:
            parsed = candidate_from_frame(candidate)
            if parsed is not None:
                await self.pc.addIceCandidate(parsed)
        except (ValueError, IndexError, KeyError, TypeError) as exc:
            log.warning("ignoring remote candidate %r: %s", candidate, exc)


class JsonSocket:
    """A relay WebSocket that sends and receives protocol.md frames (one JSON object per text frame).

    Every frame in either direction is kept in `transcript` as `(seconds since open, "sent"|"received",
    frame)` so that a failed run can show exactly what the relay sent.
    """

    def __init__(self, connection: ClientConnection, name: str):
        self.connection = connection
        self.name = name
        self.opened = time.perf_counter()
        self.transcript: list[tuple[float, str, dict | str]] = []

    async def send(self, frame: dict) -> None:
        """Send one frame (a dict) as a JSON text frame."""
        self._record("sent", frame)
        await self.connection.send(json.dumps(frame))

    async def recv(self) -> dict | str:
        """The next frame: a dict, or the raw text when it is not a JSON object (kept for the report)."""
        raw = await self.connection.recv()
        try:
            frame = json.loads(raw)
        except (TypeError, ValueError):
            frame = raw
        if not isinstance(frame, dict):
            frame = raw if isinstance(raw, str) else repr(raw)
        self._record("received", frame)
        return frame

    async def close(self) -> None:
        """Close the WebSocket (normal closure)."""
        await self.connection.close()

    def _record(self, direction: str, frame: dict | str) -> None:
        self.transcript.append((time.perf_counter() - self.opened, direction, frame))
        log.debug("%s %s %s", self.name, direction, _shorten(frame))


def _shorten(frame: dict | str) -> str:
    """A frame for a log line, with SDP bodies cut (they are kilobytes long)."""
    text = json.dumps(frame) if isinstance(frame, dict) else frame
    return text if len(text) <= 300 else text[:300] + "…"
