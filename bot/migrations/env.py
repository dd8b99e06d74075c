"""Alembic environment: always run programmatically by bot.db.run_migrations with a live connection."""

import logging

from alembic import context

from bot.models import Base

# alembic's INFO lines ("Context impl …", "Will assume …", one per migration) are for LOG_LEVEL=DEBUG only;
# bot.logs.configure quiets the whole "alembic" logger, this covers callers that never configured logging.
if logging.getLogger().getEffectiveLevel() > logging.DEBUG and logging.getLogger("alembic").level == logging.NOTSET:
    logging.getLogger("alembic").setLevel(logging.WARNING)

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - guarded for people who run `alembic` by hand
    raise SystemExit("Run migrations with `opsbot db upgrade`.")

context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
