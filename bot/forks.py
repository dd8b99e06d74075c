"""Running a function in a forked copy of this process (`opsbot serve`'s start-up migration and its first
worker): the copy shares every page this process has imported, and exits when the function returns."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


def can_fork() -> bool:
    """Only while this process runs one thread: a fork would copy other threads' locks held, and not them."""
    return threading.active_count() == 1 and hasattr(os, "fork")


def fork(child: Callable[[], int], *, name: str) -> int | None:
    """Call `child` in a forked copy of this process, which exits with its return value (1 if it raises, logged
    as the `name` process's failure); the copy's pid, or None (nothing forked) when `can_fork()` says no."""
    if not can_fork():
        return None
    sys.stdout.flush()  # what is buffered would otherwise be written twice
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    code = 1  # pragma: no cover - the forked copy (tests drive it through `opsbot serve` and subprocesses)
    try:
        code = child()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        log.exception("the %s process failed", name)
    finally:
        logging.shutdown()
        os._exit(code)
