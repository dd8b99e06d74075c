"""Block Kit as terminal text: buttons numbered, inputs as blanks (pure)."""

from __future__ import annotations

from typing import Any


def render_blocks(blocks: list[dict[str, Any]], buttons: list[tuple[str, dict[str, Any]]],
                  indent: str = "  ") -> list[str]:
    """Block Kit as plain text; buttons are numbered and appended to `buttons`."""
    lines: list[str] = []

    def text_of(obj: Any) -> str:
        return obj.get("text", "") if isinstance(obj, dict) else ""

    for block in blocks:
        kind = block.get("type")
        if kind == "header":
            lines.append(f"{indent}== {text_of(block.get('text'))} ==")
        elif kind == "section":
            if block.get("text"):
                lines += [indent + line for line in text_of(block["text"]).splitlines()]
            for field in block.get("fields") or []:
                lines += [f"{indent}  {line}" for line in text_of(field).splitlines()]
            accessory = block.get("accessory")
            if isinstance(accessory, dict) and accessory.get("type") == "button":
                buttons.append((block.get("block_id", ""), accessory))
                lines.append(f"{indent}  [{len(buttons)}] {text_of(accessory.get('text'))}")
        elif kind == "context":
            lines.append(indent + "  " + " · ".join(text_of(e) for e in block.get("elements", [])))
        elif kind == "divider":
            lines.append(indent + "-" * 40)
        elif kind == "actions":
            labels = []
            for element in block.get("elements", []):
                if element.get("type") == "button":
                    buttons.append((block.get("block_id", ""), element))
                    labels.append(f"[{len(buttons)}] {text_of(element.get('text'))}")
            if labels:
                lines.append(indent + "  ".join(labels))
        elif kind == "rich_text" or kind == "markdown":
            lines.append(indent + str(block.get("text", "")))
        elif kind == "input":
            lines.append(f"{indent}{text_of(block.get('label'))}: ______")
    return lines
