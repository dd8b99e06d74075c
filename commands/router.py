"""One bolt listener per kind of request, dispatching by id through a dict instead of bolt's linear scan.

bolt tries its listeners in registration order and, for every listener it tries, builds the full set of
injectable arguments (~30 entries) for the matcher: with ~30 listeners that was a quarter of the ack's CPU
under load. The families still register with bolt's own decorators (`app.command("/incident")`,
`app.action(ACTION_ID)`, ...); the router collects the plain-string ids, registers one bolt listener per
decorator with an anchored pattern over exactly those ids (so bolt's own payload-type checks still decide
what matches), and looks the handler up by the same id bolt matched on. Registering anything else
(patterns, constraint dicts, other listener decorators) is refused at start-up: extend `_KEYS` instead."""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.kwargs_injection.async_args import AsyncArgs

Handler = Callable[..., Awaitable[Any]]
# Called with the request's bolt context before the handler runs (opsbot swaps in its shared-session respond).
Prepare = Callable[[Any], None]


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


# bolt decorator name -> the id it matches a plain string against. Commands first: they are the hot path.
_KEYS: dict[str, Callable[[dict[str, Any]], str | None]] = {
    "command": _command_key,
    "action": _action_key,
    "view": _view_key,
    "shortcut": _shortcut_key,
    "event": _event_key,
}


class _Route:
    __slots__ = ("func", "params")

    def __init__(self, func: Handler) -> None:
        self.func = func
        self.params = tuple(inspect.signature(func).parameters)


class Router:
    """Looks like an AsyncApp to the families' `register(app, deps)`; `install()` hands the result to bolt."""

    def __init__(self, app: AsyncApp, prepare: Prepare | None = None) -> None:
        self._app = app
        self._prepare = prepare
        self._routes: dict[str, dict[str, _Route]] = {kind: {} for kind in _KEYS}

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._app, name)
        if name in _UNROUTED:
            raise TypeError(f"app.{name}() is not routed; register with one of {', '.join(_KEYS)} and a plain id")
        if name not in _KEYS:
            return target  # middleware, error handlers, ...

        def register(*args: Any, **kwargs: Any) -> Any:
            key = args[0] if len(args) == 1 and not kwargs else None
            if not isinstance(key, str):
                raise TypeError(f"app.{name}({args!r}, {kwargs!r}): the router takes one plain string id")
            routes = self._routes[name]
            if key in routes:
                raise ValueError(f"two handlers for {name} {key!r}")

            def decorator(func: Any) -> Any:
                routes[key] = _Route(func)
                return func

            return decorator

        return register

    def routed(self, kind: str) -> list[str]:
        return list(self._routes[kind])

    def install(self) -> None:
        for kind, routes in self._routes.items():
            if routes:
                pattern = re.compile(r"\A(?:" + "|".join(re.escape(key) for key in routes) + r")\Z")
                getattr(self._app, kind)(pattern)(self._dispatcher(routes, _KEYS[kind]))

    def _dispatcher(self, routes: dict[str, _Route], key_of: Callable[[dict[str, Any]], str | None]) -> Handler:
        prepare = self._prepare

        async def dispatch(args: AsyncArgs) -> Any:
            route = routes[key_of(args.body) or ""]  # bolt matched this very key against the same pattern
            values = vars(args)
            if prepare is not None:
                prepare(args.context)
                values["respond"] = args.context.respond
            context = args.context
            return await route.func(**{name: values[name] if name in values else context.get(name)
                                       for name in route.params})

        return dispatch


_UNROUTED = {"block_action", "view_submission", "view_closed", "global_shortcut", "message_shortcut", "message",
             "options", "block_suggestion"}
