from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, select

from webhook_app.extensions import db
from webhook_app.models import CHANNELS, ChannelSettings


def test_migrated_database_matches_models(database_url):
    engine = create_engine(database_url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, db.metadata) == []
    engine.dispose()


def test_migration_seeds_every_channel_with_twilio_limits(app):
    with app.app_context():
        rows = {row.channel: row for row in db.session.scalars(select(ChannelSettings))}
    assert set(rows) == set(CHANNELS)
    assert rows["sms"].max_bytes == 2_097_152
    assert rows["whatsapp"].max_bytes == rows["webchat"].max_bytes == 16_777_216
    assert all(row.bitrate_kbps == 64 and row.normalize_inbound and not row.loudness_normalize for row in rows.values())
