"""opsbot: operations runbooks as Slack commands."""

__version__ = "0.1.0"
