"""Logging set-up: one handler on the root logger whose formatter scrubs the whole formatted record.

Scrubbing at the formatter covers what a filter on the message cannot: tracebacks (with their chained
`__cause__`/`__context__`), `stack_info`, and the records of libraries (uvicorn runs with
`log_config=None`, so its loggers propagate here instead of to handlers of their own).

Below LOG_LEVEL=DEBUG the log stays short: a record with an exception is one line ending in the exception's
type and message (the traceback is printed at DEBUG only), a repeating warning or error (a database that stays
down, a worker restarting, a pool reconnecting) is printed once and then at most once a minute with a count
(`RepeatFilter`), and the chatter of libraries at start (alembic's plugins and migration context, uvicorn's
start-up steps, slack_sdk's retry notes) stays below the level."""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING

from bot.secrets import Scrubber, scrub, settings_secrets
from bot.settings import Settings

if TYPE_CHECKING:
    from bot.config import Config

__all__ = ["RepeatFilter", "ScrubbingFormatter", "configure", "reason", "scrub", "secrets_of"]

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
log = logging.getLogger("opsbot")


# Libraries whose INFO lines say nothing an operator acts on; shown again with LOG_LEVEL=DEBUG.
QUIET = ("alembic", "apscheduler", "httpx", "uvicorn.access", "procrastinate", "psycopg.pool", "slack_sdk",
         "slack_bolt", "aiosqlite")
# uvicorn's start-up steps; its "Uvicorn running on …" line (where to send requests) stays.
UVICORN_STEPS = ("Started server process", "Waiting for application startup", "Application startup complete",
                 "Waiting for application shutdown", "Application shutdown complete", "Finished server process")
MAX_REASON = 300


def reason(exc: BaseException) -> str:
    """`Type: first line of the message`, with the exception it came from (`__cause__`, else `__context__`)."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(parts) < 3:
        seen.add(id(current))
        lines = str(current).strip().splitlines()
        parts.append(f"{type(current).__name__}: {lines[0].strip()}" if lines else type(current).__name__)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    text = " (from ".join(parts) + ")" * (len(parts) - 1)
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 1] + "…"


class ScrubbingFormatter(logging.Formatter):
    """A Formatter whose every output (and cached `exc_text`) went through `scrubber`.

    With `tracebacks=False` a record carrying an exception (`log.exception`, `exc_info=`) prints as one line,
    `message: Type: reason`; CRITICAL ones (uncaught exceptions) keep their traceback."""

    def __init__(self, scrubber: Scrubber, fmt: str = FORMAT, *, tracebacks: bool = True) -> None:
        super().__init__(fmt)
        self.scrubber = scrubber
        self.tracebacks = tracebacks

    def formatException(self, ei: ExcInfo) -> str:
        return self.scrubber(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return self.scrubber(super().formatStack(stack_info))

    def format(self, record: logging.LogRecord) -> str:
        if not self.tracebacks:
            record = self._one_line(record)
        return self.scrubber(super().format(record))

    @staticmethod
    def _one_line(record: logging.LogRecord) -> logging.LogRecord:
        exc = record.exc_info[1] if record.exc_info else None
        message = record.getMessage()
        if (exc is None or record.levelno >= logging.CRITICAL) and "\n" not in message:
            return record
        short = logging.makeLogRecord(record.__dict__)  # the other handlers (pytest's) see the original
        short.msg = " ".join(part.strip() for part in message.splitlines() if part.strip())
        short.args = None
        if exc is not None and record.levelno < logging.CRITICAL:
            short.msg += f": {reason(exc)}"
            short.exc_info, short.exc_text = None, None
        return short


_DIGITS = re.compile(r"\d+")


class RepeatFilter(logging.Filter):
    """Lets a repeating WARNING-or-worse line through once, then at most once per `every` seconds, with a count.

    Lines are the same when they differ only in numbers (attempt counts, pool and worker numbers, delays), on
    the same logger at the same level: "job worker 3 stopped (TimeoutError); starting it again in 0.5s" is one
    line however many workers restart. INFO and below always pass: they are what happened, not a failure."""

    def __init__(self, *, every: float = 60.0, clock: Callable[[], float] = time.monotonic,
                 level: int = logging.WARNING) -> None:
        super().__init__()
        self.every, self.clock, self.level = every, clock, level
        self._last: dict[tuple[str, int, str], tuple[float, int]] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < self.level:
            return True
        try:
            text = record.getMessage()
        except Exception:  # a record whose arguments do not fit: let the handler report it
            return True
        exc = record.exc_info[1] if record.exc_info else None
        key = (record.name, record.levelno, _DIGITS.sub("#", text)[:200] + (type(exc).__name__ if exc else ""))
        now = self.clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last[0] < self.every:
                self._last[key] = (last[0], last[1] + 1)
                return False
            if len(self._last) >= 512:  # messages can carry anything: keep the table small
                self._last.clear()
            self._last[key] = (now, 0)
        if last is not None and last[1]:
            record.msg = f"{text} (repeated {last[1]} more time(s) in the last {now - last[0]:.0f}s)"
            record.args = None
        return True


class _UvicornSteps(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno == logging.INFO and isinstance(record.msg, str)
                    and record.msg.startswith(UVICORN_STEPS))


def secrets_of(settings: Settings) -> tuple[str, ...]:
    return tuple(settings_secrets(settings))


def configure(settings: Settings, config: Config | None = None) -> Scrubber:
    """Route every log record through one scrubbing handler on stderr; returns its scrubber.

    Without `config`, the one at `settings.opsbot_config` is read for its `${VAR}` names (the worker
    process); a broken file is reported by whoever loads it next, not here."""
    if config is None and settings.opsbot_config is not None:
        from bot.config import load_config
        from bot.errors import ConfigError

        try:
            config = load_config(settings.opsbot_config)
        except ConfigError:
            config = None
    scrubber = Scrubber.of(settings=settings, config=config)
    root = logging.getLogger()
    root.setLevel(settings.log_level)
    debug = root.level <= logging.DEBUG
    handler = logging.StreamHandler()
    handler.setFormatter(ScrubbingFormatter(scrubber, tracebacks=debug))
    if not debug:
        handler.addFilter(RepeatFilter())
    root.handlers[:] = [handler]
    # procrastinate logs every job's start and end at INFO; opsbot logs retries and failures itself.
    for noisy in QUIET:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    logging.getLogger("procrastinate.worker").addFilter(_JOB_OUTCOMES)  # filters do not inherit
    uvicorn_error = logging.getLogger("uvicorn.error")
    uvicorn_error.removeFilter(_UVICORN_STEPS)
    if not debug:
        uvicorn_error.addFilter(_UVICORN_STEPS)
    # A library logger with a handler of its own would print past the scrubber: send it to ours.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread
    return scrubber


class _JobOutcomes(logging.Filter):
    """procrastinate's own line for a failed job (an ERROR with the traceback): bot/queue.py has logged it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, "action", None) not in ("job_error", "job_error_retry")


_JOB_OUTCOMES = _JobOutcomes()
_UVICORN_STEPS = _UvicornSteps()


def _log_uncaught(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    """An exception nothing caught still leaves through the scrubbing handler, not raw on stderr."""
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, value, tb)
        return
    log.critical("uncaught exception", exc_info=(kind, value, tb))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit or args.exc_value is None:
        return
    log.critical("uncaught exception in thread %s", args.thread.name if args.thread else "?",
                 exc_info=(args.exc_type, args.exc_value, args.exc_traceback))
