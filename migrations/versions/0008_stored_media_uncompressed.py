"""Keep stored_media.data uncompressed out of line on PostgreSQL

Playback reads a stored file a slice at a time (substr). PostgreSQL can fetch just the TOAST chunks of a slice only
when the value is not compressed; MP3s hardly compress anyway. STORAGE EXTERNAL applies to values written from now
on; older ones stay as they are (read whole per slice, as before). SQLite has no such setting.

Revision ID: 0008
Revises: 0007
"""

from typing import Sequence, Union

from alembic import op

revision: str = "0008"
down_revision: Union[str, None] = "0007"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE stored_media ALTER COLUMN data SET STORAGE EXTERNAL")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE stored_media ALTER COLUMN data SET STORAGE EXTENDED")
