"""A small YAML writer that keeps comments: the drafted opsbot.yml is built as nodes, then written line by line.

PyYAML cannot write comments, and every guess in the draft carries one naming the runbook line it came
from. Scalars are written plain when PyYAML reads them back as the same value, else double-quoted (JSON
escapes are valid YAML); `data()` gives the value PyYAML must read back, which `render` callers check."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

Scalar = str | int | float | bool | None


@dataclass
class Literal:
    """A block scalar (`|`): templates and scripts, written as they are."""

    text: str


@dataclass
class Entry:
    key: str | None  # None for a list item
    value: Value
    note: str | None = None                          # comment at the end of the entry's first line
    above: list[str] = field(default_factory=list)   # comment lines before it
    disabled: bool = False                           # written commented out: shown, not configured


@dataclass
class Map:
    entries: list[Entry] = field(default_factory=list)

    def add(self, key: str, value: Value, note: str | None = None, *, above: list[str] | None = None,
            disabled: bool = False) -> Entry:
        entry = Entry(key, value, note, list(above or []), disabled)
        self.entries.append(entry)
        return entry

    def get(self, key: str) -> Value | None:
        return next((e.value for e in self.entries if e.key == key and not e.disabled), None)


@dataclass
class Seq:
    items: list[Entry] = field(default_factory=list)
    flow: bool = False  # `[a, b]` on one line (scalars only)

    def add(self, value: Value, note: str | None = None, *, above: list[str] | None = None,
            disabled: bool = False) -> Entry:
        entry = Entry(None, value, note, list(above or []), disabled)
        self.items.append(entry)
        return entry


Value = Scalar | Literal | Map | Seq

# What YAML does not accept in a stream (its "printable" set, less NEL, inverted).
_CONTROL = re.compile("[^\t\n\r\x20-\x7e\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_PLAIN = re.compile(r"^[A-Za-z0-9_$/.(][^#\n]*$")


def clean(text: str) -> str:
    """Text with the characters YAML refuses (control characters, U+FFFE, lone surrogates) removed."""
    return _CONTROL.sub("", text)


def scalar(value: Scalar, *, flow: bool = False) -> str:
    """`value` as YAML: plain when it reads back the same (inside `[…]` too when `flow`), else double-quoted."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    text = clean(value)
    if _PLAIN.match(text) and text == text.strip() and ": " not in text and not text.endswith(":") and not (
            flow and any(c in text for c in ",[]{}")):
        try:
            if yaml.safe_load(f"k: {text}") == {"k": text} and (not flow or yaml.safe_load(f"[{text}]") == [text]):
                return text
        except yaml.YAMLError:
            pass
    return json.dumps(text, ensure_ascii=False)


def _comment(text: str) -> str:
    return clean(" ".join(text.split()))


def _with_note(line: str, note: str | None) -> str:
    return f"{line}  # {_comment(note)}" if note else line


def _literal_lines(text: str, indent: str) -> tuple[str, list[str]]:
    body = clean(text).replace("\t", "    ").rstrip("\n")
    lines = [line.rstrip() for line in body.split("\n")]
    indicator = "2" if lines and lines[0].startswith(" ") else ""
    header = f"|{indicator}-" if not text.endswith("\n") else f"|{indicator}"
    return header, [f"{indent}  {line}" if line else "" for line in lines]


def _entry(entry: Entry, indent: str) -> list[str]:
    """The lines of one mapping entry or list item (its comments first)."""
    out = [f"{indent}# {_comment(line)}" for line in entry.above]
    lead = f"{indent}{scalar(entry.key)}:" if entry.key is not None else f"{indent}-"
    value = entry.value
    if isinstance(value, Map) and value.entries:
        if entry.key is None and all(item.disabled for item in value.entries):
            out.append(_with_note(f"{indent}- {{}}", entry.note))
            out += _map(value, indent + "  ")
        elif entry.key is None:  # `- first: x` then the other keys under it
            inner = _map(value, indent + "  ")
            first = next((n for n, line in enumerate(inner) if not line.lstrip().startswith("#")), 0)
            out += inner[:first]
            out.append(_with_note(f"{indent}- {inner[first].lstrip()}", entry.note))
            out += inner[first + 1:]
        else:
            empty = " {}" if all(item.disabled for item in value.entries) else ""
            out.append(_with_note(lead + empty, entry.note))
            out += _map(value, indent + "  ")
    elif isinstance(value, Seq) and value.items and not value.flow:
        # Every item commented out: the key still holds an (empty) list, then the items as comments.
        empty = " []" if all(item.disabled for item in value.items) else ""
        out.append(_with_note(lead + empty, entry.note))
        out += _seq(value, indent + "  ")
    elif isinstance(value, Literal):
        header, lines = _literal_lines(value.text, indent)
        out.append(_with_note(f"{lead} {header}", entry.note))
        out += lines
    else:
        out.append(_with_note(f"{lead} {_inline(value)}", entry.note))
    if entry.disabled:
        out = [line if line.lstrip().startswith("#") else f"{indent}# {line[len(indent):]}" for line in out if line]
    return out


def _inline(value: Value, *, flow: bool = False) -> str:
    if isinstance(value, Map):
        return "{" + ", ".join(f"{scalar(e.key, flow=True)}: {_inline(e.value, flow=True)}"
                               for e in value.entries if not e.disabled) + "}"
    if isinstance(value, Seq):
        return "[" + ", ".join(_inline(e.value, flow=True) for e in value.items if not e.disabled) + "]"
    if isinstance(value, Literal):
        return scalar(value.text, flow=flow)
    return scalar(value, flow=flow)


def _map(node: Map, indent: str) -> list[str]:
    out: list[str] = []
    for entry in node.entries:
        out += _entry(entry, indent)
    return out


def _seq(node: Seq, indent: str) -> list[str]:
    out: list[str] = []
    for entry in node.items:
        out += _entry(entry, indent)
    return out


def render(root: Map, header: list[str] | None = None) -> str:
    """The document: header comments, then each top-level section separated by a blank line."""
    out = [f"# {_comment(line)}" if line else "#" for line in header or []]
    for entry in root.entries:
        if out:
            out.append("")
        out += _entry(entry, "")
    return "\n".join(out) + "\n"


def data(value: Value) -> Any:
    """What the written YAML means (commented-out entries left out)."""
    if isinstance(value, Map):
        return {e.key: data(e.value) for e in value.entries if not e.disabled}
    if isinstance(value, Seq):
        return [data(e.value) for e in value.items if not e.disabled]
    if isinstance(value, Literal):
        body = clean(value.text).replace("\t", "    ").rstrip("\n")
        body = "\n".join(line.rstrip() for line in body.split("\n"))
        return body + "\n" if value.text.endswith("\n") else body
    if isinstance(value, str):
        return clean(value)
    return value
