"""Fixtures for the upstream end-to-end tests (`test_upstreams.py`): two independent S3 servers
started on 127.0.0.1 with signature checking on, and one dedicated Sluice in front of them.

- s3s-fs 0.14.1 (`SLUICE_S3S_FS`, else installed by `tests/upstreams/install.sh`): checks header
  SigV4, presigned URLs, payload hashes and aws-chunked signatures. No tagging,
  no ListMultipartUploads (501).
- moto in server mode (from the venv, `SLUICE_VENV` or this interpreter's): an IAM key made by
  `tests/upstreams/moto_bootstrap.py`, then authentication switched on; checks header signatures.

The Sluice has backends `local`, `fs` (s3s-fs, profile minio) and `moto` (profile generic), and
one tenant whose routes send `fs-*` to s3s-fs, `moto-*` to moto, `fsren`/`motoren` to the
upstreams' `fs-target`/`moto-target` under the key prefix `tenant-a/`, and everything else to
the local backend.

Readiness is each server's own "listening" line, read with a bounded wait (no sleeps). Everything
is stopped at the end of the session: Sluice with SIGTERM (it must exit 0), the upstreams killed.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Iterator

import boto3
import pytest
from botocore.exceptions import ClientError

from conftest import (
    ENCRYPTION_KEY,
    READY_RE,
    READY_TIMEOUT,
    REPO,
    STOP_TIMEOUT,
    AwsCli,
    aws_cli_for,
    Sluice,
    _reader,
    _run_setup,
    _stop,
    client_config,
    empty_and_delete,
    make_client,
    random_secret,
    sluice_bin,
)

START_TIMEOUT = 60.0
TENANT = "up"
ACCESS_ID = "SLUICEUPSTREAM00"
REGION = "us-east-1"
KEY_PREFIX = "tenant-a/"
FS_TARGET = "fs-target"
MOTO_TARGET = "moto-target"
ADDRESS_RE = re.compile(r"(http://127\.0\.0\.1:\d+)")


# --------------------------------------------------------------------------------------------
# Upstream servers


@dataclasses.dataclass
class Upstream:
    """An S3 server running on 127.0.0.1 as one of Sluice's upstreams."""

    kind: str  # "fs" (s3s-fs) or "moto"
    endpoint: str  # http://127.0.0.1:PORT
    access_key: str
    secret_key: str
    process: subprocess.Popen
    log_path: Path

    def client(self):
        """A boto3 client talking to the upstream directly, with the upstream's own key."""
        session = boto3.session.Session(
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=REGION,
        )
        return session.client("s3", endpoint_url=self.endpoint, config=client_config())

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=STOP_TIMEOUT)


def _drain(stream, log_path: Path, found: "queue.Queue[str | None]") -> None:
    """Copies the server's output to its log and reports the first 127.0.0.1 address seen."""
    reported = False
    with open(log_path, "a", errors="replace") as log:
        for line in iter(stream.readline, ""):
            log.write(line)
            log.flush()
            if not reported:
                m = ADDRESS_RE.search(line)
                if m:
                    found.put(m.group(1))
                    reported = True
    if not reported:
        found.put(None)


def _spawn(cmd: list[str], what: str, log_path: Path, env: dict | None = None) -> tuple[subprocess.Popen, str]:
    """Starts a server whose stdout/stderr announce `http://127.0.0.1:PORT`; returns the address."""
    process = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, env=env, errors="replace",
    )
    found: "queue.Queue[str | None]" = queue.Queue()
    threading.Thread(target=_drain, args=(process.stdout, log_path, found), daemon=True).start()
    try:
        address = found.get(timeout=START_TIMEOUT)
    except queue.Empty:
        address = None
    if address is None:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT)
        pytest.fail(f"{what} did not report its address within {START_TIMEOUT}s:\n"
                    f"{log_path.read_text(errors='replace')}")
    return process, address


def s3s_fs_bin() -> Path:
    env = os.environ.get("SLUICE_S3S_FS")
    if env:
        return Path(env)
    proc = subprocess.run(
        ["bash", str(REPO / "tests/upstreams/install.sh")],
        stdout=subprocess.PIPE, text=True, timeout=900,
    )
    if proc.returncode != 0:
        pytest.exit("installing s3s-fs with tests/upstreams/install.sh failed", returncode=2)
    return Path(proc.stdout.strip())


def venv_bin() -> Path:
    venv = os.environ.get("SLUICE_VENV")
    return Path(venv) / "bin" if venv else Path(sys.executable).parent


def start_s3s_fs(root: Path) -> Upstream:
    data = root / "data"
    data.mkdir(parents=True)
    access_key = f"S3SFS{uuid.uuid4().hex[:12].upper()}"
    secret_key = random_secret()
    env = dict(os.environ, RUST_LOG="s3s_fs=info", NO_COLOR="1")
    log_path = root / "s3s-fs.log"
    process, endpoint = _spawn(
        [str(s3s_fs_bin()), "--host", "127.0.0.1", "--port", "0",
         "--access-key", access_key, "--secret-key", secret_key, str(data)],
        "s3s-fs", log_path, env,
    )
    return Upstream("fs", endpoint, access_key, secret_key, process, log_path)


def start_moto(root: Path) -> Upstream:
    bin_dir = venv_bin()
    log_path = root / "moto.log"
    root.mkdir(parents=True, exist_ok=True)
    process, endpoint = _spawn(
        [str(bin_dir / "moto_server"), "-H", "127.0.0.1", "-p", "0"], "moto", log_path,
    )
    # moto prints its address as it binds: the bootstrap's first calls retry (boto3's own
    # bounded retries) until it answers.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_MAX_ATTEMPTS="10", AWS_RETRY_MODE="standard", AWS_EC2_METADATA_DISABLED="true")
    boot = subprocess.run(
        [str(bin_dir / "python"), str(REPO / "tests/upstreams/moto_bootstrap.py"), endpoint],
        capture_output=True, text=True, timeout=120, env=env, stdin=subprocess.DEVNULL,
    )
    if boot.returncode != 0:
        process.kill()
        pytest.fail(f"moto bootstrap failed:\n{boot.stdout}{boot.stderr}")
    access_key, secret_key = boot.stdout.split()
    return Upstream("moto", endpoint, access_key, secret_key, process, log_path)


# --------------------------------------------------------------------------------------------
# Sluice in front of them


def _backend_yaml(name: str, up: Upstream, profile: str) -> str:
    return f"""\
  {name}:
    type: s3
    profile: {profile}
    endpoint: {up.endpoint}
    region: {REGION}
    addressing: path
    access_key_id: "{up.access_key}"
    secret_access_key: "{up.secret_key}"
    connect_timeout: 5s
    first_byte_timeout: 30s
    idle_timeout: 30s
"""


def _write_config(root: Path, secret: str, master_key: str, fs: Upstream, moto: Upstream) -> Path:
    config = f"""\
# Written by tests/python/upstreams.py
listeners:
  - bind: 127.0.0.1:0
    danger_plain_http: true
    danger_accept_unsigned_payload: true
  - bind: 127.0.0.1:0
    tls: {{ cert: certs/cert.pem, key: certs/key.pem }}
s3:
  region: {REGION}
limits:
  shutdown_grace: 5s
key_store:
  path: keys.yaml
  master_key: "{master_key}"
encryption:
  current: up-1
  keys:
    - {{ id: up-1, key: "{ENCRYPTION_KEY}" }}
backends:
  local: {{ type: local, path: srv/data }}
{_backend_yaml("fs", fs, "minio")}{_backend_yaml("moto", moto, "generic")}tenants:
  - name: {TENANT}
    keys:
      - access_id: {ACCESS_ID}
        secret: "{secret}"
        state: active
    routes:
      - {{ bucket: "fsenc-*", backend: fs, encryption: required }}
      - {{ bucket: "motoenc-*", backend: moto, encryption: required }}
      - {{ bucket: "fs-*", backend: fs }}
      - {{ bucket: "moto-*", backend: moto }}
      - {{ bucket: "fsren", backend: fs, target_bucket: {FS_TARGET}, key_prefix: "{KEY_PREFIX}" }}
      - {{ bucket: "motoren", backend: moto, target_bucket: {MOTO_TARGET}, key_prefix: "{KEY_PREFIX}" }}
      - {{ bucket: "*", backend: local }}
"""
    path = root / "sluice.yaml"
    path.write_text(config)
    return path


def start_sluice(root: Path, fs: Upstream, moto: Upstream) -> Sluice:
    binary = sluice_bin()
    _run_setup(binary, "dev-cert", "--out", str(root / "certs"))
    master = _run_setup(binary, "master-key").strip()
    secret = random_secret()
    config_path = _write_config(root, secret, master, fs, moto)
    return launch_sluice(root, config_path, secret, "server")


def launch_sluice(root: Path, config_path: Path, secret: str, name: str) -> Sluice:
    """Runs `sluice serve` on `config_path` (checked first) and waits for its two listeners."""
    binary = sluice_bin()
    check = subprocess.run([str(binary), "check", "--config", str(config_path)],
                           capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, f"`sluice check` refused the config:\n{check.stdout}{check.stderr}"
    log_path = root / f"{name}.stderr.log"
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
    seen: list[str] = []
    deadline = time.monotonic() + READY_TIMEOUT
    while len(urls) < 2:
        try:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.0))
        except queue.Empty:
            _stop(process)
            pytest.fail(f"sluice did not print two 'sluice listening on' lines within {READY_TIMEOUT}s; "
                        f"stdout so far: {seen!r}\nstderr:\n{log_path.read_text(errors='replace')}")
        if line is None:
            process.wait(timeout=STOP_TIMEOUT)
            pytest.fail(f"sluice exited ({process.returncode}) before it was ready; stdout: {seen!r}\n"
                        f"stderr:\n{log_path.read_text(errors='replace')}")
        seen.append(line)
        m = READY_RE.match(line)
        if m:
            urls.append(m.group(1).rstrip("/"))
    http = [u for u in urls if u.startswith("http://")]
    https = [u for u in urls if u.startswith("https://")]
    assert len(http) == 1 and len(https) == 1, f"expected one http and one https listener, got {urls}"
    return Sluice(
        endpoint=http[0], tls_endpoint=https[0], ca_bundle=root / "certs" / "cert.pem",
        access_id=ACCESS_ID, secret=secret, region=REGION, root=root, config_path=config_path,
        data_dir=root / "srv" / "data", key_store=root / "keys.yaml", log_path=log_path,
        binary=binary, process=process,
    )


@dataclasses.dataclass
class Env:
    """The upstream servers, the Sluice in front of them and clients for all three."""

    sluice: Sluice
    fs: Upstream
    moto: Upstream
    s3: object  # boto3 on Sluice's plain-HTTP listener
    s3_tls: object  # boto3 on Sluice's TLS listener
    fs_direct: object  # boto3 on s3s-fs with its own key
    moto_direct: object  # boto3 on moto with its own key

    def client(self, tls: bool):
        return self.s3_tls if tls else self.s3

    def upstream(self, kind: str) -> Upstream:
        return {"fs": self.fs, "moto": self.moto}[kind]

    def direct(self, kind: str):
        return {"fs": self.fs_direct, "moto": self.moto_direct}[kind]

    def logs(self) -> str:
        return (f"--- sluice ---\n{self.sluice.log_tail()}\n--- s3s-fs ---\n{self.fs.log_tail(20)}\n"
                f"--- moto ---\n{self.moto.log_tail(20)}")


@pytest.fixture(scope="session")
def upstream_env() -> Iterator[Env]:
    root = Path(tempfile.mkdtemp(prefix="sluice-upstreams-"))
    started: list[Upstream] = []
    try:
        fs = start_s3s_fs(root / "s3s-fs")
        started.append(fs)
        moto = start_moto(root / "moto")
        started.append(moto)
        fs_direct, moto_direct = fs.client(), moto.client()
        fs_direct.create_bucket(Bucket=FS_TARGET)
        moto_direct.create_bucket(Bucket=MOTO_TARGET)
        sluice = start_sluice(root / "sluice", fs, moto)
        try:
            yield Env(
                sluice=sluice, fs=fs, moto=moto,
                s3=make_client(sluice), s3_tls=make_client(sluice, tls=True),
                fs_direct=fs_direct, moto_direct=moto_direct,
            )
        finally:
            _stop(sluice.process)
        assert sluice.process.returncode == 0, (
            f"sluice did not exit cleanly on SIGTERM (exit status {sluice.process.returncode})\n"
            f"{sluice.log_tail()}"
        )
    finally:
        for up in started:
            up.stop()
        if os.environ.get("SLUICE_KEEP_TMP"):
            print(f"\nkept upstream test dir {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def buckets(upstream_env: Env, request):
    """Creates uniquely named buckets through Sluice (`make(kind)`), emptied and deleted after
    the test."""
    made: list[str] = []

    def make(kind: str) -> str:
        name = unique_bucket(kind, request.node.originalname)
        upstream_env.s3.create_bucket(Bucket=name)
        made.append(name)
        return name

    yield make
    for name in made:
        abort_uploads(upstream_env.s3, name)
        empty_and_delete(upstream_env.s3, name)


def abort_uploads(client, bucket: str) -> None:
    try:
        for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
            client.abort_multipart_upload(Bucket=bucket, Key=u["Key"], UploadId=u["UploadId"])
    except ClientError:
        pass  # s3s-fs has no ListMultipartUploads


@pytest.fixture(scope="session")
def upstream_aws(upstream_env: Env, tmp_path_factory) -> AwsCli:
    """The aws CLI (v1, this venv) pointed at the upstream Sluice's plain-HTTP listener, with the
    CLI's default multipart settings (8 MiB threshold and parts), path-style and SigV4."""
    return aws_cli_for(upstream_env.sluice, tmp_path_factory.mktemp("awscli-upstreams"))


# --------------------------------------------------------------------------------------------
# Names

_counter = iter(range(1, 1_000_000))


def unique_bucket(kind: str, hint: str = "b") -> str:
    """A bucket name routed to `kind` ("local", "fs" or "moto"; "fsenc" or "motoenc" for the
    same upstreams with `encryption: required`), unique to the session."""
    prefix = {"local": "loc", "fs": "fs", "moto": "moto", "fsenc": "fsenc", "motoenc": "motoenc"}[kind]
    hint = re.sub(r"[^a-z0-9-]+", "-", hint.lower()).strip("-")[:20].strip("-") or "b"
    return f"{prefix}-{hint}-{next(_counter)}-{uuid.uuid4().hex[:8]}"
