//! The AEAD that seals object segments: AES-256-GCM with a 96-bit nonce and a 128-bit tag.
//!
//! Sluice ships aws-lc-rs's implementation, the one rustls already links for TLS: on one core
//! of the build machine it seals and opens about twice as fast as RustCrypto's `aes-gcm`
//! (criterion: `cargo bench -p sluice-crypto --bench aead`). RustCrypto's stays, for that
//! benchmark and for a test that both produce the same bytes (the key store's sealed values
//! use it too).

use zeroize::Zeroizing;

use crate::CryptoError;

pub const KEY_LEN: usize = 32;
pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;

/// One AES-256-GCM key, ready to seal and open in place.
pub trait SegmentAead: Sized + Send + Sync {
    fn new(key: &[u8; KEY_LEN]) -> Self;
    /// Encrypts `in_out` in place; returns the tag.
    fn seal(&self, nonce: [u8; NONCE_LEN], in_out: &mut [u8]) -> [u8; TAG_LEN];
    /// Decrypts `sealed` (ciphertext then tag) in place if the tag authenticates it; returns
    /// the plaintext's length (the bytes before the tag). `sealed` is unspecified on error.
    fn open(&self, nonce: [u8; NONCE_LEN], sealed: &mut [u8]) -> Result<usize, CryptoError>;
}

/// aws-lc-rs's AES-256-GCM: what Sluice uses.
pub struct AwsLc(aws_lc_rs::aead::LessSafeKey);

impl std::fmt::Debug for AwsLc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AwsLc(<key redacted>)")
    }
}

impl SegmentAead for AwsLc {
    fn new(key: &[u8; KEY_LEN]) -> Self {
        let key = aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_256_GCM, key)
            .expect("a 32-byte key is a valid AES-256-GCM key");
        Self(aws_lc_rs::aead::LessSafeKey::new(key))
    }

    fn seal(&self, nonce: [u8; NONCE_LEN], in_out: &mut [u8]) -> [u8; TAG_LEN] {
        let tag = self
            .0
            .seal_in_place_separate_tag(
                aws_lc_rs::aead::Nonce::assume_unique_for_key(nonce),
                aws_lc_rs::aead::Aad::empty(),
                in_out,
            )
            .expect("AES-GCM sealing fails only past 64 GiB per call");
        tag.as_ref().try_into().expect("a GCM tag is 16 bytes")
    }

    fn open(&self, nonce: [u8; NONCE_LEN], sealed: &mut [u8]) -> Result<usize, CryptoError> {
        self.0
            .open_in_place(
                aws_lc_rs::aead::Nonce::assume_unique_for_key(nonce),
                aws_lc_rs::aead::Aad::empty(),
                sealed,
            )
            .map(|plain| plain.len())
            .map_err(|_| CryptoError::Authentication)
    }
}

/// RustCrypto's `aes-gcm`, for comparison.
pub struct RustCrypto(aes_gcm::Aes256Gcm);

impl std::fmt::Debug for RustCrypto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RustCrypto(<key redacted>)")
    }
}

impl SegmentAead for RustCrypto {
    fn new(key: &[u8; KEY_LEN]) -> Self {
        use aes_gcm::KeyInit as _;
        Self(aes_gcm::Aes256Gcm::new(key.into()))
    }

    fn seal(&self, nonce: [u8; NONCE_LEN], in_out: &mut [u8]) -> [u8; TAG_LEN] {
        use aes_gcm::AeadInPlace as _;
        self.0
            .encrypt_in_place_detached(&nonce.into(), b"", in_out)
            .expect("AES-GCM sealing fails only past 64 GiB per call")
            .into()
    }

    fn open(&self, nonce: [u8; NONCE_LEN], sealed: &mut [u8]) -> Result<usize, CryptoError> {
        use aes_gcm::AeadInPlace as _;
        let len = sealed
            .len()
            .checked_sub(TAG_LEN)
            .ok_or(CryptoError::Authentication)?;
        let (text, tag) = sealed.split_at_mut(len);
        self.0
            .decrypt_in_place_detached(&nonce.into(), b"", text, (&*tag).into())
            .map(|()| len)
            .map_err(|_| CryptoError::Authentication)
    }
}

/// `HMAC-SHA256(key, label || context)`: the key-derivation step of the format (a PRF over a
/// uniformly random key needs no extract step).
pub(crate) fn derive(key: &[u8; KEY_LEN], label: &[u8], context: &[u8]) -> Zeroizing<[u8; 32]> {
    use hmac::Mac as _;
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(label);
    mac.update(context);
    Zeroizing::new(mac.finalize().into_bytes().into())
}
