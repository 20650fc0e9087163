"""REST throttles (DRF `SimpleRateThrottle` scopes) keyed by what an attacker cannot choose for free.

Counters live in Django's default cache: Redis when `REDIS_URL` is set (shared by every instance, so
a limit holds for the cluster, not per process), local memory otherwise. Rates are the
`DEFAULT_THROTTLE_RATES` entries named by each class's `scope` (`WIMZ_THROTTLE_*` settings); a rate
of `None` turns that throttle off. docs/operations.md "Throttles and limits (HTTP)" gives the
defaults and why; a throttled request answers 429 `throttled` (docs/protocol.md §17.1).

The client address is `REMOTE_ADDR` only: `wimz.proxy` has already set it from the trusted proxies,
so a client-written `X-Forwarded-For` never picks the bucket.
"""

import hashlib
from types import SimpleNamespace

from django.http import HttpRequest
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import APIView


def _digest(value: str) -> str:
    """A cache-key-safe, fixed-length stand-in for a client-chosen string (an email address)."""
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]


class AddressRateThrottle(SimpleRateThrottle):
    """Requests per client address (`REMOTE_ADDR`, settled by `wimz.proxy`). Subclasses set `scope`."""

    def get_ident(self, request: Request) -> str:
        """The client address; DRF's own version would read `X-Forwarded-For`."""
        return request.META.get("REMOTE_ADDR") or "unknown"

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class LoginAddressThrottle(AddressRateThrottle):
    """`POST /api/auth/login` per client address (`WIMZ_THROTTLE_LOGIN_ADDRESS`)."""

    scope = "login_address"


class LoginAccountThrottle(SimpleRateThrottle):
    """`POST /api/auth/login` per account: the email of the body, compared as stored (stripped, lower case).

    Every attempt counts, from any address, so guesses against one account are bounded however many
    addresses an attacker has (`WIMZ_THROTTLE_LOGIN_ACCOUNT`). It is a sliding window, not a lockout:
    the account logs in again as soon as the window holds fewer attempts.
    """

    scope = "login_account"

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        email = request.data.get("email") if hasattr(request.data, "get") else None
        if not isinstance(email, str) or not email.strip():
            return None  # the body is refused by the serializer anyway
        return self.cache_format % {"scope": self.scope, "ident": _digest(email.strip().lower())}


class RegisterAddressThrottle(AddressRateThrottle):
    """`POST /api/auth/register` per client address (`WIMZ_THROTTLE_REGISTER_ADDRESS`)."""

    scope = "register_address"


class RobotAddressThrottle(AddressRateThrottle):
    """The robot's signed `POST /api/devices/pairing-code` per client address (`WIMZ_THROTTLE_ROBOT_ADDRESS`).

    Checked before the signature, so unsigned floods are bounded too.
    """

    scope = "robot_address"


class PairUserThrottle(SimpleRateThrottle):
    """Pairing-code guesses (`POST /api/devices/pair`, compat `pair-device`) per user (`WIMZ_THROTTLE_PAIR_USER`)."""

    scope = "pair_user"

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        if not request.user or not request.user.is_authenticated:
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}


class PairAddressThrottle(AddressRateThrottle):
    """Pairing-code guesses per client address, whichever accounts send them (`WIMZ_THROTTLE_PAIR_ADDRESS`)."""

    scope = "pair_address"


class PairFailureGlobalThrottle(SimpleRateThrottle):
    """The cluster-wide budget of FAILED pairing-code guesses (`WIMZ_THROTTLE_PAIR_FAILED_GLOBAL`).

    Accounts and addresses are cheap, so per-user and per-address limits alone let guesses scale with
    them; this one does not. Only failures count (`record_failure`, called by the pair views on
    `invalid_pairing_code`): successful pairings never use the budget. Once the window holds the rate's
    number of failures, every pair call answers 429 until it holds fewer.
    """

    scope = "pair_failed_global"

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        return self.cache_format % {"scope": self.scope, "ident": "all"}

    def throttle_success(self) -> bool:
        return True  # a request let through is not a failure (yet)

    def record_failure(self, request: Request, view: APIView) -> None:
        """Count one failed guess now."""
        if self.rate is None:
            return
        key = self.get_cache_key(request, view)
        now = self.timer()
        _, duration = self.parse_rate(self.rate)
        assert duration is not None  # a rate that is set has a window
        history = [t for t in self.cache.get(key, []) if t > now - duration]
        history.insert(0, now)
        self.cache.set(key, history, duration)


def login_wait(request: HttpRequest, email: object) -> float | None:
    """For a login outside DRF (Django admin's form): None when the attempt may go on, else the seconds
    to wait. The same two buckets as `POST /api/auth/login` — per account and per client address — so a
    password cannot be guessed through the admin form faster than through the API."""
    shim = SimpleNamespace(META=request.META, data={"email": email}, user=None)
    waits = []
    for throttle in (LoginAccountThrottle(), LoginAddressThrottle()):
        if not throttle.allow_request(shim, None):  # type: ignore[arg-type]  # the throttles read META/data only
            waits.append(throttle.wait() or 1.0)
    return max(waits) if waits else None
