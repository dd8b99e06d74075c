"""Slack request bodies: parsed once, and checked for the shape Slack sends before bolt sees them.

Parsing here rather than in bolt fixes bolt 1.30's form parsing, which takes any form body containing the
text "payload" anywhere (a slash command's text, a channel name) for an interactivity payload, finds none and
drops the request: Slack then shows the user `dispatch_failed`. The shape check exists because bolt's matchers
index fields such as `actions[].action_id` directly and fail with a 500 on payloads no Slack client sends."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote_plus

FORM = "application/x-www-form-urlencoded"


class Malformed(ValueError):
    """A body that is not what Slack sends (answered with 400)."""


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
    """The request as bolt's listeners see it: an event's JSON, an interactivity `payload`'s JSON (checked
    for the shape Slack sends), or the form fields of a slash command. Raises Malformed for anything else."""
    text = body.decode("utf-8", "replace")
    if not text:
        return {}
    if "json" in content_type or text.startswith("{"):
        return _json_object(text, "body")
    fields = parse_form(text)
    if "payload" not in fields:
        return fields  # a slash command (or ssl_check)
    payload = _json_object(fields["payload"], "payload")
    reason = _problem(payload)
    if reason is not None:
        raise Malformed(reason)
    return payload


def _json_object(text: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        raise Malformed(f"{what} is not JSON") from None
    if not isinstance(value, dict):
        raise Malformed(f"{what} is not a JSON object")
    return value


def _is_obj(value: Any) -> bool:
    return isinstance(value, dict)


def _problem(payload: dict[str, Any]) -> str | None:
    """None when an interactivity payload has the shape Slack sends, else a short reason."""
    if not isinstance(payload.get("type"), str):
        return "payload has no type"
    if "user" in payload and not (_is_obj(payload["user"]) and isinstance(payload["user"].get("id"), str)):
        return "payload user has no id"
    kind = payload["type"]
    if kind == "block_actions":
        actions = payload.get("actions")
        if not isinstance(actions, list) or not all(_is_obj(a) and isinstance(a.get("action_id"), str)
                                                    for a in actions):
            return "block_actions without valid actions"
    elif kind in ("view_submission", "view_closed"):
        view = payload.get("view")
        if not (_is_obj(view) and isinstance(view.get("type"), str) and isinstance(view.get("callback_id", ""), str)
                and _is_obj((view.get("state") or {}).get("values", {}))):
            return f"{kind} without a valid view"
    elif kind in ("shortcut", "message_action") and not isinstance(payload.get("callback_id"), str):
        return f"{kind} without callback_id"
    return None
