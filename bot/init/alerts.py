"""`alerts.rules` from metric-threshold tables and bullet lists (`> 1000ms`, `> 80% of pool`, `P95 < 200ms`).

The runbook says what to watch, rarely where the number comes from: the source is a guess (PromQL with the
usual metric names, or a query on pg_stat_activity), marked as such; a metric nobody can guess is written
commented out."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from bot.init.common import Context, origin, slug, unique
from bot.init.markdown import Block
from bot.init.yamlout import Map

_OPS = {">=": ">=", "≥": ">=", "<=": "<=", "≤": "<=", ">": ">", "<": "<", "above": ">", "over": ">",
        "exceeds": ">", "exceed": ">", "more than": ">", "greater than": ">", "higher than": ">", "below": "<",
        "under": "<", "less than": "<", "lower than": "<"}
THRESHOLD = re.compile(r"(>=|<=|≥|≤|>|<|\babove\b|\bover\b|\bexceeds?\b|\bmore than\b|\bgreater than\b|"
                       r"\bhigher than\b|\bbelow\b|\bunder\b|\bless than\b|\blower than\b)\s*(\d+(?:\.\d+)?)\s*"
                       r"(ms|milliseconds?|seconds?|secs?|s|%|percent|minutes?|mins?|m)?(?![A-Za-z])"
                       r"(\s*of\s+(?:the\s+)?[\w ]+)?",
                       re.IGNORECASE)
_INVERT = {">": "<", "<": ">", ">=": "<", "<=": ">"}
_LATENCY_Q = "histogram_quantile({q}, sum(rate(http_request_duration_seconds_bucket[5m])) by (le)) * 1000"
_ERRORS_Q = '100 * sum(rate(http_requests_total{status=~"5.."}[5m])) / sum(rate(http_requests_total[5m]))'
_GUESSES: list[tuple[str, tuple[str, ...], str, str, str]] = [
    # topic, words, source, query, unit
    ("latency", ("latency", "response time", "p95", "p99", "p50", "duration", "slow response"), "prometheus",
     _LATENCY_Q, "ms"),
    ("errors", ("error rate", "errors", "5xx", "failure rate", "failed requests"), "prometheus", _ERRORS_Q, "%"),
    ("db_pool", ("connection", "pool"), "postgres",
     "SELECT count(*) * 100.0 / current_setting('max_connections')::int FROM pg_stat_activity", "%"),
    ("queries", ("long-running quer", "long running quer", "slow quer"), "postgres",
     "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND now() - query_start > interval '5 minutes'",
     ""),
    ("cpu", ("cpu",), "prometheus", '100 * (1 - avg(rate(node_cpu_seconds_total{mode="idle"}[5m])))', "%"),
    ("memory", ("memory", "ram", "heap"), "prometheus",
     "100 * (1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes)", "%"),
    ("disk", ("disk", "storage"), "prometheus",
     '100 * (1 - node_filesystem_avail_bytes{mountpoint="/"} / node_filesystem_size_bytes{mountpoint="/"})', "%"),
    ("traffic", ("requests per second", "throughput", "rps", "traffic"), "prometheus",
     "sum(rate(http_requests_total[5m]))", "req/s"),
]
_METRIC_COLS = ("metric", "signal", "indicator", "kpi", "measure", "what", "name", "check")
_LEVEL_COLS = {"warning": ("warn", "degraded", "yellow", "minor"),
               "critical": ("critical", "crit", "page", "red", "severe", "alert", "action"),
               "threshold": ("threshold", "trigger", "limit", "alert when", "when"),
               "target": ("target", "normal", "healthy", "baseline", "good", "slo", "expected", "goal")}
_SECTIONS = ("alert", "threshold", "metric", "monitor", "performance", "slo", "target", "baseline", "normal",
             "sla", "key indicator", "kpi", "objective", "service level")


def topic(text: str) -> str | None:
    lowered = text.lower()
    return next((name for name, words, *_rest in _GUESSES if any(w in lowered for w in words)), None)


@dataclass
class Rule:
    metric: str
    line: int
    unit: str = ""
    levels: dict[str, str] = field(default_factory=dict)  # warning/critical -> "> 1000"
    texts: list[str] = field(default_factory=list)
    wait: str | None = None  # `for:` — how long the threshold must hold


def _threshold(text: str) -> tuple[str, float, str, str, str] | None:
    """(op, value in the rule's unit, unit, the metric words before it, the text after) from "Error rate > 1%"."""
    match = THRESHOLD.search(text)
    if not match:
        return None
    op = _OPS[match.group(1).lower()]
    value = float(match.group(2))
    unit = (match.group(3) or "").lower()
    if unit in ("s", "sec", "secs", "second", "seconds"):
        value, unit = value * 1000, "ms"
    elif unit.startswith("millisecond"):
        unit = "ms"
    elif unit in ("m", "min", "mins", "minute", "minutes"):
        value, unit = value * 60000, "ms"
    elif unit == "percent":
        unit = "%"
    before = text[:match.start()]
    after = text[match.end():]
    if match.group(4):
        if re.match(r"\s*of\s+(?:the\s+)?\w+", match.group(4)):
            before += " " + match.group(4).split()[-1] if unit == "%" else ""
        else:
            after = match.group(4) + after
    return op, value, unit, before, after


def _as_alert(metric: str, op: str) -> str:
    """The alert's operator: a target ("P95 < 200ms", "availability > 99.9%") is breached the other way."""
    high_is_bad = topic(metric) in ("latency", "errors", "db_pool", "queries", "cpu", "memory", "disk")
    low_is_bad = bool(re.search(r"availability|uptime|success|apdex|hit rate", metric, re.IGNORECASE))
    if (high_is_bad and op in ("<", "<=")) or (low_is_bad and op in (">", ">=")):
        return _INVERT[op]
    return op


def _level_of(text: str, default: str) -> tuple[str, str]:
    match = re.match(r"^\W*(critical|crit|warning|warn|page)\b\W*", text, re.IGNORECASE)
    if not match:
        return default, text
    word = match.group(1).lower()
    return ("warning" if word.startswith("warn") else "critical"), text[match.end():]


def _number(value: float) -> str:
    return f"{value:g}"


def _add(rules: dict[str, Rule], metric: str, line: int, level: str, op: str, value: float, unit: str,
         text: str) -> None:
    key = slug(metric, 40)
    rule = rules.setdefault(key, Rule(metric.strip(" :-*"), line, unit))
    rule.unit = rule.unit or unit
    if level not in rule.levels:
        rule.levels[level] = f"{op} {_number(value)}"
        rule.texts.append(text)


def _from_table(block: Block, rules: dict[str, Rule]) -> None:
    roles: list[str | None] = []
    for title in block.header:
        lowered = title.lower()
        role = next((r for r, words in _LEVEL_COLS.items() if any(w in lowered for w in words)), None)
        if role is None and any(w in lowered for w in _METRIC_COLS):
            role = "metric"
        roles.append(role)
    if "metric" not in roles and roles and roles[0] is None:
        roles[0] = "metric"
    if "metric" not in roles or not set(roles) & set(_LEVEL_COLS):
        return
    for row in block.rows:
        cells = {role: row.cells[i].text for i, role in enumerate(roles) if role and i < len(row.cells)}
        metric = cells.get("metric", "")
        for role in ("warning", "critical", "threshold", "target"):
            if role not in cells:
                continue
            if role == "target" and ("warning" in cells or "critical" in cells or "threshold" in cells):
                continue
            parsed = _threshold(cells[role])
            if parsed is None:
                continue
            op, value, unit, _before, _after = parsed
            op = _as_alert(metric, op) if role == "target" else op
            level = "warning" if role in ("warning", "target") else "critical" if role == "critical" else \
                _level_of(cells[role], "warning")[0]
            of = re.search(r"of\s+(?:the\s+)?(\w+)", cells[role])
            _add(rules, metric + (f" {of.group(1)}" if of and unit == "%" else ""), row.line, level, op, value,
                 unit, cells[role])


def _from_text(block: Block, rules: dict[str, Rule]) -> None:
    if not block.under(*_SECTIONS) or block.under("troubleshoot", "symptom", "common issue", "playbook"):
        return
    default = "critical" if block.under("critical", "page") else "warning"
    for line, text in block.lines:
        plain = text.replace("`", "").replace("*", "")
        level, rest = _level_of(plain, default)
        parsed = _threshold(rest)
        if parsed is None:
            continue
        op, value, unit, before, after = parsed
        if re.search(r"\bpages?\b|\bcritical\b", after, re.IGNORECASE):
            level = "critical"
        metric = re.sub(r"\b(alert|if|when|is|are|the|should be|target|keep|goal)\b", " ", before,
                        flags=re.IGNORECASE)
        wait = re.match(r"\s*for\s+(\d+)\s*(minutes?|mins?|m|seconds?|secs?|s|hours?|h)\b", after, re.IGNORECASE)
        subject = re.match(r"\s*(?:for|on|of)\s+(?:the\s+)?([A-Za-z][\w /-]{0,30}?)\s*(?:$|[,.;(])", after)
        if subject and not wait:
            metric += " " + subject.group(1)
        if not re.search(r"[A-Za-z]", metric) or len(metric.split()) > 6:  # a sentence, not a metric
            continue
        op = _as_alert(metric, op)
        _add(rules, " ".join(metric.split()), line, level, op, value, unit, text.strip())
        if wait:
            rules[slug(" ".join(metric.split()), 40)].wait = f"{wait.group(1)}{wait.group(2)[0].lower()}"


def extract(ctx: Context) -> tuple[list[tuple[str, Map, bool, str]], list[str], list[str]]:
    """([(name, rule, active, comment)], summary, left out); inactive rules are written commented out."""
    rules: dict[str, Rule] = {}
    for block in ctx.doc.blocks:
        if block.kind == "table":
            _from_table(block, rules)
        elif block.kind in ("item", "paragraph"):
            _from_text(block, rules)
    out: list[tuple[str, Map, bool, str]] = []
    found: list[str] = []
    left: list[str] = []
    names: set[str] = set()
    for rule in rules.values():
        name = unique(slug(rule.metric, 40), names)
        names.add(name)
        kind = topic(rule.metric)
        guess = next((g for g in _GUESSES if g[0] == kind), None)
        entry = Map()
        entry.add("name", name)
        if guess is None:
            entry.add("source", "prometheus", "the runbook does not say where this number comes from")
            entry.add("query", f"<write the PromQL for {rule.metric}>")  # the rule is written commented out
        else:
            _topic, _words, source, query, unit = guess
            if kind == "latency":
                quantile = re.search(r"p(\d{2})", rule.metric.lower())
                query = query.format(q=f"0.{quantile.group(1)}" if quantile else "0.95")
            entry.add("source", source, "guessed: adjust the query to your metric names")
            entry.add("query", query)
            if source == "postgres":
                entry.add("dsn", ctx.db(), ctx.db_note())
            if rule.unit and unit and rule.unit != unit:
                left.append(f'alert {name}: the runbook\'s unit "{rule.unit}" differs from the guessed query\'s')
        if rule.unit:
            entry.add("unit", rule.unit)
        if rule.wait:
            entry.add("for", rule.wait)
        for level in ("warning", "critical"):
            if level in rule.levels:
                entry.add(level, rule.levels[level], f'"{rule.texts[list(rule.levels).index(level)]}"'[:90])
        entry.add("summary", f"{rule.metric} {' / '.join(rule.levels.values())}{rule.unit}"[:150])
        active = guess is not None
        out.append((name, entry, active, origin(ctx.doc, rule.line)))
        if active:
            found.append(f"alert {name}: {' / '.join(f'{k} {v}' for k, v in rule.levels.items())}"
                         f"{rule.unit} (line {rule.line}, source guessed)")
        else:
            left.append(f"alert {name} (line {rule.line}): no source to guess, written commented out")
    return out, found, left
