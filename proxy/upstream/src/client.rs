//! The pooled HTTP client of one upstream backend: keep-alive connections over HTTP/1.1, or
//! HTTP/2 where a TLS upstream offers it by ALPN; rustls with the process's crypto provider
//! (the front door's), the system's roots plus the backend's own CA file.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::UpstreamConfig;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type RequestBody = UnsyncBoxBody<Bytes, BoxError>;
pub type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, RequestBody>;

/// Idle pooled connections kept per host.
const MAX_IDLE_PER_HOST: usize = 64;

pub fn build(config: &UpstreamConfig) -> Result<HttpClient, String> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(config.timeouts.connect));
    http.set_nodelay(true);
    http.set_keepalive(Some(Duration::from_secs(60)));
    let tls = tls_config(config)?;
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(config.timeouts.idle)
        .pool_max_idle_per_host(MAX_IDLE_PER_HOST)
        .build(https))
}

fn tls_config(config: &UpstreamConfig) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        // A system certificate rustls cannot parse is skipped, as browsers do.
        let _ = roots.add(cert);
    }
    if let Some(path) = &config.ca {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .and_then(|iter| iter.collect::<Result<_, _>>())
            .map_err(|e| format!("cannot read CA file {}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("{} holds no certificate", path.display()));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| format!("CA file {}: {e}", path.display()))?;
        }
    }
    if roots.is_empty() && config.endpoint.https {
        return Err("no trusted CA certificates: the system has none and no `ca` is given".into());
    }
    // The front door's provider, named rather than left to process defaults (a build linking
    // more than one has none); TLS 1.2 and 1.3 only, as at the front door. (The connector sets
    // ALPN: h2 and http/1.1.)
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(Arc::new(roots))
        .with_no_client_auth())
}
