from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, select

from webhook_app.extensions import db
from webhook_app.models import CHANNELS, ChannelSettings, described_by_models


def test_migrated_database_matches_models(database_url):
    engine = create_engine(database_url)
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "include_object": described_by_models}
        )
        assert compare_metadata(context, db.metadata) == []
    engine.dispose()


def test_migration_seeds_every_channel_with_twilio_limits(app):
    with app.app_context():
        rows = {row.channel: row for row in db.session.scalars(select(ChannelSettings))}
    assert set(rows) == set(CHANNELS)
    assert rows["sms"].max_bytes == 2_097_152
    assert rows["whatsapp"].max_bytes == rows["webchat"].max_bytes == 16_777_216
    assert all(row.bitrate_kbps == 64 and row.normalize_inbound and not row.loudness_normalize for row in rows.values())


def test_downgrading_past_0005_forgets_sizes_an_integer_cannot_hold(tmp_path):
    """PostgreSQL refuses the whole ALTER back to INTEGER for one declared size of a terabyte."""
    import os
    import uuid

    from alembic import command
    from sqlalchemy import text

    from tests.helpers.service import migrate
    from webhook_app.config import normalize_database_url
    from webhook_app.runtime.schema import alembic_config

    server_url = os.environ.get("TEST_DATABASE_URL")
    name = f"test_downgrade_{uuid.uuid4().hex[:8]}"
    if server_url:
        admin = create_engine(normalize_database_url(server_url), isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f"CREATE DATABASE {name}"))
        url = str(admin.url.set(database=name).render_as_string(hide_password=False))
    else:
        url = "sqlite:///" + str(tmp_path / "downgrade.db")
    try:
        migrate(url)
        engine = create_engine(url)
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO audio_messages (direction, channel, status, truncated, attempts, conversation_sid,"
                    " message_sid, media_sid, size_bytes, created_at, updated_at) VALUES ('inbound', 'sms', 'failed',"
                    " false, 1, 'CH" + "a" * 32 + "', 'IM" + "b" * 32 + "', 'ME" + "c" * 32 + "', 1099511627776,"
                    " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                )
            )
        engine.dispose()
        command.downgrade(alembic_config(url), "0004")
        engine = create_engine(url)
        with engine.connect() as connection:
            assert connection.execute(text("SELECT size_bytes FROM audio_messages")).scalar_one() is None
        engine.dispose()
    finally:
        if server_url:
            with admin.connect() as connection:
                connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            admin.dispose()
