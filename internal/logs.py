"""structlog set-up: JSON in production, a readable console in development.

One pipeline for every logger: structlog's own and the standard library's (uvicorn, psycopg and its
pool, asyncio, grpc, the embedded PostgreSQL launcher) go through the same processors and the same
renderer, so in JSON mode every line on stderr is one JSON object a collector can parse."""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog
from structlog.tracebacks import ExceptionDictTransformer
from structlog.typing import EventDict, Processor, WrappedLogger

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class LineHandler(logging.Handler):
    """Writes a record and its newline in one write, then flushes.

    Worker processes share stderr, and a line written in two parts can be split by another
    process's line: logging.StreamHandler writes the message and the terminator separately.
    """

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self.stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        try:
            try:
                line = self.format(record)
            except Exception:  # e.g. a library's %-args that do not match its message
                line = self.format(_unformatted(record))
            self.stream.write(line + "\n")
            self.stream.flush()
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)


class _NamedWriteLogger(structlog.WriteLogger):
    """structlog's one-write-per-line logger, carrying the name `add_logger_name` puts in the line."""

    def __init__(self, file: TextIO, name: str) -> None:
        super().__init__(file)
        self.name = name


class _NamedWriteLoggerFactory:
    """get_logger(name) passes the name here; structlog.WriteLoggerFactory would drop it."""

    def __init__(self, file: TextIO) -> None:
        self._file = file

    def __call__(self, *args: Any) -> _NamedWriteLogger:
        return _NamedWriteLogger(self._file, str(args[0]) if args else "")


def _unformatted(record: logging.LogRecord) -> logging.LogRecord:
    """The record with its message template as the event: a broken log call still gives one
    parseable line rather than logging's multi-line "--- Logging error ---" report."""
    copy = logging.makeLogRecord(record.__dict__)
    copy.msg, copy.args = f"{record.msg!s} (message arguments did not match)", ()
    return copy


def _drop_color_message(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    """uvicorn passes an ANSI-coloured copy of each message as an `extra`; the event already says it."""
    event_dict.pop("color_message", None)
    return event_dict


def configure_logging(*, fmt: str = "console", level: str = "info") -> None:
    """Configure structlog and the standard library's root logger; request-scoped fields come from
    contextvars. Safe to call again (tests): the root handlers are replaced, never stacked."""
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    renderer: Processor
    # Tracebacks never carry the frames' local variables: they hold credentials (the authorization
    # header) and personal data (request fields).
    tail: list[Processor]
    if fmt == "json":
        tail = [structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False))]
        renderer = structlog.processors.JSONRenderer()
    else:
        tail = []
        # The default formatter is rich's (or better-exceptions') when installed: both can show locals.
        renderer = structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_logger_name,
            structlog.processors.add_log_level,
            timestamper,
            *tail,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        # One write per line (message and newline together); structlog's own lines skip the
        # logging module (the access log is written once per call).
        logger_factory=_NamedWriteLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    # Lines of the libraries that log through the standard library: the message is formatted with
    # its %-args (ProcessorFormatter uses record.getMessage()), `extra` fields become fields.
    handler = LineHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.contextvars.merge_contextvars,
                structlog.stdlib.add_logger_name,
                structlog.processors.add_log_level,
                structlog.stdlib.ExtraAdder(),
                _drop_color_message,
                timestamper,
            ],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail, renderer],
        )
    )
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(_LEVELS[level])
    logging.captureWarnings(True)  # warnings become log lines instead of raw text on stderr
    logging.getLogger("uvicorn.error").setLevel(_LEVELS[level])
    logging.getLogger("uvicorn.access").disabled = True  # our access log (internal/server) replaces it


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A named logger; fields bound per request are merged automatically. Its lines carry the name
    as `logger`, like those of the standard library's loggers."""
    return structlog.get_logger(name)  # type: ignore[no-any-return]
