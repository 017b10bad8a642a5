//! What the plugin tests and benchmarks share: a request context to call plugins with, and
//! the built example plugins.

use std::path::PathBuf;

use sluice_plugin_host::context::header_map;
use sluice_plugin_host::types::{AuthMethod, EncryptionPolicy, OpKind, PayloadProtection};
use sluice_plugin_host::{Capabilities, Capability, Operation, RequestContext};

/// A header-signed request of `tenant` for `bucket`/`key`, over plain HTTP, without a body.
pub fn context(tenant: &str, kind: OpKind, bucket: &str, key: &str) -> RequestContext {
    let (name, method) = match kind {
        OpKind::GetObject => ("GetObject", "GET"),
        OpKind::DeleteObject => ("DeleteObject", "DELETE"),
        other => panic!("no test context for {other:?}"),
    };
    RequestContext {
        tenant: tenant.into(),
        access_key_id: "SLUICEEXAMPLE0000".into(),
        operation: Operation {
            kind,
            name: name.into(),
            bucket: Some(bucket.into()),
            key: Some(key.into()),
            part_number: None,
            upload_id: None,
            range: None,
            copy_source: None,
        },
        method: method.parse().unwrap(),
        query: vec![],
        headers: header_map([("host", "localhost")]).unwrap(),
        source_address: ([127, 0, 0, 1], 40000).into(),
        tls: None,
        auth_method: AuthMethod::Header,
        payload: PayloadProtection::None,
        content_length: None,
        configured_route: None,
        encryption: EncryptionPolicy::Off,
    }
}

/// Runs `plugins/<script>` (`build.sh` or `build-second-language.sh`), which builds what is
/// missing or stale and prints the directory holding the components.
#[allow(dead_code)] // not every test binary builds plugins
pub fn build(script: &str) -> PathBuf {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../plugins/");
    let out = std::process::Command::new("bash")
        .arg(format!("{path}{script}"))
        .output()
        .unwrap_or_else(|e| panic!("running plugins/{script}: {e}"));
    assert!(
        out.status.success(),
        "plugins/{script} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// The directory holding `component`: `SLUICE_PLUGINS_DIR` if it has it, else what `script`
/// builds.
#[allow(dead_code)]
pub fn built(component: &str, script: &str) -> PathBuf {
    match std::env::var_os("SLUICE_PLUGINS_DIR").map(PathBuf::from) {
        Some(dir) if dir.join(component).is_file() => dir,
        _ => build(script),
    }
}

/// tenant-router's grant: `tables`, with its table `routes` holding `entries`.
#[allow(dead_code)]
pub fn router_grants(entries: &[(&str, &str)]) -> Capabilities {
    let routes = entries
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Capabilities {
        granted: vec![Capability::Tables],
        tables: [("routes".to_owned(), routes)].into_iter().collect(),
        ..Capabilities::default()
    }
}
