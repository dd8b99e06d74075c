"""Prometheus metrics served at GET /metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SLACK_REQUESTS = Counter("opsbot_slack_requests_total", "Requests received on /slack/events", ["kind"])
BACKGROUND_FAILURES = Counter("opsbot_background_failures_total", "Background tasks that raised", ["name"])
COMMANDS = Counter("opsbot_commands_total", "Slash commands handled", ["command"])
HEALTH_CHECKS = Histogram("opsbot_health_check_seconds", "Duration of target health checks", ["kind", "outcome"])
ALERT_EVALUATIONS = Counter("opsbot_alert_evaluations_total", "Alert rule evaluations", ["outcome"])
SCHEDULER_LEADER = Gauge("opsbot_scheduler_leader", "1 when this replica runs the scheduled jobs")
DB_UP = Gauge("opsbot_database_up", "1 when opsbot's own database answered the last readiness probe")
