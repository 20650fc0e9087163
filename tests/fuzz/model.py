"""What the protocol fuzzer knows: the sockets it holds, who owns which device, every session, and
matchers for the frames a step must produce.

The model is the fuzzer's reading of docs/protocol.md §7–§13: for each step it predicts, per socket,
the exact frames the relay must send, and the machine (tests/fuzz/machine.py) compares them with
what every socket received.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from channels.testing import WebsocketCommunicator

from relay.protocol import MAX_REF_CHARS

ANY = object()  # matcher value: the key is present, any value
ABSENT = object()  # matcher value: the key is absent


@dataclass(eq=False)
class Sock:
    """One socket the fuzzer opened: `role` `app` (of model user `user`) or `robot` (of model device `device`)."""

    name: str
    role: str
    comm: WebsocketCommunicator
    user: int | None = None
    device: int | None = None
    open: bool = True
    closes: Counter = field(default_factory=Counter)  # session_id -> webrtc_close frames received
    nonces: Counter = field(default_factory=Counter)  # nonce -> forwarded frames received

    def __repr__(self) -> str:
        return self.name


@dataclass(eq=False)
class Sess:
    """A session the model knows (opened by `app`, with robot socket `robot`), and what happened to it."""

    sid: str
    user: int
    device: int
    app: Sock
    robot: Sock
    ended: str | None = None  # end reason, once ended
    offered: bool = False
    answered: bool = False
    app_ice: int = 0
    robot_ice: int = 0

    def __repr__(self) -> str:
        return f"session {self.sid[:8]} (U{self.user}/D{self.device}{', ' + self.ended if self.ended else ''})"


@dataclass
class Device:
    """A model device: its id, primary key, current secret, owner (a model user index or None), and
    whether it is in service."""

    device_id: str
    pk: int
    secret: str
    owner: int | None
    active: bool = True
    capabilities: list = field(default_factory=list)  # what its robot's `hello` recorded
    firmware: str = ""


class Match:
    """A predicted frame. `keys` must all match (`ANY`: present; `ABSENT`: missing); with `exact`
    the frame has no other keys."""

    def __init__(self, keys: dict | None = None, *, exact: bool = False, **more):
        self.keys = {**(keys or {}), **more}
        self.exact = exact

    @classmethod
    def frame(cls, frame: dict, **changes) -> Match:
        """Exactly `frame` with `changes` applied (a frame forwarded unchanged, or with keys added)."""
        return cls({**frame, **changes}, exact=True)

    def matches(self, frame) -> bool:
        if not isinstance(frame, dict):
            return False
        for key, want in self.keys.items():
            if want is ABSENT:
                if key in frame:
                    return False
            elif key not in frame or (want is not ANY and not _same(frame[key], want)):
                return False
        if self.exact:
            wanted = {k for k, v in self.keys.items() if v is not ABSENT}
            if set(frame) != wanted:
                return False
        return True

    def __repr__(self) -> str:
        shown = {k: ("<any>" if v is ANY else "<absent>" if v is ABSENT else v) for k, v in self.keys.items()}
        return ("=" if self.exact else "⊇") + _short(shown)


def _same(got, want) -> bool:
    """JSON equality (bool is not int, 1 == 1.0 as JSON numbers)."""
    if isinstance(want, bool) or isinstance(got, bool):
        return type(got) is type(want) and got == want
    if isinstance(want, dict):
        return isinstance(got, dict) and got.keys() == want.keys() and all(_same(got[k], want[k]) for k in want)
    if isinstance(want, list):
        return isinstance(got, list) and len(got) == len(want) and all(map(_same, got, want))
    return got == want


def _short(value, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def error(code: str, ref=None) -> Match:
    """An error frame with `code` (docs/protocol.md §15) and `ref` (ABSENT: none; None: any or none); a
    string `ref` is cut to `MAX_REF_CHARS` characters, as the relay cuts it."""
    if isinstance(ref, str):
        ref = ref[:MAX_REF_CHARS]
    return Match(type="error", code=code, message=ANY, **({} if ref is None else {"ref": ref}))


def close(sid: str, reason: str, frame: dict | None = None) -> Match:
    """A `webrtc_close` for `sid` with `reason`: the relay's own, or `frame` (the closer's) plus `reason`."""
    if frame is not None:
        return Match.frame(frame, reason=reason)
    return Match(exact=True, type="webrtc_close", session_id=sid, reason=reason)


def status(device_id: str, state: str) -> Match:
    """A `device_status` for `device_id` (docs/protocol.md §11)."""
    return Match(
        exact=True, type="device_status", device_id=device_id, status=state, online=state == "online", last_seen=ANY
    )


@dataclass
class Outcome:
    """One possible result of a step: the frames each socket must get (`frames`, any order), the
    sockets the relay must close with a code (`closed`), and what the model learns (`apply`, called
    with everything received)."""

    frames: dict[Sock, list[Match]] = field(default_factory=dict)
    closed: dict[Sock, int] = field(default_factory=dict)
    apply: list = field(default_factory=list)
    label: str = ""

    def expect(self, sock: Sock, *matches: Match) -> None:
        self.frames.setdefault(sock, []).extend(matches)

    def mismatch(self, received: dict[Sock, list[dict]], closed: dict[Sock, int]) -> str | None:
        """None when `received`/`closed` are exactly this outcome; else what differs."""
        problems = []
        for sock in set(self.frames) | set(received):
            wanted = list(self.frames.get(sock, []))
            unmatched = []
            for frame in received.get(sock, []):
                for i, match in enumerate(wanted):
                    if match.matches(frame):
                        del wanted[i]
                        break
                else:
                    unmatched.append(frame)
            if unmatched:
                problems.append(f"{sock} got unpredicted {_short(unmatched, 600)}")
            if wanted:
                problems.append(f"{sock} did not get {wanted}")
        if closed != self.closed:
            problems.append(f"relay closed {closed}, predicted {self.closed}")
        return "; ".join(problems) or None
