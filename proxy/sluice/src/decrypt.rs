//! `sluice decrypt`: an encrypted object's stored bytes and envelope to its plaintext, with
//! nothing but the keyring: no index, no running server (docs/ENCRYPTION.md). The streams are
//! found walking the footers back from the file's end, then each is decrypted in order and
//! checked whole (every segment, its footer, its part number).

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use sluice_crypto::{
    DataKey, Envelope, FooterKey, FooterWalk, Keyring, StreamDecryptor, Wrapping, object_etag,
};

/// Writes the plaintext of the object stored in `input` to `output`; returns its ETag.
pub fn decrypt_file(
    keyring: &Keyring,
    envelope: &str,
    input: &Path,
    output: &Path,
) -> Result<String, String> {
    let envelope = Envelope::from_meta(envelope).map_err(|e| format!("envelope: {e}"))?;
    let key: DataKey = match &envelope.wrapping {
        Wrapping::Keyring(id) => keyring
            .unwrap(id, &envelope.wrapped)
            .map_err(|e| e.to_string())?,
        Wrapping::Customer => return Err("an SSE-C object: its key is the client's".into()),
    };
    let mut file = File::open(input).map_err(|e| format!("{}: {e}", input.display()))?;
    let size = file.metadata().map_err(|e| e.to_string())?.len();
    let fail = |e: sluice_crypto::CryptoError| format!("{}: {e}", input.display());

    let mut walk = FooterWalk::new(&FooterKey::of(&key), envelope.layout, size);
    while let Some((first, last)) = walk.next_read().map_err(fail)? {
        let mut footer = vec![0u8; (last - first + 1) as usize];
        file.seek(SeekFrom::Start(first))
            .map_err(|e| e.to_string())?;
        file.read_exact(&mut footer).map_err(|e| e.to_string())?;
        walk.feed(&footer).map_err(fail)?;
    }
    let streams = walk.finish().map_err(fail)?;

    file.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    let written = write_plaintext(&mut file, &key, &envelope, &streams, output).map_err(|e| {
        // Nothing half-checked is left behind.
        let _ = std::fs::remove_file(output);
        format!("{}: {e}", input.display())
    });
    written.map(|()| object_etag(&streams))
}

fn write_plaintext(
    file: &mut File,
    key: &DataKey,
    envelope: &Envelope,
    streams: &[(u32, u64, [u8; 16])],
    output: &Path,
) -> Result<(), String> {
    let fail = |e: sluice_crypto::CryptoError| e.to_string();
    let out = File::create(output).map_err(|e| format!("{}: {e}", output.display()))?;
    let mut out = BufWriter::new(out);
    let mut buf = vec![0u8; 1 << 20];
    let mut plain = Vec::with_capacity(buf.len());
    for &(part, stored_len, _) in streams {
        let mut decryptor = StreamDecryptor::<sluice_crypto::aead::AwsLc>::whole(
            key,
            envelope.layout,
            stored_len,
            Some(part),
        )
        .map_err(fail)?;
        let mut left = stored_len;
        while left > 0 {
            let n = (left as usize).min(buf.len());
            file.read_exact(&mut buf[..n]).map_err(|e| e.to_string())?;
            plain.clear();
            decryptor.push(&buf[..n], &mut plain).map_err(fail)?;
            out.write_all(&plain).map_err(|e| e.to_string())?;
            left -= n as u64;
        }
        decryptor.finish().map_err(fail)?;
    }
    out.flush().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_crypto::{KeyId, Layout, StreamEncryptor, WrappingKey};

    fn keyring() -> Keyring {
        let id = KeyId::new("k1").unwrap();
        Keyring::new(vec![(id.clone(), WrappingKey::from_bytes([6; 32]))], &id).unwrap()
    }

    /// Stored bytes of `parts` (each a stream), and the envelope.
    fn stored(keyring: &Keyring, parts: &[(u32, Vec<u8>)]) -> (Vec<u8>, String) {
        let key = DataKey::generate();
        let (wrapping, wrapped) = keyring.wrap(&key);
        let layout = Layout::new(12).unwrap();
        let mut out = Vec::new();
        for (number, data) in parts {
            let mut enc = StreamEncryptor::<sluice_crypto::aead::AwsLc>::new(&key, layout, *number);
            enc.push(data, &mut out);
            use md5::Digest as _;
            enc.finish(md5::Md5::digest(data).into(), &mut out);
        }
        let envelope = Envelope {
            layout,
            wrapping,
            wrapped,
            footer: None,
        };
        (out, envelope.to_meta())
    }

    #[test]
    fn decrypts_single_and_multipart_objects_offline_and_leaves_nothing_on_damage() {
        let dir = tempfile::tempdir().unwrap();
        let (input, output) = (dir.path().join("stored"), dir.path().join("plain"));
        let keyring = keyring();
        let one = vec![(0, (0..10_000u32).map(|i| i as u8).collect::<Vec<u8>>())];
        let (single, envelope) = stored(&keyring, &one);
        std::fs::write(&input, &single).unwrap();
        let etag = decrypt_file(&keyring, &envelope, &input, &output).unwrap();
        assert_eq!(std::fs::read(&output).unwrap(), one[0].1);
        use md5::Digest as _;
        assert_eq!(etag, hex::encode(md5::Md5::digest(&one[0].1)));

        let parts = vec![(1, vec![1u8; 9000]), (3, vec![]), (7, vec![7u8; 5000])];
        let (bytes, envelope) = stored(&keyring, &parts);
        std::fs::write(&input, &bytes).unwrap();
        let etag = decrypt_file(&keyring, &envelope, &input, &output).unwrap();
        assert_eq!(
            std::fs::read(&output).unwrap(),
            [&parts[0].1[..], &parts[2].1[..]].concat()
        );
        assert!(etag.ends_with("-3"), "{etag}");

        // A flipped bit in the middle: an error, and no output left.
        let mut bad = bytes.clone();
        bad[6000] ^= 4;
        std::fs::write(&input, &bad).unwrap();
        std::fs::remove_file(&output).unwrap();
        assert!(decrypt_file(&keyring, &envelope, &input, &output).is_err());
        assert!(!output.exists());
        // A single-part object's stream twice: its last footer says single-part (part 0), so
        // the bytes before it are refused, not read as another part.
        let (single, envelope) = stored(&keyring, &[one[0].clone(), one[0].clone()]);
        std::fs::write(&input, &single).unwrap();
        assert!(decrypt_file(&keyring, &envelope, &input, &output).is_err());
    }
}
