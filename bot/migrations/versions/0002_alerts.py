"""alerts: digest of what the alert message shows (edit Slack only when it changes)

Revision ID: 0002_alerts
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_alerts"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("alert_states", sa.Column("digest", sa.String(length=64), nullable=True))


def downgrade() -> None:
    # Additive only (DEVELOPING.md): nothing is dropped.
    pass
