"""`runbooks:` from troubleshooting sections (symptoms and resolution steps), with `actions:` for their commands."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from annotated_types import MaxLen

from bot.config.runbooks import Runbook
from bot.init import alerts as alert_rules
from bot.init import checks as check_rules
from bot.init.common import Context, command_lines, mask, origin, slug, split, unique
from bot.init.markdown import Block
from bot.init.operations import _KILL, ROLLBACK_WORDS, Actions, action_for, sql_action, sql_statements
from bot.init.yamlout import Map, Seq

PARENTS = ("troubleshoot", "common issue", "common problem", "known issue", "playbook", "scenario",
           "failure mode", "incident response procedure", "runbook procedures")
_SYMPTOMS = re.compile(r"^\W*(symptoms?|signs?|indicators?|what you(?:'ll| will)? see|how to recogni[sz]e|alert)"
                       r"\b[\s:*_.—–-]*", re.IGNORECASE)
_STEPS = re.compile(r"^\W*(resolution|resolve|steps?|fix(?:es)?|remediation|actions?|solutions?|mitigation|"
                    r"what to do|diagnos\w*|investigat\w*|checks?|recovery|immediate actions?|response|"
                    r"quick fix|procedure|workaround)\b[\s:*_.—–-]*", re.IGNORECASE)
_IGNORE = re.compile(r"^\W*(causes?|root causes?|why|background|notes?|prevention|escalation)\b[\s:*_.—–-]*",
                     re.IGNORECASE)
MAX_STEPS = next((m.max_length for m in Runbook.model_fields["steps"].metadata if isinstance(m, MaxLen)), 20)


@dataclass
class Book:
    title: str
    line: int
    symptoms: list[str] = field(default_factory=list)
    steps: list[Map | str] = field(default_factory=list)
    step_lines: list[int] = field(default_factory=list)
    text_steps: list[int] = field(default_factory=list)  # indexes of steps that are plain text


def _label(text: str) -> bool:
    """"Symptoms", "**Resolution:**", "Steps: restart it" — a label, not a sentence starting with "Check"."""
    for pattern in (_SYMPTOMS, _STEPS, _IGNORE):
        match = pattern.match(text)
        if match and (":" in match.group(0) or match.end() >= len(text.rstrip())):
            return True
    return False


def _sections(ctx: Context) -> list[tuple[Block, list[Block]]]:
    """(heading, its blocks) of each troubleshooting topic."""
    blocks = ctx.doc.blocks
    out: list[tuple[Block, list[Block]]] = []
    for i, block in enumerate(blocks):
        if block.kind != "heading" or block.section is None:
            continue
        title = block.text.lower()
        in_parent = any(any(w in parent.lower() for w in PARENTS) for parent in block.section.parents)
        body: list[Block] = []
        for other in blocks[i + 1:]:
            if other.kind == "heading" and other.section and other.section.level <= block.section.level:
                break
            body.append(other)
        labels = _label(block.text)
        nested = any(block.section.parents[:len(chosen.section.path)] == chosen.section.path
                     for chosen, _body in out if chosen.section)
        if labels or nested or any(w in title for w in PARENTS):
            continue
        headings = [b for b in body if b.kind == "heading"]
        leaf = all(_label(b.text) for b in headings)
        has_symptoms = leaf and block.section.level >= 2 and any(
            _SYMPTOMS.match(b.text) and _label(b.text) for b in body if b.kind in ("heading", "paragraph", "item"))
        if in_parent or has_symptoms:
            out.append((block, body))
    return out


def _step_for(ctx: Context, actions: Actions, line: int, command: str, flags: dict[str, str],
              rollbacks: list[str]) -> Map | None:
    argv = split(command) or []
    step = Map()
    if argv and argv[0] == "curl":
        curl = check_rules.parse_curl(argv)
        address = check_rules.url(curl.url) if curl else ""
        for env, found in ctx.checks.items():
            for name, check, _note in found:
                if check.get("url") == address:
                    step.add("check", name)
                    step.add("environment", env)
                    return step
        return None
    kill = _KILL.search(command)
    if kill:
        flag = flags.get(kill.group(4))
        if flag:
            step.add("killswitch", flag)
            return step
        return None
    action = action_for(ctx, actions, line, command)
    if action is None:
        return None
    step.add("action", action)
    step.add("environment", "prod")
    return step


def _add_step(book: Book, step: Map | str, line: int) -> None:
    if len(book.steps) >= MAX_STEPS:
        return
    if isinstance(step, str):
        step = mask(" ".join(step.split()))[:1000]
        if not step:
            return
        book.text_steps.append(len(book.steps))
    book.steps.append(step)
    book.step_lines.append(line)


def _attach(book: Book, step: Map, line: int, text: str) -> None:
    """A command right after a plain text step makes that step executable; otherwise it is a step of its own."""
    if book.steps and book.text_steps and book.text_steps[-1] == len(book.steps) - 1 and \
            isinstance(book.steps[-1], str):
        previous = book.steps[-1]
        step.add("text", mask(previous)[:1000])
        book.steps[-1] = step
        book.text_steps.pop()
        return
    step.add("text", mask(text)[:1000])
    _add_step(book, step, line)


def _book(ctx: Context, heading: Block, body: list[Block], actions: Actions, flags: dict[str, str],
          rollbacks: list[str]) -> Book:
    book = Book(heading.text[:150], heading.line)
    mode = "steps"
    for block in body:
        text = block.text
        kind = mode
        if block.kind in ("heading", "paragraph", "item"):
            for pattern, name in ((_SYMPTOMS, "symptoms"), (_STEPS, "steps"), (_IGNORE, "ignore")):
                match = pattern.match(text)
                if match and _label(text):
                    text = text[match.end():].strip()
                    kind = name
                    # A label alone ("Symptoms:") applies to what follows; "Symptom: X" is one symptom, and
                    # what follows it is steps again.
                    mode = name if not text or block.kind == "heading" else "steps"
                    break
            if block.kind == "heading" or not text:
                continue
        if kind == "ignore":
            continue
        if kind == "symptoms" and block.kind in ("item", "paragraph"):
            parts = [text] if block.kind == "item" else text.split(";")
            book.symptoms += [mask(part.strip()) for part in parts if part.strip()][:10]
            continue
        if block.kind in ("item", "paragraph"):
            refs = [(line, code) for line, code in ((block.line, c) for c in block.codes)]
            step = None
            for line, code in refs:
                step = _step_for(ctx, actions, line, code, flags, rollbacks)
                if step is not None:
                    break
            if step is None and rollbacks and any(w in text.lower() for w in ROLLBACK_WORDS):
                step = Map()
                step.add("rollback", rollbacks[0])
            if step is not None:
                step.add("text", mask(text)[:1000])
                _add_step(book, step, block.line)
            else:
                _add_step(book, text, block.line)
        elif block.kind == "code":
            if block.lang == "sql" or re.match(r"^\s*(select|update|delete|with)\b", text, re.IGNORECASE):
                for line, statement in sql_statements(block):
                    kill = _KILL.search(statement)
                    if kill and kill.group(4) in flags:
                        step = Map()
                        step.add("killswitch", flags[kill.group(4)])
                        _attach(book, step, line, f"Kill switch {flags[kill.group(4)]}")
                        continue
                    action = sql_action(ctx, actions, line, statement)
                    if action:
                        step = Map()
                        step.add("action", action)
                        step.add("environment", "prod")
                        _attach(book, step, line, f"Run {action}")
                continue
            for line, command in command_lines(block):
                step = _step_for(ctx, actions, line, command, flags, rollbacks)
                if step is not None:
                    _attach(book, step, line, f"`{command[:200]}`")
                else:
                    _add_step(book, f"`{command[:990]}`", line)
                    actions.left.append(f"line {line}: `{command[:60]}` is not a command opsbot runs (kept as text)")
    return book


def extract(ctx: Context, actions: Actions, flags: dict[str, str], rollbacks: list[str],
            rules: list[str]) -> tuple[list[tuple[str, Map, str]], list[str], list[str]]:
    """([(name, runbook, comment)], summary, left out)."""
    out: list[tuple[str, Map, str]] = []
    found: list[str] = []
    left: list[str] = []
    names: set[str] = set()
    for heading, body in _sections(ctx):
        book = _book(ctx, heading, body, actions, flags, rollbacks)
        if not book.steps:
            left.append(f'troubleshooting "{book.title}" (line {book.line}): no steps found')
            continue
        name = unique(slug(book.title, 40), names)
        names.add(name)
        entry = Map()
        entry.add("title", book.title)
        if book.symptoms:
            symptoms = Seq()
            for symptom in book.symptoms:
                symptoms.add(symptom[:300])
            entry.add("symptoms", symptoms)
        topic = alert_rules.topic(book.title + " " + " ".join(book.symptoms))
        linked = [rule for rule in rules if alert_rules.topic(rule.replace("-", " ")) == topic] if topic else []
        if linked:
            entry.add("alerts", Seq([], flow=True), "alert rules this runbook is for (posted with their incidents)")
            seq = entry.get("alerts")
            assert isinstance(seq, Seq)
            for rule in linked:
                seq.add(rule)
        steps = Seq()
        for step, line in zip(book.steps, book.step_lines, strict=True):
            steps.add(step, f"line {line}")
        entry.add("steps", steps)
        out.append((name, entry, origin(ctx.doc, heading.line)))
        runs = sum(1 for s in book.steps if isinstance(s, Map))
        found.append(f"runbook {name}: {len(book.steps)} steps ({runs} executable), "
                     f"{len(book.symptoms)} symptoms (line {heading.line})")
    return out, found, left
