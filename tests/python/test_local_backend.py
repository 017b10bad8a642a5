"""End-to-end tests of sluice's local backend with real clients doing what they do by default on
larger data: multipart uploads (aws CLI defaults, boto3 managed transfers, the low-level API),
UploadPartCopy, CopyObject, DeleteObjects, tagging, the versioning read API of a never-versioned
bucket, conditional PUTs, stored checksums, `aws s3 sync` of many files, and rclone.

Every expectation is S3's own behaviour; a failure here is a difference from S3.
"""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import json
import os
import random
import re
import subprocess
import time
from pathlib import Path

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from conftest import empty_and_delete, error_code, http_status, unique_bucket_name

MiB = 1024 * 1024
KiB = 1024
MIN_PART = 5 * MiB
TRANSFER_TIMEOUT = 240.0


# --------------------------------------------------------------------------------------------
# helpers


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(MiB):
            h.update(chunk)
    return h.hexdigest()


def write_random(path: Path, size: int, part_size: int | None = None) -> tuple[str, str]:
    """Writes `size` random bytes to path. Returns (sha256 hex, expected S3 ETag without quotes):
    the plain MD5 if part_size is None, else the multipart ETag for parts of part_size."""
    sha = hashlib.sha256()
    whole_md5 = hashlib.md5()
    part_digests: list[bytes] = []
    part_md5 = hashlib.md5()
    in_part = 0
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, MiB)
            if part_size is not None:
                n = min(n, part_size - in_part)
            chunk = os.urandom(n)
            f.write(chunk)
            sha.update(chunk)
            whole_md5.update(chunk)
            part_md5.update(chunk)
            in_part += n
            left -= n
            if part_size is not None and (in_part == part_size or left == 0):
                part_digests.append(part_md5.digest())
                part_md5, in_part = hashlib.md5(), 0
    if part_size is None:
        return sha.hexdigest(), whole_md5.hexdigest()
    return sha.hexdigest(), multipart_etag(part_digests)


def multipart_etag(part_md5_digests: list[bytes]) -> str:
    """S3's ETag of a completed multipart upload: hex MD5 of the concatenated binary part MD5s,
    a dash, and the number of parts."""
    return f"{hashlib.md5(b''.join(part_md5_digests)).hexdigest()}-{len(part_md5_digests)}"


def raises_s3(code: str, status: int, fn, *args, **kwargs) -> ClientError:
    with pytest.raises(ClientError) as info:
        fn(*args, **kwargs)
    err = info.value
    assert (error_code(err), http_status(err)) == (code, status), (
        f"expected {status} {code}, got {http_status(err)} {error_code(err)}: {err.response.get('Error')}"
    )
    return err


def tree_digests(root: Path) -> dict[str, str]:
    """Relative path (posix) -> sha256 of every regular file under root."""
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


def abort_all_uploads(s3, bucket: str) -> None:
    try:
        for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
            for up in page.get("Uploads", []):
                try:
                    s3.abort_multipart_upload(Bucket=bucket, Key=up["Key"], UploadId=up["UploadId"])
                except ClientError:
                    pass
    except ClientError:
        pass


@pytest.fixture
def mp_bucket(s3, bucket):
    """`bucket`, with every multipart upload still in progress aborted afterwards."""
    yield bucket
    abort_all_uploads(s3, bucket)


@pytest.fixture
def other_bucket(s3, request):
    name = unique_bucket_name(f"{request.node.originalname}-dst")
    s3.create_bucket(Bucket=name)
    yield name
    empty_and_delete(s3, name)


# --------------------------------------------------------------------------------------------
# 1. aws CLI `s3 cp` with the default multipart settings


@pytest.mark.slow
def test_awscli_cp_100mib_default_multipart(aws_multipart, s3, bucket, tmp_path):
    aws = aws_multipart
    src, dst = tmp_path / "big.bin", tmp_path / "big.down"
    size = 100 * MiB
    # The CLI's defaults: multipart_threshold 8 MiB, multipart_chunksize 8 MiB -> 13 parts.
    digest, etag = write_random(src, size, part_size=8 * MiB)
    assert etag.endswith("-13")

    proc = aws("s3", "cp", str(src), f"s3://{bucket}/cli/big.bin", "--only-show-errors",
               timeout=TRANSFER_TIMEOUT)
    assert proc.stderr == "", proc.stderr

    head = json.loads(aws("s3api", "head-object", "--bucket", bucket, "--key", "cli/big.bin",
                          "--output", "json").stdout)
    assert head["ContentLength"] == size, head
    assert re.fullmatch(r'"[0-9a-f]{32}-13"', head["ETag"]), (
        f"a 13-part upload must have a multipart ETag ending in -13, got {head['ETag']}")
    assert head["ETag"] == f'"{etag}"', "multipart ETag is not md5(concat of part md5s)-13"

    # Part 13 is the 4 MiB tail.
    part = json.loads(aws("s3api", "head-object", "--bucket", bucket, "--key", "cli/big.bin",
                          "--part-number", "13", "--output", "json").stdout)
    assert part["ContentLength"] == size - 12 * 8 * MiB and part["PartsCount"] == 13, part

    aws("s3", "cp", f"s3://{bucket}/cli/big.bin", str(dst), "--only-show-errors", timeout=TRANSFER_TIMEOUT)
    assert dst.stat().st_size == size
    assert sha256_file(dst) == digest, "the file downloaded with `aws s3 cp` differs from the upload"
    s3.delete_object(Bucket=bucket, Key="cli/big.bin")


# --------------------------------------------------------------------------------------------
# 2. aws s3 sync of 500 files

ODD_NAMES = [
    "with space.txt",
    "two  spaces/inner file.bin",
    "unicode/café crème.txt",
    "unicode/日本語 ファイル.dat",
    "unicode/Ærø-ñ-ü.txt",
    "emoji/🚀 launch.txt",
    "plus+and=equals&amp.txt",
    "deep/a/b/c/d/e/leaf.txt",
]


def make_tree(root: Path, count: int) -> dict[str, bytes]:
    rnd = random.Random(20240611)
    files: dict[str, bytes] = {}
    for name in ODD_NAMES:
        files[name] = rnd.randbytes(rnd.randrange(0, 3000))
    files["empty.txt"] = b""
    i = 0
    while len(files) < count:
        rel = f"d{i % 7}/sub{i % 5}/{'x' if i % 2 else 'y'}{i % 3}/file-{i:04d}.bin"
        files[rel] = rnd.randbytes(rnd.randrange(1, 4000))
        i += 1
    for rel, body in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
    # An hour in the past: `sync` compares the local mtime with LastModified (whole seconds in
    # S3 listings), so a file written in the same second as its upload would look newer.
    stamp = time.time() - 3600
    for rel in files:
        os.utime(root / rel, (stamp, stamp))
    return files


def sync_actions(stdout: str) -> list[str]:
    """The transfer lines of `aws s3 sync` output (upload:, download:, delete:, copy:)."""
    return [line for line in stdout.splitlines()
            if re.match(r"^\s*(\(dryrun\) )?(upload|download|delete|copy):", line)]


@pytest.mark.slow
def test_awscli_sync_500_files_round_trip(aws_multipart, s3, bucket, tmp_path):
    aws = aws_multipart
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    files = make_tree(src, 500)
    assert len(files) == 500
    remote = f"s3://{bucket}/tree"

    proc = aws("s3", "sync", str(src), remote, "--only-show-errors", timeout=TRANSFER_TIMEOUT)
    assert proc.stderr == "", proc.stderr
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="tree/"):
        keys += [o["Key"] for o in page.get("Contents", [])]
    assert sorted(keys) == sorted(f"tree/{rel}" for rel in files), "the bucket does not hold the tree"

    dst.mkdir()
    proc = aws("s3", "sync", remote, str(dst), "--only-show-errors", timeout=TRANSFER_TIMEOUT)
    assert proc.stderr == "", proc.stderr
    src_digests, dst_digests = tree_digests(src), tree_digests(dst)
    assert len(src_digests) == 500
    assert sorted(dst_digests) == sorted(src_digests), (
        f"missing: {sorted(set(src_digests) - set(dst_digests))[:10]}, "
        f"extra: {sorted(set(dst_digests) - set(src_digests))[:10]}")
    differing = [rel for rel in src_digests if src_digests[rel] != dst_digests[rel]]
    assert differing == [], f"{len(differing)} files differ after the round trip, e.g. {differing[:5]}"

    # Nothing changed: both directions must find nothing to transfer.
    up_again = aws("s3", "sync", str(src), remote, "--no-progress", timeout=TRANSFER_TIMEOUT)
    assert sync_actions(up_again.stdout) == [], f"second upload sync transferred:\n{up_again.stdout[:3000]}"
    down_again = aws("s3", "sync", remote, str(dst), "--no-progress", timeout=TRANSFER_TIMEOUT)
    assert sync_actions(down_again.stdout) == [], (
        f"second download sync transferred:\n{down_again.stdout[:3000]}")

    # Delete one local file (an odd name) and propagate it with --delete.
    victim = "unicode/日本語 ファイル.dat"
    (src / victim).unlink()
    proc = aws("s3", "sync", str(src), remote, "--delete", "--no-progress", timeout=TRANSFER_TIMEOUT)
    assert sync_actions(proc.stdout) == [f"delete: {remote}/{victim}"], proc.stdout
    raises_s3("404", 404, s3.head_object, Bucket=bucket, Key=f"tree/{victim}")
    remaining = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="tree/"):
        remaining += [o["Key"] for o in page.get("Contents", [])]
    assert sorted(remaining) == sorted(f"tree/{rel}" for rel in files if rel != victim)
    s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in remaining[:1000]]})


# --------------------------------------------------------------------------------------------
# 3. boto3: managed transfers


@pytest.mark.slow
def test_boto3_managed_multipart_upload_download(any_s3, bucket, tmp_path):
    s3 = any_s3
    src, dst = tmp_path / "src.bin", tmp_path / "dst.bin"
    size = 23 * MiB
    digest, etag = write_random(src, size, part_size=5 * MiB)
    cfg = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB, max_concurrency=4)
    s3.upload_file(str(src), bucket, "managed/obj.bin", Config=cfg,
                   ExtraArgs={"Metadata": {"origin": "upload_file"}, "ContentType": "application/x-test"})
    head = s3.head_object(Bucket=bucket, Key="managed/obj.bin")
    assert head["ContentLength"] == size
    assert head["ETag"] == f'"{etag}"' and etag.endswith("-5"), (head["ETag"], etag)
    assert head["Metadata"] == {"origin": "upload_file"}
    assert head["ContentType"] == "application/x-test"

    s3.download_file(bucket, "managed/obj.bin", str(dst), Config=cfg)
    assert dst.stat().st_size == size
    assert sha256_file(dst) == digest, "the multipart download differs from the upload"


# --------------------------------------------------------------------------------------------
# 3. boto3: low-level multipart


def test_multipart_low_level(s3, mp_bucket):
    bucket, key = mp_bucket, "mp/assembled.bin"
    bodies = [os.urandom(MIN_PART), os.urandom(MIN_PART + 17), os.urandom(1000)]
    created = s3.create_multipart_upload(Bucket=bucket, Key=key, ContentType="application/x-mp",
                                         Metadata={"kind": "low-level"})
    upload_id = created["UploadId"]
    assert created["Bucket"] == bucket and created["Key"] == key and upload_id

    etags = []
    for n, body in enumerate(bodies, start=1):
        resp = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=n, Body=body)
        assert resp["ETag"] == f'"{md5_hex(body)}"', f"part {n} ETag is not the MD5 of its bytes"
        etags.append(resp["ETag"])

    # ListParts, two per page.
    first = s3.list_parts(Bucket=bucket, Key=key, UploadId=upload_id, MaxParts=2)
    assert [p["PartNumber"] for p in first["Parts"]] == [1, 2]
    assert first["IsTruncated"] is True and first["NextPartNumberMarker"] == 2, first
    assert first["MaxParts"] == 2 and first["UploadId"] == upload_id
    second = s3.list_parts(Bucket=bucket, Key=key, UploadId=upload_id, MaxParts=2,
                           PartNumberMarker=first["NextPartNumberMarker"])
    assert [p["PartNumber"] for p in second["Parts"]] == [3] and second["IsTruncated"] is False, second
    pages = list(s3.get_paginator("list_parts").paginate(
        Bucket=bucket, Key=key, UploadId=upload_id, PaginationConfig={"PageSize": 1}))
    parts = [p for page in pages for p in page.get("Parts", [])]
    assert len(pages) == 3
    assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in parts] == [
        (n, etags[n - 1], len(bodies[n - 1])) for n in (1, 2, 3)]

    # CompleteMultipartUpload validation; the upload survives each refusal.
    good = [{"PartNumber": n, "ETag": etags[n - 1]} for n in (1, 2, 3)]
    wrong_etag = [dict(p) for p in good]
    wrong_etag[1]["ETag"] = f'"{md5_hex(b"not this part")}"'
    raises_s3("InvalidPart", 400, s3.complete_multipart_upload, Bucket=bucket, Key=key,
              UploadId=upload_id, MultipartUpload={"Parts": wrong_etag})
    missing_part = good + [{"PartNumber": 4, "ETag": etags[0]}]
    raises_s3("InvalidPart", 400, s3.complete_multipart_upload, Bucket=bucket, Key=key,
              UploadId=upload_id, MultipartUpload={"Parts": missing_part})
    out_of_order = [good[1], good[0], good[2]]
    raises_s3("InvalidPartOrder", 400, s3.complete_multipart_upload, Bucket=bucket, Key=key,
              UploadId=upload_id, MultipartUpload={"Parts": out_of_order})
    with pytest.raises(ClientError) as info:
        s3.head_object(Bucket=bucket, Key=key)
    assert http_status(info.value) == 404, "a refused Complete must not create the object"

    done = s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                        MultipartUpload={"Parts": good})
    expected_etag = multipart_etag([hashlib.md5(b).digest() for b in bodies])
    assert done["ETag"] == f'"{expected_etag}"', (done["ETag"], expected_etag)
    assert done["Key"] == key and done["Bucket"] == bucket

    got = s3.get_object(Bucket=bucket, Key=key)
    assert got["Body"].read() == b"".join(bodies)
    assert got["ETag"] == f'"{expected_etag}"'
    assert got["ContentType"] == "application/x-mp" and got["Metadata"] == {"kind": "low-level"}
    assert got["ContentLength"] == sum(map(len, bodies))

    # The upload is gone once completed; a retried Complete (after a client timeout) still gets
    # the same answer, as from S3.
    raises_s3("NoSuchUpload", 404, s3.list_parts, Bucket=bucket, Key=key, UploadId=upload_id)
    again = s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                         MultipartUpload={"Parts": good})
    assert again["ETag"] == done["ETag"] and again["Key"] == key
    listed = s3.list_multipart_uploads(Bucket=bucket)
    assert upload_id not in [u["UploadId"] for u in listed.get("Uploads", [])]

    # HEAD / GET of a single part.
    head = s3.head_object(Bucket=bucket, Key=key, PartNumber=2)
    assert head["ContentLength"] == len(bodies[1]) and head["PartsCount"] == 3, head
    assert head["ETag"] == f'"{expected_etag}"'
    part = s3.get_object(Bucket=bucket, Key=key, PartNumber=2)
    assert part["ResponseMetadata"]["HTTPStatusCode"] == 206
    start = len(bodies[0])
    total = sum(map(len, bodies))
    assert part["ContentRange"] == f"bytes {start}-{start + len(bodies[1]) - 1}/{total}", part["ContentRange"]
    assert part["PartsCount"] == 3
    assert part["Body"].read() == bodies[1]
    part3 = s3.get_object(Bucket=bucket, Key=key, PartNumber=3)
    assert part3["Body"].read() == bodies[2] and part3["ContentLength"] == len(bodies[2])


def test_multipart_entity_too_small(s3, mp_bucket):
    bucket, key = mp_bucket, "mp/small-middle"
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    bodies = [os.urandom(MIN_PART), os.urandom(100 * KiB), os.urandom(10)]
    parts = []
    for n, body in enumerate(bodies, start=1):
        etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=n, Body=body)["ETag"]
        parts.append({"PartNumber": n, "ETag": etag})
    raises_s3("EntityTooSmall", 400, s3.complete_multipart_upload, Bucket=bucket, Key=key,
              UploadId=upload_id, MultipartUpload={"Parts": parts})
    # Dropping the small middle part leaves only a small *last* part, which is allowed; parts
    # need not be consecutive.
    done = s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                        MultipartUpload={"Parts": [parts[0], parts[2]]})
    assert done["ETag"] == f'"{multipart_etag([hashlib.md5(bodies[0]).digest(), hashlib.md5(bodies[2]).digest()])}"'
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == bodies[0] + bodies[2]
    head = s3.head_object(Bucket=bucket, Key=key, PartNumber=2)
    assert head["ContentLength"] == len(bodies[2]) and head["PartsCount"] == 2, head


def test_multipart_abort(s3, mp_bucket):
    bucket, key = mp_bucket, "mp/aborted"
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=b"abc")["ETag"]
    resp = s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    raises_s3("NoSuchUpload", 404, s3.list_parts, Bucket=bucket, Key=key, UploadId=upload_id)
    raises_s3("NoSuchUpload", 404, s3.upload_part, Bucket=bucket, Key=key, UploadId=upload_id,
              PartNumber=2, Body=b"def")
    raises_s3("NoSuchUpload", 404, s3.complete_multipart_upload, Bucket=bucket, Key=key,
              UploadId=upload_id, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    raises_s3("NoSuchUpload", 404, s3.abort_multipart_upload, Bucket=bucket, Key=key, UploadId=upload_id)
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    # An upload id that never existed.
    raises_s3("NoSuchUpload", 404, s3.list_parts, Bucket=bucket, Key=key, UploadId="not-an-upload-id")


def test_list_multipart_uploads_paginated(s3, mp_bucket):
    bucket = mp_bucket
    created = []  # (key, upload id) in creation order
    for key in ["b/second", "a/first", "same", "c", "same"]:
        created.append((key, s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]))
    s1, s2 = [uid for key, uid in created if key == "same"]
    assert s1 != s2, "two uploads of one key need distinct upload ids"
    ids = dict(created[:4])
    # Sorted by key; uploads of the same key in the order they were initiated.
    expected = [("a/first", ids["a/first"]), ("b/second", ids["b/second"]), ("c", ids["c"]),
                ("same", s1), ("same", s2)]

    whole = s3.list_multipart_uploads(Bucket=bucket)
    assert [(u["Key"], u["UploadId"]) for u in whole["Uploads"]] == expected
    assert whole["IsTruncated"] is False
    initiated = [u["Initiated"] for u in whole["Uploads"] if u["Key"] == "same"]
    assert initiated[0] <= initiated[1]

    pages = list(s3.get_paginator("list_multipart_uploads").paginate(
        Bucket=bucket, PaginationConfig={"PageSize": 2}))
    got = [(u["Key"], u["UploadId"]) for p in pages for u in p.get("Uploads", [])]
    assert got == expected, f"paginated listing {got} != {expected}"
    assert [len(p.get("Uploads", [])) for p in pages] == [2, 2, 1]
    assert pages[0]["IsTruncated"] is True and pages[0]["NextKeyMarker"] == "b/second"
    # A page boundary between the two uploads of "same".
    assert pages[1]["NextKeyMarker"] == "same" and pages[1]["NextUploadIdMarker"] == s1, pages[1]

    # Explicit markers: after ("same", s1) comes only ("same", s2).
    after = s3.list_multipart_uploads(Bucket=bucket, KeyMarker="same", UploadIdMarker=s1)
    assert [(u["Key"], u["UploadId"]) for u in after.get("Uploads", [])] == [("same", s2)]
    # KeyMarker alone: uploads of keys strictly after it.
    after = s3.list_multipart_uploads(Bucket=bucket, KeyMarker="c")
    assert [(u["Key"], u["UploadId"]) for u in after.get("Uploads", [])] == [("same", s1), ("same", s2)]
    prefixed = s3.list_multipart_uploads(Bucket=bucket, Prefix="b/")
    assert [u["Key"] for u in prefixed.get("Uploads", [])] == ["b/second"]


def test_upload_part_copy_with_range(s3, mp_bucket):
    bucket = mp_bucket
    src = os.urandom(12 * MiB)
    s3.put_object(Bucket=bucket, Key="src/big", Body=src)
    key = "dst/assembled"
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    r1 = (100, 100 + MIN_PART - 1)  # 5 MiB from an odd offset
    r2 = (9 * MiB + 5, 9 * MiB + 5 + 12344)  # a small last part
    parts, digests = [], []
    for n, (a, b) in enumerate([r1, r2], start=1):
        resp = s3.upload_part_copy(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=n,
                                   CopySource={"Bucket": bucket, "Key": "src/big"},
                                   CopySourceRange=f"bytes={a}-{b}")
        chunk = src[a:b + 1]
        assert resp["CopyPartResult"]["ETag"] == f'"{md5_hex(chunk)}"', f"part {n}"
        parts.append({"PartNumber": n, "ETag": resp["CopyPartResult"]["ETag"]})
        digests.append(hashlib.md5(chunk).digest())
    tail = b"uploaded tail"
    parts.append({"PartNumber": 3, "ETag": s3.upload_part(
        Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=3, Body=tail)["ETag"]})
    digests.append(hashlib.md5(tail).digest())
    # Part 2 (12,345 bytes) is now a small middle part: dropping part 3 makes it the last one.
    raises_s3("EntityTooSmall", 400, s3.complete_multipart_upload, Bucket=bucket, Key=key,
              UploadId=upload_id, MultipartUpload={"Parts": parts})
    listed = s3.list_parts(Bucket=bucket, Key=key, UploadId=upload_id)["Parts"]
    assert [p["Size"] for p in listed] == [MIN_PART, 12345, len(tail)]
    done = s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                        MultipartUpload={"Parts": parts[:2]})
    assert done["ETag"] == f'"{multipart_etag(digests[:2])}"'
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert body == src[r1[0]:r1[1] + 1] + src[r2[0]:r2[1] + 1]

    # A range past the end of the source is refused: S3 answers 400 InvalidArgument ("Range
    # specified is not valid for source object of size: N"); 416 InvalidRange is also seen.
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="dst/bad-range")["UploadId"]
    with pytest.raises(ClientError) as info:
        s3.upload_part_copy(Bucket=bucket, Key="dst/bad-range", UploadId=upload_id, PartNumber=1,
                            CopySource={"Bucket": bucket, "Key": "src/big"},
                            CopySourceRange=f"bytes={len(src) - 10}-{len(src) + 10}")
    assert (error_code(info.value), http_status(info.value)) in {("InvalidArgument", 400), ("InvalidRange", 416)}, (
        info.value.response)


# --------------------------------------------------------------------------------------------
# 3. boto3: CopyObject


def test_copy_object_metadata_directives(s3, bucket, other_bucket):
    body = os.urandom(50_000)
    s3.put_object(Bucket=bucket, Key="orig", Body=body, ContentType="image/x-orig",
                  Metadata={"color": "blue", "n": "1"}, CacheControl="max-age=60")
    etag = f'"{md5_hex(body)}"'
    src = {"Bucket": bucket, "Key": "orig"}

    # COPY (the default) keeps metadata and content type.
    for dst_bucket in (bucket, other_bucket):
        resp = s3.copy_object(Bucket=dst_bucket, Key="copied", CopySource=src)
        assert resp["CopyObjectResult"]["ETag"] == etag
        got = s3.get_object(Bucket=dst_bucket, Key="copied")
        assert got["Body"].read() == body
        assert got["Metadata"] == {"color": "blue", "n": "1"}, (dst_bucket, got["Metadata"])
        assert got["ContentType"] == "image/x-orig" and got["CacheControl"] == "max-age=60"
        assert got["ETag"] == etag

        # COPY explicitly: metadata given with the request is ignored.
        s3.copy_object(Bucket=dst_bucket, Key="copied-explicit", CopySource=src, MetadataDirective="COPY",
                       Metadata={"ignored": "yes"}, ContentType="text/ignored")
        head = s3.head_object(Bucket=dst_bucket, Key="copied-explicit")
        assert head["Metadata"] == {"color": "blue", "n": "1"} and head["ContentType"] == "image/x-orig"

        # REPLACE takes metadata and content type from the request only.
        s3.copy_object(Bucket=dst_bucket, Key="replaced", CopySource=src, MetadataDirective="REPLACE",
                       Metadata={"shape": "round"}, ContentType="text/replaced")
        got = s3.get_object(Bucket=dst_bucket, Key="replaced")
        assert got["Body"].read() == body and got["ETag"] == etag
        assert got["Metadata"] == {"shape": "round"}, got["Metadata"]
        assert got["ContentType"] == "text/replaced"
        assert "CacheControl" not in got, "REPLACE drops the source's Cache-Control"

    # The source is untouched.
    head = s3.head_object(Bucket=bucket, Key="orig")
    assert head["Metadata"] == {"color": "blue", "n": "1"} and head["ContentType"] == "image/x-orig"

    # Copying an object onto itself needs REPLACE (S3: 400 InvalidRequest otherwise).
    raises_s3("InvalidRequest", 400, s3.copy_object, Bucket=bucket, Key="orig", CopySource=src)
    s3.copy_object(Bucket=bucket, Key="orig", CopySource=src, MetadataDirective="REPLACE",
                   Metadata={"color": "red"}, ContentType="image/x-new")
    got = s3.get_object(Bucket=bucket, Key="orig")
    assert got["Body"].read() == body and got["Metadata"] == {"color": "red"}
    assert got["ContentType"] == "image/x-new"

    # Missing source.
    raises_s3("NoSuchKey", 404, s3.copy_object, Bucket=bucket, Key="x",
              CopySource={"Bucket": bucket, "Key": "does-not-exist"})


def test_copy_object_source_preconditions(s3, bucket):
    body = b"precondition source"
    s3.put_object(Bucket=bucket, Key="src", Body=body)
    etag = f'"{md5_hex(body)}"'
    src = {"Bucket": bucket, "Key": "src"}
    raises_s3("PreconditionFailed", 412, s3.copy_object, Bucket=bucket, Key="dst", CopySource=src,
              CopySourceIfMatch=f'"{md5_hex(b"other")}"')
    raises_s3("PreconditionFailed", 412, s3.copy_object, Bucket=bucket, Key="dst", CopySource=src,
              CopySourceIfNoneMatch=etag)
    with pytest.raises(ClientError) as info:
        s3.head_object(Bucket=bucket, Key="dst")
    assert http_status(info.value) == 404, "a copy refused by a precondition must not write"
    s3.copy_object(Bucket=bucket, Key="dst", CopySource=src, CopySourceIfMatch=etag)
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == body


def test_copy_tagging_directive(s3, bucket):
    s3.put_object(Bucket=bucket, Key="src", Body=b"tagged", Tagging="team=storage&tier=hot")
    src = {"Bucket": bucket, "Key": "src"}
    s3.copy_object(Bucket=bucket, Key="copy-tags", CopySource=src)
    tags = s3.get_object_tagging(Bucket=bucket, Key="copy-tags")["TagSet"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [("team", "storage"), ("tier", "hot")]
    s3.copy_object(Bucket=bucket, Key="replace-tags", CopySource=src, TaggingDirective="REPLACE",
                   Tagging="only=this")
    tags = s3.get_object_tagging(Bucket=bucket, Key="replace-tags")["TagSet"]
    assert [(t["Key"], t["Value"]) for t in tags] == [("only", "this")]


@pytest.mark.slow
def test_managed_copy_multipart(s3, bucket, other_bucket):
    body = os.urandom(12 * MiB + 3)
    s3.put_object(Bucket=bucket, Key="big-src", Body=body, Metadata={"m": "v"}, ContentType="application/x-big")
    cfg = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB, max_concurrency=3)
    s3.copy({"Bucket": bucket, "Key": "big-src"}, other_bucket, "big-copy", Config=cfg)
    head = s3.head_object(Bucket=other_bucket, Key="big-copy")
    chunks = [body[i:i + 5 * MiB] for i in range(0, len(body), 5 * MiB)]
    assert len(chunks) == 3
    assert head["ETag"] == f'"{multipart_etag([hashlib.md5(c).digest() for c in chunks])}"', head["ETag"]
    assert head["ContentLength"] == len(body)
    assert head["Metadata"] == {"m": "v"} and head["ContentType"] == "application/x-big"
    assert s3.get_object(Bucket=other_bucket, Key="big-copy")["Body"].read() == body


# --------------------------------------------------------------------------------------------
# 3. boto3: DeleteObjects


def test_delete_objects(s3, bucket):
    keys = ["one", "dir/two", "with space", "ünï"]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
    resp = s3.delete_objects(Bucket=bucket, Delete={
        "Objects": [{"Key": "one"}, {"Key": "dir/two"}, {"Key": "never-there"}], "Quiet": False})
    assert sorted(d["Key"] for d in resp.get("Deleted", [])) == ["dir/two", "never-there", "one"], resp
    assert resp.get("Errors", []) == []
    resp = s3.delete_objects(Bucket=bucket, Delete={
        "Objects": [{"Key": "with space"}, {"Key": "ünï"}, {"Key": "also-never"}], "Quiet": True})
    assert resp.get("Deleted", []) == [] and resp.get("Errors", []) == [], resp
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


# --------------------------------------------------------------------------------------------
# 3. boto3: listing many keys


def test_list_v2_paginator_1234_keys(s3, bucket):
    rnd = random.Random(1234)
    keys = set()
    while len(keys) < 1234:
        i = len(keys)
        keys.add(rnd.choice(["", "a/", "a-", "A/", "z/deep/", "é/", "0"]) + f"{rnd.randrange(10**6):06d}-{i}")
    expected = sorted(keys, key=lambda k: k.encode())

    def put(key: str) -> None:
        s3.put_object(Bucket=bucket, Key=key, Body=b"")

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(put, expected))

    pages = list(s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, PaginationConfig={"PageSize": 100}))
    got = [o["Key"] for p in pages for o in p.get("Contents", [])]
    assert len(got) == len(set(got)), "duplicate keys across pages"
    assert got == expected, "keys missing, extra or out of UTF-8 byte order"
    assert [p["KeyCount"] for p in pages] == [100] * 12 + [34]
    assert all(p["MaxKeys"] == 100 for p in pages)
    assert [p["IsTruncated"] for p in pages] == [True] * 12 + [False]

    for i in range(0, len(expected), 1000):
        resp = s3.delete_objects(Bucket=bucket, Delete={
            "Objects": [{"Key": k} for k in expected[i:i + 1000]], "Quiet": True})
        assert resp.get("Errors", []) == [], resp["Errors"][:3]
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


# --------------------------------------------------------------------------------------------
# 3. boto3: tagging


def test_object_tagging(s3, bucket):
    s3.put_object(Bucket=bucket, Key="t", Body=b"tags", Tagging="project=sluice&env=test%20run")
    got = s3.get_object(Bucket=bucket, Key="t")
    got["Body"].read()
    assert got.get("TagCount") == 2, got.get("TagCount")
    tags = s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [("env", "test run"), ("project", "sluice")]

    s3.put_object_tagging(Bucket=bucket, Key="t", Tagging={"TagSet": [
        {"Key": "a", "Value": "1"}, {"Key": "b", "Value": "two"}, {"Key": "c", "Value": ""}]})
    tags = s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [("a", "1"), ("b", "two"), ("c", "")]
    got = s3.get_object(Bucket=bucket, Key="t")
    assert got["Body"].read() == b"tags", "tagging must not touch the data"
    assert got.get("TagCount") == 3
    head = s3.head_object(Bucket=bucket, Key="t")
    assert head.get("TagCount", 3) == 3

    resp = s3.delete_object_tagging(Bucket=bucket, Key="t")
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"] == []
    got = s3.get_object(Bucket=bucket, Key="t")
    assert "TagCount" not in got, "no x-amz-tagging-count without tags"

    raises_s3("NoSuchKey", 404, s3.get_object_tagging, Bucket=bucket, Key="missing")
    raises_s3("NoSuchKey", 404, s3.put_object_tagging, Bucket=bucket, Key="missing",
              Tagging={"TagSet": [{"Key": "a", "Value": "b"}]})


def test_multipart_upload_with_tagging(s3, mp_bucket):
    bucket = mp_bucket
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="mpt", Tagging="k=v")["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key="mpt", UploadId=upload_id, PartNumber=1, Body=b"x")["ETag"]
    s3.complete_multipart_upload(Bucket=bucket, Key="mpt", UploadId=upload_id,
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert s3.get_object_tagging(Bucket=bucket, Key="mpt")["TagSet"] == [{"Key": "k", "Value": "v"}]


# --------------------------------------------------------------------------------------------
# 3. boto3: versioning read API of a never-versioned bucket


def test_versioning_never_enabled(s3, bucket):
    resp = s3.get_bucket_versioning(Bucket=bucket)
    assert "Status" not in resp and "MFADelete" not in resp, resp

    s3.put_object(Bucket=bucket, Key="v/a", Body=b"first a")
    s3.put_object(Bucket=bucket, Key="v/a", Body=b"second a")
    s3.put_object(Bucket=bucket, Key="v/b", Body=b"b")
    listed = s3.list_object_versions(Bucket=bucket)
    versions = listed.get("Versions", [])
    assert [(v["Key"], v["VersionId"], v["IsLatest"]) for v in versions] == [
        ("v/a", "null", True), ("v/b", "null", True)], versions
    assert versions[0]["ETag"] == f'"{md5_hex(b"second a")}"' and versions[0]["Size"] == 8
    assert listed.get("DeleteMarkers", []) == []
    paged = s3.list_object_versions(Bucket=bucket, MaxKeys=1)
    assert paged["IsTruncated"] is True and [v["Key"] for v in paged["Versions"]] == ["v/a"]

    got = s3.get_object(Bucket=bucket, Key="v/a", VersionId="null")
    assert got["Body"].read() == b"second a"
    head = s3.head_object(Bucket=bucket, Key="v/a", VersionId="null")
    assert head["ContentLength"] == 8
    raises_s3("InvalidArgument", 400, s3.get_object, Bucket=bucket, Key="v/a",
              VersionId="3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY")
    s3.delete_object(Bucket=bucket, Key="v/b", VersionId="null")
    with pytest.raises(ClientError) as info:
        s3.head_object(Bucket=bucket, Key="v/b")
    assert http_status(info.value) == 404


# --------------------------------------------------------------------------------------------
# 3. boto3: conditional PUT and stored checksums


def test_put_if_none_match_and_if_match(s3, bucket):
    first = s3.put_object(Bucket=bucket, Key="once", Body=b"first", IfNoneMatch="*")
    raises_s3("PreconditionFailed", 412, s3.put_object, Bucket=bucket, Key="once", Body=b"second",
              IfNoneMatch="*")
    assert s3.get_object(Bucket=bucket, Key="once")["Body"].read() == b"first"

    raises_s3("PreconditionFailed", 412, s3.put_object, Bucket=bucket, Key="once", Body=b"second",
              IfMatch=f'"{md5_hex(b"not first")}"')
    s3.put_object(Bucket=bucket, Key="once", Body=b"third", IfMatch=first["ETag"])
    assert s3.get_object(Bucket=bucket, Key="once")["Body"].read() == b"third"
    raises_s3("NoSuchKey", 404, s3.put_object, Bucket=bucket, Key="absent", Body=b"x",
              IfMatch=first["ETag"])


def test_get_conditionals(s3, bucket):
    put = s3.put_object(Bucket=bucket, Key="c", Body=b"conditional")
    etag = put["ETag"]
    last_modified = s3.head_object(Bucket=bucket, Key="c")["LastModified"]
    raises_s3("PreconditionFailed", 412, s3.get_object, Bucket=bucket, Key="c", IfMatch='"0000"')
    raises_s3("304", 304, s3.head_object, Bucket=bucket, Key="c", IfNoneMatch=etag)
    assert s3.get_object(Bucket=bucket, Key="c", IfMatch=etag)["Body"].read() == b"conditional"
    raises_s3("304", 304, s3.head_object, Bucket=bucket, Key="c", IfModifiedSince=last_modified)
    raises_s3("PreconditionFailed", 412, s3.get_object, Bucket=bucket, Key="c",
              IfUnmodifiedSince=last_modified.replace(year=2000))


@pytest.mark.parametrize("size", [0, 70_000])
def test_checksum_sha256_stored(any_s3, bucket, size):
    s3 = any_s3
    body = os.urandom(size)
    expected = base64.b64encode(hashlib.sha256(body).digest()).decode()
    put = s3.put_object(Bucket=bucket, Key="sum", Body=body, ChecksumAlgorithm="SHA256")
    assert put.get("ChecksumSHA256") == expected, put
    got = s3.get_object(Bucket=bucket, Key="sum", ChecksumMode="ENABLED")
    assert got["Body"].read() == body
    assert got.get("ChecksumSHA256") == expected, {k: v for k, v in got.items() if k.startswith("Checksum")}
    head = s3.head_object(Bucket=bucket, Key="sum", ChecksumMode="ENABLED")
    assert head.get("ChecksumSHA256") == expected


# --------------------------------------------------------------------------------------------
# HTTP/2 (what rclone negotiates on TLS): a zero-byte object, and a small one, with curl


@pytest.mark.parametrize("size", [0, 3000])
def test_get_over_http2(s3_tls, sluice, bucket, tmp_path, size):
    body = os.urandom(size)
    s3_tls.put_object(Bucket=bucket, Key="h2", Body=body)
    url = s3_tls.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "h2"}, ExpiresIn=300)
    out = tmp_path / "out"
    proc = subprocess.run(
        ["curl", "-sS", "--http2", "--cacert", str(sluice.ca_bundle), "-o", str(out),
         "-w", "%{http_version} %{http_code}", url],
        capture_output=True, timeout=60)
    assert proc.returncode == 0, (
        f"curl --http2 GET of a {size}-byte object failed: {proc.stderr.decode(errors='replace')}\n"
        f"{sluice.log_tail(30)}")
    assert proc.stdout.decode() == "2 200", proc.stdout
    assert out.read_bytes() == body


# --------------------------------------------------------------------------------------------
# 4. rclone


@pytest.mark.slow
def test_rclone_copy_check_lsf_round_trip(rclone, s3, bucket, tmp_path):
    src, back = tmp_path / "src", tmp_path / "back"
    files = {
        "top.txt": b"top level\n",
        "empty": b"",
        "dir/nested/deeper/file.bin": os.urandom(40_000),
        "dir/with space.txt": b"space in the name",
        "dir/ünïcødé ✓.txt": "unicode".encode(),
    }
    for rel, body in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(body)
    big_size = 21 * MiB + 12345
    big_digest, big_etag = write_random(src / "dir" / "big.bin", big_size, part_size=5 * MiB)
    remote = f"{rclone.remote}:{bucket}/dir"
    # Multipart with 5 MiB chunks (rclone's default cutoff is 200 MiB).
    mp_flags = ["--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M", "--s3-upload-concurrency", "2"]

    proc = rclone("copy", str(src), remote, *mp_flags, timeout=TRANSFER_TIMEOUT)
    assert "ERROR" not in proc.stderr, proc.stderr
    head = s3.head_object(Bucket=bucket, Key="dir/dir/big.bin")
    assert head["ContentLength"] == big_size
    assert head["ETag"] == f'"{big_etag}"', f"rclone's 5-part upload: ETag {head['ETag']} != {big_etag}"

    proc = rclone("check", str(src), remote, timeout=TRANSFER_TIMEOUT)
    assert "0 differences found" in proc.stderr, proc.stderr
    assert f"{len(files) + 1} matching files" in proc.stderr, proc.stderr

    listed = rclone("lsf", "-R", "--files-only", remote).stdout.splitlines()
    assert sorted(listed) == sorted([*files, "dir/big.bin"]), listed
    sizes = rclone("lsf", "-R", "--files-only", "--format", "ps", "--separator", "\t", remote).stdout
    got_sizes = dict(line.split("\t") for line in sizes.splitlines())
    assert got_sizes["dir/big.bin"] == str(big_size) and got_sizes["empty"] == "0", got_sizes

    proc = rclone("copy", remote, str(back), timeout=TRANSFER_TIMEOUT)
    assert "ERROR" not in proc.stderr, proc.stderr
    assert tree_digests(back) == tree_digests(src)
    assert sha256_file(back / "dir" / "big.bin") == big_digest

    # A changed file is a difference for `rclone check` (exit status 1).
    (src / "top.txt").write_bytes(b"top level, changed\n")
    proc = rclone("check", str(src), remote, check=False, timeout=TRANSFER_TIMEOUT)
    assert proc.returncode == 1 and "1 differences found" in proc.stderr, (proc.returncode, proc.stderr)
