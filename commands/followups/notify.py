"""bot.followups.flows.FollowupNotifier over Slack: posts in the incident's channel (else where it was
announced, else the incidents channel), the role holder's invitation and the summary's refresh, and the
overdue reminders' DMs."""

from __future__ import annotations

from bot.deps import Deps
from bot.followups import flows
from bot.followups.dates import due_day
from bot.followups.trackers import tracker_for
from bot.incidents import flows as incident_flows
from bot.models import FollowUp, Incident
from commands.followups import render
from commands.incident.notify import SlackIncidents, quietly


def services(deps: Deps) -> flows.Services:
    return flows.Services(db=deps.db, config=deps.config, clock=deps.clock, require=deps.require,
                          tracker=tracker_for(deps.config.incidents.tracker, deps.http), scrub=deps.scrubber)


class SlackFollowups:
    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    async def _post(self, incident: Incident, text: str) -> None:
        where = incident.channel_id or incident.announcement_channel or self.deps.config.channels.incidents
        await quietly("followups.post", self.deps.slack.chat_postMessage(channel=where, text=text))

    async def role_given(self, incident: Incident, *, role: str, holder: str, before: str | None,
                         actor: str) -> None:
        if incident.channel_id:
            await quietly("role.invite", self.deps.slack.conversations_invite(channel=incident.channel_id,
                                                                             users=holder))
        handed = f" (handed over by <@{before}>)" if before else ""
        await self._post(incident, f"🎭 <@{holder}> is now *{role}* of {incident.ref}{handed}, set by <@{actor}>.")
        fresh, events = await incident_flows.read(self.deps.db, incident_id=incident.id)
        await SlackIncidents(self.deps).show_summary(fresh, last_update=incident_flows.last_update(events))

    async def added(self, incident: Incident, row: FollowUp) -> None:
        await self._post(incident, render.created(row, incident))

    async def done(self, incident: Incident, row: FollowUp, *, actor: str, closed_in: str | None) -> None:
        if closed_in is None:
            await self._post(incident, f"✅ Follow-up #{row.id} of {incident.ref} done by <@{actor}>: {row.text}")
        else:
            await self._post(incident, f"✅ Follow-up #{row.id} of {incident.ref} was closed in the tracker "
                                       f"(<{row.tracker_url}|{row.tracker_key}>): {row.text}")

    async def reassigned(self, incident: Incident, row: FollowUp) -> None:
        await self._post(incident, f"📌 Follow-up #{row.id} of {incident.ref} is now <@{row.owner_id}>'s: {row.text}")

    async def filed(self, incident: Incident, row: FollowUp) -> None:
        link = f"<{row.tracker_url}|{row.tracker_key}>"
        await self._post(incident, f"🔗 Follow-up #{row.id} of {incident.ref} is {link}.")

    async def not_filed(self, incident: Incident, row: FollowUp, *, tracker: str, reason: str) -> None:
        await self._post(incident, f":warning: Follow-up #{row.id} of {incident.ref} could not be filed in "
                                   f"{tracker}: {reason}. It is kept in opsbot (`/incident followups`).")

    async def remind(self, to: str, incident: Incident, row: FollowUp) -> bool:
        issue = f" ({render.link(row)})" if row.tracker_url else ""
        whose = "Your follow-up" if row.owner_id else "An unowned follow-up"
        due = due_day(row.due).isoformat() if row.due else "?"
        text = (f"⏰ {whose} #{row.id} of {incident.ref} was due {due}: {row.text}{issue}. "
                f"Mark it done with `/incident followup {incident.ref} done {row.id}` (or assign it).")
        return await quietly("followups.remind", self.deps.slack.chat_postMessage(channel=to, text=text)) is not None
