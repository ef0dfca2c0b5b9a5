import subprocess
from datetime import datetime, timezone

import pytest

import database

NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=timezone.utc)


@pytest.fixture
def db(tmp_path):
    """A migrated database in a real file."""
    opened = database.open_database(str(tmp_path / "bot.db"))
    opened.migrate()
    yield opened
    opened.close()


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder on a read-only tmpfs mount: root ignores file permissions, so chmod is no test."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here: {mounted.stderr.strip()}")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)
