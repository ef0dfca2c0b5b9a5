"""Where backup files live, behind one small interface.

    put(path, info)     store the backup file at `path` (streamed, never read whole into memory)
    list()              the backups there, newest first, as BackupInfo
    fetch(info, dir)    a local, readable file of that backup (may be the stored file itself)
    prune(keep)         delete all but the newest `keep`; returns what went

Implemented here: the local folder (BACKUP_DIR) and a Telegram chat; s3_destination.py adds an
S3-compatible bucket.
Each BackupInfo carries the backup's own header, so every destination can say what it holds
without the others.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Optional, Protocol

import requests
import telebot

from backup_format import NAME_PATTERN, BackupInfo, NotABackupError, human_size, read_header
from config import DEFAULT_API_URL, Settings

log = logging.getLogger(__name__)

COPY_CHUNK = 1 << 20


class DestinationError(Exception):
    """A destination could not do what was asked; the message says why in one line."""


class Destination(Protocol):
    name: str

    def put(self, path: Path, info: BackupInfo) -> BackupInfo: ...

    def list(self) -> list[BackupInfo]: ...

    def fetch(self, info: BackupInfo, workdir: Path) -> Path: ...

    def prune(self, keep: int) -> list[BackupInfo]: ...


class LocalFolder:
    """Backups as files in one folder (BACKUP_DIR), created 0600 in a folder made 0700."""

    name = "local"

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def put(self, path: Path, info: BackupInfo) -> BackupInfo:
        target = self.folder / info.name
        try:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            try:
                os.link(path, target)  # same file system: no copy, and atomic
            except OSError:
                write_atomically(target, lambda out: _copy_from(path, out))
            fsync_folder(self.folder)
        except OSError as error:
            raise DestinationError(f"cannot write to {self.folder}: {error.strerror or error}") from error
        return info.at(self.name, str(target), target.stat().st_size)

    def list(self) -> list[BackupInfo]:
        if not self.folder.is_dir():
            return []
        found = []
        for path in self.folder.iterdir():
            if not NAME_PATTERN.match(path.name):
                continue
            try:
                with open(path, "rb") as stream:
                    info = read_header(stream)
            except (OSError, NotABackupError) as error:
                log.warning("ignoring %s: %s", path, error)
                continue
            found.append(replace(info.at(self.name, str(path), path.stat().st_size), name=path.name))
        return sorted(found, key=lambda i: (i.created_at, i.name), reverse=True)

    def fetch(self, info: BackupInfo, workdir: Path) -> Path:
        return Path(info.location)

    def prune(self, keep: int) -> list[BackupInfo]:
        removed = self.list()[keep:]
        for info in removed:
            Path(info.location).unlink(missing_ok=True)
            log.info("rotated out %s", info.name)
        if removed:
            fsync_folder(self.folder)
        return removed


class TelegramChat:
    """Backups sent as documents to one chat (BACKUP_CHAT_ID) and pinned there.

    The Bot API cannot list a chat's history, so the pinned message is the index: list() returns
    the pinned backup, which is what a bot starting on an empty disk finds through getChat.
    Older messages stay in the chat as history; prune() deletes nothing. A bot may upload up to
    50 MB and download up to 20 MB (a self-hosted Bot API server lifts both).
    """

    name = "telegram"
    UPLOAD_LIMIT = 50 * 1024 * 1024
    DOWNLOAD_LIMIT = 20 * 1024 * 1024

    def __init__(self, bot: telebot.TeleBot, chat_id: int, official_api: bool = True):
        self.bot, self.chat_id = bot, chat_id
        self.official_api = official_api  # Telegram's own server: its limits are known up front
        self._username: Optional[str] = None

    @property
    def bot_username(self) -> str:
        if self._username is None:
            with _telegram_errors("ask Telegram about the bot for"):
                self._username = self.bot.get_me().username or "bot"
        return self._username

    def put(self, path: Path, info: BackupInfo) -> BackupInfo:
        size = path.stat().st_size
        if self.official_api and size > self.UPLOAD_LIMIT:
            raise TooBigForTelegram(f"not sent to Telegram: the backup is {size / 2**20:.1f} MB, over "
                                    "the 50 MB a bot may upload; use S3 for backups this large")
        visible_name = f"{self.bot_username}-{info.name}"
        with open(path, "rb") as document, _telegram_errors("send the backup to"):
            message = self.bot.send_document(self.chat_id, document, caption=caption(info, size),
                                             visible_file_name=visible_name,
                                             disable_notification=True)
        with _telegram_errors("pin the backup in"):
            self.bot.pin_chat_message(self.chat_id, message.message_id, disable_notification=True)
        return replace(info.at(self.name, message.document.file_id, size), name=visible_name)

    def list(self) -> list[BackupInfo]:
        with _telegram_errors("read the pinned message of"):
            try:
                pinned = self.bot.get_chat(self.chat_id).pinned_message
            except telebot.apihelper.ApiTelegramException as error:
                if "chat not found" in (error.description or ""):
                    # The bot has never been in this chat (an admin who has not written to it
                    # yet): certainly no backup there. Any other error may hide one.
                    return []
                raise
        document = getattr(pinned, "document", None)
        if document is None:
            return []
        info = info_from_caption(document.file_name or "", pinned.caption or "")
        if info is None:
            log.warning("the pinned message in chat %s is not a backup of this bot", self.chat_id)
            return []
        return [replace(info.at(self.name, document.file_id, document.file_size or 0),
                        name=document.file_name)]

    def fetch(self, info: BackupInfo, workdir: Path) -> Path:
        with _telegram_errors("download the backup from"):
            try:
                file = self.bot.get_file(info.location)
            except telebot.apihelper.ApiTelegramException as error:
                if "too big" in (error.description or ""):
                    raise TooBigForTelegram(
                        f"{info.size / 2**20:.1f} MB is over the 20 MB a bot may download from "
                        "Telegram: restore it from S3 or through a self-hosted Bot API server") from None
                raise
            target = workdir / (info.name or "telegram-backup")
            url = telebot.apihelper.FILE_URL.format(self.bot.token, file.file_path)
            with requests.get(url, stream=True, timeout=(10, 120)) as response:
                response.raise_for_status()
                with open(target, "wb") as out:
                    for chunk in response.iter_content(COPY_CHUNK):
                        out.write(chunk)
        return target

    def prune(self, keep: int) -> list[BackupInfo]:
        return []  # older backups stay in the chat as history


class TooBigForTelegram(DestinationError):
    """Over a Telegram size limit: the message says which and what to do instead."""


@contextmanager
def _telegram_errors(action: str) -> Iterator[None]:
    """Turn Bot API and network errors into one clear line. requests' messages spell out the
    URL, and the URL holds the bot token: only the kind of network error is kept."""
    try:
        yield
    except telebot.apihelper.ApiTelegramException as error:
        raise DestinationError(f"Telegram would not {action} the chat: {error.description}") from None
    except requests.RequestException as error:
        raise DestinationError(f"cannot reach Telegram to {action} the chat "
                               f"({type(error).__name__})") from None


def caption(info: BackupInfo, size: int) -> str:
    """What people see under the document; list() reads the rows and schema back from it."""
    rows = ", ".join(f"{table} {count}" for table, count in info.row_counts.items())
    lock = " (encrypted)" if info.encrypted else ""
    return (f"💾 Backup {info.created_at.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S} UTC, "
            f"{info.reason}{lock}\n{human_size(size)}; rows: {rows}\n"
            f"schema {info.schema_version}; sha256 {info.sha256}")


def info_from_caption(file_name: str, text: str) -> Optional[BackupInfo]:
    """Rebuild what a pinned backup says about itself from its file name and caption."""
    # "<bot username>-backup-...": usernames hold no "-", so the backup's own name follows the first
    match = NAME_PATTERN.match(file_name.split("-", 1)[-1])
    if not match:
        return None
    created_at = datetime.strptime(match.group(1), "%Y%m%dT%H%M%S%fZ").replace(tzinfo=timezone.utc)
    rows = re.search(r"rows: (.*)$", text, re.MULTILINE)
    counts = dict(re.findall(r"(\w+) (\d+)", rows.group(1))) if rows else {}
    schema = re.search(r"schema (\d+); sha256 ([0-9a-f]{64})", text)
    return BackupInfo(created_at, match.group(2), int(schema.group(1)) if schema else 0,
                      {table: int(count) for table, count in counts.items()},
                      schema.group(2) if schema else "", 0, encrypted=bool(match.group(3)))


def telegram_bot(settings: Settings, **options) -> telebot.TeleBot:
    """A TeleBot talking to TELEGRAM_API_URL (Telegram, a self-hosted Bot API server, a stand-in)."""
    telebot.apihelper.API_URL = settings.telegram_api_url + "/bot{0}/{1}"
    telebot.apihelper.FILE_URL = settings.telegram_api_url + "/file/bot{0}/{1}"
    return telebot.TeleBot(settings.bot_token, **options)


def offsite_destinations(settings: Settings, bot: Optional[telebot.TeleBot] = None) -> list[Destination]:
    """The destinations off this machine that the settings turn on."""
    found: list[Destination] = []
    if settings.backup_chat_id is not None and settings.bot_token:
        found.append(TelegramChat(bot or telegram_bot(settings), settings.backup_chat_id,
                                  official_api=settings.telegram_api_url == DEFAULT_API_URL))
    if settings.s3_bucket:
        from s3_destination import S3Bucket  # boto3 is only imported when S3 is used
        found.append(S3Bucket(settings.s3_bucket, settings.s3_prefix, settings.s3_endpoint_url))
    return found


# --- writing files so that a crash never leaves half of one --------------------------------------

def write_atomically(target: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write through a temporary file: fsync, rename over `target`, fsync the folder. Mode 0600.

    A crash at any moment leaves either the old `target` or the new one, and at worst a
    '.tmp-' file that no listing takes for a backup.
    """
    temporary = target.with_name(f".tmp-{target.name}-{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_folder(target.parent)


def remove_stale_temporaries(folder: Path) -> None:
    """Delete the '.tmp-' files and folders that a killed process left in `folder`.

    Their names end with (or, for work folders, carry) the pid of the process writing them;
    those of live processes, such as a backup command running beside the bot, are kept.
    """
    if not folder.is_dir():
        return
    for path in folder.glob(".tmp-*"):
        pid = _pid_in(path.name)
        if pid is None or _alive(pid):
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        log.info("removed %s, left by a process that stopped mid-write", path.name)


def _pid_in(name: str) -> Optional[int]:
    match = re.match(r"^\.tmp-work-(\d+)-", name) or re.search(r"-(\d+)$", name)
    return int(match.group(1)) if match else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy_from(source: Path, out: BinaryIO) -> None:
    with open(source, "rb") as stream:
        shutil.copyfileobj(stream, out, COPY_CHUNK)
