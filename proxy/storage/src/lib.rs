//! Where bytes live.
//!
//! Owns the one interface every store speaks ([`Backend`], held as `Arc<dyn Backend>`), the
//! validated names ([`BucketName`], [`ObjectKey`]), the object model every backend shares
//! ([`ObjectMeta`], [`ReadRequest`], [`ListRequest`], [`ListPage`]), ranges and preconditions
//! resolved behind the interface, the one [`StorageError`], and the built-in local backend
//! ([`LocalBackend`]).

mod backend;
mod body_md5;
mod conditions;
pub mod encrypted;
mod error;
pub mod local;
mod names;
mod object;
mod range;
mod renamed;

pub use backend::{
    Backend, CopyObject, CopySource, Forward, Forwarded, PART_NUMBERS, PartId, PutBody,
    storage_body, stream_copy, stream_copy_part,
};
pub use conditions::Preconditions;
pub use encrypted::{Encrypted, Finding, Policy};
pub use error::{BodyError, CustomerKeyProblem, Fault, StorageError, UpstreamError};
pub use local::LocalBackend;
pub use names::{BucketName, MAX_KEY_BYTES, NameError, ObjectKey, TenantId};
pub use object::{
    BucketInfo, CompletePart, CustomerKey, LateChecksum, LateMeta, ListPage, ListRequest,
    NewUpload, ObjectBody, ObjectMeta, ObjectRead, PartInfo, PutCondition, PutObject, ReadRequest,
    StoredHeaders, SystemMeta, UploadInfo, UploadListPage, UploadListRequest,
};
pub use range::{ByteRange, ReadRange};
pub use renamed::Renamed;
