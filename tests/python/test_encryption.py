"""Encryption at rest through real clients: boto3, the aws CLI and rclone.

Buckets named `vault-*` route to a local backend of their own (`srv/vault`) with
`encryption: required`. What is stored is checked by reading the backend's files straight from
disk, never by asking Sluice; what clients see must be the plaintext: sizes, ETags, ranges,
multipart objects with odd part sizes.
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from botocore.exceptions import ClientError

from conftest import AwsCli, Rclone, Sluice, aws_cli_for, empty_and_delete, error_code, ssec_key

MIB = 1 << 20


def vault_name() -> str:
    return f"vault-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def vault(s3) -> Iterator[str]:
    name = vault_name()
    s3.create_bucket(Bucket=name)
    yield name
    empty_and_delete(s3, name)


def stored_files(sluice: Sluice) -> list[Path]:
    root = sluice.root / "srv" / "vault"
    return [p for p in root.rglob("*") if p.is_file()]


def assert_stored_as_ciphertext(sluice: Sluice, plaintexts: list[bytes]) -> None:
    """No file of the vault backend holds any 64-byte run of any of `plaintexts` (sampled
    across each), and the streams' magic is there: what is at rest is ciphertext."""
    files = [p.read_bytes() for p in stored_files(sluice)]
    assert any(b"SLCE" in data for data in files), "no encrypted stream found in the vault's files"
    for plain in plaintexts:
        if len(plain) < 64:
            continue
        step = max(1, (len(plain) - 64) // 50)
        for at in range(0, len(plain) - 63, step):
            window = plain[at:at + 64]
            for data in files:
                assert window not in data, f"plaintext bytes {at}..{at + 64} found at rest"


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_objects_read_back_as_plaintext_and_rest_as_ciphertext(s3, vault: str, sluice: Sluice) -> None:
    written = []
    for size in [0, 1, 65_536, 100_000, 200_001]:
        data = os.urandom(size)
        key = f"obj-{size}"
        put = s3.put_object(Bucket=vault, Key=key, Body=data)
        assert put["ETag"] == f'"{md5(data)}"'
        assert put["ServerSideEncryption"] == "AES256"
        head = s3.head_object(Bucket=vault, Key=key)
        assert head["ContentLength"] == size
        assert head["ETag"] == f'"{md5(data)}"'
        assert head["ServerSideEncryption"] == "AES256"
        assert s3.get_object(Bucket=vault, Key=key)["Body"].read() == data
        written.append(data)
    listed = {o["Key"]: o for o in s3.list_objects_v2(Bucket=vault)["Contents"]}
    for data in written:
        entry = listed[f"obj-{len(data)}"]
        assert entry["Size"] == len(data)
        assert entry["ETag"] == f'"{md5(data)}"'
    v1 = {o["Key"]: o["Size"] for o in s3.list_objects(Bucket=vault)["Contents"]}
    assert v1 == {f"obj-{len(d)}": len(d) for d in written}
    assert_stored_as_ciphertext(sluice, written)


def test_random_ranges_match_the_plaintext(s3, vault: str) -> None:
    data = os.urandom(5 * 65_536 + 1_234)
    s3.put_object(Bucket=vault, Key="r", Body=data)
    n = len(data)
    rng = random.Random(5)
    ranges = [(0, 0), (65_535, 65_536), (n - 1, n - 1), (1, n - 1), (0, n - 2)]
    ranges += [(k * 65_536 - 1, k * 65_536 + 1) for k in range(1, 6)]
    for _ in range(150):
        a = rng.randrange(n)
        ranges.append((a, rng.randrange(a, n)))
    for a, b in ranges:
        got = s3.get_object(Bucket=vault, Key="r", Range=f"bytes={a}-{b}")
        assert got["ContentRange"] == f"bytes {a}-{b}/{n}"
        assert got["Body"].read() == data[a:b + 1], (a, b)
    assert s3.get_object(Bucket=vault, Key="r", Range="bytes=-100")["Body"].read() == data[-100:]
    assert s3.get_object(Bucket=vault, Key="r", Range="bytes=300000-")["Body"].read() == data[300_000:]


def test_multipart_with_odd_parts_out_of_order_and_retried(s3, vault: str, sluice: Sluice) -> None:
    parts = {1: os.urandom(5 * MIB + 1), 2: os.urandom(5 * MIB + 77), 3: os.urandom(333)}
    upload = s3.create_multipart_upload(Bucket=vault, Key="mp")["UploadId"]
    etags = {}
    s3.upload_part(Bucket=vault, Key="mp", UploadId=upload, PartNumber=2, Body=os.urandom(5 * MIB))
    for number in [3, 2, 1]:  # out of order; part 2 again, the second upload wins
        etags[number] = s3.upload_part(
            Bucket=vault, Key="mp", UploadId=upload, PartNumber=number, Body=parts[number]
        )["ETag"]
    listed = s3.list_parts(Bucket=vault, Key="mp", UploadId=upload)["Parts"]
    assert [p["Size"] for p in listed] == [len(parts[n]) for n in (1, 2, 3)]
    s3.complete_multipart_upload(
        Bucket=vault, Key="mp", UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etags[n]} for n in (1, 2, 3)]},
    )
    whole = parts[1] + parts[2] + parts[3]
    expected_etag = hashlib.md5(b"".join(hashlib.md5(parts[n]).digest() for n in (1, 2, 3))).hexdigest()
    head = s3.head_object(Bucket=vault, Key="mp")
    assert head["ContentLength"] == len(whole)
    assert head["ETag"] == f'"{expected_etag}-3"'
    assert s3.get_object(Bucket=vault, Key="mp")["Body"].read() == whole
    boundary = len(parts[1])
    for a, b in [(boundary - 5, boundary + 5), (0, boundary), (boundary + len(parts[2]) - 1, len(whole) - 1)]:
        assert s3.get_object(Bucket=vault, Key="mp", Range=f"bytes={a}-{b}")["Body"].read() == whole[a:b + 1]
    part2 = s3.get_object(Bucket=vault, Key="mp", PartNumber=2)
    assert part2["Body"].read() == parts[2]
    listing = s3.list_objects_v2(Bucket=vault)["Contents"]
    assert [(o["Key"], o["Size"]) for o in listing] == [("mp", len(whole))]
    assert_stored_as_ciphertext(sluice, [parts[1], parts[2], parts[3]])


@pytest.fixture
def aws_odd_parts(sluice: Sluice, tmp_path: Path) -> AwsCli:
    """The aws CLI uploading in parts of 5 MiB + 3 bytes (no part lands on a segment edge)."""
    home = tmp_path / "awscli-odd"
    home.mkdir()
    cli = aws_cli_for(sluice, home)
    cli("configure", "set", "default.s3.multipart_threshold", str(5 * MIB + 3), endpoint=False)
    cli("configure", "set", "default.s3.multipart_chunksize", str(5 * MIB + 3), endpoint=False)
    return cli


def test_aws_cli_multipart_copy_and_sync_see_plaintext(aws_odd_parts: AwsCli, vault: str,
                                                        sluice: Sluice, tmp_path: Path) -> None:
    src = tmp_path / "up"
    src.mkdir()
    big = os.urandom(12 * MIB + 5)
    (src / "big.bin").write_bytes(big)
    (src / "small.txt").write_bytes(b"small and encrypted\n" * 10)
    aws_odd_parts("s3", "cp", str(src / "big.bin"), f"s3://{vault}/big.bin")
    out = tmp_path / "big.out"
    aws_odd_parts("s3", "cp", f"s3://{vault}/big.bin", str(out))
    assert out.read_bytes() == big
    listed = aws_odd_parts("s3", "ls", f"s3://{vault}/").stdout
    assert f"{len(big)} big.bin" in listed, listed
    # sync: a second run finds nothing to do (sizes and times are the plaintext's).
    aws_odd_parts("s3", "sync", str(src), f"s3://{vault}/synced/")
    again = aws_odd_parts("s3", "sync", str(src), f"s3://{vault}/synced/", "--dryrun").stdout
    assert again.strip() == "", again
    assert_stored_as_ciphertext(sluice, [big])


def test_rclone_check_finds_no_differences(rclone: Rclone, vault: str, tmp_path: Path) -> None:
    src = tmp_path / "tree"
    (src / "sub").mkdir(parents=True)
    for i, size in enumerate([0, 10, 70_000, 300_000]):
        (src / "sub" / f"f{i}.bin").write_bytes(os.urandom(size))
    remote = f"{rclone.remote}:{vault}/tree"
    rclone("copy", str(src), remote)
    check = rclone("check", str(src), remote)
    assert "0 differences found" in check.stderr, check.stderr
    # rclone compared hashes too: single-part ETags are the plaintext's MD5.
    assert "hashes could not be checked" not in check.stderr, check.stderr
    listed = rclone("lsl", remote).stdout
    assert "300000" in listed, listed


def test_aes256_requested_is_honoured_and_other_algorithms_refused(s3, bucket: str, vault: str,
                                                                    sluice: Sluice) -> None:
    # `bucket` routes to the plain local backend (policy off): asking for AES256 encrypts.
    data = os.urandom(100_000)
    put = s3.put_object(Bucket=bucket, Key="asked", Body=data, ServerSideEncryption="AES256")
    assert put["ServerSideEncryption"] == "AES256"
    assert s3.head_object(Bucket=bucket, Key="asked")["ServerSideEncryption"] == "AES256"
    assert s3.get_object(Bucket=bucket, Key="asked")["Body"].read() == data
    plain = os.urandom(1000)
    s3.put_object(Bucket=bucket, Key="not-asked", Body=plain)
    assert "ServerSideEncryption" not in s3.head_object(Bucket=bucket, Key="not-asked")
    at_rest = [p.read_bytes() for p in (sluice.root / "srv" / "data").rglob("*") if p.is_file()]
    assert not any(data[5000:5064] in f for f in at_rest), "the AES256 object is stored in plaintext"
    assert any(plain[100:164] in f for f in at_rest), "plaintext objects stay plaintext (control)"

    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="kms", Body=b"x", ServerSideEncryption="aws:kms")
    assert error_code(e.value) == "NotImplemented"
    # A copy on a route that does not encrypt every write cannot honour it; on a vault it can.
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "not-asked"},
                       ServerSideEncryption="AES256")
    assert error_code(e.value) == "NotImplemented"
    s3.copy_object(Bucket=vault, Key="copy", CopySource={"Bucket": bucket, "Key": "not-asked"},
                   ServerSideEncryption="AES256")
    copied = s3.get_object(Bucket=vault, Key="copy")
    assert copied["ServerSideEncryption"] == "AES256"
    assert copied["Body"].read() == plain


def test_objects_swapped_at_rest_are_refused_not_served(s3, vault: str, sluice: Sluice) -> None:
    """Two objects' stored files swapped wholesale (each file keeps its own block checksums,
    so the local backend's integrity check passes): each now holds a stream sealed under the
    other object's data key. Reads fail before any byte is sent, whole or ranged."""
    size = 200_003  # a size no other test stores
    a, b = os.urandom(size), os.urandom(size)
    before = {p for p in stored_files(sluice)}
    s3.put_object(Bucket=vault, Key="a", Body=a)
    s3.put_object(Bucket=vault, Key="b", Body=b)
    new = [p for p in stored_files(sluice) if p not in before]
    assert len(new) == 2, new
    first, second = new[0].read_bytes(), new[1].read_bytes()
    new[0].write_bytes(second)
    new[1].write_bytes(first)
    for key in ["a", "b"]:
        for extra in [{}, {"Range": "bytes=150000-150010"}]:
            with pytest.raises(ClientError) as e:
                s3.get_object(Bucket=vault, Key=key, **extra)["Body"].read()
            assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
            assert error_code(e.value) == "InternalError"


SSE_CONFIG = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}


def test_bucket_default_encryption_within_what_the_route_allows(s3, bucket: str, vault: str,
                                                                 sluice: Sluice) -> None:
    # A plain route: no default until one is set; then every write is encrypted.
    with pytest.raises(ClientError) as e:
        s3.get_bucket_encryption(Bucket=bucket)
    assert error_code(e.value) == "ServerSideEncryptionConfigurationNotFoundError"
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=SSE_CONFIG)
    rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    data = os.urandom(80_000)
    put = s3.put_object(Bucket=bucket, Key="by-default", Body=data)
    assert put["ServerSideEncryption"] == "AES256"
    at_rest = [p.read_bytes() for p in (sluice.root / "srv" / "data").rglob("*") if p.is_file()]
    assert not any(data[1000:1064] in f for f in at_rest), "stored in plaintext"
    assert s3.get_object(Bucket=bucket, Key="by-default")["Body"].read() == data
    # Deleted: new writes are plaintext again, the encrypted one stays readable.
    s3.delete_bucket_encryption(Bucket=bucket)
    assert "ServerSideEncryption" not in s3.put_object(Bucket=bucket, Key="after", Body=b"plain")
    assert s3.get_object(Bucket=bucket, Key="by-default")["Body"].read() == data

    # A `required` route reports its default whether set or not, and keeps it when deleted.
    assert s3.get_bucket_encryption(Bucket=vault)["ServerSideEncryptionConfiguration"]["Rules"]
    s3.delete_bucket_encryption(Bucket=vault)
    assert s3.put_object(Bucket=vault, Key="still", Body=b"x")["ServerSideEncryption"] == "AES256"
    with pytest.raises(ClientError) as e:
        s3.put_bucket_encryption(
            Bucket=vault,
            ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}}]
            },
        )
    assert error_code(e.value) == "NotImplemented"


# --------------------------------------------------------------------------------------------
# SSE-C: the client's own key (boto3's SSECustomerKey; over TLS only, as S3 requires)


def key_md5(key: str) -> str:
    return base64.b64encode(hashlib.md5(key.encode()).digest()).decode()


def raises(code: str, status: int, fn, *args, **kwargs) -> None:
    with pytest.raises(ClientError) as e:
        fn(*args, **kwargs)
    got = (error_code(e.value), e.value.response["ResponseMetadata"]["HTTPStatusCode"])
    # A HEAD's error has no body: its code is the status.
    assert got in [(code, status), (str(status), status)], got


@pytest.mark.parametrize("route", ["plain", "vault"])
def test_sse_c_objects_need_their_key_and_rest_as_ciphertext(s3_tls, s3, bucket: str, vault: str,
                                                             sluice: Sluice, route: str) -> None:
    b = bucket if route == "plain" else vault
    key, other = ssec_key(), ssec_key()
    ssec = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": key}
    data = os.urandom(150_001)
    put = s3_tls.put_object(Bucket=b, Key="c", Body=data, **ssec)
    assert (put["SSECustomerAlgorithm"], put["SSECustomerKeyMD5"]) == ("AES256", key_md5(key))
    assert "ServerSideEncryption" not in put
    head = s3_tls.head_object(Bucket=b, Key="c", **ssec)
    assert (head["ContentLength"], head["ETag"]) == (len(data), f'"{md5(data)}"')
    assert head["SSECustomerKeyMD5"] == key_md5(key)
    assert s3_tls.get_object(Bucket=b, Key="c", **ssec)["Body"].read() == data
    got = s3_tls.get_object(Bucket=b, Key="c", Range="bytes=65530-131080", **ssec)
    assert got["Body"].read() == data[65_530:131_081]
    # Without the key, or with another one: refused, as S3 refuses.
    raises("InvalidRequest", 400, s3_tls.get_object, Bucket=b, Key="c")
    raises("InvalidRequest", 400, s3_tls.head_object, Bucket=b, Key="c")
    raises("AccessDenied", 403, s3_tls.get_object, Bucket=b, Key="c",
           SSECustomerAlgorithm="AES256", SSECustomerKey=other)
    # Listed with its plaintext size, without any key.
    listed = {o["Key"]: o for o in s3_tls.list_objects_v2(Bucket=b)["Contents"]}
    assert listed["c"]["Size"] == len(data)
    # A key for an object that has none.
    s3_tls.put_object(Bucket=b, Key="plain", Body=b"no key")
    raises("InvalidRequest", 400, s3_tls.get_object, Bucket=b, Key="plain", **ssec)
    root = sluice.root / "srv" / ("data" if route == "plain" else "vault")
    at_rest = [p.read_bytes() for p in root.rglob("*") if p.is_file()]
    assert not any(data[70_000:70_064] in f for f in at_rest), "an SSE-C object stored in plaintext"

    # Copies: from SSE-C (the source's key given) to no key, and to another key.
    s3_tls.copy_object(Bucket=b, Key="out", CopySource={"Bucket": b, "Key": "c"},
                       CopySourceSSECustomerAlgorithm="AES256", CopySourceSSECustomerKey=key)
    assert s3_tls.get_object(Bucket=b, Key="out")["Body"].read() == data
    s3_tls.copy_object(Bucket=b, Key="rekeyed", CopySource={"Bucket": b, "Key": "c"},
                       CopySourceSSECustomerAlgorithm="AES256", CopySourceSSECustomerKey=key,
                       SSECustomerAlgorithm="AES256", SSECustomerKey=other)
    assert s3_tls.get_object(Bucket=b, Key="rekeyed", SSECustomerAlgorithm="AES256",
                             SSECustomerKey=other)["Body"].read() == data
    raises("InvalidRequest", 400, s3_tls.copy_object, Bucket=b, Key="x",
           CopySource={"Bucket": b, "Key": "c"})

    # Over plain HTTP the key is refused before anything is stored.
    raises("InvalidRequest", 400, s3.put_object, Bucket=b, Key="http", Body=b"x", **ssec)
    raises("404", 404, s3_tls.head_object, Bucket=b, Key="http")
    # A key that does not match its MD5; a key of the wrong length.
    raises("InvalidArgument", 400, s3_tls.put_object, Bucket=b, Key="bad", Body=b"x",
           SSECustomerAlgorithm="AES256", SSECustomerKey=key, SSECustomerKeyMD5=key_md5(other))
    raises("InvalidArgument", 400, s3_tls.put_object, Bucket=b, Key="bad", Body=b"x",
           SSECustomerAlgorithm="AES256", SSECustomerKey=key[:16])
    raises("InvalidArgument", 400, s3_tls.put_object, Bucket=b, Key="bad", Body=b"x",
           ServerSideEncryption="AES256", **ssec)


def test_sse_c_multipart_needs_the_key_on_every_part(s3_tls, vault: str) -> None:
    key = ssec_key()
    ssec = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": key}
    parts = [os.urandom(5 * MIB + 7), os.urandom(1000)]
    upload = s3_tls.create_multipart_upload(Bucket=vault, Key="mp", **ssec)
    assert upload["SSECustomerKeyMD5"] == key_md5(key)
    upload_id = upload["UploadId"]
    raises("InvalidRequest", 400, s3_tls.upload_part, Bucket=vault, Key="mp", UploadId=upload_id,
           PartNumber=1, Body=parts[0])
    etags = [s3_tls.upload_part(Bucket=vault, Key="mp", UploadId=upload_id, PartNumber=n + 1,
                                Body=p, **ssec)["ETag"] for n, p in enumerate(parts)]
    s3_tls.complete_multipart_upload(
        Bucket=vault, Key="mp", UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": n + 1, "ETag": e} for n, e in enumerate(etags)]})
    whole = b"".join(parts)
    assert s3_tls.get_object(Bucket=vault, Key="mp", **ssec)["Body"].read() == whole
    assert s3_tls.get_object(Bucket=vault, Key="mp", PartNumber=2, **ssec)["Body"].read() == parts[1]
    assert s3_tls.head_object(Bucket=vault, Key="mp", **ssec)["ContentLength"] == len(whole)
    listed = s3_tls.list_objects_v2(Bucket=vault)["Contents"]
    assert [(o["Key"], o["Size"]) for o in listed] == [("mp", len(whole))]
    raises("InvalidRequest", 400, s3_tls.get_object, Bucket=vault, Key="mp")
