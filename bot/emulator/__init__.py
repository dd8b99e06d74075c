"""A local Slack Web API emulator and a Slack-side request signer, for tests, the shell and benchmarks."""

from bot.emulator.server import EmulatorServer
from bot.emulator.signing import SlackRequests, sign
from bot.emulator.state import SlackState

__all__ = ["EmulatorServer", "SlackRequests", "SlackState", "sign"]
