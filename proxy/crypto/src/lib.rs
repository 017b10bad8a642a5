//! Sluice's encryption with no I/O.
//!
//! - The master key and the sealed-value format the key store keeps HMAC secrets in
//!   ([`MasterKey`], [`seal`], [`open`]).
//! - Object bodies at rest (format v1, written down in `docs/ENCRYPTION.md`): the AEAD
//!   ([`aead`]), data keys and the keyring that wraps them ([`keyring`]), the envelope an object
//!   carries in its metadata ([`envelope`]), the encrypted stream with its encryptor and
//!   decryptor state machines ([`stream`]), and plaintext-to-stored arithmetic ([`layout`]).

pub mod aead;
pub mod envelope;
pub mod keyring;
pub mod layout;
mod master_key;
mod sealed;
pub mod stream;

pub use envelope::{Envelope, check_upload_mac, split_upload_token, upload_token};
pub use keyring::{
    DataKey, KeyId, Keyring, WRAPPED_LEN, Wrapping, WrappingKey, unwrap_for_customer,
    wrap_for_customer,
};
pub use layout::{Layout, PartEntry, PartMap, Span};
pub use master_key::MasterKey;
pub use sealed::{SEALED_VERSION, open, seal};
pub use stream::{
    Footer, FooterKey, FooterWalk, StreamDecryptor, StreamEncryptor, StreamHeader, is_multipart,
    object_etag,
};

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("a key must be 32 bytes encoded as base64 (got {0} bytes)")]
    BadKeyLength(usize),
    #[error("a key must be 32 bytes encoded as base64 (this is not base64)")]
    BadKeyEncoding,
    #[error("sealed value is malformed")]
    Malformed,
    #[error("sealed value has unsupported version {0}")]
    UnsupportedVersion(u8),
    #[error("sealed value failed authentication (wrong master key or tampered data)")]
    Authentication,
    #[error("key id {0:?} is not 1 to 64 of A-Z a-z 0-9 . _ -")]
    BadKeyId(String),
    #[error("key id {0:?} is given twice")]
    DuplicateKeyId(String),
    #[error("no key {0:?} in the keyring")]
    UnknownKey(String),
    #[error("the data key does not open under key {0:?}")]
    WrongKey(String),
    #[error("unsupported encryption format {0}")]
    UnsupportedFormat(String),
    #[error("{0} stored bytes is no encrypted stream's size")]
    BadStoredLength(u64),
    #[error("the stored bytes are not an encrypted stream")]
    NotEncrypted,
    #[error("the encrypted stream ends early")]
    Truncated,
    #[error("the encrypted stream goes on past its end")]
    TrailingData,
    #[error("segment {0} failed authentication (damaged, moved or from another object)")]
    Segment(u64),
    #[error("the stream's footer failed authentication or does not match the stream")]
    Footer,
    #[error("the object's streams do not add up: {0}")]
    Streams(&'static str),
    #[error("expected part {expected}, found part {found}")]
    WrongPart { expected: u32, found: u32 },
}
