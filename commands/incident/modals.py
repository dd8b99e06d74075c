"""The declare, update and resolve modals (pure: config and values in, view dict out) and their parsing."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from bot import incidents
from bot.config import Config
from bot.incidents import STATUSES, Declaration
from bot.models import Incident
from commands import blocks as bk
from commands.incident.ids import Callback, Field
from commands.incident.parse import safe_text, unescape

TITLE_MAX = 200


def severity_options(config: Config) -> list[dict[str, Any]]:
    return [bk.option(s.shown, s.name, " · ".join(
        p for p in (s.description, f"respond {incidents.describe_response(s)}") if p))
            for s in config.severities]


def declare_modal(config: Config, *, user_id: str, title: str | None = None, description: str | None = None,
                  severity: str | None = None, service: str | None = None, environment: str | None = None,
                  source_link: str | None = None, origin_channel: str | None = None) -> dict[str, Any]:
    chosen = next((s.name for s in config.severities if severity and s.name.lower() == severity.lower()), None)
    blocks = [
        bk.text_input(Field.TITLE, Field.TITLE, "Title", initial=title, max_length=TITLE_MAX,
                      placeholder="Checkout is down"),
        bk.select_input(Field.SEVERITY, Field.SEVERITY, "Severity", severity_options(config), initial=chosen),
        bk.text_input(Field.SERVICE, Field.SERVICE, "Affected service", optional=True, initial=service),
    ]
    if config.environments:
        options = [bk.option(name, name) for name in config.environments]
        blocks.append(bk.select_input(Field.ENVIRONMENT, Field.ENVIRONMENT, "Environment", options,
                                      initial=environment or config.default_environment, optional=True))
    else:
        blocks.append(bk.text_input(Field.ENVIRONMENT, Field.ENVIRONMENT, "Environment", optional=True,
                                    initial=environment))
    blocks += [
        bk.text_input(Field.IMPACT, Field.IMPACT, "Impact", multiline=True, optional=True,
                      placeholder="Who is affected, and how?"),
        bk.text_input(Field.DESCRIPTION, Field.DESCRIPTION, "Description", multiline=True, optional=True,
                      initial=description),
        bk.user_input(Field.COMMANDER, Field.COMMANDER, "Incident commander", initial=user_id),
        *_role_inputs(config),
    ]
    if source_link:
        blocks.append(bk.context(f"Declared from <{source_link}|this message>."))
    metadata = json.dumps({"source_link": source_link, "channel": origin_channel})
    return bk.modal("Declare incident", blocks, callback_id=Callback.DECLARE, submit="Declare",
                    private_metadata=metadata)


@dataclass(frozen=True)
class Submitted:
    request: Declaration | None
    errors: dict[str, str]


def _typed(values: dict[str, Any], field: Field) -> str | None:
    """A modal input as mrkdwn-safe text (modal values arrive unescaped)."""
    value = bk.state_value(values, field, field)
    return safe_text(value, raw=True) if value else None


def _role_inputs(config: Config) -> list[dict[str, Any]]:
    from commands.followups.render import role_inputs  # optional pickers for the other roles

    return role_inputs(config)


def parse_declare(config: Config, view: dict[str, Any], *, user_id: str) -> Submitted:
    """The declaration in a submitted modal, or the inline errors to show (pure validation)."""
    values = (view.get("state") or {}).get("values") or {}
    title = " ".join((_typed(values, Field.TITLE) or "").split())
    severity = bk.state_value(values, Field.SEVERITY, Field.SEVERITY) or ""
    errors: dict[str, str] = {}
    if not title:
        errors[Field.TITLE] = "Give the incident a short title, e.g. “Checkout is down”."
    valid = [s.name for s in config.severities]
    if severity.lower() not in (v.lower() for v in valid):
        errors[Field.SEVERITY] = f"Pick a severity: {', '.join(valid)}."
    if errors:
        return Submitted(None, errors)
    try:
        metadata = json.loads(view.get("private_metadata") or "{}")
    except ValueError:
        metadata = {}
    request = Declaration(
        title=title, severity=severity, reporter_id=user_id,
        commander_id=bk.state_value(values, Field.COMMANDER, Field.COMMANDER) or user_id,
        service=_typed(values, Field.SERVICE),
        environment=bk.state_value(values, Field.ENVIRONMENT, Field.ENVIRONMENT),
        impact=_typed(values, Field.IMPACT),
        description=_typed(values, Field.DESCRIPTION),
        source_link=metadata.get("source_link") if isinstance(metadata, dict) else None,
    )
    return Submitted(request, {})


def _metadata(incident: Incident, channel: str | None) -> str:
    return json.dumps({"incident": incident.id, "channel": channel})


def _origin(view: dict[str, Any]) -> tuple[int, str | None]:
    """(incident id, channel the modal was opened from) kept in private_metadata; id 0 (which no incident
    has) when it is not one. A bare id is what modals opened by earlier versions carry."""
    raw = str(view.get("private_metadata") or "")
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return incidents.parse_ref(raw) or 0, None
    number, channel = data.get("incident"), data.get("channel")
    return (number if isinstance(number, int) and not isinstance(number, bool) and number > 0 else 0,
            channel if isinstance(channel, str) and channel else None)


def update_modal(incident: Incident, channel: str | None = None) -> dict[str, Any]:
    """`channel`: where it was opened, where its submission is answered (a view has no response_url)."""
    options = [bk.option(s.capitalize(), s) for s in STATUSES if s != incidents.RESOLVED]
    blocks = [
        bk.section(f"*{incident.ref}* · {incident.severity} · {bk.cut(incident.title, 200)}"),
        bk.select_input(Field.STATUS, Field.STATUS, "Status", options, initial=incident.status),
        bk.text_input(Field.IMPACT, Field.IMPACT, "Impact", multiline=True, optional=True,
                      initial=unescape(incident.impact)),
        bk.text_input(Field.ETA, Field.ETA, "ETA", optional=True, initial=unescape(incident.eta), max_length=255,
                      placeholder="e.g. 30 minutes, 14:30 UTC, unknown"),
        bk.text_input(Field.MESSAGE, Field.MESSAGE, "Update", multiline=True,
                      placeholder="What changed, what is being done next?"),
    ]
    return bk.modal("Post update", blocks, callback_id=Callback.UPDATE, submit="Post",
                    private_metadata=_metadata(incident, channel))


@dataclass(frozen=True)
class UpdateSubmitted:
    incident_id: int
    text: str
    status: str | None
    impact: str | None
    eta: str | None
    channel: str | None = None


def parse_update(view: dict[str, Any]) -> tuple[UpdateSubmitted | None, dict[str, str]]:
    values = (view.get("state") or {}).get("values") or {}
    text = (_typed(values, Field.MESSAGE) or "").strip()
    if not text:
        return None, {Field.MESSAGE: "Say what changed."}
    incident_id, channel = _origin(view)
    return UpdateSubmitted(
        incident_id=incident_id, text=text,
        status=bk.state_value(values, Field.STATUS, Field.STATUS),
        impact=_typed(values, Field.IMPACT) or "",
        eta=_typed(values, Field.ETA) or "",
        channel=channel,
    ), {}


@dataclass(frozen=True)
class ResolveSubmitted:
    incident_id: int
    summary: str
    channel: str | None = None


def resolve_modal(incident: Incident, channel: str | None = None) -> dict[str, Any]:
    blocks = [
        bk.section(f"Resolve *{incident.ref}* · {incident.severity} · {bk.cut(incident.title, 200)}?"),
        bk.text_input(Field.SUMMARY, Field.SUMMARY, "Resolution summary", multiline=True,
                      placeholder="e.g. Rolled back api to v1.4.2; error rate back to normal."),
    ]
    return bk.modal("Resolve incident", blocks, callback_id=Callback.RESOLVE, submit="Resolve",
                    private_metadata=_metadata(incident, channel))


def parse_resolve(view: dict[str, Any]) -> tuple[ResolveSubmitted | None, dict[str, str]]:
    values = (view.get("state") or {}).get("values") or {}
    summary = (_typed(values, Field.SUMMARY) or "").strip()
    if not summary:
        return None, {Field.SUMMARY: "Say how it was resolved."}
    incident_id, channel = _origin(view)
    return ResolveSubmitted(incident_id, summary, channel), {}
