"""alerts, rollbacks, flag confirmations: version columns for compare-and-set, and who decided

`alert_states`, `rollbacks` and `pending_actions` get a `version` (bumped by every button verb that changes
the row; the verb's UPDATE is conditional on the version it read, so two people at once make one change).
`alert_states` also records who silenced it and when, `pending_actions` who confirmed or cancelled it and
when, so the later presses are told who already did it.

Revision ID: 0004_state_versions
Revises: 0003_incident_versions
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_state_versions"
down_revision = "0003_incident_versions"
branch_labels = None
depends_on = None


def _version() -> sa.Column:
    return sa.Column("version", sa.Integer(), nullable=False, server_default="0")


def upgrade() -> None:
    with op.batch_alter_table("alert_states") as batch:
        batch.add_column(_version())
        batch.add_column(sa.Column("silenced_by", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("silenced_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("rollbacks") as batch:
        batch.add_column(_version())
    with op.batch_alter_table("pending_actions") as batch:
        batch.add_column(_version())
        batch.add_column(sa.Column("decided_by", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("pending_actions") as batch:
        batch.drop_column("decided_at")
        batch.drop_column("decided_by")
        batch.drop_column("version")
    with op.batch_alter_table("rollbacks") as batch:
        batch.drop_column("version")
    with op.batch_alter_table("alert_states") as batch:
        batch.drop_column("silenced_at")
        batch.drop_column("silenced_by")
        batch.drop_column("version")
