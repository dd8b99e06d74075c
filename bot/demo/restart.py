"""`python -m bot.demo.restart CONTAINER`: the demo's harmless restart action (prints what `docker restart`
would do; changes nothing)."""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m bot.demo.restart CONTAINER", file=sys.stderr)
        return 2
    print(f"restarting {argv[0]}… (demo: nothing was restarted)")
    print(f"{argv[0]}: up")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
