"""Refused attempts (tokens per client, conversations per agent) counted across processes without Redis

Revision ID: 0011
Revises: 0010
"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: Union[str, None] = "0010"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "refusal_hits",
        sa.Column("bucket", sa.String(length=64), nullable=False),
        sa.Column("member", sa.String(length=32), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("bucket", "member", name=op.f("pk_refusal_hits")),
    )
    op.create_index(op.f("ix_refusal_hits_at"), "refusal_hits", ["at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_refusal_hits_at"), table_name="refusal_hits")
    op.drop_table("refusal_hits")
