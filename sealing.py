"""Encrypting backups that leave the machine (BACKUP_PASSPHRASE), as streams.

A sealed file is two short lines, then an age file (https://age-encryption.org, through pyrage):

    telegram-bot-backup-sealed/1
    scrypt <salt, base64> <log2 N>
    age-encryption.org/v1 ...            X25519 recipient, ChaCha20-Poly1305 in 64 KiB chunks

The passphrase and the salt give, through scrypt (N = 2^15, r = 8: 32 MB and a tenth of a second),
an age X25519 identity; the backup is encrypted to it. Unlike age's own passphrase mode, this
streams (pyrage has no streaming passphrase mode: it held the file twice in memory) and costs a
bounded, small amount of memory (pyrage picked a scrypt work factor by timing the machine: 19
here, 512 MB, more than a small instance has). Each process seals with one salt, so the key is
derived once. `python backup.py decrypt FILE` opens a sealed file by hand.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import threading
from pathlib import Path
from typing import BinaryIO

import bech32
import pyrage

SEALED_MAGIC = b"telegram-bot-backup-sealed/1\n"
LOG_N = 15  # scrypt's work factor for sealing: 2^15 * 1 KB = 32 MB of memory
MAX_WORK_FACTOR = 20  # beyond 2^20 * 1 KB = 1 GB of memory a file is refused, whatever it says
SALT_BYTES = 16
_KDF_LINE = re.compile(rb"^scrypt ([A-Za-z0-9+/]{22}) ([0-9]{1,2})\n$")


class SealError(Exception):
    """A file could not be sealed or opened; the message is one line."""


class Sealer:
    """Seals and opens files with one passphrase; derived keys are kept for the process."""

    def __init__(self, passphrase: str):
        self._passphrase = passphrase.encode()
        self._salt = os.urandom(SALT_BYTES)  # one per process: the key is derived once
        self._identities: dict[tuple[bytes, int], pyrage.x25519.Identity] = {}
        self._lock = threading.Lock()

    def seal(self, source: Path, target: Path) -> None:
        identity = self._identity(self._salt, LOG_N)
        header = SEALED_MAGIC + b"scrypt " + _b64(self._salt) + b" %d\n" % LOG_N
        try:
            with open(source, "rb") as plain, _private(target) as out:
                out.write(header)
                pyrage.encrypt_io(plain, out, [identity.to_public()])
        except (OSError, pyrage.EncryptError) as error:
            raise SealError(
                f"cannot encrypt the backup: {getattr(error, 'strerror', None) or error}"
            ) from None

    def open(self, source: Path, target: Path) -> None:
        """Decrypt a sealed file into `target`; its work factor is checked before any work."""
        with open(source, "rb") as stream:
            if stream.read(len(SEALED_MAGIC)) != SEALED_MAGIC:
                raise SealError("damaged backup: it is not an encrypted backup")
            salt, log_n = _kdf_line(stream.readline(64))
            self._check_cost(log_n)
            self._decrypt(stream, target, [self._identity(salt, log_n)])

    def _decrypt(self, stream: BinaryIO, target: Path, identities) -> None:
        try:
            with _private(target) as out:
                pyrage.decrypt_io(stream, out, identities)
        except pyrage.DecryptError:
            raise SealError(
                "cannot decrypt the backup: wrong BACKUP_PASSPHRASE, or the encrypted file is damaged"
            ) from None
        except OSError as error:
            raise SealError(f"cannot decrypt the backup in {target.parent}: {error.strerror}") from None

    def _identity(self, salt: bytes, log_n: int) -> pyrage.x25519.Identity:
        with self._lock:
            key = (salt, log_n)
            if key not in self._identities:
                secret = hashlib.scrypt(
                    self._passphrase,
                    salt=SEALED_MAGIC + salt,
                    n=1 << log_n,
                    r=8,
                    p=1,
                    maxmem=(1 << log_n) * 1024 + (16 << 20),
                    dklen=32,
                )
                encoded = bech32.bech32_encode("age-secret-key-", bech32.convertbits(list(secret), 8, 5))
                self._identities[key] = pyrage.x25519.Identity.from_str(encoded.upper())
            return self._identities[key]

    @staticmethod
    def _check_cost(log_n: int) -> None:
        """Refuse, before any work, a file whose key derivation would take absurd memory."""
        memory = 1024 << log_n  # scrypt's 128 * r * N bytes (r = 8)
        spare = spare_memory()
        if log_n > MAX_WORK_FACTOR or (spare is not None and memory > spare // 2):
            allowed = f"{spare // 2 >> 20} MB" if spare else "less"
            raise SealError(
                f"refused: decrypting this backup would take {memory >> 20} MB of memory "
                f"(scrypt work factor {log_n}); this machine can spare {allowed}"
            )


def is_sealed(start: bytes) -> bool:
    """Whether a file starting with `start` is a sealed (encrypted) backup."""
    return start.startswith(SEALED_MAGIC)


def _kdf_line(line: bytes) -> tuple[bytes, int]:
    match = _KDF_LINE.match(line)
    if not match:
        raise SealError("damaged backup: its encryption header is not readable")
    return base64.b64decode(match.group(1) + b"=="), int(match.group(2))


def spare_memory() -> int | None:
    """Bytes of memory this process may still use: what the kernel calls available, and what
    the container's cgroup allows beyond what it uses; None when neither can be read."""
    found = []
    try:
        meminfo = Path("/proc/meminfo").read_text()
        found.append(int(re.search(r"^MemAvailable:\s+(\d+) kB", meminfo, re.M).group(1)) * 1024)
    except (OSError, AttributeError, ValueError):
        pass
    for limit_file, used_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        try:
            limit = Path(limit_file).read_text().strip()
            if limit != "max" and int(limit) < 1 << 60:
                found.append(max(int(limit) - int(Path(used_file).read_text()), 0))
        except (OSError, ValueError):
            pass
    return min(found) if found else None


def _b64(data: bytes) -> bytes:
    return base64.b64encode(data).rstrip(b"=")


def _private(target: Path) -> BinaryIO:
    return open(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb")
