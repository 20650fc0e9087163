"""Django settings for the WIM-Z relay, read from the environment.

Every knob is an environment variable documented in `.env.example`. With nothing set the relay
runs on an embedded default: a SQLite file and the relay's channel layer in one process. Set
`DATABASE_URL` (PostgreSQL) and `REDIS_URL` (the channel layer then spans instances through Redis
pub/sub, `relay/layer.py`) to run several instances as one relay.
"""

from datetime import timedelta
from pathlib import Path

import environ

from core.logging import CLIENT_FAULT_LOGGERS
from wimz.proxy import parse_networks

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

# The key this project once shipped for DEBUG: published, so refused everywhere (it would let anyone mint
# tokens). DEBUG without DJANGO_SECRET_KEY uses a random key of this checkout instead (`dev_secret_key`).
PUBLISHED_DEV_SECRET_KEY = "django-insecure-wimz-development-key-do-not-use-in-production"
DEV_SECRET_KEY_FILE = BASE_DIR / ".dev-secret-key"  # gitignored; generated once, so restarts keep sessions


def dev_secret_key(path: Path = DEV_SECRET_KEY_FILE) -> str:
    """The development key of this checkout: read from `path`, created there (mode 0600) on first use.

    Creation is atomic (a temporary file hard-linked into place), so processes starting together (a test
    run and its relay subprocesses) agree on one key. A checkout that cannot be written to gets a key for
    this process only.
    """
    import os
    import secrets
    import tempfile

    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    key = secrets.token_urlsafe(50)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".dev-secret-key.")
        try:
            os.write(fd, key.encode())
            os.close(fd)
            os.link(tmp, path)  # fails if another process won: then read its key
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
        return path.read_text().strip()
    except OSError:
        return key


def env_float(name: str, default: float) -> float:
    """A number from the environment (or `.env`), parsed by Python's `float`.

    django-environ's float parser deletes every character that is not a digit, `,`, `.` or `-`, so
    `1e9` became 19.0 and `30s` became 30.0 without a word. Here such a value stops start-up, naming
    the variable. Raises `ImproperlyConfigured` for a value that is not a finite number.
    """
    import math
    import os

    from django.core.exceptions import ImproperlyConfigured

    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw[:40]!r}") from None
    if not math.isfinite(value):
        raise ImproperlyConfigured(f"{name} must be a finite number, got {raw[:40]!r}")
    return value


def weak_secret_key_reason(key: str) -> str:
    """Why `key` cannot sign production tokens ("" when it can): missing, the published development key,
    Django's `django-insecure-` placeholder, a placeholder such as `changeme`, shorter than 50 characters
    or with fewer than 5 distinct ones (the thresholds of Django's own check security.W009)."""
    if not key:
        return "DJANGO_SECRET_KEY is missing"
    if key == PUBLISHED_DEV_SECRET_KEY or key.startswith("django-insecure-"):
        return "DJANGO_SECRET_KEY is a published development key"
    if key.lower() in {"changeme", "change-me", "secret", "secret-key", "your-secret-key", "replace-me", "xxx"}:
        return "DJANGO_SECRET_KEY is a placeholder"
    if len(key) < 50 or len(set(key)) < 5:
        return "DJANGO_SECRET_KEY is too short (50+ characters, 5+ distinct ones)"
    return ""


DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
# The key signs every access/refresh token and admin session. With DEBUG off the relay refuses to
# start serving without a real one (wimz/asgi.py raises `SERVE_REFUSED_REASON`, below). Management
# commands (migrate, provision_device, rotate_device_secret, ...) sign nothing and run regardless.
INSECURE_SECRET_KEY = not SECRET_KEY or SECRET_KEY == PUBLISHED_DEV_SECRET_KEY
# Decided here, from the environment, so that test runners that flip settings.DEBUG do not change it.
# DEBUG tolerates a weak explicit key (local runs); without DEBUG a weak key refuses to serve.
_WEAK_KEY = weak_secret_key_reason(SECRET_KEY)
_SERVE_REFUSALS = []
if _WEAK_KEY and not DEBUG:
    _SERVE_REFUSALS.append(
        f"{_WEAK_KEY}. Set DJANGO_SECRET_KEY to a long random value "
        "(python -c 'import secrets; print(secrets.token_urlsafe(50))'), or set DEBUG=1 for local development."
    )
if INSECURE_SECRET_KEY:
    if DEBUG:
        SECRET_KEY = dev_secret_key()
    else:  # management commands only (serving is refused above): a key nobody else knows
        import secrets

        SECRET_KEY = secrets.token_urlsafe(50)

# --- Device secrets at rest (docs/operations.md "Secrets at rest") ---------------------------------
# Robots' HMAC secrets are stored Fernet-encrypted (devices/encryption.py). Comma-separated Fernet keys:
# the first encrypts, every one decrypts (MultiFernet), so a new key is added in front before
# `manage.py rotate_secret_keys` and the old one is dropped after it. Without it: DEBUG derives a key of
# this checkout from `.dev-secret-key`; DEBUG off refuses to serve, and the management commands that
# need a device secret (provisioning, rotation, migrating plain rows) stop with an error.
WIMZ_SECRET_KEYS = [key.strip() for key in env.list("WIMZ_SECRET_KEYS", default=[]) if key.strip()]


def dev_fernet_key(dev_key: str) -> str:
    """The development Fernet key derived from `dev_key` (this checkout's `.dev-secret-key`) with HKDF-SHA256:
    a url-safe base64 string of 32 bytes, the same on every run of the checkout, never a published key."""
    import base64

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"wimz device secrets at rest").derive(
        dev_key.encode()
    )
    return base64.urlsafe_b64encode(raw).decode("ascii")


def secret_keys_reason(keys: list[str]) -> str:
    """Why `keys` cannot encrypt device secrets ("" when they can): none given, or entry N (1-based) is not a
    Fernet key (32 url-safe base64-encoded bytes). The keys themselves are never part of the answer."""
    from cryptography.fernet import Fernet

    if not keys:
        return "WIMZ_SECRET_KEYS is missing"
    for number, key in enumerate(keys, 1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            return f"WIMZ_SECRET_KEYS entry {number} is not a Fernet key (32 url-safe base64-encoded bytes)"
    return ""


if not WIMZ_SECRET_KEYS and DEBUG:
    WIMZ_SECRET_KEYS = [dev_fernet_key(dev_secret_key())]
_SECRET_KEYS_PROBLEM = secret_keys_reason(WIMZ_SECRET_KEYS)
if _SECRET_KEYS_PROBLEM:  # missing (DEBUG off only, see above) or malformed (whatever DEBUG says)
    _SERVE_REFUSALS.append(
        f"{_SECRET_KEYS_PROBLEM}. Set WIMZ_SECRET_KEYS to comma-separated Fernet keys (python -c 'from "
        "cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'), or set DEBUG=1 for local "
        "development."
    )
# Why the relay must not serve ("" when it may): wimz/asgi.py raises it. Management commands still run.
SERVE_REFUSED_REASON = " ".join(_SERVE_REFUSALS)

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"] if DEBUG else [])

# --- HTTPS behind the TLS proxy (docs/operations.md "Deployment checklist") -------------------
# Django's own names. Off by default so that `make run` and the plain-HTTP docker-compose.yml work;
# deploy/env.production.example turns them on (`manage.py check --deploy` is then clean).
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
SECURE_REDIRECT_EXEMPT = [r"^health$"]  # probes speak plain HTTP to the instance itself
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=False)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=False)
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# `X-Forwarded-Proto: https` marks a request secure only when the relay sits behind configured proxies
# (WIMZ_TRUSTED_PROXIES, which also decides whose X-Forwarded-* headers count at all); without them
# the header is ignored, so a client talking to the relay directly cannot claim HTTPS.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env.list("WIMZ_TRUSTED_PROXIES", default=[]) else None
# URL prefix of Django admin (a path nobody guesses keeps the login page out of scanners' way).
WIMZ_ADMIN_PATH = env.str("WIMZ_ADMIN_PATH", default="admin/").strip("/") + "/"

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "corsheaders",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "accounts",
    "devices",
    "relay",
]

MIDDLEWARE = [
    # First: answers `/health` before anything reads the Host header (probes use the pod IP).
    "wimz.probes.HealthProbeMiddleware",
    # django-prometheus' HTTP metrics (docs/operations.md "Metrics"): Before first, After last.
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

# Admin messages live in the server-side session, not in the messages cookie: the admin shows a new
# device secret once in a message, and the cookie is signed, not encrypted (anyone holding it reads it).
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"

ROOT_URLCONF = "wimz.urls"
ASGI_APPLICATION = "wimz.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database: DATABASE_URL (PostgreSQL in production), else a SQLite file -------------------
DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}
WIMZ_DB_POOL_MIN_SIZE = env.int("WIMZ_DB_POOL_MIN_SIZE", default=2)
WIMZ_DB_POOL_MAX_SIZE = env.int("WIMZ_DB_POOL_MAX_SIZE", default=10)
WIMZ_DB_POOL_TIMEOUT = env_float("WIMZ_DB_POOL_TIMEOUT", default=10.0)
if DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3":
    # A psycopg connection pool per process (docs/operations.md "Database connections"). Under ASGI Django
    # runs each HTTP request's sync code on a thread of its own, so persistent connections (CONN_MAX_AGE)
    # left one idle connection per request thread (200 REST requests: 32, never closed). With the pool,
    # closing a connection (end of a request, end of a Channels ORM call) hands it back, and a process
    # never holds more than WIMZ_DB_POOL_MAX_SIZE; Channels' ORM thread still never opens a connection
    # per call (bench/README.md: opening one per call cost more than the queries).
    # WIMZ_DB_POOL_MAX_SIZE=0 turns the pool off: then WIMZ_DB_CONN_MAX_AGE applies (0 = per request).
    if WIMZ_DB_POOL_MAX_SIZE > 0:
        DATABASES["default"]["CONN_MAX_AGE"] = 0  # required by the pool: "closing" returns the connection
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": min(WIMZ_DB_POOL_MIN_SIZE, WIMZ_DB_POOL_MAX_SIZE),
            "max_size": WIMZ_DB_POOL_MAX_SIZE,
            "timeout": WIMZ_DB_POOL_TIMEOUT,  # seconds a request waits for a free connection, then errors
        }
    else:
        DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("WIMZ_DB_CONN_MAX_AGE", default=0))
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Channels runs every ORM call on one thread (database_sync_to_async); a short busy timeout
    # covers the management commands that run beside the server.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20
# django-prometheus' backend wrappers (query counts, latency, errors: docs/operations.md "Metrics"). Its
# PostgreSQL wrapper instruments psycopg's cursor_factory, which the connection pool's connections keep.
_PROMETHEUS_BACKENDS = {
    "django.db.backends.postgresql": "django_prometheus.db.backends.postgresql",
    "django.db.backends.sqlite3": "django_prometheus.db.backends.sqlite3",
}
DATABASES["default"]["ENGINE"] = _PROMETHEUS_BACKENDS.get(
    DATABASES["default"]["ENGINE"], DATABASES["default"]["ENGINE"]
)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "accounts.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
# Admin times to the second with their zone (wimz/formats/en/formats.py).
FORMAT_MODULE_PATH = ["wimz.formats"]
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

# --- Channel layer: relay.layer, across instances through Redis when REDIS_URL is set ------
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            # The relay's own layer (relay/layer.py): frames between sockets of one instance stay in the
            # process; between instances one Redis PUBLISH (pipelined under load) per frame or group
            # send. docs/architecture.md "Delivery between instances".
            "BACKEND": "relay.layer.RelayChannelLayer",
            "CONFIG": {
                "redis_url": REDIS_URL,
                "prefix": env.str("WIMZ_CHANNEL_PREFIX", default="wimz"),
                # Per socket: frames waiting to be written, and their bytes. A full queue answers the
                # sender RATE_LIMITED (never a silent drop).
                "capacity": env.int("WIMZ_CHANNEL_CAPACITY", default=2000),
                "capacity_bytes": env.int("WIMZ_CHANNEL_CAPACITY_BYTES", default=8 * 1024 * 1024),
            },
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "relay.layer.RelayChannelLayer",
            "CONFIG": {
                "capacity": env.int("WIMZ_CHANNEL_CAPACITY", default=2000),
                "capacity_bytes": env.int("WIMZ_CHANNEL_CAPACITY_BYTES", default=8 * 1024 * 1024),
            },
        }
    }

# --- Cache: REST throttle counters, shared by every instance through Redis when REDIS_URL is set ----
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env.str("WIMZ_CHANNEL_PREFIX", default="wimz") + ":cache",
        }
    }
else:  # one process: its own memory is the whole relay
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Trusted proxies (docs/operations.md "Trusted proxies") ------------------------------------
# X-Forwarded-For / X-Forwarded-Proto are honoured only from these peers (IP addresses or CIDR networks,
# comma-separated; none by default). wimz/proxy.py applies the rule to every HTTP and WebSocket scope.
WIMZ_TRUSTED_PROXIES = parse_networks(env.list("WIMZ_TRUSTED_PROXIES", default=[]))

# --- REST API ---------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.JWTAuthentication",  # simplejwt's, refusing logged-out logins
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # core.parsers.JSONParser: DRF's, answering a body nested too deeply for the decoder with 400, not 500.
    "DEFAULT_PARSER_CLASSES": [
        "core.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "core.api.exception_handler",
    "DEFAULT_THROTTLE_CLASSES": [
        "rest_framework.throttling.AnonRateThrottle",
        "rest_framework.throttling.UserRateThrottle",
    ],
    # The client address is REMOTE_ADDR, which wimz.proxy has already settled from the trusted proxies
    # (never a client-written X-Forwarded-For); the project's throttles (core/throttling.py) read only it.
    "NUM_PROXIES": 0,
    # docs/operations.md "Throttles and limits (HTTP)": per address generous (a carrier-grade NAT puts many
    # honest users behind one address), per account and per user tight, plus a cluster-wide budget of
    # failed pairing-code guesses.
    "DEFAULT_THROTTLE_RATES": {
        "anon": env.str("WIMZ_THROTTLE_ANON", default="120/min"),
        "user": env.str("WIMZ_THROTTLE_USER", default="600/min"),
        "login_account": env.str("WIMZ_THROTTLE_LOGIN_ACCOUNT", default="10/min"),
        "login_address": env.str("WIMZ_THROTTLE_LOGIN_ADDRESS", default="120/min"),
        "register_address": env.str("WIMZ_THROTTLE_REGISTER_ADDRESS", default="120/hour"),
        "robot_address": env.str("WIMZ_THROTTLE_ROBOT_ADDRESS", default="120/min"),
        "pair_user": env.str("WIMZ_THROTTLE_PAIR_USER", default="10/min"),
        "pair_address": env.str("WIMZ_THROTTLE_PAIR_ADDRESS", default="60/min"),
        "pair_failed_global": env.str("WIMZ_THROTTLE_PAIR_FAILED_GLOBAL", default="1000/hour"),
    },
}

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(seconds=env.int("WIMZ_ACCESS_TOKEN_LIFETIME", default=3600)),
    "REFRESH_TOKEN_LIFETIME": timedelta(seconds=env.int("WIMZ_REFRESH_TOKEN_LIFETIME", default=30 * 86400)),
    "ROTATE_REFRESH_TOKENS": env.bool("WIMZ_ROTATE_REFRESH_TOKENS", default=True),
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": True,
    "SIGNING_KEY": SECRET_KEY,
    "AUTH_HEADER_TYPES": ("Bearer",),
}

SPECTACULAR_SETTINGS = {
    # drf-spectacular's own enum hook, then the 400/401 every endpoint can answer (core/schema.py).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "core.schema.add_generic_error_responses",
    ],
    "TITLE": "WIM-Z relay API",
    "DESCRIPTION": "REST API of the WIM-Z relay. The WebSocket protocol is described in docs/protocol.md.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Browser origins allowed for the REST API and for WebSockets. Robots and native apps send no
# Origin header and are always accepted (docs/protocol.md §4).
CORS_ALLOWED_ORIGINS = env.list("WIMZ_ALLOWED_ORIGINS", default=[])
WIMZ_ALLOWED_ORIGINS = CORS_ALLOWED_ORIGINS

# `/stats` answers staff (admin session) and requests bearing this operator token; empty: staff only.
WIMZ_STATS_TOKEN = env.str("WIMZ_STATS_TOKEN", default="")
# `/metrics` (docs/operations.md "Metrics"): a bearer token and/or client networks (CIDRs); each one set must
# match. Neither set: 403 for everyone.
WIMZ_METRICS_TOKEN = env.str("WIMZ_METRICS_TOKEN", default="")
WIMZ_METRICS_ALLOW = parse_networks(env.list("WIMZ_METRICS_ALLOW", default=[]), setting="WIMZ_METRICS_ALLOW")

# --- Relay settings named by the wire contract (docs/protocol.md §18) -----------------------
WIMZ_DEVICE_AUTH_SKEW = env.int("WIMZ_DEVICE_AUTH_SKEW", default=300)  # seconds, ±
WIMZ_SESSION_SETUP_TIMEOUT = env_float("WIMZ_SESSION_SETUP_TIMEOUT", default=30.0)  # seconds
WIMZ_MAX_SESSIONS_PER_DEVICE = env.int("WIMZ_MAX_SESSIONS_PER_DEVICE", default=1)
WIMZ_MAX_FRAME_BYTES = env.int("WIMZ_MAX_FRAME_BYTES", default=262144)
# Presence: a consumer refreshes its connection row every HEARTBEAT seconds; a row not refreshed
# for TTL seconds (its instance died) no longer counts as online.
WIMZ_PRESENCE_HEARTBEAT = env_float("WIMZ_PRESENCE_HEARTBEAT", default=30.0)
WIMZ_PRESENCE_TTL = env_float("WIMZ_PRESENCE_TTL", default=90.0)
# Instance liveness (with Redis): each relay process refreshes a key of its own every BEAT seconds with a
# TTL; an instance whose key is seen missing twice, a beat apart, is cleaned up by one survivor.
# Detection within TTL + 2 x BEAT (14 s with the defaults).
# Bytes the server may hold for one socket that its client has not read yet: past this, frames from
# other sockets are refused to their sender (RATE_LIMITED); past four times this, the socket is closed 4008.
WIMZ_SOCKET_BUFFER_BYTES = env.int("WIMZ_SOCKET_BUFFER_BYTES", default=1024 * 1024)
# Seconds a handshake may have waited for the relay (authentication included) before its presence work
# starts; older ones are refused (403) because daphne drops unanswered handshakes after 5 s.
WIMZ_HANDSHAKE_BUDGET = env_float("WIMZ_HANDSHAKE_BUDGET", default=4.0)
WIMZ_INSTANCE_BEAT = env_float("WIMZ_INSTANCE_BEAT", default=3.0)
WIMZ_INSTANCE_TTL = env_float("WIMZ_INSTANCE_TTL", default=8.0)
# Pairing codes (seconds): obtained by the robot with a signed request / issued at provisioning.
WIMZ_PAIRING_CODE_TTL = env.int("WIMZ_PAIRING_CODE_TTL", default=600)
WIMZ_PROVISIONING_CODE_TTL = env.int("WIMZ_PROVISIONING_CODE_TTL", default=7 * 86400)

# History retention in days for `manage.py purge_history` (docs/operations.md "Retention"); 0 keeps forever.
WIMZ_RETENTION_CONNECTIONS_DAYS = env.int("WIMZ_RETENTION_CONNECTIONS_DAYS", default=30)
WIMZ_RETENTION_SESSIONS_DAYS = env.int("WIMZ_RETENTION_SESSIONS_DAYS", default=90)

# --- ICE servers (docs/protocol.md §14) ------------------------------------------------
WIMZ_ICE_PROVIDER = env.str("WIMZ_ICE_PROVIDER", default="stun")  # stun | cloudflare | coturn
WIMZ_STUN_URLS = env.list("WIMZ_STUN_URLS", default=["stun:stun.cloudflare.com:3478"])
# Seconds a TURN credential can open an allocation. coturn checks it when an allocation is made, not on
# its refreshes: a call already relayed keeps going past it (docs/protocol.md §14), so short is safe.
WIMZ_ICE_TTL = env.int("WIMZ_ICE_TTL", default=600)
# TURN credentials issued per user and window (seconds), sessions and REST together (0: no cap).
WIMZ_TURN_ISSUE_LIMIT = env.int("WIMZ_TURN_ISSUE_LIMIT", default=30)
WIMZ_TURN_ISSUE_WINDOW = env.int("WIMZ_TURN_ISSUE_WINDOW", default=600)
WIMZ_CLOUDFLARE_TURN_KEY_ID = env.str("WIMZ_CLOUDFLARE_TURN_KEY_ID", default="")
WIMZ_CLOUDFLARE_TURN_API_TOKEN = env.str("WIMZ_CLOUDFLARE_TURN_API_TOKEN", default="")
WIMZ_CLOUDFLARE_TIMEOUT = env_float("WIMZ_CLOUDFLARE_TIMEOUT", default=3.0)
WIMZ_COTURN_SECRET = env.str("WIMZ_COTURN_SECRET", default="")
WIMZ_COTURN_URLS = env.list("WIMZ_COTURN_URLS", default=[])

# --- Error tracking: Sentry when SENTRY_DSN is set (wimz/sentry.py scrubs every event) ----------
SENTRY_DSN = env.str("SENTRY_DSN", default="")
if SENTRY_DSN:
    from wimz.sentry import init as _sentry_init

    _sentry_init(
        SENTRY_DSN,
        environment=env.str("SENTRY_ENVIRONMENT", default=""),
        release=env.str("SENTRY_RELEASE", default=""),
        traces_sample_rate=env_float("SENTRY_TRACES_SAMPLE_RATE", default=0.0),
    )

# --- Logging: one line per record, secrets and tokens never in it (docs/operations.md "Logs") ------------
# Every record (ours, Django's, daphne's, twisted's) goes through the one console handler: the scrubbing
# filter, then structlog's formatter (core/logformat.py). LOG_FORMAT=text (readable, `make run`) or json
# (one JSON object per line, production). The access log is the `wimz.access` logger (wimz/access.py).
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").upper()
LOG_FORMAT = env.str("LOG_FORMAT", default="text").strip().lower()
if LOG_FORMAT not in ("text", "json"):
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(f"LOG_FORMAT must be text or json, not {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "scrub_secrets": {"()": "core.logging.ScrubSecretsFilter"},
        "client_fault": {"()": "core.logging.ClientFaultAsWarning"},
    },
    "formatters": {"structured": {"()": "core.logformat.formatter", "fmt": LOG_FORMAT}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "structured",
            "filters": ["scrub_secrets"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Django's default config gives "django" an unfiltered console handler (DEBUG only): replace
        # it, so that every django.* record goes through the scrubbing handler once.
        "django": {"handlers": ["console"], "level": "INFO", "propagate": False},
        # SQL at DEBUG would print query parameters (pairing codes, token ids): never below INFO.
        "django.db.backends": {"level": "INFO"},
        # A client's own fault (a bad Host, an over-size body) is a WARNING, not an ERROR to alert on.
        **{name: {"filters": ["client_fault"]} for name in CLIENT_FAULT_LOGGERS},
    },
}

# --- WebSocket limits: what one socket or user may cost (docs/protocol.md §15.1, docs/operations.md) ---
# Per socket token buckets (frames a second, burst); a rate of 0 switches that limit off.
WIMZ_FRAME_RATE = env_float("WIMZ_FRAME_RATE", default=100.0)  # every text frame
WIMZ_FRAME_BURST = env_float("WIMZ_FRAME_BURST", default=1000.0)
WIMZ_SDP_RATE = env_float("WIMZ_SDP_RATE", default=5.0)  # webrtc_request / webrtc_offer / webrtc_answer, each
WIMZ_SDP_BURST = env_float("WIMZ_SDP_BURST", default=10.0)
WIMZ_ICE_RATE = env_float("WIMZ_ICE_RATE", default=20.0)  # webrtc_ice
WIMZ_ICE_BURST = env_float("WIMZ_ICE_BURST", default=60.0)
# This many refused frames within the window (seconds) close the socket 4008 (0: never).
WIMZ_RATE_LIMIT_CLOSE_AFTER = env.int("WIMZ_RATE_LIMIT_CLOSE_AFTER", default=500)
WIMZ_RATE_LIMIT_WINDOW = env_float("WIMZ_RATE_LIMIT_WINDOW", default=10.0)
# ICE candidates one socket may forward for one session (0: no cap).
WIMZ_MAX_ICE_PER_SESSION = env.int("WIMZ_MAX_ICE_PER_SESSION", default=200)
# Open app sockets per user across all instances, counted at connect (0: no cap).
WIMZ_MAX_APP_SOCKETS_PER_USER = env.int("WIMZ_MAX_APP_SOCKETS_PER_USER", default=20)
# Compat /ws sockets not yet authenticated, per client address and instance (0: no cap).
WIMZ_MAX_UNAUTHENTICATED_PER_ADDRESS = env.int("WIMZ_MAX_UNAUTHENTICATED_PER_ADDRESS", default=16)
