//! The one storage error type. Each variant says where it came from (the client, Sluice itself,
//! an upstream store, or an upstream that could not be reached), so the wire mapping in the
//! server can pick the S3 code and the 4xx/5xx class without guessing from a status code.

use crate::names::NameError;
use crate::object::ObjectMeta;

/// Who is at fault for an error: decides 4xx or 5xx, and what is logged at which level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The request was wrong (or asked for what does not exist).
    Client,
    /// Sluice or its own disk failed.
    Sluice,
    /// An upstream store answered with an error that is not the client's doing.
    Upstream,
    /// An upstream store could not be reached, or stopped answering.
    Unreachable,
}

/// A request body that failed on the client's side while storage read it (a chunk signature or
/// trailing checksum that did not verify, a stalled body). The server's own error travels inside,
/// unchanged, and is answered as it is: storage only learns that nothing may be stored.
#[derive(Debug)]
pub struct BodyError(pub Box<dyn std::error::Error + Send + Sync>);

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// An error answered by an upstream S3 store, with its own code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamError {
    /// The backend's name in the config (for the log, never for the client).
    pub backend: String,
    pub status: u16,
    /// The upstream's S3 error code (`NoSuchKey`, `SlowDown`, ...); empty when it sent none.
    pub code: String,
    pub message: String,
}

impl UpstreamError {
    /// The upstream refused Sluice's own credentials or signature: the operator's problem (a
    /// wrong or expired upstream key, a clock off), never the client's.
    pub fn refused_sluice(&self) -> bool {
        matches!(
            self.code.as_str(),
            "InvalidAccessKeyId"
                | "NotSignedUp"
                | "SignatureDoesNotMatch"
                | "AuthorizationHeaderMalformed"
                | "ExpiredToken"
                | "InvalidToken"
                | "TokenRefreshRequired"
                | "RequestTimeTooSkewed"
                | "MissingSecurityHeader"
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("the specified bucket does not exist")]
    NoSuchBucket,
    #[error("the specified key does not exist")]
    NoSuchKey,
    #[error("the bucket you tried to create already exists and you own it")]
    BucketAlreadyOwnedByYou,
    #[error("the bucket you tried to delete is not empty")]
    BucketNotEmpty,
    /// A range that starts past the end of an object of `size` bytes (416).
    #[error("the requested range is not satisfiable")]
    InvalidRange { size: u64 },
    #[error("your proposed upload exceeds the maximum allowed object size")]
    EntityTooLarge,
    #[error("you did not provide the number of bytes specified by the Content-Length header")]
    IncompleteBody,
    #[error("the Content-MD5 you specified did not match what was received")]
    BadDigest,
    /// A write's condition (`If-Match`, `If-None-Match: *`), or a read's `If-Match` or
    /// `If-Unmodified-Since`, did not hold; `condition` names the header when known.
    #[error("at least one of the preconditions you specified did not hold")]
    PreconditionFailed { condition: Option<&'static str> },
    /// A read's `If-None-Match` or `If-Modified-Since` matched: 304, with the object's
    /// ETag and Last-Modified.
    #[error("not modified")]
    NotModified(Box<ObjectMeta>),
    #[error("the specified multipart upload does not exist")]
    NoSuchUpload,
    #[error(
        "one or more of the specified parts could not be found or its entity tag did not match"
    )]
    InvalidPart,
    #[error("the list of parts was not in ascending order")]
    InvalidPartOrder,
    #[error("your proposed upload is smaller than the minimum allowed size")]
    EntityTooSmall,
    #[error("the requested part number is not satisfiable")]
    InvalidPartNumber,
    /// The operation is refused on this route (for example, deleting a bucket that is a key
    /// prefix of a shared one); the message says why.
    #[error("{0}")]
    NotAllowed(&'static str),
    /// This store cannot do what was asked (for example, object tags on a provider without
    /// them): S3's `NotImplemented`, never a silent success.
    #[error("{0} is not supported by this store")]
    Unsupported(&'static str),
    /// An SSE-C key (`x-amz-server-side-encryption-customer-*`) missing, wrong, or given for
    /// an object not encrypted with one.
    #[error("{0}")]
    CustomerKey(CustomerKeyProblem),
    /// A listing continuation token this store did not issue.
    #[error("the continuation token provided is incorrect")]
    InvalidToken,
    #[error(transparent)]
    InvalidName(#[from] NameError),
    /// The request body failed a check on the client's side; nothing was stored.
    #[error("request body: {0}")]
    Body(BodyError),
    /// The local disk or index failed: Sluice's fault, never the client's.
    #[error("storage I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("storage index error: {0}")]
    Index(String),
    /// Stored bytes no longer match their checksums (bit rot, truncation, tampering).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// An upstream store answered with an error.
    #[error("upstream {}: {} {} {}", .0.backend, .0.status, .0.code, .0.message)]
    Upstream(Box<UpstreamError>),
    /// An upstream store could not be reached or broke off (connect, TLS, timeout, reset).
    #[error("upstream {backend} unreachable: {detail}")]
    Unreachable { backend: String, detail: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CustomerKeyProblem {
    /// The object is encrypted with a customer key the request did not give (400).
    #[error(
        "the object was stored using a form of server-side encryption; the correct parameters must be provided to retrieve it"
    )]
    Missing,
    /// The key given is not the object's (403).
    #[error("the secret key given is not the object's")]
    Wrong,
    /// A customer key given for an object (or upload) not encrypted with one (400).
    #[error("the encryption parameters are not applicable to this object")]
    NotApplicable,
}

impl StorageError {
    pub(crate) fn index(err: impl std::fmt::Display) -> Self {
        Self::Index(err.to_string())
    }

    /// Whose fault the error is.
    pub fn fault(&self) -> Fault {
        match self {
            Self::Io(_) | Self::Index(_) | Self::Corrupt(_) => Fault::Sluice,
            // 501: the upstream does not offer what the client asked for; nothing failed.
            Self::Upstream(e) if e.status == 501 => Fault::Client,
            Self::Upstream(e) if e.status >= 500 || e.refused_sluice() => Fault::Upstream,
            Self::Unreachable { .. } => Fault::Unreachable,
            // A copy's body is another store's read: its failure is that store's.
            Self::Body(body) => body
                .0
                .downcast_ref::<StorageError>()
                .map_or(Fault::Client, StorageError::fault),
            _ => Fault::Client,
        }
    }

    /// True when the fault is not the client's.
    pub fn is_internal(&self) -> bool {
        self.fault() != Fault::Client
    }
}
