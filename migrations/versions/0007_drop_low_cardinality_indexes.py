"""Drop the indexes on audio_messages.direction and .channel

Two and three distinct values: no query is faster for them (the audit list filters on them but walks created_at,
the metrics count every row), and every webhook's row paid for updating both. On the load bench they were a
fifth of PostgreSQL's CPU per inserted row.

Revision ID: 0007
Revises: 0006
"""

from typing import Sequence, Union

from alembic import op

revision: str = "0007"
down_revision: Union[str, None] = "0006"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.drop_index("ix_audio_messages_direction", table_name="audio_messages")
    op.drop_index("ix_audio_messages_channel", table_name="audio_messages")


def downgrade() -> None:
    op.create_index("ix_audio_messages_channel", "audio_messages", ["channel"], unique=False)
    op.create_index("ix_audio_messages_direction", "audio_messages", ["direction"], unique=False)
