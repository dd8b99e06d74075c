"""`provider: github_actions` — workflow_dispatch through the GitHub REST API, then follow the run.

POST {api}/repos/{repo}/actions/workflows/{workflow}/dispatches  {"ref", "inputs"}  -> 204
GET  {api}/repos/{repo}/actions/workflows/{workflow}/runs?event=workflow_dispatch&branch={ref}
GET  {api}/repos/{repo}/actions/runs/{id}   until status == "completed" (conclusion success/failure/…)

The dispatch answers nothing about the run it started, so the runs listed before the dispatch are
remembered and the new one is the run that was not there before."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from bot.config.rollbacks import GithubActionsRunner
from bot.durations import format_duration
from bot.errors import ProviderError
from bot.providers.rollback_base import Progress, Provider, RollbackOutcome, RollbackRequest, error_message, register

# GitHub's clock and ours may differ a little; a run created this long before the dispatch still counts.
CLOCK_SKEW = timedelta(seconds=60)


@register("github_actions")
class GithubActionsProvider(Provider):
    config: GithubActionsRunner

    async def run(self, request: RollbackRequest, progress: Progress) -> RollbackOutcome:
        cfg = self.config
        token = cfg.token.reveal(self.environ, where=f"rollbacks.{request.service}.environments."
                                                     f"{request.environment}.token")
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json",
                   "X-GitHub-Api-Version": "2022-11-28"}
        base = cfg.api_url.reveal(self.environ, where=f"rollbacks.{request.service}.environments."
                                                        f"{request.environment}.api_url").rstrip("/")
        workflow_url = f"{base}/repos/{cfg.repo}/actions/workflows/{cfg.workflow}"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + cfg.timeout.total_seconds()
        interval = cfg.poll_interval.total_seconds()

        inputs = cfg.workflow_inputs(request.values())
        known = {run["id"] for run in await self._runs(workflow_url, headers)}
        dispatched_at = datetime.now(UTC)
        response = await self._call("POST", f"{workflow_url}/dispatches", headers,
                                     json={"ref": cfg.ref, "inputs": inputs})
        if response.status_code not in (200, 204):
            raise ProviderError(f"GitHub refused the workflow dispatch ({error_message(response)}).")
        await progress(f"Dispatched workflow `{cfg.workflow}` in `{cfg.repo}` on `{cfg.ref}`; waiting for its run…")

        run = await self._find_run(workflow_url, headers, known, dispatched_at, deadline, interval)
        run_url = str(run.get("html_url") or "") or None
        status = str(run.get("status"))
        await progress(f"Workflow run {_link(run)} is *{status}*.")
        problem = ""
        while status != "completed":
            if loop.time() >= deadline:
                raise ProviderError(f"The workflow run {_link(run)} did not complete within "
                                    f"{format_duration(cfg.timeout)}; it may still be running."
                                    + (f" Last error: {problem}" if problem else ""))
            await asyncio.sleep(interval)
            # The run is under way: a GitHub blip while following it is retried until the deadline,
            # never reported as a failed rollback (which would also free the service for another one).
            try:
                response = await self._call("GET", f"{base}/repos/{cfg.repo}/actions/runs/{run['id']}", headers)
            except ProviderError as exc:
                problem = str(exc)
                continue
            if response.status_code != 200:
                problem = f"Could not read the workflow run ({error_message(response)})."
                continue
            run = response.json()
            if str(run.get("status")) != status:
                status = str(run.get("status"))
                await progress(f"Workflow run {_link(run)} is *{status}*.")
        conclusion = str(run.get("conclusion") or "unknown")
        if conclusion == "success":
            return RollbackOutcome("succeeded", f"Workflow run {_link(run)} succeeded.", run_url=run_url)
        return RollbackOutcome("failed", f"Workflow run {_link(run)} finished with conclusion *{conclusion}*.",
                               run_url=run_url)

    async def _find_run(self, workflow_url: str, headers: dict[str, str], known: set[Any],
                        dispatched_at: datetime, deadline: float, interval: float) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        problem = ""
        while True:
            try:  # after the dispatch a listing error is retried until the deadline
                listed = await self._runs(workflow_url, headers)
            except ProviderError as exc:
                listed, problem = [], str(exc)
            fresh = [run for run in listed if run["id"] not in known and _created(run) >= dispatched_at - CLOCK_SKEW]
            if fresh:
                # The earliest new run is the one closest to our dispatch.
                return min(fresh, key=lambda run: (_created(run), run["id"]))
            if loop.time() >= deadline:
                raise ProviderError("GitHub accepted the dispatch but no workflow run appeared in time; it may "
                                    "still start." + (f" Last error: {problem}" if problem else ""))
            await asyncio.sleep(interval)

    async def _runs(self, workflow_url: str, headers: dict[str, str]) -> list[dict[str, Any]]:
        params = {"event": "workflow_dispatch", "branch": self.config.ref, "per_page": "30"}
        response = await self._call("GET", f"{workflow_url}/runs", headers, params=params)
        if response.status_code != 200:
            raise ProviderError(f"Could not list the workflow's runs ({error_message(response)}).")
        runs = response.json().get("workflow_runs") or []
        return [run for run in runs if isinstance(run, dict) and "id" in run]

    async def _call(self, method: str, url: str, headers: dict[str, str], **kwargs: Any) -> httpx.Response:
        assert self.http is not None, "build_runner always gives providers the shared HTTP client"
        try:
            return await self.http.request(method, url, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise ProviderError(f"The GitHub API is unreachable ({type(exc).__name__}).") from None


def _created(run: dict[str, Any]) -> datetime:
    try:
        value = datetime.fromisoformat(str(run.get("created_at")).replace("Z", "+00:00"))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _link(run: dict[str, Any]) -> str:
    label = f"#{run.get('run_number') or run.get('id')}"
    url = run.get("html_url")
    return f"<{url}|{label}>" if url else label
