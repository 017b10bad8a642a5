//! The S3 protocol layer: routing to a closed set of operations, executing them against a
//! backend, XML bodies, and the one mapping from errors to S3 error responses.

pub mod batch;
pub mod bucket;
mod bucket_encryption;
pub mod conditional;
pub(crate) mod copy;
pub mod cors;
mod customer_key;
mod error;
pub mod list;
pub mod multipart;
mod object;
pub mod ops;
mod passthrough;
pub mod range;
mod request;
mod response;
pub mod router;
pub mod tagging;
mod versions;
pub mod xml;

pub use error::{Fault, S3Error};
pub use router::{S3Op, Target};
