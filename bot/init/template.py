"""`incidents.update_template` from the runbook's communication template (a code block of a message).

Its placeholders (`[Service Name]`, `<ETA>`, `{severity}`, `{{status}}`) become the Jinja2 names that
opsbot's status update offers (bot/templates/status_update.md.j2); a placeholder opsbot has no value
for stays as the runbook wrote it, and is named in the summary."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from bot.init.common import Context, origin
from bot.init.markdown import Block

_SECTIONS = ("communication", "template", "status update", "announcement", "notification", "message",
             "stakeholder")
_PLACEHOLDER = re.compile(r"\{\{\s*([^{}]+?)\s*\}\}|\[([^\[\]{}<>\n]{1,60})\](?!\()|<([A-Za-z][^<>\n]{0,60})>|"
                          r"\{([A-Za-z][^{}\n]{0,60})\}")
# (words, Jinja2 expression), tried in order; a word matches at the start of a word of the placeholder.
_NAMES: list[tuple[tuple[str, ...], str]] = [
    (("investigating", "identified", "monitoring", "resolved", "status", "state"),
     "{{ incident.status | capitalize }}"),
    (("severity", "sev", "p0", "p1", "p2", "priority", "level"), "{{ incident.severity }}"),
    (("eta", "estimated", "time to resol", "expected resol", "resolution time"), '{{ incident.eta or "Unknown" }}'),
    (("impact", "affected", "users", "customer"), '{{ incident.impact or "Being assessed" }}'),
    (("service", "system", "component", "app"), '{{ incident.service or "Platform" }}'),
    (("commander", "owner", "lead", "assignee", "responder", "ic", "on-call", "oncall", "name", "who"),
     "<@{{ incident.commander_id }}>"),
    (("update", "progress", "detail", "current", "finding", "latest", "actions taken", "what we"),
     '{{ updates[-1].text if updates else "" }}'),
    (("start", "time", "date", "when", "timestamp", "began"), "{{ incident.created_at | when }}"),
    (("id", "number", "ref", "#"), "{{ incident.ref }}"),
    (("title", "summary", "description", "issue", "problem", "incident", "what", "brief"), "{{ incident.title }}"),
    (("channel",), "<#{{ incident.channel_id }}>"),
]


def _expression(inner: str) -> str | None:
    text = inner.strip().lower()
    for words, expression in _NAMES:
        if any(re.search(r"(?<![a-z])" + re.escape(word), text) for word in words):
            return expression
    return None


def _literal(text: str) -> str:
    """Text Jinja2 prints as it is (`{{`, `{%` and `{#` quoted)."""
    return re.sub(r"\{(?=[{%#])", "{{ '{' }}", text)


def convert(body: str) -> tuple[str, list[str], list[str]]:
    """(the Jinja2 template, placeholders converted, placeholders kept as text)."""
    out, pos = "", 0
    done: list[str] = []
    kept: list[str] = []
    for match in _PLACEHOLDER.finditer(body):
        inner = next(group for group in match.groups() if group is not None)
        expression = _expression(inner)
        out += _literal(body[pos:match.start()])
        if expression is None:
            out += _literal(match.group(0))
            kept.append(match.group(0))
        else:
            out += expression
            done.append(match.group(0))
        pos = match.end()
    out += _literal(body[pos:])
    return out.rstrip("\n") + "\n", done, kept


def _is_template(block: Block) -> bool:
    if block.kind != "code" or block.lang in ("bash", "sh", "shell", "sql", "json", "yaml", "yml", "python",
                                               "console", "powershell"):
        return False
    looks = bool(re.search(r"incident|status:|severity|impact|eta", block.text, re.IGNORECASE))
    return looks and (block.under(*_SECTIONS) or bool(re.search(r"status:.*\n(.*\n)*.*(severity|impact):",
                                                                block.text, re.IGNORECASE)))


def sample_context() -> dict[str, object]:
    """A context shaped like bot.incidents.template_context, to render the draft once before writing it."""
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    empty = ("id", "service", "environment", "impact", "description", "eta", "source_link", "acknowledged_at",
             "acknowledged_by", "resolved_at", "resolution")
    incident: dict[str, object] = dict.fromkeys(empty)
    incident.update({"title": "API down", "severity": "P1", "status": "investigating", "reporter_id": "U1",
                     "commander_id": "U1", "channel_id": "C1", "channel_name": "inc-1", "created_at": now,
                     "ref": "INC-1"})
    return {"incident": incident, "severity": {"name": "P1", "description": "", "response": ""},
            "updates": [{"at": now, "actor": "U1", "text": "Looking", "status": None}], "events": [],
            "duration": None}


def extract(ctx: Context) -> tuple[str | None, str, list[str], list[str]]:
    """(template or None, its comment, summary, left out)."""
    from bot.templates import render

    candidates = [b for b in ctx.doc.blocks if _is_template(b)]
    if not candidates:
        return None, "", [], ["no communication template: the built-in status update is used"]
    chosen = next((b for b in candidates if "update" in " ".join(b.heading_path()).lower()), candidates[0])
    template, done, kept = convert(chosen.text)
    try:
        render(template, sample_context(), builtin=False)
    except ValueError as exc:
        return None, "", [], [f"the template at line {chosen.line} did not convert ({exc})"]
    left = [f"template at line {b.line} not used (opsbot has one status update template)"
            for b in candidates if b is not chosen]
    if kept:
        left.append(f"template placeholders kept as text: {', '.join(dict.fromkeys(kept))}")
    first = chosen.lines[0][0] if chosen.lines else chosen.line
    converted = f"placeholders {', '.join(dict.fromkeys(done))} converted" if done else ""
    note = origin(ctx.doc, first, converted)
    return template, note, [f"incidents.update_template from line {first}"], left
