"""on-call schedules (overrides, feed cache, user group syncs), escalation steps, pages, inbound webhooks

Revision ID: 0007_oncall_paging
Revises: 0006_jobs
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_oncall_paging"
down_revision = "0006_jobs"
branch_labels = None
depends_on = None

At = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "oncall_overrides",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("schedule", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("starts_at", At, nullable=False),
        sa.Column("ends_at", At, nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", At, nullable=False),
        sa.Column("cancelled_at", At, nullable=True),
    )
    op.create_index("ix_oncall_overrides_schedule_ends_at", "oncall_overrides", ["schedule", "ends_at"])
    op.create_table(
        "oncall_feeds",
        sa.Column("schedule", sa.String(64), primary_key=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("etag", sa.String(255), nullable=True),
        sa.Column("fetched_at", At, nullable=False),
        sa.Column("error", sa.String(255), nullable=True),
    )
    op.create_table(
        "usergroup_syncs",
        sa.Column("schedule", sa.String(64), primary_key=True),
        sa.Column("usergroup_id", sa.String(32), nullable=False),
        sa.Column("users", sa.JSON(), nullable=False),
        sa.Column("synced_at", At, nullable=False),
    )
    op.create_table(
        "escalation_steps",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("policy", sa.String(64), nullable=False),
        sa.Column("cycle", sa.Integer(), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("fired_at", At, nullable=False),
        sa.Column("targets", sa.JSON(), nullable=False),
        sa.UniqueConstraint("subject", "cycle", "level", name="uq_escalation_steps_step"),
    )
    op.create_table(
        "pages",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("key", sa.String(255), nullable=False, unique=True),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("target", sa.String(255), nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("dedup_key", sa.String(255), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(512), nullable=True),
        sa.Column("reference", sa.String(255), nullable=True),
        sa.Column("requested_by", sa.String(64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("created_at", At, nullable=False),
        sa.Column("delivered_at", At, nullable=True),
    )
    op.create_index("ix_pages_subject", "pages", ["subject"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.String(255), primary_key=True),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("at", At, nullable=False),
    )
    op.create_index("ix_webhook_deliveries_at", "webhook_deliveries", ["at"])


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_at", table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_index("ix_pages_subject", table_name="pages")
    op.drop_table("pages")
    op.drop_table("escalation_steps")
    op.drop_table("usergroup_syncs")
    op.drop_table("oncall_feeds")
    op.drop_index("ix_oncall_overrides_schedule_ends_at", table_name="oncall_overrides")
    op.drop_table("oncall_overrides")
