"""`runbooks:` — named procedures posted as checklists in incident channels.

```yaml
runbooks:
  db-pool:
    title: Database connection pool exhausted
    symptoms: ["p95 latency > 1000ms", "connections > 80% of pool"]
    alerts: [db-connections]          # alert rules it is for (a rule may also say `runbook: db-pool`)
    services: [api]
    steps:
      - Open the database dashboard   # text
      - {check: postgres, environment: prod, text: Check the pool}
      - {action: pg-connections, environment: prod}
      - {action: restart, environment: prod, params: {container: api}}
      - {killswitch: new-checkout}
      - {rollback: api}
```

A step is text, or a reference to a health check (by name), an action (with its parameters), a kill
switch (a flag) or a rollback (a service); referenced steps get a Run button."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from bot.config.base import Model, Name

if TYPE_CHECKING:
    from bot.config import Config

StepKind = Literal["text", "check", "action", "killswitch", "rollback"]
REFERENCES: tuple[StepKind, ...] = ("check", "action", "killswitch", "rollback")


class Step(Model):
    text: str | None = Field(default=None, max_length=1000)
    check: str | None = None
    action: str | None = None
    killswitch: str | None = None
    rollback: str | None = None
    environment: str | None = None
    # An action's parameters (strings or integers, validated like `/run`'s key=value).
    params: dict[str, str | int] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _plain_text(cls, value: Any) -> Any:
        return {"text": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_reference(self) -> Step:
        refs = [kind for kind in REFERENCES if getattr(self, kind) is not None]
        if len(refs) > 1:
            raise ValueError(f"a step references one thing, not {' and '.join(refs)}")
        if not refs and not self.text:
            raise ValueError("a step needs text or one of check, action, killswitch, rollback")
        if self.params and refs != ["action"]:
            raise ValueError("params only go with an action step")
        return self

    @property
    def kind(self) -> StepKind:
        return next((kind for kind in REFERENCES if getattr(self, kind) is not None), "text")

    @property
    def target(self) -> str | None:
        kind = self.kind
        return None if kind == "text" else str(getattr(self, kind))

    @property
    def executable(self) -> bool:
        return self.kind != "text"

    def label(self) -> str:
        """What the checklist shows for this step."""
        if self.text and self.kind == "text":
            return self.text
        where = f" in {self.environment}" if self.environment else ""
        params = " ".join(f"{k}={v}" for k, v in self.params.items())
        ref = {"check": f"Health check `{self.check}`{where}",
               "action": f"Run `{self.action}`{where}" + (f" `{params}`" if params else ""),
               "killswitch": f"Kill switch `{self.killswitch}`{where}",
               "rollback": f"Roll back `{self.rollback}`{where}"}[self.kind]
        return f"{self.text} — {ref}" if self.text else ref


class Runbook(Model):
    title: str = Field(min_length=1, max_length=150)
    symptoms: list[str] = Field(default_factory=list)
    steps: list[Step] = Field(min_length=1, max_length=20)  # two blocks a step: 50 blocks a message
    # Alert rules (`alerts.rules[].name`) and services this runbook is for.
    alerts: list[str] = Field(default_factory=list)
    services: list[str] = Field(default_factory=list)


def problems(config: Config) -> list[str]:
    """Cross-references: steps name existing checks, actions, flags, services and environments; alert rules
    name runbooks that exist (`runbook:` that is not a URL)."""
    out: list[str] = []
    envs = set(config.environments)
    checks = {c.label() for env in config.environments.values() for c in env.checks}
    rules = {rule.name for rule in config.alerts.rules}
    runbooks: dict[str, Any] = getattr(config, "runbooks", {})
    actions: dict[str, Any] = getattr(config, "actions", {})
    for name, book in runbooks.items():
        for i, step in enumerate(book.steps):
            where = f"runbooks.{name}.steps[{i}]"
            if step.environment is not None and envs and step.environment not in envs:
                out.append(f"{where}.environment: no such environment {step.environment!r}")
            if step.check is not None and step.check not in checks:
                out.append(f"{where}.check: no health check named {step.check!r}")
            if step.action is not None and step.action not in actions:
                out.append(f"{where}.action: no action named {step.action!r} (actions: "
                           f"{', '.join(actions) or 'none'})")
            if step.killswitch is not None and step.killswitch not in config.flags:
                out.append(f"{where}.killswitch: no flag named {step.killswitch!r}")
            if step.rollback is not None and step.rollback not in config.rollbacks:
                out.append(f"{where}.rollback: no rollbacks entry for service {step.rollback!r}")
        out += [f"runbooks.{name}.alerts: no alert rule named {rule!r}" for rule in book.alerts if rule not in rules]
    for rule in config.alerts.rules:
        ref = getattr(rule, "runbook", None)
        if ref is not None and "://" not in str(ref) and str(ref) not in runbooks:
            out.append(f"alerts.rules.{rule.name}.runbook: {str(ref)!r} is neither a URL nor a runbook name "
                       f"(runbooks: {', '.join(runbooks) or 'none'})")
    return out


def for_alert(config: Config, rule_name: str) -> str | None:
    """The runbook an alert rule names (`runbook: <name>`) or that lists the rule in its `alerts:`."""
    runbooks: dict[str, Runbook] = getattr(config, "runbooks", {})
    rule = next((r for r in config.alerts.rules if r.name == rule_name), None)
    ref = str(rule.runbook) if rule is not None and rule.runbook is not None else ""
    if ref in runbooks:
        return ref
    return next((name for name, book in runbooks.items() if rule_name in book.alerts), None)


RunbookName = Name
