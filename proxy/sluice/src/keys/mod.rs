//! Tenants' HMAC keys, modelled on Cloud Storage's HMAC keys: an access id and a 40-character
//! secret, `active` or `inactive`, at most ten per tenant, deletable only once inactive.
//!
//! - [`store`] owns the key store file that `sluice keys …` manages (secrets sealed with the
//!   master key; the plaintext is shown once, at creation).
//! - [`table`] owns the running server's view: every key from the config and the store, reloaded
//!   within a second of the store file changing, and the cache of derived signing keys.

pub mod store;
pub mod table;

pub use store::{KeyRecord, KeyState, KeyStore, KeyStoreError, NewKey};
pub use table::{KeyLookup, KeyTable};
