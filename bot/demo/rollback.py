"""`python -m bot.demo.rollback SERVICE ENVIRONMENT VERSION`: the demo's harmless rollback, printing the
steps a real one would take (it changes nothing)."""

from __future__ import annotations

import sys
import time


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: python -m bot.demo.rollback SERVICE ENVIRONMENT VERSION", file=sys.stderr)
        return 2
    service, environment, version = argv
    for step in (f"pulling {service}:{version}", f"draining {service} in {environment}",
                 f"deploying {service}:{version} to {environment}", "waiting for the new containers to be ready",
                 f"{service} in {environment} is now at {version} (demo: nothing was changed)"):
        print(step, flush=True)
        time.sleep(0.05)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
