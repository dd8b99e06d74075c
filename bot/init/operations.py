"""`flags:` (kill switch UPDATEs), `rollbacks:` (rollback code blocks) and `actions:` (commands and SQL)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from bot.init.common import (
    Context,
    command_lines,
    desecret,
    env_name,
    origin,
    psql,
    shell_vars,
    slug,
    split,
    unique,
)
from bot.init.markdown import Block
from bot.init.yamlout import Literal, Map, Seq

_KILL = re.compile(r"update\s+([A-Za-z_][\w.]*)\s+set\s+(.+?)\s+where\s+([A-Za-z_]\w*)\s*=\s*'([^']*)'",
                   re.IGNORECASE | re.DOTALL)
_SHELL_SYNTAX = re.compile(r"&&|\|\||[|;<>`]|\$\(")
_PLACEHOLDER = re.compile(r"<([A-Za-z][A-Za-z0-9 _-]*)>|\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?|\{([A-Za-z_][A-Za-z0-9_]*)\}")
_VERSION_WORDS = ("version", "tag", "sha", "commit", "release", "image", "revision", "previous", "build")
_READ_ONLY = re.compile(r"^(docker (logs|ps|stats|inspect|top)|docker compose (logs|ps)|"
                        r"kubectl (get|describe|logs|top)|systemctl (status|is-active)|journalctl|"
                        r"redis-cli (info|ping|dbsize|memory|slowlog|client list)|"
                        r"az \S+( \S+)? (show|list|log)|tail|free|df|uptime|top -b)", re.IGNORECASE)
_KNOWN = ("docker", "docker-compose", "systemctl", "kubectl", "az", "redis-cli", "helm", "journalctl", "service",
          "pm2", "supervisorctl", "aws", "gcloud", "heroku", "fly", "flyctl")
_DESTRUCTIVE = re.compile(r"\b(flushdb|flushall|delete|drop|truncate|rm|prune|del)\b", re.IGNORECASE)
ROLLBACK_WORDS = ("rollback", "roll back", "rolling back", "revert")


def _braces(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


# -- flags -----------------------------------------------------------------------------------------------
def flags(ctx: Context) -> tuple[list[tuple[str, Map, str, bool]], list[str], list[str]]:
    """([(flag, entry, comment)], summary, left out) from `UPDATE feature_flags SET kill_switch = true …`."""
    statements: list[tuple[int, str]] = []
    for block in ctx.doc.blocks:
        if block.kind == "code":
            text = block.text
            for match in _KILL.finditer(text):
                line = block.lines[text[:match.start()].count("\n")][0] if block.lines else block.line
                statements.append((line, match.group(0)))
        elif block.kind in ("item", "paragraph"):
            for code in block.codes:
                if _KILL.search(code):
                    statements.append((block.line, code))
    out: list[tuple[str, Map, str, bool]] = []
    found: list[str] = []
    left: list[str] = []
    names: set[str] = set()
    for line, statement in statements:
        found_kill = _KILL.search(statement)
        assert found_kill is not None
        table, assignments, column, name = found_kill.groups()
        if not re.search(r"kill|flag|feature|toggle|switch", table + assignments, re.IGNORECASE):
            continue
        sets = dict((k.lower(), v.strip().lower()) for k, v in re.findall(r"(\w+)\s*=\s*([^,]+)", assignments))
        placeholder = not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", name) or name.lower() in (
            "feature_name", "flag_name", "your_flag", "feature", "name")
        store = Map()
        store.add("provider", "postgres")
        store.add("dsn", ctx.db(), ctx.db_note())
        store.add("table", table)
        if column != "name":
            store.add("name_column", column)
        kill = next((k for k in sets if "kill" in k), None)
        if kill and kill != "kill_switch":
            store.add("kill_switch_column", kill)
        enabled = next((k for k in sets if "enabled" in k or "active" in k), None)
        if enabled and enabled != "enabled":
            store.add("enabled_column", enabled)
        if kill is None:
            store.add("kill_switch_column", None, "the runbook switches features off through the enabled column")
        rollout = re.search(r"\b(rollout_?\w*)\s*(?:=|int|integer|smallint|numeric)", "\n".join(ctx.doc.lines),
                            re.IGNORECASE)
        if rollout is None:
            store.add("rollout_column", None, "no rollout column in the runbook")
        elif rollout.group(1) != "rollout_percentage":
            store.add("rollout_column", rollout.group(1))
        flag_name = slug(name, 40).replace("-", "_") if not placeholder else "feature"
        if flag_name in names:
            continue
        names.add(flag_name)
        entry = Map()
        entry.add("description", f"Kill switch ({statement.split(chr(10))[0][:80]})")
        entry.add("kill_switch", True)
        envs = Map()
        envs.add("prod", store)
        entry.add("environments", envs)
        if placeholder:
            left.append(f"flag at line {line}: WHERE {column} = '{name}' names no flag; written commented out")
        else:
            found.append(f"flag {flag_name} (postgres {table}) from line {line}")
        out.append((flag_name, entry, origin(ctx.doc, line, "name the flag" if placeholder else ""), not placeholder))
    return out, found, left


# -- rollbacks -------------------------------------------------------------------------------------------
def _placeholders(text: str, *, allowed: dict[str, str], env: dict[str, str]) -> str:
    """`<previous-version>`/`$VERSION` -> {version}; any other `<x>`/`$X` -> `${X}` (added to `env`)."""
    def sub(match: re.Match[str]) -> str:
        inner = match.group(1) or match.group(2) or match.group(3)
        lowered = inner.lower()
        for word, placeholder in allowed.items():
            if word in lowered:
                return "\0" + placeholder + "\1"
        var = env_name(inner)
        env[var] = "${" + var + "}"
        glued = re.match(r"[A-Za-z0-9_]", match.string[match.end():match.end() + 1])
        return "\2" + var + "\3" if glued else "$" + var

    marked = _PLACEHOLDER.sub(sub, text)
    return _braces(marked).replace("\0", "{").replace("\1", "}").replace("\2", "${{").replace("\3", "}}")


_ROLLBACK_NAMES = {**{w: "version" for w in _VERSION_WORDS}, "service": "service", "app": "service",
                   "environment": "environment", "env": "environment"}


def _service(commands: list[str], fallback: str) -> str:
    for command in commands:
        for pattern in (r"deployment[/ ]([\w.-]+)", r"helm rollback ([\w.-]+)", r"--name[= ]([\w.-]+)",
                        r"-n ([\w.-]+)", r"systemctl \w+ ([\w.-]+)",
                        r"(?:compose|docker) \S+ .*?([\w.-]+)$"):
            match = re.search(pattern, command)
            if match and not match.group(1).startswith(("$", "<", "-")):
                return slug(match.group(1), 40)
    return fallback


def rollbacks(ctx: Context) -> tuple[list[tuple[str, Map, str]], list[str], list[str]]:
    out: list[tuple[str, Map, str]] = []
    found: list[str] = []
    left: list[str] = []
    taken: dict[str, object] = {}
    fallback = ctx.services[0] if ctx.services else slug(ctx.doc.title or "app", 30)
    for block in ctx.doc.blocks:
        if not block.under(*ROLLBACK_WORDS) or block.lang in ("sql", "json", "yaml"):
            continue
        if block.kind == "code":
            commands = [desecret(text)[0] for _line, text in command_lines(block)]
        elif block.kind in ("item", "paragraph"):  # `sudo deploy --version <previous>` written inline
            commands = [desecret(code)[0] for code in block.codes if len(split(code) or []) >= 2][:1]
        else:
            continue
        if not commands or all(c.startswith(("curl", "psql")) for c in commands):
            continue
        service = _service(commands, fallback)
        env_name_ = "staging" if block.under("staging") else "prod"
        key = f"{service}/{env_name_}"
        if key in taken:
            left.append(f"rollback block at line {block.line}: a second one for {service} in {env_name_}")
            continue
        taken[key] = True
        env: dict[str, str] = {}
        runner = Map()
        runner.add("provider", "command")
        bare = _PLACEHOLDER.sub("x", commands[0])
        single = len(commands) == 1 and not _SHELL_SYNTAX.search(bare) and not shell_vars(commands[0])
        argv_words = split(commands[0]) if single else None
        note = None
        if argv_words:
            argv = Seq(flow=True)
            for word in argv_words:
                argv.add(_placeholders(word, allowed=_ROLLBACK_NAMES, env=env))
            runner.add("argv", argv)
        else:
            script = "\n".join(commands)
            argv = Seq()
            argv.add("sh")
            argv.add("-ec")
            argv.add(Literal(_placeholders(script, allowed=_ROLLBACK_NAMES, env=env) + "\n"))
            runner.add("argv", argv, "the runbook's commands as written, run by sh -e (no user text reaches it)")
            note = "several commands or shell syntax"
        if env:
            values = Map()
            for var, ref in env.items():
                values.add(var, ref)
            runner.add("env", values, "values the runbook leaves to the reader: set them")
        entry = out_entry = Map()
        envs = Map()
        envs.add(env_name_, runner)
        out_entry.add("environments", envs)
        first = next((n for n, text in block.lines if text.strip()), block.line) if block.kind == "code" else \
            block.line
        out.append((service, entry, origin(ctx.doc, first, note or "")))
        found.append(f"rollback {service} ({env_name_}) from line {first}")
    return out, found, left


# -- actions ---------------------------------------------------------------------------------------------
@dataclass
class Actions:
    entries: dict[str, tuple[Map, str]] = field(default_factory=dict)  # name -> (entry, comment)
    by_command: dict[str, str] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)  # name -> the runbook line it came from
    left: list[str] = field(default_factory=list)


def _template(text: str, ctx: Context, params: Map, env_vars: set[str]) -> str:
    """`<count>` -> `{count}` (a parameter added to `params`); `$VAR` of `env_vars` kept for sh; braces escaped."""
    def sub(match: re.Match[str]) -> str:
        if match.group(2) in env_vars:
            glued = re.match(r"[A-Za-z0-9_]", match.string[match.end():match.end() + 1])
            return "\2" + match.group(2) + "\3" if glued else "$" + match.group(2)
        inner = match.group(1) or match.group(2) or match.group(3)
        name = slug(inner, 30).replace("-", "_")
        if name in ("environment", "action", "run_id", "requested_by"):
            name = f"{name}_name"
        if params.get(name) is None:
            spec = Map()
            if re.search(r"replica|count|number|workers|^n$", name):
                spec.add("type", "integer")
                spec.add("min", 1)
                spec.add("max", 50)
                note = f"from {match.group(0)}"
            else:
                spec.add("type", "enum")
                values = Seq(flow=True)
                for value in (ctx.services or [slug(ctx.doc.title or "app", 30)])[:10]:
                    values.add(value)
                spec.add("values", values)
                note = f"from {match.group(0)}: values guessed, list yours"
            params.add(name, spec, note)
        return "\0" + name + "\1"

    marked = _braces(_PLACEHOLDER.sub(sub, text))
    return marked.replace("\0", "{").replace("\1", "}").replace("\2", "${{").replace("\3", "}}")


def _describe(name: str, words: list[str]) -> str:
    return f"{name.replace('-', ' ').capitalize()}: {' '.join(words)}"[:150]


def action_for(ctx: Context, actions: Actions, line: int, command: str) -> str | None:
    """The action for a runbook command (made on first sight), or None when it is not one opsbot runs."""
    key = " ".join(command.split())
    if key in actions.by_command:
        return actions.by_command[key]
    command, _secrets = desecret(command)  # a password in the runbook becomes $VAR, read from `env:`
    words = split(command)
    if not words:
        return None
    program = words[1] if words[0] == "sudo" and len(words) > 1 else words[0]
    if program == "psql":
        return _sql_action(ctx, actions, line, command, words)
    if program not in _KNOWN or _SHELL_SYNTAX.search(_PLACEHOLDER.sub("x", command)):
        return None
    params = Map()
    env_vars = {v for v in shell_vars(command) if v == v.upper()}
    if env_vars:  # the runbook reads settings from the environment: sh expands them from `env:`
        argv = ["sh", "-ec", _template(command, ctx, params, env_vars)]
    else:
        argv = [_template(word, ctx, params, set()) for word in words]
    plain = words[1:] if words[0] == "sudo" else words
    options = [w for w in plain[1:] if not w.startswith("-")]
    values = {plain[i + 1] for i, w in enumerate(plain[:-1]) if w.startswith("-") and "=" not in w}
    verb = next((w for w in options if w.isalpha() and w not in ("rollout", "compose", "webapp", "containerapp")),
                program)
    rest = options[options.index(verb) + 1:] if verb in options else options
    named = next((plain[i + 1] for i, w in enumerate(plain[:-1]) if w == "--name"), "")
    target = named if named and not _PLACEHOLDER.search(named) else next(
        (w for w in reversed(rest) if not _PLACEHOLDER.search(w) and w not in values and not w.isdigit()), "")
    if not target:  # `docker restart <container>`: named after what it takes
        placeholder = next((m for w in rest if (m := _PLACEHOLDER.search(w))), None)
        target = next((g for g in placeholder.groups() if g), "") if placeholder else ""
    base = slug(f"{verb} {target.split('/')[-1]}" if target and target != verb else f"{program} {verb}", 40)
    name = unique(base, actions.entries)
    runner = Map()
    runner.add("type", "command")
    runner.add("argv", Seq([], flow=True))
    argv_seq = runner.get("argv")
    assert isinstance(argv_seq, Seq)
    for word in argv:
        argv_seq.add(word)
    entry = Map()
    entry.add("description", _describe(name, words))
    if params.entries:
        entry.add("params", params)
    if env_vars:
        env_map = Map()
        for var in sorted(env_vars):
            env_map.add(var, "${" + env_name(var) + "}")
        runner.add("env", env_map, "the runbook reads these from the environment: set them")
    envs = Map()
    envs.add("prod", runner)
    entry.add("environments", envs)
    unsudo = " ".join(words[1:] if words[0] == "sudo" else words)
    if _DESTRUCTIVE.search(unsudo):
        entry.add("destructive", True, "deletes data: confirmed, with a fresh permission check")
    elif _READ_ONLY.match(unsudo):
        entry.add("read_only", True, "only shows state")
    actions.entries[name] = (entry, origin(ctx.doc, line))
    actions.by_command[key] = name
    actions.lines[name] = line
    return name


def _sql_action(ctx: Context, actions: Actions, line: int, command: str, words: list[str]) -> str | None:
    var, _hint, query = psql(words)
    if not query or re.fullmatch(r"\s*select\s+1\s*;?\s*", query, re.IGNORECASE):
        return None
    return sql_action(ctx, actions, line, query, "${" + env_name(var) + "}" if var else None, command)


def sql_action(ctx: Context, actions: Actions, line: int, query: str, dsn: str | None = None,
               key: str | None = None) -> str | None:
    text = " ".join(query.strip().rstrip(";").split())
    if not text or _KILL.search(text):
        return None
    key = " ".join((key or text).split())
    if key in actions.by_command:
        return actions.by_command[key]
    first = text.split(" ", 1)[0].lower()
    writes = first not in ("select", "show", "explain", "with", "table") or re.search(
        r"pg_terminate_backend|pg_cancel_backend", text, re.IGNORECASE)
    tables = re.findall(r"\bfrom\s+([A-Za-z_][\w.]*)", text, re.IGNORECASE)
    about = "kill queries" if re.search(r"pg_terminate_backend|pg_cancel_backend", text, re.I) else \
        tables[0] if tables else first
    name = unique(slug(about, 40), actions.entries)
    runner = Map()
    runner.add("type", "sql")
    runner.add("dsn", dsn or ctx.db(), None if dsn else ctx.db_note())
    runner.add("query", _braces(text))
    entry = Map()
    entry.add("description", text[:150])
    envs = Map()
    envs.add("prod", runner)
    entry.add("environments", envs)
    if writes:
        entry.add("destructive", True, "changes the database: runs outside the read-only transaction")
    actions.entries[name] = (entry, origin(ctx.doc, line))
    actions.by_command[key] = name
    actions.lines[name] = line
    return name


def sql_statements(block: Block) -> list[tuple[int, str]]:
    """(line, statement) of a SQL code block, statements ending with `;` (comments dropped)."""
    out: list[tuple[int, str]] = []
    start, current = 0, ""
    for line, text in block.lines:
        code = text.split("--", 1)[0].strip()
        if not code:
            continue
        if not current:
            start = line
        current += " " + code
        if code.endswith(";"):
            out.append((start, current.strip()))
            current = ""
    if current.strip():
        out.append((start, current.strip()))
    return out
