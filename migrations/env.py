"""Alembic environment: the URL comes from the app (DATABASE_URL or the instance/ SQLite default)."""

from logging.config import fileConfig

from alembic import context
from sqlalchemy import engine_from_config, pool

from webhook_app import models  # noqa: F401 - registers the tables on db.metadata
from webhook_app.config import Config, default_database_url
from webhook_app.extensions import db

config = context.config
if config.config_file_name is not None and not config.attributes.get("skip_logging"):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

url = config.attributes.get("database_url")
if url is None:
    url = Config().SQLALCHEMY_DATABASE_URI or default_database_url()
target_metadata = db.metadata
# The transcripts' full-text objects (migration 0010) are not the models': left out of the comparison.
include_object = models.described_by_models


def run_migrations_offline() -> None:
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connectable = engine_from_config({"sqlalchemy.url": url}, prefix="sqlalchemy.", poolclass=pool.NullPool)
    with connectable.connect() as connection:
        # Batch mode lets ALTERs work on SQLite too (it rebuilds the table).
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=True,
            compare_type=True,
            include_object=include_object,
        )
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
