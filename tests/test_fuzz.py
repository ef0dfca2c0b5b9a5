"""Property-based tests (hypothesis) of everything that parses what comes from outside: the
backup header, S3 object metadata, Telegram captions, and the whole backup reader. Whatever the
input, the answer is a backup (whose every field is in range) or one of our one-line errors:
never another exception."""

import hashlib
import io
import json
import struct
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
import zstandard
from conftest import NOW
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import database
from backup_format import (
    EARLIEST,
    FORMAT,
    LATEST,
    SKIPPABLE_MAGIC,
    SQLITE_MAGIC,
    BackupError,
    BackupInfo,
    NotABackupError,
    info_from_metadata,
    read_header,
    unpack_and_verify,
)
from lease import Knock
from sealing import SEALED_MAGIC, Sealer
from telegram_index import FORMAT as INDEX_FORMAT
from telegram_index import Seal, caption_with_knock, knock_in_caption, parse_index, telegram_length

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
FIELDS = ["created_at", "reason", "schema_version", "row_counts", "sha256", "db_size"]
PLAUSIBLE = {
    "created_at": st.datetimes(timezones=st.timezones()).map(datetime.isoformat) | st.text(max_size=40),
    "reason": st.from_regex(r"[a-z-]{1,40}", fullmatch=True) | JSON,
    "schema_version": st.integers() | JSON,
    "row_counts": st.dictionaries(st.text(max_size=70), st.integers() | JSON, max_size=5) | JSON,
    "sha256": st.from_regex(r"[0-9a-f]{64}", fullmatch=True) | JSON,
    "db_size": st.integers() | st.floats() | JSON,
}


def header_frame(payload: bytes) -> io.BytesIO:
    return io.BytesIO(struct.pack("<II", SKIPPABLE_MAGIC, len(payload)) + payload)


def assert_sound(info: BackupInfo) -> None:
    """What every parser promises about a backup it accepts."""
    assert EARLIEST <= info.created_at < LATEST and info.created_at.utcoffset().total_seconds() == 0
    assert isinstance(info.schema_version, int) and info.schema_version >= 0
    assert isinstance(info.db_size, int) and info.db_size >= 0
    assert all(isinstance(t, str) and isinstance(n, int) and n >= 0 for t, n in info.row_counts.items())
    assert isinstance(info.reason, str) and info.reason


@FAST
@example(b"[" * 100_000 + b"]" * 100_000)  # nesting beyond the parser's recursion
@example(b'{"format": "telegram-bot-backup/1", "db_size": 1e999}')  # infinity
@example(b'{"format": "telegram-bot-backup/1", "schema_version": ' + b"9" * 5000 + b"}")  # a huge number
@given(st.binary(max_size=3000))
def test_any_header_bytes_give_a_backup_or_our_error(payload):
    try:
        info = read_header(header_frame(payload))
    except NotABackupError:
        return
    assert_sound(info)


VALID = {
    "created_at": NOW.isoformat(),
    "reason": "manual",
    "schema_version": 2,
    "row_counts": {"users": 1},
    "sha256": "0" * 64,
    "db_size": 4096,
}


@FAST
@example(VALID, {}, True)
@example({**VALID, "created_at": "2026-11-26T12:00:00-23:59"}, {"generation": [1, {"x": None}]}, True)
@example({**VALID, "created_at": "0001-01-01T00:00:00+14:00"}, {}, True)  # before the year 1 in UTC
@example({**VALID, "created_at": "9999-12-31T23:59:59-14:00"}, {}, True)  # after the year 9999
@example({**VALID, "db_size": True, "schema_version": 2.0}, {}, True)  # a bool, a float
@given(
    st.fixed_dictionaries({}, optional=dict(PLAUSIBLE.items())),
    st.dictionaries(st.text(max_size=10), JSON, max_size=3),
    st.booleans(),
)
def test_any_header_json_gives_a_backup_or_our_error(fields, extra, right_format):
    document = {**extra, **fields, **({"format": FORMAT} if right_format else {})}
    try:
        info = read_header(header_frame(json.dumps(document).encode()))
    except NotABackupError:
        return
    assert_sound(info)


@FAST
@example(
    {
        "created-at": NOW.isoformat(),
        "reason": "scheduled",
        "schema-version": "2",
        "row-counts": '{"users": 3}',
        "sha256": "a" * 64,
        "db-size": "8192",
        "encrypted": "yes",
    }
)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "created-at": st.text(max_size=40)
            | st.datetimes(timezones=st.timezones()).map(datetime.isoformat),
            "reason": st.text(max_size=40),
            "schema-version": st.text(max_size=25),
            "row-counts": st.text(max_size=60) | JSON.map(json.dumps),
            "sha256": st.text(max_size=70),
            "db-size": st.text(max_size=25),
            "encrypted": st.text(max_size=5),
        },
    )
)
def test_any_object_metadata_gives_a_backup_or_our_error(metadata):
    try:
        info = info_from_metadata(metadata)
    except NotABackupError:
        return
    assert_sound(info)


def real_backup(folder: Path) -> bytes:
    """The bytes of a real backup of a small database of this bot."""
    path = folder / "live.db"
    db = database.open_database(str(path))
    db.migrate()
    db.track_message(1, "ann", "Ann", 1, "message", NOW, NOW)
    db.close()
    data = path.read_bytes()
    header = {
        "format": FORMAT,
        "created_at": NOW.isoformat(),
        "reason": "manual",
        "schema_version": len(database.find_migrations()),
        "row_counts": {"bot_state": 0, "tracking": 1, "users": 1},
        "sha256": hashlib.sha256(data).hexdigest(),
        "db_size": len(data),
    }
    return header_frame(json.dumps(header).encode()).getvalue() + zstandard.ZstdCompressor().compress(data)


with tempfile.TemporaryDirectory() as _folder:
    GOOD = real_backup(Path(_folder))
SEALER = Sealer("passphrase")


def mutated(data: bytes):
    """A real backup with a few bytes flipped, cut short, or with bytes inserted."""
    return st.one_of(
        st.tuples(st.integers(0, len(data) - 1), st.integers(1, 255)).map(
            lambda change: data[: change[0]] + bytes([data[change[0]] ^ change[1]]) + data[change[0] + 1 :]
        ),
        st.integers(0, len(data) - 1).map(lambda end: data[:end]),
        st.tuples(st.integers(0, len(data)), st.binary(min_size=1, max_size=20)).map(
            lambda insert: data[: insert[0]] + insert[1] + data[insert[0] :]
        ),
    )


ANY_FILE = st.one_of(
    mutated(GOOD),
    st.tuples(
        st.sampled_from(
            [
                b"age-encryption.org/v1\n",
                SEALED_MAGIC,
                SEALED_MAGIC + b"scrypt AAAAAAAAAAAAAAAAAAAAAA 15\n",
                SQLITE_MAGIC,
                struct.pack("<I", SKIPPABLE_MAGIC),
                b"",
            ]
        ),
        st.binary(max_size=3000),
    ).map(lambda parts: parts[0] + parts[1]),
)


@SLOW
@example(GOOD)
@given(ANY_FILE)
def test_any_file_gives_a_verified_backup_or_our_error(content):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "candidate"
        path.write_bytes(content)
        workdir = Path(folder) / "work"
        workdir.mkdir()
        try:
            info, snapshot = unpack_and_verify(path, workdir, sealer=SEALER)
        except BackupError as error:
            assert "\n" not in str(error)
            return
        assert_sound(info)
        assert database.inspect_file(snapshot).row_counts["users"] == 1  # what came out is real


INDEX_ENTRY = st.fixed_dictionaries(
    {},
    optional={
        "name": st.from_regex(
            r"[a-z_]{0,8}-backup-[0-9]{8}T[0-9]{9}Z-[a-z-]{1,12}\.db\.zst(\.sealed)?", fullmatch=True
        )
        | st.text(max_size=80),
        "size": st.integers() | JSON,
        "encrypted": st.booleans() | JSON,
        "parts": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "message_id": st.integers() | JSON,
                    "file_id": st.text(max_size=60) | JSON,
                    "size": st.integers() | JSON,
                    "sha256": st.from_regex(r"[0-9a-f]{64}", fullmatch=True) | JSON,
                },
            ),
            max_size=3,
        )
        | JSON,
        **PLAUSIBLE,
    },
)


SEAL, CHAT = Seal("123456:TEST-TOKEN-abcdefghijklmnopqrstuvwxyz"), -1001234567890


def sealed(document: dict, chat_id=CHAT, message_id=1) -> bytes:
    """A document as the bot writes it: for its message, sealed with the bot's key."""
    body = {**document, "format": INDEX_FORMAT, "chat_id": chat_id, "message_id": message_id}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return json.dumps({**body, "seal": SEAL.sign(canonical)}).encode()


@FAST
@example(
    b'{"format": "telegram-bot-backup-index/1", "backups": [' + b"[" * 50_000 + b"]" * 50_000 + b"]}", True
)
@given(st.binary(max_size=2000), st.booleans())
def test_any_pinned_index_bytes_give_an_index_or_our_error(data, posted_by_bot):
    try:
        index = parse_index(data, CHAT, 1, SEAL, posted_by_bot)
    except NotABackupError:
        return
    for entry in index.entries:
        assert_sound(entry.info)


@FAST
@given(
    st.fixed_dictionaries(
        {"format": st.just("telegram-bot-backup-index/1")},
        optional={
            "head": JSON
            | st.fixed_dictionaries(
                {},
                optional={
                    "generation": st.integers() | JSON,
                    "writer": st.text(max_size=90) | JSON,
                    "state": st.sampled_from(["writing", "final"]) | JSON,
                    "since": st.datetimes(timezones=st.timezones()).map(datetime.isoformat) | JSON,
                    "final_backup_at": st.none() | st.text(max_size=40),
                },
            ),
            "rolling": st.lists(st.integers(), max_size=3) | JSON,
            "backups": st.lists(INDEX_ENTRY, max_size=3) | JSON,
        },
    )
)
def test_any_index_document_gives_an_index_of_sound_entries_or_our_error(document):
    for data, posted in ((json.dumps(document).encode(), True), (sealed(document), False)):
        try:
            index = parse_index(data, CHAT, 1, SEAL, posted)
        except NotABackupError:
            continue
        for entry in index.entries:
            assert_sound(entry.info)
            assert entry.parts and sum(part.size for part in entry.parts) == entry.info.size
        assert all(isinstance(m, int) and m > 0 for m in index.rolling)


@FAST
@given(
    st.dictionaries(st.text(max_size=12), JSON, max_size=6),
    st.integers(-(10**13), 10**13),
    st.integers(-5, 10**9),
    st.booleans(),
)
def test_an_index_the_bot_did_not_seal_for_that_very_message_is_never_trusted(
    document, chat_id, message_id, copy
):
    """Whatever someone else posts (any document, the bot's own index reposted, an index of
    another chat or message) is no index: only the sender and the seal decide."""
    forged = {**document, "format": INDEX_FORMAT, "seal": "0" * 64}
    with pytest.raises(NotABackupError):
        parse_index(json.dumps(forged).encode(), chat_id, message_id, SEAL, True)
    genuine = sealed(document, CHAT, 1)
    if copy and (chat_id, message_id) != (CHAT, 1):  # a copy elsewhere names the original's message
        with pytest.raises(NotABackupError):
            parse_index(genuine, chat_id, message_id, SEAL, True)
    with pytest.raises(NotABackupError):  # the first format, from anyone but the bot
        parse_index(
            json.dumps({**document, "format": "telegram-bot-backup-index/1"}).encode(), CHAT, 1, SEAL, False
        )


KNOCK_LINES = st.builds(
    lambda name, at: f"🔔 Hand-over asked by {name} at {at}",
    st.text(alphabet="abc-_.:9Z", max_size=90) | st.text(max_size=20),
    st.text(alphabet="0123456789-T:.+Z", max_size=40) | st.just("2026-11-26T12:00:00.000+00:00"),
)


@FAST
@example("📌 Backup index of @bot\n🔔 Hand-over asked by vm-1-ab at 2026-11-26T12:00:00.000+00:00")
@given(
    st.lists(
        KNOCK_LINES | st.text(max_size=100) | st.text(min_size=900, max_size=1100) | st.just("📌" * 600),
        max_size=6,
    ).map("\n".join)
)
def test_any_index_caption_gives_a_sound_knock_or_nothing(caption):
    assert knock_in_caption(caption, SEAL, CHAT, 1) is None  # nobody but the bot seals one
    mine = Knock("vm-7-" + "x" * 75, datetime(2026, 11, 26, 12, 0, 1, 500000, tzinfo=UTC))
    written = caption_with_knock(caption, mine, SEAL, CHAT, 1)
    assert telegram_length(written) <= 1024 and knock_in_caption(written, SEAL, CHAT, 1) == mine  # never cut
    assert knock_in_caption(written, SEAL, CHAT, 2) is None  # the knock is for one message
    assert knock_in_caption(written, Seal("654321:ANOTHER-BOT-abcdefghijklmnopqr"), CHAT, 1) is None


@FAST
@given(
    st.dictionaries(
        st.sampled_from(["instance", "at", "other"]),
        st.none() | st.integers() | st.text(max_size=90) | st.lists(st.integers(), max_size=2),
    )
)
def test_any_knock_record_gives_a_knock_or_our_error(data):
    try:
        knock = Knock.from_json(data)
    except NotABackupError:
        return
    assert Knock.from_json(knock.as_json()) == knock
