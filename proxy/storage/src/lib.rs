//! Where bytes live.
//!
//! Owns the validated names ([`BucketName`], [`ObjectKey`]), the object model shared by every
//! backend ([`ObjectMeta`], [`ListRequest`], [`ListPage`]), the one [`StorageError`], and the
//! built-in local backend ([`LocalBackend`]). Upstream S3 backends will live beside `local`.

mod error;
pub mod local;
mod names;
mod object;

pub use error::{PutError, StorageError};
pub use local::{LocalBackend, OpenObject, PART_NUMBERS, PartId};
pub use names::{BucketName, MAX_KEY_BYTES, NameError, ObjectKey, TenantId};
pub use object::{
    BucketInfo, ByteRange, CompletePart, LateChecksum, ListPage, ListRequest, ObjectBody,
    ObjectMeta, PartInfo, PutCondition, PutObject, StoredHeaders, UploadInfo, UploadListPage,
    UploadListRequest,
};
