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
pub use local::LocalBackend;
pub use names::{BucketName, MAX_KEY_BYTES, NameError, ObjectKey, TenantId};
pub use object::{
    BucketInfo, ByteRange, ListPage, ListRequest, ObjectBody, ObjectMeta, PutObject, StoredHeaders,
};
