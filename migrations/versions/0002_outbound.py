"""outbound: idempotency key, error code, transcode time

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 08:50:12.174039
"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: Union[str, None] = "0001"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("audio_messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("error_code", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("idempotency_key", sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column("transcode_ms", sa.Integer(), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_audio_messages_idempotency_key"), ["idempotency_key"])


def downgrade() -> None:
    with op.batch_alter_table("audio_messages", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_audio_messages_idempotency_key"), type_="unique")
        batch_op.drop_column("transcode_ms")
        batch_op.drop_column("idempotency_key")
        batch_op.drop_column("error_code")
