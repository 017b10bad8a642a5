//! The one storage error type. Each variant knows whose fault it is, so the wire mapping in the
//! server can pick the S3 code and the 4xx/5xx class without guessing.

use crate::names::NameError;

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
    #[error("the requested range is not satisfiable")]
    InvalidRange,
    #[error("your proposed upload exceeds the maximum allowed object size")]
    EntityTooLarge,
    #[error("you did not provide the number of bytes specified by the Content-Length header")]
    IncompleteBody,
    #[error("the Content-MD5 you specified did not match what was received")]
    BadDigest,
    #[error("at least one of the preconditions you specified did not hold")]
    PreconditionFailed,
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
    #[error(transparent)]
    InvalidName(#[from] NameError),
    /// The local disk or index failed: Sluice's fault, never the client's.
    #[error("storage I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("storage index error: {0}")]
    Index(String),
    /// Stored bytes no longer match their checksums (bit rot, truncation, tampering).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

impl StorageError {
    pub(crate) fn index(err: impl std::fmt::Display) -> Self {
        Self::Index(err.to_string())
    }

    /// True when the fault is Sluice's (or its disk's), not the client's.
    pub fn is_internal(&self) -> bool {
        matches!(self, Self::Io(_) | Self::Index(_) | Self::Corrupt(_))
    }
}

/// The outcome of a PUT whose body comes from the client: either the body stream failed (a
/// signature or checksum the caller verifies while streaming), or storage did. In both cases
/// nothing was stored.
#[derive(Debug)]
pub enum PutError<E> {
    Body(E),
    Storage(StorageError),
}

impl PutError<StorageError> {
    /// A copy reads its body from storage too: either way, a storage error.
    pub fn into_storage(self) -> StorageError {
        match self {
            Self::Body(e) | Self::Storage(e) => e,
        }
    }
}

impl<E> From<StorageError> for PutError<E> {
    fn from(err: StorageError) -> Self {
        Self::Storage(err)
    }
}
