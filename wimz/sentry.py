"""Error tracking with Sentry (sentry-sdk), on when `SENTRY_DSN` is set.

`init(dsn, ...)` (from settings) turns on the Django integration (views and Channels consumers) and
Sentry's logging integration (ERROR records become events); `enable_asyncio()`, called by the server
once its event loop runs (`wimz/serve.py`), adds the asyncio integration (errors in background tasks).
Nothing secret leaves the process:

- `data_collection` (Sentry's data-collection options): no user identity, no cookies, no request or
  response bodies, no stack-frame variables; request headers and URL query parameters only with
  secret-ish names filtered (Sentry's own list plus `DENY_TERMS`);
- `before_send` / `before_breadcrumb` walk the whole event: a value under a secret-ish key (Sentry's
  own denylist plus the project's: `signature`, `sig`, `device_secret`, `pairing_code`, `refresh`,
  `access`, …, at any depth, e.g. a log record's `extra`) becomes `[Filtered]`, and every other
  string goes through `core.logging.scrub` (JWTs, `Bearer …`, `token=…` in URLs and query strings,
  `secret=…`), the same rule as the logs. Device ids and user ids are not secrets and stay.
  (Sentry ignores its `event_scrubber` option once `data_collection` is given, hence this walk.)
"""

from collections.abc import Callable
from typing import Any, cast

import sentry_sdk
from sentry_sdk.integrations.asyncio import enable_asyncio_integration
from sentry_sdk.integrations.django import DjangoIntegration
from sentry_sdk.integrations.logging import LoggingIntegration
from sentry_sdk.scrubber import DEFAULT_DENYLIST
from sentry_sdk.types import Breadcrumb, BreadcrumbHint, Event, Hint

from core.logging import is_secret_name, scrub

# Header and query-parameter name fragments filtered besides Sentry's own (auth, token, secret, key, …).
DENY_TERMS = ["signature", "sig", "code", "refresh", "access", "credential"]
# Keys whose values are never sent, at any depth (case-insensitive, `-` read as `_`): exact names, and
# fragments that make any key containing them secret.
DENYLIST = frozenset(
    k.lower().replace("-", "_")
    for k in [
        *DEFAULT_DENYLIST,
        "signature",
        "x_signature",
        "sig",
        "device_secret",
        "pairing_code",
        "code",
        "refresh",
        "access",
        "jwt",
        "credential",
        "http_authorization",
        "http_x_signature",
        "http_cookie",
    ]
)
FILTERED = "[Filtered]"


def is_secret_key(key: object) -> bool:
    """Whether a value stored under `key` must not leave the process."""
    if not isinstance(key, str):
        return False
    name = key.lower().replace("-", "_")
    # The log scrubber's rule for secret names (core.logging), plus Sentry's own denylist and cookies.
    return name in DENYLIST or is_secret_name(name) or "cookie" in name


def scrub_value(value: Any) -> Any:
    """`value` with every string inside it (dict values and keys, list items) scrubbed."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {scrub_value(k): FILTERED if is_secret_key(k) else scrub_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        sequence = type(value)  # taken before len() narrows `value` to a pair
        if len(value) == 2 and is_secret_key(value[0]):  # a header as a `[name, value]` pair
            return sequence((value[0], FILTERED))
        return sequence(scrub_value(v) for v in value)
    return value


def before_send(event: Event, hint: Hint) -> Event:
    """Sentry `before_send`: the event with every string scrubbed (never drops an event)."""
    return cast(Event, scrub_value(event))  # the same dict shape, strings scrubbed


def before_breadcrumb(crumb: Breadcrumb, hint: BreadcrumbHint) -> Breadcrumb:
    """Sentry `before_breadcrumb`: the breadcrumb with every string scrubbed."""
    return cast(Breadcrumb, scrub_value(crumb))  # the same dict shape, strings scrubbed


def init(
    dsn: str,
    *,
    environment: str = "",
    release: str = "",
    traces_sample_rate: float = 0.0,
    transport: Callable[..., Any] | Any | None = None,
) -> None:
    """Start Sentry for this process (`dsn` empty: do nothing). `transport` is for tests."""
    if not dsn:
        return
    options: dict[str, Any] = {}
    if transport is not None:
        options["transport"] = transport
    sentry_sdk.init(
        dsn=dsn,
        environment=environment or None,
        release=release or None,
        traces_sample_rate=traces_sample_rate,
        data_collection={
            "user_info": False,
            "cookies": {"mode": "off"},
            "http_headers": {"request": {"mode": "denylist", "terms": DENY_TERMS}},
            "http_bodies": [],
            "url_query_params": {"mode": "denylist", "terms": DENY_TERMS},
            "stack_frame_variables": False,
        },
        before_send=before_send,
        before_breadcrumb=before_breadcrumb,
        integrations=[DjangoIntegration(), LoggingIntegration()],
        **options,
    )


def enable_asyncio() -> None:
    """Instrument the running event loop's tasks when Sentry is on (call from inside the loop)."""
    if sentry_sdk.get_client().dsn:
        enable_asyncio_integration()
