"""A shape check for interactive payloads before bolt sees them: bolt's matchers index fields such as
`actions[].action_id` directly and fail with a 500 on payloads no Slack client would send."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs


def _is_obj(value: Any) -> bool:
    return isinstance(value, dict)


def problem(body: bytes, content_type: str) -> str | None:
    """None when the body has the shape Slack sends, else a short reason (for a 400)."""
    if "application/x-www-form-urlencoded" not in content_type or not body.startswith(b"payload="):
        return None  # events are JSON; slash commands are plain form fields
    fields = parse_qs(body.decode("utf-8", "replace"))
    try:
        payload = json.loads(fields["payload"][0])
    except ValueError:
        return "payload is not JSON"
    if not _is_obj(payload) or not isinstance(payload.get("type"), str):
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
