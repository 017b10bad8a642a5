//! The crate's one error type, [`SigV4Error`], and its mapping to S3 error codes and statuses.
//!
//! Every variant except [`SigV4Error::Signing`] is the client's fault (a 4xx); `Signing` is raised
//! only by the client-side signer and means Sluice built something unsignable (a 5xx).
//! The server turns these into S3 XML in one place; this module only names the code and status.
//! Codes: <https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html#ErrorCodeList>

use crate::checksum::ChecksumAlgorithm;

/// Why a request could not be authenticated, or why its body was rejected.
#[derive(Debug, thiserror::Error)]
pub enum SigV4Error {
    /// Not SigV4 at all (SigV2 `AWS AKID:sig`, SigV4a, a bearer token...).
    #[error(
        "the authorization mechanism you have provided is not supported; please use AWS4-HMAC-SHA256"
    )]
    UnsupportedAlgorithm,
    /// The `Authorization` header is SigV4 but unparsable or inconsistent.
    #[error("the authorization header is malformed: {0}")]
    MalformedAuthorization(String),
    /// The presigned-URL (`X-Amz-*`) query parameters are missing, malformed or out of range.
    #[error("error parsing the X-Amz-* query parameters: {0}")]
    QueryParams(String),
    /// Neither a valid `x-amz-date` nor a valid RFC 1123 `Date` header.
    #[error("AWS authentication requires a valid Date or x-amz-date header")]
    MissingDate,
    /// S3 requires `x-amz-content-sha256` on every header-signed request.
    #[error("missing required header for this request: x-amz-content-sha256")]
    MissingContentSha256,
    /// `x-amz-content-sha256` is neither a lowercase hex SHA-256 nor a known literal.
    #[error(
        "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, a STREAMING-* value or a valid sha256 value"
    )]
    InvalidContentSha256,
    /// A header named in `SignedHeaders` is absent from the request.
    #[error("header {0} is listed in SignedHeaders but absent from the request")]
    MissingSignedHeader(String),
    /// The request's date is too far from the server clock.
    #[error("the difference between the request time and the current time is too large")]
    RequestTimeTooSkewed,
    /// A presigned URL used after `X-Amz-Date + X-Amz-Expires`.
    #[error("Request has expired")]
    Expired,
    /// The signature is wrong. Carries what S3 echoes in its error body: the string to sign and the
    /// canonical request *as the server computed them from the client's request*. The expected
    /// signature is deliberately absent: it would be a valid signature for the attacker's request.
    #[error("the request signature we calculated does not match the signature you provided")]
    SignatureDoesNotMatch {
        string_to_sign: String,
        canonical_request: String,
    },
    /// A chunk (or trailer) signature in an aws-chunked body is wrong.
    #[error("the chunk signature we calculated does not match the signature you provided")]
    ChunkSignatureMismatch,
    /// The aws-chunked framing is broken or exceeds a bound.
    #[error("malformed aws-chunked body: {0}")]
    MalformedChunk(String),
    /// The body ended before the aws-chunked encoding was complete.
    #[error("you did not provide the number of bytes specified by the Content-Length HTTP header")]
    IncompleteBody,
    /// An `x-amz-checksum-*` value does not match the data.
    #[error("the {algorithm} you specified did not match the calculated checksum")]
    ChecksumMismatch { algorithm: ChecksumAlgorithm },
    /// The body's SHA-256 does not match the signed `x-amz-content-sha256`.
    #[error("the provided 'x-amz-content-sha256' header does not match what was computed")]
    ContentSha256Mismatch,
    /// Both an `Authorization` header and `X-Amz-Algorithm` query parameter were sent.
    #[error(
        "only one auth mechanism allowed; send either the Authorization header or X-Amz-* query parameters"
    )]
    BothAuthMethods,
    /// The client-side signer was given something it cannot put in a header (Sluice's fault).
    #[error("cannot sign request: {0}")]
    Signing(String),
    #[error("the {0} header appears more than once; send it once")]
    RepeatedHeader(&'static str),
    #[error("the trailing headers are not what was declared: {0}")]
    MalformedTrailer(String),
}

impl SigV4Error {
    /// The S3 error code for the `<Code>` element of the error response.
    pub fn s3_code(&self) -> &'static str {
        match self {
            Self::UnsupportedAlgorithm | Self::MissingContentSha256 | Self::MalformedChunk(_) => {
                "InvalidRequest"
            }
            Self::MalformedAuthorization(_) => "AuthorizationHeaderMalformed",
            Self::QueryParams(_) => "AuthorizationQueryParametersError",
            // S3 answers a missing/invalid date, an expired URL and an absent signed header with
            // AccessDenied (the message says which).
            Self::MissingDate | Self::Expired | Self::MissingSignedHeader(_) => "AccessDenied",
            Self::InvalidContentSha256 | Self::BothAuthMethods | Self::RepeatedHeader(_) => {
                "InvalidArgument"
            }
            Self::RequestTimeTooSkewed => "RequestTimeTooSkewed",
            Self::SignatureDoesNotMatch { .. } | Self::ChunkSignatureMismatch => {
                "SignatureDoesNotMatch"
            }
            Self::IncompleteBody => "IncompleteBody",
            Self::MalformedTrailer(_) => "MalformedTrailerError",
            Self::ChecksumMismatch { .. } => "BadDigest",
            Self::ContentSha256Mismatch => "XAmzContentSHA256Mismatch",
            Self::Signing(_) => "InternalError",
        }
    }

    /// The HTTP status S3 uses with [`Self::s3_code`].
    pub fn http_status(&self) -> u16 {
        match self {
            Self::MissingDate
            | Self::Expired
            | Self::MissingSignedHeader(_)
            | Self::RequestTimeTooSkewed
            | Self::SignatureDoesNotMatch { .. }
            | Self::ChunkSignatureMismatch => 403,
            Self::Signing(_) => 500,
            _ => 400,
        }
    }

    /// True when the client is at fault (every variant but [`Self::Signing`]).
    pub fn is_client_error(&self) -> bool {
        !matches!(self, Self::Signing(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_statuses() {
        let cases: Vec<(SigV4Error, &str, u16)> = vec![
            (SigV4Error::UnsupportedAlgorithm, "InvalidRequest", 400),
            (
                SigV4Error::MalformedAuthorization("x".into()),
                "AuthorizationHeaderMalformed",
                400,
            ),
            (
                SigV4Error::QueryParams("x".into()),
                "AuthorizationQueryParametersError",
                400,
            ),
            (SigV4Error::MissingDate, "AccessDenied", 403),
            (SigV4Error::MissingContentSha256, "InvalidRequest", 400),
            (SigV4Error::InvalidContentSha256, "InvalidArgument", 400),
            (
                SigV4Error::RequestTimeTooSkewed,
                "RequestTimeTooSkewed",
                403,
            ),
            (SigV4Error::Expired, "AccessDenied", 403),
            (
                SigV4Error::SignatureDoesNotMatch {
                    string_to_sign: String::new(),
                    canonical_request: String::new(),
                },
                "SignatureDoesNotMatch",
                403,
            ),
            (
                SigV4Error::ChunkSignatureMismatch,
                "SignatureDoesNotMatch",
                403,
            ),
            (
                SigV4Error::MalformedChunk("x".into()),
                "InvalidRequest",
                400,
            ),
            (SigV4Error::IncompleteBody, "IncompleteBody", 400),
            (
                SigV4Error::ChecksumMismatch {
                    algorithm: ChecksumAlgorithm::Crc32,
                },
                "BadDigest",
                400,
            ),
            (
                SigV4Error::ContentSha256Mismatch,
                "XAmzContentSHA256Mismatch",
                400,
            ),
            (SigV4Error::BothAuthMethods, "InvalidArgument", 400),
            (SigV4Error::RepeatedHeader("x"), "InvalidArgument", 400),
            (
                SigV4Error::MalformedTrailer("x".into()),
                "MalformedTrailerError",
                400,
            ),
            (SigV4Error::Signing("x".into()), "InternalError", 500),
        ];
        for (err, code, status) in cases {
            assert_eq!(err.s3_code(), code, "{err:?}");
            assert_eq!(err.http_status(), status, "{err:?}");
        }
        assert_eq!(SigV4Error::Expired.to_string(), "Request has expired");
    }
}
