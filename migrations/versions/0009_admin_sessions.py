"""Admin page sessions kept on the server, so that signing out revokes a copied cookie

Revision ID: 0009
Revises: 0008
"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: Union[str, None] = "0008"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "admin_sessions",
        sa.Column("secret_sha256", sa.String(length=64), nullable=False),
        sa.Column("identity", sa.String(length=256), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("secret_sha256", name=op.f("pk_admin_sessions")),
    )
    op.create_index(op.f("ix_admin_sessions_identity"), "admin_sessions", ["identity"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_admin_sessions_identity"), table_name="admin_sessions")
    op.drop_table("admin_sessions")
