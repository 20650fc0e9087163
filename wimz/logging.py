"""Log scrubbing: JWTs, device signatures and secrets never reach a log line (field report F8)."""

import logging
import re

# `token=`, `sig=`, `signature=`, `secret=` in query strings or key=value text; `Bearer <jwt>`;
# and anything shaped like a JWT (three base64url parts, the first starting with `eyJ`).
_PATTERNS = [
    (re.compile(r"(?i)\b(token|sig|signature|secret|credential|password)=([^&\s\"']+)"), r"\1=***"),
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1***"),
    (re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+"), "***jwt***"),
]


def scrub(text: str) -> str:
    """Return `text` with query-string secrets, bearer tokens and JWTs replaced by `***`."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class ScrubSecretsFilter(logging.Filter):
    """A logging filter that renders each record once and scrubs secrets from the result.

    Attached to every handler in `settings.LOGGING`; it never drops a record, only rewrites it.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not hide the record
            message = str(record.msg)
        cleaned = scrub(message)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        record.msg, record.args = cleaned, None
        return True
