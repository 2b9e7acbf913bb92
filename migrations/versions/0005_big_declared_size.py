"""audio_messages.size_bytes as BIGINT: a declared Size of a terabyte must not turn a webhook into a 503

Revision ID: 0005
Revises: 0004
"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: Union[str, None] = "0004"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("audio_messages", schema=None) as batch_op:
        batch_op.alter_column("size_bytes", existing_type=sa.Integer(), type_=sa.BigInteger(), existing_nullable=True)


def downgrade() -> None:
    # The sizes this revision made room for do not fit an INTEGER, and PostgreSQL refuses the whole ALTER for one
    # of them. A declared size is informational (the bytes that arrive decide): forget it rather than refuse.
    op.execute("UPDATE audio_messages SET size_bytes = NULL WHERE size_bytes > 2147483647")
    with op.batch_alter_table("audio_messages", schema=None) as batch_op:
        batch_op.alter_column("size_bytes", existing_type=sa.BigInteger(), type_=sa.Integer(), existing_nullable=True)
