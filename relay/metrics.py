"""Prometheus metrics of one relay process (docs/operations.md "Metrics").

Every process has its own registry (prometheus-client's default `REGISTRY`, one per process), so each
instance is scraped on its own and Prometheus adds the instances up. Counters start at 0 when a process
starts (what `rate()` expects); gauges are never incremented or decremented: `LiveStateCollector`
computes them at scrape time from the parties this process holds open, so they cannot drift.

The per-frame cost (`ROUTED`, `REFUSED`) is one dict lookup and one `inc()`: every labelled child is
resolved once, at import, in a `Children` table keyed by the small bounded label set, and any other
key (a client-chosen event or pass-through type) answers the table's fallback child without being
stored, so the label cardinality stays bounded whatever clients send.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import REGISTRY, Counter, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .party import APP, ROBOT, Party
from .protocol import APP_TYPES, ROBOT_TYPES, Code

PREFIX = "wimz_relay"

# No `<name>_created` series beside every counter and histogram child: the classic text format turns them
# into gauges of their own, doubling the series for nothing (Prometheus knows when a process restarted).
disable_created_metrics()

# Direction label of a frame, by the role of the socket that sent it.
ROBOT_TO_APP = "robot_to_app"
APP_TO_ROBOT = "app_to_robot"
DIRECTION = {ROBOT: ROBOT_TO_APP, APP: APP_TO_ROBOT}

# Frames a socket sends that the consumer answers itself never reach a handler (docs/protocol.md §8).
_NOT_ROUTED = frozenset({"ping", "pong", "auth"})
# Label values for client-chosen types: a robot's own event types, an app's pass-through types.
EVENT = "event"
PASSTHROUGH = "passthrough"
# `command` is the protocol's own app → robot frame (docs/protocol.md §10), so it keeps its name.
COMMAND = "command"


class Children(dict[str, Counter]):
    """Labelled counter children pre-resolved by label value; a key not in the table answers `fallback`
    and is not stored (so no client-chosen value ever becomes a label)."""

    __slots__ = ("fallback",)

    def __init__(self, children: dict[str, Counter], fallback: Counter):
        super().__init__(children)
        self.fallback: Counter = fallback

    def __missing__(self, key: str) -> Counter:
        return self.fallback


FRAMES = Counter(
    f"{PREFIX}_frames",
    "Frames from a socket that the relay routed (handled without an error), by frame type "
    "(reserved protocol types and command by name; any other type as event or passthrough) and direction.",
    ["type", "direction"],
)
FRAMES_REFUSED = Counter(
    f"{PREFIX}_frames_refused",
    "Frames from a socket answered with an error frame instead of being routed "
    "(or, RATE_LIMITED, not delivered to a receiver that was full), by error code (docs/protocol.md §15).",
    ["code"],
)
HANDSHAKES_REFUSED = Counter(
    f"{PREFIX}_handshakes_refused",
    "WebSocket handshakes (and compat /ws in-band authentications) refused, by "
    "role (robot, app, compat, unknown) and reason.",
    ["role", "reason"],
)
SESSIONS_ENDED = Counter(
    f"{PREFIX}_sessions_ended",
    "Signaling sessions this instance ended, by end reason (docs/protocol.md §13); "
    "each session is counted once, by the instance whose row update ended it.",
    ["reason"],
)
SESSION_SETUP_SECONDS = Histogram(
    f"{PREFIX}_session_setup_seconds",
    "Seconds from an app's webrtc_request reaching this instance to that app "
    "socket's first webrtc_answer (sessions answered by another app socket of the user are not observed).",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0),
)
ICE_PROVIDER_SECONDS = Histogram(
    f"{PREFIX}_ice_provider_seconds",
    "Seconds one ICE provider call took, by provider (stun, cloudflare, coturn, "
    "unknown) and outcome (ok, or the failure kind: config, timeout, network, http_status, malformed, "
    "unknown_provider, internal).",
    ["provider", "outcome"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0),
)


def _routed(role: str, types: Iterable[str], fallback: str) -> Children:
    direction = DIRECTION[role]
    named = {kind: FRAMES.labels(kind, direction) for kind in types if kind not in _NOT_ROUTED}
    return Children(named, FRAMES.labels(fallback, direction))


# ROUTED[role][frame type].inc(): a frame from a socket of `role` was routed.
ROUTED: dict[str, Children] = {
    ROBOT: _routed(ROBOT, ROBOT_TYPES, EVENT),
    APP: _routed(APP, APP_TYPES | {COMMAND}, PASSTHROUGH),
}
ERROR_CODES = tuple(value for name, value in vars(Code).items() if name.isupper() and isinstance(value, str))
# REFUSED[error code].inc(): a frame was answered with that error.
REFUSED: Children = Children(
    {code: FRAMES_REFUSED.labels(code) for code in ERROR_CODES}, FRAMES_REFUSED.labels("other")
)

# Handshake refusals: role × reason, every pair the relay uses declared here (and so exported at 0). The
# compat `/ws` route counts as `compat` until its in-band `auth` frame names a robot or an app.
HANDSHAKE_REASONS: dict[str, tuple[str, ...]] = {
    ROBOT: ("origin", "overloaded", "auth", "replay"),
    APP: ("origin", "overloaded", "auth", "too_many_sockets"),
    "compat": ("origin", "overloaded", "too_many_unauthenticated", "auth_timeout"),
    "unknown": ("path",),
}
_HANDSHAKES = {
    (role, reason): HANDSHAKES_REFUSED.labels(role, reason)
    for role, reasons in HANDSHAKE_REASONS.items()
    for reason in reasons
}


def handshake_refused(role: str | None, reason: str) -> None:
    """Count one refused handshake; `role` None is the compat `/ws` route. Pairs outside
    `HANDSHAKE_REASONS` count as `(role, "other")` of a known role, so the labels stay bounded."""
    role = role or "compat"
    if role not in HANDSHAKE_REASONS:
        role = "unknown"
    child = _HANDSHAKES.get((role, reason))
    if child is None:
        child = HANDSHAKES_REFUSED.labels(role, "other")
    child.inc()


def declare_end_reasons(reasons: Iterable[str]) -> None:
    """Create the `SESSIONS_ENDED` child of every end reason, so each is exported at 0 from the start."""
    for reason in reasons:
        SESSIONS_ENDED.labels(reason)


_ICE_PROVIDERS = frozenset({"stun", "cloudflare", "coturn"})


def ice_provider_call(provider: str, outcome: str, seconds: float) -> None:
    """Observe one ICE provider call of `seconds`; a provider name outside the known ones is `unknown`."""
    ICE_PROVIDER_SECONDS.labels(provider if provider in _ICE_PROVIDERS else "unknown", outcome).observe(seconds)


class LiveStateCollector(Collector):
    """Gauges computed at scrape time from this process's open sockets (`parties()`), and
    `wimz_relay_info{instance_id}` naming the channel-layer instance (`instance()`)."""

    def __init__(self, parties: Callable[[], Iterable[Party]], instance: Callable[[], str]):
        self.parties = parties
        self.instance = instance

    def describe(self) -> Iterator[Metric]:
        """The metric names, without reading any state (the registry calls it once, at registration)."""
        yield from self._families()

    def _families(self) -> tuple[GaugeMetricFamily, ...]:
        return (
            GaugeMetricFamily(f"{PREFIX}_robot_sockets", "Open robot sockets on this instance."),
            GaugeMetricFamily(f"{PREFIX}_app_sockets", "Open (authenticated) app sockets on this instance."),
            GaugeMetricFamily(f"{PREFIX}_users_online", "Distinct users with an open app socket on this instance."),
            GaugeMetricFamily(
                f"{PREFIX}_live_sessions",
                "Live signaling sessions whose app socket is on this "
                "instance (each session once: summed over instances, the cluster's total).",
            ),
            GaugeMetricFamily(
                f"{PREFIX}_info", "1, labelled with this process's channel-layer instance id.", labels=["instance_id"]
            ),
        )

    def collect(self) -> Iterator[Metric]:
        """Count the open sockets now. Must run on the event loop's thread (the /metrics view is async),
        where the set of parties is changed."""
        robots = apps = sessions = 0
        users: set[int | None] = set()
        for party in list(self.parties()):
            if party.role == ROBOT:
                robots += 1
            elif party.role == APP:
                apps += 1
                users.add(party.user_id)
                sessions += len(party.sessions)
        robot_f, app_f, users_f, sessions_f, info_f = self._families()
        robot_f.add_metric([], robots)
        app_f.add_metric([], apps)
        users_f.add_metric([], len(users))
        sessions_f.add_metric([], sessions)
        info_f.add_metric([self.instance()], 1)
        yield from (robot_f, app_f, users_f, sessions_f, info_f)


def _parties() -> Iterable[Party]:
    from .connections import local_parties

    return local_parties()


def _instance() -> str:
    from .delivery import layer

    return str(getattr(layer(), "instance", ""))


LIVE_STATE = LiveStateCollector(_parties, _instance)
REGISTRY.register(LIVE_STATE)
