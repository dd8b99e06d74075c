"""Rollback runners: one-method Protocol, the request they get, the outcome they return, the registry.

A runner is built from its `rollbacks:` config entry (`github_actions`, `webhook`, `command`) and
reports progress through a callback; it never sees Slack."""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import httpx

from bot.config.rollbacks import VERSION_RE, fill_template
from bot.errors import InvalidInput, OpsbotError, ProviderError
from bot.secrets import Scrubber

Progress = Callable[[str], Awaitable[None]]
OUTPUT_LIMIT = 20_000


@dataclass(frozen=True)
class RollbackRequest:
    rollback_id: int
    service: str
    environment: str
    version: str
    previous_version: str | None
    reason: str
    requested_by: str

    def values(self) -> dict[str, str]:
        """Template values; versions are re-validated here so no runner ever sees an unchecked one."""
        for version in (self.version, self.previous_version):
            if version is not None and not VERSION_RE.match(version):
                raise InvalidInput(f"`{version[:64]}` is not a valid version")
        values = {
            "service": self.service, "environment": self.environment, "version": self.version,
            "previous_version": self.previous_version or "", "reason": self.reason,
            "rollback_id": str(self.rollback_id), "requested_by": self.requested_by,
        }
        return values

    def fill(self, template: str) -> str:
        return fill_template(template, self.values())


@dataclass(frozen=True)
class RollbackOutcome:
    status: Literal["succeeded", "failed"]
    detail: str
    run_url: str | None = None
    output: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"


class Provider:
    """What every provider is built from (`build_runner` calls this): its opsbot.yml entry, the shared
    HTTP client and, in tests, an environment to resolve `${VAR}` secrets from."""

    def __init__(self, config: Any, http: httpx.AsyncClient | None = None,
                 environ: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.http = http
        self.environ = environ


class RollbackRunner(Protocol):
    async def run(self, request: RollbackRequest, progress: Progress) -> RollbackOutcome:
        """Perform the rollback; ProviderError for a failure worth explaining to the requester."""
        ...


Factory = Callable[[Any, httpx.AsyncClient, Mapping[str, str] | None], RollbackRunner]
_REGISTRY: dict[str, Factory] = {}
_MODULES = ("bot.providers.rollback_github", "bot.providers.rollback_webhook", "bot.providers.rollback_command")


def register(name: str) -> Callable[[Factory], Factory]:
    def decorate(factory: Factory) -> Factory:
        _REGISTRY[name] = factory
        return factory

    return decorate


def providers() -> dict[str, Factory]:
    for module in _MODULES:
        importlib.import_module(module)
    return dict(_REGISTRY)


def build_runner(config: Any, *, http: httpx.AsyncClient, environ: Mapping[str, str] | None = None,
                 scrub: Callable[[str], str] | None = None) -> RollbackRunner:
    """The runner for one `rollbacks.<service>.environments.<env>` entry, by its `provider:` name.

    Everything it reports (progress, detail, output, errors) passes through `scrub` (deps.scrubber):
    it is posted to Slack and stored, and a command or a target's answer may echo a secret."""
    return _Scrubbed(providers()[config.provider](config, http, environ), scrub or Scrubber())


class _Scrubbed:
    def __init__(self, runner: RollbackRunner, scrub: Callable[[str], str]) -> None:
        self.runner, self.scrub = runner, scrub

    async def run(self, request: RollbackRequest, progress: Progress) -> RollbackOutcome:
        scrub = self.scrub

        async def scrubbed(text: str) -> None:
            await progress(scrub(text))

        try:
            outcome = await self.runner.run(request, scrubbed)
        except OpsbotError as exc:
            raise ProviderError(scrub(str(exc))) from None
        return dataclasses.replace(outcome, detail=scrub(outcome.detail),
                                   output=None if outcome.output is None else cut_output(scrub(outcome.output)))


def cut_output(text: str, limit: int = OUTPUT_LIMIT) -> str:
    """Keep the end of long output (where errors are), marking the cut."""
    return text if len(text) <= limit else "…(cut)…\n" + text[-(limit - 10):]


def error_message(response: httpx.Response) -> str:
    """A short, safe description of an HTTP failure: status and the server's own `message`, if any."""
    detail = ""
    try:
        data = response.json()
        if isinstance(data, dict):
            detail = str(data.get("message") or data.get("error") or data.get("detail") or "")
    except ValueError:
        pass
    return f"HTTP {response.status_code}" + (f": {detail[:200]}" if detail else "")
