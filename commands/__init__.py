"""Slack-facing command families. Each module here may define:

- `register(app, deps)`: bolt listeners (commands, actions, views, shortcuts) and scheduled jobs;
- `routes(deps)`: extra HTTP routes (e.g. GET /flags, POST /deploys);
- `HELP`: (usage, description) pairs shown by `/opsbot help`.

Modules are discovered, so a new family is one new module and no edit elsewhere."""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from types import ModuleType
from typing import TYPE_CHECKING, cast

from commands.router import Prepare, Router

if TYPE_CHECKING:
    from slack_bolt.async_app import AsyncApp
    from starlette.routing import BaseRoute

    from bot.deps import Deps

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
    # /opsbot first in help.
    return sorted(found, key=lambda m: (m.__name__ != f"{__name__}.opsbot", m.__name__))


def register_all(app: AsyncApp, deps: Deps, prepare: Prepare | None = None) -> Router:
    """Every family's listeners, behind one routed bolt listener per kind (see commands.router)."""
    router = Router(app, prepare)
    for module in families():
        if hasattr(module, "register"):
            module.register(cast("AsyncApp", router), deps)
    router.install()
    return router


def routes(deps: Deps) -> list[BaseRoute]:
    out: list[BaseRoute] = []
    for module in families():
        if hasattr(module, "routes"):
            out.extend(module.routes(deps))
    return out


def help_entries() -> list[tuple[str, str]]:
    return [entry for module in families() for entry in getattr(module, "HELP", [])]
