"""A rollback target's version source (`rollbacks.<service>.versions`): a command printing one version per
line, or a JSON answer over HTTP. Read when the request modal opens, so it is quick (its `timeout`) and kept
for `cache`; any failure is a `VersionsUnavailable` the modal shows beside the deploy history."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from bot.childenv import child_env
from bot.config.rollbacks import VERSION_RE, CommandVersions, HttpVersions, fill_template, fill_url
from bot.errors import ConfigError

MAX_OUTPUT = 256 * 1024  # bytes read from a command or an answer; a tag list is far smaller
_cache: dict[tuple[str, str, str], tuple[float, list[str]]] = {}


class VersionsUnavailable(Exception):
    """Why the source gave no versions; safe to show (scrubbed, no secret values)."""


async def read(source: CommandVersions | HttpVersions, *, service: str, environment: str, http: httpx.AsyncClient,
               scrub: Callable[[str], str] = str, environ: Mapping[str, str] | None = None,
               now: Callable[[], float] = time.monotonic) -> list[str]:
    """Up to `source.limit` valid versions, newest first as the source lists them, without duplicates."""
    key = (service, environment, repr(source))
    cached = _cache.get(key)
    if cached is not None and cached[0] > now():
        return cached[1]
    values = {"service": service, "environment": environment}
    try:
        if isinstance(source, CommandVersions):
            raw = await _run(source, values, environ)
        else:
            raw = await _get(source, values, http, environ)
    except VersionsUnavailable as exc:
        raise VersionsUnavailable(scrub(str(exc))) from None
    versions = list(dict.fromkeys(v.strip() for v in raw if VERSION_RE.match(v.strip())))[: source.limit]
    if not versions and raw:
        raise VersionsUnavailable("the source listed nothing that looks like a version")
    _cache[key] = (now() + source.cache.total_seconds(), versions)
    return versions


def forget() -> None:
    """Drop cached answers (a config reload, tests)."""
    _cache.clear()


async def _run(source: CommandVersions, values: dict[str, str], environ: Mapping[str, str] | None) -> list[str]:
    argv = [fill_template(arg, values) for arg in source.command]
    try:
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL, cwd=source.cwd, env=child_env(source.env, environ=environ),
            start_new_session=True)
    except OSError as exc:
        raise VersionsUnavailable(f"could not start `{argv[0]}`: {exc.strerror or type(exc).__name__}") from None
    try:
        async with asyncio.timeout(source.timeout.total_seconds()):
            assert process.stdout is not None
            out = await process.stdout.read(MAX_OUTPUT)
            code = await process.wait()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        raise VersionsUnavailable(f"`{argv[0]}` gave no answer within {source.timeout.total_seconds():g}s") from None
    if code != 0:
        raise VersionsUnavailable(f"`{argv[0]}` exited with status {code}")
    return out.decode(errors="replace").splitlines()


async def _get(source: HttpVersions, values: dict[str, str], http: httpx.AsyncClient,
               environ: Mapping[str, str] | None) -> list[str]:
    try:
        url = fill_url(source.url, values, environ, where="url")
        headers = {"Accept": "application/json",
                   **{name: ref.reveal(environ, where=f"header {name}") for name, ref in source.headers.items()}}
    except ConfigError as exc:
        raise VersionsUnavailable(exc.problems[0]) from None
    try:
        response = await http.get(url, headers=headers, timeout=source.timeout.total_seconds())
    except httpx.TimeoutException:
        raise VersionsUnavailable(f"no answer within {source.timeout.total_seconds():g}s") from None
    except httpx.HTTPError as exc:
        raise VersionsUnavailable(f"unreachable ({type(exc).__name__})") from None
    if not response.is_success:
        raise VersionsUnavailable(f"HTTP {response.status_code}")
    try:
        data: Any = json.loads(response.content[:MAX_OUTPUT])
    except ValueError:
        raise VersionsUnavailable("the answer is not JSON") from None
    for part in [p for p in source.path.split(".") if p]:
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            raise VersionsUnavailable(f"the answer has no `{source.path}`")
    if not isinstance(data, list):
        raise VersionsUnavailable(f"`{source.path or '(top level)'}` is not a list")
    if source.field is not None:
        data = [item.get(source.field) for item in data if isinstance(item, dict)]
    return [str(item) for item in data if isinstance(item, str | int | float) and not isinstance(item, bool)]
