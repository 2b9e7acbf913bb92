"""Settings change audit and the settings version stamp

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 08:54:22.973912
"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: Union[str, None] = "0002"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "settings_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=32), nullable=False),
        sa.Column("old_value", sa.Text(), nullable=True),
        sa.Column("new_value", sa.Text(), nullable=True),
        sa.Column("changed_by", sa.String(length=256), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_settings_changes")),
    )
    with op.batch_alter_table("settings_changes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_settings_changes_changed_at"), ["changed_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_settings_changes_channel"), ["channel"], unique=False)

    op.create_table(
        "settings_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_settings_version")),
    )
    op.bulk_insert(
        sa.table("settings_version", sa.column("id", sa.Integer), sa.column("version", sa.Integer)),
        [{"id": 1, "version": 1}],
    )


def downgrade() -> None:
    op.drop_table("settings_version")
    with op.batch_alter_table("settings_changes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_settings_changes_channel"))
        batch_op.drop_index(batch_op.f("ix_settings_changes_changed_at"))

    op.drop_table("settings_changes")
