"""A hypothesis state machine over the relay's WebSocket protocol, driven through channels'
`WebsocketCommunicator` on the full ASGI app (middleware included).

Each example makes two users, each owning a robot, and a third robot nobody owns, then runs random
steps: robot and app sockets connect and disconnect (several apps per user; a robot reconnecting
replaces its socket), devices are paired, unpaired and have their secret rotated through
`devices.services`, apps request sessions and signal (answer, ICE, close), robots signal (offer, ICE,
error, close) — with their own, ended, foreign, unknown and malformed session ids — apps send commands
and pass-through frames, robots send events and `hello`, apps renew their token, and every socket
sends garbage (docs/protocol.md §7, §9–§13, §15).

After every step the machine drains every socket (a `ping` barrier, repeated until a round brings
nothing new) and checks:

- every open socket answers `ping` with `pong`, and every frame fits docs/schema/relay-frames.schema.json;
- no `INTERNAL` error, ever;
- no frame reaches a user who does not own the device: a forwarded frame (tagged with a nonce, `fz`)
  reaches only a robot its sender's user owns or an app of its robot's owner; a frame naming a
  device reaches only that device's owner's apps; a frame naming a session reaches only that
  session's user's sockets or its robot;
- each socket gets at most one `webrtc_close` per session, only for a session it is a party of;
- the frames each socket got are exactly the ones the model predicts for the step;
- the session rows (`relay.models.Session`) agree with the model: a live session is live in its
  state, an ended one ended once (its `ended_at` never moves) with the model's end reason and ICE
  counts; robots' `hello` values are on their device rows.

The event loop: hypothesis rules are synchronous, so each example owns one `asyncio.Runner` and runs
every step's coroutine on it; the ORM runs on asgiref's thread (`database_sync_to_async`), never
on the loop's thread, as in the relay.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import sys
import time
import uuid
from collections import Counter
from urllib.parse import urlencode

from channels.db import database_sync_to_async
from channels.layers import channel_layers
from django.conf import settings
from django.test import override_settings
from hypothesis import note
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from rest_framework_simplejwt.tokens import AccessToken

from accounts.models import User
from devices import errors as device_errors
from devices import services as device_services
from devices.models import Device as DeviceRow
from devices.signing import generate_secret
from relay.models import Session
from relay.protocol import MAX_NESTING
from tests.relay import flows
from tests.support import asgi as ws
from tests.support.frames import check_sent

from . import strategies as fs
from .model import ABSENT, ANY, Device, Match, Outcome, Sess, Sock, close, error, status

_EXAMPLES = itertools.count(1)
MAX_APPS_PER_USER = 3
RECV_TIMEOUT = 5.0  # s: an open socket must answer a ping within this (the machine has 2 shared cores)
DRAIN_ROUNDS = 10
SETUP_TIMEOUT = 0.05  # s: WIMZ_SESSION_SETUP_TIMEOUT for the `request_and_time_out` rule


class Stats:
    """Counts over a test run (examples, steps, rules, frames), for the run's summary line."""

    def __init__(self):
        self.examples = 0
        self.steps = 0
        self.frames_sent = 0
        self.frames_received = 0
        self.rules: Counter = Counter()
        self.errors: Counter = Counter()

    def summary(self) -> str:
        top = ", ".join(f"{k} {v}" for k, v in sorted(self.rules.items()))
        errs = ", ".join(f"{k} {v}" for k, v in sorted(self.errors.items()))
        return (
            f"{self.examples} examples, {self.steps} steps, {self.frames_sent} frames sent, "
            f"{self.frames_received} received; rules: {top}; error frames: {errs}"
        )


STATS = Stats()


@contextlib.contextmanager
def deep_recursion(limit: int = 20000):
    """Raise the interpreter's recursion limit around the fuzzer's own (synchronous) decoding and
    comparing of deeply nested frames. Nothing else runs meanwhile: no await happens inside."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, limit))
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def _canonical_sid(raw):
    """(error Match or None, canonical session id) for a signaling frame's `session_id` (§13.7)."""
    if not isinstance(raw, str) or not raw:
        return "bad", None
    try:
        return None, str(uuid.UUID(raw))
    except ValueError:
        return error("NOT_AUTHORIZED", raw[:64]), None


def _no_nul(value) -> bool:
    """True when no string inside `value` (keys included) holds NUL (see `strategies.hello_text`)."""
    return "\\u0000" not in json.dumps(value)


# --- strategies of rule arguments ------------------------------------------------------------------

picks = st.integers(0, 10_000)
session_choices = st.one_of(
    picks.map(lambda i: ("known", i)),
    st.just(("fresh", None)),
    st.text(max_size=80).map(lambda t: ("text", t)),
    st.just(("missing", None)),
    st.sampled_from([5, None, [], {}, True, ""]).map(lambda v: ("value", v)),
)  # Not a known id spelled otherwise (`{…}`, upper case): a known defect, tests/fuzz/test_findings.py.
targets = st.sampled_from(["own", "own", "foreign", "unknown", "omitted", "null", "invalid"])
candidates = st.one_of(
    st.sampled_from(flows.ROBOT_CANDIDATES + flows.APP_CANDIDATES),
    st.none(),
    st.fixed_dictionaries({"candidate": fs.text, "sdpMid": st.none() | fs.text, "sdpMLineIndex": st.integers(0, 3)}),
)
bad_payloads = fs.json_values


def _nesting(value: object) -> int:
    """How many dict/list levels `value` nests (a scalar is 0, `{}` is 1), as relay/protocol.py counts."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


class RelayMachine(RuleBasedStateMachine):
    """The protocol fuzzer (see the module docstring). Construct inside a test with a transactional
    database (pytest-django's `transactional_db`): the relay's ORM calls run on another thread."""

    def __init__(self):
        super().__init__()
        STATS.examples += 1
        self.runner = asyncio.Runner()
        channel_layers.backends.clear()  # a fresh in-memory layer for this example's loop
        self.prefix = f"fz{next(_EXAMPLES)}x{uuid.uuid4().hex[:6]}"
        self.names = itertools.count(1)
        self.socks: list[Sock] = []
        self.robots: dict[int, Sock | None] = {}
        self.sessions: dict[str, Sess] = {}
        self.nonces: dict[str, Sock] = {}
        self.ended_at: dict[str, object] = {}
        self.pending: list[Outcome] = [Outcome(label="nothing")]
        self.sender: Sock | None = None
        self.early: dict[Sock, list[dict]] = {}
        self.step_owners: dict[int, set] = {}
        self.users, self.tokens, self.devices = self.run(self._create())
        self.robots = {d: None for d in range(len(self.devices))}
        self._step_start()

    # --- plumbing -------------------------------------------------------------------------------

    def run(self, coro):
        return self.runner.run(coro)

    @database_sync_to_async
    def _create(self):
        users = [
            User.objects.create_user(email=f"{self.prefix}u{i}@example.com", password="x-" + self.prefix)
            for i in range(2)
        ]
        devices = []
        for i, owner in enumerate([0, 1, None]):
            secret = generate_secret()
            row = DeviceRow(device_id=f"{self.prefix}_d{i}", owner=users[owner] if owner is not None else None)
            row.set_secret(secret)  # stored encrypted, as every real path stores it
            row.save()
            devices.append(Device(row.device_id, row.pk, secret, owner))
        tokens = [str(AccessToken.for_user(u)) for u in users]
        return users, tokens, devices

    def teardown(self):
        async def close_all():
            for sock in self.socks:
                if sock.open:
                    # CancelledError too: a communicator whose receive timed out has cancelled its app
                    with contextlib.suppress(Exception, asyncio.CancelledError):
                        await sock.comm.disconnect()
                    sock.open = False

        try:
            self.run(close_all())
        finally:
            self.runner.close()
            channel_layers.backends.clear()

    def _name(self, kind: str, index: int) -> str:
        return f"{kind}{index}.{next(self.names)}"

    def _step_start(self, label: str = "") -> None:
        self.step_owners = {d: {dev.owner} for d, dev in enumerate(self.devices)}
        self.sender = None
        self.pending = [Outcome(label=label or "nothing")]
        self.early = {}

    def _open(self, role: str, **who) -> list[Sock]:
        return [s for s in self.socks if s.open and s.role == role and all(getattr(s, k) == v for k, v in who.items())]

    def _owned(self, user: int) -> list[int]:
        """The user's active devices (what its app sockets' facts hold, docs/protocol.md §12)."""
        return [d for d, dev in enumerate(self.devices) if dev.owner == user and dev.active]

    def _live(self, **who) -> list[Sess]:
        return [
            s
            for s in self.sessions.values()
            if s.ended is None
            and all(getattr(s, k) is v if isinstance(v, Sock) else getattr(s, k) == v for k, v in who.items())
        ]

    def _nonce(self, sender: Sock) -> str:
        nonce = f"n{next(self.names)}"
        self.nonces[nonce] = sender
        return nonce

    async def _send(self, sock: Sock, frame) -> None:
        STATS.frames_sent += 1
        if isinstance(frame, bytes):
            await sock.comm.send_to(bytes_data=frame)
        elif isinstance(frame, str):
            await sock.comm.send_to(text_data=frame)
        else:
            await sock.comm.send_to(text_data=json.dumps(frame))

    def _end(self, out: Outcome, s: Sess, reason: str, *, skip: Sock | None = None, frame: dict | None = None):
        """Predict that `s` ends with `reason`: each party still connected but `skip` gets its close."""
        for party in (s.app, s.robot):
            if party is not skip and party.open:
                out.expect(party, close(s.sid, reason, frame))

        def apply(received, s=s, reason=reason):
            s.ended = reason

        out.apply.append(apply)

    def _address(self, user: int, frame: dict, ref: str):
        """docs/protocol.md §12 from the model's facts: (error Match, None) or (None, device index)."""
        if "device_id" in frame and frame["device_id"] is not None:
            device_id = frame["device_id"]
            if not isinstance(device_id, str) or not set(device_id) <= fs._ID_CHARS or not 0 < len(device_id) <= 64:
                return error("BAD_REQUEST", ref), None
            index = next((d for d, dev in enumerate(self.devices) if dev.device_id == device_id), None)
            if index is None or index not in self._owned(user):
                return error("NOT_AUTHORIZED", ref), None
        else:
            owned = self._owned(user)
            if not owned:
                return error("NO_DEVICE", ref), None
            if len(owned) > 1:
                return error("BAD_REQUEST", ref), None
            index = owned[0]
        robot = self.robots[index]
        if robot is None or not robot.open:
            return error("DEVICE_OFFLINE", ref), None
        return None, index

    def _target(self, user: int, target: str, pick: int, bad_id) -> dict:
        """The `device_id` part of an app frame for the `target` kind."""
        owned = self._owned(user)
        others = [d for d in range(len(self.devices)) if d not in owned]
        if target == "own" and owned:
            return {"device_id": self.devices[owned[pick % len(owned)]].device_id}
        if target == "foreign" and others:
            return {"device_id": self.devices[others[pick % len(others)]].device_id}
        if target == "omitted":
            return {}
        if target == "null":
            return {"device_id": None}
        if target == "invalid":
            return {"device_id": bad_id}
        return {"device_id": f"{self.prefix}_nope"}

    def _session_id(self, choice) -> tuple[bool, object]:
        """(present, value) of `session_id` for a session choice."""
        kind, value = choice
        if kind == "known" and self.sessions:
            return True, list(self.sessions)[value % len(self.sessions)]
        if kind in ("known", "fresh"):
            return True, str(uuid.uuid4())
        if kind == "missing":
            return False, None
        return True, value

    # --- the drain and the checks ---------------------------------------------------------------

    async def _barrier(self, sock: Sock) -> tuple[list[dict], int | None]:
        """`ping` `sock` and collect what it receives before the `pong` (or before the relay closes it)."""
        frames = self.early.pop(sock, [])
        await sock.comm.send_to(text_data='{"type":"ping"}')
        while True:
            try:
                out = await sock.comm.receive_output(timeout=RECV_TIMEOUT)
            except TimeoutError:
                raise AssertionError(f"{sock} did not answer ping with pong within {RECV_TIMEOUT} s") from None
            if out["type"] == "websocket.close":
                return frames, out.get("code")
            if out["type"] != "websocket.send":
                continue
            if out.get("text") is None:
                raise AssertionError(f"{sock} got a binary frame {out!r:.200}")
            with deep_recursion():
                frame = check_sent(json.loads(out["text"]), sock.comm.scope.get("path"))
            STATS.frames_received += 1
            if frame == {"type": "pong"}:
                return frames, None
            frames.append(frame)

    async def _collect_until(self, wanted: dict[Sock, callable], timeout: float = RECV_TIMEOUT) -> None:
        """Read each socket in `wanted` into `self.early` until a frame satisfies its predicate (a
        timer's frame, which no barrier can wait for)."""
        deadline = time.monotonic() + timeout
        for sock, predicate in wanted.items():
            got = self.early.setdefault(sock, [])
            while not any(predicate(f) for f in got):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"{sock}: the setup timer's webrtc_close did not arrive; got {got}")
                try:
                    text = await sock.comm.receive_from(timeout=remaining)
                except TimeoutError:
                    raise AssertionError(f"{sock}: the setup timer's webrtc_close did not arrive; got {got}") from None
                with deep_recursion():
                    got.append(check_sent(json.loads(text), sock.comm.scope.get("path")))

    async def _drain(self) -> tuple[dict[Sock, list[dict]], dict[Sock, int]]:
        """Barrier every open socket, the step's sender first, in rounds until two rounds in a row
        bring nothing. One round is not enough: a socket barriered late in a round may send to one
        barriered earlier, and a consumer may send without writing to its own socket (a frame for a
        session it no longer holds makes it tell the sender SESSION_NOT_FOUND)."""
        received: dict[Sock, list[dict]] = {}
        closed: dict[Sock, int] = {}
        quiet = 0
        for _ in range(DRAIN_ROUNDS):
            progress = False
            order = sorted((s for s in self.socks if s.open), key=lambda s: s is not self.sender)
            for sock in order:
                frames, code = await self._barrier(sock)
                if frames:
                    received.setdefault(sock, []).extend(frames)
                    progress = True
                if code is not None:
                    closed[sock] = code
                    sock.open = False
                    progress = True
                    with contextlib.suppress(Exception, asyncio.CancelledError):
                        await sock.comm.disconnect()  # as the server would see the TCP close
            quiet = 0 if progress else quiet + 1
            if quiet == 2:
                return received, closed
        raise AssertionError(f"frames still arriving after {DRAIN_ROUNDS} barrier rounds: {received}")

    def _check_safety(self, sock: Sock, frame: dict) -> None:
        """The invariants that hold whatever the model predicts (see the module docstring)."""
        owners = self.step_owners
        sid = frame.get("session_id")
        session = self.sessions.get(sid) if isinstance(sid, str) else None
        nonce = frame.get("fz")
        sender = self.nonces.get(nonce) if isinstance(nonce, str) else None
        if sender is not None:
            sock.nonces[nonce] += 1
            assert sock.nonces[nonce] == 1, f"{sock} got frame {nonce} twice: {frame}"
            # One frame goes from an app to an app: a `webrtc_close`, to the session's opener (§13.3).
            assert sender.role != sock.role or (frame.get("type") == "webrtc_close" and sender.user == sock.user), (
                f"a {sender.role}'s frame reached a {sock.role}: {sender} -> {sock}: {frame}"
            )
        if sock.role == "app":
            device_id = frame.get("device_id")
            for d, dev in enumerate(self.devices):
                if device_id == dev.device_id and frame.get("type") != "error":
                    assert sock.user in owners[d], f"{sock} (U{sock.user}) got a frame of D{d}: {frame}"
            if sender is not None and sender.role == "robot":
                assert sock.user in owners[sender.device], f"{sender}'s frame reached {sock} (U{sock.user}): {frame}"
            if session is not None and frame.get("type") != "error":
                assert session.user == sock.user, f"{sock} (U{sock.user}) got a frame of {session}: {frame}"
        else:
            if sender is not None:
                assert sender.user in owners[sock.device], f"{sender} (U{sender.user})'s frame reached {sock}: {frame}"
            if session is not None and frame.get("type") != "error":
                assert session.device == sock.device, f"{sock} got a frame of {session}: {frame}"
        if frame.get("type") == "webrtc_close" and isinstance(sid, str):
            sock.closes[sid] += 1
            assert sock.closes[sid] == 1, f"{sock} got a second webrtc_close for {sid}: {frame}"
            assert session is not None and sock in (session.app, session.robot), (
                f"{sock} got a webrtc_close for a session it is no party of: {frame}"
            )

    @invariant()
    def relay_behaves(self):
        """Drain every socket and check the step (the module docstring lists the checks)."""
        STATS.steps += 1
        received, closed = self.run(self._drain())
        with deep_recursion():
            for sock, frames in received.items():
                for frame in frames:
                    if frame.get("type") == "error":
                        STATS.errors[frame.get("code")] += 1
                        assert frame.get("code") != "INTERNAL", f"{sock} got an INTERNAL error: {frame}"
            outcomes = list(self.pending)
            if self.sender is not None:
                outcomes.append(Outcome(frames={self.sender: [error("RATE_LIMITED")]}, label="rate limited"))
            mismatches = []
            for outcome in outcomes:
                problem = outcome.mismatch(received, closed)
                if problem is None:
                    for apply in outcome.apply:
                        apply(received)
                    break
                mismatches.append(f"[{outcome.label}] {problem}")
            for sock, frames in received.items():  # after `apply`: sessions opened in this step are known
                for frame in frames:
                    self._check_safety(sock, frame)
            if len(mismatches) == len(outcomes):
                raise AssertionError("the relay's frames differ from the model's prediction: " + " | ".join(mismatches))
        self.run(self._check_rows())
        self._step_start()

    async def _check_rows(self) -> None:
        def rows():
            sessions = {
                str(r["id"]): r
                for r in Session.objects.filter(device__pk__in=[d.pk for d in self.devices]).values(
                    "id",
                    "user_id",
                    "state",
                    "ended_at",
                    "end_reason",
                    "offered_at",
                    "answered_at",
                    "app_ice_candidates",
                    "robot_ice_candidates",
                )
            }
            devices = {
                r["pk"]: r
                for r in DeviceRow.objects.filter(pk__in=[d.pk for d in self.devices]).values(
                    "pk", "capabilities", "firmware_version"
                )
            }
            return sessions, devices

        sessions, devices = await database_sync_to_async(rows)()
        assert set(sessions) == set(self.sessions), (
            f"session rows {sorted(sessions)} differ from the model's sessions {sorted(self.sessions)}"
        )
        for sid, s in self.sessions.items():
            row = sessions[sid]
            where = f"{s}: row {row}"
            assert row["user_id"] == self.users[s.user].pk, where
            if s.ended:
                assert (row["state"], row["end_reason"]) == ("ended", s.ended) and row["ended_at"], where
                assert self.ended_at.setdefault(sid, row["ended_at"]) == row["ended_at"], f"{where}: ended twice"
                assert (row["app_ice_candidates"], row["robot_ice_candidates"]) == (s.app_ice, s.robot_ice), (
                    f"{where}: ICE counts, model app {s.app_ice} robot {s.robot_ice}"
                )
            else:
                state = "answered" if s.answered else "offered" if s.offered else "requested"
                assert (row["state"], row["end_reason"], row["ended_at"]) == (state, "", None), where
            assert (row["offered_at"] is not None) == s.offered, where
            assert (row["answered_at"] is not None) == s.answered, where
        for dev in self.devices:
            row = devices[dev.pk]
            assert (row["capabilities"], row["firmware_version"]) == (dev.capabilities, dev.firmware), row

    # --- connections ----------------------------------------------------------------------------

    @initialize(unowned_robot=st.booleans(), apps=st.lists(st.integers(0, 1), max_size=2), session=st.booleans())
    def start(self, unowned_robot, apps, session):
        """Start where most steps have something to work on: both owned robots online, an app per user
        (or more), and maybe a session of U0's first app with its robot."""
        for d in (0, 1, 2) if unowned_robot else (0, 1):
            self.connect_robot(d)
        for u in [0, 1, *apps]:
            self.connect_app(u)
        if session and self._can_open():
            self.request_online(0, False)

    @rule(pick=picks)
    def connect_robot(self, pick):
        """A robot connects; a second socket for the same device replaces the first (§4.4)."""
        d = pick % len(self.devices)
        dev = self.devices[d]
        STATS.rules["connect_robot"] += 1

        comm, accepted = self.run(ws.connect("/ws/device", ws.robot_headers(dev.device_id, dev.secret)))
        if not dev.active:  # §16: a deactivated device's handshake is refused (HTTP 403)
            assert not accepted, f"D{d} is deactivated, yet its handshake was accepted"
            note(f"D{d} (deactivated) is refused")
            return
        assert accepted, f"D{d}'s handshake was refused"
        old = self.robots[d]
        sock = Sock(self._name("R", d), "robot", comm, device=d)
        note(f"{sock} connects" + (f", replacing {old}" if old is not None else ""))
        self.socks.append(sock)
        out = self.pending[0]
        out.label = "robot connects"
        if old is not None:
            for s in self._live(robot=old):
                self._end(out, s, "superseded")
            out.closed[old] = 4009
        elif dev.owner is not None:
            for app in self._open("app", user=dev.owner):
                out.expect(app, status(dev.device_id, "online"))
        self.robots[d] = sock

    @precondition(lambda self: self._open("robot"))
    @rule(pick=picks)
    def disconnect_robot(self, pick):
        """A robot's socket closes: its sessions end `robot_disconnected`, its owner sees it offline."""
        robots = self._open("robot")
        sock = robots[pick % len(robots)]
        out = self._disconnect(sock, "robot_disconnected", robot=sock)
        dev = self.devices[sock.device]
        if dev.owner is not None:
            for app in self._open("app", user=dev.owner):
                out.expect(app, status(dev.device_id, "offline"))
        self.robots[sock.device] = None

    @rule(pick=picks)
    def connect_app(self, pick):
        """An app connects and gets one `device_status` per device its user owns (§11)."""
        u = pick % len(self.users)
        if len(self._open("app", user=u)) >= MAX_APPS_PER_USER:
            return
        STATS.rules["connect_app"] += 1
        comm, accepted = self.run(ws.connect("/ws/app?" + urlencode({"token": self.tokens[u]})))
        if not accepted:  # a cap on sockets per user is not this fuzzer's business
            note(f"an app socket of U{u} was refused")
            return
        sock = Sock(self._name("A", u), "app", comm, user=u)
        note(f"{sock} connects")
        self.socks.append(sock)
        out = self.pending[0]
        out.label = "app connects"
        for d in self._owned(u):
            online = self.robots[d] is not None and self.robots[d].open
            out.expect(sock, status(self.devices[d].device_id, "online" if online else "offline"))

    @precondition(lambda self: self._open("app"))
    @rule(pick=picks)
    def disconnect_app(self, pick):
        """An app's socket closes: the sessions it opened end `app_disconnected` (§13.3)."""
        apps = self._open("app")
        sock = apps[pick % len(apps)]
        self._disconnect(sock, "app_disconnected", app=sock)

    def _disconnect(self, sock, reason: str, **party):
        """Close `sock` from the client side; expect its live sessions (`party`: robot= or app=) to end with
        `reason` at their other parties. Returns the step's expected outcome."""
        STATS.rules[f"disconnect_{sock.role}"] += 1
        note(f"{sock} disconnects")
        self.run(sock.comm.disconnect())
        sock.open = False
        out = self.pending[0]
        out.label = f"{sock.role} disconnects"
        for s in self._live(**party):
            self._end(out, s, reason, skip=sock)
        return out

    # --- ownership (devices.services) -----------------------------------------------------------

    def _service(self, fn):
        """Run a devices.services call on the ORM thread (its signals reach the relay on this loop)."""
        return self.run(database_sync_to_async(fn)())

    @rule(
        op=st.sampled_from(
            ["unpair", "unpair", "unpair by another user", "pair", "pair", "rotate secret", "deactivate"]
        ),
        pick=picks,
        user=st.integers(0, 1),
    )
    def change_ownership(self, op, pick, user):
        """One rule for the ownership changes (so they take a fair share of the steps, not three)."""
        if op == "pair":
            self.pair(pick, user)
        elif op == "rotate secret":
            self.rotate_secret(pick)
        elif op == "deactivate":
            self.deactivate(pick)
        else:
            self.unpair(pick, op == "unpair")

    def unpair(self, pick, by_owner):
        """`device_unpair`: the owner's apps get `unpaired`, the device's sessions end `unpaired` (§17.4)."""
        d = pick % len(self.devices)
        dev = self.devices[d]
        u = dev.owner if (by_owner and dev.owner is not None) else (pick // 3) % len(self.users)
        STATS.rules["unpair"] += 1
        note(f"U{u} unpairs D{d} (owner {dev.owner})")

        def call():
            device = DeviceRow.objects.get(pk=dev.pk)
            try:
                device_services.device_unpair(user=User.objects.get(pk=self.users[u].pk), device=device)
            except device_errors.DeviceNotFound:
                return False
            return True

        done = self._service(call)
        assert done == (dev.owner == u), f"unpair of D{d} by U{u}: done={done}, model owner {dev.owner}"
        out = self.pending[0]
        out.label = "unpair"
        if done:
            for s in self._live(device=d):
                self._end(out, s, "unpaired")
            for app in self._open("app", user=u):
                out.expect(app, status(dev.device_id, "unpaired"))
            dev.owner = None

    def pair(self, pick, user):
        """`device_pair` with a fresh robot pairing code: a free device gets its new owner, whose apps
        get `device_status`; an owned device stays where it is (`DeviceOwned`) (§17.4)."""
        d = pick % len(self.devices)
        dev = self.devices[d]
        STATS.rules["pair"] += 1
        note(f"U{user} pairs D{d} (owner {dev.owner})")

        def call():
            device = DeviceRow.objects.get(pk=dev.pk)
            code = device_services.device_pairing_code_issue(device=device).code
            try:
                device_services.device_pair(user=User.objects.get(pk=self.users[user].pk), code=code)
            except device_errors.DeviceOwned:
                return "owned"
            except device_errors.InvalidPairingCode:
                return "invalid"
            return "paired"

        result = self._service(call)
        want = "invalid" if not dev.active else "owned" if dev.owner not in (None, user) else "paired"
        assert result == want, f"pair of D{d} by U{user}: {result}, model owner {dev.owner}"
        out = self.pending[0]
        out.label = "pair"
        if dev.owner is None and dev.active:
            self.step_owners[d].add(user)
            online = self.robots[d] is not None and self.robots[d].open
            for app in self._open("app", user=user):
                out.expect(app, status(dev.device_id, "online" if online else "offline"))
            dev.owner = user

    def rotate_secret(self, pick):
        """`device_rotate_secret`: the robot's socket closes 4003; its sessions end `robot_disconnected`
        and its owner sees it offline (§16)."""
        d = pick % len(self.devices)
        dev = self.devices[d]
        STATS.rules["rotate_secret"] += 1
        note(f"D{d}'s secret is rotated")
        dev.secret = self._service(
            lambda: device_services.device_rotate_secret(device=DeviceRow.objects.get(pk=dev.pk))
        )
        robot = self.robots[d]
        out = self.pending[0]
        out.label = "rotate secret"
        if robot is not None and robot.open:
            out.closed[robot] = 4003
            for s in self._live(robot=robot):
                self._end(out, s, "robot_disconnected", skip=robot)
            if dev.owner is not None:
                for app in self._open("app", user=dev.owner):
                    out.expect(app, status(dev.device_id, "offline"))
            self.robots[d] = None

    def deactivate(self, pick):
        """`device_deactivate`: the device leaves its owner's facts, its robot's socket closes 4003, its
        sessions end `robot_disconnected` and its owner sees it offline; it can connect no more (§16)."""
        d = pick % len(self.devices)
        dev = self.devices[d]
        STATS.rules["deactivate"] += 1
        note(f"D{d} is deactivated")
        self._service(lambda: device_services.device_deactivate(device=DeviceRow.objects.get(pk=dev.pk)))
        robot = self.robots[d]
        out = self.pending[0]
        out.label = "deactivate"
        if robot is not None and robot.open:
            out.closed[robot] = 4003
            for s in self._live(robot=robot):
                self._end(out, s, "robot_disconnected", skip=robot)
            if dev.owner is not None:
                for app in self._open("app", user=dev.owner):
                    out.expect(app, status(dev.device_id, "offline"))
            self.robots[d] = None
        dev.active = False

    # --- sessions -------------------------------------------------------------------------------

    @precondition(lambda self: self._open("app"))
    @rule(pick=picks, to=targets, bad_id=fs.invalid_device_ids, extra=fs.extra_keys())
    def request(self, pick, to, bad_id, extra):
        """`webrtc_request` (§13.1): credentials to the app, the request to the robot, sessions over the
        limit end `superseded` (§13.5); addressing errors as in §12."""
        apps = self._open("app")
        sock = apps[pick % len(apps)]
        self._request(sock, {**extra, **self._target(sock.user, to, pick // 7, bad_id)}, time_out=False)

    def _can_open(self) -> list[tuple[Sock, int]]:
        """(app socket, device index) pairs for which a `webrtc_request` opens a session."""
        return [
            (a, d)
            for a in self._open("app")
            for d in self._owned(a.user)
            if self.robots[d] is not None and self.robots[d].open
        ]

    @precondition(lambda self: self._can_open())
    @rule(pick=picks, time_out=st.booleans())
    def request_online(self, pick, time_out):
        """A `webrtc_request` for the user's online robot, as apps send it; with `time_out` nobody answers
        it within the setup timeout, and it ends `setup_timeout` (§13.4)."""
        sock, d = self._can_open()[pick % len(self._can_open())]
        self._request(sock, {"device_id": self.devices[d].device_id}, time_out=time_out)

    def _request(self, sock: Sock, fields: dict, *, time_out: bool) -> None:
        frame = {"type": "webrtc_request", **fields}
        STATS.rules["request (timing out)" if time_out else "request"] += 1
        note(f"{sock} sends {frame}")
        failure, d = self._address(sock.user, frame, "webrtc_request")
        out = self.pending[0]
        out.label = "webrtc_request"
        self.sender = sock
        if failure is not None:
            out.expect(sock, failure)
            self.run(self._send(sock, frame))
            return
        dev, robot = self.devices[d], self.robots[d]
        live = self._live(device=d)
        limit = max(1, settings.WIMZ_MAX_SESSIONS_PER_DEVICE)
        superseded = live[: max(0, len(live) - limit + 1)]
        for s in superseded:
            self._end(out, s, "superseded")
        out.expect(
            sock, Match(exact=True, type="webrtc_credentials", session_id=ANY, device_id=dev.device_id, ice_servers=ANY)
        )
        out.expect(robot, Match(exact=True, type="webrtc_request", session_id=ANY, ice_servers=ANY))
        if time_out:
            for party in (sock, robot):
                out.expect(party, Match(exact=True, type="webrtc_close", session_id=ANY, reason="setup_timeout"))

        def apply(received):
            creds = next(f for f in received[sock] if f["type"] == "webrtc_credentials")
            req = next(f for f in received[robot] if f["type"] == "webrtc_request")
            sid = creds["session_id"]
            assert req["session_id"] == sid and req["ice_servers"] == creds["ice_servers"], (creds, req)
            assert sid not in self.sessions, f"session id {sid} reused"
            self.sessions[sid] = Sess(sid, sock.user, d, sock, robot, ended="setup_timeout" if time_out else None)
            for s in superseded:  # §13.5: the robot hears of the old session's end before the new request
                robot_frames = received[robot]
                first_close = next(i for i, f in enumerate(robot_frames) if f.get("session_id") == s.sid)
                assert first_close < robot_frames.index(req), f"{robot}: superseded close after the request"
                if s.app is sock:  # ... and the requester gets the credentials first
                    mine = received[sock]
                    closing = next(i for i, f in enumerate(mine) if f.get("session_id") == s.sid)
                    assert mine.index(creds) < closing, f"{sock}: credentials after the superseded close"
            if time_out:
                for party in (sock, robot):
                    ends = [f for f in received[party] if f.get("reason") == "setup_timeout"]
                    assert [f["session_id"] for f in ends] == [sid], (party, ends)

        out.apply.append(apply)
        if not time_out:
            self.run(self._send(sock, frame))
            return

        async def go():
            await self._send(sock, frame)
            timed_out = lambda f: f.get("type") == "webrtc_close" and f.get("reason") == "setup_timeout"  # noqa: E731
            await self._collect_until({sock: timed_out, robot: timed_out})

        with override_settings(WIMZ_SESSION_SETUP_TIMEOUT=SETUP_TIMEOUT):
            self.run(go())

    def _signal_target(self, sock: Sock, frame: dict, out: Outcome) -> Sess | None:
        """The session a signaling frame names if `sock` may signal it; otherwise predicts the error
        of docs/protocol.md §13.7 and returns None."""
        kind = frame["type"]
        failure, sid = _canonical_sid(frame.get("session_id"))
        if failure == "bad":
            out.expect(sock, error("BAD_REQUEST", kind))
            return None
        if failure is not None:
            out.expect(sock, failure)
            return None
        s = self.sessions.get(sid)
        if sock.role == "robot":
            mine = s is not None and s.device == sock.device
            held = mine and s.ended is None and s.robot is sock
        else:
            mine = s is not None and s.user == sock.user
            held = mine and s.ended is None
        if held:
            return s
        if mine and s.ended is not None:
            out.expect(sock, error("SESSION_NOT_FOUND", sid))
        else:
            out.expect(sock, error("NOT_AUTHORIZED", sid))
        return None

    @precondition(lambda self: self._open("robot"))
    @rule(
        pick=picks,
        kind=st.sampled_from(["webrtc_offer", "webrtc_ice", "webrtc_error", "webrtc_close"]),
        session=session_choices,
        valid=st.booleans() | st.just(True),
        candidate=candidates,
        bad=bad_payloads,
        extra=fs.extra_keys(),
    )
    def robot_signals(self, pick, kind, session, valid, candidate, bad, extra):
        """A robot's offer, ICE candidate, error or close for any session id (§13)."""
        robots = self._open("robot")
        self._robot_signal(robots[pick % len(robots)], kind, session, valid, candidate, bad, extra)

    @precondition(lambda self: self._live())
    @rule(
        pick=picks,
        kind=st.sampled_from(
            ["webrtc_offer", "webrtc_offer", "webrtc_ice", "webrtc_ice", "webrtc_error", "webrtc_close"]
        ),
        candidate=candidates,
        extra=fs.extra_keys(),
    )
    def robot_signals_live(self, pick, kind, candidate, extra):
        """A robot signals one of its live sessions, as robots do (§13.1)."""
        live = self._live()
        s = live[pick % len(live)]
        self._robot_signal(s.robot, kind, ("known", list(self.sessions).index(s.sid)), True, candidate, None, extra)

    def _signal_frame(self, sock, kind, session, valid, candidate, bad, extra, sdp_type, sdp):
        """`(frame, valid)`: a signaling frame of `kind` from `sock` for `session`, whose session description
        (for `webrtc_<sdp_type>`) or candidate is the real one when `valid`, else `bad`; `valid` says whether
        the relay must take it (a `bad` value may still be a well-formed one)."""
        frame = {"type": kind, "fz": self._nonce(sock), **extra}
        present, sid = self._session_id(session)
        if present:
            frame["session_id"] = sid
        if kind == f"webrtc_{sdp_type}":
            frame["sdp"] = sdp if valid else bad
            return frame, valid or _is_sdp(bad, sdp_type)
        if kind == "webrtc_ice":
            _set_candidate(frame, candidate if valid else bad, valid)
            return frame, "candidate" in frame and (frame["candidate"] is None or isinstance(frame["candidate"], dict))
        return frame, True

    def _robot_signal(self, sock, kind, session, valid, candidate, bad, extra):
        frame, valid = self._signal_frame(sock, kind, session, valid, candidate, bad, extra, "offer", flows.OFFER)
        STATS.rules["robot signals"] += 1
        note(f"{sock} sends {frame}")
        out = self.pending[0]
        out.label = kind
        self.sender = sock
        if not valid:
            out.expect(sock, error("BAD_REQUEST", kind))
        elif (s := self._signal_target(sock, frame, out)) is not None:
            if kind == "webrtc_close":
                self._end(out, s, "closed_by_robot", skip=sock, frame=frame)
            else:
                out.expect(s.app, Match.frame(frame))
                if kind == "webrtc_error":
                    self._end(out, s, "robot_error")

                def apply(received, s=s, kind=kind, frame=frame):
                    if kind == "webrtc_offer":
                        s.offered = True
                    elif kind == "webrtc_ice":
                        s.robot_ice += 1
                    elif kind == "webrtc_error":  # §13.3: the app gets the error before the close
                        got = received[s.app]
                        forwarded = next(i for i, f in enumerate(got) if f.get("type") == "webrtc_error")
                        closed = next(i for i, f in enumerate(got) if f.get("type") == "webrtc_close")
                        assert forwarded < closed, f"{s.app}: webrtc_close before the robot's webrtc_error"

                out.apply.insert(0, apply)
        self.run(self._send(sock, frame))

    @precondition(lambda self: self._open("app"))
    @rule(
        pick=picks,
        kind=st.sampled_from(["webrtc_answer", "webrtc_ice", "webrtc_close"]),
        session=session_choices,
        valid=st.booleans() | st.just(True),
        candidate=candidates,
        bad=bad_payloads,
        extra=fs.extra_keys(),
        reason=st.none() | fs.json_values,
    )
    def app_signals(self, pick, kind, session, valid, candidate, bad, extra, reason):
        """An app's answer, ICE candidate or close for any session id, from any socket of the user (§13)."""
        apps = self._open("app")
        self._app_signal(apps[pick % len(apps)], kind, session, valid, candidate, bad, extra, reason)

    @precondition(lambda self: self._live())
    @rule(
        pick=picks,
        kind=st.sampled_from(["webrtc_answer", "webrtc_answer", "webrtc_ice", "webrtc_ice", "webrtc_close"]),
        opener=st.booleans() | st.just(True),
        candidate=candidates,
        extra=fs.extra_keys(),
    )
    def app_signals_live(self, pick, kind, opener, candidate, extra):
        """The opener, or another app socket of the user, signals a live session (§13.1)."""
        live = self._live()
        s = live[pick % len(live)]
        sock = s.app if opener else self._open("app", user=s.user)[pick % len(self._open("app", user=s.user))]
        self._app_signal(sock, kind, ("known", list(self.sessions).index(s.sid)), True, candidate, None, extra, None)

    def _app_signal(self, sock, kind, session, valid, candidate, bad, extra, reason):
        frame, valid = self._signal_frame(sock, kind, session, valid, candidate, bad, extra, "answer", flows.ANSWER)
        if reason is not None and kind not in ("webrtc_answer", "webrtc_ice"):
            frame["reason"] = reason  # §22: overwritten by the relay's
        STATS.rules["app signals"] += 1
        note(f"{sock} sends {frame}")
        out = self.pending[0]
        out.label = kind
        self.sender = sock
        if not valid:
            out.expect(sock, error("BAD_REQUEST", kind))
        elif (s := self._signal_target(sock, frame, out)) is not None:
            if kind == "webrtc_close":
                self._end(out, s, "closed_by_app", skip=sock, frame=frame)
            else:
                out.expect(s.robot, Match.frame(frame))

                def apply(received, s=s, kind=kind):
                    if kind == "webrtc_answer":
                        s.answered = True
                    else:
                        s.app_ice += 1

                out.apply.append(apply)
        self.run(self._send(sock, frame))

    # --- commands, events, hello, renewal -------------------------------------------------------

    @precondition(lambda self: self._open("app"))
    @rule(
        pick=picks,
        kind=st.just("command") | fs.free_types,
        to=targets,
        bad_id=fs.invalid_device_ids,
        command=st.one_of(fs.text.filter(bool), st.sampled_from(["", 5, None, [], "dispense_treat"])),
        data=st.none() | fs.json_values.map(lambda v: ("data", v)),
        params=st.none() | fs.json_values,
        extra=fs.extra_keys(),
        depth=st.none() | fs.deep_depths,
    )
    def command(self, pick, kind, to, bad_id, command, data, params, extra, depth):
        """A command or pass-through frame (§10), addressed as in §12; optionally a deeply nested `data`."""
        apps = self._open("app")
        sock = apps[pick % len(apps)]
        frame = {"type": kind, "fz": self._nonce(sock), **extra, **self._target(sock.user, to, pick // 7, bad_id)}
        if kind == "command" and command is not None:
            frame["command"] = command
        if depth is not None:
            data = ("data", fs.nested(depth))
        if data is not None:
            frame["data"] = data[1]
        if params is not None:
            frame["params"] = params
        STATS.rules["command"] += 1
        note(f"{sock} sends {_brief(frame)}")
        out = self.pending[0]
        out.label = kind
        self.sender = sock
        if _nesting(frame) > MAX_NESTING:  # refused by the parser before anything is routed (§7)
            out.expect(sock, error("BAD_REQUEST", ABSENT))
        elif kind == "command" and not (isinstance(command, str) and command):
            out.expect(sock, error("BAD_REQUEST", "command"))
        else:
            failure, d = self._address(sock.user, frame, kind)
            if failure is not None:
                out.expect(sock, failure)
            else:
                forwarded = dict(frame)
                forwarded.setdefault("device_id", self.devices[d].device_id)
                if kind == "command" and "data" in frame and "params" not in frame:
                    forwarded["params"] = frame["data"]
                out.expect(self.robots[d], Match.frame(forwarded))
        self.run(self._send(sock, _encode(frame)))

    @precondition(lambda self: self._open("robot"))
    @rule(
        pick=picks,
        legacy=st.sampled_from([False, False, "absent", "null"]),
        kind=fs.free_types,
        event=fs.json_values,
        device_id=st.none() | st.one_of(fs.invalid_device_ids, st.just("wimz_robot_02")),
        timestamp=st.none() | fs.json_values.map(lambda v: ("timestamp", v)),
        extra=fs.extra_keys(),
        depth=st.none() | fs.deep_depths,
    )
    def event(self, pick, legacy, kind, event, device_id, timestamp, extra, depth):
        """A robot event (§9): to every app of the owner with `device_id` set and `timestamp` added."""
        robots = self._open("robot")
        sock = robots[pick % len(robots)]
        dev = self.devices[sock.device]
        frame = {"fz": self._nonce(sock), **extra}
        if legacy:
            frame["event"] = event
            if legacy == "null":
                frame["type"] = None
        else:
            frame["type"] = kind
        if device_id is not None:
            frame["device_id"] = device_id
        if timestamp is not None:
            frame["timestamp"] = timestamp[1]
        if depth is not None:
            frame["data"] = fs.nested(depth)
        STATS.rules["event"] += 1
        note(f"{sock} sends {_brief(frame)}")
        out = self.pending[0]
        out.label = "event"
        self.sender = sock
        if _nesting(frame) > MAX_NESTING:  # refused by the parser before anything is routed (§7)
            out.expect(sock, error("BAD_REQUEST", ABSENT))
        elif dev.owner is not None:
            forwarded = {**frame, "device_id": dev.device_id}
            if "timestamp" not in frame:
                forwarded["timestamp"] = ANY
            for app in self._open("app", user=dev.owner):
                out.expect(app, Match.frame(forwarded))
        self.run(self._send(sock, _encode(frame)))

    @precondition(lambda self: self._open("robot"))
    @rule(
        pick=picks,
        capabilities=st.none() | st.lists(fs.hello_text, max_size=40) | fs.json_values.filter(_no_nul),
        firmware=st.none()
        | fs.hello_text
        | st.text(min_size=60, max_size=80).filter(_no_nul)
        | fs.json_values.filter(lambda v: not isinstance(v, str)),
        claim=st.sampled_from(["absent", "own", "other", "null", "number"]),
    )
    def hello(self, pick, capabilities, firmware, claim):
        """`hello` (§8.1): capabilities (first 32) and firmware (first 64 characters) are recorded; a
        `hello` naming another device is BAD_REQUEST and records nothing."""
        robots = self._open("robot")
        sock = robots[pick % len(robots)]
        dev = self.devices[sock.device]
        frame = {"type": "hello"}
        if capabilities is not None:
            frame["capabilities"] = capabilities
        if firmware is not None:
            frame["firmware_version"] = firmware
        claimed = {
            "absent": ABSENT,
            "own": dev.device_id,
            "other": self.devices[(sock.device + 1) % 3].device_id,
            "null": None,
            "number": 7,
        }[claim]
        if claimed is not ABSENT:
            frame["device_id"] = claimed
        STATS.rules["hello"] += 1
        note(f"{sock} sends {frame}")
        out = self.pending[0]
        out.label = "hello"
        self.sender = sock
        if claimed not in (ABSENT, None, dev.device_id):
            out.expect(sock, error("BAD_REQUEST", "hello"))
        else:

            def apply(received):
                if isinstance(capabilities, list) and all(isinstance(c, str) for c in capabilities):
                    dev.capabilities = capabilities[:32]
                if isinstance(firmware, str):
                    dev.firmware = firmware[:64]

            out.apply.append(apply)
        self.run(self._send(sock, frame))

    @precondition(lambda self: self._open("app"))
    @rule(pick=picks, token=st.sampled_from(["own", "other", "garbage", "number", "missing"]), junk=fs.text)
    def renew(self, pick, token, junk):
        """In-band renewal (§5.2): the user's own token answers `auth_result`, anything else NOT_AUTHORIZED."""
        apps = self._open("app")
        sock = apps[pick % len(apps)]
        frame = {"type": "auth"}
        if token != "missing":
            frame["token"] = {
                "own": self.tokens[sock.user],
                "other": self.tokens[1 - sock.user],
                "garbage": junk,
                "number": 12345,
            }[token]
        STATS.rules["renew"] += 1
        note(f"{sock} renews with the {token} token")
        out = self.pending[0]
        out.label = "auth"
        self.sender = sock
        if token == "own":
            out.expect(sock, Match(exact=True, type="auth_result", success=True, expires_at=ANY))
        else:
            out.expect(sock, error("NOT_AUTHORIZED", "auth"))
        self.run(self._send(sock, frame))

    @precondition(lambda self: any(s.open for s in self.socks))
    @rule(pick=picks, data=st.data())
    def garbage(self, pick, data):
        """A frame the relay must refuse with a stable code (§7, §15); the socket stays usable."""
        socks = [s for s in self.socks if s.open]
        sock = socks[pick % len(socks)]
        label, frame, code, ref = data.draw(fs.garbage(sock.role, settings.WIMZ_MAX_FRAME_BYTES), label="garbage")
        STATS.rules["garbage"] += 1
        note(f"{sock} sends garbage ({label}): {_brief(frame)}")
        out = self.pending[0]
        out.label = f"garbage: {label}"
        self.sender = sock
        out.expect(sock, error(code, ABSENT if ref is None else ref))
        self.run(self._send(sock, frame))


def _is_sdp(value, kind: str) -> bool:
    """True for a session description the relay accepts (docs/protocol.md §8.1)."""
    return isinstance(value, dict) and value.get("type") == kind and isinstance(value.get("sdp"), str)


def _set_candidate(frame: dict, value, valid: bool) -> None:
    """A valid `candidate` (an object or null); an invalid one is any other value, or no key at all."""
    if valid or not (value is None or isinstance(value, dict)):
        frame["candidate"] = value


def _encode(frame: dict) -> str:
    """JSON text for a frame the fuzzer sends, deeply nested values included (under a raised limit)."""
    with deep_recursion():
        return json.dumps(frame)


def _brief(frame) -> str:
    with deep_recursion():
        text = frame if isinstance(frame, str) else repr(frame)
    return text if len(text) <= 400 else f"{text[:400]}… ({len(text)} characters)"
