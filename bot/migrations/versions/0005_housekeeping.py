"""shared rate limit, deploy idempotency keys, processed_requests pruned by age

Revision ID: 0005_housekeeping
Revises: 0004_state_versions
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_housekeeping"
down_revision = "0004_state_versions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_limits",
        sa.Column("user", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("hits", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("user", "action"),
    )
    op.create_index("ix_rate_limits_updated_at", "rate_limits", ["updated_at"])
    op.create_index("ix_processed_requests_at", "processed_requests", ["at"])
    with op.batch_alter_table("deploys") as batch:
        batch.add_column(sa.Column("idempotency_key", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("request_hash", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("natural_key", sa.String(length=64), nullable=True))
    # Existing rows keep NULL in both (NULLs never collide in a unique index).
    op.create_index("uq_deploys_idempotency_key", "deploys", ["idempotency_key"], unique=True)
    op.create_index("uq_deploys_natural_key", "deploys", ["natural_key"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_deploys_natural_key", table_name="deploys")
    op.drop_index("uq_deploys_idempotency_key", table_name="deploys")
    with op.batch_alter_table("deploys") as batch:
        batch.drop_column("natural_key")
        batch.drop_column("request_hash")
        batch.drop_column("idempotency_key")
    op.drop_index("ix_processed_requests_at", table_name="processed_requests")
    op.drop_index("ix_rate_limits_updated_at", table_name="rate_limits")
    op.drop_table("rate_limits")
