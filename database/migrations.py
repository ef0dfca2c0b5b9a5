"""The migration files (migrations/NNNN_name.sql): found, in order, without gaps."""

from __future__ import annotations

import re
from pathlib import Path

from database.records import Migration, MigrationError

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
MIGRATION_NAME = re.compile(r"^(\d{4})_[A-Za-z0-9_]+\.sql$")


def find_migrations(migrations_dir: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migration files, in order; numbered 0001, 0002, ... with no gaps or repeats."""
    migrations = []
    for path in sorted(Path(migrations_dir).glob("*.sql")):
        match = MIGRATION_NAME.match(path.name)
        if not match:
            raise MigrationError(f"migration file {path.name} is not named NNNN_name.sql")
        migrations.append(Migration(int(match.group(1)), path))
    for expected, migration in enumerate(migrations, start=1):
        if migration.version != expected:
            raise MigrationError(
                f"migration {migration.path.name} should be numbered "
                f"{expected:04d}: migrations run in order without gaps"
            )
    return migrations
