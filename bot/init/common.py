"""What every extractor shares: where a guess came from, names, environment variables, shell lines."""

from __future__ import annotations

import re
import shlex
from collections.abc import Container
from dataclasses import dataclass, field

from bot.init.markdown import Block, Document
from bot.init.yamlout import Map

MAX_EXCERPT = 70
# Environment variables opsbot reads for itself: a runbook's $DATABASE_URL is the app's, not opsbot's.
OWN_ENV = {"DATABASE_URL", "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "OPSBOT_CONFIG",
           "SLACK_API_URL", "HOST", "PORT", "LOG_LEVEL"}
_SHELL_VAR = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")
_PROMPT = re.compile(r"^\s*(?:\$|[\w.-]+@[\w.:~/-]+[$#%])\s+(?=\S)")


@dataclass
class Found:
    """What one extractor made: named config entries and what it saw but could not use."""

    entries: dict[str, Map] = field(default_factory=dict)
    summary: list[str] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)


_SECRET_SCHEME = re.compile(r"\b(Bearer|Basic|Token)\s+(?![$<{])[A-Za-z0-9._~+/=-]{6,}", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(://[^:/@\s]*):(?![$<{])[^@\s/]+@")
_SECRET_VALUE = re.compile(r"(?i)\b(password|passwd|pwd|secret|token|api[_-]?key|apikey|access[_-]?key)"
                           r"(\s*[=:]\s*)([\"']?)(?![$<{*])[^\s\"'&,;]{3,}")
_SECRET_OPTION = re.compile(r"(?<!\S)(-a|--pass|--password|--token|--api-key|--secret|--auth)(\s+|=)(?![$<{-])(\S+)")


def mask(text: str) -> str:
    """`text` with what looks like a secret (tokens, passwords in URLs and options) replaced by `***`."""
    text = _SECRET_SCHEME.sub(lambda m: f"{m.group(1)} ***", text)
    text = _URL_PASSWORD.sub(lambda m: f"{m.group(1)}:***@", text)
    text = _SECRET_VALUE.sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(3)}***", text)
    return _SECRET_OPTION.sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)


def desecret(command: str) -> tuple[str, list[str]]:
    """A command with the secrets it spells out made `$VAR` (read from the environment), and those names."""
    program = (split(command) or ["app"])[0].rsplit("/", 1)[-1]
    prefix = env_name(program.split("-")[0])
    names: list[str] = []

    def option(match: re.Match[str]) -> str:
        kind = "TOKEN" if "token" in match.group(1) else "API_KEY" if "key" in match.group(1) else "PASSWORD"
        names.append(f"{prefix}_{kind}")
        return f"{match.group(1)}{match.group(2)}${prefix}_{kind}"

    def url(match: re.Match[str]) -> str:
        names.append(f"{prefix}_URL")
        return f"${prefix}_URL"

    command = _SECRET_OPTION.sub(option, command)
    command = re.sub(r"\b[a-z][a-z0-9+.-]*://[^:/@\s]*:(?![$<{])[^@\s/]+@\S+", url, command)
    return command, names


def origin(doc: Document, line: int, detail: str = "") -> str:
    """`from RUNBOOK.md:42 "…the line…"` (with `detail` after it): the comment on every guess."""
    text = mask(doc.raw(line))
    if len(text) > MAX_EXCERPT:
        text = text[:MAX_EXCERPT - 1] + "…"
    where = doc.source.rsplit("/", 1)[-1]
    return f'from {where}:{line} "{text}"' + (f"; {detail}" if detail else "")


def slug(text: str, limit: int = 40) -> str:
    """A config name (letters, digits, '-') from free text: "DB connection pool" -> db-connection-pool."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    name = "-".join(words)[:limit].strip("-")
    return name or "item"


def unique(name: str, taken: Container[str]) -> str:
    candidate, n = name, 2
    while candidate in taken:
        candidate = f"{name}-{n}"
        n += 1
    return candidate


def env_name(text: str) -> str:
    """An environment variable name from a shell variable or a description ("resource group" -> RESOURCE_GROUP)."""
    name = re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").upper()
    if not name or name[0].isdigit():
        name = f"VAR_{name}"
    return f"APP_{name}" if name in OWN_ENV else name


def shell_vars(text: str) -> list[str]:
    return list(dict.fromkeys(m.group(1) for m in _SHELL_VAR.finditer(text)))


def command_lines(block: Block) -> list[tuple[int, str]]:
    """The commands of a code block: prompts removed, `\\` continuations joined, comments and output dropped."""
    out: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for line, text in block.lines:
        stripped = text.strip()
        if pending is not None:
            start, sofar = pending
            joined = sofar + " " + stripped.rstrip("\\").strip()
            if stripped.endswith("\\"):
                pending = (start, joined)
            else:
                out.append((start, joined))
                pending = None
            continue
        if not stripped or stripped.startswith("#"):
            continue
        stripped = _PROMPT.sub("", stripped, count=1)
        if stripped.endswith("\\"):
            pending = (line, stripped.rstrip("\\").strip())
        else:
            out.append((line, stripped))
    if pending is not None:
        out.append(pending)
    return out


def split(command: str) -> list[str] | None:
    """argv as a shell would split it (never run by one), or None when it does not split."""
    try:
        return shlex.split(command, comments=True)
    except ValueError:
        return None


def inline_commands(block: Block) -> list[tuple[int, str]]:
    """Commands written as inline code in a paragraph or list item: (line, command)."""
    found: list[tuple[int, str]] = []
    for code in block.codes:
        line = next((n for n, text in block.lines if f"`{code}`" in text or code in text), block.line)
        found.append((line, code.strip()))
    return found


def psql(argv: list[str]) -> tuple[str | None, str, str | None]:
    """(the shell variable holding the connection string, a hint built from -h/-U/-d/-p, the -c SQL)."""
    var, sql = None, None
    parts: dict[str, str] = {}
    i = 1
    while i < len(argv):
        arg = argv[i]
        value = argv[i + 1] if i + 1 < len(argv) else ""
        if arg in ("-c", "--command"):
            sql, i = value, i + 2
            continue
        if arg in ("-h", "--host", "-U", "--username", "-d", "--dbname", "-p", "--port"):
            parts[arg.lstrip("-")[0].lower()] = value
            i += 2
            continue
        if arg.startswith("--command="):
            sql = arg.split("=", 1)[1]
        elif arg.startswith("-"):
            pass
        else:
            found = shell_vars(arg)
            if found:
                var = found[0]
            elif "://" in arg:
                parts["url"] = re.sub(r"//([^:@/]+):[^@/]*@", r"//\1@", arg)  # never copy a password
            else:
                parts.setdefault("d", arg)
        i += 1
    if "url" in parts:
        hint = parts["url"]
    elif parts:
        user = f"{parts['u']}@" if "u" in parts else ""
        port = f":{parts['p']}" if "p" in parts else ""
        hint = f"postgresql://{user}{parts.get('h', 'localhost')}{port}/{parts.get('d', '')}"
    else:
        hint = ""
    return var, hint, sql


@dataclass
class Context:
    """What the extractors learn from each other: the app's database, the base URL, names in use."""

    doc: Document
    db_var: str = "APP_DATABASE_URL"
    db_hint: str = ""
    db_line: int = 0
    db_hint_told: bool = False
    base_url: str | None = None
    checks: dict[str, list[tuple[str, Map, str]]] = field(default_factory=dict)  # env -> (name, check, note)
    services: list[str] = field(default_factory=list)

    def db(self) -> str:
        return "${" + self.db_var + "}"

    def db_note(self) -> str:
        """Where the database is, said once; after that only which variable to set."""
        if self.db_hint and not self.db_hint_told:
            self.db_hint_told = True
            return f"the application database's URL (the runbook connects to {self.db_hint}); set {self.db_var}"
        return f"the application database's URL; set {self.db_var}"

    def check_names(self) -> set[str]:
        return {name for checks in self.checks.values() for name, _c, _n in checks}


def all_commands(doc: Document) -> list[tuple[int, str, Block]]:
    """Every command in the runbook: code block lines and inline code in text and tables, in order."""
    found: list[tuple[int, str, Block]] = []
    for block in doc.blocks:
        if block.kind == "code":
            found += [(line, text, block) for line, text in command_lines(block)]
        elif block.kind in ("paragraph", "item"):
            found += [(line, text, block) for line, text in inline_commands(block)]
        elif block.kind == "table":
            found += [(row.line, code, block) for row in block.rows for cell in row.cells for code in cell.codes]
    return found
