"""The domain's exceptions. Handlers turn them into ephemeral messages in one place."""

from __future__ import annotations

from collections.abc import Iterable


class OpsbotError(Exception):
    """Base class: the message is safe to show to the user who asked."""


class ConfigError(OpsbotError):
    def __init__(self, problems: list[str], source: str = "opsbot.yml") -> None:
        self.problems = problems
        self.source = source
        super().__init__(f"{source}: " + "; ".join(problems))


class NotFound(OpsbotError):
    """An unknown name: the message lists the valid ones."""

    def __init__(self, kind: str, name: str, valid: Iterable[str], *, label: str | None = None,
                 none: str = "(none configured)") -> None:
        """`label` names the list (default "Valid <kinds>"); `none` is said when it is empty."""
        self.kind, self.name, self.valid = kind, name, list(valid)
        choices = ", ".join(f"`{v}`" for v in self.valid) or none
        plural = kind[:-1] + "ies" if kind.endswith("y") else kind + "s"
        super().__init__(f"Unknown {kind} `{name}`. {label or 'Valid ' + plural}: {choices}.")


class UnknownSeverity(NotFound):
    def __init__(self, name: str, valid: Iterable[str]) -> None:
        super().__init__("severity", name, valid)


class InvalidInput(OpsbotError):
    """Malformed command text or form input; the message says what is expected."""


class PermissionDenied(OpsbotError):
    def __init__(self, action: str, target: str, reason: str = "") -> None:
        self.action, self.target = action, target
        text = f"You are not allowed to {action} `{target}`."
        super().__init__(text + (f" {reason}" if reason else ""))


class Conflict(OpsbotError):
    """The action collides with work already in progress (e.g. a running rollback)."""


class ProviderError(OpsbotError):
    """A target system (flag store, CI, metrics source) failed; nothing was changed by opsbot."""


class DependencyDown(OpsbotError):
    """opsbot's own database or Slack is unreachable."""


class RateLimited(OpsbotError):
    pass
