"""Prometheus metrics served at GET /metrics.

With a worker process (`opsbot serve`), both processes write their samples to PROMETHEUS_MULTIPROC_DIR
(prometheus-client's multiprocess mode, set up by `opsbot serve` before this module is imported) and
/metrics adds them up."""

from __future__ import annotations

import functools
import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from bot import worker

SLACK_REQUESTS = Counter("opsbot_slack_requests_total", "Requests received on /slack/events", ["kind"])
BACKGROUND_FAILURES = Counter("opsbot_background_failures_total", "Background tasks that raised", ["name"])
COMMANDS = Counter("opsbot_commands_total", "Slash commands handled", ["command"])
HEALTH_CHECKS = Histogram("opsbot_health_check_seconds", "Duration of target health checks", ["kind", "outcome"])
ALERT_EVALUATIONS = Counter("opsbot_alert_evaluations_total", "Alert rule evaluations", ["outcome"])
SCHEDULER_LEADER = Gauge("opsbot_scheduler_leader", "1 when this replica runs the scheduled jobs",
                         multiprocess_mode="livemax")
# Set only by the process that serves /metrics (probed at start-up and every DB_PROBE_INTERVAL seconds, and
# on /health/ready); the worker never sets it, so its 0 never outweighs the web process's value under livemax.
DB_UP = Gauge("opsbot_database_up", "1 when opsbot's own database answered the last probe",
              multiprocess_mode="livemax")


def count_command(command: str) -> None:
    """Counted where the command is acked, not again when a worker replays the request (bot/worker.py)."""
    if not isinstance(worker.CURRENT.get(), worker.Replay):
        _child(COMMANDS, command).inc()


@functools.cache
def _child(metric: Counter, label: str) -> Counter:
    return metric.labels(label)  # the labelled child, looked up once (this runs on every ack)


def count_slack_request(kind: str) -> None:
    _child(SLACK_REQUESTS, kind).inc()


def exposition() -> tuple[bytes, str]:
    """The text for GET /metrics: this process's registry, or every live process's in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST


def process_exited(pid: int) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(pid)
