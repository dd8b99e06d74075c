"""Notification targets as the config writes them, and which provider reaches each one.

  U0ALICE01, <@U0ALICE01>, @alice      a Slack user (a handle is looked up in Slack)
  S0ENGLEAD, <!subteam^S0ENGLEAD>, @eng-leads   a Slack user group
  oncall:<schedule>                    whoever is on call in that schedule now
  email:<address>                      an e-mail (paging.email)
  pagerduty:<service>                  a PagerDuty service (paging.pagerduty.services)
  opsgenie:<team>                      an Opsgenie team (paging.opsgenie)
  webhook:<name>                       a signed POST (paging.webhooks)

A bare address (ops@example.com) in the older `escalate_to` lists means `email:` when e-mail is set up."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from bot.config import Config

Kind = Literal["slack", "oncall", "email", "pagerduty", "opsgenie", "webhook"]
PREFIXES: tuple[Kind, ...] = ("oncall", "email", "pagerduty", "opsgenie", "webhook")
EMAIL_RE = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")
SLACK_ID_RE = re.compile(r"^<?[@!]?(?:subteam\^)?([UWS][A-Z0-9]{2,})(?:\|[^>]*)?>?$")
HANDLE_RE = re.compile(r"^@[a-z0-9][a-z0-9._-]{0,79}$", re.IGNORECASE)


@dataclass(frozen=True)
class Target:
    kind: Kind
    name: str  # the user/group id or @handle, schedule, address, service, team or webhook name

    def __str__(self) -> str:
        return self.name if self.kind == "slack" else f"{self.kind}:{self.name}"


class BadTarget(ValueError):
    pass


def parse(text: str, *, bare_email: bool = True) -> Target:
    """One target; BadTarget says what the accepted forms are."""
    raw = text.strip()
    prefix, sep, rest = raw.partition(":")
    if sep and prefix.lower() in PREFIXES:
        kind: Kind = prefix.lower()  # type: ignore[assignment]
        name = rest.strip()
        if not name:
            raise BadTarget(f"{raw!r}: name the {kind} after `{kind}:`")
        if kind == "email" and not EMAIL_RE.match(name):
            raise BadTarget(f"{raw!r}: not an e-mail address")
        return Target(kind, name)
    found = SLACK_ID_RE.match(raw)
    if found:
        return Target("slack", found.group(1))
    if HANDLE_RE.match(raw):
        return Target("slack", raw.lower())
    if bare_email and EMAIL_RE.match(raw):
        return Target("email", raw)
    raise BadTarget(f"{raw!r} is not a target anyone can be reached at; use a Slack user id (U…), a group id "
                    "(S…), an @handle, oncall:<schedule>, email:<address>, pagerduty:<service>, "
                    "opsgenie:<team> or webhook:<name>")


def unreachable(config: Config, target: Target) -> str | None:
    """Why no configured provider can reach `target` (None when one can)."""
    paging = config.paging
    if target.kind == "oncall" and target.name not in config.oncall:
        return _unknown("schedule", target.name, config.oncall, "oncall")
    if target.kind == "email" and paging.email is None:
        return f"{target}: e-mail is not set up (add paging.email)"
    if target.kind == "pagerduty":
        if paging.pagerduty is None:
            return f"{target}: PagerDuty is not set up (add paging.pagerduty)"
        if target.name not in paging.pagerduty.services:
            return _unknown("PagerDuty service", target.name, paging.pagerduty.services, "paging.pagerduty.services")
    if target.kind == "opsgenie":
        if paging.opsgenie is None:
            return f"{target}: Opsgenie is not set up (add paging.opsgenie)"
        if paging.opsgenie.teams and target.name not in paging.opsgenie.teams:
            return _unknown("Opsgenie team", target.name, paging.opsgenie.teams, "paging.opsgenie.teams")
    if target.kind == "webhook" and target.name not in paging.webhooks:
        return _unknown("webhook", target.name, paging.webhooks, "paging.webhooks")
    return None


def _unknown(what: str, name: str, known: object, where: str) -> str:
    names = ", ".join(sorted(known)) if known else "none"  # type: ignore[call-overload]
    return f"no {what} {name!r} in {where} (known: {names})"


def problems(config: Config) -> list[str]:
    """Errors for `opsbot config check`: policies, `inform:` lists and unknown policy names."""
    found: list[str] = []
    for name, policy in config.escalation_policies.items():
        for i, level in enumerate(policy.levels):
            found += [f"escalation_policies.{name}.levels[{i}].notify: {p}" for p in _check(config, level.notify)]
    for severity in config.severities:
        where = f"severities.{severity.name}"
        found += [f"{where}.inform: {p}" for p in _check(config, severity.inform)]
        if severity.escalation_policy and severity.escalation_policy not in config.escalation_policies:
            found.append(f"{where}.escalation_policy: "
                         + _unknown("policy", severity.escalation_policy, config.escalation_policies,
                                    "escalation_policies"))
    for rule in config.alerts.rules:
        if rule.escalation_policy and rule.escalation_policy not in config.escalation_policies:
            found.append(f"alerts.rules.{rule.name}.escalation_policy: "
                         + _unknown("policy", rule.escalation_policy, config.escalation_policies,
                                    "escalation_policies"))
    return found


def warnings(config: Config) -> list[str]:
    """The older `escalate_to` lists kept working as before: a target nobody can be reached at is a warning
    there (an error under --strict), not an error."""
    found: list[str] = []
    lists = [(f"severities.{s.name}.escalate_to", s.escalate_to) for s in config.severities]
    lists.append(("alerts.escalate_to", config.alerts.escalate_to))
    lists += [(f"alerts.rules.{r.name}.escalate_to", r.escalate_to) for r in config.alerts.rules]
    for where, targets in lists:
        found += [f"{where}: {p} (it is posted as plain text, which notifies nobody)"
                  for p in _check(config, targets)]
    return found


def _check(config: Config, targets: list[str]) -> list[str]:
    out = []
    for text in targets:
        try:
            target = parse(text)
        except BadTarget as exc:
            out.append(str(exc))
            continue
        reason = unreachable(config, target)
        if reason:
            out.append(reason)
    return out
