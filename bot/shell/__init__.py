"""`opsbot shell`: type slash commands in a terminal; the real handlers run through bolt against an
in-process Slack emulator, and what Slack would show is printed as text. Reads piped input too.

Modules: main (start, the loop), session (the Shell: requests in, Slack's output out), markup (typed text →
Slack's escaping, Slack markup → terminal), blocks (Block Kit as text), complete (Tab completion), lineinput
(prompt_toolkit or piped lines), store (fresh, --keep, :reset), standins (the paging stand-ins)."""

from bot.shell.blocks import render_blocks
from bot.shell.main import open_shell, run_shell
from bot.shell.session import Shell
from bot.shell.standins import SHELL_ROUTING_KEY, STAND_IN_ENV, StandIns, mail_report, pages_report

__all__ = ["SHELL_ROUTING_KEY", "STAND_IN_ENV", "Shell", "StandIns", "mail_report", "open_shell", "pages_report",
           "render_blocks", "run_shell"]
