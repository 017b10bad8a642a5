//! The one place errors become S3 responses: status, S3 error code, XML body with a request id.
//!
//! Every failure anywhere in the pipeline ends up as an [`S3Error`]; [`S3Error::into_response`]
//! is the only function that turns one into bytes on the wire. Messages never contain secrets or
//! the expected signature.

use std::borrow::Cow;

use http::{HeaderValue, Response, StatusCode};
use sluice_sigv4::SigV4Error;
pub use sluice_storage::Fault;
use sluice_storage::StorageError;

use super::xml::XmlWriter;
use crate::body::{ResponseBody, full_body};

#[derive(Debug)]
pub struct S3Error {
    pub code: &'static str,
    pub status: StatusCode,
    pub message: Cow<'static, str>,
    /// Extra elements S3 puts in some error bodies (e.g. `StringToSign`), in order.
    pub extra: Vec<(&'static str, String)>,
    /// Extra response headers (e.g. `Content-Range` on 416).
    pub headers: Vec<(&'static str, String)>,
    /// What went wrong inside Sluice, for the log line (with the request id) only: never sent.
    pub detail: Option<String>,
    /// Where the error came from; by default from the status (5xx: Sluice, else the client).
    pub fault: Fault,
}

impl std::fmt::Display for S3Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for S3Error {}

impl S3Error {
    pub fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        // NotImplemented: the client asked for something Sluice does not offer; nothing failed.
        let fault = if status.is_server_error() && status != StatusCode::NOT_IMPLEMENTED {
            Fault::Sluice
        } else {
            Fault::Client
        };
        Self {
            code,
            status,
            message: message.into(),
            extra: Vec::new(),
            headers: Vec::new(),
            detail: None,
            fault,
        }
    }

    pub fn with(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.extra.push((name, value.into()));
        self
    }

    pub fn fault(&self) -> Fault {
        self.fault
    }

    pub fn access_denied(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "AccessDenied", message)
    }

    pub fn invalid_argument(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidArgument", message)
    }

    pub fn invalid_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidRequest", message)
    }

    pub fn malformed_xml() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "MalformedXML",
            "The XML you provided was not well-formed or did not validate against our published schema.",
        )
    }

    pub fn not_implemented(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_IMPLEMENTED,
            "NotImplemented",
            format!("{what} is not implemented by Sluice yet."),
        )
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "The specified method is not allowed against this resource.",
        )
    }

    /// A failure inside Sluice. `detail` is logged with the request id where the request ends
    /// (`pipeline`), never sent to the client.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "We encountered an internal error. Please try again.",
        )
        .with_detail(detail)
    }

    pub fn with_detail(mut self, detail: impl std::fmt::Display) -> Self {
        self.detail = Some(detail.to_string());
        self
    }

    /// The response for this error. HEAD responses carry no body, as in S3.
    pub fn into_response(
        self,
        request_id: &str,
        resource: &str,
        head: bool,
    ) -> Response<ResponseBody> {
        let mut builder = Response::builder().status(self.status);
        for (name, value) in &self.headers {
            builder = builder.header(*name, value);
        }
        // A HEAD's answer and a 304 carry no body, as in S3.
        if head || self.status == StatusCode::NOT_MODIFIED {
            return builder
                .body(full_body(Vec::new()))
                .expect("valid error response");
        }
        let mut xml = XmlWriter::new();
        xml.open("Error");
        xml.element("Code", self.code);
        xml.element("Message", &self.message);
        for (name, value) in &self.extra {
            xml.element(name, value);
        }
        if !resource.is_empty() {
            xml.element("Resource", resource);
        }
        xml.element("RequestId", request_id);
        xml.close("Error");
        builder
            .header(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/xml"),
            )
            .body(full_body(xml.finish()))
            .expect("valid error response")
    }
}

impl From<super::xml::MalformedXml> for S3Error {
    fn from(_: super::xml::MalformedXml) -> Self {
        Self::malformed_xml()
    }
}

impl From<StorageError> for S3Error {
    fn from(err: StorageError) -> Self {
        let fault = err.fault();
        let is_body = matches!(err, StorageError::Body(_));
        let mut out = Self::from_storage(err);
        // A client body's error keeps the fault it was made with.
        if !is_body {
            out.fault = fault;
        }
        out
    }
}

impl S3Error {
    fn from_storage(err: StorageError) -> Self {
        use StatusCode as S;
        match err {
            // The client's own body failed a check: its error, as the body adapter made it (or,
            // for a copy, the source store's error).
            StorageError::Body(body) => match body.0.downcast::<S3Error>() {
                Ok(err) => *err,
                Err(other) => match other.downcast::<StorageError>() {
                    Ok(err) => Self::from(*err),
                    Err(other) => Self::internal(other),
                },
            },
            StorageError::NotModified(meta) => {
                let mut out = Self::new(S::NOT_MODIFIED, "NotModified", "Not Modified");
                out.headers.push(("etag", format!("\"{}\"", meta.etag)));
                out.headers
                    .push(("last-modified", super::response::http_date(&meta)));
                out
            }
            StorageError::NotAllowed(why) => Self::access_denied(why),
            StorageError::CustomerKey(problem) => {
                use sluice_storage::CustomerKeyProblem as P;
                match problem {
                    P::Missing => Self::invalid_request(
                        "The object was stored using a form of Server Side Encryption. The correct parameters must be provided to retrieve the object.",
                    ),
                    P::Wrong => Self::access_denied(
                        "The secret key provided does not match the one the object was encrypted with.",
                    ),
                    P::NotApplicable => Self::invalid_request(
                        "The encryption parameters are not applicable to this object.",
                    ),
                }
            }
            StorageError::Unsupported(what) => Self::new(
                S::NOT_IMPLEMENTED,
                "NotImplemented",
                format!("{what} is not supported by the storage behind this bucket."),
            ),
            StorageError::InvalidToken => {
                Self::invalid_argument("The continuation token provided is incorrect")
                    .with("ArgumentName", "continuation-token")
            }
            StorageError::Upstream(up) => {
                let status = StatusCode::from_u16(up.status).unwrap_or(S::BAD_GATEWAY);
                if up.refused_sluice() {
                    // The upstream refused Sluice's own credentials: the client did nothing
                    // wrong and must not see the upstream's signing details.
                    return Self::new(
                        S::BAD_GATEWAY,
                        "BadGateway",
                        "The storage behind this gateway refused the gateway's credentials.",
                    )
                    .with_detail(format_args!(
                        "backend {} refused Sluice's credentials: {} {}",
                        up.backend, up.code, up.message
                    ));
                }
                let code = s3_code(&up.code, status);
                if status.is_server_error() {
                    // The upstream's own words about its failure stay in the log.
                    return Self::new(
                        status,
                        code,
                        "The storage behind this gateway failed to complete the request. Please try again.",
                    )
                    .with_detail(format_args!(
                        "backend {} answered {} {}: {}",
                        up.backend, up.status, up.code, up.message
                    ));
                }
                // The upstream's words may name its account, users, real buckets and prefixes:
                // the client gets the code with a neutral message, the log the rest.
                Self::new(
                    status,
                    code,
                    format!("The storage behind this gateway refused the request ({code})."),
                )
                .with_detail(format_args!(
                    "backend {} answered {} {}: {}",
                    up.backend, up.status, up.code, up.message
                ))
            }
            StorageError::Unreachable { backend, detail } => Self::new(
                S::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "The storage behind this gateway is unavailable. Please try again.",
            )
            .with_detail(format_args!("backend {backend} unreachable: {detail}")),
            StorageError::NoSuchBucket => Self::new(
                S::NOT_FOUND,
                "NoSuchBucket",
                "The specified bucket does not exist",
            ),
            StorageError::NoSuchKey => Self::new(
                S::NOT_FOUND,
                "NoSuchKey",
                "The specified key does not exist.",
            ),
            StorageError::BucketAlreadyOwnedByYou => Self::new(
                S::CONFLICT,
                "BucketAlreadyOwnedByYou",
                "Your previous request to create the named bucket succeeded and you already own it.",
            ),
            StorageError::BucketNotEmpty => Self::new(
                S::CONFLICT,
                "BucketNotEmpty",
                "The bucket you tried to delete is not empty",
            ),
            StorageError::InvalidRange { .. } => Self::new(
                S::RANGE_NOT_SATISFIABLE,
                "InvalidRange",
                "The requested range is not satisfiable",
            ),
            StorageError::EntityTooLarge => Self::new(
                S::BAD_REQUEST,
                "EntityTooLarge",
                "Your proposed upload exceeds the maximum allowed object size.",
            ),
            StorageError::IncompleteBody => Self::new(
                S::BAD_REQUEST,
                "IncompleteBody",
                "You did not provide the number of bytes specified by the Content-Length HTTP header.",
            ),
            StorageError::PreconditionFailed { condition } => {
                let out = Self::new(
                    S::PRECONDITION_FAILED,
                    "PreconditionFailed",
                    "At least one of the pre-conditions you specified did not hold",
                );
                match condition {
                    Some(condition) => out.with("Condition", condition),
                    None => out,
                }
            }
            StorageError::NoSuchUpload => Self::new(
                S::NOT_FOUND,
                "NoSuchUpload",
                "The specified multipart upload does not exist. The upload ID might be invalid, or the multipart upload might have been aborted or completed.",
            ),
            StorageError::InvalidPart => Self::new(
                S::BAD_REQUEST,
                "InvalidPart",
                "One or more of the specified parts could not be found. The part might not have been uploaded, or the specified entity tag might not have matched the part's entity tag.",
            ),
            StorageError::InvalidPartOrder => Self::new(
                S::BAD_REQUEST,
                "InvalidPartOrder",
                "The list of parts was not in ascending order. Parts must be ordered by part number.",
            ),
            StorageError::EntityTooSmall => Self::new(
                S::BAD_REQUEST,
                "EntityTooSmall",
                "Your proposed upload is smaller than the minimum allowed object size.",
            ),
            StorageError::InvalidPartNumber => Self::new(
                S::RANGE_NOT_SATISFIABLE,
                "InvalidPartNumber",
                "The requested partnumber is not satisfiable",
            ),
            StorageError::BadDigest => Self::new(
                S::BAD_REQUEST,
                "BadDigest",
                "The Content-MD5 you specified did not match what we received.",
            ),
            StorageError::InvalidName(e) => match e {
                sluice_storage::NameError::KeyTooLong => {
                    Self::new(S::BAD_REQUEST, "KeyTooLongError", "Your key is too long")
                }
                sluice_storage::NameError::InvalidBucketName(why) => Self::new(
                    S::BAD_REQUEST,
                    "InvalidBucketName",
                    format!("The specified bucket is not valid: {why}"),
                ),
                other => Self::invalid_argument(other.to_string()),
            },
            StorageError::Io(e) if matches!(e.raw_os_error(), Some(28 | 122)) => {
                // ENOSPC / EDQUOT: nothing was stored; say so rather than a generic 500.
                Self::new(
                    S::INSUFFICIENT_STORAGE,
                    "InsufficientStorage",
                    "The gateway's storage is full; the request was not completed and nothing was stored.",
                )
                .with_detail(format_args!("storage is full: {e}"))
            }
            StorageError::Corrupt(detail) => Self::new(
                S::INTERNAL_SERVER_ERROR,
                "InternalError",
                "The stored object failed its integrity check and cannot be served.",
            )
            .with_detail(format_args!(
                "stored data failed its integrity check; not serving it: {detail}"
            )),
            err @ (StorageError::Io(_) | StorageError::Index(_)) => Self::internal(err),
        }
    }
}

/// An upstream's or a plugin's error code as one of S3's (codes are `&'static str` here); a code
/// outside the published set becomes the generic one for its class.
fn s3_code(code: &str, status: StatusCode) -> &'static str {
    const KNOWN: &[&str] = &[
        "AccessDenied",
        "BadDigest",
        "BucketAlreadyExists",
        "BucketAlreadyOwnedByYou",
        "BucketNotEmpty",
        "EntityTooLarge",
        "EntityTooSmall",
        "IncompleteBody",
        "InternalError",
        "InvalidArgument",
        "InvalidBucketName",
        "InvalidDigest",
        "InvalidObjectState",
        "InvalidPart",
        "InvalidPartOrder",
        "InvalidRange",
        "InvalidRequest",
        "InvalidStorageClass",
        "KeyTooLongError",
        "MalformedXML",
        "MetadataTooLarge",
        "MethodNotAllowed",
        "MissingContentLength",
        "NoSuchBucket",
        "NoSuchBucketPolicy",
        "NoSuchCORSConfiguration",
        "NoSuchKey",
        "NoSuchLifecycleConfiguration",
        "NoSuchTagSet",
        "NoSuchUpload",
        "NoSuchVersion",
        "NotImplemented",
        "NotModified",
        "OperationAborted",
        "PreconditionFailed",
        "RequestTimeout",
        "ServiceUnavailable",
        "SlowDown",
        "XAmzContentSHA256Mismatch",
        "InvalidTag",
        "ObjectLockConfigurationNotFoundError",
        "ServerSideEncryptionConfigurationNotFoundError",
        "NoSuchWebsiteConfiguration",
        "OwnershipControlsNotFoundError",
        "NoSuchPublicAccessBlockConfiguration",
        "ReplicationConfigurationNotFoundError",
        "IllegalLocationConstraintException",
        "TooManyBuckets",
        "InvalidLocationConstraint",
    ];
    KNOWN
        .iter()
        .find(|known| **known == code)
        .copied()
        .unwrap_or(match status.as_u16() {
            503 => "ServiceUnavailable",
            500.. => "InternalError",
            404 => "NoSuchKey",
            403 => "AccessDenied",
            _ => "InvalidRequest",
        })
}

/// The longest message a plugin's error may carry.
const MAX_PLUGIN_MESSAGE: usize = 1024;

impl S3Error {
    /// A plugin's `s3-error`: its code if S3 publishes it (otherwise the generic one for the
    /// status), its message, its status or the code's usual one. `Err` says why it is not an
    /// error Sluice can answer with (a status outside 4xx/5xx, an empty or overlong message).
    pub fn from_plugin(code: &str, message: &str, status: Option<u16>) -> Result<Self, String> {
        let status = match status {
            Some(n) => StatusCode::from_u16(n)
                .ok()
                .filter(|s| s.is_client_error() || s.is_server_error())
                .ok_or_else(|| format!("status {n} is not an error status"))?,
            None => usual_status(code),
        };
        if message.is_empty() || message.len() > MAX_PLUGIN_MESSAGE {
            return Err(format!(
                "an error message must be 1 to {MAX_PLUGIN_MESSAGE} bytes"
            ));
        }
        let mut err = Self::new(status, s3_code(code, status), message.to_owned());
        // The plugin's refusal is a decision about the client's request, whatever its status.
        err.fault = Fault::Client;
        Ok(err)
    }
}

/// The status S3 answers `code` with, for a plugin's error without one.
fn usual_status(code: &str) -> StatusCode {
    match code {
        "AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch" => StatusCode::FORBIDDEN,
        "NoSuchBucket" | "NoSuchKey" | "NoSuchUpload" => StatusCode::NOT_FOUND,
        "MethodNotAllowed" => StatusCode::METHOD_NOT_ALLOWED,
        "PreconditionFailed" => StatusCode::PRECONDITION_FAILED,
        "SlowDown" | "ServiceUnavailable" => StatusCode::SERVICE_UNAVAILABLE,
        "NotImplemented" => StatusCode::NOT_IMPLEMENTED,
        "InternalError" => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

impl From<SigV4Error> for S3Error {
    fn from(err: SigV4Error) -> Self {
        let status =
            StatusCode::from_u16(err.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut out = Self::new(status, err.s3_code(), err.to_string());
        if let SigV4Error::SignatureDoesNotMatch {
            string_to_sign,
            canonical_request,
        } = &err
        {
            out.message =
                "The request signature we calculated does not match the signature you provided. \
                           Check your key and signing method."
                    .into();
            out = out
                .with("StringToSign", string_to_sign.clone())
                .with("CanonicalRequest", canonical_request.clone());
        }
        out
    }
}
