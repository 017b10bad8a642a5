//! The sealed-value format: `base64(version || nonce(12) || AES-256-GCM ciphertext+tag)`.
//!
//! DO NOT CHANGE version 1: key stores on disk depend on it. A new layout gets a new version byte
//! and `open` keeps reading the old one. The caller's associated data binds a sealed value to its
//! place (e.g. the access id it belongs to), so a ciphertext copied to another record fails to open.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use crate::{CryptoError, MasterKey};

pub const SEALED_VERSION: u8 = 1;
const NONCE_LEN: usize = 12;

/// Encrypts `plaintext` under `key`, bound to `aad`. A random 96-bit nonce per value is safe here:
/// a master key seals at most a few thousand small values in its life.
pub fn seal(key: &MasterKey, plaintext: &[u8], aad: &[u8]) -> String {
    let cipher = Aes256Gcm::new(key.bytes().into());
    let mut nonce = [0u8; NONCE_LEN];
    rand::fill(&mut nonce);
    let ciphertext = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .expect("AES-GCM encryption of a small value cannot fail");
    let mut out = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
    out.push(SEALED_VERSION);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ciphertext);
    STANDARD.encode(out)
}

/// Decrypts a value made by [`seal`] with the same key and associated data.
pub fn open(key: &MasterKey, sealed: &str, aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let raw = STANDARD
        .decode(sealed.trim())
        .map_err(|_| CryptoError::Malformed)?;
    let (&version, rest) = raw.split_first().ok_or(CryptoError::Malformed)?;
    if version != SEALED_VERSION {
        return Err(CryptoError::UnsupportedVersion(version));
    }
    if rest.len() < NONCE_LEN + 16 {
        return Err(CryptoError::Malformed);
    }
    let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
    let cipher = Aes256Gcm::new(key.bytes().into());
    cipher
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| CryptoError::Authentication)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> MasterKey {
        MasterKey::from_base64(&MasterKey::generate_base64()).unwrap()
    }

    #[test]
    fn round_trip_and_binding() {
        let k = key();
        let sealed = seal(&k, b"secret", b"id-1");
        assert_eq!(open(&k, &sealed, b"id-1").unwrap().as_slice(), b"secret");
        assert!(matches!(
            open(&k, &sealed, b"id-2"),
            Err(CryptoError::Authentication)
        ));
        assert!(matches!(
            open(&key(), &sealed, b"id-1"),
            Err(CryptoError::Authentication)
        ));
    }

    #[test]
    fn tampering_and_versions_are_rejected() {
        let k = key();
        let mut raw = STANDARD.decode(seal(&k, b"secret", b"")).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        assert!(matches!(
            open(&k, &STANDARD.encode(&raw), b""),
            Err(CryptoError::Authentication)
        ));
        raw[0] = 2;
        assert!(matches!(
            open(&k, &STANDARD.encode(&raw), b""),
            Err(CryptoError::UnsupportedVersion(2))
        ));
        assert!(matches!(open(&k, "AQID", b""), Err(CryptoError::Malformed)));
    }

    #[test]
    fn master_key_parsing() {
        assert!(matches!(
            MasterKey::from_base64("AAAA"),
            Err(CryptoError::BadKeyLength(3))
        ));
        assert!(matches!(
            MasterKey::from_base64("!!"),
            Err(CryptoError::BadKeyEncoding)
        ));
        assert_eq!(format!("{:?}", key()), "MasterKey(<redacted>)");
    }
}
