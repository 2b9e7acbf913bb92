"""Media retention: when an MP3 was deleted (the audit row stays)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 08:59:46.017090
"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: Union[str, None] = "0003"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("audio_messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("media_deleted_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audio_messages", schema=None) as batch_op:
        batch_op.drop_column("media_deleted_at")
