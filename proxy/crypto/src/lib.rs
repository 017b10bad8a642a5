//! Sluice's encryption with no I/O.
//!
//! Today this crate owns the master key type and the versioned sealed-value format the key store
//! uses to keep HMAC secrets encrypted at rest (AES-256-GCM). Object-body encryption (the STREAM
//! segment format and range arithmetic) will live here too.

mod master_key;
mod sealed;

pub use master_key::MasterKey;
pub use sealed::{SEALED_VERSION, open, seal};

/// Everything that can go wrong in this crate; none of it is the client's fault.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("master key must be 32 bytes encoded as base64 (got {0} bytes)")]
    BadKeyLength(usize),
    #[error("master key is not valid base64")]
    BadKeyEncoding,
    #[error("sealed value is malformed")]
    Malformed,
    #[error("sealed value has unsupported version {0}")]
    UnsupportedVersion(u8),
    #[error("sealed value failed authentication (wrong master key or tampered data)")]
    Authentication,
}
