"""incident roles (who holds communications, scribe…) and follow-ups (action items, their tracker issue)

Revision ID: 0011_incident_roles_followups
Revises: 0010_heartbeats
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_incident_roles_followups"
down_revision = "0010_heartbeats"
branch_labels = None
depends_on = None

At = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "incident_roles",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("incident_id", sa.Integer(), sa.ForeignKey("incidents.id"), nullable=False, index=True),
        sa.Column("role", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("assigned_by", sa.String(64), nullable=False),
        sa.Column("assigned_at", At, nullable=False),
        sa.UniqueConstraint("incident_id", "role", name="uq_incident_roles_role"),
    )
    op.create_table(
        "followups",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("incident_id", sa.Integer(), sa.ForeignKey("incidents.id"), nullable=False, index=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("owner_id", sa.String(32), nullable=True),
        sa.Column("due", At, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", At, nullable=False),
        sa.Column("done_at", At, nullable=True),
        sa.Column("done_by", sa.String(64), nullable=True),
        sa.Column("tracker", sa.String(16), nullable=True),
        sa.Column("tracker_key", sa.String(64), nullable=True),
        sa.Column("tracker_url", sa.String(512), nullable=True),
        sa.Column("tracker_state", sa.String(32), nullable=True),
        sa.Column("tracker_error", sa.String(255), nullable=True),
        sa.Column("tracker_attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_reminded_at", At, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("followups")
    op.drop_table("incident_roles")
