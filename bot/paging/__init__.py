"""Reaching people: escalation policies, on-call targets and paging providers (issue 16).

Domain, no Slack types. `expand` turns configured targets into recipients: Slack users and groups (mention
markup and the users to invite, through a `People` directory), `oncall:<schedule>` (whoever is on call now,
through an on-call lookup) and provider targets (e-mail, PagerDuty, Opsgenie, webhooks), which become `Page`
rows delivered one job each (bot/paging/flows.py, commands/paging/jobs.py)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from bot.config import Config
from bot.config import targets as parsing
from bot.config.targets import BadTarget, Target

log = logging.getLogger(__name__)
PROVIDER_KINDS = ("email", "pagerduty", "opsgenie", "webhook")
# Providers that know an open page and are told when it is acknowledged or resolved (e-mail is not).
STATEFUL = ("pagerduty", "opsgenie", "webhook")
HOW = {"email": "e-mail", "pagerduty": "PagerDuty", "opsgenie": "Opsgenie", "webhook": "webhook"}


class People(Protocol):
    """Slack users and groups (bot.slack.Directory is one)."""

    async def mention(self, principal: str) -> str: ...

    async def members(self, principal: str, *, fresh: bool = False) -> frozenset[str]: ...


# `oncall:<schedule>` → the Slack user ids on call now (bot.oncall.current); NotFound for an unknown schedule.
OncallLookup = Callable[[str], Awaitable[list[str]]]


@dataclass(frozen=True)
class Recipients:
    """Who a list of targets reaches now."""

    mentions: tuple[str, ...] = ()  # Slack markup: <@U…>, <!subteam^S…>, or a name posted as is
    users: tuple[str, ...] = ()  # Slack user ids (group members included): invited to the incident channel
    pages: tuple[Target, ...] = ()  # provider targets, one Page each
    notes: tuple[str, ...] = ()  # targets that reach nobody now, and why
    how: tuple[str, ...] = field(default=())  # "<@U1> (oncall:primary)", "pagerduty:checkout (PagerDuty)"

    def __bool__(self) -> bool:
        return bool(self.mentions or self.pages)


def dedup_key(subject: str) -> str:
    """The provider-side key of a subject's page (the same for trigger, acknowledge and resolve)."""
    kind, _, rest = subject.partition(":")
    prefix = {"incident": "opsbot-incident", "alert": "opsbot-alert", "manual": "opsbot-page"}.get(kind, "opsbot")
    return f"{prefix}-{rest.replace(':', '-')}"


def subject_of(key: str) -> str | None:
    """The subject of one of our dedup keys (a PagerDuty webhook names only the key): incident:12, manual:3."""
    for prefix, kind in (("opsbot-incident-", "incident"), ("opsbot-page-", "manual")):
        if key.startswith(prefix) and key[len(prefix):].isdecimal():
            return f"{kind}:{key[len(prefix):]}"
    return None


def parse_targets(texts: Iterable[str]) -> tuple[list[Target], list[str]]:
    """(targets, texts that are no target): an older `escalate_to` entry nobody can be reached at is posted as
    plain text, as it always was."""
    found, plain = [], []
    for text in texts:
        try:
            found.append(parsing.parse(text))
        except BadTarget:
            plain.append(text)
    return found, plain


def provider_targets(config: Config, texts: Iterable[str]) -> list[Target]:
    """The targets of `texts` that a paging provider reaches (Page rows)."""
    targets, _ = parse_targets(texts)
    return [t for t in targets if t.kind in PROVIDER_KINDS and parsing.unreachable(config, t) is None]


async def expand(texts: Iterable[str], *, config: Config, people: People, oncall: OncallLookup) -> Recipients:
    """Who `texts` reach now. A lookup that fails (Slack, a schedule's feed) leaves a note; it never raises."""
    targets, plain = parse_targets(texts)
    mentions: list[str] = []
    users: list[str] = []
    pages: list[Target] = []
    notes: list[str] = []
    how: list[str] = []
    for text in plain:
        mentions.append(text)
        notes.append(f"{text}: not a Slack user, group, schedule or provider target (posted as text)")
    for target in targets:
        if target.kind in PROVIDER_KINDS:
            reason = parsing.unreachable(config, target)
            if reason:
                notes.append(reason)
            else:
                pages.append(target)
                how.append(f"{target} ({HOW[target.kind]})")
            continue
        if target.kind == "oncall":
            try:
                on_call = await oncall(target.name)
            except Exception as exc:  # an unknown schedule or a feed that cannot be read: said, not raised
                log.warning("on-call lookup of %s failed: %s", target, exc)
                notes.append(f"{target}: {exc}")
                continue
            if not on_call:
                notes.append(f"{target}: nobody is on call now")
            for user in on_call:
                mentions.append(f"<@{user}>")
                users.append(user)
                how.append(f"<@{user}> ({target})")
            continue
        markup = await people.mention(target.name)
        if not markup.startswith("<"):  # no such user or group in Slack (or Slack did not say): not posted as text
            notes.append(f"{target.name}: not found in Slack (no user or user group with that handle)")
            continue
        mentions.append(markup)
        try:
            members = await people.members(target.name)
        except Exception as exc:
            log.warning("members of %s could not be read: %s", target.name, type(exc).__name__)
            members = frozenset()
        users += sorted(members)
        how.append(f"{markup} (Slack)")
    return Recipients(mentions=tuple(_unique(mentions)), users=tuple(_unique(users)), pages=tuple(pages),
                      notes=tuple(notes), how=tuple(_unique(how)))


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def valid_forms(config: Config) -> str:
    """What `/page` accepts here, for an answer to a target nobody can be reached at."""
    forms = ["a Slack user (@name or <@U…>)", "a user group (@handle)"]
    if config.oncall:
        forms.append("oncall:" + "|".join(sorted(config.oncall)))
    paging = config.paging
    if paging.email is not None:
        forms.append("email:<address>")
    if paging.pagerduty is not None and paging.pagerduty.services:
        forms.append("pagerduty:" + "|".join(sorted(paging.pagerduty.services)))
    if paging.opsgenie is not None:
        forms.append("opsgenie:" + ("|".join(sorted(paging.opsgenie.teams)) or "<team>"))
    if paging.webhooks:
        forms.append("webhook:" + "|".join(sorted(paging.webhooks)))
    return ", ".join(forms)
