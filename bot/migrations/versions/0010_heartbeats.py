"""heartbeats: scheduled jobs' dead man's switches (their last ping; their alerts are alert_states rows)

Revision ID: 0010_heartbeats
Revises: 0009_actions_runbooks
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_heartbeats"
down_revision = "0009_actions_runbooks"
branch_labels = None
depends_on = None

At = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "heartbeats",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("since", At, nullable=False),
        sa.Column("last_ping_at", At, nullable=True),
        sa.Column("last_status", sa.String(16), nullable=True),
        sa.Column("last_message", sa.Text(), nullable=True),
        sa.Column("pings", sa.Integer(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_table("heartbeats")
