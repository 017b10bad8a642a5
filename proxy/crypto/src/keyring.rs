//! Data keys and the keys that wrap them.
//!
//! Every object (and every multipart upload) gets a fresh random [`DataKey`]. It is stored only
//! wrapped: sealed under a key-encryption key from the [`Keyring`] (named by its [`KeyId`]), or
//! under an SSE-C customer's key, which Sluice never stores. The wrapped key travels in the
//! object's [`Envelope`]. Rotation adds a newer key to the keyring and makes it current; older
//! keys stay to unwrap what they wrapped until `sluice rewrap` has moved every object on.

use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::CryptoError;
use crate::aead::{AwsLc, KEY_LEN, NONCE_LEN, SegmentAead, TAG_LEN};

/// The key that encrypts one object's body (or one multipart upload's parts). Zeroised on
/// drop, never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct DataKey([u8; KEY_LEN]);

impl DataKey {
    pub(crate) fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    pub fn generate() -> Self {
        let mut key = [0u8; KEY_LEN];
        rand::fill(&mut key);
        Self(key)
    }

    pub(crate) fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

/// A key-encryption key's name: 1 to 64 of `A-Z a-z 0-9 . _ -`. It is written into every
/// envelope the key wraps, so a name must never be reused for a different key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeyId(String);

impl KeyId {
    pub fn new(id: &str) -> Result<Self, CryptoError> {
        let valid = (1..=64).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if valid {
            Ok(Self(id.to_owned()))
        } else {
            Err(CryptoError::BadKeyId(id.chars().take(80).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A 256-bit key that wraps data keys. Zeroised on drop, never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct WrappingKey([u8; KEY_LEN]);

impl WrappingKey {
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// A base64-encoded 32-byte key (surrounding whitespace ignored).
    pub fn from_base64(text: &str) -> Result<Self, CryptoError> {
        crate::MasterKey::from_base64(text).map(|k| Self(*k.bytes()))
    }
}

impl std::fmt::Debug for WrappingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WrappingKey(<redacted>)")
    }
}

/// Who holds the key that wraps an object's data key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wrapping {
    /// A key-encryption key from the keyring.
    Keyring(KeyId),
    /// The client's own key (SSE-C), given with every request and never stored.
    Customer,
}

/// A data key sealed under a wrapping key: nonce, sealed key, tag.
pub const WRAPPED_LEN: usize = NONCE_LEN + KEY_LEN + TAG_LEN;

/// Seals `key` under `wrapping_key`, bound to `label` (which names the wrapping, so an envelope
/// edited to name another key fails to open rather than decrypting under it).
fn wrap(wrapping_key: &[u8; KEY_LEN], label: &[u8], key: &DataKey) -> [u8; WRAPPED_LEN] {
    let mut out = [0u8; WRAPPED_LEN];
    let (nonce, rest) = out.split_at_mut(NONCE_LEN);
    rand::fill(nonce);
    let nonce: [u8; NONCE_LEN] = (&*nonce).try_into().expect("nonce length");
    let aead = AwsLc::new(&crate::aead::derive(
        wrapping_key,
        b"sluice/v1/wrap/",
        label,
    ));
    let (sealed, tag) = rest.split_at_mut(KEY_LEN);
    sealed.copy_from_slice(key.bytes());
    tag.copy_from_slice(&aead.seal(nonce, sealed));
    out
}

fn unwrap(
    wrapping_key: &[u8; KEY_LEN],
    label: &[u8],
    wrapped: &[u8; WRAPPED_LEN],
) -> Result<DataKey, CryptoError> {
    let nonce: [u8; NONCE_LEN] = wrapped[..NONCE_LEN].try_into().expect("nonce length");
    let mut sealed = Zeroizing::new(wrapped[NONCE_LEN..].to_vec());
    let aead = AwsLc::new(&crate::aead::derive(
        wrapping_key,
        b"sluice/v1/wrap/",
        label,
    ));
    aead.open(nonce, &mut sealed)?;
    let key: [u8; KEY_LEN] = sealed[..KEY_LEN].try_into().expect("key length");
    Ok(DataKey(key))
}

/// The keys that wrap data keys, by name, and the one new objects use.
pub struct Keyring {
    keys: Vec<(KeyId, WrappingKey)>,
    current: usize,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field(
                "keys",
                &self.keys.iter().map(|(id, _)| id).collect::<Vec<_>>(),
            )
            .field("current", &self.keys[self.current].0)
            .finish()
    }
}

impl Keyring {
    /// `current` must name one of `keys`; names must be distinct.
    pub fn new(keys: Vec<(KeyId, WrappingKey)>, current: &KeyId) -> Result<Self, CryptoError> {
        for (i, (id, _)) in keys.iter().enumerate() {
            if keys[..i].iter().any(|(other, _)| other == id) {
                return Err(CryptoError::DuplicateKeyId(id.to_string()));
            }
        }
        let current = keys
            .iter()
            .position(|(id, _)| id == current)
            .ok_or_else(|| CryptoError::UnknownKey(current.to_string()))?;
        Ok(Self { keys, current })
    }

    /// The key new objects are wrapped under.
    pub fn current(&self) -> &KeyId {
        &self.keys[self.current].0
    }

    fn key(&self, id: &KeyId) -> Result<&WrappingKey, CryptoError> {
        self.keys
            .iter()
            .find(|(k, _)| k == id)
            .map(|(_, key)| key)
            .ok_or_else(|| CryptoError::UnknownKey(id.to_string()))
    }

    /// `key` wrapped under the current key.
    pub fn wrap(&self, key: &DataKey) -> (Wrapping, [u8; WRAPPED_LEN]) {
        let (id, wrapping_key) = &self.keys[self.current];
        let wrapped = wrap(&wrapping_key.0, keyring_label(id).as_bytes(), key);
        (Wrapping::Keyring(id.clone()), wrapped)
    }

    /// The data key `wrapped` under the keyring key `id`.
    pub fn unwrap(&self, id: &KeyId, wrapped: &[u8; WRAPPED_LEN]) -> Result<DataKey, CryptoError> {
        let key = self.key(id)?;
        unwrap(&key.0, keyring_label(id).as_bytes(), wrapped)
            .map_err(|_| CryptoError::WrongKey(id.to_string()))
    }
}

fn keyring_label(id: &KeyId) -> String {
    format!("keyring/{id}")
}

/// A data key wrapped under an SSE-C customer key.
pub fn wrap_for_customer(customer_key: &[u8; KEY_LEN], key: &DataKey) -> [u8; WRAPPED_LEN] {
    wrap(customer_key, b"customer", key)
}

/// The data key wrapped by [`wrap_for_customer`]; [`CryptoError::WrongKey`] if `customer_key`
/// is not the one it was wrapped under.
pub fn unwrap_for_customer(
    customer_key: &[u8; KEY_LEN],
    wrapped: &[u8; WRAPPED_LEN],
) -> Result<DataKey, CryptoError> {
    unwrap(customer_key, b"customer", wrapped).map_err(|_| CryptoError::WrongKey("customer".into()))
}
