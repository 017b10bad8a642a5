//! Secret references in config: `env:NAME`, `file:PATH`, or the value inline (development only).
//! Resolved once at load; the resolved value is never logged or echoed in errors.

use std::path::Path;

use zeroize::Zeroizing;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    Env(String),
    File(String),
    Inline,
}

impl SecretRef {
    pub fn classify(text: &str) -> Self {
        if let Some(name) = text.strip_prefix("env:") {
            Self::Env(name.to_owned())
        } else if let Some(path) = text.strip_prefix("file:") {
            Self::File(path.to_owned())
        } else {
            Self::Inline
        }
    }
}

/// Resolves a secret reference; relative `file:` paths are relative to `base_dir` (the config
/// file's directory). Errors name the reference, never the secret.
pub fn resolve(text: &str, base_dir: &Path) -> Result<Zeroizing<String>, String> {
    match SecretRef::classify(text) {
        SecretRef::Env(name) => std::env::var(&name)
            .map(Zeroizing::new)
            .map_err(|_| format!("environment variable {name} is not set")),
        SecretRef::File(path) => {
            let path = base_dir.join(path);
            std::fs::read_to_string(&path)
                .map(|s| Zeroizing::new(s.trim_end_matches(['\n', '\r']).to_owned()))
                .map_err(|e| format!("cannot read {}: {e}", path.display()))
        }
        SecretRef::Inline => Ok(Zeroizing::new(text.to_owned())),
    }
}
