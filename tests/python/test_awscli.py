"""End-to-end tests of sluice with the aws CLI v1 (the `aws` of this venv), configured in an
isolated AWS_CONFIG_FILE with multipart disabled (threshold 5GB) and path-style addressing."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import empty_and_delete

MiB = 1024 * 1024


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(MiB):
            h.update(chunk)
    return h.hexdigest()


def write_random(path: Path, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(left, MiB))
            h.update(chunk)
            f.write(chunk)
            left -= len(chunk)
    return h.hexdigest()


@pytest.fixture
def cli_bucket(aws, s3, bucket_name):
    """A bucket made with `aws s3 mb` (removed with boto3 afterwards if the test did not)."""
    proc = aws("s3", "mb", f"s3://{bucket_name}")
    assert f"make_bucket: {bucket_name}" in proc.stdout, proc.stdout
    yield bucket_name
    empty_and_delete(s3, bucket_name)


def test_mb_ls_rb(aws, s3, bucket_name):
    proc = aws("s3", "mb", f"s3://{bucket_name}")
    assert f"make_bucket: {bucket_name}" in proc.stdout
    s3.head_bucket(Bucket=bucket_name)

    listed = aws("s3", "ls").stdout.splitlines()
    assert any(line.split()[-1] == bucket_name for line in listed if line.strip()), listed

    proc = aws("s3", "rb", f"s3://{bucket_name}")
    assert f"remove_bucket: {bucket_name}" in proc.stdout
    assert bucket_name not in aws("s3", "ls").stdout
    assert bucket_name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_cp_up_and_down(aws, cli_bucket, tmp_path):
    src, dst = tmp_path / "src.bin", tmp_path / "dst.bin"
    digest = write_random(src, 5 * MiB + 123)
    proc = aws("s3", "cp", str(src), f"s3://{cli_bucket}/dir/src.bin", "--only-show-errors")
    assert proc.stderr == "", proc.stderr
    aws("s3", "cp", f"s3://{cli_bucket}/dir/src.bin", str(dst), "--only-show-errors")
    assert dst.stat().st_size == 5 * MiB + 123
    assert sha256_file(dst) == digest, "the file downloaded with `aws s3 cp` differs from the upload"

    # stdin/stdout streaming ('-') as well.
    proc = subprocess.run(
        [str(aws.exe), "s3", "cp", "-", f"s3://{cli_bucket}/from-stdin", "--endpoint-url", aws.endpoint],
        input=b"streamed through stdin\n", capture_output=True, env=aws.env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run(
        [str(aws.exe), "s3", "cp", f"s3://{cli_bucket}/from-stdin", "-", "--endpoint-url", aws.endpoint],
        capture_output=True, env=aws.env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"streamed through stdin\n"


def test_ls_objects(aws, cli_bucket, s3):
    for key, body in {"a.txt": b"aaa", "dir/b.txt": b"bb", "dir/sub/c.txt": b"c", "z z.txt": b""}.items():
        s3.put_object(Bucket=cli_bucket, Key=key, Body=body)

    lines = aws("s3", "ls", f"s3://{cli_bucket}/").stdout.splitlines()
    pre = [line.split()[-1] for line in lines if line.strip().startswith("PRE")]
    assert pre == ["dir/"], lines
    objects = {line[31:]: int(line[19:30]) for line in lines if not line.strip().startswith("PRE")}
    assert objects == {"a.txt": 3, "z z.txt": 0}, lines

    lines = aws("s3", "ls", f"s3://{cli_bucket}/", "--recursive").stdout.splitlines()
    objects = {line[31:]: int(line[19:30]) for line in lines}
    assert objects == {"a.txt": 3, "dir/b.txt": 2, "dir/sub/c.txt": 1, "z z.txt": 0}, lines

    lines = aws("s3", "ls", f"s3://{cli_bucket}/dir/").stdout.splitlines()
    assert [line.split()[-1] for line in lines if "PRE" in line] == ["sub/"], lines
    assert [line[31:] for line in lines if "PRE" not in line] == ["b.txt"], lines


def test_s3api_put_get_head_with_metadata(aws, cli_bucket, tmp_path):
    src = tmp_path / "body.txt"
    src.write_bytes(b"hello from s3api\n")
    md5 = hashlib.md5(b"hello from s3api\n").hexdigest()
    put = json.loads(aws(
        "s3api", "put-object", "--bucket", cli_bucket, "--key", "meta/obj.txt", "--body", str(src),
        "--metadata", "color=blue,owner=sluice-tests", "--content-type", "text/plain; charset=utf-8",
        "--cache-control", "no-cache", "--content-disposition", "inline", "--content-language", "de",
        "--output", "json",
    ).stdout)
    assert put["ETag"] == f'"{md5}"', put

    head = json.loads(aws("s3api", "head-object", "--bucket", cli_bucket, "--key", "meta/obj.txt",
                          "--output", "json").stdout)
    assert head["ContentLength"] == 17 and head["ETag"] == f'"{md5}"'
    assert head["Metadata"] == {"color": "blue", "owner": "sluice-tests"}, head
    assert head["ContentType"] == "text/plain; charset=utf-8"
    assert head["CacheControl"] == "no-cache"
    assert head["ContentDisposition"] == "inline"
    assert head["ContentLanguage"] == "de"

    out = tmp_path / "out.txt"
    got = json.loads(aws("s3api", "get-object", "--bucket", cli_bucket, "--key", "meta/obj.txt", str(out),
                         "--output", "json").stdout)
    assert out.read_bytes() == b"hello from s3api\n"
    assert got["Metadata"] == {"color": "blue", "owner": "sluice-tests"} and got["ETag"] == f'"{md5}"'

    got = json.loads(aws("s3api", "get-object", "--bucket", cli_bucket, "--key", "meta/obj.txt",
                         "--range", "bytes=6-9", str(out), "--output", "json").stdout)
    assert out.read_bytes() == b"from" and got["ContentRange"] == "bytes 6-9/17"

    proc = aws("s3api", "head-object", "--bucket", cli_bucket, "--key", "missing", check=False)
    assert proc.returncode != 0 and "404" in proc.stderr, proc.stderr
    proc = aws("s3api", "get-object", "--bucket", cli_bucket, "--key", "missing", str(out), check=False)
    assert proc.returncode != 0 and "NoSuchKey" in proc.stderr, proc.stderr


def test_rm_and_rb(aws, s3, bucket_name):
    aws("s3", "mb", f"s3://{bucket_name}")
    for key in ("one", "dir/two", "dir/three"):
        s3.put_object(Bucket=bucket_name, Key=key, Body=key.encode())

    proc = aws("s3", "rm", f"s3://{bucket_name}/one")
    assert f"delete: s3://{bucket_name}/one" in proc.stdout
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket_name)["Contents"]] == ["dir/three", "dir/two"]

    proc = aws("s3", "rb", f"s3://{bucket_name}", check=False)
    assert proc.returncode != 0 and "BucketNotEmpty" in proc.stderr, (proc.stdout, proc.stderr)

    proc = aws("s3", "rm", f"s3://{bucket_name}/dir/", "--recursive")
    assert f"delete: s3://{bucket_name}/dir/two" in proc.stdout
    assert s3.list_objects_v2(Bucket=bucket_name)["KeyCount"] == 0

    s3.put_object(Bucket=bucket_name, Key="again", Body=b"x")
    proc = aws("s3", "rb", f"s3://{bucket_name}", "--force")
    assert f"remove_bucket: {bucket_name}" in proc.stdout
    assert bucket_name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_sync(aws, cli_bucket, s3, tmp_path):
    src = tmp_path / "tree"
    (src / "sub").mkdir(parents=True)
    files = {"a.txt": b"alpha", "sub/b.bin": os.urandom(10_000), "sub/c d.txt": b"spaced"}
    for rel, body in files.items():
        (src / rel).write_bytes(body)
    aws("s3", "sync", str(src), f"s3://{cli_bucket}/backup", "--only-show-errors")
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=cli_bucket)["Contents"])
    assert keys == sorted(f"backup/{rel}" for rel in files)

    # A second sync finds nothing to do (sizes and times match).
    proc = aws("s3", "sync", str(src), f"s3://{cli_bucket}/backup")
    assert proc.stdout.strip() == "", proc.stdout

    dst = tmp_path / "restored"
    aws("s3", "sync", f"s3://{cli_bucket}/backup", str(dst), "--only-show-errors")
    for rel, body in files.items():
        assert (dst / rel).read_bytes() == body, rel


def test_presign_then_curl(aws, cli_bucket, s3, tmp_path):
    body = os.urandom(20_000)
    s3.put_object(Bucket=cli_bucket, Key="shared/file.bin", Body=body)
    url = aws("s3", "presign", f"s3://{cli_bucket}/shared/file.bin", "--expires-in", "300").stdout.strip()
    assert url.startswith(aws.endpoint) and "X-Amz-Signature=" in url, url
    out = tmp_path / "out.bin"
    proc = subprocess.run(["curl", "-sS", "-o", str(out), "-w", "%{http_code}", url],
                          capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode() == "200", out.read_bytes()[:500]
    assert out.read_bytes() == body
