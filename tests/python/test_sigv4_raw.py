"""SigV4 wire formats no boto3 default produces, signed here by hand with hmac/hashlib:
aws-chunked bodies with chunk signatures (STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]), unsigned
aws-chunked bodies with a trailing checksum, payload-hash mismatches, clock skew, and a presigned
query signature built from scratch (to check expiry without relying on botocore internals)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import http.client
import ssl
import urllib.parse
import zlib
from dataclasses import dataclass

import pytest

from conftest import Sluice

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
CHUNK = 64 * 1024


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


@dataclass
class Signer:
    access_id: str
    secret: str
    region: str = "us-east-1"
    when: dt.datetime | None = None

    def __post_init__(self):
        when = self.when or dt.datetime.now(dt.timezone.utc)
        self.amz_date = when.strftime("%Y%m%dT%H%M%SZ")
        self.date = when.strftime("%Y%m%d")
        self.scope = f"{self.date}/{self.region}/s3/aws4_request"
        key = _hmac(("AWS4" + self.secret).encode(), self.date)
        key = _hmac(key, self.region)
        key = _hmac(key, "s3")
        self.key = _hmac(key, "aws4_request")

    def sign(self, string_to_sign: str) -> str:
        return hmac.new(self.key, string_to_sign.encode(), hashlib.sha256).hexdigest()

    def seed(self, method: str, path: str, query: str, headers: dict[str, str], payload_hash: str):
        """Signs a request; returns (signature, signed header names)."""
        names = sorted(h.lower() for h in headers)
        lower = {k.lower(): " ".join(str(v).split()) for k, v in headers.items()}
        canonical_headers = "".join(f"{n}:{lower[n]}\n" for n in names)
        signed = ";".join(names)
        canonical = "\n".join([method, path, query, canonical_headers, signed, payload_hash])
        sts = "\n".join(["AWS4-HMAC-SHA256", self.amz_date, self.scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
        return self.sign(sts), signed

    def authorization(self, signature: str, signed: str) -> str:
        return (f"AWS4-HMAC-SHA256 Credential={self.access_id}/{self.scope}, "
                f"SignedHeaders={signed}, Signature={signature}")

    def chunk_signature(self, previous: str, data: bytes) -> str:
        sts = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", self.amz_date, self.scope, previous, EMPTY_SHA256,
                         hashlib.sha256(data).hexdigest()])
        return self.sign(sts)

    def trailer_signature(self, previous: str, trailer: str) -> str:
        sts = "\n".join(["AWS4-HMAC-SHA256-TRAILER", self.amz_date, self.scope, previous,
                         hashlib.sha256(trailer.encode()).hexdigest()])
        return self.sign(sts)


def canonical_query(params: dict[str, str]) -> str:
    q = lambda s: urllib.parse.quote(s, safe="-_.~")  # noqa: E731
    return "&".join(f"{q(k)}={q(v)}" for k, v in sorted(params.items()))


def connect(sluice: Sluice, tls: bool = False) -> http.client.HTTPConnection:
    url = urllib.parse.urlsplit(sluice.tls_endpoint if tls else sluice.endpoint)
    if tls:
        ctx = ssl.create_default_context(cafile=str(sluice.ca_bundle))
        return http.client.HTTPSConnection(url.hostname, url.port, context=ctx, timeout=30)
    return http.client.HTTPConnection(url.hostname, url.port, timeout=30)


def send(sluice: Sluice, method: str, path: str, headers: dict[str, str], body: bytes = b"",
         tls: bool = False) -> tuple[int, bytes]:
    conn = connect(sluice, tls)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def host_of(sluice: Sluice, tls: bool = False) -> str:
    return urllib.parse.urlsplit(sluice.tls_endpoint if tls else sluice.endpoint).netloc


def signed_chunked_put(sluice: Sluice, signer: Signer, path: str, body: bytes, *, tls: bool = False,
                       trailer_checksum: str | None = None, tamper_chunk: int | None = None):
    """PUTs body as aws-chunked with chunk signatures (and, if given, a signed trailing
    x-amz-checksum-crc32 of that value). tamper_chunk flips a byte of that chunk after signing."""
    chunks = [body[i:i + CHUNK] for i in range(0, len(body), CHUNK)]
    with_trailer = trailer_checksum is not None
    mode = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER" if with_trailer else "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
    headers = {
        "Host": host_of(sluice, tls),
        "x-amz-date": signer.amz_date,
        "x-amz-content-sha256": mode,
        "content-encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(len(body)),
    }
    if with_trailer:
        headers["x-amz-trailer"] = "x-amz-checksum-crc32"
    # Content-Length is computed below; S3 clients sign it, but it is not required to be signed.
    signature, signed = signer.seed("PUT", path, "", headers, mode)
    out = bytearray()
    previous = signature
    for i, data in enumerate(chunks + [b""]):
        sig = signer.chunk_signature(previous, data)
        previous = sig
        if tamper_chunk == i and data:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        out += f"{len(data):x};chunk-signature={sig}\r\n".encode() + data
        if data or not with_trailer:
            out += b"\r\n"
    if with_trailer:
        trailer = f"x-amz-checksum-crc32:{trailer_checksum}\n"
        tsig = signer.trailer_signature(previous, trailer)
        out += f"x-amz-checksum-crc32:{trailer_checksum}\r\n".encode()
        out += f"x-amz-trailer-signature:{tsig}\r\n\r\n".encode()
    headers["Authorization"] = signer.authorization(signature, signed)
    headers["Content-Length"] = str(len(out))
    return send(sluice, "PUT", path, headers, bytes(out), tls)


def unsigned_trailer_put(sluice: Sluice, signer: Signer, path: str, body: bytes, checksum: str,
                         tls: bool = True):
    mode = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    headers = {
        "Host": host_of(sluice, tls),
        "x-amz-date": signer.amz_date,
        "x-amz-content-sha256": mode,
        "content-encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(len(body)),
        "x-amz-trailer": "x-amz-checksum-crc32",
    }
    signature, signed = signer.seed("PUT", path, "", headers, mode)
    out = bytearray()
    for i in range(0, len(body), CHUNK):
        data = body[i:i + CHUNK]
        out += f"{len(data):x}\r\n".encode() + data + b"\r\n"
    out += b"0\r\n" + f"x-amz-checksum-crc32:{checksum}\r\n\r\n".encode()
    headers["Authorization"] = signer.authorization(signature, signed)
    headers["Content-Length"] = str(len(out))
    return send(sluice, "PUT", path, headers, bytes(out), tls)


def signed_request(sluice: Sluice, signer: Signer, method: str, path: str, body: bytes = b"",
                   payload_hash: str | None = None, extra: dict[str, str] | None = None):
    headers = {"Host": host_of(sluice), "x-amz-date": signer.amz_date,
               "x-amz-content-sha256": payload_hash or hashlib.sha256(body).hexdigest(), **(extra or {})}
    signature, signed = signer.seed(method, path, "", headers, headers["x-amz-content-sha256"])
    headers["Authorization"] = signer.authorization(signature, signed)
    return send(sluice, method, path, headers, body)


def error_code_of(body: bytes) -> str:
    text = body.decode(errors="replace")
    start = text.find("<Code>")
    return text[start + 6:text.find("</Code>")] if start >= 0 else f"(no <Code> in {text[:300]!r})"


BODY = bytes((i * 31 + 7) % 256 for i in range(200_000))  # 3 full chunks and a partial one


@pytest.fixture
def signer(sluice):
    return Signer(sluice.access_id, sluice.secret, sluice.region)


def test_hand_signed_plain_put(sluice, s3, bucket, signer):
    status, body = signed_request(sluice, signer, "PUT", f"/{bucket}/plain", b"hand signed")
    assert status == 200, body
    assert s3.get_object(Bucket=bucket, Key="plain")["Body"].read() == b"hand signed"


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_chunk_signed_upload(sluice, s3, bucket, signer, tls):
    status, body = signed_chunked_put(sluice, signer, f"/{bucket}/chunked", BODY, tls=tls)
    assert status == 200, body
    got = s3.get_object(Bucket=bucket, Key="chunked")
    assert got["Body"].read() == BODY, "aws-chunked body was not decoded to the original bytes"
    assert got["ETag"] == f'"{hashlib.md5(BODY).hexdigest()}"'
    assert got["ContentLength"] == len(BODY)
    assert got.get("ContentEncoding") in (None, ""), "aws-chunked must not be stored as Content-Encoding"


def test_chunk_signed_upload_tampered(sluice, s3, bucket, signer):
    status, body = signed_chunked_put(sluice, signer, f"/{bucket}/tampered", BODY, tamper_chunk=1)
    assert (status, error_code_of(body)) == (403, "SignatureDoesNotMatch"), body
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert "tampered" not in keys, "an upload with a bad chunk signature was stored"


def test_chunk_signed_upload_with_signed_trailer(sluice, s3, bucket, signer):
    status, body = signed_chunked_put(sluice, signer, f"/{bucket}/trailer", BODY,
                                      trailer_checksum=crc32_b64(BODY))
    assert status == 200, body
    assert s3.get_object(Bucket=bucket, Key="trailer")["Body"].read() == BODY

    status, body = signed_chunked_put(sluice, signer, f"/{bucket}/bad-trailer", BODY,
                                      trailer_checksum=crc32_b64(b"not the body"))
    assert (status, error_code_of(body)) == (400, "BadDigest"), body
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert keys == ["trailer"], keys


def test_unsigned_payload_trailer(sluice, s3, bucket, signer):
    status, body = unsigned_trailer_put(sluice, signer, f"/{bucket}/ok", BODY, crc32_b64(BODY))
    assert status == 200, body
    assert s3.get_object(Bucket=bucket, Key="ok")["Body"].read() == BODY

    status, body = unsigned_trailer_put(sluice, signer, f"/{bucket}/bad", BODY, crc32_b64(b"wrong"))
    assert (status, error_code_of(body)) == (400, "BadDigest"), body
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])] == ["ok"]


def test_payload_hash_mismatch(sluice, s3, bucket, signer):
    wrong = hashlib.sha256(b"something else").hexdigest()
    status, body = signed_request(sluice, signer, "PUT", f"/{bucket}/k", b"actual body", payload_hash=wrong)
    assert (status, error_code_of(body)) == (400, "XAmzContentSHA256Mismatch"), body
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_clock_skew(sluice, bucket):
    old = Signer(sluice.access_id, sluice.secret, sluice.region,
                 when=dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1))
    status, body = signed_request(sluice, old, "GET", f"/{bucket}")
    assert (status, error_code_of(body)) == (403, "RequestTimeTooSkewed"), body


def presign(sluice: Sluice, signer: Signer, path: str, expires: int) -> str:
    params = {
        "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
        "X-Amz-Credential": f"{signer.access_id}/{signer.scope}",
        "X-Amz-Date": signer.amz_date,
        "X-Amz-Expires": str(expires),
        "X-Amz-SignedHeaders": "host",
    }
    query = canonical_query(params)
    signature, _ = signer.seed("GET", path, query, {"host": host_of(sluice)}, "UNSIGNED-PAYLOAD")
    return f"{path}?{query}&X-Amz-Signature={signature}"


def test_hand_presigned_expiry(sluice, s3, bucket):
    s3.put_object(Bucket=bucket, Key="p", Body=b"presigned by hand")
    now = Signer(sluice.access_id, sluice.secret, sluice.region)
    status, body = send(sluice, "GET", presign(sluice, now, f"/{bucket}/p", 600), {})
    assert (status, body) == (200, b"presigned by hand"), "the hand-made presigned URL is not accepted"

    past = Signer(sluice.access_id, sluice.secret, sluice.region,
                  when=dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=2))
    status, body = send(sluice, "GET", presign(sluice, past, f"/{bucket}/p", 3600), {})
    assert (status, error_code_of(body)) == (403, "AccessDenied"), body
    assert b"Request has expired" in body, body

    # X-Amz-Expires beyond S3's maximum of 7 days is rejected.
    status, body = send(sluice, "GET", presign(sluice, now, f"/{bucket}/p", 604801), {})
    assert status in (400, 403) and error_code_of(body) in ("AuthorizationQueryParametersError", "AccessDenied"), body


def _read_head(sock) -> bytes:
    """Bytes up to and including the first blank line (one response head)."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(1)
        if not piece:
            break
        data += piece
    return data


def test_expect_continue_with_an_empty_body_ends_the_connection(sluice, bucket, signer):
    """hyper answers an `Expect: 100-continue` request whose body is empty without a `100
    Continue`; botocore then misreads the next response on that connection (the aws CLI lost an
    UploadPart after syncing an empty file). Sluice closes such a connection after its answer;
    one whose body was asked for with `100 Continue` stays open."""
    import socket

    url = urllib.parse.urlsplit(sluice.endpoint)

    def head_of(path: str, body: bytes) -> bytes:
        headers = {"Host": host_of(sluice), "x-amz-date": signer.amz_date,
                   "x-amz-content-sha256": hashlib.sha256(body).hexdigest(),
                   "Expect": "100-continue", "Content-Length": str(len(body))}
        signature, signed = signer.seed("PUT", path, "", {k: v for k, v in headers.items()
                                                          if k not in ("Expect", "Content-Length")},
                                        headers["x-amz-content-sha256"])
        headers["Authorization"] = signer.authorization(signature, signed)
        return (f"PUT {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
                + "\r\n").encode()

    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(head_of(f"/{bucket}/with-body", b"abc"))
        assert _read_head(sock).startswith(b"HTTP/1.1 100 Continue\r\n")
        sock.sendall(b"abc")
        answer = _read_head(sock).lower()
        assert answer.startswith(b"http/1.1 200") and b"connection: close" not in answer, answer
        # The same connection carries the next request: an empty body, no 100 Continue.
        sock.sendall(head_of(f"/{bucket}/empty", b""))
        answer = _read_head(sock).lower()
        assert answer.startswith(b"http/1.1 200"), answer
        assert b"connection: close" in answer, answer
        assert sock.recv(1) == b"", "the connection should end after that answer"
