//! The envelope: what an encrypted object carries in its (Sluice-only) metadata so that its
//! stored bytes can be decrypted with nothing but the keyring: the format version, the segment
//! size, who wraps the data key and the wrapped key itself.
//!
//! Text form, one header value: `v1;seg=16;kek=<key id>;dk=<base64>` for a keyring key, or
//! `v1;seg=16;ssec;dk=<base64>;fk=<key id>:<base64>` for an SSE-C customer key (the data key
//! wrapped under the customer's key; the footer key under a keyring key). Rewrapping (rotation, a copy) changes
//! only this value, never the stored bytes.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::CryptoError;
use crate::keyring::{KeyId, WRAPPED_LEN, Wrapping};
use crate::layout::Layout;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub layout: Layout,
    pub wrapping: Wrapping,
    pub wrapped: [u8; WRAPPED_LEN],
    /// An SSE-C object's footer key ([`crate::FooterKey`]) wrapped under a keyring key, so
    /// that sizes and ETags can be read without the customer's key (listings). `None` for a
    /// keyring-wrapped object, whose footer key follows from its data key.
    pub footer: Option<(KeyId, [u8; WRAPPED_LEN])>,
}

impl Envelope {
    pub fn to_meta(&self) -> String {
        let who = match &self.wrapping {
            Wrapping::Keyring(id) => format!("kek={id}"),
            Wrapping::Customer => "ssec".to_owned(),
        };
        let footer = match &self.footer {
            Some((id, wrapped)) => format!(";fk={id}:{}", STANDARD.encode(wrapped)),
            None => String::new(),
        };
        format!(
            "v1;seg={};{who};dk={}{footer}",
            self.layout.segment_log2(),
            STANDARD.encode(self.wrapped)
        )
    }

    pub fn from_meta(text: &str) -> Result<Self, CryptoError> {
        let bad = || CryptoError::Malformed;
        let mut fields = text.trim().split(';');
        match fields.next() {
            Some("v1") => {}
            Some(v) if v.starts_with('v') => {
                return Err(CryptoError::UnsupportedFormat(v.chars().take(16).collect()));
            }
            _ => return Err(bad()),
        }
        let seg = fields
            .next()
            .and_then(|f| f.strip_prefix("seg="))
            .and_then(|n| n.parse::<u8>().ok())
            .ok_or_else(bad)?;
        let layout = Layout::new(seg)?;
        let wrapping = match fields.next().ok_or_else(bad)? {
            "ssec" => Wrapping::Customer,
            f => Wrapping::Keyring(KeyId::new(f.strip_prefix("kek=").ok_or_else(bad)?)?),
        };
        let decode = |b: &str| {
            STANDARD
                .decode(b)
                .ok()
                .and_then(|b| <[u8; WRAPPED_LEN]>::try_from(b.as_slice()).ok())
        };
        let wrapped = fields
            .next()
            .and_then(|f| f.strip_prefix("dk="))
            .and_then(decode)
            .ok_or_else(bad)?;
        let footer = match fields.next() {
            None => None,
            // Only an SSE-C envelope carries its footer key.
            Some(f) if wrapping == Wrapping::Customer => {
                let (id, b) = f
                    .strip_prefix("fk=")
                    .and_then(|f| f.split_once(':'))
                    .ok_or_else(bad)?;
                Some((KeyId::new(id)?, decode(b).ok_or_else(bad)?))
            }
            Some(_) => return Err(bad()),
        };
        if fields.next().is_some() {
            return Err(bad());
        }
        Ok(Self {
            layout,
            wrapping,
            wrapped,
            footer,
        })
    }
}

/// The upload id Sluice gives a client for an encrypted multipart upload: the store's own id,
/// the upload's envelope, and a MAC under the data key binding the two. S3 keeps an upload's
/// metadata out of reach until it completes, so every UploadPart finds the data key here, in
/// the request, with no state anywhere else; a token moved to another upload fails its MAC.
///
/// Form: `<store id>~<envelope, base64url>~<MAC, 32 hex>`.
pub fn upload_token(store_id: &str, envelope: &Envelope, key: &crate::DataKey) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let text = envelope.to_meta();
    format!(
        "{store_id}~{}~{}",
        URL_SAFE_NO_PAD.encode(&text),
        upload_mac(store_id, &text, key)
    )
}

/// Splits an id made by [`upload_token`] into the store's id and the envelope; `None` if it is
/// not one (a plain store id).
pub fn split_upload_token(id: &str) -> Option<(&str, Envelope, &str)> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut parts = id.rsplitn(3, '~');
    let (mac, envelope, store_id) = (parts.next()?, parts.next()?, parts.next()?);
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(envelope).ok()?).ok()?;
    let envelope = Envelope::from_meta(&text).ok()?;
    Some((store_id, envelope, mac))
}

/// Checks the MAC of a token split by [`split_upload_token`], once its data key is unwrapped.
pub fn check_upload_mac(
    store_id: &str,
    envelope: &Envelope,
    mac: &str,
    key: &crate::DataKey,
) -> Result<(), CryptoError> {
    let expected = upload_mac(store_id, &envelope.to_meta(), key);
    // Constant time: the MAC is a secret-derived value compared with an attacker's.
    let equal = expected.len() == mac.len()
        && expected
            .bytes()
            .zip(mac.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if equal {
        Ok(())
    } else {
        Err(CryptoError::Authentication)
    }
}

fn upload_mac(store_id: &str, envelope_text: &str, key: &crate::DataKey) -> String {
    let mac = crate::aead::derive(
        key.bytes(),
        b"sluice/v1/upload/",
        format!("{store_id}\n{envelope_text}").as_bytes(),
    );
    hex::encode(&mac[..16])
}
