"""Slack-facing command families. Each module here may define:

- `register(app)`: its bolt listeners, module-level functions (`app.command("/incident")(incident_command)`);
  they get `deps` injected by name from the request context (bot/app.py's middleware);
- a `jobs` submodule: its named jobs (bot/jobs.py), imported with the family;
- `schedule(deps)`: its scheduled work (`deps.scheduler.every(...)`), which runs named jobs;
- `routes(deps)`: extra HTTP routes (e.g. GET /flags, POST /deploys);
- `HELP`: (usage, description) pairs shown by `/opsbot help`.

Modules are discovered, so a new family is one new module and no edit elsewhere."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from functools import cache
from types import ModuleType
from typing import TYPE_CHECKING, Any

from commands.router import Router

if TYPE_CHECKING:
    from slack_bolt.async_app import AsyncApp
    from starlette.routing import BaseRoute

    from bot.deps import Deps
    from bot.jobs import Reporter

_SKIP = {"common", "blocks", "ids", "router"}


@cache
def families() -> list[ModuleType]:
    found = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("_") or info.name in _SKIP:
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "register") or hasattr(module, "routes"):
            found.append(module)
        with _suppress_missing(f"{__name__}.{info.name}.jobs"):
            importlib.import_module(f"{__name__}.{info.name}.jobs")
    # /opsbot first in help.
    return sorted(found, key=lambda m: (m.__name__ != f"{__name__}.opsbot", m.__name__))


def load_jobs() -> None:
    """Import every family (and its `jobs` module): their named jobs join bot.jobs.REGISTRY."""
    families()


def register_all(app: AsyncApp) -> Router:
    """Every family's listeners, behind one routed bolt listener per kind (see commands.router)."""
    router = Router()
    for module in families():
        if hasattr(module, "register"):
            module.register(router)
    router.install(app)
    return router


def schedule_all(deps: Deps) -> None:
    for module in families():
        if hasattr(module, "schedule"):
            module.schedule(deps)


def failure_reporter(deps: Deps) -> Reporter:
    """How a job that failed for good tells its requester (bot/queue.py calls it)."""
    from commands.common import report_failure

    async def report(name: str, args: Mapping[str, Any], exc: BaseException) -> None:
        await report_failure(deps, args, exc)

    return report


class _suppress_missing:
    """Import errors of a family's optional `jobs` module only when that very module does not exist."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: Any, _tb: Any) -> bool:
        return isinstance(exc, ModuleNotFoundError) and exc.name == self.name


def routes(deps: Deps) -> list[BaseRoute]:
    out: list[BaseRoute] = []
    for module in families():
        if hasattr(module, "routes"):
            out.extend(module.routes(deps))
    return out


def help_entries() -> list[tuple[str, str]]:
    return [entry for module in families() for entry in getattr(module, "HELP", [])]
