"""The families' listeners, by kind and id, installed as one bolt listener per kind.

bolt tries its listeners in registration order and, for every listener it tries, builds the full set of
injectable arguments (~30 entries) for the matcher: with the ~30 listeners opsbot has, that scan cost
~100–170 µs more per ack than this (measured with every family registered on bolt directly, 2026-12-01).
So a family registers its module-level listeners here with the same decorator names bolt uses and one
plain id (`app.command("/incident")(incident_command)`, `app.action(Action.CONFIRM)(confirm_pressed)`);
`install` registers with bolt one listener per kind, whose anchored pattern matches exactly those ids (so
bolt's own payload-type checks still decide what matches), and calls the listener registered under the id
bolt matched, with its arguments injected by name the way bolt injects them (context values such as `deps`
included). Patterns, constraint dicts and matchers are not supported: a listener is found by its id."""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.kwargs_injection.async_args import AsyncArgs

Listener = Callable[..., Awaitable[Any]]
Decorator = Callable[[Listener], Listener]


def _command_key(body: dict[str, Any]) -> str | None:
    return body.get("command")


def _action_key(body: dict[str, Any]) -> str | None:
    actions = body.get("actions")
    if isinstance(actions, list) and actions and isinstance(actions[0], dict):
        return actions[0].get("action_id") or actions[0].get("callback_id")
    return body.get("callback_id")  # attachments / dialogs match on the callback id


def _view_key(body: dict[str, Any]) -> str | None:
    view = body.get("view")
    return view.get("callback_id") if isinstance(view, dict) else None


def _shortcut_key(body: dict[str, Any]) -> str | None:
    return body.get("callback_id")


def _event_key(body: dict[str, Any]) -> str | None:
    event = body.get("event")
    return event.get("type") if isinstance(event, dict) else None


# kind (bolt's decorator name) -> the id it matches a plain string against. Commands first: the hot path.
_KEYS: dict[str, Callable[[dict[str, Any]], str | None]] = {
    "command": _command_key,
    "action": _action_key,
    "view": _view_key,
    "shortcut": _shortcut_key,
    "event": _event_key,
}


class _Route:
    __slots__ = ("func", "params")

    def __init__(self, func: Listener) -> None:
        self.func = func
        self.params = tuple(inspect.signature(func).parameters)


class Router:
    """What a family's `register(app)` receives: `command`, `action`, `view`, `shortcut`, `event`."""

    def __init__(self) -> None:
        self._routes: dict[str, dict[str, _Route]] = {kind: {} for kind in _KEYS}

    def command(self, command: str) -> Decorator:
        return self._register("command", command)

    def action(self, action_id: str) -> Decorator:
        return self._register("action", action_id)

    def view(self, callback_id: str) -> Decorator:
        return self._register("view", callback_id)

    def shortcut(self, callback_id: str) -> Decorator:
        return self._register("shortcut", callback_id)

    def event(self, event_type: str) -> Decorator:
        return self._register("event", event_type)

    def _register(self, kind: str, key: object) -> Decorator:
        if not isinstance(key, str):
            raise TypeError(f"app.{kind}({key!r}): listeners are registered under one plain string id")
        routes = self._routes[kind]
        if key in routes:
            raise ValueError(f"two handlers for {kind} {key!r}")

        def decorator(func: Listener) -> Listener:
            routes[key] = _Route(func)
            return func

        return decorator

    def routed(self, kind: str) -> list[str]:
        return list(self._routes[kind])

    def install(self, app: AsyncApp) -> None:
        for kind, routes in self._routes.items():
            if routes:
                pattern = re.compile(r"\A(?:" + "|".join(re.escape(key) for key in routes) + r")\Z")
                getattr(app, kind)(pattern)(_dispatcher(routes, _KEYS[kind]))


def _dispatcher(routes: dict[str, _Route], key_of: Callable[[dict[str, Any]], str | None]) -> Listener:
    async def dispatch(args: AsyncArgs) -> Any:
        route = routes[key_of(args.body) or ""]  # bolt matched this very key against the same pattern
        values = vars(args)
        context = args.context
        return await route.func(**{name: values[name] if name in values else context.get(name)
                                   for name in route.params})

    return dispatch
