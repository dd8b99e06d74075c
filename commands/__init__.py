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
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from slack_bolt.async_app import AsyncApp
    from starlette.routing import BaseRoute

    from bot.deps import Deps

_SKIP = {"common", "blocks", "ids"}


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


class _CommandsFirst:
    """Collects the families' registrations and replays slash commands before everything else.

    bolt tries listeners in registration order on every request, so with ~50 listeners a slash command
    registered late paid for dozens of action/view matchers before its own; commands are the hot path."""

    def __init__(self, app: AsyncApp) -> None:
        self._app = app
        self._commands: list[tuple[str, tuple[Any, ...], dict[str, Any], Any]] = []
        self._others: list[tuple[str, tuple[Any, ...], dict[str, Any], Any]] = []

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._app, name)
        if name not in _LISTENER_METHODS:
            return target
        bucket = self._commands if name == "command" else self._others

        def register(*args: Any, **kwargs: Any) -> Any:
            def decorator(func: Any) -> Any:
                bucket.append((name, args, kwargs, func))
                return func

            return decorator

        return register

    def replay(self) -> None:
        for name, args, kwargs, func in self._commands + self._others:
            getattr(self._app, name)(*args, **kwargs)(func)


_LISTENER_METHODS = {"command", "action", "block_action", "view", "view_submission", "view_closed", "shortcut",
                     "global_shortcut", "message_shortcut", "event", "message", "options", "block_suggestion"}


def register_all(app: AsyncApp, deps: Deps) -> None:
    ordered = _CommandsFirst(app)
    for module in families():
        if hasattr(module, "register"):
            module.register(cast("AsyncApp", ordered), deps)
    ordered.replay()


def routes(deps: Deps) -> list[BaseRoute]:
    out: list[BaseRoute] = []
    for module in families():
        if hasattr(module, "routes"):
            out.extend(module.routes(deps))
    return out


def help_entries() -> list[tuple[str, str]]:
    return [entry for module in families() for entry in getattr(module, "HELP", [])]
