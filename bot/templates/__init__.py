"""Jinja2 templates for incident messages, rendered in a sandbox: user text is data, never template.

`status_update.md.j2` is the runbook's communication template; `incidents.update_template` in opsbot.yml
replaces it. `postmortem.md.j2` is the draft posted on resolve."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError, TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment

HERE = Path(__file__).resolve().parent


def _hhmm(value: datetime | None) -> str:
    return value.strftime("%H:%M") if value else ""


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else ""


@cache
def environment() -> SandboxedEnvironment:
    # Slack mrkdwn, not HTML: no autoescape. The sandbox stops templates from reaching Python internals.
    env = SandboxedEnvironment(autoescape=False, undefined=StrictUndefined, trim_blocks=True,
                               lstrip_blocks=True, keep_trailing_newline=False)
    env.filters["hhmm"] = _hhmm
    env.filters["when"] = _when
    return env


def compile_template(source: str) -> Template:
    """Compile `source`; a syntax error becomes a ValueError naming the line."""
    try:
        return environment().from_string(source)
    except TemplateSyntaxError as exc:
        raise ValueError(f"template error on line {exc.lineno}: {exc.message}") from None


@cache
def _builtin(name: str) -> Template:
    return compile_template((HERE / name).read_text(encoding="utf-8"))


def render(name_or_source: str, context: dict[str, Any], *, builtin: bool = True) -> str:
    """Render a bundled template (`builtin=True`, a file name) or template source from the config."""
    template = _builtin(name_or_source) if builtin else compile_template(name_or_source)
    try:
        return template.render(**context).strip()
    except TemplateError as exc:
        raise ValueError(f"template failed: {exc}") from None
