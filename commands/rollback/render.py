"""Pure renderers for rollbacks: plain dicts in, Block Kit out."""

from __future__ import annotations

import json
from typing import Any

from bot.models import Rollback
from bot.rollbacks import Plan
from commands import blocks as bk
from commands.rollback.ids import Ids

Blocks = list[dict[str, Any]]
THREAD_OUTPUT = 2800


def esc(text: str) -> str:
    """Free text (the reason) as mrkdwn shows it literally: modal values arrive unescaped, so a typed
    `<!channel>` or `<https://x|y>` would otherwise ping a channel or disguise a link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def summary(row: Rollback, *, provider: str = "") -> dict[str, Any]:
    return {
        "id": row.id, "service": row.service, "environment": row.environment, "from": row.from_version,
        "to": row.to_version, "reason": row.reason, "requested_by": row.requested_by, "status": row.status,
        "approvals_required": row.approvals_required, "approved_by": list(row.approved_by or []),
        "rejected_by": row.rejected_by, "run_url": row.run_url, "verification": row.verification,
        "expires_at": row.expires_at.strftime("%H:%M UTC") if row.expires_at else None, "provider": provider,
    }


def title(s: dict[str, Any]) -> str:
    return f"Rollback #{s['id']}: {s['service']} in {s['environment']}"


def status_line(s: dict[str, Any]) -> str:
    status, verification = s["status"], s.get("verification")
    if status == "pending_approval":
        missing = s["approvals_required"] - len(s["approved_by"])
        return (f":hourglass_flowing_sand: Waiting for {missing} more approval{'s' if missing != 1 else ''}"
                + (f" (expires {s['expires_at']})" if s.get("expires_at") else ""))
    if status == "running":
        return ":arrows_counterclockwise: Rolling back" + (f" via `{s['provider']}`" if s.get("provider") else "") + "…"
    if status == "rejected":
        return f":no_entry_sign: Rejected by <@{s['rejected_by']}>"
    if status == "expired":
        return ":hourglass: Expired without enough approvals"
    if status == "failed":
        return ":x: Rollback failed"
    return {
        "verified": ":white_check_mark: Rolled back and verified",
        "unhealthy": ":warning: Rolled back but unhealthy",
        "degraded": ":warning: Rolled back; health is degraded",
        "skipped": ":white_check_mark: Rolled back (no health checks to verify)",
        "error": ":warning: Rolled back; the health checks could not run",
    }.get(verification or "", ":white_check_mark: Rolled back")


def request_message(s: dict[str, Any]) -> tuple[str, Blocks]:
    """The approval request / status message in the ops channel."""
    approvals = f"{len(s['approved_by'])}/{s['approvals_required']}"
    if s["approved_by"]:
        approvals += " — " + ", ".join(f"<@{u}>" for u in s["approved_by"])
    fields = [
        f"*Service*\n`{s['service']}`", f"*Environment*\n*{s['environment']}*",
        f"*From*\n`{s['from']}`" if s["from"] else "*From*\n_unknown_", f"*To*\n`{s['to']}`",
        f"*Requested by*\n<@{s['requested_by']}>",
        f"*Approvals*\n{approvals}" if s["approvals_required"] else "*Approvals*\nnot required",
    ]
    blocks: Blocks = [
        bk.header(title(s)),
        bk.fields_section(fields),
        bk.section(f"*Reason*\n{esc(s['reason'])}"),
        bk.section(status_line(s) + (f"\n<{s['run_url']}|View the run>" if s.get("run_url") else "")),
    ]
    if s["status"] == "pending_approval":
        blocks.append(bk.actions(
            bk.button("Approve", Ids.APPROVE, str(s["id"]), style="primary"),
            bk.button("Reject", Ids.REJECT, str(s["id"]), style="danger",
                      confirm=bk.confirm_dialog("Reject this rollback?", f"{title(s)} will not run.", "Reject")),
            block_id=Ids.ACTIONS_BLOCK,
        ))
    text = f"{title(s)} to {s['to']} — {status_line(s)}"
    return text, blocks


def request_modal(plan: Plan, *, channel: str | None, reason: str | None = None) -> dict[str, Any]:
    t = plan.target
    approvals = (f"{t.approvals} approval{'s' if t.approvals != 1 else ''} needed" if t.approvals
                 else "no approval needed")
    intro = (f"Roll back `{t.service}` in *{t.environment}* with `{t.runner.provider}` ({approvals}).\n"
             f"*Current version:* " + (f"`{plan.current}`" if plan.current else "_unknown (no deploys recorded)_"))
    metadata = json.dumps({"service": t.service, "environment": t.environment, "from": plan.current,
                           "channel": channel})
    blocks = [bk.section(intro)]
    if t.destructive:
        blocks.append(bk.section(f":warning: *This rollback is destructive* (`destructive: true`): it cannot be "
                                 f"undone. Type `{t.service}` below to confirm."))
    if plan.note:
        blocks.append(bk.context(esc(plan.note)))
    choices = list(plan.choices)
    if choices and plan.default_version and plan.default_version not in choices:
        choices.insert(0, plan.default_version)
    if choices:
        blocks += [
            bk.select_input(Ids.VERSION_BLOCK, Ids.VERSION, "Target version",
                            [bk.option(v, v) for v in choices[:100]], initial=plan.default_version, optional=True),
            bk.text_input(Ids.OTHER_VERSION_BLOCK, Ids.OTHER_VERSION, "Or another version", optional=True,
                          placeholder="e.g. v1.4.2", max_length=128),
        ]
    else:
        blocks.append(bk.text_input(Ids.VERSION_BLOCK, Ids.VERSION, "Target version", initial=plan.default_version,
                                    placeholder="e.g. v1.4.2", max_length=128))
    blocks.append(bk.text_input(Ids.REASON_BLOCK, Ids.REASON, "Reason", multiline=True, max_length=2000,
                                initial=reason, placeholder="Why roll back? (audited, shown to approvers)"))
    if t.destructive:
        blocks.append(bk.text_input(Ids.CONFIRM_BLOCK, Ids.CONFIRM, f"Type {t.service} to confirm",
                                    placeholder=t.service, max_length=128))
    return bk.modal(f"Roll back {t.service}", blocks, callback_id=Ids.REQUEST, submit="Roll back",
                    private_metadata=metadata)


def failed_deploy(d: dict[str, Any], *, can_roll_back: bool) -> tuple[str, Blocks]:
    """The ops channel's announcement of a deploy CI reported as failed, with a Roll back button."""
    what = f"`{d['service']}` `{d['version']}` to *{d['environment']}*"
    facts = [f"*Service*\n`{d['service']}`", f"*Environment*\n*{d['environment']}*",
             f"*Version*\n`{d['version']}`"]
    if d.get("commit"):
        facts.append(f"*Commit*\n`{str(d['commit'])[:12]}`")
    if d.get("deployed_by"):
        facts.append(f"*Deployed by*\n{esc(str(d['deployed_by']))}")
    blocks: Blocks = [bk.section(f":x: *Deploy failed*: {what}"), bk.fields_section(facts)]
    if can_roll_back:
        value = json.dumps({"service": d["service"], "environment": d["environment"], "version": d["version"]})
        blocks.append(bk.actions(bk.button("Roll back", Ids.FROM_DEPLOY, value, style="danger"),
                                 block_id=Ids.ACTIONS_BLOCK))
    else:
        blocks.append(bk.context(f"No rollback is configured for `{d['service']}` in *{d['environment']}*."))
    return f"Deploy failed: {d['service']} {d['version']} to {d['environment']}", blocks


def result_text(s: dict[str, Any], detail: str, health: list[str]) -> str:
    """The final message in the thread (and the incident channel)."""
    what = f"`{s['service']}` in *{s['environment']}* to `{s['to']}`"
    if s["status"] == "failed":
        return f":x: Rollback #{s['id']} of {what} failed: {detail}"
    head = {
        "verified": f":white_check_mark: Rolled back {what} and verified.",
        "unhealthy": f":warning: Rolled back {what} but it is unhealthy:",
        "degraded": f":warning: Rolled back {what}; health is degraded:",
        "skipped": f":white_check_mark: Rolled back {what}. No health checks are configured, so not verified.",
        "error": f":warning: Rolled back {what}, but the health checks could not run:",
    }.get(s.get("verification") or "", f":white_check_mark: Rolled back {what}.")
    return "\n".join([head, *health, detail])


def output_text(output: str) -> str:
    tail = output[-THREAD_OUTPUT:]
    cut = "…(earlier output cut)\n" if len(output) > THREAD_OUTPUT else ""
    return f"Output:\n```{cut}{esc(tail).replace('```', 'ˋˋˋ') or ' '}```"

