"""Alembic environment: always run programmatically by bot.db.run_migrations with a live connection."""

from alembic import context

from bot.models import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - guarded for people who run `alembic` by hand
    raise SystemExit("Run migrations with `opsbot db upgrade`.")

context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
