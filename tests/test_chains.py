"""Change backups that carry only the changed pages: each restore point rebuilt from its full
backup and its deltas is byte for byte the snapshot it stands for, whatever happened between
(writes, deletes, a VACUUM, a schema migration); a missing, damaged or misplaced piece ends the
chain at the last state that verifies, and the admins are told."""

import shutil
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import NOW, sql
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import database
import deltas
from backup_format import BackupError, read_header
from chains import rebuild
from config import load_settings
from engine import BackupEngine
from offsite_copies import retention

TOKEN = "123456:AAbbCCddEEffGGhhIIjjKKll"
NEWEST_SCHEMA = len(database.find_migrations())


class Clock:
    def __init__(self):
        self.now = NOW

    def __call__(self):
        self.now += timedelta(seconds=1)
        return self.now


def make(folder: Path, schema: int | None = None, users: int = 1500, **env):
    """A database with `users` people in it (so a few changed pages are much less than the
    whole), its engine (local folder only) and what the admins were told."""
    shutil.rmtree(folder, ignore_errors=True)
    settings = load_settings(
        {"BOT_TOKEN": TOKEN, "DB_PATH": str(folder / "data" / "bot.db"), "BACKUP_KEEP": "3", **env}
    )
    db = database.open_database(settings.db_path)
    db.migrate(up_to=schema)
    add_users(db, 0, users)
    told = []
    return db, BackupEngine(db, settings, clock=Clock(), alert=told.append), told


def add_users(db, first: int, count: int) -> None:
    with db.transaction() as conn:
        conn.executemany(
            "INSERT OR REPLACE INTO users (user_id, username, first_name, first_seen, last_seen)"
            " VALUES (?, ?, ?, ?, ?)",
            [(n, f"user{n}", "Name " * 8, 0, 0) for n in range(first, first + count)],
        )


def snapshot_of(engine) -> bytes:
    """The snapshot the newest backup stands for (DB_PATH.backup is it, moved into place)."""
    return engine.plain_copy.read_bytes()


def rebuilt(engine, wanted, workdir: Path):
    workdir.mkdir(exist_ok=True)
    return rebuild(
        wanted,
        engine.local.list(),
        lambda piece, folder: Path(piece.location),
        workdir,
        None,
        lambda piece: False,
    )


def vacuum(db):
    with db.lock:
        db._connection.execute("VACUUM")


OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(1, 60)),
        st.tuples(st.just("delete"), st.integers(1, 400)),
        st.tuples(st.just("rename"), st.integers(0, 1500)),
        st.just(("vacuum", 0)),
        st.just(("migrate", 0)),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=OPERATIONS)
def test_every_restore_point_is_byte_for_byte_its_snapshot(tmp_path, operations):
    db, engine, _ = make(tmp_path / "bot", schema=NEWEST_SCHEMA - 1)
    try:
        engine.create("startup")
        deltas_made, added = 0, 1500
        for step, (kind, amount) in enumerate(operations):
            if kind == "add":
                add_users(db, added, amount)
                added += amount
            elif kind == "delete":
                sql(db, "DELETE FROM users WHERE user_id IN (SELECT user_id FROM users LIMIT ?)", (amount,))
            elif kind == "rename":
                sql(db, "UPDATE users SET username = 'renamed' WHERE user_id = ?", (amount,))
            elif kind == "vacuum":
                vacuum(db)
            else:
                db.migrate()
            result = engine.create("change")
            if result.skipped:
                continue
            deltas_made += result.info.delta is not None
            state = rebuilt(engine, result.info, tmp_path / f"work{step}")
            assert state.shortfall is None
            assert state.path.read_bytes() == snapshot_of(engine)
        # a change of a few rows is a few pages, not the database
        if deltas_made:
            newest = engine.local.list()[0]
            assert newest.delta is None or newest.delta.pages < newest.delta.page_count
    finally:
        db.close()


def chain_of(tmp_path, changes: int = 21):
    """A full backup and `changes` on-change backups after it, each adding a few people; the
    snapshot each one stands for, by name."""
    db, engine, told = make(tmp_path / "bot", users=20_000)
    engine.create("startup")
    snapshots = {engine.newest_local().piece: snapshot_of(engine)}
    for n in range(changes):
        add_users(db, 100_000 + 3 * n, 3)
        info = engine.create("change").info
        snapshots[info.piece] = snapshot_of(engine)
    return db, engine, told, snapshots


def test_levels_keep_every_restore_point_within_four_deltas_and_rotation_keeps_whole_chains(tmp_path):
    db, engine, _, _ = chain_of(tmp_path, changes=21)
    try:
        kept = engine.local.list()
        newest = kept[0]
        # the 21st delta: 111 in base 4: it builds on the full, the 16th (b) and the 20th (c)
        assert (newest.delta.number, newest.delta.level) == (21, 4)
        assert len(newest.delta.chain) == 3
        assert {info.piece for info in kept} == {*newest.delta.chain, newest.piece}
        assert [deltas.level_of(n) for n in (1, 4, 16, 64, 128, 255, 256, 1024)] == [4, 3, 2, 1, 1, 4, 1, 1]
    finally:
        db.close()


def test_retention_never_drops_a_piece_a_kept_restore_point_needs(tmp_path):
    db, engine, _, _ = chain_of(tmp_path, changes=6)
    try:
        backups = engine.local.list()
        for keep in range(1, 4):
            left = [info for info in backups if info not in retention(backups, keep)]
            names = {info.piece for info in left}
            for info in left:
                assert info.delta is None or set(info.delta.chain) <= names
    finally:
        db.close()


def damage_missing(path: Path) -> None:
    path.unlink()


def damage_flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF  # inside the compressed pages
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [damage_missing, damage_flip])
@pytest.mark.parametrize("which", [1, 2])
def test_a_broken_chain_restores_the_last_state_that_verifies_and_says_so(tmp_path, damage, which):
    db, engine, _, snapshots = chain_of(tmp_path)
    newest = engine.local.list()[0]
    pieces = {info.piece: info for info in engine.local.list()}
    broken = pieces[newest.delta.chain[which]] if which < len(newest.delta.chain) else newest
    damage(Path(broken.location))
    previous = ([*newest.delta.chain, newest.piece])[which - 1]
    try:
        with pytest.raises(BackupError, match="its chain ends early"):
            engine.restore(newest, by_person=False)  # never less than the restore point asked for
        outcome = engine.restore_newest()  # the startup's: the next candidate, that state whole
        assert outcome.restored.piece == previous
        assert Path(engine.settings.db_path).exists()
        assert outcome.passed_over[0].info.piece == newest.piece  # and why it was passed over
        assert "chain ends early" in outcome.passed_over[0].reason
        # the live data is that state: the people it had, no more
        (tmp_path / "expected.db").write_bytes(snapshots[previous])
        with sqlite3.connect(tmp_path / "expected.db") as expected:
            wanted = expected.execute("SELECT count(*) FROM users").fetchone()[0]
        assert sql(db, "SELECT count(*) FROM users")[0][0] == wanted
    finally:
        db.close()


def test_a_piece_out_of_its_place_ends_the_chain_before_it(tmp_path):
    """Two pieces swapped (each where the other should be): the first of them no longer builds on
    the state before it, so the chain ends there."""
    db, engine, _, snapshots = chain_of(tmp_path)
    newest = engine.local.list()[0]
    pieces = {info.piece: info for info in engine.local.list()}
    first, second = (Path(pieces[name].location) for name in newest.delta.chain[1:3])
    a, b = first.read_bytes(), second.read_bytes()
    first.write_bytes(b)
    second.write_bytes(a)
    try:
        with pytest.raises(BackupError, match="its chain ends early"):
            engine.restore(newest, by_person=False)  # never less than the restore point asked for
        engine.restore_newest()  # the startup's: some candidate, restored whole
        counts = set()
        for data in snapshots.values():
            (tmp_path / "expected.db").write_bytes(data)
            with sqlite3.connect(tmp_path / "expected.db") as expected:
                counts.add(expected.execute("SELECT count(*) FROM users").fetchone()[0])
        assert sql(db, "SELECT count(*) FROM users")[0][0] in counts  # a state a backup took, no half one
    finally:
        db.close()


def test_a_delta_alone_is_refused_with_a_clear_message(tmp_path):
    db, engine, _, _ = chain_of(tmp_path, changes=2)
    try:
        newest = engine.local.list()[0]
        with pytest.raises(BackupError, match="through its chain"):
            engine.verify(Path(newest.location))
        with open(newest.location, "rb") as stream:
            assert read_header(stream).delta.number == 2
    finally:
        db.close()


@pytest.mark.e2e
def test_a_crash_on_an_emptied_disk_brings_back_every_user_the_last_change_backup_held(
    fake, run_bot, tmp_path
):
    """A real main.py with the chat as its only place off the machine: people register in a
    stream, each burst backed up as a delta; the process is killed (no final backup) and its
    disk emptied; the next instance restores the full backup and the deltas from the chat, and
    every person the newest on-change backup held is back."""
    from bot_process import ADMIN_ID
    from helpers import backups_in_chat, users_in
    from test_handover import CHAT, Users, serving

    def newest_users():
        backups = backups_in_chat(fake, CHAT)
        return backups[0]["row_counts"]["users"] if backups else 0

    seed = tmp_path / "a" / "data" / "bot.db"
    seed.parent.mkdir(parents=True)
    db = database.open_database(str(seed))
    db.migrate()
    add_users(db, 1, 20_000)  # a database worth sending pieces of
    db.close()
    env = {"BACKUP_CHAT_ID": str(CHAT), "BACKUP_AFTER_CHANGE_SECONDS": "1"}
    first = run_bot(folder="a", **env)
    serving(first)
    users = Users(fake, first_id=900_000)
    for _ in range(3):
        for _ in range(2):
            users.one()
        fake.wait_for(
            lambda: newest_users() == 20_000 + len(users.answered),
            30,
            "an on-change backup holding everyone answered",
        )
    newest = backups_in_chat(fake, CHAT)[0]
    assert newest["delta"]["chain"]  # a piece of a chain, not a whole database
    first.kill()  # no SIGTERM: no final backup
    shutil.rmtree(first.workdir / "data")
    second = run_bot(folder="b", HANDOVER_WAIT_SECONDS="3", **env)
    serving(second)
    assert newest["name"].split("-", 1)[1] in second.log()  # that restore point, through its chain
    assert second.stop()[0] == 0
    assert users_in(second.db_path) >= {*range(1, 20_001), *users.answered} - {ADMIN_ID}


def test_the_newest_backup_downloaded_is_whole_even_when_it_is_a_delta(tmp_path):
    """📥 Download latest gives one file that restores alone: the chain applied and packed."""
    from backup_format import unpack_and_verify

    db, engine, _, snapshots = chain_of(tmp_path, changes=3)
    try:
        newest = engine.newest_local()
        assert newest.delta is not None
        with engine.exported_newest() as (path, info):
            assert info.delta is None and path.name.endswith("-change.db.zst")
            work = tmp_path / "opened"
            work.mkdir()
            opened, state = unpack_and_verify(path, work)
            assert opened.sha256 == newest.sha256
            assert state.read_bytes() == snapshots[newest.piece]
    finally:
        db.close()


def test_scheduled_backups_are_side_pieces_kept_as_history_with_the_full_one_they_need(tmp_path):
    """A scheduled backup after a full one that is history (not an on-change one) carries every
    page changed since it, beside the chain: kept by rotation with that full backup, restored
    from the two, and the chain of on-change backups goes on after it."""
    db, engine, _, snapshots = chain_of(tmp_path, changes=5)
    try:
        add_users(db, 200_000, 10)
        side = engine.create("scheduled").info
        assert side.delta.number == deltas.SIDE and side.delta.chain == (engine.local.list()[-1].piece,)
        side_state = snapshot_of(engine)
        add_users(db, 300_000, 3)
        after = engine.create("change").info
        assert after.delta.number == 6  # the chain went on
        kept = {info.piece for info in engine.local.list()}
        assert side.piece in kept and set(side.delta.chain) <= kept
        state = rebuilt(engine, side, tmp_path / "side")
        assert state.shortfall is None and state.path.read_bytes() == side_state
        newest = rebuilt(engine, after, tmp_path / "after")
        assert newest.shortfall is None and newest.path.read_bytes() == snapshot_of(engine)
        assert snapshots  # (the chain's own states are checked elsewhere)
    finally:
        db.close()


def test_a_damaged_piece_is_taken_from_another_place_that_holds_it(tmp_path):
    """The same pieces in two places: a piece damaged in one is read from the other, and the
    restore point comes back whole, without a shortfall."""
    from destinations import LocalFolder

    class Elsewhere(LocalFolder):
        name = "elsewhere"

    db, _, _ = make(tmp_path / "bot", users=20_000)
    engine = BackupEngine(
        db, engine_settings(tmp_path / "bot"), offsite=[Elsewhere(tmp_path / "elsewhere")], clock=Clock()
    )
    try:
        engine.create("startup")
        for n in range(5):
            add_users(db, 100_000 + 3 * n, 3)
            engine.create("change")
        expected = snapshot_of(engine)
        newest = engine.newest_local()
        local_pieces = {info.piece: info for info in engine.local.list()}
        damaged = Path(local_pieces[newest.delta.chain[1]].location)
        other = tmp_path / "elsewhere" / damaged.name
        content = other.read_bytes()
        other.unlink()  # a copy of its own (the folders share a disk: the file was linked)
        other.write_bytes(content)
        damage_flip(damaged)
        state = rebuild(
            newest,
            engine.listing().backups,
            lambda piece, folder: Path(piece.location),
            tmp_path,
            None,
            lambda piece: False,
        )
        assert state.shortfall is None and state.path.read_bytes() == expected
    finally:
        db.close()


def engine_settings(folder: Path):
    return load_settings({"BOT_TOKEN": TOKEN, "DB_PATH": str(folder / "data" / "bot.db"), "BACKUP_KEEP": "3"})


def test_after_a_restore_on_an_empty_disk_the_chain_goes_on_instead_of_a_full_upload(tmp_path):
    """A wake or a hand-over restores the newest restore point; when every place off the machine
    holds its pieces, the next on-change backup is the chain's next delta, and it restores."""
    from destinations import LocalFolder

    class Elsewhere(LocalFolder):
        name = "elsewhere"

    elsewhere = [Elsewhere(tmp_path / "elsewhere")]
    db, _, _ = make(tmp_path / "first", users=20_000)
    first = BackupEngine(db, engine_settings(tmp_path / "first"), offsite=elsewhere, clock=Clock())
    first.create("startup")
    for n in range(5):
        add_users(db, 100_000 + 3 * n, 3)
        first.create("change")
    before = first.newest_local()
    db.close()

    settings = engine_settings(tmp_path / "second")  # an empty disk
    db = database.open_database(settings.db_path)
    clock = Clock()
    clock.now += timedelta(minutes=5)
    second = BackupEngine(db, settings, offsite=elsewhere, clock=clock)
    try:
        assert second.restore_newest().restored.piece == before.piece
        add_users(db, 300_000, 3)
        after = second.create("change").info
        assert after.delta is not None and after.delta.number == before.delta.number + 1
        assert after.delta.chain[0] == before.delta.chain[0]  # the same full backup
        state = rebuild(
            after,
            second.listing("elsewhere").backups,
            lambda piece, folder: Path(piece.location),
            tmp_path,
            None,
            lambda piece: False,
        )
        assert state.shortfall is None and state.path.read_bytes() == snapshot_of(second)
    finally:
        db.close()


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=80),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=6),
    max_leaves=20,
)
DELTA_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        key: JSON | st.integers(0, 70_000)
        for key in ("level", "number", "base_sha256", "chain", "page_size", "page_count", "pages")
    },
)


@settings(max_examples=300, deadline=None)
@given(delta=st.one_of(JSON, DELTA_FIELDS))
def test_whatever_a_delta_header_says_the_answer_is_a_backup_or_not_a_backup(delta):
    import io
    import json
    import struct

    from backup_format import FORMAT_DELTA, SKIPPABLE_MAGIC, NotABackupError

    header = {
        "format": FORMAT_DELTA,
        "created_at": "2026-11-26T12:00:00.000+00:00",
        "reason": "change",
        "schema_version": 4,
        "row_counts": {"users": 1},
        "sha256": "a" * 64,
        "db_size": 4096,
        "delta": delta,
    }
    payload = json.dumps(header).encode()
    try:
        info = read_header(io.BytesIO(struct.pack("<II", SKIPPABLE_MAGIC, len(payload)) + payload))
    except NotABackupError:
        return
    assert info.delta.page_count * info.delta.page_size == info.db_size


@settings(max_examples=200, deadline=None)
@given(records=st.binary(max_size=3000), pages=st.integers(0, 3))
def test_whatever_the_records_hold_applying_them_is_done_or_refused(records, pages):
    import io

    delta = deltas.Delta(4, 1, "a" * 64, ("backup-20261126T120000000Z-manual.db.zst",), 512, 2, pages)
    target = io.BytesIO(bytes(1024))
    try:
        carried = deltas.apply_records(io.BytesIO(records), target, delta)
    except deltas.DeltaError:
        return
    assert len(carried) <= pages and len(target.getvalue()) == 1024


def test_a_damaged_full_backup_is_taken_from_another_place_and_without_one_refused(tmp_path):
    from destinations import LocalFolder

    class Elsewhere(LocalFolder):
        name = "elsewhere"

    db, _, _ = make(tmp_path / "bot", users=20_000)
    engine = BackupEngine(
        db, engine_settings(tmp_path / "bot"), offsite=[Elsewhere(tmp_path / "elsewhere")], clock=Clock()
    )
    try:
        engine.create("startup")
        for n in range(2):
            add_users(db, 100_000 + 3 * n, 3)
            engine.create("change")
        expected, newest = snapshot_of(engine), engine.newest_local()
        full = Path(engine.local.list()[-1].location)
        other = tmp_path / "elsewhere" / full.name
        content = other.read_bytes()
        other.unlink()  # a copy of its own (the folders share a disk: the file was linked)
        other.write_bytes(content)
        damage_flip(full)

        def state():
            return rebuild(
                newest,
                engine.listing().backups,
                lambda p, f: Path(p.location),
                tmp_path,
                None,
                lambda p: False,
            )

        assert state().shortfall is None and state().path.read_bytes() == expected
        damage_flip(other)
        with pytest.raises(BackupError, match="corrupt"):
            state()
    finally:
        db.close()
