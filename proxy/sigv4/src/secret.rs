//! Restricted types for key material and signatures: [`SecretKey`], [`SigningKey`], [`Signature`].
//!
//! Secrets are zeroised on drop and redacted in `Debug`; none of these types implement
//! `PartialEq`, so a signature can only be compared with [`Signature::ct_eq`] (constant time).
//! Key derivation: <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html#derive-signing-key>

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// A secret access key. Zeroised on drop, never printed, never compared.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretKey(String);

impl SecretKey {
    /// Takes ownership of the key text so that no copy outlives this value.
    pub fn new(secret: String) -> Self {
        Self(secret)
    }

    /// The key text, for deriving a signing key or handing to an upstream signer.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

/// The per-day, per-region, per-service HMAC key derived from a [`SecretKey`].
///
/// Deriving costs four HMACs, so the server caches it per (access key, scope); it is as sensitive
/// as the secret for that scope and is treated the same way.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SigningKey([u8; 32]);

impl SigningKey {
    /// `HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")`.
    ///
    /// `date` is the credential scope's `YYYYMMDD`.
    pub fn derive(secret: &SecretKey, date: &str, region: &str, service: &str) -> SigningKey {
        let mut seed = Zeroizing::new(Vec::with_capacity(4 + secret.expose().len()));
        seed.extend_from_slice(b"AWS4");
        seed.extend_from_slice(secret.expose().as_bytes());
        let k_date = Zeroizing::new(hmac_sha256(&seed, date.as_bytes()));
        let k_region = Zeroizing::new(hmac_sha256(&*k_date, region.as_bytes()));
        let k_service = Zeroizing::new(hmac_sha256(&*k_region, service.as_bytes()));
        SigningKey(hmac_sha256(&*k_service, b"aws4_request"))
    }

    /// `HMAC-SHA256(signing key, string to sign)`.
    pub fn sign(&self, string_to_sign: &[u8]) -> Signature {
        Signature(hmac_sha256(&self.0, string_to_sign))
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

/// A SigV4 signature (request, seed, chunk or trailer).
///
/// `Debug` shows the hex: a signature the client sent is public once on the wire. Never log a
/// signature the *verifier computed* for a request that failed to verify: it is a valid signature
/// for whatever the sender chose to send. No `PartialEq`: compare with [`Signature::ct_eq`].
#[derive(Clone)]
pub struct Signature([u8; 32]);

impl Signature {
    /// Parses the 64 hex digits used on the wire.
    pub fn from_hex(hex_text: &str) -> Option<Signature> {
        let mut bytes = [0u8; 32];
        // Lowercase only, as every signer writes it: one spelling per signature, so a value
        // that differs from what was signed is never taken for it.
        if hex_text.len() != 64
            || !hex_text
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return None;
        }
        hex::decode_to_slice(hex_text, &mut bytes).ok()?;
        Some(Signature(bytes))
    }

    /// Lowercase hex, as sent on the wire.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Constant-time equality: the only way to compare signatures.
    pub fn ct_eq(&self, other: &Signature) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", self.to_hex())
    }
}

pub(crate) fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    Sha256::digest(data).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    #[test]
    fn debug_is_redacted() {
        let secret = SecretKey::new(SECRET.to_owned());
        assert_eq!(format!("{secret:?}"), "SecretKey(<redacted>)");
        let key = SigningKey::derive(&secret, "20150830", "us-east-1", "iam");
        assert_eq!(format!("{key:?}"), "SigningKey(<redacted>)");
    }

    #[test]
    fn derives_the_documented_signing_key() {
        // From the IAM user guide's key-derivation example (20150830/us-east-1/iam).
        let secret = SecretKey::new(SECRET.to_owned());
        let key = SigningKey::derive(&secret, "20150830", "us-east-1", "iam");
        assert_eq!(
            hex::encode(key.0),
            "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"
        );
    }

    #[test]
    fn signature_hex_round_trip_and_ct_eq() {
        let hex_text = "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41";
        let sig = Signature::from_hex(hex_text).unwrap();
        assert_eq!(sig.to_hex(), hex_text);
        assert!(sig.ct_eq(&Signature::from_hex(hex_text).unwrap()));
        let other = Signature::from_hex(&hex_text.replace('f', "e")).unwrap();
        assert!(!sig.ct_eq(&other));
        assert!(Signature::from_hex(&hex_text[1..]).is_none());
        assert!(Signature::from_hex(&hex_text.replace('f', "g")).is_none());
        assert!(Signature::from_hex("").is_none());
        assert!(Signature::from_hex(&hex_text.to_ascii_uppercase()).is_none());
    }
}
