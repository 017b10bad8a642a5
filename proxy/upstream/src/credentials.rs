//! An upstream's credentials. Values given in the environment or inline are read once at start;
//! values in files are re-read when a file changes (checked at most once a second), so upstream
//! keys rotate without a restart. Secrets are zeroised on drop and never logged.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use sluice_sigv4::SecretKey;
use zeroize::Zeroizing;

pub enum SecretSource {
    /// From the environment or the config itself, read at start.
    Value(Zeroizing<String>),
    /// From a file, re-read when it changes.
    File(PathBuf),
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Value(_) => f.write_str("Value(<redacted>)"),
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
        }
    }
}

#[derive(Debug)]
pub struct CredentialSources {
    pub access_key_id: SecretSource,
    pub secret_access_key: SecretSource,
    pub session_token: Option<SecretSource>,
}

/// One set of credentials, as used to sign a request.
pub struct Credentials {
    pub access_key_id: String,
    pub secret: SecretKey,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// What a file looked like when it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

#[derive(Debug)]
struct Current {
    credentials: Arc<Credentials>,
    stamps: Vec<Option<Stamp>>,
    checked: Instant,
}

/// The credentials in force, re-read from their files when those change.
#[derive(Debug)]
pub struct CredentialCache {
    sources: CredentialSources,
    current: Mutex<Current>,
}

const RECHECK: Duration = Duration::from_secs(1);

impl CredentialCache {
    /// Reads the credentials once; errors name the source, never a secret.
    pub fn new(sources: CredentialSources) -> Result<Self, String> {
        let (credentials, stamps) = read(&sources)?;
        Ok(Self {
            sources,
            current: Mutex::new(Current {
                credentials: Arc::new(credentials),
                stamps,
                checked: Instant::now(),
            }),
        })
    }

    /// The credentials to sign with now. A file that changed is re-read; if the new contents
    /// cannot be read, the previous credentials stay in force and the failure is logged.
    pub fn get(&self) -> Arc<Credentials> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if current.checked.elapsed() >= RECHECK {
            current.checked = Instant::now();
            let stamps = self.stamps();
            if stamps != current.stamps {
                match read(&self.sources) {
                    Ok((credentials, stamps)) => {
                        current.credentials = Arc::new(credentials);
                        current.stamps = stamps;
                        tracing::info!("upstream credentials re-read after their file changed");
                    }
                    Err(err) => {
                        current.stamps = stamps;
                        tracing::error!(error = %err, "cannot re-read upstream credentials; keeping the previous ones");
                    }
                }
            }
        }
        Arc::clone(&current.credentials)
    }

    fn stamps(&self) -> Vec<Option<Stamp>> {
        files(&self.sources).map(stamp).collect()
    }
}

fn files(sources: &CredentialSources) -> impl Iterator<Item = &PathBuf> {
    [
        Some(&sources.access_key_id),
        Some(&sources.secret_access_key),
        sources.session_token.as_ref(),
    ]
    .into_iter()
    .flatten()
    .filter_map(|s| match s {
        SecretSource::File(path) => Some(path),
        SecretSource::Value(_) => None,
    })
}

fn stamp(path: &PathBuf) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode: meta.ino(),
    })
}

fn read(sources: &CredentialSources) -> Result<(Credentials, Vec<Option<Stamp>>), String> {
    // Stamps first: a change racing the read is seen again at the next check.
    let stamps = files(sources).map(stamp).collect();
    let value = |source: &SecretSource| -> Result<Zeroizing<String>, String> {
        match source {
            SecretSource::Value(v) => Ok(v.clone()),
            SecretSource::File(path) => std::fs::read_to_string(path)
                .map(|s| Zeroizing::new(s.trim().to_owned()))
                .map_err(|e| format!("cannot read {}: {e}", path.display())),
        }
    };
    let access_key_id = value(&sources.access_key_id)?.to_string();
    let secret = value(&sources.secret_access_key)?;
    let session_token = sources
        .session_token
        .as_ref()
        .map(|s| value(s).map(|t| t.to_string()))
        .transpose()?;
    if access_key_id.is_empty() || secret.is_empty() {
        return Err("an upstream access key id or secret is empty".into());
    }
    Ok((
        Credentials {
            access_key_id,
            secret: SecretKey::new(secret.to_string()),
            session_token,
        },
        stamps,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let sources = CredentialSources {
            access_key_id: SecretSource::Value(Zeroizing::new("AKID".into())),
            secret_access_key: SecretSource::Value(Zeroizing::new("very-secret".into())),
            session_token: Some(SecretSource::Value(Zeroizing::new("token-secret".into()))),
        };
        let cache = CredentialCache::new(sources).unwrap();
        let printed = format!("{cache:?} {:?}", cache.get());
        assert!(
            !printed.contains("very-secret") && !printed.contains("token-secret"),
            "{printed}"
        );
    }

    #[test]
    fn file_credentials_rotate_when_the_file_changes() {
        let dir = std::env::temp_dir().join(format!("sluice-cred-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let secret_file = dir.join("sk");
        std::fs::write(&secret_file, "first-secret\n").unwrap();
        let cache = CredentialCache::new(CredentialSources {
            access_key_id: SecretSource::Value(Zeroizing::new("AKID".into())),
            secret_access_key: SecretSource::File(secret_file.clone()),
            session_token: None,
        })
        .unwrap();
        let first = cache.get();
        assert_eq!(first.access_key_id, "AKID");
        // A different length guarantees a different stamp whatever the clock's resolution.
        std::fs::write(&secret_file, "the-second-secret\n").unwrap();
        cache.current.lock().unwrap().checked -= RECHECK;
        let second = cache.get();
        assert!(
            !Arc::ptr_eq(&first, &second),
            "credentials were not re-read"
        );
        // An unreadable file keeps the previous credentials.
        std::fs::remove_file(&secret_file).unwrap();
        cache.current.lock().unwrap().checked -= RECHECK;
        assert!(Arc::ptr_eq(&second, &cache.get()));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
