"""Named background jobs: one registry, run by the durable queue (bot/queue.py) or by the scheduler.

A Slack listener validates, enqueues a job by name with plain JSON arguments, and acks; a worker runs it.

    @job("incident.update", lock="incident:{incident_id}")
    async def update(deps: Deps, *, user: str, channel: str | None, response_url: str | None,
                     incident_id: int, text: str) -> None: ...

- `lock` is a template over the job's arguments: jobs with the same lock run one at a time, in the order
  they were enqueued (on PostgreSQL across every replica; in-process on SQLite), which is what keeps two
  people's clicks on one incident from interleaving.
- `retries` extra attempts are made with exponential backoff, and only for failures that are worth
  repeating (a dependency that did not answer: `is_transient`). A domain error (permission denied, bad
  input, already resolved) is final at once.
- After the last attempt the requester is told (the `response_url`, `user` and `channel` arguments, by
  the reporter the Slack layer installs) and the failure is counted in /metrics.
- A job may run more than once (a worker killed mid-job is retried on another): job functions are
  idempotent (declaration keys, conditional writes, messages posted once).
"""

from __future__ import annotations

import inspect
import logging
import string
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bot.errors import DependencyDown, OpsbotError

if TYPE_CHECKING:
    from bot.deps import Deps

log = logging.getLogger(__name__)

JobFunc = Callable[..., Awaitable[Any]]
# Told when a job has failed for good: (job name, its arguments, the exception).
Reporter = Callable[[str, Mapping[str, Any], BaseException], Awaitable[None]]
BACKOFF_BASE = 1.0  # seconds before the first retry; doubled for each next one
BACKOFF_MAX = 30.0


class UnknownJob(LookupError):
    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"no job named {name!r}; known jobs: {', '.join(known) or 'none'}")


@dataclass(frozen=True)
class Job:
    name: str
    func: JobFunc
    lock: str | None = None  # a str.format template over the job's arguments
    retries: int = 0

    def lock_for(self, kwargs: Mapping[str, Any]) -> str | None:
        if self.lock is None:
            return None
        return self.lock.format_map(_Strict(kwargs))

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before attempt number `attempt + 1` (attempt 0 is the first run)."""
        return min(BACKOFF_BASE * 2**attempt, BACKOFF_MAX)


def _lock_fields(name: str, lock: str | None) -> list[str]:
    """The argument names a lock template uses (`"incident:{incident_id}"` -> ["incident_id"])."""
    if lock is None:
        return []
    fields = []
    for _text, field, _spec, _conv in string.Formatter().parse(lock):
        if field is None:
            continue
        if not field.isidentifier():
            raise ValueError(f"job {name}: lock template field {field!r} is not an argument name")
        fields.append(field)
    return fields


class _Strict(dict[str, Any]):
    def __missing__(self, key: str) -> Any:
        raise KeyError(f"lock template needs argument {key!r}")


class Registry:
    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}

    def job(self, name: str, *, lock: str | None = None, retries: int = 0) -> Callable[[JobFunc], JobFunc]:
        fields = _lock_fields(name, lock)

        def register(func: JobFunc) -> JobFunc:
            if name in self._jobs and self._jobs[name].func is not func:
                raise ValueError(f"two jobs named {name!r}")
            params = inspect.signature(func).parameters
            missing = [f for f in fields if f not in params or params[f].kind is not inspect.Parameter.KEYWORD_ONLY]
            if missing:
                raise ValueError(f"job {name}: lock template needs keyword-only argument(s) {', '.join(missing)} "
                                 f"that {func.__name__} does not take")
            self._jobs[name] = Job(name, func, lock, retries)
            return func

        return register

    def get(self, name: str) -> Job:
        try:
            return self._jobs[name]
        except KeyError:
            raise UnknownJob(name, sorted(self._jobs)) from None

    def __iter__(self) -> Any:
        return iter(self._jobs.values())

    def names(self) -> list[str]:
        return sorted(self._jobs)


REGISTRY = Registry()
job = REGISTRY.job


def is_transient(exc: BaseException) -> bool:
    """Worth another attempt: a dependency that did not answer (opsbot's database, Slack, a target), not a
    decision (permission, input, state, the requester's own rate limit) that would come out the same."""
    if isinstance(exc, DependencyDown):
        return True
    if isinstance(exc, OpsbotError):
        return False
    if isinstance(exc, OSError | TimeoutError | ConnectionError):
        return True
    try:
        import aiohttp
        import httpx
        from slack_sdk.errors import SlackApiError
        from sqlalchemy.exc import DBAPIError
    except ImportError:  # pragma: no cover - all are dependencies
        return False
    if isinstance(exc, aiohttp.ClientError | httpx.TransportError):
        return True
    if isinstance(exc, SlackApiError):
        return exc.response.get("error") in {"ratelimited", "internal_error", "fatal_error", "service_unavailable",
                                              "request_timeout"}
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def will_retry(job_: Job, exc: BaseException, attempt: int) -> bool:
    """Whether a failure on attempt number `attempt` (0 = the first run) gets another attempt."""
    return attempt < job_.retries and is_transient(exc)


async def run(deps: Deps, job_: Job, kwargs: Mapping[str, Any]) -> Any:
    """One attempt of `job_` in this process (the queue's workers and the scheduler both call this)."""
    return await job_.func(deps, **kwargs)
