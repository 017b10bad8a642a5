"""End-to-end tests of sluice with boto3 (default checksum behaviour of botocore 1.44).

On the plain-HTTP listener botocore signs the payload (x-amz-content-sha256 = hex SHA-256) and
sends x-amz-checksum-crc32 as a header; on the TLS listener it sends an unsigned aws-chunked body
(STREAMING-UNSIGNED-PAYLOAD-TRAILER) with a trailing x-amz-checksum-crc32. Object tests that
upload run on both (the `any_s3` fixture).
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import hashlib
import os
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from xml.etree import ElementTree
from pathlib import Path

import boto3
import botocore
import botocore.auth
import botocore.config
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from conftest import (
    Sluice,
    client_config,
    empty_and_delete,
    error_code,
    http_status,
    make_client,
    random_secret,
    unique_bucket_name,
    wait_until,
)

MiB = 1024 * 1024
NO_MULTIPART = TransferConfig(multipart_threshold=8 * 1024 * MiB, max_concurrency=1, use_threads=False)


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def raises_s3(code: str, status: int, fn, *args, **kwargs) -> ClientError:
    """Calls fn, asserts it fails with S3 error `code` and HTTP `status`, returns the error."""
    with pytest.raises(ClientError) as info:
        fn(*args, **kwargs)
    err = info.value
    assert (error_code(err), http_status(err)) == (code, status), (
        f"expected {status} {code}, got {http_status(err)} {error_code(err)}: {err.response.get('Error')}"
    )
    return err


def curl(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", *args], capture_output=True, timeout=timeout)


def curl_get(url: str, out: Path) -> int:
    """GETs url into out with curl, returns the HTTP status."""
    proc = curl("--path-as-is", "-o", str(out), "-w", "%{http_code}", url)
    assert proc.returncode == 0, f"curl failed: {proc.stderr.decode(errors='replace')}"
    return int(proc.stdout.decode().strip())


def all_keys(client, bucket: str, **kwargs) -> list[str]:
    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, **kwargs):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return keys


def blob_files(sluice: Sluice) -> set[Path]:
    blobs = sluice.data_dir / "blobs"
    return {p for p in blobs.rglob("*") if p.is_file()} if blobs.exists() else set()


# --------------------------------------------------------------------------------------------
# Buckets


def test_bucket_lifecycle(s3, bucket_name):
    s3.create_bucket(Bucket=bucket_name)
    try:
        head = s3.head_bucket(Bucket=bucket_name)
        assert head["ResponseMetadata"]["HTTPStatusCode"] == 200

        listed = s3.list_buckets()
        names = [b["Name"] for b in listed["Buckets"]]
        assert bucket_name in names, f"{bucket_name} not in ListBuckets: {names}"
        created = next(b for b in listed["Buckets"] if b["Name"] == bucket_name)["CreationDate"]
        now = dt.datetime.now(dt.timezone.utc)
        assert abs((now - created).total_seconds()) < 300, f"CreationDate {created} is not about now ({now})"

        loc = s3.get_bucket_location(Bucket=bucket_name)
        assert loc.get("LocationConstraint") in (None, ""), f"us-east-1 bucket location: {loc}"
    finally:
        s3.delete_bucket(Bucket=bucket_name)

    raises_s3("404", 404, s3.head_bucket, Bucket=bucket_name)
    assert bucket_name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    raises_s3("NoSuchBucket", 404, s3.delete_bucket, Bucket=bucket_name)


def test_create_existing_bucket(s3, bucket):
    # In us-east-1 S3 answers 200 for a bucket the caller already owns (legacy behaviour);
    # every other region answers 409 BucketAlreadyOwnedByYou. Either is S3's; an error of any
    # other kind, or losing the bucket's contents, is not.
    s3.put_object(Bucket=bucket, Key="keep", Body=b"x")
    try:
        s3.create_bucket(Bucket=bucket)
    except ClientError as err:
        assert (error_code(err), http_status(err)) == ("BucketAlreadyOwnedByYou", 409), err.response
    assert s3.get_object(Bucket=bucket, Key="keep")["Body"].read() == b"x"


def test_delete_non_empty_bucket(s3, bucket):
    s3.put_object(Bucket=bucket, Key="obj", Body=b"data")
    raises_s3("BucketNotEmpty", 409, s3.delete_bucket, Bucket=bucket)
    s3.head_bucket(Bucket=bucket)  # still there
    s3.delete_object(Bucket=bucket, Key="obj")
    s3.delete_bucket(Bucket=bucket)
    raises_s3("404", 404, s3.head_bucket, Bucket=bucket)


def test_missing_bucket(s3, bucket_name):
    raises_s3("404", 404, s3.head_bucket, Bucket=bucket_name)
    raises_s3("NoSuchBucket", 404, s3.get_object, Bucket=bucket_name, Key="k")
    raises_s3("NoSuchBucket", 404, s3.put_object, Bucket=bucket_name, Key="k", Body=b"x")
    raises_s3("NoSuchBucket", 404, s3.list_objects_v2, Bucket=bucket_name)
    raises_s3("NoSuchBucket", 404, s3.list_objects, Bucket=bucket_name)
    raises_s3("NoSuchBucket", 404, s3.get_bucket_location, Bucket=bucket_name)


@pytest.mark.parametrize(
    "name",
    [
        "ab",  # too short
        "a" * 64,  # too long
        "UpperCase",
        "under_score",
        "-leading-dash",
        "trailing-dash-",
        "double..dot",
        "192.168.10.1",  # formatted as an IP address
        "xn--punycode-prefix",  # reserved prefix
        "ends.with.dot.",
    ],
)
def test_invalid_bucket_name(s3, name):
    raises_s3("InvalidBucketName", 400, s3.create_bucket, Bucket=name)
    assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


# --------------------------------------------------------------------------------------------
# Objects


def test_put_get_head_delete_with_metadata(any_s3, bucket):
    s3 = any_s3
    body = gzip.compress(b"sluice says hello\n" * 100, mtime=0)
    expires = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    put = s3.put_object(
        Bucket=bucket,
        Key="docs/hello.txt",
        Body=body,
        Metadata={"color": "blue", "multi-word-name": "hello world", "symbols": "a=b; c,d"},
        ContentType="text/x-sluice; charset=utf-8",
        CacheControl="max-age=60, private",
        ContentDisposition='attachment; filename="report 1.txt"',
        ContentEncoding="gzip",
        ContentLanguage="en-GB",
        Expires=expires,
    )
    assert put["ETag"] == f'"{md5_hex(body)}"', f"PutObject ETag {put['ETag']} is not the body's MD5"

    for resp in (s3.head_object(Bucket=bucket, Key="docs/hello.txt"),
                 s3.get_object(Bucket=bucket, Key="docs/hello.txt")):
        assert resp["ETag"] == f'"{md5_hex(body)}"'
        assert resp["ContentLength"] == len(body)
        assert resp["Metadata"] == {"color": "blue", "multi-word-name": "hello world", "symbols": "a=b; c,d"}
        assert resp["ContentType"] == "text/x-sluice; charset=utf-8"
        assert resp["CacheControl"] == "max-age=60, private"
        assert resp["ContentDisposition"] == 'attachment; filename="report 1.txt"'
        # On TLS botocore sent `Content-Encoding: gzip,aws-chunked`: aws-chunked is transport only.
        assert resp["ContentEncoding"] == "gzip"
        assert resp["ContentLanguage"] == "en-GB"
        assert resp.get("Expires") == expires or resp.get("ExpiresString") in (
            "Wed, 02 Jan 2030 03:04:05 GMT",
        ), f"Expires: {resp.get('Expires')!r} / {resp.get('ExpiresString')!r}"
        modified = resp["LastModified"]
        assert abs((dt.datetime.now(dt.timezone.utc) - modified).total_seconds()) < 300, modified
        if "Body" in resp:
            assert resp["Body"].read() == body

    s3.delete_object(Bucket=bucket, Key="docs/hello.txt")
    raises_s3("404", 404, s3.head_object, Bucket=bucket, Key="docs/hello.txt")
    raises_s3("NoSuchKey", 404, s3.get_object, Bucket=bucket, Key="docs/hello.txt")
    # Deleting a missing key succeeds in S3 (204).
    resp = s3.delete_object(Bucket=bucket, Key="docs/hello.txt")
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204


def test_get_response_header_overrides(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"abc", ContentType="text/plain")
    resp = s3.get_object(
        Bucket=bucket,
        Key="k",
        ResponseContentType="application/x-override",
        ResponseContentDisposition='inline; filename="o.bin"',
        ResponseCacheControl="no-store",
        ResponseContentLanguage="fr",
        ResponseContentEncoding="identity",
        ResponseExpires=dt.datetime(2031, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc),
    )
    assert resp["Body"].read() == b"abc"
    assert resp["ContentType"] == "application/x-override"
    assert resp["ContentDisposition"] == 'inline; filename="o.bin"'
    assert resp["CacheControl"] == "no-store"
    assert resp["ContentLanguage"] == "fr"
    assert resp["ContentEncoding"] == "identity"
    headers = resp["ResponseMetadata"]["HTTPHeaders"]
    assert headers.get("expires") == "Tue, 06 May 2031 07:08:09 GMT", headers
    # The override is per response: the stored object is unchanged.
    assert s3.head_object(Bucket=bucket, Key="k")["ContentType"] == "text/plain"


def test_empty_object_and_overwrite(any_s3, bucket):
    s3 = any_s3
    put = s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    assert put["ETag"] == '"d41d8cd98f00b204e9800998ecf8427e"'
    got = s3.get_object(Bucket=bucket, Key="empty")
    assert got["ContentLength"] == 0 and got["Body"].read() == b""

    s3.put_object(Bucket=bucket, Key="k", Body=b"version one", Metadata={"v": "1"})
    s3.put_object(Bucket=bucket, Key="k", Body=b"v2", ContentType="text/plain")
    got = s3.get_object(Bucket=bucket, Key="k")
    assert got["Body"].read() == b"v2"
    assert got["Metadata"] == {}, "an overwrite replaces the metadata as well"
    assert got["ContentType"] == "text/plain"


def test_default_content_type(s3, bucket):
    # botocore sends no Content-Type for a bytes body; S3 then stores binary/octet-stream.
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert s3.head_object(Bucket=bucket, Key="k")["ContentType"] in ("binary/octet-stream", "application/octet-stream")


RANGE_BODY = bytes((i * 7 + 3) % 251 for i in range(1000))


@pytest.mark.parametrize(
    "range_header, start, end",
    [
        ("bytes=0-9", 0, 9),  # first bytes
        ("bytes=100-199", 100, 199),  # middle
        ("bytes=-50", 950, 999),  # suffix
        ("bytes=990-", 990, 999),  # open-ended
        ("bytes=0-", 0, 999),  # whole object, still 206
        ("bytes=995-5000", 995, 999),  # end past the size is clipped
        ("bytes=-5000", 0, 999),  # suffix longer than the object: all of it
        ("bytes=999-999", 999, 999),  # last byte
    ],
)
def test_range_get(s3, bucket, range_header, start, end):
    s3.put_object(Bucket=bucket, Key="r", Body=RANGE_BODY)
    resp = s3.get_object(Bucket=bucket, Key="r", Range=range_header)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 206, f"{range_header}: status"
    assert resp["ContentRange"] == f"bytes {start}-{end}/1000", f"{range_header}: Content-Range"
    assert resp["ContentLength"] == end - start + 1
    assert resp["Body"].read() == RANGE_BODY[start : end + 1], f"{range_header}: body"
    assert resp["ETag"] == f'"{md5_hex(RANGE_BODY)}"', "a range GET carries the whole object's ETag"


@pytest.mark.parametrize("range_header", ["bytes=1000-", "bytes=1000-1010", "bytes=5000-6000"])
def test_range_unsatisfiable(s3, bucket, range_header):
    s3.put_object(Bucket=bucket, Key="r", Body=RANGE_BODY)
    raises_s3("InvalidRange", 416, s3.get_object, Bucket=bucket, Key="r", Range=range_header)


def test_content_md5(any_s3, bucket, sluice):
    s3 = any_s3
    body = b"the real body"
    put = s3.put_object(Bucket=bucket, Key="ok", Body=body, ContentMD5=md5_b64(body))
    assert put["ETag"] == f'"{md5_hex(body)}"'

    s3.put_object(Bucket=bucket, Key="existing", Body=b"old")
    before = blob_files(sluice)
    for key in ("new", "existing"):
        raises_s3("BadDigest", 400, s3.put_object, Bucket=bucket, Key=key, Body=body,
                  ContentMD5=md5_b64(b"something else"))
    raises_s3("404", 404, s3.head_object, Bucket=bucket, Key="new")
    assert s3.get_object(Bucket=bucket, Key="existing")["Body"].read() == b"old", (
        "a PUT rejected with BadDigest must leave the previous object in place"
    )
    assert blob_files(sluice) == before, "a rejected PUT left a body file in blobs/"
    assert sorted(all_keys(s3, bucket)) == ["existing", "ok"]

    # A Content-MD5 that is not the base64 of 16 bytes is InvalidDigest.
    raises_s3("InvalidDigest", 400, s3.put_object, Bucket=bucket, Key="bad", Body=body,
              ContentMD5="not-base64!")


def test_checksum_mismatch(any_s3, bucket):
    s3 = any_s3
    body = b"checksummed body"
    sha = base64.b64encode(hashlib.sha256(body).digest()).decode()
    s3.put_object(Bucket=bucket, Key="good", Body=body, ChecksumSHA256=sha)
    assert s3.get_object(Bucket=bucket, Key="good")["Body"].read() == body

    wrong = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    raises_s3("BadDigest", 400, s3.put_object, Bucket=bucket, Key="bad", Body=body, ChecksumSHA256=wrong)
    raises_s3("BadDigest", 400, s3.put_object, Bucket=bucket, Key="bad", Body=body,
              ChecksumCRC32=base64.b64encode(b"\x00\x00\x00\x00").decode())
    raises_s3("404", 404, s3.head_object, Bucket=bucket, Key="bad")

    # Asked for by algorithm, botocore computes it (as a trailer over TLS, a header over HTTP).
    s3.put_object(Bucket=bucket, Key="sha", Body=body, ChecksumAlgorithm="SHA256")
    assert s3.get_object(Bucket=bucket, Key="sha")["Body"].read() == body


@pytest.mark.slow
def test_large_upload_64mib(any_s3, bucket, tmp_path):
    s3 = any_s3
    src, dst = tmp_path / "src.bin", tmp_path / "dst.bin"
    sha, md5 = hashlib.sha256(), hashlib.md5()
    with open(src, "wb") as f:
        for _ in range(64):
            chunk = os.urandom(MiB)
            sha.update(chunk)
            md5.update(chunk)
            f.write(chunk)
    s3.upload_file(str(src), bucket, "big/object.bin", Config=NO_MULTIPART)
    head = s3.head_object(Bucket=bucket, Key="big/object.bin")
    assert head["ContentLength"] == 64 * MiB
    assert head["ETag"] == f'"{md5.hexdigest()}"', "ETag of a single-PUT object is the MD5 of its bytes"
    src.unlink()

    s3.download_file(bucket, "big/object.bin", str(dst), Config=NO_MULTIPART)
    got = hashlib.sha256()
    with open(dst, "rb") as f:
        while chunk := f.read(MiB):
            got.update(chunk)
    assert dst.stat().st_size == 64 * MiB
    assert got.hexdigest() == sha.hexdigest(), "downloaded bytes differ from the uploaded ones"


# --------------------------------------------------------------------------------------------
# Listing

LIST_KEYS = sorted(
    [f"top{i:02d}" for i in range(10)]
    + [f"a/{i:02d}" for i in range(5)]
    + [f"b/c/{i:02d}" for i in range(5)]
    + [f"z{i:02d}/x" for i in range(5)]
)
assert len(LIST_KEYS) == 25


@pytest.fixture
def listing_bucket(s3, bucket):
    for key in LIST_KEYS:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    return bucket


def test_list_v2_paginated(s3, listing_bucket):
    pages = list(s3.get_paginator("list_objects_v2").paginate(
        Bucket=listing_bucket, PaginationConfig={"PageSize": 7}))
    keys = [o["Key"] for p in pages for o in p.get("Contents", [])]
    assert keys == LIST_KEYS, "pages of 7 did not add up to the sorted key list"
    assert [p["KeyCount"] for p in pages] == [7, 7, 7, 4]
    assert [p["IsTruncated"] for p in pages] == [True, True, True, False]
    for p in pages[:-1]:
        assert p.get("NextContinuationToken"), "a truncated page needs NextContinuationToken"
    assert pages[0]["MaxKeys"] == 7
    obj = pages[0]["Contents"][0]
    assert obj["Key"] == "a/00" and obj["Size"] == 4 and obj["ETag"] == f'"{md5_hex(b"a/00")}"'
    assert obj.get("StorageClass", "STANDARD") == "STANDARD"


def test_list_v2_delimiter_paginated(s3, listing_bucket):
    pages = list(s3.get_paginator("list_objects_v2").paginate(
        Bucket=listing_bucket, Delimiter="/", PaginationConfig={"PageSize": 7}))
    keys = [o["Key"] for p in pages for o in p.get("Contents", [])]
    prefixes = [c["Prefix"] for p in pages for c in p.get("CommonPrefixes", [])]
    assert keys == [f"top{i:02d}" for i in range(10)]
    assert prefixes == ["a/", "b/"] + [f"z{i:02d}/" for i in range(5)]
    for p in pages:
        n = len(p.get("Contents", [])) + len(p.get("CommonPrefixes", []))
        assert n <= 7, f"a page of max-keys 7 held {n} entries (keys and common prefixes count)"
        assert p["KeyCount"] == n, f"KeyCount {p['KeyCount']} != {n} entries"
        assert p["Delimiter"] == "/"
    assert sum(len(p.get("Contents", [])) + len(p.get("CommonPrefixes", [])) for p in pages) == 17
    assert len(pages) == 3


def test_list_v2_prefix_and_start_after(s3, listing_bucket):
    r = s3.list_objects_v2(Bucket=listing_bucket, Prefix="b/", Delimiter="/")
    assert r.get("Contents", []) == [] and [c["Prefix"] for c in r["CommonPrefixes"]] == ["b/c/"]
    assert r["Prefix"] == "b/" and r["KeyCount"] == 1

    r = s3.list_objects_v2(Bucket=listing_bucket, Prefix="a/")
    assert [o["Key"] for o in r["Contents"]] == [f"a/{i:02d}" for i in range(5)]

    r = s3.list_objects_v2(Bucket=listing_bucket, StartAfter="top05")
    assert [o["Key"] for o in r["Contents"]] == [k for k in LIST_KEYS if k > "top05"]
    assert r["StartAfter"] == "top05"

    r = s3.list_objects_v2(Bucket=listing_bucket, StartAfter="top05", MaxKeys=2)
    assert [o["Key"] for o in r["Contents"]] == ["top06", "top07"] and r["IsTruncated"]
    r = s3.list_objects_v2(Bucket=listing_bucket, StartAfter="top05", MaxKeys=2,
                           ContinuationToken=r["NextContinuationToken"])
    assert [o["Key"] for o in r["Contents"]] == ["top08", "top09"]

    r = s3.list_objects_v2(Bucket=listing_bucket, Prefix="nothing-here")
    assert r["KeyCount"] == 0 and "Contents" not in r and r["IsTruncated"] is False

    r = s3.list_objects_v2(Bucket=listing_bucket, StartAfter="zzz")
    assert r["KeyCount"] == 0 and r["IsTruncated"] is False


def test_list_v1_marker(s3, listing_bucket):
    r = s3.list_objects(Bucket=listing_bucket, Marker="top05", MaxKeys=3)
    assert [o["Key"] for o in r["Contents"]] == ["top06", "top07", "top08"]
    assert r["IsTruncated"] is True and r["Marker"] == "top05" and r["MaxKeys"] == 3

    pages = list(s3.get_paginator("list_objects").paginate(
        Bucket=listing_bucket, PaginationConfig={"PageSize": 7}))
    assert [o["Key"] for p in pages for o in p.get("Contents", [])] == LIST_KEYS
    assert [p["IsTruncated"] for p in pages] == [True, True, True, False]

    # With a delimiter S3 returns NextMarker on truncated pages (the paginator relies on it).
    pages = list(s3.get_paginator("list_objects").paginate(
        Bucket=listing_bucket, Delimiter="/", PaginationConfig={"PageSize": 5}))
    for p in pages[:-1]:
        assert p["IsTruncated"] and p.get("NextMarker"), f"truncated v1 page without NextMarker: {p}"
    assert [o["Key"] for p in pages for o in p.get("Contents", [])] == [f"top{i:02d}" for i in range(10)]
    assert [c["Prefix"] for p in pages for c in p.get("CommonPrefixes", [])] == (
        ["a/", "b/"] + [f"z{i:02d}/" for i in range(5)])


ODD_KEYS = [
    "dir one/naïve café ü.txt",
    "dir one/second file",
    "plus+sign",
    "percent%20literal",
    "ümlaut/ß",
    "emoji/😀 face",
    "amp&lt<gt>quote\"'",
]


def test_control_character_key(s3, bucket):
    # S3 keys may hold any UTF-8, C0 controls included ("characters that might require special
    # handling"); such keys can only be listed with encoding-type=url, which is why it exists.
    key = "ctrl\x01char\x1f"
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=b"ctrl")
    except ClientError as err:
        pytest.fail(f"PUT of key {key!r} failed: {http_status(err)} {err.response.get('Error')} "
                    "(an unparseable error document shows as Code '400', Message 'Bad Request')")
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"ctrl"
    assert all_keys(s3, bucket) == [key]
    raw = s3.list_objects_v2(Bucket=bucket, EncodingType="url")["Contents"][0]["Key"]
    assert raw.upper() == "CTRL%01CHAR%1F", raw


@pytest.mark.parametrize("key", ["missing\x01key", "missing&<>\"'key", "missing ü ]]> key"],
                         ids=["control", "xml-specials", "unicode-cdata-end"])
def test_error_document_is_parseable_for_odd_keys(s3, bucket, key):
    # Whatever the server does with a key, its error document must stay well-formed XML, so that
    # clients can read the error code: GET of a missing key is NoSuchKey.
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=300)
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(url, timeout=30)
    body = info.value.read()
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError as err:
        pytest.fail(f"{info.value.code} error document is not well-formed XML ({err}): {body!r}")
    assert root.tag == "Error" and root.findtext("Code"), body
    assert (info.value.code, root.findtext("Code")) == (404, "NoSuchKey"), body


def test_list_encoding_type_url(s3, bucket):
    failed = {}
    for key in ODD_KEYS:
        try:
            s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
            assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == key.encode()
        except ClientError as err:
            failed[key] = (http_status(err), error_code(err), err.response.get("Error", {}).get("Message"))
    assert not failed, f"keys refused: {failed}"

    # boto3 asks for encoding-type=url itself and decodes; the keys must come back exact.
    assert all_keys(s3, bucket) == sorted(ODD_KEYS)
    assert [o["Key"] for o in s3.list_objects(Bucket=bucket)["Contents"]] == sorted(ODD_KEYS)

    # Asked for explicitly, botocore leaves the values as the server sent them.
    r = s3.list_objects_v2(Bucket=bucket, EncodingType="url")
    assert r["EncodingType"] == "url"
    raw = [o["Key"] for o in r["Contents"]]
    for value in raw:
        assert value.isascii() and value.isprintable() and " " not in value, (
            f"{value!r} is not URL-encoded")
    assert [urllib.parse.unquote_plus(v) for v in raw] == sorted(ODD_KEYS), (
        f"URL-decoded keys differ: {raw}")

    r = s3.list_objects_v2(Bucket=bucket, EncodingType="url", Delimiter="/", Prefix="dir one/",
                           StartAfter="dir one/naïve")
    assert urllib.parse.unquote_plus(r["Prefix"]) == "dir one/" and " " not in r["Prefix"]
    assert urllib.parse.unquote_plus(r["StartAfter"]) == "dir one/naïve" and r["StartAfter"].isascii()
    assert [urllib.parse.unquote_plus(o["Key"]) for o in r["Contents"]] == [
        "dir one/naïve café ü.txt", "dir one/second file"]

    r = s3.list_objects_v2(Bucket=bucket, EncodingType="url", Delimiter="/")
    prefixes = [c["Prefix"] for c in r["CommonPrefixes"]]
    assert all(p.isascii() and " " not in p for p in prefixes), prefixes
    assert [urllib.parse.unquote_plus(p) for p in prefixes] == ["dir one/", "emoji/", "ümlaut/"]

    r = s3.list_objects(Bucket=bucket, EncodingType="url", Marker="dir one/second file")
    assert urllib.parse.unquote_plus(r["Marker"]) == "dir one/second file" and " " not in r["Marker"]
    assert [urllib.parse.unquote_plus(o["Key"]) for o in r["Contents"]] == [
        k for k in sorted(ODD_KEYS) if k > "dir one/second file"]


# --------------------------------------------------------------------------------------------
# Keys that look like paths


TRAVERSAL_KEYS = [
    "../../etc/passwd",
    "../escape",
    "../../../../../../../../tmp/sluice-escape",
    "/abs/path",
    "//double-leading",
    "a//b",
    "a/./b",
    "a/../b",
    "..",
    ".",
    "./dot",
    "a%2F..%2Fb",
    "..%2F..%2Fescape",
    "..\\..\\windows",
    "trailing/",
    "index.redb",
    "blobs/00/x",
]


def _snapshot(root: Path, exclude: list[Path]) -> set[str]:
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        if any(d == e or e in d.parents for e in exclude):
            dirnames[:] = []
            continue
        for name in dirnames + filenames:
            out.add(str((d / name).relative_to(root)))
    return out


def test_path_traversal_keys(s3, bucket, sluice):
    passwd = Path("/etc/passwd")
    passwd_before = passwd.read_bytes() if passwd.exists() else None
    outside = [Path("/abs"), Path("/escape"), Path("/tmp/sluice-escape"), Path("/windows"),
               sluice.root.parent / "escape"]
    existed = {p: p.exists() for p in outside}
    excluded = [sluice.data_dir, sluice.log_path.parent]
    before = _snapshot(sluice.root, excluded)

    seen_urls = []

    def record(request, **_):
        seen_urls.append(request.url)

    s3.meta.events.register("before-send.s3.*", record)
    try:
        bodies = {key: f"body of {key!r}\n".encode() + os.urandom(16) for key in TRAVERSAL_KEYS}
        for key, body in bodies.items():
            s3.put_object(Bucket=bucket, Key=key, Body=body)
        for key, body in bodies.items():
            got = s3.get_object(Bucket=bucket, Key=key)
            assert got["Body"].read() == body, f"key {key!r} did not read back byte-exact"
            assert s3.head_object(Bucket=bucket, Key=key)["ContentLength"] == len(body)
    finally:
        s3.meta.events.unregister("before-send.s3.*", record)

    # Every request went out with the key as written (botocore does not normalise S3 paths).
    assert any("/../../etc/passwd" in u for u in seen_urls), seen_urls[:3]

    assert all_keys(s3, bucket) == sorted(TRAVERSAL_KEYS)
    r = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    assert sorted(c["Prefix"] for c in r.get("CommonPrefixes", [])) == sorted(
        {k.split("/", 1)[0] + "/" for k in TRAVERSAL_KEYS if "/" in k})

    assert _snapshot(sluice.root, excluded) == before, "files appeared outside the data directory"
    for p in outside:
        assert p.exists() == existed[p], f"{p} appeared outside the data directory"
    if passwd_before is not None:
        assert passwd.read_bytes() == passwd_before, "/etc/passwd changed"

    # Inside the data directory keys are never paths: only the index, blobs/<2 hex>/<id>, tmp/.
    for p in sluice.data_dir.rglob("*"):
        rel = p.relative_to(sluice.data_dir).parts
        assert not ({"..", "etc", "passwd", "escape", "abs", "windows", "a", "dot"} & set(rel)), (
            f"a key became a path in the data directory: {p}")
        if p.is_file() and rel[0] == "blobs":
            assert len(rel) == 3 and len(rel[1]) == 2 and all(c in "0123456789abcdef" for c in rel[1]), (
                f"unexpected blob path {p}")

    for key in TRAVERSAL_KEYS:
        s3.delete_object(Bucket=bucket, Key=key)
    assert all_keys(s3, bucket) == []


def test_key_length_limit(s3, bucket):
    ok = "k" * 1024
    s3.put_object(Bucket=bucket, Key=ok, Body=b"1024")
    assert s3.get_object(Bucket=bucket, Key=ok)["Body"].read() == b"1024"
    multibyte_ok = "é" * 512  # 1024 bytes of UTF-8
    s3.put_object(Bucket=bucket, Key=multibyte_ok, Body=b"mb")
    assert s3.get_object(Bucket=bucket, Key=multibyte_ok)["Body"].read() == b"mb"

    raises_s3("KeyTooLongError", 400, s3.put_object, Bucket=bucket, Key="k" * 1025, Body=b"x")
    raises_s3("KeyTooLongError", 400, s3.put_object, Bucket=bucket, Key="€" * 342, Body=b"x")  # 1026 bytes
    assert sorted(all_keys(s3, bucket)) == sorted([ok, multibyte_ok])


# --------------------------------------------------------------------------------------------
# Authentication


def test_wrong_secret(sluice, s3, bucket):
    bad = make_client(sluice, secret=random_secret())
    raises_s3("SignatureDoesNotMatch", 403, bad.list_buckets)
    raises_s3("SignatureDoesNotMatch", 403, bad.put_object, Bucket=bucket, Key="k", Body=b"x")
    raises_s3("SignatureDoesNotMatch", 403, bad.get_object, Bucket=bucket, Key="k")
    raises_s3("404", 404, s3.head_object, Bucket=bucket, Key="k")


def test_unknown_access_id(sluice, bucket):
    bad = make_client(sluice, access_id="SLUICEUNKNOWN0000", secret=random_secret())
    err = raises_s3("InvalidAccessKeyId", 403, bad.list_buckets)
    assert err.response["ResponseMetadata"]["HTTPHeaders"].get("x-amz-request-id")
    raises_s3("InvalidAccessKeyId", 403, bad.put_object, Bucket=bucket, Key="k", Body=b"x")


def test_anonymous_denied(sluice, bucket, tmp_path):
    anon = boto3.session.Session(region_name="us-east-1").client(
        "s3", endpoint_url=sluice.endpoint,
        config=client_config().merge(botocore.config.Config(signature_version=botocore.UNSIGNED)))
    raises_s3("AccessDenied", 403, anon.list_buckets)
    raises_s3("AccessDenied", 403, anon.put_object, Bucket=bucket, Key="k", Body=b"x")

    out = tmp_path / "err.xml"
    assert curl_get(f"{sluice.endpoint}/{bucket}/k", out) == 403
    xml = out.read_text()
    assert "<Code>AccessDenied</Code>" in xml and "<RequestId>" in xml and "<Message>" in xml, xml


def test_presigned_get_with_curl(s3, bucket, tmp_path):
    body = os.urandom(100_000)
    s3.put_object(Bucket=bucket, Key="dir/presigned object.bin", Body=body)
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "dir/presigned object.bin"},
                                    ExpiresIn=300)
    assert "X-Amz-Signature=" in url
    out = tmp_path / "out.bin"
    assert curl_get(url, out) == 200, out.read_bytes()[:500]
    assert out.read_bytes() == body

    # Tampering with the URL (another key) breaks the signature.
    s3.put_object(Bucket=bucket, Key="dir/other", Body=b"secret")
    tampered = url.replace("presigned%20object.bin", "other")
    assert tampered != url
    assert curl_get(tampered, out) == 403
    assert "<Code>SignatureDoesNotMatch</Code>" in out.read_text()


def test_presigned_put_with_curl(s3_tls, sluice, bucket, tmp_path):
    # A presigned PUT carries an unsigned payload, so it goes over TLS.
    body = os.urandom(50_000)
    src = tmp_path / "up.bin"
    src.write_bytes(body)
    url = s3_tls.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "uploaded"},
                                        ExpiresIn=300)
    assert url.startswith("https://"), url
    proc = curl("--cacert", str(sluice.ca_bundle), "-T", str(src), "-o", str(tmp_path / "resp"),
                "-w", "%{http_code}", url)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode() == "200", (tmp_path / "resp").read_bytes()
    got = s3_tls.get_object(Bucket=bucket, Key="uploaded")
    assert got["Body"].read() == body and got["ETag"] == f'"{md5_hex(body)}"'


def test_unsigned_payload_refused_on_plain_http(s3, bucket, tmp_path):
    # Sluice's policy: on a plain-HTTP listener (without danger_accept_unsigned_payload) a body
    # the signature does not cover is refused, since it could have been altered on the way.
    src = tmp_path / "up.bin"
    src.write_bytes(b"unsigned body")
    url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "unsigned"}, ExpiresIn=300)
    assert url.startswith("http://"), url
    out = tmp_path / "resp"
    proc = curl("-T", str(src), "-o", str(out), "-w", "%{http_code}", url)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode() == "403" and "<Code>AccessDenied</Code>" in out.read_text(), out.read_text()
    raises_s3("404", 404, s3.head_object, Bucket=bucket, Key="unsigned")


def test_presigned_expired(s3, bucket, tmp_path, monkeypatch):
    s3.put_object(Bucket=bucket, Key="k", Body=b"payload")
    real_now = botocore.auth.get_current_datetime

    # Sign as if the clock read two hours ago: a URL valid for one hour has expired by now.
    monkeypatch.setattr(botocore.auth, "get_current_datetime",
                        lambda *a, **kw: real_now(*a, **kw) - dt.timedelta(hours=2))
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=3600)
    monkeypatch.undo()
    two_hours_ago = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=2)).strftime("%Y%m%dT%H")
    assert f"X-Amz-Date={two_hours_ago}" in url, url

    out = tmp_path / "out"
    assert curl_get(url, out) == 403
    xml = out.read_text()
    assert "<Code>AccessDenied</Code>" in xml, xml
    assert "Request has expired" in xml, xml

    fresh = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=3600)
    assert curl_get(fresh, out) == 200 and out.read_bytes() == b"payload"


# --------------------------------------------------------------------------------------------
# Key management while the server runs


def _parse_created_key(stdout: str) -> tuple[str, str]:
    fields = dict(line.split(":", 1) for line in stdout.splitlines() if ":" in line)
    access_id, secret = fields["access_id"].strip(), fields["secret"].strip()
    assert access_id.startswith("SLK") and len(secret) >= 40, stdout
    return access_id, secret


def _outcome(client) -> str:
    try:
        client.list_buckets()
        return "ok"
    except ClientError as err:
        return error_code(err)


def test_key_lifecycle_while_running(sluice, bucket):
    access_id, secret = _parse_created_key(sluice.run_cli("keys", "create", "--tenant", "dev").stdout)
    client = make_client(sluice, access_id=access_id, secret=secret)

    wait_until(lambda: _outcome(client) == "ok", timeout=10, what=f"the new key {access_id} is accepted")
    client.put_object(Bucket=bucket, Key="by-new-key", Body=b"hi")
    assert access_id in sluice.run_cli("keys", "list").stdout

    # An active key cannot be deleted.
    assert sluice.run_cli("keys", "delete", access_id, "--tenant", "dev", check=False).returncode != 0

    sluice.run_cli("keys", "deactivate", access_id, "--tenant", "dev")
    wait_until(lambda: _outcome(client) == "InvalidAccessKeyId", timeout=10,
               what=f"the deactivated key {access_id} is refused with InvalidAccessKeyId")
    raises_s3("InvalidAccessKeyId", 403, client.get_object, Bucket=bucket, Key="by-new-key")
    listed = [line for line in sluice.run_cli("keys", "list").stdout.splitlines() if access_id in line]
    assert listed and "inactive" in listed[0], listed

    sluice.run_cli("keys", "activate", access_id, "--tenant", "dev")
    wait_until(lambda: _outcome(client) == "ok", timeout=10, what=f"the re-activated key {access_id} works")
    assert client.get_object(Bucket=bucket, Key="by-new-key")["Body"].read() == b"hi"

    sluice.run_cli("keys", "deactivate", access_id, "--tenant", "dev")
    sluice.run_cli("keys", "delete", access_id, "--tenant", "dev")
    wait_until(lambda: _outcome(client) == "InvalidAccessKeyId", timeout=10,
               what=f"the deleted key {access_id} is refused with InvalidAccessKeyId")
    assert access_id not in sluice.run_cli("keys", "list").stdout

    # The config key was never affected.
    assert _outcome(make_client(sluice)) == "ok"
