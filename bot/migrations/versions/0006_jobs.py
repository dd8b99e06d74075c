"""job queue: procrastinate's schema (PostgreSQL only) and the owner of a redelivery key

Revision ID: 0006_jobs
Revises: 0005_housekeeping

procrastinate's tables, types and functions come from the procrastinate release pinned in
constraints.txt (`SchemaManager.get_schema()`). A later procrastinate upgrade that changes its schema gets
its own revision here, executing that release's files from `procrastinate/sql/migrations/`. On SQLite the
queue is in-process (bot/queue.py) and needs no tables.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_jobs"
down_revision = "0005_housekeeping"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Which job wrote a redelivery key: the same job run again (after its worker died) may proceed,
    # another request with the same key may not (bot/idempotency.py).
    with op.batch_alter_table("processed_requests") as batch:
        batch.add_column(sa.Column("owner", sa.String(length=64), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        from procrastinate.schema import SchemaManager

        op.execute(SchemaManager.get_schema())


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in ("procrastinate_periodic_defers", "procrastinate_events", "procrastinate_jobs",
                      "procrastinate_workers"):
            op.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
        op.execute("DO $$ DECLARE r record; BEGIN FOR r IN SELECT oid::regprocedure AS f FROM pg_proc "
                   "WHERE proname LIKE 'procrastinate%' LOOP EXECUTE 'DROP FUNCTION ' || r.f || ' CASCADE'; "
                   "END LOOP; END $$")
        op.execute("DROP TYPE IF EXISTS procrastinate_job_status, procrastinate_job_event_type, "
                   "procrastinate_job_to_defer_v1 CASCADE")
    with op.batch_alter_table("processed_requests") as batch:
        batch.drop_column("owner")
