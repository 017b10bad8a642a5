//! The envelope: what an encrypted object carries in its (Sluice-only) metadata so that its
//! stored bytes can be decrypted with nothing but the keyring: the format version, the segment
//! size, who wraps the data key and the wrapped key itself.
//!
//! Text form, one header value: `v1;seg=16;kek=<key id>;dk=<base64>` for a keyring key, or
//! `v1;seg=16;ssec;dk=<base64>` for an SSE-C customer key. Rewrapping (rotation, a copy) changes
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
}

impl Envelope {
    pub fn to_meta(&self) -> String {
        let who = match &self.wrapping {
            Wrapping::Keyring(id) => format!("kek={id}"),
            Wrapping::Customer => "ssec".to_owned(),
        };
        format!(
            "v1;seg={};{who};dk={}",
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
        let wrapped = fields
            .next()
            .and_then(|f| f.strip_prefix("dk="))
            .and_then(|b| STANDARD.decode(b).ok())
            .and_then(|b| <[u8; WRAPPED_LEN]>::try_from(b.as_slice()).ok())
            .ok_or_else(bad)?;
        if fields.next().is_some() {
            return Err(bad());
        }
        Ok(Self {
            layout,
            wrapping,
            wrapped,
        })
    }
}
