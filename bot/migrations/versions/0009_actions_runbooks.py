"""actions and runbooks: action runs (confirmation, approvals, result), runbook checklists (step progress)

Revision ID: 0009_actions_runbooks
Revises: 0008_status_page
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_actions_runbooks"
down_revision = "0008_status_page"
branch_labels = None
depends_on = None

At = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "action_runs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("environment", sa.String(64), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("requested_by", sa.String(64), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("read_only", sa.Boolean(), nullable=False),
        sa.Column("approvals_required", sa.Integer(), nullable=False),
        sa.Column("approved_by", sa.JSON(), nullable=False),
        sa.Column("decided_by", sa.String(64), nullable=True),
        sa.Column("incident_id", sa.Integer(), nullable=True),
        sa.Column("runbook_run_id", sa.Integer(), nullable=True),
        sa.Column("step", sa.Integer(), nullable=True),
        sa.Column("channel", sa.String(32), nullable=True),
        sa.Column("message_ts", sa.String(32), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("output", sa.Text(), nullable=True),
        sa.Column("created_at", At, nullable=False),
        sa.Column("started_at", At, nullable=True),
        sa.Column("finished_at", At, nullable=True),
        sa.Column("version", sa.Integer(), nullable=False, server_default="0"),
    )
    op.create_index("ix_action_runs_incident_id", "action_runs", ["incident_id"])
    op.create_table(
        "runbook_runs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("runbook", sa.String(64), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=True),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("message_ts", sa.String(32), nullable=True),
        sa.Column("started_by", sa.String(64), nullable=False),
        sa.Column("steps", sa.JSON(), nullable=False),
        sa.Column("key", sa.String(255), nullable=True, unique=True),
        sa.Column("created_at", At, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False, server_default="0"),
    )
    op.create_index("ix_runbook_runs_incident_id", "runbook_runs", ["incident_id"])


def downgrade() -> None:
    op.drop_index("ix_runbook_runs_incident_id", table_name="runbook_runs")
    op.drop_table("runbook_runs")
    op.drop_index("ix_action_runs_incident_id", table_name="action_runs")
    op.drop_table("action_runs")
