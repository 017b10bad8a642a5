//! The 256-bit master key that wraps secrets at rest. Zeroised on drop, never printed.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::CryptoError;

#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MasterKey([u8; 32]);

impl MasterKey {
    /// Parses a base64-encoded 32-byte key (surrounding whitespace ignored, as keys often come from files).
    pub fn from_base64(text: &str) -> Result<Self, CryptoError> {
        let mut bytes = STANDARD
            .decode(text.trim())
            .map_err(|_| CryptoError::BadKeyEncoding)?;
        let key = <[u8; 32]>::try_from(bytes.as_slice())
            .map_err(|_| CryptoError::BadKeyLength(bytes.len()));
        bytes.zeroize();
        key.map(Self)
    }

    /// A fresh random key, base64-encoded, for `sluice keys init-master-key` and tests.
    pub fn generate_base64() -> String {
        let mut key = [0u8; 32];
        rand::fill(&mut key);
        let text = STANDARD.encode(key);
        key.zeroize();
        text
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}
