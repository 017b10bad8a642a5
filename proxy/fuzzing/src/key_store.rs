//! Target `key_store_loader`: `sluice::keys::store::parse_records` on any text.

use std::collections::HashSet;

use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use serde::Serialize;
use sluice::config::validate_access_id;
use sluice::keys::store::{KeyRecord, parse_records};

/// The file layout, written back from parsed records.
#[derive(Serialize)]
struct StoreFile<'a> {
    version: u32,
    keys: &'a [KeyRecord],
}

fn render(records: &[KeyRecord]) -> String {
    serde_yaml::to_string(&StoreFile {
        version: 1,
        keys: records,
    })
    .expect("records serialise")
}

fn as_json(records: &[KeyRecord]) -> serde_json::Value {
    serde_json::to_value(records).expect("records serialise")
}

/// Input: a key store file's text.
///
/// Never panics. An accepted store has unique access ids, each valid; written back it parses
/// to the same records; and the same store with any one record repeated is refused as a whole
/// (two records for one id have no safe reading).
pub fn key_store_loader(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(records) = parse_records(text) else {
        return;
    };
    let mut ids = HashSet::new();
    for r in &records {
        validate_access_id(&r.access_id).expect("an accepted access id is valid");
        assert!(ids.insert(&r.access_id), "access id {} twice", r.access_id);
    }
    let again = parse_records(&render(&records)).expect("a written-back store parses");
    assert_eq!(
        as_json(&again),
        as_json(&records),
        "write-back changed the records"
    );
    if !records.is_empty() {
        let i = data.len() % records.len();
        let mut doubled = records.clone();
        doubled.insert(i + 1, records[i].clone());
        assert!(
            parse_records(&render(&doubled)).is_err(),
            "record {} repeated, yet the store was accepted",
            records[i].access_id
        );
    }
}

/// A generated key store and whether it is valid.
#[derive(Debug)]
pub struct GeneratedStore {
    pub text: String,
    pub valid: bool,
}

/// Key stores as `sluice keys` writes them, sometimes with one defect: another version, an
/// invalid or repeated access id, an unknown field or state.
pub fn gen_key_store(rng: &mut StdRng) -> GeneratedStore {
    let mut valid = true;
    let version = if rng.random_ratio(1, 15) {
        valid = false;
        2
    } else {
        1
    };
    let mut text = format!("version: {version}\nkeys:\n");
    let count = rng.random_range(0..5);
    let mut ids: Vec<String> = Vec::new();
    if count == 0 {
        text = format!("version: {version}\nkeys: []\n");
    }
    for _ in 0..count {
        let mut id: String = (0..rng.random_range(16..=24))
            .map(|_| char::from(*b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567".choose(rng).unwrap()))
            .collect();
        match rng.random_range(0..20) {
            0 if !ids.is_empty() => {
                id = ids.choose(rng).unwrap().clone();
                valid = false;
            }
            1 => {
                id = id.to_ascii_lowercase();
                valid = false;
            }
            2 => {
                id.truncate(15);
                valid = false;
            }
            _ => {}
        }
        let state = match rng.random_range(0..20) {
            0 => {
                valid = false;
                "suspended"
            }
            1..=6 => "inactive",
            _ => "active",
        };
        text += &format!(
            "- access_id: {id}\n  tenant: acme\n  state: {state}\n  created: 2024-01-01T00:00:00Z\n  updated: 2024-01-02T00:00:00Z\n  secret_sealed: djE6AAAA\n"
        );
        if rng.random_ratio(1, 20) {
            text += "  note: hello\n";
            valid = false;
        }
        ids.push(id);
    }
    GeneratedStore { text, valid }
}
