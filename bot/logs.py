"""Logging set-up: one handler on the root logger whose formatter scrubs the whole formatted record.

Scrubbing at the formatter covers what a filter on the message cannot: tracebacks (with their chained
`__cause__`/`__context__`), `stack_info`, and the records of libraries (uvicorn runs with
`log_config=None`, so its loggers propagate here instead of to handlers of their own)."""

from __future__ import annotations

import logging
import sys
import threading
from types import TracebackType
from typing import TYPE_CHECKING

from bot.secrets import Scrubber, scrub, settings_secrets
from bot.settings import Settings

if TYPE_CHECKING:
    from bot.config import Config

__all__ = ["ScrubbingFormatter", "configure", "scrub", "secrets_of"]

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
log = logging.getLogger("opsbot")


class ScrubbingFormatter(logging.Formatter):
    """A Formatter whose every output (and cached `exc_text`) went through `scrubber`."""

    def __init__(self, scrubber: Scrubber, fmt: str = FORMAT) -> None:
        super().__init__(fmt)
        self.scrubber = scrubber

    def formatException(self, ei: ExcInfo) -> str:
        return self.scrubber(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return self.scrubber(super().formatStack(stack_info))

    def format(self, record: logging.LogRecord) -> str:
        return self.scrubber(super().format(record))


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
    handler = logging.StreamHandler()
    handler.setFormatter(ScrubbingFormatter(scrubber))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    # procrastinate logs every job's start and end at INFO; opsbot logs retries and failures itself.
    for noisy in ("apscheduler", "httpx", "uvicorn.access", "procrastinate", "psycopg.pool"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    logging.getLogger("procrastinate.worker").addFilter(_JOB_OUTCOMES)  # filters do not inherit
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
