"""Put the extractors' findings together as one commented opsbot.yml, and prove that opsbot loads it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from bot.init import alerts, checks, runbooks, severities, template
from bot.init.common import Context, all_commands, origin, slug, split
from bot.init.markdown import Document, parse
from bot.init.operations import ROLLBACK_WORDS, Actions, action_for, flags, rollbacks
from bot.init.yamlout import Entry, Literal, Map, Seq, data, render

_ACTION_SECTIONS = ("command", "diagnos", "operation", "maintenance", "recovery", "restart", "scal", "remediat",
                    "mitigat", "emergency", "useful", "quick fix")
MAX_REPAIRS = 50


@dataclass
class Draft:
    text: str
    found: list[str] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)
    variables: list[str] = field(default_factory=list)

    def summary(self, source: str, target: str | None) -> str:
        """What was found and left out, for stderr; `target` None: the draft went to stdout."""
        lines = [f"opsbot init: drafted {target or 'opsbot.yml (on stdout)'} from {source}"]
        lines += ["found:"] + [f"  {line}" for line in self.found or ["nothing opsbot could use"]]
        if self.left_out:
            lines += ["left out:"] + [f"  {line}" for line in self.left_out]
        if self.variables:
            lines.append(f"set before `opsbot serve`: {', '.join(self.variables)}")
        lines.append(f'next: review every "# from {source.rsplit("/", 1)[-1]}:N" comment, then '
                     f"`opsbot config check {target or 'FILE'}`")
        return "\n".join(lines)


def _services(ctx: Context) -> None:
    """Names of containers, units and deployments the runbook operates on: values for action parameters."""
    for _line, command, _block in all_commands(ctx.doc):
        words = split(command) or []
        if words[:1] == ["sudo"]:
            words = words[1:]
        for i, word in enumerate(words):
            if i > 0 and words[0] in ("docker", "systemctl", "docker-compose") and words[i - 1] in (
                    "restart", "logs", "stop", "start", "status", "inspect"):
                name = word
            elif "deployment/" in word:
                name = word.split("/", 1)[1]
            else:
                continue
            if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", name) and name not in ctx.services:
                ctx.services.append(name)


def _channels(doc: Document) -> Map:
    """The incidents and alerts channels the runbook names (`#incidents`, `#prod-alerts`), else the defaults."""
    found: dict[str, tuple[str, int]] = {}
    for block in doc.blocks:
        if block.kind not in ("paragraph", "item", "heading"):
            continue
        for line, text in block.lines or ((block.line, block.text),):
            for channel in re.findall(r"(?<![\w&])#([a-z0-9][a-z0-9_-]{1,79})\b", text):
                for role in ("incident", "alert"):
                    if role in channel and role not in found:
                        found[role] = (f"#{channel}", line)
    channels = Map()
    for role, key, default, what in (("incident", "incidents", "#incidents", "announcements and status updates"),
                                     ("alert", "alerts", "#alerts", "threshold alerts and health monitor changes")):
        if role in found:
            channels.add(key, found[role][0], f"{what}; " + origin(doc, found[role][1]))
        else:
            channels.add(key, default, f"{what} (not in the runbook: check)")
    return channels


def _environments(ctx: Context, used: set[str]) -> Map:
    envs = Map()
    for env in ["prod", *sorted((set(ctx.checks) | used) - {"prod"})]:
        spec = Map()
        if env == "prod":
            spec.add("default", True)
            spec.add("production", True, "rollbacks need 2 approvals by default")
        found = ctx.checks.get(env, [])
        if found:
            seq = Seq()
            for _name, check, note in found:
                seq.add(check, above=[note])
            spec.add("checks", seq)
        envs.add(env, spec)
    return envs


def build(text: str, source: str = "RUNBOOK.md") -> tuple[Map, list[str], list[str], list[str]]:
    """(document, header, found, left out)."""
    doc = parse(text, source)
    ctx = Context(doc)
    checks.discover(ctx)
    _services(ctx)
    found: list[str] = []
    left: list[str] = []
    root = Map()
    words = re.sub(r"\b(runbook|handbook|playbook|guide|operations|ops|on-?call|production|notes|manual)\b", " ",
                   doc.title or "", flags=re.IGNORECASE)
    name = slug(words, 40) if slug(words, 40) != "item" else slug(doc.title or "opsbot", 40)
    title = next((b for b in doc.blocks if b.kind == "heading"), None)
    root.add("name", name, origin(doc, title.line) if title else None)
    root.add("channels", _channels(doc))

    levels, f, lo = severities.extract(doc)
    found += f
    left += lo
    root.add("severities", levels or severities.placeholder(), None if levels else "not in the runbook",
             above=["most severe first; `response` is how long the team has to acknowledge"])

    check_found, check_left = checks.extract(ctx)
    found += check_found
    left += check_left

    body, note, f, lo = template.extract(ctx)
    found += f
    left += lo
    incidents = Map()
    incidents.add("channel_prefix", "inc")
    if body is not None:
        incidents.add("update_template", Literal(body), None, above=[note])
    root.add("incidents", incidents)

    flag_list, f, lo = flags(ctx)
    found += f
    left += lo
    rollback_list, f, lo = rollbacks(ctx)
    found += f
    left += lo
    rule_list, f, lo = alerts.extract(ctx)
    found += f
    left += lo

    actions = Actions()
    flag_names = {}
    for flag_name, entry, _note, active in flag_list:
        if active:
            flag_names[flag_name] = flag_name
            raw = re.search(r"'([^']*)'", str(entry.get("description")))
            if raw:
                flag_names[raw.group(1)] = flag_name
    book_list, f, lo = runbooks.extract(ctx, actions, flag_names, [s for s, _e, _n in rollback_list],
                                        [n for n, _e, active, _c in rule_list if active])
    for line, command, block in all_commands(doc):
        if block.under(*_ACTION_SECTIONS) and not block.under(*ROLLBACK_WORDS):
            argv = split(command) or []
            if argv[:1] not in (["curl"], ["psql"]) or (argv[:1] == ["psql"] and "-c" in argv):
                action_for(ctx, actions, line, command)

    used = {e for _n, entry, _c in rollback_list for e in _env_keys(entry)}
    root.add("environments", _environments(ctx, used))
    if flag_list:
        section = Map()
        for flag_name, entry, note, active in flag_list:
            section.add(flag_name, entry, above=[note], disabled=not active)
        root.add("flags", section)
    if rollback_list:
        section = Map()
        for service, entry, note in rollback_list:
            section.add(service, entry, above=[note])
        root.add("rollbacks", section, above=["argv runs without a shell unless it says sh; placeholders "
                                              "{service} {environment} {version} {previous_version} {reason}"])
    if rule_list:
        section = Map()
        if any(e.get("source") == "prometheus" for _n, e, active, _c in rule_list if active):
            prometheus = Map()
            prometheus.add("url", "${PROMETHEUS_URL}", "where the metrics are: not in the runbook")
            section.add("prometheus", prometheus)
        rules = Seq()
        for _name, entry, active, note in rule_list:
            rules.add(entry, above=[note], disabled=not active)
        section.add("rules", rules)
        root.add("alerts", section)
    if actions.entries:
        section = Map()
        for action, (entry, note) in actions.entries.items():
            section.add(action, entry, above=[note])
        root.add("actions", section, above=["/run <action> [env] [key=value …]; argv runs without a shell"])
        found += [f"action {a} (line {actions.lines[a]})" for a in actions.entries]
    left += actions.left
    found += f
    left += lo
    if book_list:
        section = Map()
        for book, entry, note in book_list:
            section.add(book, entry, above=[note])
        root.add("runbooks", section, above=["/incident runbook <name> posts one as a checklist"])
    header = [f"opsbot.yml drafted by `opsbot init` from {source.rsplit('/', 1)[-1]}.",
              f'Every value marked "# from {source.rsplit("/", 1)[-1]}:N" is a guess from that line: review it.',
              "${VAR} values are read from the environment when used; secrets are never written here.",
              "Validate with: opsbot config check opsbot.yml"]
    return root, header, found, left


def _env_keys(entry: Map) -> list[str]:
    envs = entry.get("environments")
    return [e.key for e in envs.entries if e.key] if isinstance(envs, Map) else []


_PATH = re.compile(r"^([A-Za-z_]+)((?:\.[^.\[:\s]+|\[\d+\])*)")


def _walk(root: Map, path: str) -> Entry | None:
    """The entry to comment out for an error at `path` (a check, a rule, a step, a named entry)."""
    match = _PATH.match(path)
    if not match:
        return None
    parts = [p for p in re.findall(r"\.([^.\[]+)|\[(\d+)\]", match.group(2))]
    keys: list[str | int] = [match.group(1)] + [int(i) if i else k for k, i in parts]
    depth = {"environments": 4, "alerts": 3, "runbooks": 4 if len(keys) >= 4 and keys[2] == "steps" else 2,
             "flags": 2, "rollbacks": 2, "actions": 2}.get(str(keys[0]))
    if depth is None or len(keys) < depth:
        return None
    node: Any = root
    entry: Entry | None = None
    for key in keys[:depth]:
        items = node.entries if isinstance(node, Map) else node.items if isinstance(node, Seq) else None
        if items is None:
            return None
        active = [e for e in items if not e.disabled]
        if isinstance(key, int):
            entry = active[key] if key < len(active) else None
        else:
            entry = next((e for e in active if e.key == key), None)
        if entry is None:
            return None
        node = entry.value
    return entry


def draft(text: str, source: str = "RUNBOOK.md") -> Draft:
    """The commented opsbot.yml for a Markdown runbook; every entry opsbot refuses is commented out with why."""
    root, header, found, left = build(text, source)
    return settle(root, header, found, left)


def settle(root: Map, header: list[str], found: list[str], left: list[str]) -> Draft:
    """Write `root`, read it back, load it as opsbot would; comment out each entry opsbot refuses, with why."""
    from bot.config import parse_config, referenced_env
    from bot.errors import ConfigError

    for _attempt in range(MAX_REPAIRS):
        rendered = render(root, header)
        parsed = yaml.safe_load(rendered)
        if parsed != data(root):
            raise AssertionError("the YAML writer wrote something else than it meant")
        try:
            config = parse_config(parsed, source="opsbot.yml", env={})
        except ConfigError as exc:
            problems = [p for problem in exc.problems for p in problem.removeprefix("(top level): ").split("; ")]
            repaired = False
            for problem in problems:
                entry = _walk(root, problem)
                if entry is not None and not entry.disabled:
                    entry.disabled = True
                    entry.above.append(f"opsbot refused this: {problem}")
                    left.append(f"commented out: {problem}")
                    repaired = True
            if not repaired:
                raise AssertionError(f"the draft does not load: {'; '.join(problems)}") from None
            continue
        return Draft(rendered, found, left, referenced_env(config))
    raise AssertionError("the draft does not load")
