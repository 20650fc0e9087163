"""Structured log lines: structlog as the formatter of the stdlib `logging` handler (docs/operations.md "Logs").

Every record — the project's `logging.getLogger(...)` calls, Django's, daphne's, twisted's — goes through one
handler (`settings.LOGGING`): `core.logging.ScrubSecretsFilter` first, then the formatter made by
`formatter()`, a `structlog.stdlib.ProcessorFormatter` that renders one line per record as JSON
(`LOG_FORMAT=json`) or as readable console text (`LOG_FORMAT=text`).

Fields of every line: `timestamp` (ISO 8601, UTC, milliseconds), `level`, `logger`, `event` (the message),
`instance` (`set_instance`: the relay registers its channel-layer instance id at start; before that, and in
other processes, `<hostname>:<pid>`); then whatever is bound to the current task with `bind_log_context`
(`request_id`, `user_id`, `device_id`, ...) and the record's `extra` fields. Every string value — the
message, context, extras and the exception text — is scrubbed (`core.logging.scrub`) and, except the
exception text, kept on one line, so nothing the formatter adds can carry a secret or forge a line.
"""

import logging
import os
import socket
import sys
from datetime import UTC, datetime
from typing import Any

import structlog
from structlog.contextvars import bind_contextvars, merge_contextvars
from structlog.typing import EventDict, Processor, WrappedLogger

from core.logging import _CONTROL, _escape, scrub

FORMATS = ("text", "json")
# The keys that open every line, in this order; the context and the extras follow.
_LEADING = ("timestamp", "level", "logger", "event", "instance")
# Attributes every LogRecord has: anything else on a record came in through `extra=`.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}

_instance: str | None = None
_default_instance: tuple[int, str] | None = None  # (pid, "<hostname>:<pid>"), recomputed after a fork


def set_instance(value: str | None) -> None:
    """Name this process in every later line's `instance` field (None: back to `<hostname>:<pid>`).

    The relay calls it once at start with its channel-layer instance id (`relay.layer`), the id its
    liveness key and channel names carry, so a line can be matched to the instance that other lines name.
    """
    global _instance
    _instance = value or None


def instance() -> str:
    """The `instance` field of this process's lines: the registered value, else `<hostname>:<pid>`."""
    global _default_instance
    if _instance is not None:
        return _instance
    pid = os.getpid()
    if _default_instance is None or _default_instance[0] != pid:
        _default_instance = (pid, f"{socket.gethostname()}:{pid}")
    return _default_instance[1]


def bind_log_context(**fields: str | int | None) -> None:
    """Bind `fields` (e.g. `device_id`, `user_id`, `request_id`) to every later line of the current task.

    contextvars are per task (and copied into the tasks and worker threads it starts), so each socket's
    consumer binds its own ids once, at connect, and no other socket's lines carry them. None unbinds nothing:
    it is simply not shown.
    """
    bind_contextvars(**{key: value for key, value in fields.items() if value is not None})


def _record(event_dict: EventDict) -> logging.LogRecord | None:
    record = event_dict.get("_record")
    return record if isinstance(record, logging.LogRecord) else None


def _timestamp(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """`timestamp`: when the record was made (not when it was formatted), ISO 8601 UTC."""
    record = _record(event_dict)
    when = datetime.fromtimestamp(record.created, UTC) if record is not None else datetime.now(UTC)
    event_dict["timestamp"] = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return event_dict


def _instance_field(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    event_dict["instance"] = instance()
    return event_dict


def _extras(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """The record's `extra=` fields. Plain values (str, int, float, bool, None) are shown; any other object
    only by its type (`<ASGIRequest>`): its repr may hold a query string or a header."""
    record = _record(event_dict)
    if record is None:
        return event_dict
    for key, value in vars(record).items():
        if key in _RECORD_ATTRS or key.startswith("_"):
            continue
        if value is None or isinstance(value, str | int | float | bool):
            event_dict[key] = value
        else:
            event_dict[key] = f"<{type(value).__name__}>"
    return event_dict


def _exception(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """`exception`: the traceback text, taken from the record as `ScrubSecretsFilter` left it."""
    exc_info = event_dict.pop("exc_info", None)
    event_dict.pop("stack_info", None)
    if not exc_info:
        return event_dict
    record = _record(event_dict)
    text = record.exc_text if record is not None and record.exc_text else None
    if text is None and isinstance(exc_info, tuple):
        text = logging.Formatter().formatException(exc_info)
    if text:
        event_dict["exception"] = text
    return event_dict


def _clean(value: Any, *, multiline: bool = False) -> Any:
    if isinstance(value, str):
        return scrub(value if multiline else _CONTROL.sub(_escape, value))
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if value is None or isinstance(value, int | float | bool):
        return value
    return f"<{type(value).__name__}>"


def _scrub(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Scrub every value: secrets become `***`, control characters are escaped (one line per record),
    except the line breaks of `exception`."""
    return {
        key: _clean(value, multiline=key == "exception") if not key.startswith("_") else value
        for key, value in event_dict.items()
    }


def _ordered(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    leading = {key: event_dict[key] for key in _LEADING if key in event_dict}
    return {**leading, **{k: v for k, v in event_dict.items() if k not in leading}}


def _pre_chain() -> list[Processor]:
    return [
        merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        _timestamp,
        _instance_field,
        _extras,
        _exception,
    ]


def formatter(fmt: str = "text", colors: bool | None = None) -> structlog.stdlib.ProcessorFormatter:
    """The log formatter for `settings.LOGGING` (`{"()": "core.logformat.formatter", "fmt": ...}`).

    `fmt`: `json` (one JSON object per line) or `text` (structlog's console renderer: time, level, event,
    logger, then `key=value`; tracebacks below the line). `colors` defaults to whether stderr is a terminal.
    Raises `ValueError` for another `fmt`.
    """
    if fmt not in FORMATS:
        raise ValueError(f"LOG_FORMAT must be one of {', '.join(FORMATS)}, not {fmt!r}")
    renderer: Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty() if colors is None else colors,
            exception_formatter=structlog.dev.plain_traceback,
            sort_keys=False,
        )
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_pre_chain(),
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, _scrub, _ordered, renderer],
    )
