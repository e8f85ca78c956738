"""Alembic environment: the URL comes from the Config that models.migrate builds, never from a file."""

from alembic import context

import models.tables  # noqa: F401  (registers the tables on Base.metadata)
from models.base import Base
from models.database import make_engine

config = context.config


def run_migrations_offline() -> None:
    """Emit SQL without a database connection."""
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Apply migrations over a live connection; SQLite needs batch mode to alter tables."""
    url = config.get_main_option("sqlalchemy.url")
    connectable = make_engine(url)
    with connectable.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
    connectable.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
