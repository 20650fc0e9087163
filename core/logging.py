"""Log hygiene: secrets never reach a log line (field report F8), and a client never writes one.

- `ScrubSecretsFilter` (on every handler) renders each record once and replaces secrets with `***`.
- `client_text` is the one way to put a client-chosen string (a frame `type`, a path, a header) into a
  log line: control characters escaped (so it cannot forge a second line), truncated (so it cannot
  make the line long).
- `log_unexpected` logs an unexpected exception that a client's frame may have triggered: a traceback at
  most once a minute per place it was raised, one line otherwise (so a client cannot amplify its frames
  into tracebacks).
"""

import logging
import re
import time
from collections.abc import Callable

# Names that say "the value is a secret": alone or as one part of a longer name (`device_secret`,
# `access_token`, `X-Signature`, `pairing-code`), in any case.
_SECRET_WORDS = (
    r"secret|token|sig|signature|password|passwd|passphrase|credential|credentials|authorization|auth"
    r"|pairing[_-]?code|claim[_-]?code|provisioning[_-]?code|api[_-]?key|access[_-]?key|private[_-]?key"
)
_SECRET_NAME = rf"(?:[A-Za-z0-9]+[_-])*(?:{_SECRET_WORDS})(?:[_-][A-Za-z0-9]+)*"
# Path segments whose NEXT segment is a secret (`/token/<value>`). Narrower than the names above: `auth`
# is also the REST namespace (`/api/auth/login`, `/api/auth/me`), whose next segment is an endpoint.
_SECRET_PATH_NAME = (
    r"(?:[A-Za-z0-9]+[_-])*(?:secret|token|sig|signature|password|pairing[_-]?code"
    r"|claim[_-]?code|provisioning[_-]?code|api[_-]?key)"
)
_SECRET_NAME_RE = re.compile(rf"(?i){_SECRET_NAME}")


def is_secret_name(name: str) -> bool:
    """Whether `name` (a key, a header, a field) says its value is a secret: one of the secret words,
    alone or as a part of a longer name (`device_secret`, `HTTP_X_SIGNATURE`, `pairing-code`)."""
    return _SECRET_NAME_RE.fullmatch(name) is not None


_PATTERNS = [
    # JSON or Python-repr pairs: `"device_secret": "…"`, `'token': '…'` (escaped quotes inside kept).
    (re.compile(rf'(?i)(")({_SECRET_NAME})("\s*:\s*)"(?:[^"\\]|\\.)*"'), r'\1\2\3"***"'),
    (re.compile(rf"(?i)(')({_SECRET_NAME})('\s*:\s*)'(?:[^'\\]|\\.)*'"), r"\1\2\3'***'"),
    # `name=value` in query strings, form bodies and key=value text (`?token=`, `device_secret=`).
    (re.compile(rf"(?i)(?<![A-Za-z0-9])({_SECRET_NAME})=([^&\s\"',;]+)"), r"\1=***"),
    # Header-style `Name: value` (`X-Signature: …`, `Authorization: Bearer …` keeps its scheme word).
    (re.compile(rf"(?i)(?<![A-Za-z0-9\"'])({_SECRET_NAME})(:[ \t]*)(?!Bearer\b|Basic\b)([^\s\"',;]+)"), r"\1\2***"),
    # A secret as a path segment after its name: `/token/<value>`, `/pairing-code/<value>`.
    (re.compile(rf"(?i)(/(?:{_SECRET_PATH_NAME})/)([^/?#\s]+)"), r"\1***"),
    (re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=-]+"), r"\1\2***"),
    # Anything shaped like a JWT (a header `eyJ…` and at least its payload; a cut one too).
    (re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]*)?"), "***jwt***"),
    # Long hex runs anywhere, paths and frame types included: device secrets and HMAC signatures are
    # 64 hex characters (40 or more still catches one cut by `client_text`); ids the relay logs have
    # shorter runs: UUIDs, request ids (32 hex), channel names.
    (re.compile(r"(?<![0-9A-Za-z])[0-9a-fA-F]{40,}(?![0-9A-Za-z])"), "***hex***"),
]

# C0 and C1 control characters, DEL, and the Unicode line/paragraph separators: anything a log viewer
# may show as a line break or that rewrites the terminal.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
CLIENT_TEXT_LIMIT = 64  # characters of a client-chosen string shown in a log line


_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def client_text(value: object, limit: int = CLIENT_TEXT_LIMIT) -> str:
    """A client-chosen value as it may appear in a log line.

    A string keeps at most `limit` characters (longer ones end `…(+N chars)`), with control characters
    and line separators written as `\\xNN` / `\\uNNNN`; any other value is shown only by its type
    (`<dict>`), never rendered. Secrets are still scrubbed later, by `ScrubSecretsFilter`.
    """
    if not isinstance(value, str):
        return "<none>" if value is None else f"<{type(value).__name__}>"
    shown = _CONTROL.sub(_escape, value[:limit])
    return shown if len(value) <= limit else f"{shown}…(+{len(value) - limit} chars)"


def scrub(text: str) -> str:
    """Return `text` with secrets replaced by `***`: the value of every secret-named pair (`k=v`,
    `"k": "v"`, `k: v`, `/k/v`), bearer/basic credentials, JWTs and long hex strings."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


# Django's loggers for the suspicious operations a client alone can cause (a Host header not in
# ALLOWED_HOSTS, an over-size body, too many fields or files, a broken multipart body). Django logs them at
# ERROR; they are answered 400 and say nothing is wrong with the server.
CLIENT_FAULT_LOGGERS = tuple(
    f"django.security.{name}"
    for name in (
        "DisallowedHost",
        "RequestDataTooBig",
        "TooManyFieldsSent",
        "TooManyFilesSent",
        "SuspiciousMultipartForm",
    )
)


class ClientFaultAsWarning(logging.Filter):
    """A logging filter that lowers a record above WARNING to WARNING; never drops one.

    Set on the `CLIENT_FAULT_LOGGERS` (a logger's own filter, so it runs before any handler and before
    Sentry's logging integration sees the level): an unauthenticated client cannot write ERROR lines, which
    are what operators alert on.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.WARNING:
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


class ScrubSecretsFilter(logging.Filter):
    """A logging filter that renders each record once and scrubs secrets from the result.

    Attached to every handler in `settings.LOGGING`; it never drops a record, only rewrites it. The
    message itself is kept on one line (line breaks escaped, as `client_text` does), so that no value
    that reached a message unescaped can forge a record; a traceback stays multi-line.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not hide the record
            message = str(record.msg)
        cleaned = scrub(_CONTROL.sub(_escape, message))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        record.msg, record.args = cleaned, None
        return True


TRACEBACK_INTERVAL = 60.0  # seconds between two tracebacks of one raise site
_MAX_SITES = 256
# (exception class, file, line) → when its traceback was last logged. Only log throttling: bounded, and
# no rule of the relay reads it.
_last_traceback: dict[tuple[type[BaseException], str, int], float] = {}


def log_unexpected(
    logger: logging.Logger, message: str, *args: object, clock: Callable[[], float] = time.monotonic
) -> None:
    """Log the exception being handled (call from an `except` block) at ERROR.

    The first time a raise site (exception class, file and line of the innermost frame) is seen, and
    then at most once every `TRACEBACK_INTERVAL` seconds, with its traceback; otherwise as one line
    naming the exception class and the site. `args` fill `message` (pass client strings through
    `client_text`).
    """
    import sys

    _, exc, tb = sys.exc_info()
    if exc is None:
        logger.error(message, *args)
        return
    exc_type = type(exc)  # what sys.exc_info() gave, known non-None once `exc` is
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    site = (exc_type, tb.tb_frame.f_code.co_filename, tb.tb_lineno) if tb is not None else (exc_type, "", 0)
    now = clock()
    last = _last_traceback.get(site)
    if last is None or now - last >= TRACEBACK_INTERVAL:
        if len(_last_traceback) >= _MAX_SITES:
            _last_traceback.clear()
        _last_traceback[site] = now
        logger.error(message, *args, exc_info=True)
        return
    logger.error(
        message + " (%s at %s:%d; traceback logged at most once a minute)",
        *args,
        exc_type.__name__,
        site[1].rsplit("/", 1)[-1],
        site[2],
    )
