"""incidents: a version column, bumped by every change (changes of one incident take turns on it)

Revision ID: 0003_incident_versions
Revises: 0002_alerts
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_incident_versions"
down_revision = "0002_alerts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(sa.Column("version", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.drop_column("version")
