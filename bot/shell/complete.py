"""Tab completion: slash commands, their verbs and flags, the config's environments, services, flags,
severities, schedules and rules, the workspace's people and channels, and the `:` shell commands.

`complete(line, vocabulary)` is pure (the words that may follow what is typed); `ShellCompleter` adapts it
to prompt_toolkit."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document

from bot.config import Config

SHELL_COMMANDS = (":help", ":user", ":channel", ":channels", ":pages", ":mail", ":pagerduty", ":reset", ":quit")
INCIDENT_VERBS = ("open", "update", "ack", "severity", "assign", "resolve", "list", "show", "timeline",
                  "postmortem", "help")
STATUSES = ("investigating", "identified", "mitigating", "monitoring")
DURATIONS = ("15m", "30m", "1h", "2h", "4h", "1d")


@dataclass
class Vocabulary:
    """The names completion offers; built from the config and the emulated workspace."""

    commands: tuple[str, ...] = ()
    severities: list[str] = field(default_factory=list)
    environments: list[str] = field(default_factory=list)
    services: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)
    schedules: list[str] = field(default_factory=list)
    smoke: list[str] = field(default_factory=list)
    page_targets: list[str] = field(default_factory=list)
    users: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    channels: list[str] = field(default_factory=list)
    incidents: list[str] = field(default_factory=list)  # INC-n, from the incident channels of the workspace

    @classmethod
    def of(cls, config: Config, *, users: Iterable[str] = (), groups: Iterable[str] = (),
           channels: Iterable[str] = ()) -> Vocabulary:
        environments = list(config.environments)
        for flag in config.flags.values():
            environments += [e for e in flag.environments if e not in environments]
        paging = config.paging
        targets = [f"oncall:{s}" for s in config.oncall]
        if paging.pagerduty is not None:
            targets += [f"pagerduty:{s}" for s in paging.pagerduty.services]
        if paging.opsgenie is not None:
            targets.append("opsgenie:")
        if paging.email is not None:
            targets.append("email:")
        targets += [f"webhook:{w}" for w in paging.webhooks]
        return cls(
            commands=("/opsbot", "/incident", "/health", "/killswitch", "/flag", "/flags", "/rollback", "/deploys",
                      "/alerts", "/silence", "/oncall", "/page"),
            severities=[s.name for s in config.severities], environments=environments,
            services=list(config.rollbacks), flags=list(config.flags), rules=[r.name for r in config.alerts.rules],
            schedules=list(config.oncall),
            smoke=sorted({suite.name for env in config.environments.values() for suite in env.smoke}),
            page_targets=targets, users=list(users), groups=list(groups), channels=list(channels),
            incidents=_incident_refs(channels))

    @property
    def mentions(self) -> list[str]:
        return [f"@{u}" for u in self.users] + [f"@{g}" for g in self.groups]


# What may come as the n-th word after a command (0 = its first argument), given the words before.
Grammar = Callable[[Vocabulary, list[str]], list[str]]


def _incident_refs(channels: Iterable[str]) -> list[str]:
    numbers = {int(m.group(1)) for c in channels if (m := re.match(r"^inc-(\d+)-", c))}
    return [f"INC-{n}" for n in sorted(numbers)]


def _incident(v: Vocabulary, words: list[str]) -> list[str]:
    if not words:
        return list(INCIDENT_VERBS)
    verb, rest = words[0], words[1:]
    if rest and re.fullmatch(r"INC-\d+", rest[0], re.IGNORECASE):  # `/incident show INC-3 …`
        rest = rest[1:]
    elif not rest and verb in ("show", "timeline", "postmortem", "ack", "resolve"):
        return v.incidents
    if verb in ("open", "severity", "sev") and not rest:
        return v.severities
    if verb == "update" and not rest:
        return list(STATUSES)
    if verb == "assign" and not rest:
        return [f"@{u}" for u in v.users]
    return []


def _health(v: Vocabulary, words: list[str]) -> list[str]:
    if not words:
        return [*v.environments, "all", "smoke"]
    if words[0] == "smoke":
        return v.smoke if len(words) == 1 else v.environments if len(words) == 2 else []
    return []


def _killswitch(v: Vocabulary, words: list[str]) -> list[str]:
    return [v.flags, ["on", "off"], v.environments][len(words)] if len(words) < 3 else []


def _flag(v: Vocabulary, words: list[str]) -> list[str]:
    if len(words) == 0:
        return v.flags
    if len(words) == 1:
        return ["enable", "disable", "rollout"]
    if words[1] == "rollout":
        return ["0", "10", "25", "50", "100"] if len(words) == 2 else v.environments if len(words) == 3 else []
    return v.environments if len(words) == 2 else []


def _rollback(v: Vocabulary, words: list[str]) -> list[str]:
    if len(words) == 0:
        return v.services
    if len(words) == 1:
        return [*v.environments, "to"]
    return ["to"] if len(words) == 2 and words[1] != "to" else []


def _oncall(v: Vocabulary, words: list[str]) -> list[str]:
    if not words:
        return [*v.schedules, "override", "overrides", "cancel", "help"]
    if words[0] == "override":
        return [v.schedules, [f"@{u}" for u in v.users], ["4h", "8h", "1d", "until"]][len(words) - 1] \
            if len(words) <= 3 else []
    if words[0] == "overrides" and len(words) == 1:
        return v.schedules
    return []


GRAMMAR: dict[str, Grammar] = {
    "/opsbot": lambda v, w: ["help", "whoami"] if not w else [],
    "/incident": _incident,
    "/health": _health,
    "/killswitch": _killswitch,
    "/flag": _flag,
    "/flags": lambda v, w: v.environments if not w else [],
    "/rollback": _rollback,
    "/deploys": lambda v, w: [v.services, v.environments][len(w)] if len(w) < 2 else [],
    "/alerts": lambda v, w: [],
    "/silence": lambda v, w: [v.rules, [*DURATIONS, "0"]][len(w)] if len(w) < 2 else [],
    "/oncall": _oncall,
    "/page": lambda v, w: [*v.page_targets, *v.mentions] if not w else [],
    ":user": lambda v, w: v.users if not w else [],
    ":channel": lambda v, w: v.channels if not w else [],
    ":pagerduty": lambda v, w: ["ack", "resolve"] if not w else [],
}


def complete(line: str, vocabulary: Vocabulary) -> list[str]:
    """The words that may replace the one being typed at the end of `line` (in the grammar's order)."""
    words = line.split()
    current = "" if not words or line[-1:].isspace() else words.pop()
    if not words:  # the command itself
        choices = [*vocabulary.commands, *SHELL_COMMANDS] if not current.startswith(":") else list(SHELL_COMMANDS)
        if current and not current.startswith((":", "/")):
            choices = []
    else:
        grammar = GRAMMAR.get(words[0].lower())
        choices = grammar(vocabulary, words[1:]) if grammar else []
        if current.startswith("@") and words[0] in ("/incident", "/oncall", "/page"):
            choices = list(dict.fromkeys([*choices, *vocabulary.mentions]))
        if current.startswith("#"):
            choices = [f"#{c}" for c in vocabulary.channels]
    folded = current.lower()
    return [c for c in dict.fromkeys(choices) if c.lower().startswith(folded) and c != current]


class ShellCompleter(Completer):
    """prompt_toolkit's face of `complete`; `vocabulary` is called on each Tab (the workspace changes)."""

    def __init__(self, vocabulary: Callable[[], Vocabulary]) -> None:
        self.vocabulary = vocabulary

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterator[Completion]:
        before = document.text_before_cursor
        current = "" if not before or before[-1:].isspace() else before.split()[-1]
        for word in complete(before, self.vocabulary()):
            yield Completion(word, start_position=-len(current))
