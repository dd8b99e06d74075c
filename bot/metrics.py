"""Prometheus metrics served at GET /metrics.

With a worker process (`opsbot serve`), both processes write their samples to PROMETHEUS_MULTIPROC_DIR
(prometheus-client's multiprocess mode, set up by `opsbot serve` before this module is imported) and
/metrics adds them up. Nothing here imports the rest of opsbot: every module may count."""

from __future__ import annotations

import functools
import os
from typing import Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

SLACK_REQUESTS = Counter("opsbot_slack_requests_total", "Requests received on /slack/events", ["kind"])
BACKGROUND_FAILURES = Counter("opsbot_background_failures_total", "Background tasks that raised", ["name"])
COMMANDS = Counter("opsbot_commands_total", "Slash commands handled", ["command"])
HEALTH_CHECKS = Histogram("opsbot_health_check_seconds", "Duration of target health checks", ["kind", "outcome"])
READS = Counter("opsbot_reads_total", "Reads for read-only answers (bot/shared_reads.py) by what was read (health, "
                "flag, incidents) and outcome: read (made), shared (answered by a read another request started)",
                ["what", "outcome"])
ALERT_EVALUATIONS = Counter("opsbot_alert_evaluations_total", "Alert rule evaluations", ["outcome"])
SCHEDULER_LEADER = Gauge("opsbot_scheduler_leader", "1 when this replica runs the scheduled jobs",
                         multiprocess_mode="livemax")
# Set only by the process that serves /metrics (probed at start-up and every DB_PROBE_INTERVAL seconds, and
# on /health/ready); the worker never sets it, so its 0 never outweighs the web process's value under livemax.
JOBS = Counter("opsbot_jobs_total", "Job attempts by outcome: done, retried, failed (for good), duplicate "
               "(a redelivered request's job), recovered (put back after its worker stopped)", ["job", "outcome"])
JOB_SECONDS = Histogram("opsbot_job_seconds", "Duration of job attempts", ["job"],
                        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
# The queue's depth as last read (cached ~2 s) by the process that serves /metrics; "livemax" as DB_UP.
QUEUE_JOBS = Gauge("opsbot_queue_jobs", "Jobs in the queue by state: waiting, running, failed",
                   ["state"], multiprocess_mode="livemax")
QUEUE_OLDEST = Gauge("opsbot_queue_oldest_job_seconds", "Age of the oldest job waiting to run",
                     multiprocess_mode="livemax")
DB_UP = Gauge("opsbot_database_up", "1 when opsbot's own database answered the last probe",
              multiprocess_mode="livemax")


def count_command(command: str) -> None:
    _child(COMMANDS, command).inc()


def count_job(job: str, outcome: str, seconds: float) -> None:
    JOBS.labels(job, outcome).inc()
    if outcome in ("done", "retried", "failed"):
        JOB_SECONDS.labels(job).observe(seconds)


class _QueueStats(Protocol):
    waiting: int
    running: int
    failed: int
    oldest_seconds: float


def set_queue(stats: _QueueStats) -> None:
    QUEUE_JOBS.labels("waiting").set(stats.waiting)
    QUEUE_JOBS.labels("running").set(stats.running)
    QUEUE_JOBS.labels("failed").set(stats.failed)
    QUEUE_OLDEST.set(stats.oldest_seconds)


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
