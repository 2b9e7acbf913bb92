"""Transcripts: per-channel `transcribe` and `transcribe_language`, the transcripts table and its full-text search

Revision ID: 0010
Revises: 0009

Full text: PostgreSQL indexes to_tsvector('simple', text) with GIN. 'simple' lowercases words and nothing more (no
stemming, no stop words): a channel may transcribe any language, and an English configuration would stem Spanish
words wrongly and drop English stop words ("no", "me") that are words elsewhere; a search finds the word as said.
SQLite: an FTS5 external-content table (`transcripts_fts`, the unicode61 tokenizer, diacritics folded) over
transcripts.text, kept in step by triggers. migrations/env.py leaves these objects out of autogenerate's comparison
(the models do not describe them).
"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: Union[str, None] = "0009"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

FTS_EXPRESSION = "to_tsvector('simple', coalesce(text, ''))"  # webhook_app/transcripts/search.py spells it too
SQLITE_FTS = (
    "CREATE VIRTUAL TABLE transcripts_fts USING fts5(text, content='transcripts', content_rowid='audio_message_id', "
    "tokenize='unicode61 remove_diacritics 2')",
    "CREATE TRIGGER transcripts_fts_insert AFTER INSERT ON transcripts BEGIN "
    "INSERT INTO transcripts_fts(rowid, text) VALUES (new.audio_message_id, new.text); END",
    "CREATE TRIGGER transcripts_fts_delete AFTER DELETE ON transcripts BEGIN "
    "INSERT INTO transcripts_fts(transcripts_fts, rowid, text) VALUES ('delete', old.audio_message_id, old.text); END",
    "CREATE TRIGGER transcripts_fts_update AFTER UPDATE OF text ON transcripts BEGIN "
    "INSERT INTO transcripts_fts(transcripts_fts, rowid, text) VALUES ('delete', old.audio_message_id, old.text); "
    "INSERT INTO transcripts_fts(rowid, text) VALUES (new.audio_message_id, new.text); END",
)


def upgrade() -> None:
    with op.batch_alter_table("channel_settings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("transcribe", sa.Boolean(), server_default=sa.text("false"), nullable=False))
        batch_op.add_column(
            sa.Column("transcribe_language", sa.String(length=8), server_default="auto", nullable=False)
        )
    op.create_table(
        "transcripts",
        sa.Column("audio_message_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("language", sa.String(length=8), nullable=True),
        sa.Column("segments", sa.JSON(), nullable=True),
        sa.Column("model", sa.String(length=128), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["audio_message_id"],
            ["audio_messages.id"],
            name=op.f("fk_transcripts_audio_message_id_audio_messages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("audio_message_id", name=op.f("pk_transcripts")),
    )
    op.create_index(op.f("ix_transcripts_status"), "transcripts", ["status"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"CREATE INDEX ix_transcripts_fts ON transcripts USING gin ({FTS_EXPRESSION})")
    else:
        for statement in SQLITE_FTS:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_transcripts_fts")
    else:
        for trigger in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS transcripts_fts_{trigger}")
        op.execute("DROP TABLE IF EXISTS transcripts_fts")
    op.drop_index(op.f("ix_transcripts_status"), table_name="transcripts")
    op.drop_table("transcripts")
    with op.batch_alter_table("channel_settings", schema=None) as batch_op:
        batch_op.drop_column("transcribe_language")
        batch_op.drop_column("transcribe")
