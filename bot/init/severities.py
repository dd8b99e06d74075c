"""`severities:` from a runbook's severity table, or from a list (or headings) of levels."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from bot.init.common import origin, slug
from bot.init.markdown import Block, Document
from bot.init.yamlout import Map, Seq

LEVEL = re.compile(r"^\W*(P[0-5]|SEV[- ]?[0-5]|S[0-5]|critical|high|medium|moderate|low|minor|major|urgent|"
                   r"emergency|info(?:rmational)?)\b", re.IGNORECASE)
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|seconds?|secs?|s|minutes?|mins?|m|hours?|hrs?|h|days?|d|weeks?|w)\b",
                       re.IGNORECASE)
_UNIT = {"ms": "ms", "s": "s", "m": "m", "h": "h", "d": "d", "w": "w"}
_NOBODY = re.compile(r"^(none|n/?a|-+|—|nobody|no one|ticket|jira|backlog|next standup|standup|slack only|email)$",
                     re.IGNORECASE)
_LABEL = re.compile(r"^\s*\**\s*(description|impact|definition|examples?|criteria|response(?: time)?|sla|"
                    r"ack(?:nowledge)?(?: within)?|escalat\w*(?: to)?|notify|who|page|contacts?)\s*\**\s*[:=-]\s*\**"
                    r"\s*(.+)$", re.IGNORECASE)


def column_role(title: str) -> str | None:
    text = title.lower()
    if any(w in text for w in ("escalat", "notify", "notification", "who", "page", "contact", "inform",
                               "stakeholder", "owner")):
        return "escalation"
    if any(w in text for w in ("response", "sla", "ack", "time to", "within", "resolve")):
        return "response"
    if any(w in text for w in ("level", "severity", "priority", "sev", "name", "tier", "class")):
        return "level"
    if any(w in text for w in ("description", "impact", "definition", "meaning", "criteria", "example",
                               "what", "scope", "condition", "summary")):
        return "description"
    return None


def response(text: str) -> str | None:
    """`immediate`, `15m`, `4h`… from "Immediate (< 15 min)", "< 1 hour", "Next business day"; None if unknown."""
    lowered = text.lower()
    if any(w in lowered for w in ("immediate", "asap", "right away", "instantly")):
        return "immediate"
    match = _DURATION.search(lowered)
    if match:
        unit = match.group(2).lower()
        short = "ms" if unit == "ms" else unit[0]
        return f"{match.group(1)}{_UNIT[short]}"
    if "business day" in lowered or "next day" in lowered or "same day" in lowered:
        return "24h"
    return None


def targets(text: str) -> list[str]:
    """Slack handles for "CTO + VP Engineering", "On-call engineer, @eng-leads"; guessed, to be checked."""
    found: list[str] = []
    for part in re.split(r",|\+|/|&|;|→|->|\band\b|\bthen\b", text, flags=re.IGNORECASE):
        words = part.strip().strip("*_`").strip()
        if not words or _NOBODY.match(words) or words.startswith("#"):
            continue
        handle = re.search(r"@[A-Za-z0-9][A-Za-z0-9._-]*", words)
        if handle and "@" not in words[:handle.start()] and not re.search(r"\w@", words):
            found.append(handle.group(0).lower())
            continue
        email = re.search(r"[^@\s<>()]+@[^@\s<>()]+\.[A-Za-z]{2,}", words)
        if email:
            found.append(email.group(0))
            continue
        lowered = words.lower()
        if "on-call" in lowered or "oncall" in lowered or "on call" in lowered:
            found.append("@oncall")
            continue
        cleaned = re.sub(r"\b(notify|page|the|all|slack|channel|via|escalate to|immediately|also)\b", " ",
                         lowered)
        name = slug(cleaned, 30)
        if name != "item" and re.search(r"[a-z]", name):
            found.append(f"@{name}")
    return list(dict.fromkeys(found))


@dataclass
class Level:
    name: str
    line: int
    description: str = ""
    response: str | None = None
    response_text: str = ""
    escalation: str = ""
    notes: list[str] = field(default_factory=list)


def _name_and_rest(text: str) -> tuple[str, str] | None:
    match = LEVEL.match(text)
    if not match:
        return None
    name = match.group(1)
    name = name.upper().replace(" ", "") if re.match(r"^(p|s|sev)", name, re.IGNORECASE) and any(
        c.isdigit() for c in name) else name.capitalize()
    rest = text[match.end():].strip(" *_:-—–()|.")
    return name, rest


def _from_table(block: Block) -> list[Level]:
    roles = [column_role(title) for title in block.header]
    if "level" not in roles:  # the first column that holds level names is the level
        for i in range(len(block.header)):
            if all(_name_and_rest(row.cells[i].text) for row in block.rows if i < len(row.cells)):
                roles[i] = "level"
                break
    if "level" not in roles or not ({"response", "escalation", "description"} & set(roles)):
        return []
    levels = []
    for row in block.rows:
        cells = {role: row.cells[i].text for i, role in enumerate(roles) if role and i < len(row.cells)}
        parsed = _name_and_rest(cells.get("level", ""))
        if parsed is None:
            return []
        name, rest = parsed
        description = cells.get("description", "")
        if rest and rest.lower() not in description.lower():
            description = f"{rest}: {description}" if description else rest
        level = Level(name, row.line, description=description.strip(), escalation=cells.get("escalation", ""))
        if "response" in cells:
            level.response_text = cells["response"]
            level.response = response(cells["response"])
        levels.append(level)
    return levels if len(levels) >= 2 else []


def _label(level: Level, text: str) -> bool:
    match = _LABEL.match(text)
    if not match:
        return False
    label, value = match.group(1).lower(), match.group(2).strip()
    if label.startswith(("response", "sla", "ack")):
        level.response_text, level.response = value, response(value)
    elif label.startswith(("escalat", "notify", "who", "page", "contact")):
        level.escalation = value
    else:
        level.description = value
    return True


def _inline_fields(level: Level, rest: str) -> None:
    """"Complete outage. Response: immediate. Escalate to: CTO" written on the level's own line."""
    parts = re.split(r"(?<=[.;])\s+|\s+[|·]\s+", rest)
    description = []
    for part in parts:
        if not _label(level, part.strip(" .")):
            description.append(part)
    if description and not level.description:
        level.description = " ".join(description).strip(" .;")


def _from_list(doc: Document) -> list[Level]:
    levels: list[Level] = []
    current: Level | None = None
    for block in doc.blocks:
        if not block.under("severit", "priorit", "incident level", "classification", "sev "):
            current = None
            continue
        starts = block.kind == "heading" or (block.kind == "item" and block.depth == 1)
        parsed = _name_and_rest(block.text) if starts else None
        if parsed is not None:
            current = Level(parsed[0], block.line)
            levels.append(current)
            _inline_fields(current, parsed[1])
        elif current is not None and block.kind in ("item", "paragraph"):
            _label(current, block.text)
    names = [level.name.lower() for level in levels]
    return levels if len(levels) >= 2 and len(set(names)) == len(names) else []


def extract(doc: Document) -> tuple[Seq | None, list[str], list[str]]:
    """(the severities list, summary lines, left-out lines)."""
    levels: list[Level] = []
    for block in doc.blocks:
        if block.kind == "table":
            levels = _from_table(block)
            if levels:
                break
    if not levels:
        levels = _from_list(doc)
    if not levels:
        return None, [], ["no severity table or list of levels: wrote P1-P4 as placeholders"]
    seq = Seq()
    left_out: list[str] = []
    seen: set[str] = set()
    for level in levels:
        if level.name.lower() in seen:
            left_out.append(f"severity {level.name} at line {level.line}: listed twice, the first is kept")
            continue
        seen.add(level.name.lower())
        item = Map()
        item.add("name", level.name)
        if level.description:
            item.add("description", " ".join(level.description.split())[:200])
        if level.response:
            item.add("response", level.response, f'"{level.response_text.strip()}"' if level.response_text
                     else None)
        elif level.response_text:
            left_out.append(f'severity {level.name}: response "{level.response_text}" is not a duration (24h used)')
            item.add("response", "24h", f'"{level.response_text.strip()}" is not a duration: check it')
        escalate = targets(level.escalation) if level.escalation else []
        if escalate:
            item.add("escalate_to", Seq([], flow=True), f'guessed Slack handles from "{level.escalation}": check them')
            seq_value = item.entries[-1].value
            assert isinstance(seq_value, Seq)
            for target in escalate:
                seq_value.add(target)
        seq.add(item, above=[origin(doc, level.line)])
    names = ", ".join(level.name for level in levels)
    return seq, [f"severities: {names} (line {levels[0].line})"], left_out


def placeholder() -> Seq:
    seq = Seq()
    for name, description, answer in (("P1", "Outage", "immediate"), ("P2", "Major feature broken", "1h"),
                                      ("P3", "Minor feature impacted", "4h"), ("P4", "Cosmetic", "24h")):
        item = Map()
        item.add("name", name)
        item.add("description", description)
        item.add("response", answer)
        seq.add(item)
    seq.items[0].above.append("not in the runbook: placeholders, replace with your levels")
    return seq
