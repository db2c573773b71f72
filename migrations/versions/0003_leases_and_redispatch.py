"""leases and redispatch

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "jobs", sa.Column("dispatches", sa.Integer(), server_default=sa.text("0"), nullable=False)
    )
    op.add_column("jobs", sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True))
    # Attempts running before leases existed hold none: let them expire now, so the dispatcher
    # rescues any whose worker is gone (a live one's next renewal keeps its job).
    op.execute("UPDATE jobs SET lease_expires_at = now() WHERE status = 'running'")
    op.create_index(
        "ix_jobs_unclaimed",
        "jobs",
        ["dispatched_at"],
        postgresql_where=sa.text("status = 'queued' AND dispatched_at IS NOT NULL"),
    )
    op.create_index(
        "ix_jobs_lease",
        "jobs",
        ["lease_expires_at"],
        postgresql_where=sa.text("status = 'running'"),
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_lease", table_name="jobs")
    op.drop_index("ix_jobs_unclaimed", table_name="jobs")
    op.drop_column("jobs", "lease_expires_at")
    op.drop_column("jobs", "dispatches")
