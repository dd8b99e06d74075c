"""`/incident …` text → a Command (pure). Severity names come from the config; unknown ones raise
UnknownSeverity, which lists the valid names."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from bot.actions import services as known_services
from bot.config import Config
from bot.errors import InvalidInput, NotFound
from bot.incidents import STATUSES, parse_status

# With should_escape (manifest.yml) Slack sends mentions as <@U123|name>; accept a bare id too.
_MENTION = re.compile(r"^<@([UW][A-Z0-9]{1,31})(?:\|[^>]*)?>$")  # ≤ 32 characters: what commander_id holds
_USER_ID = re.compile(r"^[UW][A-Z0-9]{6,31}$")
_LEADING_REF = re.compile(r"^INC-\d{1,9}$", re.IGNORECASE)
_BROADCAST = re.compile(r"<!(channel|here|everyone)(?:\|[^>]*)?>")

VERBS = ("open", "update", "severity", "assign", "resolve", "ack", "list", "show", "timeline", "postmortem", "help")
ALIASES = {"declare": "open", "new": "open", "acknowledge": "ack", "sev": "severity", "commander": "assign",
           "ls": "list", "status": "show", "pm": "postmortem"}


@dataclass(frozen=True)
class Command:
    verb: str  # modal | one of VERBS
    ref: str | None = None
    severity: str | None = None
    status: str | None = None
    text: str = ""
    user: str | None = None
    # `open`'s key=value pairs, by Declaration field (service, environment, impact, eta, description, commander_id).
    fields: dict[str, str] = field(default_factory=dict)


# `/incident open P1 Checkout down service=checkout impact="EU card payments fail" eta=30m`: what each key sets.
FIELD_KEYS = {"service": "service", "environment": "environment", "env": "environment", "impact": "impact",
              "eta": "eta", "description": "description", "desc": "description", "commander": "commander_id"}
_KEY = re.compile(r"([A-Za-z_][A-Za-z0-9_-]*)=")
# Opening quote → the quotes that close it: Slack (and phones) turn "…" into “…” and '…' into ‘…’.
_QUOTES = {'"': '"”“', "“": '”"“', "”": '”"', "„": '“”"', "'": "'’‘", "‘": "’'‘", "’": "’'"}


def safe_text(text: str | None, *, raw: bool) -> str:
    """User text as it may be shown in mrkdwn. `raw` (modal inputs) gets &, < and > escaped as Slack requires;
    text Slack already escaped (commands, messages) keeps user and group mentions. Either way an
    @channel/@here/@everyone inside a title or update never pings a whole channel from the bot."""
    text = text or ""
    if raw:
        return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _BROADCAST.sub(lambda m: f"@\u2060{m.group(1)}", text)


def unescape(text: str | None) -> str:
    """Slack-escaped message text back to what a person typed (to pre-fill a modal input)."""
    return (text or "").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def parse_user(word: str) -> str | None:
    match = _MENTION.match(word)
    if match:
        return match.group(1)
    return word if _USER_ID.match(word) else None


def _ref_and_rest(words: list[str]) -> tuple[str | None, list[str]]:
    if words and _LEADING_REF.match(words[0]):
        return words[0].upper(), words[1:]
    return None, words


def _is_severity(config: Config, word: str) -> bool:
    try:
        config.severity(word)
    except NotFound:
        return False
    return True


def split_fields(text: str) -> tuple[list[str], list[tuple[str, str]]]:
    """Words and `key=value` pairs, in order: a value may be quoted ("…", '…', “…”, ‘…’), and a quote closes
    only before a space or the end, so `impact='EU can’t pay'` keeps its apostrophe. Pure; InvalidInput for
    an unclosed quote."""
    words: list[str] = []
    pairs: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        key = _KEY.match(text, i)
        if key is None:
            end = i
            while end < n and not text[end].isspace():
                end += 1
            words.append(text[i:end])
            i = end
            continue
        start = key.end()
        closing = _QUOTES.get(text[start]) if start < n else None
        if closing is None:
            end = start
            while end < n and not text[end].isspace():
                end += 1
            pairs.append((key.group(1), text[start:end]))
            i = end
            continue
        end = start + 1
        while end < n and not (text[end] in closing and (end + 1 == n or text[end + 1].isspace())):
            end += 1
        if end >= n:
            raise InvalidInput(f"The value of `{key.group(1)}=` has no closing quote: "
                               f"write e.g. `{key.group(1)}=\"EU card payments fail\"`.")
        pairs.append((key.group(1), text[start + 1:end]))
        i = end + 1
    return words, pairs


def _choose(kind: str, value: str, valid: list[str]) -> str:
    """`value` as the config spells it, when the config names any; NotFound lists them."""
    if not valid:
        return value
    for name in valid:
        if name.lower() == value.lower():
            return name
    raise NotFound(kind, value, valid)


def declaration_fields(pairs: list[tuple[str, str]], config: Config) -> dict[str, str]:
    """The Declaration fields `key=value` pairs set; an unknown key, environment or service lists the valid ones."""
    found: dict[str, str] = {}
    for key, raw in pairs:
        name = FIELD_KEYS.get(key.lower())
        if name is None:
            raise InvalidInput(f"Unknown field `{key}=`. Valid fields: "
                               + ", ".join(f"`{k}=`" for k in dict.fromkeys(FIELD_KEYS)
                                           if k not in ("env", "desc")) + ".")
        value = " ".join(raw.split())
        if not value:
            raise InvalidInput(f"`{key}=` needs a value, e.g. `{key}=\"…\"`.")
        if name == "commander_id":
            user = parse_user(value)
            if user is None:
                raise InvalidInput(f"`{key}=` takes a mention, e.g. `commander=@jane`.")
            value = user
        elif name == "environment":
            value = _choose("environment", value, list(config.environments))
        elif name == "service":
            value = _choose("service", value, known_services(config))
        else:
            value = safe_text(value, raw=False)
        found[name] = value
    return found


def parse(text: str | None, config: Config) -> Command:
    """Raises InvalidInput (with usage) or UnknownSeverity; never touches the network or the database."""
    words = (text or "").split()
    if not words:
        return Command("modal")
    head = words[0].lower()
    verb = ALIASES.get(head, head)
    if verb not in VERBS:
        if _is_severity(config, words[0]):  # `/incident P1 Checkout down`
            verb, words = "open", ["open", *words]
        else:
            raise InvalidInput(f"Unknown subcommand `{words[0]}`. Try `/incident help`.")
    rest = words[1:]
    if verb == "open":
        if not rest:
            return Command("modal")
        severity = config.severity(rest[0]).name  # raises UnknownSeverity listing the valid ones
        title_words, pairs = split_fields(" ".join(rest[1:]))  # spacing inside a quoted value is normalized anyway
        title = safe_text(" ".join(title_words), raw=False)
        fields = declaration_fields(pairs, config)
        if fields and not title:  # the modal has no place for them all: say what is missing instead of dropping them
            raise InvalidInput(f"Give the incident a title before or after the fields, e.g. `/incident open "
                               f"{severity} Checkout down {' '.join(f'{k}={v}' for k, v in pairs)}`.")
        return (Command("open", severity=severity, text=title, fields=fields) if title
                else Command("modal", severity=severity))
    ref, rest = _ref_and_rest(rest)
    if verb == "update":
        status = parse_status(rest[0]) if rest else None
        if status:
            rest = rest[1:]
        if status == "resolved":
            return Command("resolve", ref=ref, text=safe_text(" ".join(rest), raw=False))
        if not rest and not status:
            raise InvalidInput("Usage: `/incident update [" + "|".join(STATUSES[:-1]) + "] <text>`")
        return Command("update", ref=ref, status=status, text=safe_text(" ".join(rest), raw=False))
    if verb == "severity":
        if len(rest) != 1:
            raise InvalidInput("Usage: `/incident severity <" + "|".join(s.name for s in config.severities) + ">`")
        return Command("severity", ref=ref, severity=config.severity(rest[0]).name)
    if verb == "assign":
        user = parse_user(rest[0]) if len(rest) == 1 else None
        if user is None:
            raise InvalidInput("Usage: `/incident assign @user` (mention the new incident commander).")
        return Command("assign", ref=ref, user=user)
    if verb == "resolve":
        if not rest:
            raise InvalidInput("Usage: `/incident resolve <summary>`, e.g. `/incident resolve Rolled back api`.")
        return Command("resolve", ref=ref, text=safe_text(" ".join(rest), raw=False))
    if verb == "show" and not ref and rest:
        raise InvalidInput(f"`{rest[0]}` is not an incident id (use e.g. `INC-42`).")
    if rest and verb not in ("help", "list"):
        raise InvalidInput(f"Usage: `/incident {verb} [INC-42]`")
    return Command(verb, ref=ref)
