"""S3Bucket against a real S3 server (SeaweedFS on loopback, SigV4 enforced): no mocks."""

import itertools
import logging
import socket
import struct
import threading
import time
from dataclasses import replace
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import NOW
from seaweed import free_ports

import database
import startup
from backup_format import BackupError
from config import load_settings
from destinations import DestinationError
from engine import BackupEngine
from s3_destination import S3Bucket

TOKEN = "123456:AAbbCCddEEffGGhhIIjjKKll"


@pytest.fixture
def make_backups(tmp_path):
    """make_backups(n): n real backup files, one second apart, each with one more user."""
    settings = load_settings(
        {
            "BOT_TOKEN": TOKEN,
            "DB_PATH": str(tmp_path / "bot.db"),
            "BACKUP_DIR": str(tmp_path / "backups"),
            "BACKUP_KEEP": "100",
        }
    )
    db = database.open_database(settings.db_path)
    db.migrate()
    times = iter(NOW + timedelta(seconds=i) for i in range(1000))
    engine = BackupEngine(db, settings, clock=lambda: next(times))
    users = iter(range(1, 1000))

    def make(count=1):
        made = []
        for _ in range(count):
            user = next(users)
            db.track_message(user, f"user{user}", "Name", user, "message", NOW, NOW)
            made.append(engine.create("manual").info)
        return made

    yield make
    db.close()


@pytest.fixture
def bucket(s3_server, s3_env):
    return S3Bucket(s3_server.bucket, prefix=s3_env, endpoint_url=s3_server.endpoint_url)


def test_put_then_list_gives_the_backup_with_its_metadata(bucket, make_backups):
    (local,) = make_backups(1)
    stored = bucket.put(Path(local.location), local)
    assert (stored.destination, stored.location, stored.name) == (
        "s3",
        bucket.prefix + local.name,
        local.name,
    )
    assert stored.size == local.size == Path(local.location).stat().st_size

    (listed,) = bucket.list()
    assert listed == replace(local, destination="s3", location=stored.location)
    assert listed.created_at == NOW and listed.reason == "manual"
    assert listed.row_counts["users"] == 1 and listed.sha256 == local.sha256


def test_list_is_newest_first(bucket, make_backups):
    made = make_backups(3)
    for info in (made[1], made[2], made[0]):
        bucket.put(Path(info.location), info)
    assert [i.name for i in bucket.list()] == [i.name for i in reversed(made)]


def test_fetch_returns_the_same_bytes(bucket, make_backups, tmp_path):
    (local,) = make_backups(1)
    bucket.put(Path(local.location), local)
    workdir = tmp_path / "work"
    workdir.mkdir()
    fetched = bucket.fetch(bucket.list()[0], workdir)
    assert fetched == workdir / local.name
    assert fetched.read_bytes() == Path(local.location).read_bytes()


def test_delete_removes_exactly_the_backups_given(bucket, make_backups):
    made = make_backups(3)
    for info in made:
        bucket.put(Path(info.location), info)
    listed = bucket.list()
    bucket.delete([listed[1]])
    assert [i.name for i in bucket.list()] == [made[2].name, made[0].name]


def test_the_engine_keeps_exactly_backup_keep_in_the_bucket(s3_server, s3_env, tmp_path):
    settings = load_settings(
        {
            "BOT_TOKEN": TOKEN,
            "DB_PATH": str(tmp_path / "bot.db"),
            "BACKUP_KEEP": "2",
            "BACKUP_CHAT_ID": "off",
            "S3_BUCKET": s3_server.bucket,
            "S3_PREFIX": s3_env,
            "S3_ENDPOINT_URL": s3_server.endpoint_url,
        }
    )
    db = database.open_database(settings.db_path)
    db.migrate()
    ticks = itertools.count()
    engine = startup.backup_engine(
        db, settings, startup.offsite(settings), clock=lambda: NOW + timedelta(seconds=next(ticks))
    )
    made = []
    for user in range(1, 5):
        db.track_message(user, None, "N", user, "message", NOW, NOW)
        made.append(engine.create("manual").info)
    db.close()
    in_bucket = S3Bucket(s3_server.bucket, s3_env, s3_server.endpoint_url).list()
    assert [i.name for i in in_bucket] == [made[3].name, made[2].name]


def test_encrypted_copies_are_listed(bucket, make_backups):
    (local,) = make_backups(1)
    encrypted = replace(local, name=local.name + ".sealed", encrypted=True)
    bucket.put(Path(local.location), encrypted)
    (listed,) = bucket.list()
    assert listed.name.endswith(".db.zst.sealed") and listed.encrypted


def test_other_objects_are_ignored_and_bad_metadata_skipped(bucket, s3_server, make_backups, caplog):
    (local,) = make_backups(1)
    bucket.put(Path(local.location), local)
    client = s3_server.client()
    for key in ("notes.txt", "nested/" + local.name, "backup-20200101T000000000Z-manual.db.zst"):
        client.put_object(Bucket=s3_server.bucket, Key=bucket.prefix + key, Body=b"x")
    with caplog.at_level(logging.WARNING):
        assert [i.name for i in bucket.list()] == [local.name]
    assert "metadata is incomplete" in caplog.text


def test_wrong_secret_key_is_reported_without_the_secret(bucket, make_backups, monkeypatch):
    (local,) = make_backups(1)
    wrong = "wRoNgSeCrEt" + "x" * 29
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", wrong)
    for attempt in (bucket.list, lambda: bucket.put(Path(local.location), local)):
        with pytest.raises(DestinationError) as caught:
            attempt()
        message = str(caught.value)
        assert "credentials" in message and "SignatureDoesNotMatch" in message
        assert wrong not in message and "\n" not in message


def test_unknown_access_key_is_reported(s3_server, s3_env, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKNOBODY")
    with pytest.raises(
        DestinationError, match=r"credentials \(InvalidAccessKeyId\): check AWS_ACCESS_KEY_ID"
    ):
        S3Bucket(s3_server.bucket, s3_env, s3_server.endpoint_url).list()


def test_missing_bucket_is_reported(s3_server, s3_env, make_backups):
    (local,) = make_backups(1)
    missing = S3Bucket("no-such-bucket", s3_env, s3_server.endpoint_url)
    for attempt in (missing.list, lambda: missing.put(Path(local.location), local)):
        with pytest.raises(
            DestinationError, match=r"^S3 bucket 'no-such-bucket' does not exist \(NoSuchBucket\)$"
        ):
            attempt()


def test_missing_object_is_reported(bucket, make_backups, tmp_path):
    (local,) = make_backups(1)
    ghost = replace(local, destination="s3", location=bucket.prefix + local.name)
    with pytest.raises(DestinationError, match="S3 has no object"):
        bucket.fetch(ghost, tmp_path)


def test_unreachable_endpoint_fails_within_seconds(s3_env, make_backups):
    (local,) = make_backups(1)
    (port,) = free_ports(1)  # closed: nothing listens there
    unreachable = S3Bucket("backups", s3_env, f"http://127.0.0.1:{port}")
    for attempt in (unreachable.list, lambda: unreachable.put(Path(local.location), local)):
        started = time.monotonic()
        with pytest.raises(
            DestinationError, match=rf"^cannot reach S3 at http://127.0.0.1:{port}: Connection refused$"
        ):
            attempt()
        assert time.monotonic() - started < 5


def test_missing_credentials_are_reported(s3_server, s3_env, monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    for name in ("AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"):
        monkeypatch.setenv(name, str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)
    with pytest.raises(
        DestinationError, match=r"^no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY$"
    ):
        S3Bucket(s3_server.bucket, s3_env, s3_server.endpoint_url).list()


@pytest.mark.parametrize("given, used", [("", ""), ("/", ""), ("bot", "bot/"), ("/bot/db//", "bot/db/")])
def test_prefix_is_a_folder(given, used):
    assert S3Bucket("backups", given).prefix == used


def test_a_wiped_disk_comes_back_from_the_bucket(s3_server, s3_env, tmp_path):
    import startup

    def settings(folder):
        return load_settings(
            {
                "BOT_TOKEN": "123456:AAbbCCddEEffGGhhIIjjKKll",
                "DB_PATH": str(tmp_path / folder / "bot.db"),
                "BACKUP_CHAT_ID": "off",
                "S3_BUCKET": s3_server.bucket,
                "S3_PREFIX": s3_env,
                "S3_ENDPOINT_URL": s3_server.endpoint_url,
            }
        )

    first = settings("first-instance")
    db, engine, report = startup.prepare_database(first, startup.offsite(first))
    db.track_message(42, "ann", "Ann", 42, "message", NOW, NOW)
    result = engine.create("manual")
    assert [info.destination for info in result.stored] == ["local", "s3"]
    db.close()
    report.lock.release()

    second = settings("second-instance")  # nothing on this disk
    db, engine, report = startup.prepare_database(second, startup.offsite(second))
    assert report.restored.destination == "s3" and report.restored.name == result.info.name
    assert db.user(42)["username"] == "ann"
    db.close()
    report.lock.release()


class GarbageS3:
    """An 'S3 endpoint' that answers every request with garbage: an HTML 502 from a proxy, a 200
    whose body is not S3's XML, or a connection reset."""

    def __init__(self, mode):
        class Handler(BaseHTTPRequestHandler):
            def handle_one_request(self):
                if mode == "reset":
                    self.rfile.readline()
                    # SO_LINGER 0: closing sends a reset, as a crashing proxy would
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    return
                super().handle_one_request()

            def answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                status, body = (
                    (502, b"<html><body>502 Bad Gateway</body></html>")
                    if mode == "html"
                    else (200, b"\x00\xffnot xml at all<<<")
                )
                self.send_response(status)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = answer

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("mode", ["html", "not-xml", "reset"])
def test_garbage_from_s3_is_a_one_line_failure_and_the_local_backup_is_made(mode, s3_env, tmp_path):
    garbage = GarbageS3(mode)
    try:
        settings = load_settings(
            {
                "BOT_TOKEN": TOKEN,
                "DB_PATH": str(tmp_path / "bot.db"),
                "BACKUP_CHAT_ID": "off",
                "S3_BUCKET": "backups",
                "S3_PREFIX": s3_env,
                "S3_ENDPOINT_URL": garbage.url,
            }
        )
        db = database.open_database(settings.db_path)
        db.migrate()
        db.track_message(1, None, "N", 1, "message", NOW, NOW)
        bucket = S3Bucket("backups", s3_env, garbage.url)
        engine = BackupEngine(db, settings, [bucket])
        with pytest.raises(DestinationError) as caught:
            bucket.list()
        assert "\n" not in str(caught.value) and "<html>" not in str(caught.value)
        result = engine.create("manual")  # a PUT answered 200 with garbage is caught by the read-back
        assert [i.destination for i in result.stored] == ["local"]
        assert "\n" not in result.failures["s3"] and "<html>" not in result.failures["s3"]
        ghost = replace(result.info, destination="s3", location=bucket.prefix + result.info.name)
        with pytest.raises(BackupError) as refused:
            engine.verify(ghost)
        assert "\n" not in str(refused.value)
        assert [u.destination for u in engine.listing().unreachable] == ["s3"]
        db.close()
    finally:
        garbage.close()


def test_a_chain_of_change_backups_comes_back_from_the_bucket_encrypted(s3_server, s3_env, tmp_path):
    """The bucket holds the same pieces as the local folder (the full backup and the deltas after
    it, each encrypted); a wiped disk gets the newest restore point back through them."""

    def settings(folder):
        return load_settings(
            {
                "BOT_TOKEN": "123456:AAbbCCddEEffGGhhIIjjKKll",
                "DB_PATH": str(tmp_path / folder / "bot.db"),
                "BACKUP_CHAT_ID": "off",
                "S3_BUCKET": s3_server.bucket,
                "S3_PREFIX": s3_env,
                "S3_ENDPOINT_URL": s3_server.endpoint_url,
                "BACKUP_PASSPHRASE": "correct horse battery staple",
            }
        )

    first = settings("first-instance")
    db, engine, report = startup.prepare_database(first, startup.offsite(first))
    with db.transaction() as conn:  # enough rows that a few more are far less than the whole
        conn.executemany(
            "INSERT INTO users (user_id, username, first_seen, last_seen) VALUES (?, ?, 0, 0)",
            [(n, f"user{n}" * 5) for n in range(10_000, 30_000)],
        )
    engine.create("manual")
    for user in range(1, 6):
        db.track_message(user, f"person{user}", "P", user, "message", NOW, NOW)
        newest = engine.create("change")
    assert newest.info.delta is not None and len(newest.info.delta.chain) == 2  # full, c, d
    in_bucket = {info.piece: info for info in engine.listing("s3").backups}
    assert {*newest.info.delta.chain, newest.info.piece} <= set(in_bucket)
    assert all(info.encrypted for info in in_bucket.values())
    db.close()
    report.lock.release()

    second = settings("second-instance")  # nothing on this disk
    db, engine, report = startup.prepare_database(second, startup.offsite(second))
    assert report.restored.destination == "s3" and report.restored.piece == newest.info.piece
    assert [db.user(user)["username"] for user in range(1, 6)] == [f"person{u}" for u in range(1, 6)]
    db.close()
    report.lock.release()
