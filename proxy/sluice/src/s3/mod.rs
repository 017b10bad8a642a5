//! The S3 protocol layer: routing to a closed set of operations, executing them against a
//! backend, XML bodies, and the one mapping from errors to S3 error responses.

pub mod conditional;
mod error;
pub mod list;
pub mod ops;
pub mod router;
pub mod xml;

pub use error::{Fault, S3Error};
pub use router::{S3Op, Target};
