"""The Slack side of the incident flows: `SlackIncidents` implements bot.incidents.flows.IncidentNotifier with
the pure renderers of render.py and Web API calls made through bot/slack.py (posts and channels made once)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

from slack_sdk.errors import SlackApiError

from bot import metrics, slack
from bot.config import Severity
from bot.deps import Deps
from bot.incidents.flows import Change, Channel, Escalation, PageDelayed, PageNotPosted, Posted, Services, SetUp
from bot.jobs import is_transient
from bot.models import Incident
from commands.common import Respond
from commands.incident import render
from commands.paging.notify import pager

log = logging.getLogger(__name__)
METADATA_EVENT = "opsbot_incident"  # Slack message metadata event_type of the announcement and the summary
ANNOUNCEMENT, SUMMARY = "announcement", "summary"


def services(deps: Deps) -> Services:
    return Services(db=deps.db, config=deps.config, clock=deps.clock, require=deps.require,
                    ratelimit=deps.ratelimit, pager=pager(deps))


async def quietly(name: str, coro: Awaitable[Any]) -> Any:
    """Await a Slack call whose failure must not stop its siblings; the failure is logged and counted."""
    try:
        return await coro
    except SlackApiError as exc:
        log.warning("%s failed: %s", name, exc.response.get("error"))
    except Exception:
        log.exception("%s failed", name)
    metrics.BACKGROUND_FAILURES.labels(name=f"incident.{name}").inc()
    return None


def _mention(channel: str) -> str:
    """A configured channel (`#incidents` or an id) as the declarer should read it."""
    return channel if channel.startswith("#") else f"<#{channel}>"


def _metadata(incident: Incident, role: str) -> dict[str, Any]:
    """Slack message metadata naming the incident and the message's role: how a post whose answer was lost
    is found again (bot/slack.py post_once)."""
    return {"event_type": METADATA_EVENT, "event_payload": {"incident_id": incident.id, "ref": incident.ref,
                                                            "role": role}}


class SlackIncidents:
    """bot.incidents.flows.IncidentNotifier over Slack. `respond` (the declarer's response_url) gets the
    "Declared" answer; without it (a modal) the declarer sees the announcement."""

    def __init__(self, deps: Deps, *, respond: Respond | None = None) -> None:
        self.deps = deps
        self.respond = respond

    def _severity(self, incident: Incident) -> Severity | None:
        return services(self.deps).severity(incident)

    def _home(self, incident: Incident) -> str:
        """Where the incident's conversation happens: its channel, else the incidents channel."""
        return incident.channel_id or incident.announcement_channel or self.deps.config.channels.incidents

    async def _post_once(self, incident: Incident, role: str, *, look_first: bool = False, **message: Any) -> Posted:
        try:
            made = await slack.post_once(self.deps.slack, metadata=_metadata(incident, role), look_first=look_first,
                                         **message)
        except Exception as exc:
            log.exception("posting the %s of %s failed", role, incident.ref)
            return Posted(error=type(exc).__name__)
        if made.data is None:
            return Posted(error=made.error)
        return Posted(channel=made.data["channel"], ts=made.data["ts"])

    def _post(self, channel: str, text: str, blocks: list[dict[str, Any]] | None = None,
              name: str = "post") -> Awaitable[Any]:
        return quietly(name, self.deps.slack.chat_postMessage(channel=channel, text=text, blocks=blocks or None,
                                                               unfurl_links=False))

    # -- declaring ---------------------------------------------------------------------------------
    async def announce(self, incident: Incident, *, pending_channel: str, look_first: bool = False) -> Posted:
        text, blocks = render.announcement(incident, self._severity(incident), now=self.deps.clock(),
                                           pending_channel=pending_channel)
        return await self._post_once(incident, ANNOUNCEMENT, channel=self.deps.config.channels.incidents,
                                     look_first=look_first, text=text, blocks=blocks, unfurl_links=False)

    async def create_channel(self, incident: Incident, *, names: list[str], since: float) -> Channel:
        try:
            made = await slack.create_channel_once(self.deps.slack, names=names, since=since,
                                                   is_private=self.deps.config.incidents.private_channels)
        except Exception as exc:
            log.exception("creating the channel of %s failed", incident.ref)
            made = slack.Outcome(None, type(exc).__name__)
        if made.data is None:
            log.warning("creating the channel of %s failed: %s", incident.ref, made.error)
            return Channel(error=made.error)
        return Channel(id=made.data["id"], name=made.data.get("name") or names[0])

    async def post_summary(self, incident: Incident, channel: str, look_first: bool = False) -> Posted:
        text, blocks = render.summary(incident, self._severity(incident), now=self.deps.clock())
        blocks = await self._with_roles(incident, blocks)
        return await self._post_once(incident, SUMMARY, channel=channel, look_first=look_first, text=text,
                                     blocks=blocks)

    async def pin(self, channel: str, ts: str) -> None:
        await quietly("pin", self.deps.slack.pins_add(channel=channel, timestamp=ts))

    async def invite(self, channel: str, users: list[str]) -> None:
        extra: set[str] = set()
        for principal in self.deps.config.incidents.invite:
            # A failing group lookup (missing scope, Slack down) must not keep reporter and commander out.
            extra |= await quietly("invite.lookup", self.deps.directory.members(principal)) or set()
        everyone = sorted(set(users) | extra)
        await quietly("invite", self.deps.slack.conversations_invite(channel=channel, users=",".join(everyone)))

    async def set_topic(self, incident: Incident) -> None:
        if incident.channel_id:
            await quietly("topic", self.deps.slack.conversations_setTopic(channel=incident.channel_id,
                                                                            topic=render.topic(incident)))

    async def show_announcement(self, incident: Incident, *, last_update: str | None) -> None:
        if not (incident.announcement_channel and incident.announcement_ts):
            return
        text, blocks = render.announcement(incident, self._severity(incident), now=self.deps.clock(),
                                           last_update=last_update)
        await quietly("announce.update", self.deps.slack.chat_update(
            channel=incident.announcement_channel, ts=incident.announcement_ts, text=text, blocks=blocks))

    async def _with_roles(self, incident: Incident, blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from commands.followups import summary_roles  # the roles line and the *Roles* button (commands/followups)

        return await summary_roles(self.deps, incident, blocks)

    async def show_summary(self, incident: Incident, *, last_update: str | None) -> None:
        if not (incident.channel_id and incident.summary_ts):
            return
        text, blocks = render.summary(incident, self._severity(incident), now=self.deps.clock(),
                                      last_update=last_update)
        blocks = await self._with_roles(incident, blocks)
        await quietly("summary.update", self.deps.slack.chat_update(
            channel=incident.channel_id, ts=incident.summary_ts, text=text, blocks=blocks))

    async def declared(self, incident: Incident, set_up: SetUp) -> None:
        from commands.runbook.jobs import after_declared

        await after_declared(self.deps, incident.id)  # its alert rule's (or service's) runbook, in its channel
        if self.respond is None:
            return
        answer = render.declared(incident, announced_in=_mention(self.deps.config.channels.incidents),
                                 announcement_error=set_up.announcement_error, summary_error=set_up.summary_error,
                                 unsaved=set_up.unsaved)
        await quietly("respond", self.respond(text=answer, response_type="ephemeral", replace_original=False))

    # -- pages ----------------------------------------------------------------------------------------
    async def _page(self, incident: Incident, text: str) -> None:
        try:
            await self.deps.slack.chat_postMessage(channel=self._home(incident), text=text)
        except Exception as exc:
            reason = exc.response.get("error", "error") if isinstance(exc, SlackApiError) else type(exc).__name__
            raise (PageDelayed if is_transient(exc) else PageNotPosted)(incident.ref, str(reason)) from exc

    async def page(self, incident: Incident, severity: Severity, escalation: Escalation) -> None:
        home = self._home(incident)
        await self._page(incident, render.escalation(incident, severity, escalation, now=self.deps.clock()))
        extra: list[Awaitable[Any]] = []
        users = [u for u in escalation.recipients.users if u.startswith(("U", "W"))]
        if incident.channel_id:  # one by one: a member already there (already_in_channel) keeps nobody out
            extra += [quietly("escalation.invite", self.deps.slack.conversations_invite(
                channel=incident.channel_id, users=user)) for user in users]
        incidents_channel = incident.announcement_channel or self.deps.config.channels.incidents
        if incidents_channel != home:  # in the announcement's thread: the channel's list stays one line each
            extra.append(quietly("escalation.note", self.deps.slack.chat_postMessage(
                channel=incidents_channel, text=render.escalation_note(incident, escalation), unfurl_links=False,
                thread_ts=incident.announcement_ts)))
        await asyncio.gather(*extra)

    async def remind(self, incident: Incident, *, quiet_for: str) -> None:
        from bot.incidents.roles import remind_whom  # status updates go to communications when someone holds it

        owner = await remind_whom(self.deps.db, config=self.deps.config, incident=incident, reminder="status_update")
        await self._page(incident, render.reminder(incident, quiet_for=quiet_for, owner=owner))

    # -- changes --------------------------------------------------------------------------------------
    async def status_update(self, incident: Incident, text: str) -> None:
        message, blocks = render.status_update(text)
        targets = {self._home(incident), incident.announcement_channel or self.deps.config.channels.incidents}
        await asyncio.gather(*(self._post(target, message, blocks, "status") for target in targets))

    async def changed(self, incident: Incident, change: Change) -> None:
        text, blocks = render.note(render.change_line(incident, change))
        topic = change.kind in ("severity", "commander")
        await asyncio.gather(self._post(self._home(incident), text, blocks, "note"),
                             *([self.set_topic(incident)] if topic else []))

    async def resolved(self, incident: Incident, postmortem: str) -> None:
        from commands.followups import postmortem_extra  # roles, follow-ups, *Add follow-up* (commands/followups)

        extra, buttons = await postmortem_extra(self.deps, incident.id)
        text, blocks = render.postmortem(postmortem + extra)
        blocks = [*blocks, *buttons]
        await asyncio.gather(self._post(self._home(incident), f"📝 Postmortem draft for {incident.ref}\n{text}",
                                        blocks, "postmortem"), self.set_topic(incident))
