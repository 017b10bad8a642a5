//! AWS Signature Version 4 for S3, with no I/O and no async.
//!
//! This crate owns everything between "bytes arrived" and "this principal is who it claims to be":
//! parsing the client's credentials ([`parse_auth`]), canonicalisation ([`canonical`]), signing-key
//! derivation ([`SigningKey`]), verification into a [`Verified`] principal ([`verify()`]), the
//! aws-chunked body decoder with its chunk-signature chain ([`ChunkedDecoder`]), payload checksums
//! ([`Checksummer`]) and a client-side signer on the same code ([`sign_request`], [`presign_url`]).
//!
//! Everything is a pure function or a state machine over bytes; the server's async body adapters
//! only poll and delegate.
//!
//! Specs:
//! - <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html>
//! - <https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-authenticating-requests.html>
//! - <https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming.html>
//! - <https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming-trailers.html>
//! - <https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html>

pub mod auth;
pub mod canonical;
pub mod checksum;
pub mod chunked;
pub mod error;
pub mod secret;
pub mod sign;
pub mod time;
pub mod verify;

pub use auth::{AuthKind, AuthRequest, CredentialScope, PayloadMode, parse_auth, repeated_header};
pub use canonical::{
    CanonicalSettings, canonical_headers, canonical_query, canonical_request, canonical_uri,
    string_to_sign, uri_encode,
};
pub use checksum::{ChecksumAlgorithm, Checksummer, PayloadHasher};
pub use chunked::{
    ChunkSignatureChain, ChunkedDecoder, ChunkedEncoder, Decoded, MAX_CHUNK_LINE_LEN, MAX_TRAILERS,
};
pub use error::SigV4Error;
pub use secret::{SecretKey, Signature, SigningKey};
pub use sign::{SigningParams, presign_url, sign_request, sign_request_with_key};
pub use time::AmzDate;
pub use verify::{Verified, verify};

/// The only signing algorithm accepted, in the `Authorization` header and in `X-Amz-Algorithm`.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// The longest lifetime S3 accepts for a presigned URL (`X-Amz-Expires`): seven days.
pub const MAX_PRESIGNED_EXPIRES_SECS: u64 = 604_800;

/// How far a header-signed request's `x-amz-date` may be from the server clock, either way.
pub const MAX_CLOCK_SKEW_SECS: i64 = 900;

/// Hex SHA-256 of the empty string: the payload hash of a bodiless request.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// [`EMPTY_SHA256`] as bytes.
pub const EMPTY_SHA256_DIGEST: [u8; 32] = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// `x-amz-content-sha256` value for a body that is not covered by the signature.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// `x-amz-content-sha256` value for an aws-chunked body with a signature on every chunk.
pub const STREAMING_SIGNED: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";
/// As [`STREAMING_SIGNED`], followed by signed trailing headers.
pub const STREAMING_SIGNED_TRAILER: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER";
/// An aws-chunked body without chunk signatures, followed by (unsigned) trailing headers.
pub const STREAMING_UNSIGNED_TRAILER: &str = "STREAMING-UNSIGNED-PAYLOAD-TRAILER";
