"""Logging for every jobq process: structlog rendering the standard library's records.

The code logs through `logging.getLogger(...)`, as do uvicorn, Celery and SQLAlchemy; one
handler on the root logger renders every record with structlog: one JSON object per line in
production, readable lines in development. Context bound with `bound` (the request id, and a
job's id, kind and attempt) is added to every line logged inside it, in the same task.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from collections.abc import Iterator
from typing import Any, Literal

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

LogFormat = Literal["json", "console"]

# Loggers that install handlers of their own; theirs are removed so each record is written once.
FOREIGN_LOGGERS = ("uvicorn", "uvicorn.error", "gunicorn.error", "celery")
# The API writes its own access line (jobq.access), with the request id and no query string.
SILENCED_LOGGERS = ("uvicorn.access", "gunicorn.access")


# Credentials never reach a log line, whoever logs them: `?token=` in a URL (browsers'
# WebSockets), `Bearer`/`Basic` credentials (a header logged at DEBUG), and anything shaped
# like a JWT.
QUERY_TOKEN = re.compile(r"([?&](?:access_)?token=)[^&\s\"']+", re.IGNORECASE)
CREDENTIALS = re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
JWT = re.compile(r"\beyJ[\w-]+\.[\w-]+\.[\w-]*")
REDACTED = "[redacted]"
# What each of those starts with: one search that finds none of them spares the three rewrites
# (most strings logged hold no credential; this is a third of the cost of a line otherwise).
SUSPECT = re.compile(r"token=|basic|bearer|eyJ", re.IGNORECASE)
# Libraries that log every outgoing request's full URL at INFO: webhook URLs often hold secrets.
# And Celery's line per task received and per task ended: jobq's runner logs each attempt's
# start and end with the job's id, kind and request id; Celery's add only its own task id, at
# a seventh of the worker's parent process's time (see README, Performance).
QUIETED_LOGGERS = ("httpx", "httpcore", "celery.worker.strategy", "celery.app.trace")


def redact(text: str) -> str:
    if SUSPECT.search(text) is None:
        return text
    text = QUERY_TOKEN.sub(r"\1" + REDACTED, text)
    text = CREDENTIALS.sub(r"\1 " + REDACTED, text)
    return JWT.sub(REDACTED, text)


def _redacted(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return redact(value)
    if depth < 4 and isinstance(value, dict):
        return {key: _redacted(item, depth + 1) for key, item in value.items()}
    if depth < 4 and isinstance(value, list | tuple):
        return [_redacted(item, depth + 1) for item in value]
    return value


def _redact_secrets(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    return {key: _redacted(value) for key, value in event.items()}


def _drop_color_message(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    # uvicorn passes a second, coloured copy of its message in `extra`.
    event.pop("color_message", None)
    return event


def configure_logging(level: str = "INFO", fmt: LogFormat = "console") -> None:
    """Send every record through one structlog formatter on the root logger. Idempotent."""
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.stdlib.ExtraAdder(),
        _drop_color_message,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    final: list[Processor] = [structlog.stdlib.ProcessorFormatter.remove_processors_meta]
    if fmt == "json":
        # Tracebacks as data, without each frame's local variables (they hold secrets).
        transformer = structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        final += [
            structlog.processors.ExceptionRenderer(transformer),
            _redact_secrets,
            structlog.processors.JSONRenderer(),
        ]
    else:
        final += [
            structlog.processors.format_exc_info,
            _redact_secrets,
            structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()),
        ]
    # No line shows a record's call site, thread or process: the standard library stops looking
    # them up for every record (the logging HOWTO's "Optimization"; findCaller alone walks the
    # stack on each call).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    formatter = structlog.stdlib.ProcessorFormatter(foreign_pre_chain=shared, processors=final)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    handler.set_name("jobq")
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in FOREIGN_LOGGERS:
        foreign = logging.getLogger(name)
        foreign.handlers.clear()
        foreign.propagate = True
    for name in QUIETED_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    for name in SILENCED_LOGGERS:
        silenced = logging.getLogger(name)
        silenced.handlers.clear()
        silenced.propagate = False
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


@contextlib.contextmanager
def bound(**context: Any) -> Iterator[None]:
    """Add these fields to every line logged inside the block (None values are left out)."""
    with structlog.contextvars.bound_contextvars(
        **{key: value for key, value in context.items() if value is not None}
    ):
        yield


def bind(**context: Any) -> None:
    """Add these fields to every later line of the current task or request."""
    structlog.contextvars.bind_contextvars(
        **{key: value for key, value in context.items() if value is not None}
    )
