"""Audio messages (audit), stored media, per-channel settings seeded with Twilio's limits

Revision ID: 0001
Revises:
Create Date: 2026-11-25 08:40:14.581017
"""

from datetime import UTC, datetime
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: Union[str, None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "audio_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("account_sid", sa.String(length=34), nullable=True),
        sa.Column("chat_service_sid", sa.String(length=34), nullable=True),
        sa.Column("conversation_sid", sa.String(length=34), nullable=False),
        sa.Column("message_sid", sa.String(length=34), nullable=True),
        sa.Column("media_sid", sa.String(length=34), nullable=True),
        sa.Column("author", sa.String(length=256), nullable=True),
        sa.Column("source", sa.String(length=32), nullable=True),
        sa.Column("content_type", sa.String(length=128), nullable=True),
        sa.Column("filename", sa.String(length=256), nullable=True),
        sa.Column("size_bytes", sa.Integer(), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("mp3_size_bytes", sa.Integer(), nullable=True),
        sa.Column("mp3_sha256", sa.String(length=64), nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("truncated", sa.Boolean(), nullable=False),
        sa.Column("media_key", sa.String(length=128), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("processing_ms", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audio_messages")),
        sa.UniqueConstraint("message_sid", "media_sid", name="uq_audio_messages_message_media"),
    )
    with op.batch_alter_table("audio_messages", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audio_messages_channel"), ["channel"], unique=False)
        batch_op.create_index(batch_op.f("ix_audio_messages_conversation_sid"), ["conversation_sid"], unique=False)
        batch_op.create_index(batch_op.f("ix_audio_messages_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_audio_messages_direction"), ["direction"], unique=False)
        batch_op.create_index(batch_op.f("ix_audio_messages_status"), ["status"], unique=False)

    op.create_table(
        "channel_settings",
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("sending_enabled", sa.Boolean(), nullable=False),
        sa.Column("max_bytes", sa.Integer(), nullable=False),
        sa.Column("max_duration_s", sa.Integer(), nullable=False),
        sa.Column("bitrate_kbps", sa.Integer(), nullable=False),
        sa.Column("normalize_inbound", sa.Boolean(), nullable=False),
        sa.Column("loudness_normalize", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=256), nullable=True),
        sa.PrimaryKeyConstraint("channel", name=op.f("pk_channel_settings")),
    )
    # Defaults from Twilio's per-file limits (https://www.twilio.com/docs/flex/developer/conversations/limits):
    # 16 MiB WhatsApp / web chat / Messenger, 2 MiB SMS/MMS; 15 minutes, 64 kbps MP3, inbound normalization on,
    # loudness normalization off.
    settings = sa.table(
        "channel_settings",
        sa.column("channel", sa.String),
        sa.column("sending_enabled", sa.Boolean),
        sa.column("max_bytes", sa.Integer),
        sa.column("max_duration_s", sa.Integer),
        sa.column("bitrate_kbps", sa.Integer),
        sa.column("normalize_inbound", sa.Boolean),
        sa.column("loudness_normalize", sa.Boolean),
        sa.column("updated_at", sa.DateTime(timezone=True)),
        sa.column("updated_by", sa.String),
    )
    now = datetime.now(UTC)
    op.bulk_insert(
        settings,
        [
            {
                "channel": channel,
                "sending_enabled": True,
                "max_bytes": max_bytes,
                "max_duration_s": 900,
                "bitrate_kbps": 64,
                "normalize_inbound": True,
                "loudness_normalize": False,
                "updated_at": now,
                "updated_by": "migration",
            }
            # Twilio's caps as of this revision, frozen on purpose (today's are webhook_app/settings/rules.py's).
            for channel, max_bytes in [
                ("whatsapp", 16_777_216),
                ("sms", 2_097_152),
                ("webchat", 16_777_216),
                ("messenger", 16_777_216),
                ("other", 16_777_216),
            ]
        ],
    )
    op.create_table(
        "stored_media",
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("content_type", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_stored_media")),
    )


def downgrade() -> None:
    op.drop_table("stored_media")
    op.drop_table("channel_settings")
    with op.batch_alter_table("audio_messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audio_messages_status"))
        batch_op.drop_index(batch_op.f("ix_audio_messages_direction"))
        batch_op.drop_index(batch_op.f("ix_audio_messages_created_at"))
        batch_op.drop_index(batch_op.f("ix_audio_messages_conversation_sid"))
        batch_op.drop_index(batch_op.f("ix_audio_messages_channel"))

    op.drop_table("audio_messages")
