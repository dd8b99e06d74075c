"""Reading lines: prompt_toolkit on a terminal (editing, history, Tab completion; Ctrl-C cancels the line,
Ctrl-D leaves), plain lines from a pipe (echoed, so a scripted run's transcript reads like a session)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Protocol, TextIO

from prompt_toolkit import PromptSession
from prompt_toolkit.completion import Completer
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.input import Input
from prompt_toolkit.output import Output

CANCELLED = ""  # what a line cancelled with Ctrl-C reads as: nothing to do


class LineReader(Protocol):
    prefills: bool  # a default is put on the line to edit (else shown in brackets, Enter keeps it)

    async def read(self, prompt: str, *, default: str = "", completing: bool = True) -> str | None:
        """The line typed (without its newline), CANCELLED for Ctrl-C, None at the end of input."""
        ...


class PipedReader:
    """Lines from a non-terminal stdin; each is echoed after the prompt."""

    prefills = False

    def __init__(self, source: TextIO | None = None, out: TextIO | None = None) -> None:
        self.source = source or sys.stdin
        self.out = out  # None: whatever sys.stdout is when printing

    async def read(self, prompt: str, *, default: str = "", completing: bool = True) -> str | None:
        print(prompt, end="", file=self.out, flush=True)
        line = await asyncio.get_running_loop().run_in_executor(None, self.source.readline)
        if line == "":
            return None
        print(line.rstrip("\n"), file=self.out, flush=True)
        return line.rstrip("\n")


class TerminalReader:
    """A prompt_toolkit session: Emacs-style editing, ↑/↓ and Ctrl-R through the history file, Tab completion."""

    prefills = True

    def __init__(self, *, history_file: Path | None, completer: Completer | None,
                 input: Input | None = None, output: Output | None = None) -> None:
        history: History = InMemoryHistory()
        if history_file is not None:
            try:
                history_file.parent.mkdir(parents=True, exist_ok=True)
                history_file.touch(exist_ok=True)
                history = FileHistory(str(history_file))
            except OSError:  # a read-only home: history for this run only
                pass
        self.completer = completer
        self.session: PromptSession[str] = PromptSession(history=history, completer=completer,
                                                         complete_while_typing=False, input=input, output=output)
        # Form answers are not commands: they get their own (unsaved) history.
        self.fields: PromptSession[str] = PromptSession(history=InMemoryHistory(), input=input, output=output)

    async def read(self, prompt: str, *, default: str = "", completing: bool = True) -> str | None:
        session = self.session if completing else self.fields
        try:
            return await session.prompt_async(prompt, default=default)
        except KeyboardInterrupt:  # Ctrl-C: the line is dropped, the shell goes on
            return CANCELLED
        except EOFError:  # Ctrl-D on an empty line
            return None


def reader_for(stdin_is_terminal: bool, *, history_file: Path | None, completer: Completer | None) -> LineReader:
    if stdin_is_terminal:
        return TerminalReader(history_file=history_file, completer=completer)
    return PipedReader()
