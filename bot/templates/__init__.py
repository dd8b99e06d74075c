"""Jinja2 templates for incident messages, rendered in a sandbox: user text is data, never template.

`status_update.md.j2` is the runbook's communication template; `incidents.update_template` in opsbot.yml
replaces it. `postmortem.md.j2` is the draft posted on resolve."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError, TemplateSyntaxError, UndefinedError
from jinja2.sandbox import SandboxedEnvironment
from jinja2.utils import missing

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


class _Named(StrictUndefined):
    """StrictUndefined whose error keeps what was looked up, so the message can name the field."""

    def _fail_with_undefined_error(self, *args: Any, **kwargs: Any) -> Any:
        raise _Missing(self._undefined_name, self._undefined_obj)


# jinja2 binds the dunders (__str__, __iter__, __add__…) to the base class's function: rebind them.
for _dunder in [n for n in dir(StrictUndefined)
                if getattr(StrictUndefined, n, None) is StrictUndefined._fail_with_undefined_error]:
    setattr(_Named, _dunder, _Named._fail_with_undefined_error)


class _Missing(UndefinedError):
    def __init__(self, name: str | None, owner: Any) -> None:
        self.name, self.owner = name, owner
        super().__init__(f"{name!r} is undefined")


@cache
def _naming() -> SandboxedEnvironment:
    overlay = environment().overlay(undefined=_Named)
    assert isinstance(overlay, SandboxedEnvironment)
    return overlay


def _line(exc: BaseException) -> int | None:
    """The template line an error was raised on (jinja2 rewrites the traceback to the template's lines)."""
    line, tb = None, exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _owner_name(owner: Any, context: dict[str, Any]) -> str | None:
    """Which value of the context (`incident`, an item of `updates` → `update`) an attribute was looked up on."""
    for key, value in context.items():
        if value is owner:
            return key
        if isinstance(value, list) and any(item is owner for item in value):
            return key.removesuffix("s")
    return None


def describe(exc: BaseException, context: dict[str, Any]) -> str:
    """A template's failure for the team that wrote it: the line, and for a misspelt name the field it looked
    up and the fields there are (`line 2: incident.servce is not defined; incident has: commander_id, …`)."""
    line = exc.lineno if isinstance(exc, TemplateSyntaxError) else _line(exc)
    where = f"line {line}: " if line else ""
    if isinstance(exc, _Missing):
        if exc.owner is missing:  # a top-level name
            return f"{where}{exc.name} is not defined; the names are: {', '.join(sorted(context))}"
        owner = _owner_name(exc.owner, context)
        if owner is not None and isinstance(exc.owner, dict):
            return f"{where}{owner}.{exc.name} is not defined; {owner} has: {', '.join(sorted(exc.owner))}"
        return f"{where}{exc.name} is not defined on {type(exc.owner).__name__}"
    return f"{where}{exc}"


def render(name_or_source: str, context: dict[str, Any], *, builtin: bool = True) -> str:
    """Render a bundled template (`builtin=True`, a file name) or template source from the config; a failure
    is a ValueError saying where and, for an undefined name, which field."""
    try:
        template = _builtin(name_or_source) if builtin else _naming().from_string(name_or_source)
        return template.render(**context).strip()
    except TemplateError as exc:
        raise ValueError(f"template failed: {describe(exc, context)}") from None
    except (TypeError, ValueError, ArithmeticError, LookupError) as exc:  # e.g. `{{ incident.eta + 1 }}`
        raise ValueError(f"template failed: {describe(exc, context)}") from None
