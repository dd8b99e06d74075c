"""Pure Block Kit builders that respect Slack's limits (SLACK_FACTS §8) by cutting, never by failing."""

from __future__ import annotations

from typing import Any

MAX_MESSAGE_BLOCKS = 50
MAX_MODAL_BLOCKS = 100
SECTION_TEXT = 3000
HEADER_TEXT = 150
BUTTON_TEXT = 75
BUTTON_VALUE = 2000
MODAL_TITLE = 24
FIELD_TEXT = 2000
OPTION_TEXT = 75
OPTION_VALUE = 150
CONTEXT_ELEMENTS = 10
PRIVATE_METADATA = 3000
Block = dict[str, Any]


def cut(text: str, limit: int) -> str:
    """`text` shortened to `limit` characters with an ellipsis when it had to be cut."""
    text = text or ""
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def plain(text: str, limit: int = SECTION_TEXT) -> dict[str, Any]:
    return {"type": "plain_text", "text": cut(text, limit) or " ", "emoji": True}


def mrkdwn(text: str, limit: int = SECTION_TEXT) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": cut(text, limit) or " "}


def header(text: str) -> Block:
    return {"type": "header", "text": plain(text, HEADER_TEXT)}


def section(text: str, *, fields: list[str] | None = None, block_id: str | None = None,
            accessory: dict[str, Any] | None = None) -> Block:
    block: Block = {"type": "section", "text": mrkdwn(text)}
    if fields:
        block["fields"] = [mrkdwn(f, FIELD_TEXT) for f in fields[:10]]
    if block_id:
        block["block_id"] = block_id
    if accessory:
        block["accessory"] = accessory
    return block


def fields_section(fields: list[str]) -> Block:
    return {"type": "section", "fields": [mrkdwn(f, FIELD_TEXT) for f in fields[:10]]}


def context(*texts: str) -> Block:
    return {"type": "context", "elements": [mrkdwn(t, SECTION_TEXT) for t in texts[:CONTEXT_ELEMENTS]]}


def divider() -> Block:
    return {"type": "divider"}


def button(text: str, action_id: str, value: str = "", *, style: str | None = None,
           url: str | None = None, confirm: dict[str, Any] | None = None) -> dict[str, Any]:
    element: dict[str, Any] = {"type": "button", "text": plain(text, BUTTON_TEXT), "action_id": action_id}
    if value:
        element["value"] = cut(value, BUTTON_VALUE)
    if style in ("primary", "danger"):
        element["style"] = style
    if url:
        element["url"] = url
    if confirm:
        element["confirm"] = confirm
    return element


def confirm_dialog(title: str, text: str, confirm: str = "Confirm", deny: str = "Cancel") -> dict[str, Any]:
    return {"title": plain(title, 100), "text": mrkdwn(text, 300), "confirm": plain(confirm, 30),
            "deny": plain(deny, 30)}


def actions(*elements: dict[str, Any], block_id: str | None = None) -> Block:
    block: Block = {"type": "actions", "elements": list(elements)[:25]}
    if block_id:
        block["block_id"] = block_id
    return block


def option(text: str, value: str, description: str | None = None) -> dict[str, Any]:
    opt: dict[str, Any] = {"text": plain(text, OPTION_TEXT), "value": cut(value, OPTION_VALUE)}
    if description:
        opt["description"] = plain(description, OPTION_TEXT)
    return opt


def text_input(block_id: str, action_id: str, label: str, *, multiline: bool = False, optional: bool = False,
               initial: str | None = None, placeholder: str | None = None, max_length: int | None = None) -> Block:
    element: dict[str, Any] = {"type": "plain_text_input", "action_id": action_id, "multiline": multiline}
    if initial:
        element["initial_value"] = cut(initial, max_length or 3000)
    if placeholder:
        element["placeholder"] = plain(placeholder, 150)
    if max_length:
        element["max_length"] = max_length
    return {"type": "input", "block_id": block_id, "label": plain(label, 2000), "optional": optional,
            "element": element}


def select_input(block_id: str, action_id: str, label: str, options: list[dict[str, Any]], *,
                 initial: str | None = None, optional: bool = False) -> Block:
    element: dict[str, Any] = {"type": "static_select", "action_id": action_id, "options": options[:100]}
    chosen = next((o for o in options if o["value"] == initial), None)
    if chosen:
        element["initial_option"] = chosen
    return {"type": "input", "block_id": block_id, "label": plain(label, 2000), "optional": optional,
            "element": element}


def user_input(block_id: str, action_id: str, label: str, *, initial: str | None = None,
               optional: bool = False) -> Block:
    element: dict[str, Any] = {"type": "users_select", "action_id": action_id}
    if initial:
        element["initial_user"] = initial
    return {"type": "input", "block_id": block_id, "label": plain(label, 2000), "optional": optional,
            "element": element}


def modal(title: str, blocks: list[Block], *, callback_id: str, submit: str | None = "Submit",
          close: str = "Cancel", private_metadata: str = "", external_id: str | None = None) -> dict[str, Any]:
    view: dict[str, Any] = {
        "type": "modal", "callback_id": callback_id, "title": plain(title, MODAL_TITLE),
        "close": plain(close, MODAL_TITLE), "blocks": fit(blocks, MAX_MODAL_BLOCKS),
        "private_metadata": private_metadata[:PRIVATE_METADATA],
    }
    if submit:
        view["submit"] = plain(submit, MODAL_TITLE)
    if external_id:
        view["external_id"] = external_id
    return view


def fit(blocks: list[Block], limit: int = MAX_MESSAGE_BLOCKS) -> list[Block]:
    """Keep at most `limit` blocks; the last one says how many were left out."""
    if len(blocks) <= limit:
        return blocks
    kept = blocks[: limit - 1]
    return [*kept, context(f"_…and {len(blocks) - len(kept)} more not shown._")]


def state_value(values: dict[str, Any], block_id: str, action_id: str) -> str | None:
    """The submitted value of an input, whatever its element type; None when empty."""
    element = (values.get(block_id) or {}).get(action_id) or {}
    for key in ("value", "selected_user", "selected_date", "selected_conversation", "selected_channel"):
        if element.get(key):
            return str(element[key])
    selected = element.get("selected_option")
    if isinstance(selected, dict):
        return str(selected.get("value"))
    return None
