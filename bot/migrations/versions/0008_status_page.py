"""status page: component state history, public incident updates, hosted Statuspage incident links

Revision ID: 0008_status_page
Revises: 0007_oncall_paging
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_status_page"
down_revision = "0007_oncall_paging"
branch_labels = None
depends_on = None

At = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "component_states",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("component", sa.String(128), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("at", At, nullable=False),
    )
    op.create_index("ix_component_states_component_at", "component_states", ["component", "at"])
    op.create_table(
        "public_updates",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("incident_id", sa.Integer(), sa.ForeignKey("incidents.id"), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("at", At, nullable=False),
        sa.Column("author", sa.String(64), nullable=False),
        sa.Column("key", sa.String(255), nullable=True, unique=True),
    )
    op.create_index("ix_public_updates_incident_id", "public_updates", ["incident_id"])
    op.create_index("ix_public_updates_at", "public_updates", ["at"])
    op.create_table(
        "statuspage_incidents",
        sa.Column("incident_id", sa.Integer(), sa.ForeignKey("incidents.id"), primary_key=True),
        sa.Column("page_id", sa.String(64), nullable=False),
        sa.Column("external_id", sa.String(64), nullable=True),
        sa.Column("last_update_id", sa.Integer(), nullable=True),
        sa.Column("last_synced_at", At, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("error", sa.String(255), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("statuspage_incidents")
    op.drop_index("ix_public_updates_at", table_name="public_updates")
    op.drop_index("ix_public_updates_incident_id", table_name="public_updates")
    op.drop_table("public_updates")
    op.drop_index("ix_component_states_component_at", table_name="component_states")
    op.drop_table("component_states")
