"""opsbot's own tables. Migrations in bot/migrations are additive only (no DROP)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from bot.clock import as_utc


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out, on SQLite (naive storage) and PostgreSQL alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        return as_utc(value)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return as_utc(value)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[Any]: JSON}


class AuditEntry(Base):
    """Every mutating action, allowed, denied or failed."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(255))
    outcome: Mapped[str] = mapped_column(String(16), default="ok")  # ok | denied | failed
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    __table_args__ = (Index("ix_audit_log_target_at", "target", "at"),)


class Incident(Base):
    __tablename__ = "incidents"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(255))
    severity: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(32), default="investigating")
    service: Mapped[str | None] = mapped_column(String(255), nullable=True)
    environment: Mapped[str | None] = mapped_column(String(64), nullable=True)
    impact: Mapped[str | None] = mapped_column(Text, nullable=True)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    eta: Mapped[str | None] = mapped_column(String(255), nullable=True)
    reporter_id: Mapped[str] = mapped_column(String(32))
    commander_id: Mapped[str] = mapped_column(String(32))
    source_link: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    # A stable key per declaration attempt (trigger_id, view id): retries and double submits collide here.
    dedup_key: Mapped[str | None] = mapped_column(String(255), unique=True, nullable=True)
    channel_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    channel_name: Mapped[str | None] = mapped_column(String(80), nullable=True)
    channel_error: Mapped[str | None] = mapped_column(String(255), nullable=True)
    announcement_channel: Mapped[str | None] = mapped_column(String(32), nullable=True)
    announcement_ts: Mapped[str | None] = mapped_column(String(32), nullable=True)
    summary_ts: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[datetime]
    acknowledged_at: Mapped[datetime | None] = mapped_column(nullable=True)
    acknowledged_by: Mapped[str | None] = mapped_column(String(32), nullable=True)
    last_update_at: Mapped[datetime | None] = mapped_column(nullable=True)
    escalated_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_reminder_at: Mapped[datetime | None] = mapped_column(nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(nullable=True)
    resolution: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Bumped by every change (bot.incidents.lock, migration 0003): the bump is the change's first write, so
    # changes of one incident take turns, and a newer version tells an edit of its messages it is stale.
    version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    __table_args__ = (Index("ix_incidents_status", "status"), Index("ix_incidents_channel_id", "channel_id"))

    @property
    def ref(self) -> str:
        return f"INC-{self.id}"


class IncidentEvent(Base):
    """The incident's timeline."""

    __tablename__ = "incident_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class BuiltinFlag(Base):
    """Flags kept by opsbot itself and served at GET /flags."""

    __tablename__ = "builtin_flags"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    environment: Mapped[str] = mapped_column(String(64))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    kill_switch: Mapped[bool] = mapped_column(Boolean, default=False)
    rollout_percentage: Mapped[int] = mapped_column(Integer, default=100)
    updated_at: Mapped[datetime]
    updated_by: Mapped[str] = mapped_column(String(64))
    __table_args__ = (UniqueConstraint("name", "environment", name="uq_builtin_flags_name_env"),)


class PendingAction(Base):
    """A confirmation or approval waiting for a button press (kill switch confirm, rollback approval)."""

    __tablename__ = "pending_actions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|done|cancelled|expired
    # Who moved it out of `pending`, and when: the later presses are told. `version` is bumped by every
    # state change (compare-and-set, migration 0004).
    decided_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(nullable=True)
    version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class Deploy(Base):
    __tablename__ = "deploys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    service: Mapped[str] = mapped_column(String(128))
    environment: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(255))
    commit: Mapped[str | None] = mapped_column(String(64), nullable=True)
    deployed_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    deployed_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16), default="succeeded")
    source: Mapped[str] = mapped_column(String(16), default="ci")  # ci | rollback
    # POST /deploys retries: the caller's Idempotency-Key, the hash of the request it came with, and the
    # deploy's natural key (what makes two bodies the same deploy); both unique, so a racing retry loses.
    idempotency_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    request_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    natural_key: Mapped[str | None] = mapped_column(String(64), nullable=True)
    __table_args__ = (Index("ix_deploys_service_env_at", "service", "environment", "deployed_at"),
                      Index("uq_deploys_idempotency_key", "idempotency_key", unique=True),
                      Index("uq_deploys_natural_key", "natural_key", unique=True))


class Rollback(Base):
    __tablename__ = "rollbacks"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    service: Mapped[str] = mapped_column(String(128))
    environment: Mapped[str] = mapped_column(String(64))
    from_version: Mapped[str | None] = mapped_column(String(255), nullable=True)
    to_version: Mapped[str | None] = mapped_column(String(255), nullable=True)
    reason: Mapped[str] = mapped_column(Text)
    requested_by: Mapped[str] = mapped_column(String(64))
    # pending_approval | rejected | expired | running | succeeded | failed  (+ verified/unhealthy in `verification`)
    status: Mapped[str] = mapped_column(String(32))
    approvals_required: Mapped[int] = mapped_column(Integer, default=0)
    approved_by: Mapped[list[Any]] = mapped_column(JSON, default=list)
    rejected_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # "service/environment" while pending or running; NULL once finished. Unique: one at a time.
    active_key: Mapped[str | None] = mapped_column(String(200), unique=True, nullable=True)
    incident_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    channel: Mapped[str | None] = mapped_column(String(32), nullable=True)
    message_ts: Mapped[str | None] = mapped_column(String(32), nullable=True)
    run_url: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    output: Mapped[str | None] = mapped_column(Text, nullable=True)
    verification: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None] = mapped_column(nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # Bumped by every approval, rejection, expiry and finish: approvals are compare-and-set on it (0004).
    version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class AlertState(Base):
    """One row per rule and series (or Alertmanager fingerprint): survives restarts, dedups posts."""

    __tablename__ = "alert_states"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(255), unique=True)  # rule|series-labels or am|fingerprint
    rule: Mapped[str] = mapped_column(String(128), index=True)
    source: Mapped[str] = mapped_column(String(32))
    labels: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(String(16), default="ok")  # ok|pending|firing|resolved|error|stale
    level: Mapped[str | None] = mapped_column(String(16), nullable=True)  # warning|critical
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    pending_since: Mapped[datetime | None] = mapped_column(nullable=True)
    firing_since: Mapped[datetime | None] = mapped_column(nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_eval_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_data_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_notified_at: Mapped[datetime | None] = mapped_column(nullable=True)
    channel: Mapped[str | None] = mapped_column(String(32), nullable=True)
    message_ts: Mapped[str | None] = mapped_column(String(32), nullable=True)
    acked_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    acked_at: Mapped[datetime | None] = mapped_column(nullable=True)
    silenced_until: Mapped[datetime | None] = mapped_column(nullable=True)
    escalated_at: Mapped[datetime | None] = mapped_column(nullable=True)
    summary: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Hash of what the Slack message shows: a re-evaluation edits it only when this changes.
    digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Who silenced the alert from its message and when (0004); `version` is bumped by every ack and silence.
    silenced_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    silenced_at: Mapped[datetime | None] = mapped_column(nullable=True)
    version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class Silence(Base):
    __tablename__ = "silences"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rule: Mapped[str] = mapped_column(String(128), index=True)
    until: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]


class MonitorState(Base):
    """Last known health of a monitored environment: post only on a change of state."""

    __tablename__ = "monitor_states"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    environment: Mapped[str] = mapped_column(String(64), unique=True)
    state: Mapped[str] = mapped_column(String(16))
    failing: Mapped[list[Any]] = mapped_column(JSON, default=list)
    changed_at: Mapped[datetime]
    checked_at: Mapped[datetime]


class ProcessedRequest(Base):
    """Idempotency keys for Slack retries (event_id, view id, trigger id)."""

    __tablename__ = "processed_requests"
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    at: Mapped[datetime]
    owner: Mapped[str | None] = mapped_column(String(64))  # the job that wrote it (bot/queue.py)
    __table_args__ = (Index("ix_processed_requests_at", "at"),)  # pruned by age (bot/housekeeping.py)


class RateLimitBucket(Base):
    """The shared per-user rate limit: the times of the last allowed attempts of one user and action."""

    __tablename__ = "rate_limits"
    user: Mapped[str] = mapped_column(String(64), primary_key=True)
    action: Mapped[str] = mapped_column(String(64), primary_key=True)
    hits: Mapped[list[Any]] = mapped_column(JSON, default=list)  # ISO times, oldest first, at most `limit`
    updated_at: Mapped[datetime]  # the newest hit: a bucket older than the window is empty (pruned)
    __table_args__ = (Index("ix_rate_limits_updated_at", "updated_at"),)


# -- on-call and paging (issue 16) ------------------------------------------------------------------------

class OncallOverride(Base):
    """`/oncall override`: `user_id` is on call for `schedule` from `starts_at` until `ends_at`."""

    __tablename__ = "oncall_overrides"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    schedule: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(32))
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    cancelled_at: Mapped[datetime | None] = mapped_column(nullable=True)
    __table_args__ = (Index("ix_oncall_overrides_schedule_ends_at", "schedule", "ends_at"),)


class OncallFeed(Base):
    """The last good copy of a schedule's iCal feed: shared by replicas, kept across restarts, used while
    the feed's host is down."""

    __tablename__ = "oncall_feeds"
    schedule: Mapped[str] = mapped_column(String(64), primary_key=True)
    body: Mapped[str] = mapped_column(Text)
    etag: Mapped[str | None] = mapped_column(String(255), nullable=True)
    fetched_at: Mapped[datetime]
    error: Mapped[str | None] = mapped_column(String(255), nullable=True)  # the last refresh's failure


class UsergroupSync(Base):
    """What opsbot last set a schedule's Slack user group to (set again only on a change)."""

    __tablename__ = "usergroup_syncs"
    schedule: Mapped[str] = mapped_column(String(64), primary_key=True)
    usergroup_id: Mapped[str] = mapped_column(String(32))
    users: Mapped[list[Any]] = mapped_column(JSON, default=list)
    synced_at: Mapped[datetime]


class EscalationStep(Base):
    """One level of an escalation policy that fired for an incident or alert: the unique key makes it fire
    once across retries, restarts and replicas."""

    __tablename__ = "escalation_steps"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject: Mapped[str] = mapped_column(String(64))  # "incident:12", "alert:checkout-p95"
    policy: Mapped[str] = mapped_column(String(64))
    cycle: Mapped[int] = mapped_column(Integer)  # 0, then 1… for each repeat of the policy
    level: Mapped[int] = mapped_column(Integer)
    fired_at: Mapped[datetime]
    targets: Mapped[list[Any]] = mapped_column(JSON, default=list)
    __table_args__ = (UniqueConstraint("subject", "cycle", "level", name="uq_escalation_steps_step"),)


class Page(Base):
    """One notification to one target (a person, a PagerDuty service, an Opsgenie team, an address, a
    webhook): its delivery status, attempts and the provider's reference."""

    __tablename__ = "pages"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Unique per subject, target, action and step: a retried or redelivered page is the same row.
    key: Mapped[str] = mapped_column(String(255), unique=True)
    subject: Mapped[str] = mapped_column(String(64), index=True)  # "incident:12", "alert:…", "manual:…"
    target: Mapped[str] = mapped_column(String(255))
    provider: Mapped[str] = mapped_column(String(32))  # slack | email | pagerduty | opsgenie | webhook
    action: Mapped[str] = mapped_column(String(16), default="trigger")  # trigger | acknowledge | resolve
    dedup_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(String(512), nullable=True)
    reference: Mapped[str | None] = mapped_column(String(255), nullable=True)  # the provider's id for it
    requested_by: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None] = mapped_column(nullable=True)


class WebhookDelivery(Base):
    """Inbound provider webhooks already handled (PagerDuty's X-Webhook-Id is the same on its retries)."""

    __tablename__ = "webhook_deliveries"
    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    source: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(index=True)


# --- status page (issue 18) ---------------------------------------------------------------------------------


class ComponentState(Base):
    """A status page component's state from the moment `at` until its next row: the 90-day uptime bars."""

    __tablename__ = "component_states"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    component: Mapped[str] = mapped_column(String(128))
    # operational | degraded_performance | partial_outage | major_outage
    state: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime]
    __table_args__ = (Index("ix_component_states_component_at", "component", "at"),)


class PublicUpdate(Base):
    """Text written for the public status page, separate from the incident's internal updates."""

    __tablename__ = "public_updates"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    status: Mapped[str] = mapped_column(String(32))  # investigating | identified | monitoring | resolved
    text: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(index=True)
    author: Mapped[str] = mapped_column(String(64))  # internal: never rendered on the page
    # One per submission (view id, trigger id, command key): a retried or double submit is the same row.
    key: Mapped[str | None] = mapped_column(String(255), unique=True, nullable=True)


class StatuspageIncident(Base):
    """An opsbot incident mirrored to a hosted (Atlassian) Statuspage incident."""

    __tablename__ = "statuspage_incidents"
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), primary_key=True)
    page_id: Mapped[str] = mapped_column(String(64))
    external_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    last_update_id: Mapped[int | None] = mapped_column(Integer, nullable=True)  # the last PublicUpdate sent
    last_synced_at: Mapped[datetime | None] = mapped_column(nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # failed pushes in a row (the job's retries)
    error: Mapped[str | None] = mapped_column(String(255), nullable=True)


# -- actions and runbooks (migration 0009) ---------------------------------------------------


class ActionRun(Base):
    """One `/run` of a configured action: its validated parameters, confirmation, approvals and result."""

    __tablename__ = "action_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    action: Mapped[str] = mapped_column(String(64))
    environment: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    requested_by: Mapped[str] = mapped_column(String(64))
    # pending_confirm | pending_approval | running | succeeded | failed | cancelled | rejected
    status: Mapped[str] = mapped_column(String(32))
    read_only: Mapped[bool] = mapped_column(Boolean, default=False)
    approvals_required: Mapped[int] = mapped_column(Integer, default=0)
    approved_by: Mapped[list[Any]] = mapped_column(JSON, default=list)
    decided_by: Mapped[str | None] = mapped_column(String(64), nullable=True)  # who cancelled or rejected it
    incident_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    # A runbook checklist's step that asked for it: (runbook_runs.id, step index).
    runbook_run_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    channel: Mapped[str | None] = mapped_column(String(32), nullable=True)  # where it was asked
    message_ts: Mapped[str | None] = mapped_column(String(32), nullable=True)  # its message (thread parent)
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    output: Mapped[str | None] = mapped_column(Text, nullable=True)  # scrubbed and cut
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None] = mapped_column(nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)
    version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class RunbookRun(Base):
    """A runbook posted as a checklist; `steps` holds each step's state, who set it and when."""

    __tablename__ = "runbook_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    runbook: Mapped[str] = mapped_column(String(64))
    incident_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    channel: Mapped[str] = mapped_column(String(32))
    message_ts: Mapped[str | None] = mapped_column(String(32), nullable=True)
    started_by: Mapped[str] = mapped_column(String(64))
    # [{"state": "open|done|skipped|running|failed", "by": user, "at": iso, "run_id": n}, …]
    steps: Mapped[list[Any]] = mapped_column(JSON, default=list)
    # One checklist per incident and runbook (posted once, however often it is asked for or retried).
    key: Mapped[str | None] = mapped_column(String(255), unique=True, nullable=True)
    created_at: Mapped[datetime]
    version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


# -- heartbeats (migration 0010) ---------------------------------------------------------------


class Heartbeat(Base):
    """A scheduled job's dead man's switch: its last ping; the alert it raises is an `alert_states` row
    (key `heartbeat:<name>`, source `heartbeat`)."""

    __tablename__ = "heartbeats"
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    # When the current wait began: the last ping, or when opsbot first knew the heartbeat (never pinged).
    since: Mapped[datetime]
    last_ping_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_status: Mapped[str | None] = mapped_column(String(16), nullable=True)  # ok | fail
    last_message: Mapped[str | None] = mapped_column(Text, nullable=True)  # scrubbed and cut
    pings: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


# -- incident roles and follow-ups (migration 0011) ---------------------------------------------------


class IncidentRole(Base):
    """Who holds a role (communications, scribe…) in an incident; the commander stays `incidents.commander_id`."""

    __tablename__ = "incident_roles"
    __table_args__ = (UniqueConstraint("incident_id", "role", name="uq_incident_roles_role"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(Integer, ForeignKey("incidents.id"), index=True)
    role: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(32))
    assigned_by: Mapped[str] = mapped_column(String(64))
    assigned_at: Mapped[datetime]


class FollowUp(Base):
    """An action item of an incident; `tracker_key` (GitHub issue number, Jira key) once the tracker made it."""

    __tablename__ = "followups"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(Integer, ForeignKey("incidents.id"), index=True)
    text: Mapped[str] = mapped_column(Text)
    owner_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    due: Mapped[datetime | None] = mapped_column(nullable=True)  # end of the due day, UTC
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | done
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    done_at: Mapped[datetime | None] = mapped_column(nullable=True)
    done_by: Mapped[str | None] = mapped_column(String(64), nullable=True)  # a user, or "tracker"
    tracker: Mapped[str | None] = mapped_column(String(16), nullable=True)  # github | jira
    tracker_key: Mapped[str | None] = mapped_column(String(64), nullable=True)
    tracker_url: Mapped[str | None] = mapped_column(String(512), nullable=True)
    tracker_state: Mapped[str | None] = mapped_column(String(32), nullable=True)
    tracker_error: Mapped[str | None] = mapped_column(String(255), nullable=True)
    tracker_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_reminded_at: Mapped[datetime | None] = mapped_column(nullable=True)
