"""The only package that speaks SQL.

    storage.py     open_database(): the storage probe first, an in-memory database (loudly, with
                   the reason kept) when the folder cannot hold one; a damaged file moved aside
    core.py        the Database: one connection shared by every thread behind a fair lock, every
                   unit of work a short transaction; migrations; the bot's own state
    copies.py      its whole copies: the online backup API (snapshot_to), the file held still
                   (frozen), a verified backup loaded in its place (load_from)
    people.py      its queries about people: tracking, blocks, languages, the panel's lists
    schema.py      checking a file from outside (a backup): inspect_file, upgraded_copy
    migrations.py  the migration files; records.py the records, errors and stored times;
                   connection.py how one connection is opened

One connection, shared by every thread behind a lock, is the only way an in-memory database can
be shared at all, and it keeps file mode simple. Every SQL statement of the project is in this
package (tests/test_structure.py holds it so); the rest of the bot imports from here only.
"""

from database.connection import BUSY_TIMEOUT_MS, MEMORY
from database.core import Database
from database.migrations import MIGRATIONS_DIR, find_migrations
from database.records import (
    DamagedDatabaseError,
    DatabaseError,
    FileFacts,
    ForeignDatabaseError,
    Migration,
    MigrationError,
    SchemaTooNewError,
    Storage,
    UserState,
    parse_timestamp,
    timestamp,
)
from database.schema import REQUIRED_TABLES, expected_schema, inspect_file, upgraded_copy
from database.storage import move_aside, open_database, open_or_move_aside, probe_storage

__all__ = [
    "BUSY_TIMEOUT_MS",
    "MEMORY",
    "MIGRATIONS_DIR",
    "REQUIRED_TABLES",
    "DamagedDatabaseError",
    "Database",
    "DatabaseError",
    "FileFacts",
    "ForeignDatabaseError",
    "Migration",
    "MigrationError",
    "SchemaTooNewError",
    "Storage",
    "UserState",
    "expected_schema",
    "find_migrations",
    "inspect_file",
    "move_aside",
    "open_database",
    "open_or_move_aside",
    "parse_timestamp",
    "probe_storage",
    "timestamp",
    "upgraded_copy",
]
