//! `encryption:`: the keyring that wraps objects' data keys (docs/ENCRYPTION.md). Each key has
//! an id, written into every object it wraps, and 32 bytes in base64; `current` wraps new
//! objects, the others stay to read older ones.
//!
//! ```yaml
//! encryption:
//!   current: k2
//!   keys:
//!     - { id: k1, key: "file:/etc/sluice/k1.key" }
//!     - { id: k2, key: "env:SLUICE_KEY_K2" }
//! ```

use std::path::Path;
use std::sync::Arc;

use sluice_crypto::{KeyId, Keyring, WrappingKey};

use super::raw::RawEncryption;
use super::{Check, resolve_secret};

pub(super) fn validate(
    raw: Option<&RawEncryption>,
    base_dir: &Path,
    check: &mut Check,
) -> Option<Arc<Keyring>> {
    let raw = raw?;
    let errors = check.errors.len();
    let mut keys = Vec::new();
    if raw.keys.is_empty() {
        check.err("encryption.keys", "needs at least one key");
    }
    for (i, k) in raw.keys.iter().enumerate() {
        let place = format!("encryption.keys[{i}]");
        let id = KeyId::new(&k.id).map_err(|e| check.err(format_args!("{place}.id"), e));
        if keys
            .iter()
            .any(|(other, _): &(KeyId, _)| Ok(other) == id.as_ref())
        {
            check.err(
                format_args!("{place}.id"),
                format_args!("{:?} is given twice", k.id),
            );
        }
        let key = resolve_secret(&k.key, base_dir)
            .and_then(|text| WrappingKey::from_base64(&text).map_err(|e| e.to_string()))
            .map_err(|e| check.err(format_args!("{place}.key"), e));
        if let (Ok(id), Ok(key)) = (id, key) {
            keys.push((id, key));
        }
    }
    let current = KeyId::new(&raw.current).map_err(|e| check.err("encryption.current", e));
    if let Ok(current) = &current
        && check.errors.len() == errors
        && !keys.iter().any(|(id, _)| id == current)
    {
        check.err(
            "encryption.current",
            format_args!("no key with id {:?} in encryption.keys", raw.current),
        );
    }
    if check.errors.len() > errors {
        return None;
    }
    Keyring::new(keys, &current.ok()?)
        .map(Arc::new)
        .map_err(|e| check.err("encryption", e))
        .ok()
}
