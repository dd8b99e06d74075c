"""`environments:` checks: `curl` lines and endpoint tables (HTTP), `psql … -c "SELECT 1"` (PostgreSQL)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from bot.init.common import Context, all_commands, env_name, mask, origin, psql, slug, split, unique
from bot.init.markdown import Block
from bot.init.yamlout import Map

_STATUS = re.compile(r"(?:returns?|respond\w*|expect\w*|should (?:return|get|give|be|answer)|→|=>|->|gives?|"
                     r"get|status(?: code)?|with|answers?)\W{0,12}(?:an?\s+|http\s+)?([1-5]\d\d)\b", re.IGNORECASE)
_STATUS_NAME = re.compile(r"\b([1-5]\d\d)\s+(ok|unauthori[sz]ed|forbidden|not found|created|accepted|no content|"
                          r"too many requests|service unavailable)\b", re.IGNORECASE)
_PLACEHOLDER = re.compile(r"<([A-Za-z][A-Za-z0-9 _-]*)>|(?<!\$)\{\{\s*([A-Za-z][A-Za-z0-9_]*)\s*\}\}")
_SHELL_REF = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")
_HEALTHY = {"ok", "healthy", "up", "connected", "pass", "passed", "ready", "available", "green", "operational",
            "alive", "running", "enabled", "success", "reachable", "online"}
_SECRET_HEADERS = ("authorization", "x-api-key", "api-key", "cookie", "x-auth-token", "x-token", "proxy-authorization")
_NO_VALUE = {"-s", "-S", "-f", "-v", "-k", "-L", "-i", "-sS", "-fsS", "-sSf", "-fs", "-sf", "-sL", "-fsSL", "-sk",
             "--fail", "--silent", "--show-error", "--location", "--insecure", "--include", "--verbose", "-g"}
_BODY = ("-d", "--data", "--data-raw", "--data-binary", "--data-urlencode", "-F", "--form", "--json", "-T")


@dataclass
class Curl:
    url: str = ""
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    body: bool = False


def url(raw: str) -> str:
    """A URL opsbot can use: `$VAR`/`<host>` made `${VAR}`, a scheme added where the runbook left it out."""
    text = raw.strip().strip("'\"")
    text = _PLACEHOLDER.sub(lambda m: "$" + env_name(m.group(1) or m.group(2)), text)
    text = _SHELL_REF.sub(lambda m: "${" + env_name(m.group(1)) + "}", text)
    if not text.startswith(("http://", "https://", "${")):
        local = text.startswith(("localhost", "127.", "0.0.0.0", "[::1]"))
        text = ("http://" if local else "https://") + text
    return text


def secret_value(name: str, value: str) -> tuple[str, str | None]:
    """A header value with `$VAR`/`<token>` made `${VAR}`; a literal secret is never copied."""
    converted = _PLACEHOLDER.sub(lambda m: "$" + env_name(m.group(1) or m.group(2)), value)
    converted = _SHELL_REF.sub(lambda m: "${" + env_name(m.group(1)) + "}", converted)
    if converted != value or name.lower() not in _SECRET_HEADERS:
        return converted, None
    scheme = converted.split(" ", 1)[0] if " " in converted else ""
    var = "API_TOKEN"
    return (f"{scheme} ${{{var}}}" if scheme else f"${{{var}}}"), f"the runbook's {name} value is not copied: set {var}"


def parse_curl(argv: list[str]) -> Curl | None:
    found = Curl()
    i = 1
    while i < len(argv):
        arg = argv[i]
        value = argv[i + 1] if i + 1 < len(argv) else ""
        if arg in ("-X", "--request"):
            found.method, i = value.upper(), i + 2
            continue
        if arg in ("-H", "--header"):
            name, _sep, header = value.partition(":")
            if name.strip() and header.strip():
                text, note = secret_value(name.strip(), header.strip())
                found.headers[name.strip()] = text
                if note:
                    found.notes.append(note)
            i += 2
            continue
        if arg in ("-I", "--head"):
            found.method = "HEAD"
        elif arg in _BODY or arg.startswith(tuple(f"{b}=" for b in _BODY)):
            found.body = True
            i += 1 if "=" in arg else 2
            continue
        elif arg in ("-u", "--user"):
            found.notes.append("-u credentials left out (add an Authorization header with ${VAR})")
            i += 2
            continue
        elif arg.startswith("-") and arg not in _NO_VALUE and not arg.startswith("--") and len(arg) == 2:
            i += 2  # -o FILE, -w FORMAT, -m SECONDS, -A AGENT…
            continue
        elif arg.startswith("--") and arg not in _NO_VALUE:
            i += 1 if "=" in arg else 2
            continue
        elif not arg.startswith("-") and not found.url:
            found.url = arg
        i += 1
    return found if found.url else None


def status(text: str) -> int | None:
    """The status code the runbook expects: "should return 401", "→ 401 Unauthorized", or 401 on a line alone."""
    match = _STATUS_NAME.search(text) or _STATUS.search(text) or re.search(r"(?m)^\s*([1-5]\d\d)\s*$", text)
    return int(match.group(1)) if match else None


def _json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in `text`, read leniently ("..." elements and trailing commas dropped)."""
    start = text.find("{")
    while start != -1:
        depth, in_string, escape = 0, False, False
        for end in range(start, len(text)):
            char = text[end]
            if in_string:
                if escape:
                    escape = False
                elif char == "\\":
                    escape = True
                elif char == '"':
                    in_string = False
                continue
            if char == '"':
                in_string = True
            elif char == "{":
                depth += 1
            elif char == "}":
                depth -= 1
                if depth == 0:
                    candidate = text[start:end + 1]
                    candidate = re.sub(r",?\s*(\.\.\.|…)\s*", " ", candidate)
                    candidate = re.sub(r",\s*([}\]])", r"\1", candidate)
                    try:
                        value = json.loads(candidate)
                    except ValueError:
                        break
                    return value if isinstance(value, dict) else None
        start = text.find("{", start + 1)
    return None


def expect_json(body: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Dotted paths to the values worth checking (status words, booleans); the rest (versions, numbers,
    times) would fail after the next deploy, so they are named as left out."""
    kept: dict[str, Any] = {}
    dropped: list[str] = []

    def walk(value: Any, path: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{path}.{key}" if path else str(key))
        elif isinstance(value, bool) or (isinstance(value, str) and (
                value.lower() in _HEALTHY or path.rsplit(".", 1)[-1].lower() in ("status", "state"))):
            kept[path] = value
        else:
            dropped.append(path)

    walk(body, "")
    return kept, dropped


def _problem(address: str) -> str | None:
    """Why opsbot would refuse `address` as a check's URL (None: it takes it)."""
    from pydantic import ValidationError

    from bot.config import HttpCheck

    try:
        HttpCheck.model_validate({"url": address}, context={"env": {}})
    except ValidationError as exc:
        return str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
    return None


def _name(ctx: Context, env: str, address: str, hint: str = "") -> str:
    path = re.sub(r"^\w+://[^/]*", "", address).split("?", 1)[0]
    path = re.sub(r"\$\{[^}]*\}", "", path)
    name = slug(hint or path.replace("api/", " ") or "root", 30)
    if name == "item":
        name = "root"
    return unique(name, {n for n, _c, _note in ctx.checks.get(env, [])})


def environment(ctx: Context, address: str, block: Block) -> str:
    host = re.sub(r"^\w+://", "", address).split("/", 1)[0].lower()
    if any(w in host for w in ("staging", "stage.", "stg")) or block.under("staging"):
        return "staging"
    return "prod"


def _expectation_text(ctx: Context, line: int, block: Block) -> str:
    """What the runbook says the command should answer: its comment, the output shown after it in the same
    code block, and for inline commands the rest of the sentence and the next paragraph or code block."""
    parts: list[str] = []
    raw = ctx.doc.raw(line)
    if "#" in raw:
        parts.append(raw.split("#", 1)[1])
    if block.kind == "code":
        after = [text for n, text in block.lines if n > line]
        for text in after:
            stripped = text.strip()
            if re.match(r"^(\$\s*)?(curl|psql|docker|kubectl|az|systemctl|redis-cli|sudo)\b", stripped):
                break
            parts.append(stripped.lstrip("#").strip() if stripped.startswith("#") else stripped)
    else:
        parts.append(block.text)
    if not any(status(p) or "{" in p for p in parts):
        for other in ctx.doc.after(block, 2):
            if "curl" in other.text:
                break
            parts.append(other.text)
    return "\n".join(parts)


def _http_check(ctx: Context, line: int, command: str, block: Block, found: list[str], left: list[str]) -> None:
    argv = split(command)
    curl = parse_curl(argv) if argv else None
    if curl is None:
        return
    if curl.body or curl.method not in ("GET", "HEAD", "POST", "PUT", "OPTIONS"):
        left.append(f"line {line}: `{command[:60]}` sends a body or uses {curl.method}: not a health check")
        return
    if curl.method in ("POST", "PUT"):
        left.append(f"line {line}: `{command[:60]}` is a {curl.method}: not a health check")
        return
    address = url(curl.url)
    problem = _problem(address)
    if problem:
        left.append(f"line {line}: `{mask(command)[:60]}`: {problem}")
        return
    env = environment(ctx, address, block)
    if any(c.get("url") == address and (c.get("method") or "GET") == curl.method
           for _n, c, _note in ctx.checks.get(env, [])):
        return
    expected = _expectation_text(ctx, line, block)
    check = Map()
    name = _name(ctx, env, address)
    check.add("name", name)
    check.add("url", address)
    if curl.method != "GET":
        check.add("method", curl.method)
    notes = list(curl.notes)
    code = status(expected)
    body = _json_object(expected)
    if curl.headers:
        headers = Map()
        for key, value in curl.headers.items():
            headers.add(key, value)
        check.add("headers", headers, "; ".join(notes) or None)
    if code is not None and not (200 <= code < 300 and body):
        check.add("expect_status", code)
    elif body:
        kept, dropped = expect_json(body)
        if kept:
            values = Map()
            for key, value in kept.items():
                values.add(key, value)
            check.add("expect_json", values, f"left out {', '.join(dropped)}: they change" if dropped else None)
    ctx.checks.setdefault(env, []).append((name, check, origin(ctx.doc, line)))
    found.append(f"{env}: check {name} ({curl.method} {address}) from line {line}")


_ENDPOINT = ("endpoint", "url", "path", "route")
_EXPECT = ("expected", "expect", "response", "status", "returns", "result", "answer")
_AUTH = ("auth", "token", "header", "credential")


def _role(title: str) -> str | None:
    text = title.lower()
    for role, words in (("endpoint", _ENDPOINT), ("expected", _EXPECT), ("auth", _AUTH)):
        if any(w in text for w in words):
            return role
    return "method" if "method" in text or "verb" in text else None


def _table_checks(ctx: Context, block: Block, found: list[str], left: list[str]) -> None:
    roles = [_role(title) for title in block.header]
    if "endpoint" not in roles:
        return
    for row in block.rows:
        cells = {role: row.cells[i] for i, role in enumerate(roles) if role and i < len(row.cells)}
        endpoint = cells["endpoint"].codes[0] if cells["endpoint"].codes else cells["endpoint"].text
        method = cells["method"].text.strip().upper() if "method" in cells else ""
        parts = endpoint.split()
        if parts and parts[0].upper() in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"):
            method, endpoint = parts[0].upper(), " ".join(parts[1:])
        if not endpoint.startswith(("/", "http", "$", "<")):
            continue
        if method and method not in ("GET", "HEAD"):
            left.append(f"line {row.line}: {method} {endpoint}: not a health check")
            continue
        if endpoint.startswith("/"):
            base = ctx.base_url or "${API_BASE_URL}"
            address = base.rstrip("/") + endpoint
        else:
            address = url(endpoint)
        problem = _problem(address)
        if problem:
            left.append(f"line {row.line}: {endpoint}: {problem}")
            continue
        env = environment(ctx, address, block)
        expected_cell = cells.get("expected")
        expected = (" ".join(expected_cell.codes) + " " + expected_cell.text) if expected_cell else ""
        check = Map()
        name = _name(ctx, env, address)
        check.add("name", name)
        check.add("url", address, None if ctx.base_url or not endpoint.startswith("/") else
                  "set API_BASE_URL: the runbook does not say where the API is")
        if method == "HEAD":
            check.add("method", "HEAD")
        code = status(expected) or (int(expected.strip()) if re.fullmatch(r"\s*[1-5]\d\d\s*", expected) else None)
        auth = cells["auth"].text.strip().lower() if "auth" in cells else ""
        wants_auth = auth and not re.match(r"^(no|none|-|—|n/a|public|false)\b", auth)
        if wants_auth and not (code and code in (401, 403)):
            headers = Map()
            headers.add("Authorization", "Bearer ${API_TOKEN}")
            check.add("headers", headers, f'"{cells["auth"].text}": set API_TOKEN')
        body = _json_object(expected)
        if code is not None and not (200 <= code < 300 and body):
            check.add("expect_status", code)
        elif body:
            kept, dropped = expect_json(body)
            if kept:
                values = Map()
                for key, value in kept.items():
                    values.add(key, value)
                check.add("expect_json", values, f"left out {', '.join(dropped)}: they change" if dropped else None)
        ctx.checks.setdefault(env, []).append((name, check, origin(ctx.doc, row.line)))
        found.append(f"{env}: check {name} (GET {address}) from line {row.line}")


def _postgres_check(ctx: Context, line: int, command: str, found: list[str]) -> None:
    argv = split(command)
    if not argv:
        return
    var, _hint, sql = psql(argv)
    if sql is None or not re.fullmatch(r"\s*select\s+1\s*;?\s*", sql, re.IGNORECASE):
        return
    env = "prod"
    names = {n for n, _c, _note in ctx.checks.get(env, [])}
    if any(c.get("type") == "postgres" for _n, c, _note in ctx.checks.get(env, [])):
        return
    check = Map()
    name = unique("database", names)
    check.add("name", name)
    check.add("type", "postgres")
    dsn = "${" + env_name(var) + "}" if var else ctx.db()
    check.add("dsn", dsn, ctx.db_note() if not var or env_name(var) == ctx.db_var else None)
    ctx.checks.setdefault(env, []).append((name, check, origin(ctx.doc, line)))
    found.append(f"{env}: check {name} (PostgreSQL) from line {line}")


def discover(ctx: Context) -> None:
    """The app's database variable and the API's base URL, before anything refers to them."""
    for line, command, _block in all_commands(ctx.doc):
        argv = split(command)
        if argv and argv[0] == "psql":
            var, hint, _sql = psql(argv)
            if var and ctx.db_line == 0:
                ctx.db_var, ctx.db_line = env_name(var), line
            if hint and not ctx.db_hint:
                ctx.db_hint = hint
    for block in ctx.doc.blocks:
        if block.kind in ("paragraph", "item") and re.search(r"base url|api url|host:|url:", block.text, re.I):
            match = re.search(r"https?://[^\s`'\")>]+", block.text)
            if match:
                ctx.base_url = match.group(0).rstrip("/.,")
                return
    for _line, command, _block in all_commands(ctx.doc):
        argv = split(command)
        curl = parse_curl(argv) if argv and argv[0] == "curl" else None
        if curl is not None:
            match = re.match(r"^(\w+://[^/]+|\$\{[A-Z0-9_]+\})", url(curl.url))
            if match:
                ctx.base_url = match.group(1)
                return


def extract(ctx: Context) -> tuple[list[str], list[str]]:
    """Fills ctx.checks; (summary lines, left-out lines)."""
    found: list[str] = []
    left: list[str] = []
    for block in ctx.doc.blocks:
        if block.kind == "table":
            _table_checks(ctx, block, found, left)
    for line, command, block in all_commands(ctx.doc):
        argv = split(command)
        if argv and argv[0] == "curl":
            _http_check(ctx, line, command, block, found, left)
        elif argv and argv[0] == "psql":
            _postgres_check(ctx, line, command, found)
    return found, left
