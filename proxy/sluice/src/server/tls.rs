//! rustls server configuration: TLS 1.3 and 1.2 only, ALPN h2 and http/1.1; and the
//! self-signed development certificate that `sluice dev-cert` writes.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsFiles;

pub fn server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| format!("{}: cannot read certificates: {e}", files.cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate found", files.cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| format!("{}: cannot read private key: {e}", files.key.display()))?;
    // The provider is named, not left to process defaults: a build that links more than one
    // (feature unification in a workspace build) must still work.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("{}: {e}", files.cert.display()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Writes `cert.pem` and `key.pem` (mode 0600) for the given names into `dir`.
pub fn write_dev_cert(dir: &Path, names: Vec<String>) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let rcgen::CertifiedKey {
        cert,
        key_pair: signing_key,
    } = rcgen::generate_simple_self_signed(names)
        .map_err(|e| format!("cannot generate certificate: {e}"))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    std::fs::write(dir.join("cert.pem"), cert.pem())
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut key_file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(dir.join("key.pem"))
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    std::io::Write::write_all(&mut key_file, signing_key.serialize_pem().as_bytes())
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(())
}
