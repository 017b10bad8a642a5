"""Encryption at rest on independent upstream S3 servers (s3s-fs and moto), through real clients.

Buckets named `fsenc-*` and `motoenc-*` route to s3s-fs and moto with `encryption: required`.
What is stored is checked straight at the upstream, never by asking Sluice: with the upstream's
own key (a direct GET of the stored object) and, for s3s-fs, by reading its files from disk.
Tampering is done there too: bytes flipped, files truncated or swapped, envelopes forged.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import random
import secrets
import subprocess
from pathlib import Path
from typing import Iterator

import pytest
from botocore.exceptions import ClientError

from conftest import _stop, aws_cli_for, empty_and_delete, error_code, make_client, rclone_for, ssec_key
from upstreams import (  # noqa: F401  (fixtures are used by name)
    REGION,
    Env,
    Upstream,
    _backend_yaml,
    buckets,
    launch_sluice,
    unique_bucket,
    upstream_env,
)

MIB = 1 << 20
SEGMENT = 65_536
KINDS = ["fs", "moto"]


def stored_len(plain: int) -> int:
    """Format v1: a stream's stored size for `plain` bytes (docs/ENCRYPTION.md)."""
    segments = max(1, -(-plain // SEGMENT))
    return plain + 16 * segments + 104


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def multipart_etag(parts: list[bytes]) -> str:
    return f'"{hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest()}-{len(parts)}"'


@pytest.fixture
def enc_buckets(upstream_env: Env, request):
    """`make(kind)`: a bucket on upstream `kind` behind an `encryption: required` route, made
    through Sluice; emptied and deleted after the test."""
    made: list[str] = []

    def make(kind: str) -> str:
        name = unique_bucket(f"{kind}enc", request.node.originalname)
        upstream_env.s3.create_bucket(Bucket=name)
        made.append(name)
        return name

    yield make
    for name in made:
        # Directly: a tampered object must not stop the clean-up.
        direct = upstream_env.direct("fs" if name.startswith("fsenc") else "moto")
        empty_and_delete(direct, name)


def s3s_fs_files(up: Upstream, bucket: str) -> dict[str, Path]:
    """s3s-fs keeps an object as a file under <root>/<bucket>/<key>: key -> file, its own
    metadata files left out."""
    root = up.log_path.parent / "data" / bucket
    return {
        str(p.relative_to(root)): p
        for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    }


def stored_bytes(env: Env, kind: str, bucket: str, key: str) -> bytes:
    """The object as the upstream holds it, asked with the upstream's own key."""
    return env.direct(kind).get_object(Bucket=bucket, Key=key)["Body"].read()


def assert_ciphertext(stored: bytes, plain: bytes) -> None:
    assert stored[:4] == b"SLCE", "the stored object does not start with a stream header"
    step = max(1, (len(plain) - 64) // 40)
    for at in range(0, max(len(plain) - 63, 0), step):
        assert plain[at:at + 64] not in stored, f"plaintext bytes {at}..{at + 64} stored upstream"


@contextlib.contextmanager
def fresh_sluice(env: Env, name: str) -> Iterator[object]:
    """A second Sluice on the same config (its own local data directory): nothing remembered,
    so what it shows of upstream objects comes from the stored bytes alone."""
    root = env.sluice.root
    text = env.sluice.config_path.read_text().replace("path: srv/data", f"path: srv/{name}")
    config = root / f"{name}.yaml"
    config.write_text(text)
    other = launch_sluice(root, config, env.sluice.secret, name)
    try:
        yield make_client(other)
    finally:
        _stop(other.process)


@pytest.mark.parametrize("kind", KINDS)
def test_objects_are_ciphertext_upstream_and_plaintext_to_clients(upstream_env: Env, enc_buckets, kind):
    s3 = upstream_env.s3
    bucket = enc_buckets(kind)
    written = {}
    for size in [0, 1, SEGMENT, 100_000, 200_001]:
        data = os.urandom(size)
        key = f"dir/obj-{size}"
        put = s3.put_object(Bucket=bucket, Key=key, Body=data, Metadata={"mine": "kept"})
        assert put["ETag"] == f'"{md5(data)}"'
        assert put["ServerSideEncryption"] == "AES256"
        head = s3.head_object(Bucket=bucket, Key=key)
        assert (head["ContentLength"], head["ETag"]) == (size, f'"{md5(data)}"')
        assert head["Metadata"] == {"mine": "kept"}, "Sluice's own metadata is never shown"
        assert head["ServerSideEncryption"] == "AES256"
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == data
        written[key] = data

        # At the upstream: ciphertext of the format's size, the envelope in metadata.
        direct = upstream_env.direct(kind).head_object(Bucket=bucket, Key=key)
        assert direct["ContentLength"] == stored_len(size)
        assert direct["Metadata"]["sluice-sys-sluice-enc"].startswith("v1;seg=16;kek=up-1;dk=")
        assert_ciphertext(stored_bytes(upstream_env, kind, bucket, key), data)
    if kind == "fs":
        files = s3s_fs_files(upstream_env.fs, bucket)
        assert set(files) == set(written)
        for key, data in written.items():
            assert_ciphertext(files[key].read_bytes(), data)

    expected = {k: (len(d), f'"{md5(d)}"') for k, d in written.items()}
    v2 = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert {o["Key"]: (o["Size"], o["ETag"]) for o in v2} == expected
    v1 = s3.list_objects(Bucket=bucket, Prefix="dir/")["Contents"]
    assert {o["Key"]: (o["Size"], o["ETag"]) for o in v1} == expected


def test_listing_from_stored_bytes_alone_with_multipart_and_plaintext_objects(upstream_env: Env, enc_buckets):
    """A Sluice that wrote nothing lists the bucket: single-part and multipart objects show
    their plaintext sizes and ETags, read from the stored bytes; objects put into the upstream
    directly (before encryption, say) show as they are and read back unchanged."""
    s3 = upstream_env.s3
    bucket = enc_buckets("fs")
    single = os.urandom(300_000)
    s3.put_object(Bucket=bucket, Key="single", Body=single)
    parts = [os.urandom(5 * MIB + 1), os.urandom(5 * MIB + 77), os.urandom(333)]
    upload = s3.create_multipart_upload(Bucket=bucket, Key="multi")["UploadId"]
    etags = {}
    for n in (3, 1, 2):
        etags[n] = s3.upload_part(Bucket=bucket, Key="multi", UploadId=upload, PartNumber=n,
                                  Body=parts[n - 1])["ETag"]
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key="multi", UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etags[n]} for n in (1, 2, 3)]})
    assert done["ETag"] == multipart_etag(parts)
    legacy = os.urandom(5000)
    upstream_env.fs_direct.put_object(Bucket=bucket, Key="legacy", Body=legacy)
    tiny = b"tiny"
    upstream_env.fs_direct.put_object(Bucket=bucket, Key="tiny", Body=tiny)
    whole = b"".join(parts)
    expected = {
        "legacy": (len(legacy), f'"{md5(legacy)}"'),
        "multi": (len(whole), multipart_etag(parts)),
        "single": (len(single), f'"{md5(single)}"'),
        "tiny": (len(tiny), f'"{md5(tiny)}"'),
    }

    def listing(client) -> dict:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, PaginationConfig={"PageSize": 2})
        found = {o["Key"]: (o["Size"], o["ETag"]) for p in pages for o in p.get("Contents", [])}
        # s3s-fs lists no ETags: plaintext objects are shown as the upstream lists them.
        for plain in ["legacy", "tiny"]:
            found[plain] = (found[plain][0], expected[plain][1])
        return found

    assert listing(s3) == expected
    with fresh_sluice(upstream_env, "cold-listing") as cold:
        assert listing(cold) == expected
        assert listing(cold) == expected, "the second listing (remembered) agrees"
        head = cold.head_object(Bucket=bucket, Key="multi")
        assert (head["ContentLength"], head["ETag"]) == expected["multi"]
        assert cold.get_object(Bucket=bucket, Key="multi")["Body"].read() == whole
        assert cold.get_object(Bucket=bucket, Key="legacy")["Body"].read() == legacy
        assert "ServerSideEncryption" not in cold.head_object(Bucket=bucket, Key="legacy")
        b = len(parts[0])
        got = cold.get_object(Bucket=bucket, Key="multi", Range=f"bytes={b - 3}-{b + 3}")["Body"].read()
        assert got == whole[b - 3:b + 4]
        assert cold.get_object(Bucket=bucket, Key="multi", PartNumber=2)["Body"].read() == parts[1]


@pytest.mark.parametrize("kind", KINDS)
def test_random_ranges_across_segments_and_parts(upstream_env: Env, enc_buckets, kind):
    s3 = upstream_env.s3
    bucket = enc_buckets(kind)
    parts = [os.urandom(5 * MIB + 3), os.urandom(2 * SEGMENT + 5)]
    upload = s3.create_multipart_upload(Bucket=bucket, Key="r")["UploadId"]
    etags = [s3.upload_part(Bucket=bucket, Key="r", UploadId=upload, PartNumber=n + 1, Body=p)["ETag"]
             for n, p in enumerate(parts)]
    s3.complete_multipart_upload(
        Bucket=bucket, Key="r", UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": n + 1, "ETag": e} for n, e in enumerate(etags)]})
    data = b"".join(parts)
    n = len(data)
    rng = random.Random(7)
    # Every segment edge of both parts, the part boundary, the ends.
    edges = [k * SEGMENT for k in range(1, len(parts[0]) // SEGMENT + 1)]
    edges += [len(parts[0]) + k * SEGMENT for k in range(0, len(parts[1]) // SEGMENT + 1)]
    ranges = [(e - 1, e) for e in edges] + [(e - 2, e + 2) for e in edges]
    ranges += [(0, 0), (n - 1, n - 1), (1, n - 2)]
    for _ in range(120):
        a = rng.randrange(n)
        ranges.append((a, min(n - 1, a + rng.choice([0, 10, 5000, SEGMENT, 3 * SEGMENT]))))
    for a, b in ranges:
        got = s3.get_object(Bucket=bucket, Key="r", Range=f"bytes={a}-{b}")
        assert got["ContentRange"] == f"bytes {a}-{b}/{n}"
        assert got["Body"].read() == data[a:b + 1], (a, b)
    assert s3.get_object(Bucket=bucket, Key="r", Range="bytes=-100")["Body"].read() == data[-100:]
    assert s3.get_object(Bucket=bucket, Key="r", Range=f"bytes={n - 70_000}-")["Body"].read() == data[-70_000:]
    assert s3.get_object(Bucket=bucket, Key="r", PartNumber=2)["Body"].read() == parts[1]


def test_aws_cli_odd_parts_sync_and_rclone_check(upstream_env: Env, enc_buckets, tmp_path: Path):
    bucket = enc_buckets("fs")
    home = tmp_path / "awscli"
    home.mkdir()
    aws = aws_cli_for(upstream_env.sluice, home)
    aws("configure", "set", "default.s3.multipart_threshold", str(5 * MIB + 3), endpoint=False)
    aws("configure", "set", "default.s3.multipart_chunksize", str(5 * MIB + 3), endpoint=False)
    src = tmp_path / "tree"
    (src / "sub").mkdir(parents=True)
    big = os.urandom(11 * MIB + 9)
    (src / "big.bin").write_bytes(big)
    for i, size in enumerate([0, 10, 70_000, 300_000]):
        (src / "sub" / f"f{i}.bin").write_bytes(os.urandom(size))
    aws("s3", "sync", str(src), f"s3://{bucket}/tree/")
    again = aws("s3", "sync", str(src), f"s3://{bucket}/tree/", "--dryrun").stdout
    assert again.strip() == "", again
    out = tmp_path / "big.out"
    aws("s3", "cp", f"s3://{bucket}/tree/big.bin", str(out))
    assert out.read_bytes() == big
    stored = s3s_fs_files(upstream_env.fs, bucket)["tree/big.bin"].read_bytes()
    assert len(stored) == sum(stored_len(p) for p in [5 * MIB + 3, 5 * MIB + 3, MIB + 3])
    assert_ciphertext(stored, big)

    (tmp_path / "rclone").mkdir()
    rclone = rclone_for(upstream_env.sluice, tmp_path / "rclone")
    check = rclone("check", str(src), f"{rclone.remote}:{bucket}/tree")
    assert "0 differences found" in check.stderr, check.stderr


def test_tampered_stored_bytes_are_never_served(upstream_env: Env, enc_buckets):
    """Damage done at the upstream (s3s-fs's files): a flipped bit in the first segment fails
    the request before the response; later damage cuts the body; a truncated object, two
    objects swapped, and an envelope naming an unknown key all fail; nothing wrong is served."""
    s3 = upstream_env.s3
    bucket = enc_buckets("fs")
    size = 5 * SEGMENT + 17
    originals = {k: os.urandom(size) for k in ["first", "late", "cut", "a", "b", "swapped"]}
    for key, data in originals.items():
        s3.put_object(Bucket=bucket, Key=key, Body=data)
    files = s3s_fs_files(upstream_env.fs, bucket)

    def flip(path: Path, at: int) -> None:
        raw = bytearray(path.read_bytes())
        raw[at] ^= 0x01
        path.write_bytes(bytes(raw))

    flip(files["first"], 32 + 5)
    flip(files["late"], 32 + 3 * (SEGMENT + 16) + 5)
    raw = files["cut"].read_bytes()
    files["cut"].write_bytes(raw[:-(SEGMENT + 16 + 72)])
    a, b = files["a"].read_bytes(), files["b"].read_bytes()
    files["a"].write_bytes(b)
    files["b"].write_bytes(a)
    # Segments 1 and 2 of one object change places (each still a valid sealed segment).
    raw = files["swapped"].read_bytes()
    seg = lambda i: raw[32 + i * (SEGMENT + 16):32 + (i + 1) * (SEGMENT + 16)]  # noqa: E731
    files["swapped"].write_bytes(raw[:32] + seg(0) + seg(2) + seg(1) + raw[32 + 3 * (SEGMENT + 16):])

    def status_of_read(key: str, **extra) -> int | str:
        """The error status, the name of the error a cut body raised, or "served"."""
        try:
            s3.get_object(Bucket=bucket, Key=key, **extra)["Body"].read()
        except ClientError as e:
            return e.response["ResponseMetadata"]["HTTPStatusCode"]
        except Exception as e:  # noqa: BLE001: a body cut short (urllib3/botocore errors)
            return type(e).__name__
        return "served"

    assert status_of_read("first") == 500
    assert status_of_read("first", Range="bytes=0-10") == 500
    late = status_of_read("late")
    assert late not in ("served", 500), late  # the response began, then was cut short
    assert status_of_read("late", Range=f"bytes={3 * SEGMENT + 1}-{3 * SEGMENT + 9}") == 500
    assert s3.get_object(Bucket=bucket, Key="late", Range="bytes=0-99")["Body"].read() == originals["late"][:100]
    assert status_of_read("cut") not in ("served", 200)
    swapped = status_of_read("swapped")
    assert swapped not in ("served", 500), swapped  # segment 0 went out, then the body was cut
    assert status_of_read("swapped", Range=f"bytes={SEGMENT + 5}-{SEGMENT + 10}") == 500
    assert s3.get_object(Bucket=bucket, Key="swapped", Range="bytes=0-9")["Body"].read() == originals["swapped"][:10]
    for key in ["a", "b"]:
        assert status_of_read(key) == 500
        assert status_of_read(key, Range="bytes=200000-200010") == 500

    # An envelope naming a key the keyring lacks, forged at the upstream.
    stored = upstream_env.fs_direct.get_object(Bucket=bucket, Key="first")
    envelope = stored["Metadata"]["sluice-sys-sluice-enc"].replace("kek=up-1", "kek=up-9")
    upstream_env.fs_direct.put_object(Bucket=bucket, Key="forged", Body=stored["Body"].read(),
                                      Metadata={"sluice-sys-sluice-enc": envelope})
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="forged")
    assert error_code(e.value) == "InternalError"


@pytest.mark.parametrize("kind", KINDS)
def test_copies_and_upload_part_copy_stay_encrypted(upstream_env: Env, enc_buckets, buckets, kind):
    s3 = upstream_env.s3
    bucket = enc_buckets(kind)
    plain_bucket = buckets("local")
    data = os.urandom(5 * MIB + 11)  # UploadPartCopy's first part must be 5 MiB
    s3.put_object(Bucket=bucket, Key="src", Body=data)
    s3.put_object(Bucket=plain_bucket, Key="plain-src", Body=data)
    s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "src"})
    s3.copy_object(Bucket=bucket, Key="from-plain", CopySource={"Bucket": plain_bucket, "Key": "plain-src"})
    s3.copy_object(Bucket=plain_bucket, Key="out", CopySource={"Bucket": bucket, "Key": "src"})
    for b, key in [(bucket, "copy"), (bucket, "from-plain"), (plain_bucket, "out")]:
        got = s3.get_object(Bucket=b, Key=key)
        assert got["Body"].read() == data and got["ETag"] == f'"{md5(data)}"', (b, key)
    for key in ["copy", "from-plain"]:
        assert_ciphertext(stored_bytes(upstream_env, kind, bucket, key), data)

    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    p1 = s3.upload_part_copy(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=1,
                             CopySource={"Bucket": plain_bucket, "Key": "plain-src"})
    p2 = s3.upload_part_copy(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=2,
                             CopySource={"Bucket": bucket, "Key": "src"}, CopySourceRange="bytes=10-5009")
    s3.complete_multipart_upload(
        Bucket=bucket, Key="mp", UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": p1["CopyPartResult"]["ETag"]},
                                   {"PartNumber": 2, "ETag": p2["CopyPartResult"]["ETag"]}]})
    assert s3.get_object(Bucket=bucket, Key="mp")["Body"].read() == data + data[10:5010]


# --------------------------------------------------------------------------------------------
# Rotation: a new current key, `sluice scan`, `sluice rewrap`, rewrapping copies

KEY_1 = base64.b64encode(secrets.token_bytes(32)).decode()
KEY_2 = base64.b64encode(secrets.token_bytes(32)).decode()


def rotation_config(root: Path, env: Env, name: str, keys: dict[str, str], current: str) -> Path:
    """A Sluice of its own: `fsenc-*` on the session's s3s-fs and everything else on a local
    backend, both `required`, wrapping under `keys` (id -> base64)."""
    certs = env.sluice.root / "certs"
    key_lines = "".join(f'    - {{ id: {i}, key: "{k}" }}\n' for i, k in keys.items())
    text = f"""\
listeners:
  - bind: 127.0.0.1:0
    danger_plain_http: true
    danger_accept_unsigned_payload: true
  - bind: 127.0.0.1:0
    tls: {{ cert: {certs}/cert.pem, key: {certs}/key.pem }}
s3:
  region: {REGION}
limits:
  shutdown_grace: 5s
encryption:
  current: {current}
  keys:
{key_lines}backends:
  vault: {{ type: local, path: srv/vault }}
{_backend_yaml("fs", env.fs, "minio")}tenants:
  - name: rot
    keys:
      - access_id: {env.sluice.access_id}
        secret: "{env.sluice.secret}"
        state: active
    routes:
      - {{ bucket: "fsenc-*", backend: fs, encryption: required }}
      - {{ bucket: "*", backend: vault, encryption: required }}
"""
    path = root / f"{name}.yaml"
    path.write_text(text)
    return path


@contextlib.contextmanager
def running(root: Path, config: Path, env: Env) -> Iterator[object]:
    server = launch_sluice(root, config, env.sluice.secret, config.stem)
    try:
        yield make_client(server)
    finally:
        _stop(server.process)
    assert server.process.returncode == 0, server.log_tail()


def sluice_cli(env: Env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(env.sluice.binary), *args], capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)


def findings(proc: subprocess.CompletedProcess) -> dict[str, str]:
    """`sluice scan`/`rewrap` output: key -> finding."""
    return {line.split("\t", 1)[1]: line.split("\t", 1)[0] for line in proc.stdout.splitlines() if line}


def test_rotation_rewrap_and_scan_keep_stored_bytes(upstream_env: Env, tmp_path: Path):
    env = upstream_env
    root = tmp_path / "rotation"
    root.mkdir()
    old = rotation_config(root, env, "old", {"k1": KEY_1}, "k1")
    both = rotation_config(root, env, "both", {"k1": KEY_1, "k2": KEY_2}, "k2")
    new_only = rotation_config(root, env, "new-only", {"k2": KEY_2}, "k2")
    fs_bucket, local_bucket = unique_bucket("fsenc", "rotation"), "rotation-local"
    data = {f"obj-{i}": os.urandom(size) for i, size in enumerate([0, 70_000, 200_001, 5])}
    parts = [os.urandom(5 * MIB + 1), os.urandom(1000)]

    with running(root, old, env) as s3:
        for bucket in (fs_bucket, local_bucket):
            s3.create_bucket(Bucket=bucket)
            for key, body in data.items():
                s3.put_object(Bucket=bucket, Key=key, Body=body)
            upload = s3.create_multipart_upload(Bucket=bucket, Key="multi")["UploadId"]
            etags = [s3.upload_part(Bucket=bucket, Key="multi", UploadId=upload, PartNumber=n + 1,
                                    Body=p)["ETag"] for n, p in enumerate(parts)]
            s3.complete_multipart_upload(
                Bucket=bucket, Key="multi", UploadId=upload,
                MultipartUpload={"Parts": [{"PartNumber": n + 1, "ETag": e} for n, e in enumerate(etags)]})
    data["multi"] = b"".join(parts)
    # Written before encryption, straight into the upstream.
    env.fs_direct.put_object(Bucket=fs_bucket, Key="legacy", Body=b"plain" * 100)
    stored_before = {k: p.read_bytes() for k, p in s3s_fs_files(env.fs, fs_bucket).items()}

    # A new current key: old objects read, new ones are wrapped under k2; a copy onto
    # itself asking for encryption rewraps online, and a copy keeps the stored bytes.
    with running(root, both, env) as s3:
        for bucket in (fs_bucket, local_bucket):
            for key, body in data.items():
                assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == body, (bucket, key)
            s3.put_object(Bucket=bucket, Key="new", Body=b"new" * 1000)
        s3.copy_object(Bucket=fs_bucket, Key="obj-1", CopySource={"Bucket": fs_bucket, "Key": "obj-1"},
                       ServerSideEncryption="AES256")
        s3.copy_object(Bucket=fs_bucket, Key="copy-2", CopySource={"Bucket": fs_bucket, "Key": "obj-2"})
        assert s3.get_object(Bucket=fs_bucket, Key="copy-2")["Body"].read() == data["obj-2"]
        assert s3.head_object(Bucket=fs_bucket, Key="copy-2")["ETag"] == f'"{md5(data["obj-2"])}"'
    meta = lambda key: env.fs_direct.head_object(Bucket=fs_bucket, Key=key)["Metadata"]["sluice-sys-sluice-enc"]  # noqa: E731
    assert ";kek=k2;" in meta("new") and ";kek=k2;" in meta("obj-1") and ";kek=k2;" in meta("copy-2")
    files = s3s_fs_files(env.fs, fs_bucket)
    assert files["obj-1"].read_bytes() == stored_before["obj-1"], "an online rewrap re-encrypted"
    assert files["copy-2"].read_bytes() == stored_before["obj-2"], "a copy re-encrypted"

    # scan: every object not under k2, read from the backends directly.
    scan = sluice_cli(env, "scan", "--config", str(both), "--bucket", fs_bucket)
    assert scan.returncode == 1, scan.stderr
    expected_old = {k: "old-key" for k in data if k != "obj-1"}
    assert findings(scan) == {**expected_old, "legacy": "plaintext"}, scan.stdout
    local_scan = sluice_cli(env, "scan", "--config", str(both), "--bucket", local_bucket)
    assert findings(local_scan) == {k: "old-key" for k in data}, local_scan.stdout + local_scan.stderr

    def local_streams() -> list[bytes]:
        """The local backend's blobs holding streams, without the CRC32C table each ends with
        (4 bytes per 64 KiB block)."""
        found = []
        for p in (root / "srv" / "vault").rglob("*"):
            raw = p.read_bytes() if p.is_file() else b""
            if raw[:4] != b"SLCE":
                continue
            size = next(d for d in range(len(raw), -1, -1) if d + 4 * -(-d // 65_536) == len(raw))
            found.append(raw[:size])
        return sorted(found)

    # The local backend keeps a multipart object's parts apart until it is copied: one file
    # each, which a copy joins end to end.
    stored_parts = [p for p in local_streams() if len(p) in (stored_len(len(parts[0])), stored_len(len(parts[1])))]
    assert len(stored_parts) == 2
    stored_parts.sort(key=len, reverse=True)
    local_before = sorted([p for p in local_streams() if p not in stored_parts] + [b"".join(stored_parts)])
    assert len(local_before) == len(data) + 1  # and "new"

    # rewrap, interrupted (here: told to start after a key), then run again to finish.
    first = sluice_cli(env, "rewrap", "--config", str(both), "--bucket", local_bucket, "--start-after", "obj-1")
    assert findings(first) == {"obj-2": "rewrapped", "obj-3": "rewrapped"}, first.stdout + first.stderr
    assert first.returncode == 0, first.stderr
    rest = sluice_cli(env, "rewrap", "--config", str(both), "--bucket", local_bucket)
    assert findings(rest) == {"multi": "rewrapped", "obj-0": "rewrapped", "obj-1": "rewrapped"}, rest.stdout
    assert sluice_cli(env, "scan", "--config", str(both), "--bucket", local_bucket).returncode == 0
    assert local_streams() == local_before, "rewrap changed the local backend's stored bytes"
    fs_rewrap = sluice_cli(env, "rewrap", "--config", str(both), "--bucket", fs_bucket)
    assert fs_rewrap.returncode == 1, "a plaintext object is left: reported"
    assert findings(fs_rewrap) == {**{k: "rewrapped" for k in expected_old}, "legacy": "plaintext"}
    files = s3s_fs_files(env.fs, fs_bucket)
    for key in data:
        assert files[key].read_bytes() == stored_before[key], f"{key}: rewrap changed the stored bytes"

    # Tampered: a scan finds an envelope that does not open the stored bytes.
    files["obj-3"].write_bytes(stored_before["obj-2"])
    scan = sluice_cli(env, "scan", "--config", str(both), "--bucket", fs_bucket)
    assert findings(scan) == {"legacy": "plaintext", "obj-3": "unreadable"}, scan.stdout
    files["obj-3"].write_bytes(stored_before["obj-3"])

    # The right key id with the wrong key: nothing decrypts, the listing still answers.
    wrong = rotation_config(root, env, "wrong", {"k2": KEY_1}, "k2")
    with running(root, wrong, env) as s3:
        with pytest.raises(ClientError) as e:
            s3.get_object(Bucket=local_bucket, Key="obj-2")
        assert (error_code(e.value), e.value.response["ResponseMetadata"]["HTTPStatusCode"]) == ("InternalError", 500)
        with pytest.raises(ClientError) as e:
            s3.get_object(Bucket=fs_bucket, Key="obj-2", Range="bytes=10-20")
        assert error_code(e.value) == "InternalError"
        listed = {o["Key"] for o in s3.list_objects_v2(Bucket=fs_bucket)["Contents"]}
        assert set(data) <= listed

    # Without the old key: everything still reads (it was all rewrapped).
    with running(root, new_only, env) as s3:
        for bucket in (fs_bucket, local_bucket):
            for key, body in data.items():
                got = s3.get_object(Bucket=bucket, Key=key)
                assert got["Body"].read() == body, (bucket, key)
                assert got["ServerSideEncryption"] == "AES256"
            for o in s3.list_objects_v2(Bucket=bucket)["Contents"]:
                if o["Key"] in data:
                    assert o["Size"] == len(data[o["Key"]]), o
        empty_and_delete(s3, local_bucket)
    empty_and_delete(env.fs_direct, fs_bucket)


def test_sse_c_on_an_upstream_lists_without_the_key(upstream_env: Env, enc_buckets):
    """An SSE-C object's data key is wrapped under the client's key, which is never stored; its
    footer key under the keyring, so listings (even from a Sluice that never saw it) show its
    plaintext size and ETag without the client's key."""
    env = upstream_env
    bucket = enc_buckets("fs")
    key = ssec_key()
    ssec = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": key}
    data = os.urandom(100_000)
    env.s3_tls.put_object(Bucket=bucket, Key="c", Body=data, **ssec)
    stored = env.fs_direct.get_object(Bucket=bucket, Key="c")
    envelope = stored["Metadata"]["sluice-sys-sluice-enc"]
    assert envelope.startswith("v1;seg=16;ssec;dk=") and ";fk=up-1:" in envelope, envelope
    assert_ciphertext(stored["Body"].read(), data)
    with fresh_sluice(env, "ssec-cold") as cold:
        listed = cold.list_objects_v2(Bucket=bucket)["Contents"]
        assert [(o["Key"], o["Size"], o["ETag"]) for o in listed] == [("c", len(data), f'"{md5(data)}"')]
    got = env.s3_tls.get_object(Bucket=bucket, Key="c", Range="bytes=70000-70009", **ssec)
    assert got["Body"].read() == data[70_000:70_010]
    with pytest.raises(ClientError) as e:
        env.s3_tls.get_object(Bucket=bucket, Key="c")
    assert error_code(e.value) == "InvalidRequest"
