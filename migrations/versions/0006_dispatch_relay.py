"""audio_messages.dispatched_at and a NOTIFY on new queued rows: the job relay (transactional outbox)

With RQ, web processes no longer enqueue: a webhook only commits its rows, and relays in the worker processes
hand new `queued` rows to RQ. dispatched_at says a relay (or the sweeper) has handed the row to the queue; the
partial index keeps the relay's claim query cheap however large the audit table grows. On PostgreSQL a
statement-level trigger NOTIFYs the relays when a statement inserted queued rows, so they wake at once instead
of polling. Rows that exist before this migration count as dispatched: the sweeper owns them.

Revision ID: 0006
Revises: 0005
"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: Union[str, None] = "0005"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

UNDISPATCHED = sa.text("status = 'queued' AND dispatched_at IS NULL")


def upgrade() -> None:
    with op.batch_alter_table("audio_messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE audio_messages SET dispatched_at = updated_at")
    op.create_index(
        "ix_audio_messages_undispatched",
        "audio_messages",
        ["id"],
        unique=False,
        postgresql_where=UNDISPATCHED,
        sqlite_where=UNDISPATCHED,
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("""
            CREATE FUNCTION audio_messages_notify_queued() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF EXISTS (SELECT 1 FROM inserted WHERE status = 'queued' AND dispatched_at IS NULL) THEN
                    PERFORM pg_notify('audio_messages_queued', '');
                END IF;
                RETURN NULL;
            END $$""")
        op.execute("""
            CREATE TRIGGER audio_messages_notify_queued AFTER INSERT ON audio_messages
            REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT
            EXECUTE FUNCTION audio_messages_notify_queued()""")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audio_messages_notify_queued ON audio_messages")
        op.execute("DROP FUNCTION audio_messages_notify_queued()")
    op.drop_index("ix_audio_messages_undispatched", table_name="audio_messages")
    with op.batch_alter_table("audio_messages", schema=None) as batch_op:
        batch_op.drop_column("dispatched_at")
