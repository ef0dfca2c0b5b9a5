"""Backups as objects in an S3 bucket: AWS, or any S3-compatible store (MinIO, SeaweedFS, R2, ...),
and the writer's lease beside them (S3Lease: head.json and knock.json, lease.py).

Each backup is the object PREFIX + its file name, carrying the backup's header as object metadata
(info_to_metadata), so listing needs no downloads. Encrypted copies (NAME.sealed) are listed too.
Credentials come the AWS way (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_DEFAULT_REGION or
~/.aws files); this module never takes, logs or prints them. Every failure is a DestinationError
with one line that says what to fix.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import boto3
from boto3.exceptions import RetriesExceededError, S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from backup_format import NAME_PATTERN, BackupInfo, NotABackupError, info_from_metadata, info_to_metadata
from destinations import DestinationError, Stale
from lease import Head, Knock, fence

log = logging.getLogger(__name__)

CONNECT_TIMEOUT, READ_TIMEOUT = 5, 60  # seconds: an unreachable endpoint fails within seconds
HEAD_NAME = "head.json"  # who writes the backups in this prefix (lease.Head)
KNOCK_NAME = "knock.json"  # the latest request to that writer to hand over (lease.Knock)
PROBE_NAME = "conditional-writes-probe"  # written twice at a start: does the bucket honour If-None-Match?
MAX_HEAD_BYTES = 64 * 1024
PRECONDITION_FAILED = ("PreconditionFailed", "412", "ConditionalRequestConflict", "409")  # 409: AWS, racing
CONDITIONAL_TRIES = 3
TRANSFER = TransferConfig(multipart_chunksize=8 << 20, max_concurrency=2)  # streamed, ~16 MB at most
CREDENTIALS = {
    "SignatureDoesNotMatch": "check AWS_SECRET_ACCESS_KEY",
    "InvalidAccessKeyId": "check AWS_ACCESS_KEY_ID",
    "ExpiredToken": "the session token has expired: renew AWS_SESSION_TOKEN",
    "InvalidToken": "check AWS_SESSION_TOKEN",
}


class S3Place:
    """One bucket and prefix, its client, and its errors in one line: what the backups
    (S3Bucket) and the writer's lease (S3Lease) share."""

    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None, client=None):
        self.bucket, self.endpoint_url, self._client = bucket, endpoint_url, client
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""

    @property
    def client(self):
        if self._client is None:
            compatible = {
                "s3": {"addressing_style": "path"},
                "request_checksum_calculation": "when_required",
                "response_checksum_validation": "when_required",
            }
            config = Config(
                connect_timeout=CONNECT_TIMEOUT,
                read_timeout=READ_TIMEOUT,
                retries={"max_attempts": 2, "mode": "standard"},
                **(compatible if self.endpoint_url else {}),
            )
            try:
                self._client = boto3.session.Session().client(
                    "s3", endpoint_url=self.endpoint_url, config=config
                )
            except ValueError as error:  # botocore says "Invalid endpoint: URL"
                raise DestinationError(f"cannot use S3 endpoint {self.endpoint_url!r}: {error}") from error
        return self._client

    @contextmanager
    def errors(self, key: str = "") -> Iterator[None]:
        try:
            yield
        except (BotoCoreError, ClientError, S3UploadFailedError, RetriesExceededError, OSError) as error:
            raise DestinationError(self._explain(error, key)) from error

    def _explain(self, error: BaseException, key: str) -> str:
        """One line, without secrets, saying what went wrong and what to check."""
        if isinstance(error, (S3UploadFailedError, RetriesExceededError)):
            cause = getattr(error, "last_exception", None) or error.__context__
            return self._explain(cause, key) if cause else f"S3 transfer failed: {error}".splitlines()[0]
        if isinstance(error, (NoCredentialsError, PartialCredentialsError)):
            return "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        if isinstance(error, (BotoConnectionError, HTTPClientError)):
            return (
                f"cannot reach S3 at {self.endpoint_url or self.client.meta.endpoint_url}: {_reason(error)}"
            )
        if isinstance(error, ClientError):
            return self._explain_code(_code(error), error, key)
        if isinstance(error, OSError):
            where = f" ({error.filename})" if error.filename else ""
            return f"S3 transfer failed on this machine{where}: {error.strerror or error}"
        return f"S3 request failed: {type(error).__name__}"

    def _explain_code(self, code: str, error: ClientError, key: str) -> str:
        if code in CREDENTIALS:
            return f"S3 rejected the credentials ({code}): {CREDENTIALS[code]}"
        if code in ("AccessDenied", "403"):
            return (
                f"S3 denied access to bucket '{self.bucket}' ({code}): check the credentials "
                "(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) and their permissions"
            )
        if code == "NoSuchBucket":
            return f"S3 bucket '{self.bucket}' does not exist (NoSuchBucket)"
        if code in ("404", "NoSuchKey"):
            where = f"object '{key}' in bucket '{self.bucket}'" if key else f"bucket '{self.bucket}'"
            return f"S3 has no {where} ({code})"
        if code in (
            "PermanentRedirect",
            "AuthorizationHeaderMalformed",
            "IllegalLocationConstraintException",
        ):
            return f"S3 bucket '{self.bucket}' is in another region ({code}): set AWS_DEFAULT_REGION"
        if code == "RequestTimeTooSkewed":
            return "S3 refused the request (RequestTimeTooSkewed): this machine's clock is wrong"
        message = str(error.response.get("Error", {}).get("Message") or "").splitlines()[:1]
        return f"S3 refused the request ({code})" + (f": {message[0][:200]}" if message else "")


class S3Bucket:
    """Backups as objects under the place's prefix in one bucket."""

    name = "s3"

    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None, client=None):
        self.place = S3Place(bucket, prefix, endpoint_url, client)
        self.lease = S3Lease(self.place)  # the head that fences what is put here
        self.bucket, self.prefix = self.place.bucket, self.place.prefix
        self._errors = self.place.errors

    @property
    def client(self):
        return self.place.client

    def put(self, path: Path, info: BackupInfo) -> BackupInfo:
        fence(self.lease.read_head(), info.generation, info.writer)
        key = self.prefix + info.name
        with self._errors():
            self.client.upload_file(
                str(path), self.bucket, key, Config=TRANSFER, ExtraArgs={"Metadata": info_to_metadata(info)}
            )
            size = Path(path).stat().st_size
        return info.at(self.name, key, size)

    def list(self) -> list[BackupInfo]:
        found = []
        with self._errors():
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix, Delimiter="/"
            )
            for page in pages:
                for item in page.get("Contents", []):
                    info = self._describe(item["Key"], item["Size"])
                    if info is not None:
                        found.append(info)
        return sorted(found, key=lambda i: (i.order, i.name), reverse=True)

    def fetch(self, info: BackupInfo, workdir: Path) -> Path:
        target = Path(workdir) / info.name
        with self._errors(info.location):
            self.client.download_file(self.bucket, info.location, str(target), Config=TRANSFER)
        return target

    def delete(self, backups: Sequence[BackupInfo]) -> None:
        for info in backups:
            with self._errors(info.location):
                self.client.delete_object(Bucket=self.bucket, Key=info.location)

    def _describe(self, key: str, size: int) -> BackupInfo | None:
        """The backup at `key` from its metadata; None (and a warning) when it is not one."""
        name = key.rsplit("/", 1)[-1]
        if not NAME_PATTERN.match(name):  # a backup's name, plain or age-encrypted
            return None
        try:
            metadata = self.client.head_object(Bucket=self.bucket, Key=key).get("Metadata", {})
            info = info_from_metadata(metadata)
        except NotABackupError as error:
            log.warning("ignoring s3://%s/%s: %s", self.bucket, key, error)
            return None
        except ClientError as error:
            if _code(error) not in ("404", "NoSuchKey"):
                raise
            return None  # deleted since the listing
        return replace(info.at(self.name, key, size), name=name)


class S3Lease:
    """The writer's head (PREFIX + head.json) and the knock (PREFIX + knock.json).

    Where the bucket honours conditional writes (If-Match / If-None-Match on PutObject: AWS
    since 2024, R2, MinIO, SeaweedFS), the head is replaced only if it is still the one that was
    read and fenced: two instances claiming at once, exactly one succeeds and the other learns
    it is stale, with no settle wait (`compare_and_set`). Elsewhere the head is read, fenced and
    written, and the lifecycle lets claims settle and reads them back."""

    name = "s3"

    def __init__(self, place: S3Place):
        self.place = place
        self._conditional: bool | None = None  # asked once, the first time it matters

    @property
    def compare_and_set(self) -> bool:
        """The bucket refuses a write whose condition fails (asked once per process: a probe
        object written twice, the second time only if absent). False while it cannot be asked."""
        if self._conditional is None:
            try:
                self._conditional = self._probe_conditional_writes()
            except DestinationError as error:
                log.debug("could not ask whether S3 honours conditional writes: %s", error)
                return False
            log.info("S3 %s conditional writes", "honours" if self._conditional else "ignores")
        return self._conditional

    def _probe_conditional_writes(self) -> bool:
        key = self.place.prefix + PROBE_NAME
        with self.place.errors(key):
            self.place.client.put_object(Bucket=self.place.bucket, Key=key, Body=b"probe")
            try:
                self.place.client.put_object(
                    Bucket=self.place.bucket, Key=key, Body=b"probe", IfNoneMatch="*"
                )
            except ClientError as error:
                if _code(error) in PRECONDITION_FAILED:
                    return True
                if _code(error) in ("NotImplemented", "501", "InvalidArgument", "400"):
                    return False
                raise
            return False  # the condition was ignored: the object was replaced

    def read_head(self) -> Head | None:
        """The writer's record, the object PREFIX + head.json; None when there is none (or it is
        not one: it came from outside, and is reported)."""
        return self._read_record(HEAD_NAME, Head.from_json)[0]

    def read_knock(self, keep_on_top: bool = False) -> Knock | None:
        return self._read_record(KNOCK_NAME, Knock.from_json)[0]

    def knock(self, knock: Knock) -> None:
        self._write_record(KNOCK_NAME, knock.as_json())

    def _read_record(self, name: str, parse) -> tuple:
        """The record and its ETag; (None, None) when there is no object, (None, etag) when
        the object is not a record."""
        key = self.place.prefix + name
        with self.place.errors(key):
            try:
                answer = self.place.client.get_object(Bucket=self.place.bucket, Key=key)
                body = answer["Body"].read(MAX_HEAD_BYTES + 1)
            except ClientError as error:
                if _code(error) in ("404", "NoSuchKey"):
                    return None, None
                raise
        try:
            if len(body) > MAX_HEAD_BYTES:
                raise NotABackupError("the record is implausibly large")
            return parse(json.loads(body)), answer.get("ETag")
        except (ValueError, RecursionError, NotABackupError) as error:
            log.warning("ignoring s3://%s/%s: %s", self.place.bucket, key, error)
            return None, answer.get("ETag")

    def _write_record(self, name: str, record: dict, **condition) -> None:
        key = self.place.prefix + name
        with self.place.errors(key):
            self.place.client.put_object(
                Bucket=self.place.bucket,
                Key=key,
                Body=json.dumps(record).encode(),
                ContentType="application/json",
                **condition,
            )

    def write_head(self, head: Head) -> None:
        if not self.compare_and_set:
            fence(self.read_head(), head.generation, head.writer)
            self._write_record(HEAD_NAME, head.as_json())
            return
        for _ in range(CONDITIONAL_TRIES):
            current, etag = self._read_record(HEAD_NAME, Head.from_json)
            fence(current, head.generation, head.writer)
            try:
                self._write_record(
                    HEAD_NAME, head.as_json(), **({"IfMatch": etag} if etag else {"IfNoneMatch": "*"})
                )
                return
            except DestinationError as error:
                if not _precondition_failed(error):
                    raise
            # Someone wrote the head between this read and this write: read it again. One of
            # the same generation or newer, of another instance, won the claim.
            won, _ = self._read_record(HEAD_NAME, Head.from_json)
            if won is not None and won.generation >= head.generation and won.writer != head.writer:
                raise Stale(
                    f"{won.writer} claimed generation {won.generation} at the same time; this one "
                    f"is generation {head.generation}"
                )
        raise DestinationError("the writer's record in S3 kept changing while this instance wrote it")


def _precondition_failed(error: DestinationError) -> bool:
    cause = error.__cause__
    return isinstance(cause, ClientError) and _code(cause) in PRECONDITION_FAILED


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", "unknown"))


def _reason(error: BotoCoreError) -> str:
    if isinstance(error, ConnectTimeoutError):
        return f"no connection within {CONNECT_TIMEOUT} s"
    if isinstance(error, ReadTimeoutError):
        return f"no answer within {READ_TIMEOUT} s"
    match = re.search(r"\[Errno -?\d+\] ([^)'\"]+)", str(getattr(error, "kwargs", {}).get("error", "")))
    return match.group(1).strip() if match else type(error).__name__
