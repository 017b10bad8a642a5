//! What the plugin tests share: a request context to call plugins with.

use sluice_plugin_host::types::{
    AuthMethod, EncryptionPolicy, OpKind, Operation, PayloadProtection, RequestContext,
};

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
        method: method.into(),
        query: vec![],
        headers: vec![("host".into(), "localhost".into())],
        source_address: "127.0.0.1:40000".into(),
        tls: None,
        auth_method: AuthMethod::Header,
        payload: PayloadProtection::None,
        content_length: None,
        configured_route: None,
        encryption: EncryptionPolicy::Off,
    }
}
