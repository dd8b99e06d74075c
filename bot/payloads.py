"""Slack request bodies: parsed once, and checked for the shape Slack sends before bolt sees them.

Parsing here rather than in bolt fixes bolt 1.30's form parsing, which takes any form body containing the
text "payload" anywhere (a slash command's text, a channel name) for an interactivity payload, finds none and
drops the request: Slack then shows the user `dispatch_failed`. The shape check exists because bolt (building
its context, matching listeners, building their arguments) and opsbot's listeners index fields such as
`actions[0].action_id`, `event.type` or `view.state.values[block][action]` directly: a payload no Slack client
sends would fail there with a 500. Every field either of them reads is checked here, so such a body is a 400
with a short reason instead. `nul_path` finds U+0000, which PostgreSQL refuses in text."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_plus

FORM = "application/x-www-form-urlencoded"
# How deep bolt's context builder may follow event -> message -> previous_message ... (it recurses; Slack nests
# these two or three deep).
MAX_NESTING = 8


class Malformed(ValueError):
    """A body that is not what Slack sends (answered with 400)."""


class ContainsNul(Malformed):
    """A well-formed body with U+0000 in some string (PostgreSQL refuses it in text): `path` says where."""

    def __init__(self, path: str, payload: dict[str, Any]) -> None:
        super().__init__(f"{path} contains a NUL character")
        self.path = path
        self.payload = payload


def parse_form(text: str) -> dict[str, str]:
    """application/x-www-form-urlencoded fields, as `dict(parse_qsl(text, keep_blank_values=True))` returns
    them at well under half the cost (this runs on every slash command's ack)."""
    fields: dict[str, str] = {}
    for pair in text.split("&"):
        if not pair:
            continue
        name, _, value = pair.partition("=")
        if "%" in name or "+" in name:
            name = unquote_plus(name)
        fields[name] = unquote_plus(value) if "%" in value or "+" in value else value
    return fields


def parse(body: bytes, content_type: str) -> dict[str, Any]:
    """The request as bolt's listeners see it: an event's JSON, an interactivity `payload`'s JSON, or the form
    fields of a slash command, each checked for the shape Slack sends. Raises Malformed for anything else."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Malformed("body is not UTF-8") from None
    if not text:
        return {}
    if "json" in content_type or text.startswith("{"):
        payload = _json_object(text, "body")
    else:
        fields = parse_form(text)
        if "payload" not in fields:
            return _checked_command(fields)  # a slash command (or ssl_check)
        text = fields["payload"]
        payload = _json_object(text, "payload")
    # JSON cannot carry a raw NUL in a string, only its escape: the walk runs only when the text has one.
    return _checked_payload(payload, may_hold_nul="\\u0000" in text)


def check(payload: dict[str, Any]) -> dict[str, Any]:
    """The same checks for a body that arrived parsed (Socket Mode): a slash command's fields, or an event or
    interactivity payload of the shape Slack sends, with no NUL anywhere. Raises Malformed or ContainsNul."""
    if "command" in payload and "type" not in payload:
        return _checked_command(payload)
    return _checked_payload(payload, may_hold_nul=True)


def _checked_command(fields: dict[str, Any]) -> dict[str, Any]:
    if "command" in fields and not ("user_id" in fields and "trigger_id" in fields):
        raise Malformed("slash command without user_id or trigger_id")
    for name, value in fields.items():
        if "\x00" in name or (isinstance(value, str) and "\x00" in value):
            raise ContainsNul(name if "\x00" not in name else repr(name), dict(fields))
    return fields


def _checked_payload(payload: dict[str, Any], *, may_hold_nul: bool) -> dict[str, Any]:
    reason = _problem(payload)
    if reason is not None:
        raise Malformed(reason)
    if may_hold_nul:
        nul = nul_path(payload)
        if nul is not None:
            raise ContainsNul(nul, payload)
    return payload


def nul_path(value: Any) -> str | None:
    """Where the first U+0000 is (in any string or key, at any depth), e.g. `view.state.values.b.a.value`."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:  # not recursive: a body may nest as deep as json allows
        path, item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return path or "body"
        elif isinstance(item, dict | list):
            pairs = list(item.items() if isinstance(item, dict) else enumerate(item))
            for key, child in reversed(pairs):
                if isinstance(key, str) and "\x00" in key:
                    return f"{path}.{key!r}".lstrip(".")
                stack.append((f"{path}.{key}".lstrip(".") if isinstance(key, str) else f"{path}[{key}]", child))
    return None


def _json_object(text: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        raise Malformed(f"{what} is not JSON") from None
    except RecursionError:  # json's C scanner stops at the interpreter's recursion limit
        raise Malformed(f"{what} is nested too deeply") from None
    if not isinstance(value, dict):
        raise Malformed(f"{what} is not a JSON object")
    return value


# -- the shape check ---------------------------------------------------------------------------------------
def _is_obj(value: Any) -> bool:
    return isinstance(value, dict)


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _str_or_none(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _obj_or_none(value: Any) -> bool:
    return value is None or isinstance(value, dict)


def _has_id(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("id"), str)


def _objects(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, dict) for item in value)


# Envelope fields bolt reads while building its context (slack_bolt.request.internals.build_context) or
# opsbot's listeners read (commands.common.user_of/channel_of, alerts' permalink): when present, of this shape.
_ENVELOPE: dict[str, tuple[Callable[[Any], bool], str]] = {
    "type": (_is_str, "a string"),
    "user": (_has_id, "an object with a string id"),
    "team": (_obj_or_none, "an object"),
    "enterprise": (lambda v: v is None or isinstance(v, str | dict), "an object"),
    "channel": (lambda v: v is None or _has_id(v), "an object with a string id"),
    "container": (_obj_or_none, "an object"),
    "message": (lambda v: _is_obj(v) and _str_or_none(v.get("text")) and _str_or_none(v.get("ts")),
                "an object with string text and ts"),
    "event": (_is_obj, "an object"),  # bolt's self-event check reads event.bot_id whatever the type
    "authorizations": (lambda v: v is None or _objects(v), "a list of objects"),
    "response_urls": (lambda v: _objects(v) and all(_str_or_none(u.get("response_url")) for u in v),
                      "a list of objects"),
    **{name: (_str_or_none, "a string") for name in (
        "trigger_id", "response_url", "callback_id", "action_id", "command", "team_id", "user_id", "channel_id",
        "enterprise_id", "api_app_id", "event_id", "thread_ts", "challenge", "token")},
}
# Inner objects bolt's context builder searches for ids the same way (user, team, channel, enterprise), where
# each may be a string or an object: anything else fails its `"id" in value`.
_NESTED = ("event", "message", "previous_message", "item", "assistant_thread")
_IDS = ("user", "team", "channel", "enterprise")
# What each kind of payload must carry (bolt's matchers and argument builders index these directly).
_REQUIRED: dict[str, tuple[str, ...]] = {
    "block_actions": ("actions", "trigger_id"),
    "interactive_message": ("actions", "callback_id"),
    "view_submission": ("view",),
    "view_closed": ("view",),
    "shortcut": ("callback_id", "trigger_id"),
    "message_action": ("callback_id", "trigger_id", "message"),
    "block_suggestion": ("action_id",),
    "dialog_submission": ("callback_id",),
    "dialog_cancellation": ("callback_id",),
    "dialog_suggestion": ("callback_id",),
    "workflow_step_edit": ("callback_id", "workflow_step"),
    "event_callback": ("event",),
    "url_verification": ("challenge",),
}
_VIEW_STRINGS = ("id", "hash", "private_metadata", "external_id", "root_view_id", "previous_view_id", "team_id",
                 "app_installed_team_id", "bot_id", "app_id")


def _problem(payload: dict[str, Any]) -> str | None:
    """None when a payload has the shape Slack sends, else a short reason."""
    kind = payload.get("type")
    if not isinstance(kind, str):
        return "payload has no type"
    for name in _REQUIRED.get(kind, ()):
        if payload.get(name) is None:
            return f"{kind} without {name}"
    for name, (valid, shape) in _ENVELOPE.items():
        if name in payload and not valid(payload[name]):
            return "payload user has no id" if name == "user" else f"{name} is not {shape}"
    authorizations = payload.get("authorizations") or []
    for inner in (*authorizations[:1], *(payload[n] for n in _NESTED if n in payload)):
        reason = _ids_problem(inner)
        if reason:
            return f"{kind} with {reason}"
    if "actions" in payload:
        reason = _actions_problem(payload["actions"])
        if reason:
            return f"{kind} with {reason}"
    if "view" in payload:
        reason = _view_problem(payload["view"])
        if reason:
            return f"{kind} without a valid view: {reason}"
    if "state" in payload:
        reason = _state_problem(payload["state"])
        if reason:
            return f"{kind} with {reason}"
    if "workflow_step" in payload and not _is_obj(payload["workflow_step"]):
        return f"{kind} with a workflow_step that is not an object"
    if kind == "event_callback":
        return _event_problem(payload["event"])
    return None


def _ids_problem(inner: Any, depth: int = 1) -> str | None:
    if not _is_obj(inner):
        return None  # bolt looks only inside objects
    for name in _IDS:
        if inner.get(name) is not None and not isinstance(inner[name], str | dict):
            return f"a {name} that is neither a string nor an object"
    for name in _NESTED:
        if _is_obj(inner.get(name)):
            if depth >= MAX_NESTING:
                return f"{name} objects nested too deeply"
            reason = _ids_problem(inner[name], depth + 1)
            if reason:
                return reason
    return None


def _actions_problem(actions: Any) -> str | None:
    if not isinstance(actions, list) or not actions:
        return "no actions"
    for action in actions:
        if not (_is_obj(action) and _is_str(action.get("action_id"))):
            return "an action without a string action_id"
        if not (_str_or_none(action.get("block_id")) and _str_or_none(action.get("value"))
                and _obj_or_none(action.get("selected_option"))):
            return "an action whose block_id, value or selected_option is of the wrong type"
    return None


def _view_problem(view: Any) -> str | None:
    if not _is_obj(view):
        return "not an object"
    if not _is_str(view.get("type")):
        return "no type"
    if not _str_or_none(view.get("callback_id")):
        return "callback_id is not a string"
    if not all(_str_or_none(view.get(name)) for name in _VIEW_STRINGS):
        return "a string field of another type"
    return _state_problem(view["state"]) if "state" in view else None


def _state_problem(state: Any) -> str | None:
    """state.values: block_id -> action_id -> the element's state, all objects (commands.blocks.state_value)."""
    if not _is_obj(state):
        return "state that is not an object"
    values = state.get("values", {})
    if not (_is_obj(values) and all(_is_obj(actions) and all(_is_obj(element) for element in actions.values())
                                    for actions in values.values())):
        return "state.values that is not an object of objects of objects"
    return None


def _event_problem(event: Any) -> str | None:
    if not (_is_obj(event) and _is_str(event.get("type"))):
        return "event_callback whose event is not an object with a string type"
    if event["type"] == "app_mention" and not (_is_str(event.get("channel")) and _str_or_none(event.get("ts"))
                                                and _str_or_none(event.get("thread_ts"))):
        return "app_mention without a string channel"
    if event["type"] == "workflow_step_execute" and not _is_obj(event.get("workflow_step")):
        return "workflow_step_execute without a workflow_step object"
    return None
