//! Format v1 of encrypted object bodies, tested alone: sizes, ranges, every kind of damage,
//! keys and envelopes, and the golden vectors that must decrypt forever.

use md5::{Digest as _, Md5};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use sluice_crypto::aead::{AwsLc, RustCrypto, SegmentAead};
use sluice_crypto::{
    CryptoError, DataKey, Envelope, Footer, FooterKey, KeyId, Keyring, Layout, PartMap,
    StreamDecryptor, StreamEncryptor, StreamHeader, Wrapping, WrappingKey,
};

const FOOTER: usize = sluice_crypto::stream::FOOTER_LEN;

/// The smallest layout (4 KiB segments) keeps the tests fast while crossing many boundaries.
fn small() -> Layout {
    Layout::new(12).unwrap()
}

fn plaintext(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..len).map(|_| rng.random()).collect()
}

fn md5(data: &[u8]) -> [u8; 16] {
    Md5::digest(data).into()
}

/// Encrypts `plain` in pieces of random sizes.
fn encrypt<A: SegmentAead>(
    key: &DataKey,
    layout: Layout,
    part: u32,
    plain: &[u8],
    seed: u64,
) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut enc = StreamEncryptor::<A>::new(key, layout, part);
    let mut out = Vec::new();
    let mut rest = plain;
    while !rest.is_empty() {
        let n = rng.random_range(1..=rest.len().min(3 * layout.segment_size() as usize));
        enc.push(&rest[..n], &mut out);
        rest = &rest[n..];
    }
    enc.finish(md5(plain), &mut out);
    out
}

/// Decrypts a whole stream fed in pieces of random sizes.
fn decrypt_whole(
    key: &DataKey,
    layout: Layout,
    stored: &[u8],
    part: Option<u32>,
    seed: u64,
) -> Result<(Vec<u8>, Footer), CryptoError> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut dec = StreamDecryptor::<AwsLc>::whole(key, layout, stored.len() as u64, part)?;
    let mut out = Vec::new();
    let mut rest = stored;
    while !rest.is_empty() {
        let n = rng.random_range(1..=rest.len().min(10_000));
        dec.push(&rest[..n], &mut out)?;
        rest = &rest[n..];
    }
    let footer = dec.finish()?.expect("a whole read ends with the footer");
    Ok((out, footer))
}

/// Decrypts plaintext bytes `first..=last` the way a ranged read does: the header, then only
/// the stored span (which must be all that is read).
fn decrypt_range(
    key: &DataKey,
    stored: &[u8],
    plain_len: u64,
    first: u64,
    last: u64,
) -> Result<Vec<u8>, CryptoError> {
    let header = StreamHeader::parse(&stored[..32])?;
    let span = header.layout.span(plain_len, first, last);
    let mut dec = StreamDecryptor::<AwsLc>::span(key, &header, plain_len, &span);
    let mut out = Vec::new();
    dec.push(
        &stored[span.stored_first as usize..=span.stored_last as usize],
        &mut out,
    )?;
    assert_eq!(dec.finish()?, None);
    Ok(out)
}

#[test]
fn stored_sizes_invert_for_every_length_near_segment_boundaries() {
    for log2 in [12u8, 16, 20] {
        let layout = Layout::new(log2).unwrap();
        let s = layout.segment_size();
        let mut lengths: Vec<u64> = vec![0, 1, 2, 15, 16, 17];
        for k in 1..5 {
            lengths.extend([k * s - 1, k * s, k * s + 1]);
        }
        lengths.push(5 << 30);
        for p in lengths {
            let stored = layout.stored_len(p);
            assert_eq!(
                layout.plain_len(stored).unwrap(),
                p,
                "log2 {log2}, plain {p}"
            );
            assert_eq!(stored, p + 16 * layout.segments(p) + 104);
        }
        // Every stored length is either exactly one plaintext length's or refused.
        let mut seen = 0;
        for stored in 0..layout.stored_len(3 * s) + 1 {
            if let Ok(p) = layout.plain_len(stored) {
                assert_eq!(layout.stored_len(p), stored);
                seen += 1;
            }
        }
        assert_eq!(seen, 3 * s + 1, "each plaintext length 0..=3S once");
    }
}

#[test]
fn streams_round_trip_in_any_pieces_and_are_sized_as_the_layout_says() {
    let key = DataKey::generate();
    let layout = small();
    let s = layout.segment_size() as usize;
    for (i, len) in [0, 1, s - 1, s, s + 1, 3 * s, 3 * s + 7, 10 * s + 123]
        .into_iter()
        .enumerate()
    {
        let plain = plaintext(len, i as u64);
        let stored = encrypt::<AwsLc>(&key, layout, 0, &plain, 100 + i as u64);
        assert_eq!(
            stored.len() as u64,
            layout.stored_len(len as u64),
            "len {len}"
        );
        let (back, footer) = decrypt_whole(&key, layout, &stored, Some(0), i as u64).unwrap();
        assert_eq!(back, plain, "len {len}");
        assert_eq!(footer.plain_len, len as u64);
        assert_eq!(footer.md5, md5(&plain));
        // The footer alone, as a listing or HEAD reads it.
        let alone = Footer::open(&FooterKey::of(&key), &stored[stored.len() - FOOTER..]).unwrap();
        assert_eq!(alone, footer);
        assert!(alone.belongs_to(&StreamHeader::parse(&stored).unwrap()));
        if len >= 16 {
            let blocks: std::collections::HashSet<&[u8]> = plain.chunks_exact(16).collect();
            assert!(
                !stored.windows(16).any(|w| blocks.contains(w)),
                "no 16-byte block of plaintext appears in the stored bytes"
            );
        }
    }
}

#[test]
fn random_ranges_and_every_boundary_read_only_their_segments() {
    let key = DataKey::generate();
    let layout = small();
    let s = layout.segment_size();
    let len = 7 * s + 1234;
    let plain = plaintext(len as usize, 9);
    let stored = encrypt::<AwsLc>(&key, layout, 0, &plain, 10);
    let check = |first: u64, last: u64| {
        let got = decrypt_range(&key, &stored, len, first, last).unwrap();
        assert_eq!(
            got,
            &plain[first as usize..=last as usize],
            "range {first}-{last}"
        );
        let span = layout.span(len, first, last);
        let segments_read = (span.stored_last - span.stored_first + 1).div_ceil(s + 16);
        assert_eq!(
            segments_read,
            last / s - first / s + 1,
            "only the covering segments"
        );
    };
    let mut edges = vec![0, len - 1];
    for k in 1..=7 {
        edges.extend([k * s - 1, k * s, k * s + 1]);
    }
    for &a in &edges {
        for &b in &edges {
            if a <= b && b < len {
                check(a, b);
            }
        }
    }
    let mut rng = StdRng::seed_from_u64(11);
    for _ in 0..300 {
        let a = rng.random_range(0..len);
        let b = rng.random_range(a..len.min(a + 3 * s));
        check(a, b);
    }
}

#[test]
fn damage_anywhere_is_detected_and_never_returns_wrong_bytes() {
    let key = DataKey::generate();
    let layout = small();
    let s = layout.segment_size() as usize;
    let plain = plaintext(3 * s + 100, 1);
    let stored = encrypt::<AwsLc>(&key, layout, 0, &plain, 2);

    // One bit flipped at a sample of places in every region: header, each segment's text and
    // tag, the footer.
    let mut places = vec![0, 4, 5, 8, 12, 27, 31];
    for i in 0..4 {
        let at = 32 + i * (s + 16);
        places.extend([at, at + 1, at + 50, at + s / 2, at + s + 15]);
    }
    places.retain(|&at| at < stored.len() - FOOTER);
    // The last segment's tag, and the footer.
    places.extend([
        stored.len() - 69,
        stored.len() - FOOTER,
        stored.len() - 40,
        stored.len() - 1,
    ]);
    for at in places {
        let mut bad = stored.clone();
        bad[at] ^= 0x01;
        let result = decrypt_whole(&key, layout, &bad, Some(0), 3);
        assert!(result.is_err(), "a flipped bit at {at} went unnoticed");
    }

    // Cut short anywhere: an error, at the latest when the stream is finished.
    for cut in [
        1,
        31,
        32,
        33,
        32 + s + 16,
        32 + 3 * (s + 16),
        stored.len() - FOOTER,
        stored.len() - 1,
    ] {
        let mut dec =
            StreamDecryptor::<AwsLc>::whole(&key, layout, stored.len() as u64, Some(0)).unwrap();
        let mut out = Vec::new();
        let fed = dec.push(&stored[..cut], &mut out);
        assert!(
            fed.is_err() || matches!(dec.finish(), Err(CryptoError::Truncated)),
            "cut at {cut}"
        );
    }
    // A stream cut at a segment boundary and presented as complete (the stored length says
    // so): the new last segment was not sealed as last.
    let short = &stored[..32 + 2 * (s + 16)];
    let mut cut = short.to_vec();
    cut.extend_from_slice(&stored[stored.len() - FOOTER..]);
    assert!(decrypt_whole(&key, layout, &cut, Some(0), 4).is_err());

    // Two segments swapped.
    let mut swapped = stored.clone();
    let (a, b) = (32, 32 + (s + 16));
    let first: Vec<u8> = swapped[a..b].to_vec();
    swapped.copy_within(b..b + s + 16, a);
    swapped[b..b + s + 16].copy_from_slice(&first);
    assert!(matches!(
        decrypt_whole(&key, layout, &swapped, Some(0), 5),
        Err(CryptoError::Segment(0))
    ));

    // A segment from another stream of the same data key (a retried part) or another object.
    let other = encrypt::<AwsLc>(&key, layout, 0, &plain, 6);
    let mut mixed = stored.clone();
    mixed[32..32 + s + 16].copy_from_slice(&other[32..32 + s + 16]);
    assert!(matches!(
        decrypt_whole(&key, layout, &mixed, Some(0), 7),
        Err(CryptoError::Segment(0))
    ));
    let mut footer_swapped = stored.clone();
    let n = stored.len();
    footer_swapped[n - FOOTER..].copy_from_slice(&other[n - FOOTER..]);
    assert!(matches!(
        decrypt_whole(&key, layout, &footer_swapped, Some(0), 8),
        Err(CryptoError::Footer)
    ));

    // The wrong data key, bytes past the end, a header from another part.
    assert!(decrypt_whole(&DataKey::generate(), layout, &stored, Some(0), 9).is_err());
    let mut longer = stored.clone();
    longer.extend_from_slice(&[0; 16]);
    assert!(decrypt_whole(&key, layout, &longer, Some(0), 9).is_err());
    let part7 = encrypt::<AwsLc>(&key, layout, 7, &plain, 12);
    assert!(matches!(
        decrypt_whole(&key, layout, &part7, Some(3), 13),
        Err(CryptoError::WrongPart {
            expected: 3,
            found: 7
        })
    ));
    let (_, footer) = decrypt_whole(&key, layout, &part7, Some(7), 13).unwrap();
    assert_eq!(
        footer.part, 7,
        "a part's footer names it: parts are found walking footers"
    );

    // A ranged read of a damaged segment fails too.
    let mut bad = stored.clone();
    bad[32 + (s + 16) + 5] ^= 0x80;
    assert!(decrypt_range(&key, &bad, plain.len() as u64, s as u64 + 1, s as u64 + 10).is_err());
    assert!(
        decrypt_range(&key, &bad, plain.len() as u64, 0, 10).is_ok(),
        "other segments still read"
    );

    // Plaintext stored where a stream is expected.
    assert!(matches!(
        decrypt_whole(
            &key,
            layout,
            &plain[..layout.stored_len(10) as usize],
            Some(0),
            14
        ),
        Err(CryptoError::NotEncrypted)
    ));
}

#[test]
fn both_aeads_write_the_same_segments_and_read_each_other() {
    let key = DataKey::generate();
    let layout = small();
    let plain = plaintext(3 * layout.segment_size() as usize + 5, 21);
    let mut header_bytes = [0u8; 32];
    header_bytes[..6].copy_from_slice(b"SLCE\x01\x0c");
    header_bytes[12..28].copy_from_slice(&[7; 16]);
    let header = StreamHeader::parse(&header_bytes).unwrap();
    fn seal<A: SegmentAead>(key: &DataKey, header: StreamHeader, plain: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut e = StreamEncryptor::<A>::with_header(key, header);
        e.push(plain, &mut out);
        e.finish(md5(plain), &mut out);
        out
    }
    let a = seal::<AwsLc>(&key, header, &plain);
    let b = seal::<RustCrypto>(&key, header, &plain);
    let footer_at = a.len() - FOOTER;
    assert_eq!(
        a[..footer_at],
        b[..footer_at],
        "segments are deterministic given the header"
    );
    for stored in [&a, &b] {
        let mut dec =
            StreamDecryptor::<RustCrypto>::whole(&key, layout, stored.len() as u64, None).unwrap();
        let mut out = Vec::new();
        dec.push(stored, &mut out).unwrap();
        assert!(dec.finish().unwrap().is_some());
        assert_eq!(out, plain);
    }
}

#[test]
fn multipart_part_maps_locate_ranges_across_parts() {
    let layout = small();
    let s = layout.segment_size();
    let sizes = [5 * s + 3, 0, 1, 2 * s, 17];
    let parts: Vec<(u32, u64)> = sizes
        .iter()
        .enumerate()
        .map(|(i, &p)| (i as u32 * 2 + 1, layout.stored_len(p)))
        .collect();
    let map = PartMap::new(layout, &parts).unwrap();
    assert_eq!(map.plain_len(), sizes.iter().sum::<u64>());
    assert_eq!(map.stored_len(), parts.iter().map(|p| p.1).sum::<u64>());
    let total = map.plain_len();
    for first in [0, 5 * s + 2, 5 * s + 3, 5 * s + 4, total - 1] {
        for last in [first, (first + s).min(total - 1), total - 1] {
            let pieces: Vec<_> = map.covering(first, last).collect();
            let covered: u64 = pieces.iter().map(|(_, a, b)| b - a + 1).sum();
            assert_eq!(covered, last - first + 1, "{first}-{last}");
            assert!(pieces.iter().all(|(p, _, b)| *b < p.plain_len));
        }
    }
    assert!(
        PartMap::new(layout, &[(1, 5)]).is_err(),
        "a stored size no stream has"
    );
}

#[test]
fn keyring_wraps_under_the_current_key_and_unwraps_under_older_ones() {
    let k1 = KeyId::new("k1").unwrap();
    let k2 = KeyId::new("2026-12.b").unwrap();
    let w1 = WrappingKey::from_bytes([1; 32]);
    let w2 = WrappingKey::from_bytes([2; 32]);
    let old = Keyring::new(vec![(k1.clone(), w1.clone())], &k1).unwrap();
    let dk = DataKey::generate();
    let (wrapping, wrapped) = old.wrap(&dk);
    assert_eq!(wrapping, Wrapping::Keyring(k1.clone()));

    // Rotated: k2 is current; k1's envelopes still open.
    let rotated = Keyring::new(vec![(k1.clone(), w1), (k2.clone(), w2)], &k2).unwrap();
    assert_eq!(rotated.current(), &k2);
    let back = rotated.unwrap(&k1, &wrapped).unwrap();
    let (w, rewrapped) = rotated.wrap(&back);
    assert_eq!(w, Wrapping::Keyring(k2.clone()));
    let again = rotated.unwrap(&k2, &rewrapped).unwrap();
    // The same data key: a stream sealed before rotation opens with the rewrapped key.
    let layout = small();
    let stored = encrypt::<AwsLc>(&dk, layout, 0, b"rotation", 30);
    assert_eq!(
        decrypt_whole(&again, layout, &stored, Some(0), 31)
            .unwrap()
            .0,
        b"rotation"
    );

    // An envelope edited to name another key does not open under it.
    assert!(matches!(
        rotated.unwrap(&k2, &wrapped),
        Err(CryptoError::WrongKey(_))
    ));
    assert!(matches!(
        rotated.unwrap(&KeyId::new("gone").unwrap(), &wrapped),
        Err(CryptoError::UnknownKey(_))
    ));
    let mut tampered = wrapped;
    tampered[20] ^= 1;
    assert!(rotated.unwrap(&k1, &tampered).is_err());

    assert!(Keyring::new(vec![(k1.clone(), WrappingKey::from_bytes([1; 32]))], &k2).is_err());
    assert!(
        Keyring::new(
            vec![
                (k1.clone(), WrappingKey::from_bytes([1; 32])),
                (k1.clone(), WrappingKey::from_bytes([3; 32]))
            ],
            &k1
        )
        .is_err()
    );
    for bad in ["", "a b", "k/1", &"x".repeat(65)] {
        assert!(KeyId::new(bad).is_err(), "{bad:?}");
    }
    assert!(
        !format!("{rotated:?}{dk:?}").contains("[1, 1"),
        "keys are never printed"
    );
}

#[test]
fn customer_keys_wrap_and_refuse_the_wrong_key() {
    let dk = DataKey::generate();
    let wrapped = sluice_crypto::keyring::wrap_for_customer(&[9; 32], &dk);
    assert!(sluice_crypto::keyring::unwrap_for_customer(&[9; 32], &wrapped).is_ok());
    assert!(matches!(
        sluice_crypto::keyring::unwrap_for_customer(&[8; 32], &wrapped),
        Err(CryptoError::WrongKey(_))
    ));
}

#[test]
fn envelopes_round_trip_through_metadata_text_and_refuse_damage() {
    let envelope = Envelope {
        layout: Layout::default(),
        wrapping: Wrapping::Keyring(KeyId::new("k1").unwrap()),
        wrapped: [5; 60],
        footer: None,
    };
    let text = envelope.to_meta();
    assert!(text.starts_with("v1;seg=16;kek=k1;dk="), "{text}");
    assert_eq!(Envelope::from_meta(&text).unwrap(), envelope);
    let ssec = Envelope {
        wrapping: Wrapping::Customer,
        footer: Some((KeyId::new("k2").unwrap(), [6; 60])),
        ..envelope.clone()
    };
    let ssec_text = ssec.to_meta();
    assert!(
        ssec_text.starts_with("v1;seg=16;ssec;dk=BQUF"),
        "{ssec_text}"
    );
    assert!(ssec_text.contains(";fk=k2:BgYG"), "{ssec_text}");
    assert_eq!(Envelope::from_meta(&ssec_text).unwrap(), ssec);
    // A footer key only travels with an SSE-C envelope.
    assert!(
        Envelope::from_meta(&format!(
            "{text};fk=k2:{}",
            &ssec_text[ssec_text.len() - 80..]
        ))
        .is_err()
    );
    for bad in [
        "",
        "v1",
        "v1;seg=99;kek=k1;dk=AAAA",
        "v1;seg=16;kek=k1;dk=AAAA",
        &text.replace("kek=", "key="),
        &format!("{text};more"),
    ] {
        assert!(Envelope::from_meta(bad).is_err(), "{bad:?}");
    }
    assert!(matches!(
        Envelope::from_meta(&text.replace("v1", "v2")),
        Err(CryptoError::UnsupportedFormat(_))
    ));
}

/// Golden vectors: stored bytes written by format v1, kept forever. If this test fails, the
/// change breaks every object already stored: make a new format version instead.
#[test]
fn golden_vectors_of_format_v1_still_decrypt() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/encryption");
    let keyring = Keyring::new(
        vec![(
            KeyId::new("golden-k1").unwrap(),
            WrappingKey::from_bytes(*b"sluice golden key-encryption key"),
        )],
        &KeyId::new("golden-k1").unwrap(),
    )
    .unwrap();
    for name in ["v1-empty", "v1-one-segment", "v1-three-segments"] {
        let read = |ext: &str| std::fs::read_to_string(dir.join(format!("{name}.{ext}"))).unwrap();
        let envelope = Envelope::from_meta(read("envelope").trim()).unwrap();
        let stored = hex::decode(read("stored.hex").trim()).unwrap();
        let plain = hex::decode(read("plain.hex").trim()).unwrap();
        let Wrapping::Keyring(id) = &envelope.wrapping else {
            panic!("keyring-wrapped")
        };
        let dk = keyring.unwrap(id, &envelope.wrapped).unwrap();
        let (back, footer) = decrypt_whole(&dk, envelope.layout, &stored, Some(0), 1).unwrap();
        assert_eq!(back, plain, "{name}");
        assert_eq!(footer.md5, md5(&plain), "{name}");
    }
}

/// Writes the golden vectors, once, when a format version is made (never over existing ones):
/// `cargo test -p sluice-crypto --test format -- --ignored write_golden_vectors`
#[test]
#[ignore]
fn write_golden_vectors() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/encryption");
    std::fs::create_dir_all(&dir).unwrap();
    let id = KeyId::new("golden-k1").unwrap();
    let keyring = Keyring::new(
        vec![(
            id.clone(),
            WrappingKey::from_bytes(*b"sluice golden key-encryption key"),
        )],
        &id,
    )
    .unwrap();
    let layout = small();
    let s = layout.segment_size() as usize;
    for (name, len) in [
        ("v1-empty", 0),
        ("v1-one-segment", 100),
        ("v1-three-segments", 2 * s + 300),
    ] {
        let path = |ext: &str| dir.join(format!("{name}.{ext}"));
        assert!(
            !path("stored.hex").exists(),
            "golden vectors are never rewritten"
        );
        let dk = DataKey::generate();
        let (wrapping, wrapped) = keyring.wrap(&dk);
        let envelope = Envelope {
            layout,
            wrapping,
            wrapped,
            footer: None,
        };
        let plain = plaintext(len, len as u64);
        let stored = encrypt::<AwsLc>(&dk, layout, 0, &plain, 1);
        std::fs::write(path("envelope"), envelope.to_meta() + "\n").unwrap();
        std::fs::write(path("stored.hex"), hex::encode(&stored) + "\n").unwrap();
        std::fs::write(path("plain.hex"), hex::encode(&plain) + "\n").unwrap();
    }
}

#[test]
fn prefixes_read_from_the_start_and_streams_follow_each_other() {
    let key = DataKey::generate();
    let layout = small();
    let s = layout.segment_size() as usize;
    let a = plaintext(2 * s + 10, 40);
    let b = plaintext(s, 41);
    let mut joined = encrypt::<AwsLc>(&key, layout, 1, &a, 42);
    let first_len = joined.len();
    joined.extend(encrypt::<AwsLc>(&key, layout, 2, &b, 43));
    // Every prefix of part 1 reads exactly its stored bytes and gives exactly its plaintext.
    for take in [0, 1, s - 1, s, s + 1, 2 * s, 2 * s + 5, 2 * s + 10] {
        let stored = layout.prefix_stored_len(a.len() as u64, take as u64) as usize;
        let mut dec =
            StreamDecryptor::<AwsLc>::prefix(&key, layout, a.len() as u64, Some(1), take as u64);
        let mut out = Vec::new();
        let used = dec.push_some(&joined, &mut out).unwrap();
        assert_eq!(used, stored, "take {take}");
        assert!(dec.is_done());
        assert_eq!(out, &a[..take], "take {take}");
        // The rest is the next part, a whole stream of its own.
        if take == a.len() {
            assert_eq!(used, first_len);
            let mut next = StreamDecryptor::<AwsLc>::whole(
                &key,
                layout,
                (joined.len() - used) as u64,
                Some(2),
            )
            .unwrap();
            let mut out = Vec::new();
            next.push(&joined[used..], &mut out).unwrap();
            assert!(next.finish().unwrap().is_some());
            assert_eq!(out, b);
        }
    }
}

#[test]
fn upload_tokens_carry_the_envelope_and_bind_it_to_one_upload() {
    let id = KeyId::new("k1").unwrap();
    let keyring = Keyring::new(vec![(id.clone(), WrappingKey::from_bytes([3; 32]))], &id).unwrap();
    let dk = DataKey::generate();
    let (wrapping, wrapped) = keyring.wrap(&dk);
    let envelope = Envelope {
        layout: Layout::default(),
        wrapping,
        wrapped,
        footer: None,
    };
    let token = sluice_crypto::upload_token("store-upload-1", &envelope, &dk);
    assert!(
        token
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"~-_.".contains(&c)),
        "{token}"
    );
    let (store_id, back, mac) = sluice_crypto::split_upload_token(&token).unwrap();
    assert_eq!((store_id, &back), ("store-upload-1", &envelope));
    let Wrapping::Keyring(kid) = &back.wrapping else {
        panic!()
    };
    let key = keyring.unwrap(kid, &back.wrapped).unwrap();
    sluice_crypto::check_upload_mac(store_id, &back, mac, &key).unwrap();
    // The same envelope and MAC on another upload's id: refused.
    assert!(sluice_crypto::check_upload_mac("store-upload-2", &back, mac, &key).is_err());
    assert!(sluice_crypto::check_upload_mac(store_id, &back, &"0".repeat(32), &key).is_err());
    assert!(sluice_crypto::split_upload_token("plain-store-id").is_none());
}
