"""`opsbot init --from RUNBOOK.md`: draft opsbot.yml from a Markdown runbook.

The runbook is parsed with markdown-it-py (CommonMark with tables) into blocks (bot/init/markdown.py);
each extractor reads the blocks it knows (severity tables, curl lines, thresholds, templates, kill switch
UPDATEs, rollback blocks, troubleshooting sections) and every value it guesses carries a comment naming the
runbook line. The draft is loaded with bot.config before it is written: what opsbot refuses is commented out."""

from __future__ import annotations

import sys
from pathlib import Path

from bot.init.draft import Draft, draft

__all__ = ["Draft", "draft", "run"]


def run(source: Path, *, output: Path | None, to_stdout: bool, force: bool) -> int:
    """The `opsbot init` command: 0 when the draft was written, 1 when it was not (the reason on stderr)."""
    target = output or Path("opsbot.yml")
    if not to_stdout and target.exists() and not force:
        print(f"opsbot init: {target} exists; pass --force to overwrite it, -o FILE to write elsewhere, or --print",
              file=sys.stderr)
        return 1
    try:
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"opsbot init: cannot read {source}: {getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
        return 1
    try:
        result = draft(text, source=str(source))
    except AssertionError as exc:  # a draft opsbot cannot load is a bug here, not in the runbook
        print(f"opsbot init: could not draft a config from {source}: {exc}", file=sys.stderr)
        return 2
    if to_stdout:
        sys.stdout.write(result.text)
        sys.stdout.flush()
    else:
        target.write_text(result.text, encoding="utf-8")
    print(result.summary(str(source), None if to_stdout else str(target)), file=sys.stderr)
    return 0
