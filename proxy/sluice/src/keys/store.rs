//! The key store file: YAML, one record per key, each secret sealed with AES-256-GCM under the
//! master key and bound to its access id. Writes take an exclusive lock on a sibling lock file,
//! go to a temporary file, are fsynced and renamed, so a reader never sees a half-written store
//! and two concurrent `sluice keys` commands cannot lose each other's changes.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sluice_crypto::{MasterKey, open, seal};
use sluice_sigv4::SecretKey;
use zeroize::Zeroizing;

use crate::config::{MAX_KEYS_PER_TENANT, validate_access_id};

/// DO NOT CHANGE: key store files on disk carry this version.
const STORE_VERSION: u32 = 1;
const ACCESS_ID_PREFIX: &str = "SLK";
const ACCESS_ID_LEN: usize = 24;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyState {
    Active,
    Inactive,
}

impl std::fmt::Display for KeyState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Active => "active",
            Self::Inactive => "inactive",
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRecord {
    pub access_id: String,
    pub tenant: String,
    pub state: KeyState,
    pub created: String,
    pub updated: String,
    /// `sluice_crypto::seal(master, secret, aad = access_id)`.
    secret_sealed: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreFile {
    version: u32,
    #[serde(default)]
    keys: Vec<KeyRecord>,
}

/// A record and its secret, or why the secret could not be unsealed.
pub type Unsealed = (KeyRecord, Result<SecretKey, KeyStoreError>);

/// A key just created: the only time its secret is available in plaintext.
#[derive(Debug)]
pub struct NewKey {
    pub record: KeyRecord,
    pub secret: SecretKey,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("{0}: not a valid key store: {1}")]
    Format(PathBuf, String),
    #[error("{0}: not a valid key store: access id {1} appears more than once")]
    DuplicateId(PathBuf, String),
    #[error("no key with access id {0}")]
    NotFound(String),
    #[error(
        "tenant {tenant} already has {MAX_KEYS_PER_TENANT} keys (the maximum); delete one first"
    )]
    TooManyKeys { tenant: String },
    #[error("key {0} is active; deactivate it before deleting it")]
    DeleteActive(String),
    #[error("key {0} cannot be unsealed with this master key")]
    Unseal(String),
}

#[derive(Debug)]
pub struct KeyStore {
    path: PathBuf,
}

impl KeyStore {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// All records (secrets still sealed). A missing file is an empty store.
    pub fn list(&self) -> Result<Vec<KeyRecord>, KeyStoreError> {
        Ok(self.read()?.keys)
    }

    /// Records with their secrets unsealed, for the server's key table.
    /// Records with their secrets unsealed, each on its own: one record that cannot be unsealed
    /// must not stop every other key's change (a deactivation above all) from taking effect.
    pub fn load_secrets(&self, master: &MasterKey) -> Result<Vec<Unsealed>, KeyStoreError> {
        Ok(self
            .read()?
            .keys
            .into_iter()
            .map(|record| {
                let secret = unseal(master, &record);
                (record, secret)
            })
            .collect())
    }

    /// Creates a key for `tenant`. `existing_for_tenant` counts keys the tenant already has
    /// elsewhere (the config file), so the limit of ten covers both.
    pub fn create(
        &self,
        master: &MasterKey,
        tenant: &str,
        existing_for_tenant: usize,
    ) -> Result<NewKey, KeyStoreError> {
        self.update(|file| {
            let owned = file.keys.iter().filter(|k| k.tenant == tenant).count();
            if owned + existing_for_tenant >= MAX_KEYS_PER_TENANT {
                return Err(KeyStoreError::TooManyKeys {
                    tenant: tenant.to_owned(),
                });
            }
            let access_id = loop {
                let id = generate_access_id();
                if !file.keys.iter().any(|k| k.access_id == id) {
                    break id;
                }
            };
            let secret = generate_secret();
            let now = now_rfc3339();
            let record = KeyRecord {
                secret_sealed: seal(master, secret.as_bytes(), access_id.as_bytes()),
                access_id,
                tenant: tenant.to_owned(),
                state: KeyState::Active,
                created: now.clone(),
                updated: now,
            };
            file.keys.push(record.clone());
            Ok(NewKey {
                record,
                secret: SecretKey::new(secret.to_string()),
            })
        })
    }

    pub fn set_state(
        &self,
        tenant: &str,
        access_id: &str,
        state: KeyState,
    ) -> Result<KeyRecord, KeyStoreError> {
        self.update(|file| {
            let record = find(file, tenant, access_id)?;
            record.state = state;
            record.updated = now_rfc3339();
            Ok(record.clone())
        })
    }

    /// Deletes an inactive key (an active key must be deactivated first, as in Cloud Storage).
    pub fn delete(&self, tenant: &str, access_id: &str) -> Result<(), KeyStoreError> {
        self.update(|file| {
            if find(file, tenant, access_id)?.state == KeyState::Active {
                return Err(KeyStoreError::DeleteActive(access_id.to_owned()));
            }
            file.keys.retain(|k| k.access_id != access_id);
            Ok(())
        })
    }

    fn read(&self) -> Result<StoreFile, KeyStoreError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(StoreFile {
                    version: STORE_VERSION,
                    keys: Vec::new(),
                });
            }
            Err(e) => return Err(KeyStoreError::Io(self.path.clone(), e)),
        };
        parse_store(&text).map_err(|refused| match refused {
            Refused::Invalid(why) => KeyStoreError::Format(self.path.clone(), why),
            Refused::Duplicate(id) => KeyStoreError::DuplicateId(self.path.clone(), id),
        })
    }

    /// Read-modify-write under an exclusive lock; the new file replaces the old atomically.
    fn update<T>(
        &self,
        change: impl FnOnce(&mut StoreFile) -> Result<T, KeyStoreError>,
    ) -> Result<T, KeyStoreError> {
        let io = |e| KeyStoreError::Io(self.path.clone(), e);
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(self.sibling("lock"))
            .map_err(io)?;
        lock.lock().map_err(io)?;
        let mut file = self.read()?;
        let out = change(&mut file)?;
        let text = serde_yaml::to_string(&file).expect("key store serialises");
        let tmp = self.sibling("tmp");
        // Owner-only from the start: the file holds sealed secrets and key states.
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        // An existing temp file keeps its old mode through open; set it explicitly.
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io)?;
        f.write_all(text.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        }
        Ok(out)
    }

    fn sibling(&self, ext: &str) -> PathBuf {
        let mut name = self.path.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".{ext}"));
        self.path.with_file_name(name)
    }
}

/// Why a key store file's text is refused.
#[derive(Debug)]
enum Refused {
    Invalid(String),
    /// This access id has two records.
    Duplicate(String),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Invalid(why) => f.write_str(why),
            Self::Duplicate(id) => write!(
                f,
                "access id {id} appears more than once; the store is refused as a whole"
            ),
        }
    }
}

/// Parses a key store file's text. The whole file is refused if any record is invalid or an
/// access id appears twice: with two records for one id, whichever one a reader believed, the
/// other (perhaps the `inactive` one) would be ignored, so no reading of it is safe.
fn parse_store(text: &str) -> Result<StoreFile, Refused> {
    let invalid = |why: String| Refused::Invalid(why);
    let file: StoreFile = serde_yaml::from_str(text).map_err(|e| invalid(e.to_string()))?;
    if file.version != STORE_VERSION {
        return Err(invalid(format!("unsupported version {}", file.version)));
    }
    let mut seen = std::collections::HashSet::new();
    for key in &file.keys {
        validate_access_id(&key.access_id)
            .map_err(|e| invalid(format!("access id {}: {e}", key.access_id)))?;
        if !seen.insert(key.access_id.as_str()) {
            return Err(Refused::Duplicate(key.access_id.clone()));
        }
    }
    Ok(file)
}

/// The records of a key store file's text, secrets still sealed, or why the file is refused.
/// What the server and `sluice keys` read; exposed for the fuzz and property tests.
pub fn parse_records(text: &str) -> Result<Vec<KeyRecord>, String> {
    parse_store(text)
        .map(|file| file.keys)
        .map_err(|refused| refused.to_string())
}

fn find<'a>(
    file: &'a mut StoreFile,
    tenant: &str,
    access_id: &str,
) -> Result<&'a mut KeyRecord, KeyStoreError> {
    file.keys
        .iter_mut()
        .find(|k| k.access_id == access_id && k.tenant == tenant)
        .ok_or_else(|| KeyStoreError::NotFound(access_id.to_owned()))
}

fn unseal(master: &MasterKey, record: &KeyRecord) -> Result<SecretKey, KeyStoreError> {
    let plain = open(master, &record.secret_sealed, record.access_id.as_bytes())
        .map_err(|_| KeyStoreError::Unseal(record.access_id.clone()))?;
    let text = String::from_utf8(plain.to_vec())
        .map_err(|_| KeyStoreError::Unseal(record.access_id.clone()))?;
    Ok(SecretKey::new(text))
}

/// `SLK` + base32 letters and digits: valid in a Credential= field, easy to read aloud.
fn generate_access_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut random = [0u8; ACCESS_ID_LEN];
    rand::fill(&mut random);
    let tail: String = random[ACCESS_ID_PREFIX.len()..]
        .iter()
        .map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char)
        .collect();
    format!("{ACCESS_ID_PREFIX}{tail}")
}

/// 30 random bytes as 40 characters of base64, like a Cloud Storage HMAC secret.
fn generate_secret() -> Zeroizing<String> {
    let mut random = Zeroizing::new([0u8; 30]);
    rand::fill(&mut random[..]);
    Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(&random[..]))
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::validate_secret;

    fn master() -> MasterKey {
        MasterKey::from_base64(&MasterKey::generate_base64()).unwrap()
    }

    #[test]
    fn lifecycle_follows_cloud_storage_rules() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::new(dir.path().join("keys.yaml"));
        let m = master();
        let key = store.create(&m, "acme", 0).unwrap();
        validate_access_id(&key.record.access_id).unwrap();
        validate_secret(key.secret.expose()).unwrap();
        let text = std::fs::read_to_string(store.path()).unwrap();
        assert!(
            !text.contains(key.secret.expose()),
            "secret must never be stored in plaintext"
        );

        let loaded = store.load_secrets(&m).unwrap();
        assert_eq!(loaded[0].1.as_ref().unwrap().expose(), key.secret.expose());
        let wrong = store.load_secrets(&master()).unwrap();
        assert!(matches!(wrong[0].1, Err(KeyStoreError::Unseal(_))));

        let id = &key.record.access_id;
        assert!(matches!(
            store.delete("acme", id),
            Err(KeyStoreError::DeleteActive(_))
        ));
        assert!(matches!(
            store.set_state("other", id, KeyState::Inactive),
            Err(KeyStoreError::NotFound(_))
        ));
        store.set_state("acme", id, KeyState::Inactive).unwrap();
        assert_eq!(store.list().unwrap()[0].state, KeyState::Inactive);
        store.delete("acme", id).unwrap();
        assert!(store.list().unwrap().is_empty());
    }

    #[test]
    fn at_most_ten_keys_per_tenant_counting_config_keys() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::new(dir.path().join("keys.yaml"));
        let m = master();
        for _ in 0..8 {
            store.create(&m, "acme", 2).unwrap();
        }
        assert!(matches!(
            store.create(&m, "acme", 2),
            Err(KeyStoreError::TooManyKeys { .. })
        ));
        store.create(&m, "other", 0).unwrap();
    }

    /// A store naming one access id twice (here active, then inactive) has no safe reading: it
    /// is refused as a whole, with the id in the error, by every reader.
    #[test]
    fn duplicate_access_id_refuses_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::new(dir.path().join("keys.yaml"));
        let m = master();
        let key = store.create(&m, "acme", 0).unwrap();
        let id = key.record.access_id.clone();
        let text = std::fs::read_to_string(store.path()).unwrap();
        let mut file: StoreFile = serde_yaml::from_str(&text).unwrap();
        let mut twin = file.keys[0].clone();
        twin.state = KeyState::Inactive;
        file.keys.push(twin);
        std::fs::write(store.path(), serde_yaml::to_string(&file).unwrap()).unwrap();

        for err in [
            store.load_secrets(&m).unwrap_err(),
            store.list().unwrap_err(),
            store.create(&m, "acme", 0).unwrap_err(),
        ] {
            let text = err.to_string();
            assert!(matches!(err, KeyStoreError::DuplicateId(..)), "{text}");
            assert!(
                text.contains(&id) && text.contains("more than once"),
                "{text}"
            );
        }
    }

    #[test]
    fn store_files_are_owner_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::new(dir.path().join("keys.yaml"));
        // A stale temp file from a crash, world-readable, must not pass its mode on.
        std::fs::write(dir.path().join("keys.yaml.tmp"), "").unwrap();
        std::fs::set_permissions(
            dir.path().join("keys.yaml.tmp"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        store.create(&master(), "acme", 0).unwrap();
        for name in ["keys.yaml", "keys.yaml.lock"] {
            let mode = std::fs::metadata(dir.path().join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}: {mode:o}");
        }
    }
}
