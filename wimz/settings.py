"""Django settings for the WIM-Z relay, read from the environment.

Every knob is an environment variable documented in `.env.example`. With nothing set the relay
runs on an embedded default: a SQLite file and the relay's channel layer in one process. Set
`DATABASE_URL` (PostgreSQL) and `REDIS_URL` (the channel layer then spans instances through Redis
pub/sub, `relay/layer.py`) to run several instances as one relay.
"""

from datetime import timedelta
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEV_SECRET_KEY = "django-insecure-wimz-development-key-do-not-use-in-production"

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
# The key signs every access/refresh token and admin session. With DEBUG off the relay refuses to
# start serving without a real one (wimz/asgi.py raises `SERVE_REFUSED_REASON`). Management
# commands (migrate, provision_device, rotate_device_secret, ...) sign nothing and run regardless.
INSECURE_SECRET_KEY = not SECRET_KEY or SECRET_KEY == DEV_SECRET_KEY
# Decided here, from the environment, so that test runners that flip settings.DEBUG do not change it.
SERVE_REFUSED_REASON = (
    "DJANGO_SECRET_KEY is missing or is the development key. Set DJANGO_SECRET_KEY to a long random value "
    "(python -c 'import secrets; print(secrets.token_urlsafe(50))'), or set DEBUG=1 for local development."
    if INSECURE_SECRET_KEY and not DEBUG
    else ""
)
if INSECURE_SECRET_KEY:
    SECRET_KEY = DEV_SECRET_KEY

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"] if DEBUG else [])

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
    "django.middleware.security.SecurityMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

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
if DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3":
    # Persistent connections: Channels runs every ORM call of a process on one thread, and opening a
    # PostgreSQL connection per call cost more than the queries (bench/README.md: ICE burst 49 → 127
    # frames/s, handshake 129 → 57 ms with reuse).
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("WIMZ_DB_CONN_MAX_AGE", default=60))
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Channels runs every ORM call on one thread (database_sync_to_async); a short busy timeout
    # covers the management commands that run beside the server.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20
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
            # send. docs/protocol.md §19.2.
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

# --- REST API ---------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework_simplejwt.authentication.JWTAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "wimz.api.exception_handler",
    "DEFAULT_THROTTLE_CLASSES": [
        "rest_framework.throttling.AnonRateThrottle",
        "rest_framework.throttling.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env.str("WIMZ_THROTTLE_ANON", default="120/min"),
        "user": env.str("WIMZ_THROTTLE_USER", default="600/min"),
        "auth": env.str("WIMZ_THROTTLE_AUTH", default="30/min"),
        "pair": env.str("WIMZ_THROTTLE_PAIR", default="20/min"),
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

# --- Relay settings named by the wire contract (docs/protocol.md §18) -----------------------
WIMZ_DEVICE_AUTH_SKEW = env.int("WIMZ_DEVICE_AUTH_SKEW", default=300)  # seconds, ±
WIMZ_SESSION_SETUP_TIMEOUT = env.float("WIMZ_SESSION_SETUP_TIMEOUT", default=30.0)  # seconds
WIMZ_MAX_SESSIONS_PER_DEVICE = env.int("WIMZ_MAX_SESSIONS_PER_DEVICE", default=1)
WIMZ_MAX_FRAME_BYTES = env.int("WIMZ_MAX_FRAME_BYTES", default=262144)
# Presence: a consumer refreshes its connection row every HEARTBEAT seconds; a row not refreshed
# for TTL seconds (its instance died) no longer counts as online.
WIMZ_PRESENCE_HEARTBEAT = env.float("WIMZ_PRESENCE_HEARTBEAT", default=30.0)
WIMZ_PRESENCE_TTL = env.float("WIMZ_PRESENCE_TTL", default=90.0)
# Instance liveness (with Redis): each relay process refreshes a key of its own every BEAT seconds with a
# TTL; an instance whose key is seen missing twice, a beat apart, is cleaned up by one survivor.
# Detection within TTL + 2 x BEAT (14 s with the defaults).
# Bytes the server may hold for one socket that its client has not read yet: past this, frames from
# other sockets are refused to their sender (RATE_LIMITED); past four times this, the socket is closed 4008.
WIMZ_SOCKET_BUFFER_BYTES = env.int("WIMZ_SOCKET_BUFFER_BYTES", default=1024 * 1024)
# Seconds a handshake may have waited for the relay (authentication included) before its presence work
# starts; older ones are refused (403) because daphne drops unanswered handshakes after 5 s.
WIMZ_HANDSHAKE_BUDGET = env.float("WIMZ_HANDSHAKE_BUDGET", default=4.0)
WIMZ_INSTANCE_BEAT = env.float("WIMZ_INSTANCE_BEAT", default=3.0)
WIMZ_INSTANCE_TTL = env.float("WIMZ_INSTANCE_TTL", default=8.0)
# Pairing codes (seconds): obtained by the robot with a signed request / issued at provisioning.
WIMZ_PAIRING_CODE_TTL = env.int("WIMZ_PAIRING_CODE_TTL", default=600)
WIMZ_PROVISIONING_CODE_TTL = env.int("WIMZ_PROVISIONING_CODE_TTL", default=7 * 86400)

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
WIMZ_CLOUDFLARE_TIMEOUT = env.float("WIMZ_CLOUDFLARE_TIMEOUT", default=3.0)
WIMZ_COTURN_SECRET = env.str("WIMZ_COTURN_SECRET", default="")
WIMZ_COTURN_URLS = env.list("WIMZ_COTURN_URLS", default=[])

# --- Logging: secrets and tokens never reach a log line -------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"scrub_secrets": {"()": "wimz.logging.ScrubSecretsFilter"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["scrub_secrets"],
        }
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        # Django's default config gives "django" an unfiltered console handler (DEBUG only): replace
        # it, so that every django.* record goes through the scrubbing handler once.
        "django": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "django.db.backends": {"level": "INFO"},
    },
}

# --- WebSocket limits: what one socket or user may cost (docs/protocol.md §15.1, docs/operations.md) ---
# Per socket token buckets (frames a second, burst); a rate of 0 switches that limit off.
WIMZ_FRAME_RATE = env.float("WIMZ_FRAME_RATE", default=100.0)  # every text frame
WIMZ_FRAME_BURST = env.float("WIMZ_FRAME_BURST", default=1000.0)
WIMZ_SDP_RATE = env.float("WIMZ_SDP_RATE", default=5.0)  # webrtc_request / webrtc_offer / webrtc_answer, each
WIMZ_SDP_BURST = env.float("WIMZ_SDP_BURST", default=10.0)
WIMZ_ICE_RATE = env.float("WIMZ_ICE_RATE", default=20.0)  # webrtc_ice
WIMZ_ICE_BURST = env.float("WIMZ_ICE_BURST", default=60.0)
# This many refused frames within the window (seconds) close the socket 4008 (0: never).
WIMZ_RATE_LIMIT_CLOSE_AFTER = env.int("WIMZ_RATE_LIMIT_CLOSE_AFTER", default=500)
WIMZ_RATE_LIMIT_WINDOW = env.float("WIMZ_RATE_LIMIT_WINDOW", default=10.0)
# ICE candidates one socket may forward for one session (0: no cap).
WIMZ_MAX_ICE_PER_SESSION = env.int("WIMZ_MAX_ICE_PER_SESSION", default=200)
# Open app sockets per user across all instances, counted at connect (0: no cap).
WIMZ_MAX_APP_SOCKETS_PER_USER = env.int("WIMZ_MAX_APP_SOCKETS_PER_USER", default=20)
# Compat /ws sockets not yet authenticated, per client address and instance (0: no cap).
WIMZ_MAX_UNAUTHENTICATED_PER_ADDRESS = env.int("WIMZ_MAX_UNAUTHENTICATED_PER_ADDRESS", default=16)
