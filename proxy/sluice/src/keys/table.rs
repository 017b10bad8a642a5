//! The running server's key table: every key from the config file and the key store, looked up
//! by access id on each request. The store file is polled; a change (key created, deactivated,
//! deleted) is live within one poll interval, without a restart. Derived SigV4 signing keys are
//! cached per (access id, date, region) and the cache is emptied on every reload, so a
//! deactivated key cannot keep working through the cache.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use sluice_crypto::MasterKey;
use sluice_sigv4::{CredentialScope, SecretKey, SigningKey};

use super::{KeyState, KeyStore, KeyStoreError};
use crate::config::{Config, MAX_KEYS_PER_TENANT};

/// Bound on cached signing keys: one per active key per day and region in practice.
const SIGNING_KEY_CACHE_ENTRIES: u64 = 10_000;

#[derive(Debug)]
pub struct KeyEntry {
    pub tenant: String,
    secret: SecretKey,
    active: bool,
}

#[derive(Debug)]
pub enum KeyLookup {
    Active(Arc<KeyEntry>),
    Inactive,
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

pub struct KeyTable {
    entries: ArcSwap<HashMap<String, Arc<KeyEntry>>>,
    static_entries: HashMap<String, Arc<KeyEntry>>,
    tenant_names: Vec<String>,
    store: Option<(KeyStore, MasterKey)>,
    stamp: Mutex<Option<FileStamp>>,
    signing_keys: moka::sync::Cache<(String, String, String), SigningKey>,
}

impl std::fmt::Debug for KeyTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyTable")
            .field("keys", &self.entries.load().len())
            .finish_non_exhaustive()
    }
}

impl KeyTable {
    pub fn from_config(config: &Config) -> Result<Self, KeyStoreError> {
        let static_entries = config
            .tenants
            .iter()
            .flat_map(|t| {
                t.keys.iter().map(|k| {
                    let entry = KeyEntry {
                        tenant: t.id.as_str().to_owned(),
                        secret: SecretKey::new(k.secret.expose().to_owned()),
                        active: k.active,
                    };
                    (k.access_id.clone(), Arc::new(entry))
                })
            })
            .collect();
        let table = Self {
            entries: ArcSwap::from_pointee(HashMap::new()),
            static_entries,
            tenant_names: config
                .tenants
                .iter()
                .map(|t| t.id.as_str().to_owned())
                .collect(),
            store: config
                .key_store
                .as_ref()
                .map(|ks| (KeyStore::new(&ks.path), ks.master_key.clone())),
            stamp: Mutex::new(None),
            signing_keys: moka::sync::Cache::builder()
                .max_capacity(SIGNING_KEY_CACHE_ENTRIES)
                .time_to_live(Duration::from_secs(24 * 3600))
                .build(),
        };
        table.reload()?;
        Ok(table)
    }

    pub fn lookup(&self, access_id: &str) -> KeyLookup {
        match self.entries.load().get(access_id) {
            Some(e) if e.active => KeyLookup::Active(Arc::clone(e)),
            Some(_) => KeyLookup::Inactive,
            None => KeyLookup::Unknown,
        }
    }

    /// The signing key for `scope`, derived once and cached.
    pub fn signing_key(
        &self,
        access_id: &str,
        entry: &KeyEntry,
        scope: &CredentialScope,
    ) -> SigningKey {
        let cache_key = (
            access_id.to_owned(),
            scope.date.clone(),
            scope.region.clone(),
        );
        self.signing_keys.get_with(cache_key, || {
            SigningKey::derive(&entry.secret, &scope.date, &scope.region, &scope.service)
        })
    }

    /// Rebuilds the table from the config keys and the current store file.
    pub fn reload(&self) -> Result<(), KeyStoreError> {
        let mut entries = self.static_entries.clone();
        if let Some((store, master)) = &self.store {
            // Taken before reading, so a change made while we read shows up as a new stamp next
            // poll; and recorded even if the load fails, so a refused file is reported once.
            *self.stamp.lock().expect("stamp lock") = stamp(store.path());
            let records = match store.load_secrets(master) {
                Ok(records) => records,
                Err(err) => {
                    // The rest of the previous table stays, but not the contested key: neither
                    // of its records can be believed, so it is refused until the file is fixed.
                    if let KeyStoreError::DuplicateId(_, id) = &err {
                        let mut kept = HashMap::clone(&self.entries.load());
                        if kept.remove(id).is_some() {
                            self.entries.store(Arc::new(kept));
                            self.signing_keys.invalidate_all();
                        }
                    }
                    return Err(err);
                }
            };
            let mut per_tenant: HashMap<String, usize> = HashMap::new();
            for e in entries.values() {
                *per_tenant.entry(e.tenant.clone()).or_default() += 1;
            }
            for (record, secret) in records {
                let secret = match secret {
                    Ok(secret) => secret,
                    Err(err) => {
                        // Left out of the table, so the key is refused.
                        tracing::error!(access_id = %record.access_id, error = %err, "key cannot be unsealed; refusing it");
                        continue;
                    }
                };
                let Some(tenant) = self.tenant_names.iter().find(|t| **t == record.tenant) else {
                    tracing::warn!(access_id = %record.access_id, tenant = %record.tenant, "key store names a tenant the config does not have; key ignored");
                    continue;
                };
                if self.static_entries.contains_key(&record.access_id) {
                    // Two definitions of one key: believing either could revive a key the other
                    // deactivated, so neither is used.
                    tracing::error!(access_id = %record.access_id, "access id is both in the config and in the key store; refusing the key");
                    entries.remove(&record.access_id);
                    continue;
                }
                let count = per_tenant.entry(tenant.clone()).or_default();
                if *count >= MAX_KEYS_PER_TENANT {
                    tracing::warn!(access_id = %record.access_id, "tenant already has the maximum number of keys; key ignored");
                    continue;
                }
                *count += 1;
                let entry = KeyEntry {
                    tenant: tenant.clone(),
                    secret,
                    active: record.state == KeyState::Active,
                };
                entries.insert(record.access_id, Arc::new(entry));
            }
        }
        self.entries.store(Arc::new(entries));
        self.signing_keys.invalidate_all();
        Ok(())
    }

    /// Reloads when the store file changed since the last load. A store that fails to load keeps
    /// the previous table (logged), rather than locking every client out.
    pub fn reload_if_changed(&self) {
        let Some((store, _)) = &self.store else {
            return;
        };
        let current = stamp(store.path());
        if *self.stamp.lock().expect("stamp lock") == current {
            return;
        }
        match self.reload() {
            Ok(()) => tracing::info!(path = %store.path().display(), "key store reloaded"),
            Err(err) => {
                tracing::error!(error = %err, "key store reload failed; keeping the previous keys, except an access id it names twice")
            }
        }
    }

    /// Polls the store file every `interval` until the returned task is aborted.
    pub fn spawn_watcher(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let table = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            loop {
                tick.tick().await;
                let t = Arc::clone(&table);
                let _ = tokio::task::spawn_blocking(move || t.reload_if_changed()).await;
            }
        })
    }
}

fn stamp(path: &std::path::Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode: meta.ino(),
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::keys::store::parse_records;

    /// A config with one static key `static_id` and a key store `keys.yaml` under `master`.
    fn config(dir: &Path, static_id: &str, master: &str) -> Config {
        let text = format!(
            r#"
listeners:
  - bind: 127.0.0.1:0
    danger_plain_http: true
key_store:
  path: keys.yaml
  master_key: "{master}"
backends:
  local: {{ type: local, path: data }}
tenants:
  - name: acme
    keys:
      - access_id: {static_id}
        secret: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    routes:
      - {{ bucket: "*", backend: local }}
"#
        );
        crate::config::parse(&text, &dir.join("sluice.yaml"), dir).unwrap()
    }

    fn is_active(table: &KeyTable, id: &str) -> bool {
        matches!(table.lookup(id), KeyLookup::Active(_))
    }

    /// A running server that finds a duplicate id in a changed store keeps its previous keys,
    /// except the contested one, which is refused whichever record was meant; a new server
    /// refuses to start on it, naming the id. (Here `a` gets a second, inactive record, as an
    /// operator revoking it by hand might write, and the same edit reactivates `b`.)
    #[test]
    fn duplicate_in_store_keeps_the_previous_table_but_not_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let master_text = MasterKey::generate_base64();
        let master = MasterKey::from_base64(&master_text).unwrap();
        let config = config(dir.path(), "STATICKEY0000001", &master_text);
        let store = KeyStore::new(dir.path().join("keys.yaml"));
        let a = store.create(&master, "acme", 1).unwrap().record.access_id;
        let b = store.create(&master, "acme", 1).unwrap().record.access_id;
        store.set_state("acme", &b, KeyState::Inactive).unwrap();
        let table = KeyTable::from_config(&config).unwrap();
        assert!(is_active(&table, &a) && !is_active(&table, &b));

        let mut records = parse_records(&std::fs::read_to_string(store.path()).unwrap()).unwrap();
        let mut twin = records[0].clone();
        twin.state = KeyState::Inactive;
        records[1].state = KeyState::Active;
        records.push(twin);
        let text = format!(
            "version: 1\nkeys:\n{}",
            serde_yaml::to_string(&records).unwrap()
        );
        std::fs::write(store.path(), text).unwrap();

        table.reload_if_changed();
        assert!(
            matches!(table.lookup(&a), KeyLookup::Unknown),
            "the contested key is refused"
        );
        assert!(
            !is_active(&table, &b),
            "the rest of the edit is not applied"
        );
        assert!(is_active(&table, "STATICKEY0000001"), "other keys are kept");
        let err = KeyTable::from_config(&config).unwrap_err().to_string();
        assert!(err.contains(&a), "{err}");
    }

    /// The same id in the config and in the store: neither definition is believed.
    #[test]
    fn id_in_config_and_store_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let master_text = MasterKey::generate_base64();
        let master = MasterKey::from_base64(&master_text).unwrap();
        let store = KeyStore::new(dir.path().join("keys.yaml"));
        let id = store.create(&master, "acme", 1).unwrap().record.access_id;
        let table = KeyTable::from_config(&config(dir.path(), &id, &master_text)).unwrap();
        assert!(matches!(table.lookup(&id), KeyLookup::Unknown));
    }
}
