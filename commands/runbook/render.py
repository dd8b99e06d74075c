"""Pure rendering of a runbook checklist: title, symptoms, each step with its state and buttons."""

from __future__ import annotations

from typing import Any

from bot import runbooks
from bot.config import Config
from bot.config.runbooks import Runbook
from commands import blocks as bk
from commands.runbook.ids import Ids

Blocks = list[dict[str, Any]]
MARKS = {"open": "⬜", "done": "✅", "skipped": "⏭️", "running": "🏃", "failed": "❌"}


def value(runbook_run_id: int, step: int, name: str) -> str:
    return f"{runbook_run_id}:{step}:{name}"


def parse_value(raw: object) -> tuple[int, int, str]:
    """(runbook_run_id, step, runbook) of a button; ValueError for anything opsbot did not write."""
    text = raw if isinstance(raw, str) else ""
    run_id, step, name = text.split(":", 2)
    if not (run_id.isdigit() and step.isdigit() and 0 < int(run_id) < 2**31 and int(step) < 100):
        raise ValueError(text)
    return int(run_id), int(step), name


def listing(config: Config) -> str:
    if not config.runbooks:
        return "No runbooks are configured (`runbooks:` in opsbot.yml)."
    lines = [f"• *{name}* — {book.title} ({len(book.steps)} steps)" for name, book in config.runbooks.items()]
    return "Runbooks (`/runbook <name>` in an incident channel posts one as a checklist):\n" + "\n".join(lines)


def checklist(name: str, book: Runbook, row: Any) -> tuple[str, Blocks]:
    done, total = runbooks.progress(row)
    text = f"📖 Runbook {book.title}: {done}/{total} steps done"
    blocks: Blocks = [bk.header(f"📖 {book.title}")]
    if book.symptoms:
        blocks.append(bk.section("*Symptoms*\n" + "\n".join(f"• {s}" for s in book.symptoms)))
    blocks.append(bk.context(f"`{name}` · {done}/{total} steps done or skipped"))
    states = row.steps or []
    for i, step in enumerate(book.steps):
        state = states[i] if i < len(states) else {"state": "open"}
        current = str(state.get("state") or "open")
        line = f"{MARKS.get(current, '⬜')} *{i + 1}.* {step.label()}"
        if current != "open" and state.get("by"):
            at = runbooks.when(state)
            line += f"\n_{current} by <@{state['by']}>" + (f" at {at:%H:%M} UTC" if at else "") + "_"
        if state.get("note"):
            note = str(state["note"]).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            line += f"\n{bk.cut(note, 500)}"  # a target's own words: never a mention
        blocks.append(bk.section(line, block_id=f"{Ids.STEP_BLOCK}_{i}"))
        if current in ("open", "failed"):
            v = value(row.id, i, name)
            buttons = [bk.button("Done", Ids.DONE, v, style="primary"), bk.button("Skip", Ids.SKIP, v)]
            if step.executable:
                buttons.insert(0, bk.button("Run", Ids.RUN, v))
            blocks.append(bk.actions(*buttons, block_id=f"{Ids.STEP_BLOCK}_{i}_buttons"))
    return text, bk.fit(blocks)
