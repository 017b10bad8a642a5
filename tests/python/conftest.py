"""Fixtures for the Python end-to-end tests: a real `sluice serve` on 127.0.0.1, boto3 clients
and an isolated aws CLI pointed at it.

The server is started once per test session (it is cheap to share: every test uses its own
uniquely named buckets). Readiness is the `sluice listening on URL` line on stdout, read by a
thread with a bounded wait; the process is stopped with SIGTERM at the end (then killed if it
does not exit in time).
"""

from __future__ import annotations

import base64
import dataclasses
import os
import queue
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator

import boto3
import botocore.config
import pytest
from botocore.exceptions import ClientError

REPO = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
CLI_TIMEOUT = 120.0
TENANT = "dev"
ACCESS_ID = "SLUICEPYTEST0000"
REGION = "us-east-1"
READY_RE = re.compile(r"^sluice listening on (https?://\S+)\s*$")
# The key that wraps data keys of the `vault-*` buckets (encrypted at rest, backend `vault`).
ENCRYPTION_KEY = base64.b64encode(secrets.token_bytes(32)).decode()


def ssec_key() -> str:
    """An SSE-C key as boto3 takes it: a string of 32 bytes (it base64-encodes them)."""
    return secrets.token_hex(16)


def sluice_bin() -> Path:
    path = Path(os.environ.get("SLUICE_BIN") or REPO / "target" / "debug" / "sluice")
    if not path.is_file():
        pytest.exit(
            f"sluice binary not found at {path}: build it with `cargo build -p sluice` "
            "or set SLUICE_BIN",
            returncode=2,
        )
    return path


def random_secret() -> str:
    """A 40-character secret: base64 of 30 random bytes."""
    return base64.b64encode(secrets.token_bytes(30)).decode()


@dataclasses.dataclass
class Sluice:
    """A running sluice server and everything a test needs to talk to it."""

    endpoint: str  # plain HTTP listener, e.g. http://127.0.0.1:PORT
    tls_endpoint: str  # TLS listener (self-signed dev certificate)
    ca_bundle: Path  # the dev certificate, to verify the TLS listener
    access_id: str
    secret: str
    region: str
    root: Path  # temp dir holding everything below
    config_path: Path
    data_dir: Path
    key_store: Path
    log_path: Path
    binary: Path
    process: subprocess.Popen

    def run_cli(self, *args: str, timeout: float = 30.0, check: bool = True) -> subprocess.CompletedProcess:
        """Runs `sluice ARGS --config CONFIG` (for the `keys` commands)."""
        cmd = [str(self.binary), *args, "--config", str(self.config_path)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self.root)
        if check:
            assert proc.returncode == 0, (
                f"{' '.join(cmd)} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
            )
        return proc

    def log_tail(self, n: int = 40) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no server log)"
        return "\n".join(lines[-n:])


def _write_config(root: Path, secret: str, master_key: str) -> Path:
    config = f"""\
# Written by tests/python/conftest.py
listeners:
  - bind: 127.0.0.1:0
    danger_plain_http: true
  - bind: 127.0.0.1:0
    tls: {{ cert: certs/cert.pem, key: certs/key.pem }}
s3:
  region: {REGION}
  base_domains: [s3.localhost]
limits:
  max_header_bytes: 16KiB
  header_read_timeout: 10s
  idle_timeout: 60s
  max_connections: 4096
  shutdown_grace: 5s
key_store:
  path: keys.yaml
  master_key: "{master_key}"
encryption:
  current: test-1
  keys:
    - {{ id: test-1, key: "{ENCRYPTION_KEY}" }}
backends:
  local: {{ type: local, path: srv/data }}
  vault: {{ type: local, path: srv/vault }}
tenants:
  - name: {TENANT}
    keys:
      - access_id: {ACCESS_ID}
        secret: "{secret}"
        state: active
    routes:
      - {{ bucket: "vault-*", backend: vault, encryption: required }}
      - {{ bucket: "*", backend: local }}
"""
    path = root / "sluice.yaml"
    path.write_text(config)
    return path


def _reader(stream, lines: "queue.Queue[str | None]") -> None:
    for line in iter(stream.readline, ""):
        lines.put(line)
    lines.put(None)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT)


def _run_setup(binary: Path, *args: str) -> str:
    proc = subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        pytest.fail(f"`sluice {' '.join(args)}` exited {proc.returncode}\n{proc.stdout}{proc.stderr}")
    return proc.stdout


@pytest.fixture(scope="session")
def sluice() -> Iterator[Sluice]:
    binary = sluice_bin()
    root = Path(tempfile.mkdtemp(prefix="sluice-pytest-"))
    try:
        _run_setup(binary, "dev-cert", "--out", str(root / "certs"))
        master = _run_setup(binary, "master-key").strip()
        assert len(base64.b64decode(master)) == 32, f"`sluice master-key` printed {master!r}"
        secret = random_secret()
        config_path = _write_config(root, secret, master)
        log_dir = root / "logs"
        log_dir.mkdir()
        log_path = log_dir / "server.stderr.log"
        env = dict(os.environ)
        env.setdefault("SLUICE_LOG", "info")
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [str(binary), "serve", "--config", str(config_path)],
                stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
                text=True, cwd=root, env=env,
            )
        lines: "queue.Queue[str | None]" = queue.Queue()
        threading.Thread(target=_reader, args=(process.stdout, lines), daemon=True).start()

        urls: list[str] = []
        deadline = time.monotonic() + READY_TIMEOUT
        seen: list[str] = []
        while len(urls) < 2:
            remaining = deadline - time.monotonic()
            try:
                line = lines.get(timeout=max(remaining, 0.0))
            except queue.Empty:
                _stop(process)
                pytest.fail(
                    f"sluice did not print two 'sluice listening on' lines within {READY_TIMEOUT}s; "
                    f"stdout so far: {seen!r}\nstderr:\n{log_path.read_text(errors='replace')}"
                )
            if line is None:
                process.wait(timeout=STOP_TIMEOUT)
                pytest.fail(
                    f"sluice exited ({process.returncode}) before it was ready; stdout: {seen!r}\n"
                    f"stderr:\n{log_path.read_text(errors='replace')}"
                )
            seen.append(line)
            m = READY_RE.match(line)
            if m:
                urls.append(m.group(1).rstrip("/"))
        http = [u for u in urls if u.startswith("http://")]
        https = [u for u in urls if u.startswith("https://")]
        assert len(http) == 1 and len(https) == 1, f"expected one http and one https listener, got {urls}"

        server = Sluice(
            endpoint=http[0],
            tls_endpoint=https[0],
            ca_bundle=root / "certs" / "cert.pem",
            access_id=ACCESS_ID,
            secret=secret,
            region=REGION,
            root=root,
            config_path=config_path,
            data_dir=root / "srv" / "data",
            key_store=root / "keys.yaml",
            log_path=log_path,
            binary=binary,
            process=process,
        )
        try:
            yield server
        finally:
            _stop(process)
        assert process.returncode == 0, (
            f"sluice did not exit cleanly on SIGTERM (exit status {process.returncode})\n{server.log_tail()}"
        )
    finally:
        if os.environ.get("SLUICE_KEEP_TMP"):
            print(f"\nkept sluice test dir {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# boto3

def client_config(**s3: object) -> botocore.config.Config:
    return botocore.config.Config(
        s3={"addressing_style": "path", **s3},
        retries={"max_attempts": 1, "mode": "standard"},
        connect_timeout=10,
        read_timeout=120,
        signature_version="s3v4",
    )


def make_client(
    sluice: Sluice, *, access_id: str | None = None, secret: str | None = None, tls: bool = False
):
    session = boto3.session.Session(
        aws_access_key_id=access_id or sluice.access_id,
        aws_secret_access_key=secret or sluice.secret,
        region_name=sluice.region,
    )
    return session.client(
        "s3",
        endpoint_url=sluice.tls_endpoint if tls else sluice.endpoint,
        verify=str(sluice.ca_bundle) if tls else None,
        config=client_config(),
    )


@pytest.fixture(scope="session")
def s3(sluice: Sluice):
    """A boto3 S3 client on the plain-HTTP listener (signed payloads, checksum headers)."""
    return make_client(sluice)


@pytest.fixture(scope="session")
def s3_tls(sluice: Sluice):
    """A boto3 S3 client on the TLS listener: botocore's default there is an unsigned
    aws-chunked body with a trailing x-amz-checksum-crc32."""
    return make_client(sluice, tls=True)


@pytest.fixture(params=["http", "https"])
def any_s3(request, sluice: Sluice):
    """Parametrises a test over both listeners (so over both of botocore's upload encodings)."""
    return make_client(sluice, tls=request.param == "https")


_counter = iter(range(1, 1_000_000))


def unique_bucket_name(hint: str = "b") -> str:
    hint = re.sub(r"[^a-z0-9-]+", "-", hint.lower()).strip("-")[:24].strip("-") or "b"
    return f"py-{hint}-{next(_counter)}-{uuid.uuid4().hex[:8]}"


def empty_and_delete(client, bucket: str) -> None:
    try:
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                client.delete_object(Bucket=bucket, Key=obj["Key"])
        client.delete_bucket(Bucket=bucket)
    except ClientError:
        pass


@pytest.fixture
def bucket_name(request) -> str:
    """A bucket name unique to this test (not created)."""
    return unique_bucket_name(request.node.originalname or request.node.name)


@pytest.fixture
def bucket(s3, bucket_name: str) -> Iterator[str]:
    """A freshly created, uniquely named bucket, emptied and deleted after the test."""
    s3.create_bucket(Bucket=bucket_name)
    yield bucket_name
    empty_and_delete(s3, bucket_name)


def error_code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def http_status(exc: ClientError) -> int:
    return exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)


def wait_until(condition: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.05) -> None:
    """Polls an observable condition until it holds, failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout}s waiting until {what}")
        time.sleep(interval)


# --------------------------------------------------------------------------------------------
# aws CLI (v1, from the same venv as this interpreter)

@dataclasses.dataclass
class AwsCli:
    exe: Path
    env: dict
    endpoint: str
    cwd: Path

    def __call__(self, *args: str, timeout: float = CLI_TIMEOUT, check: bool = True,
                 endpoint: bool = True) -> subprocess.CompletedProcess:
        cmd = [str(self.exe), *args]
        if endpoint:
            cmd += ["--endpoint-url", self.endpoint]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=self.env,
                              timeout=timeout, cwd=self.cwd, stdin=subprocess.DEVNULL)
        if check:
            assert proc.returncode == 0, (
                f"`aws {' '.join(args)}` exited {proc.returncode}\n"
                f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
            )
        return proc


@pytest.fixture(scope="session")
def aws(sluice: Sluice, tmp_path_factory) -> AwsCli:
    cli = aws_cli_for(sluice, tmp_path_factory.mktemp("awscli"))
    # No multipart (not implemented by sluice yet), path-style addressing, and SigV4 everywhere:
    # aws CLI v1 presigns with SigV2 unless told otherwise, and sluice speaks SigV4 only.
    cli("configure", "set", "default.s3.multipart_threshold", "5GB", endpoint=False)
    return cli


def aws_cli_for(sluice: Sluice, home: Path) -> AwsCli:
    """The aws CLI from this venv, isolated in `home`, with `sluice`'s key, path-style
    addressing and SigV4 (the CLI v1 presigns with SigV2 unless told otherwise)."""
    exe = Path(sys.executable).parent / "aws"
    if not exe.exists():
        pytest.exit(f"aws CLI not found at {exe}: install tests/python/requirements.txt", returncode=2)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID=sluice.access_id,
        AWS_SECRET_ACCESS_KEY=sluice.secret,
        AWS_DEFAULT_REGION=sluice.region,
        AWS_CONFIG_FILE=str(home / "config"),
        AWS_SHARED_CREDENTIALS_FILE=str(home / "credentials"),
        AWS_EC2_METADATA_DISABLED="true",
        AWS_PAGER="",
        AWS_MAX_ATTEMPTS="1",
        HOME=str(home),
    )
    cli = AwsCli(exe=exe, env=env, endpoint=sluice.endpoint, cwd=home)
    cli("configure", "set", "default.s3.addressing_style", "path", endpoint=False)
    cli("configure", "set", "default.s3.signature_version", "s3v4", endpoint=False)
    return cli


@pytest.fixture(scope="session")
def aws_multipart(aws: AwsCli, tmp_path_factory) -> AwsCli:
    """The aws CLI with its own AWS_CONFIG_FILE that keeps the CLI's default multipart settings
    (threshold and chunk size 8 MiB), so `aws s3 cp` / `sync` of larger files really use
    multipart uploads and ranged downloads. Path-style addressing and SigV4 as for `aws`."""
    home = tmp_path_factory.mktemp("awscli-multipart")
    env = dict(aws.env)
    env.update(
        AWS_CONFIG_FILE=str(home / "config"),
        AWS_SHARED_CREDENTIALS_FILE=str(home / "credentials"),
        HOME=str(home),
    )
    cli = AwsCli(exe=aws.exe, env=env, endpoint=aws.endpoint, cwd=home)
    cli("configure", "set", "default.s3.addressing_style", "path", endpoint=False)
    cli("configure", "set", "default.s3.signature_version", "s3v4", endpoint=False)
    config = (home / "config").read_text()
    assert "multipart" not in config, f"the multipart CLI config must keep the defaults:\n{config}"
    return cli


# --------------------------------------------------------------------------------------------
# rclone (Debian package `rclone`; tests/run.sh installs it)

RCLONE_REMOTE = "sluice"


@dataclasses.dataclass
class Rclone:
    exe: Path
    env: dict
    cwd: Path
    remote: str = RCLONE_REMOTE

    def __call__(self, *args: str, timeout: float = CLI_TIMEOUT, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [str(self.exe), *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=self.env,
                              timeout=timeout, cwd=self.cwd, stdin=subprocess.DEVNULL)
        if check:
            assert proc.returncode == 0, (
                f"`rclone {' '.join(args)}` exited {proc.returncode}\n"
                f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
            )
        return proc


@pytest.fixture(scope="session")
def rclone(sluice: Sluice, tmp_path_factory) -> Rclone:
    """rclone with an `s3` remote named `sluice` configured only through RCLONE_CONFIG_SLUICE_*
    environment variables (and an empty config file of its own), on the TLS listener with the
    dev certificate as CA: rclone sends single-part uploads as presigned PUTs with an
    UNSIGNED-PAYLOAD body, which sluice refuses on plain HTTP by policy. Retries are off so
    that a server error fails the command instead of being retried away."""
    return rclone_for(sluice, tmp_path_factory.mktemp("rclone"))


def rclone_for(sluice: Sluice, home: Path) -> Rclone:
    """rclone as the `rclone` fixture sets it up, for `sluice`, its files under `home`."""
    found = shutil.which("rclone")
    if found is None:
        pytest.skip("rclone is not installed (tests/run.sh installs the Debian package `rclone`)")
    config = home / "rclone.conf"
    config.write_text("")
    prefix = f"RCLONE_CONFIG_{RCLONE_REMOTE.upper()}_"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RCLONE_", "AWS_"))}
    env.update({
        "HOME": str(home),
        "XDG_CACHE_HOME": str(home / "cache"),
        "XDG_CONFIG_HOME": str(home / "config"),
        "RCLONE_CONFIG": str(config),
        "RCLONE_RETRIES": "1",
        "RCLONE_LOW_LEVEL_RETRIES": "1",
        "RCLONE_STATS": "0",
        f"{prefix}TYPE": "s3",
        f"{prefix}PROVIDER": "Other",
        f"{prefix}ENV_AUTH": "false",
        "RCLONE_CA_CERT": str(sluice.ca_bundle),
        f"{prefix}ENDPOINT": sluice.tls_endpoint,
        f"{prefix}ACCESS_KEY_ID": sluice.access_id,
        f"{prefix}SECRET_ACCESS_KEY": sluice.secret,
        f"{prefix}REGION": sluice.region,
        f"{prefix}FORCE_PATH_STYLE": "true",
    })
    return Rclone(exe=Path(found), env=env, cwd=home)
