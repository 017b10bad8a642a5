//! `sluice plugin check FILE.wasm` and `sluice plugin test FILE.wasm --cases CASES.yaml`: a
//! plugin author's tools. `check` says whether a component fits the world and what it imports;
//! `test` runs it on sample requests, prints each decision and exits non-zero when one differs
//! from what the case expects.
//!
//! A cases file (`plugins/tenant-router/cases.yaml` is one):
//!
//! ```yaml
//! capabilities: [tables]            # default: whatever the component imports
//! settings: { protected-prefixes: "protected/" }
//! tables: { routes: { "acme/eu-*": eu } }
//! cases:
//!   - name: eu buckets go to the EU backend
//!     tenant: acme
//!     operation: GetObject          # S3's operation name
//!     bucket: eu-data
//!     key: report.csv
//!     headers: { x-approved-by: alice }
//!     tls: true                     # default false; presigned (false), content_length
//!     expect:
//!       route: eu                   # configured | <backend>[/<target bucket>] | error:<Code>
//!       authorize: allow            # allow | deny:<Code> | allow-if:tls | allow-if:encryption
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use std::sync::Arc;

use sluice_plugin_host::context::header_map;
use sluice_plugin_host::types::{
    AuthMethod, Authorization, EncryptionPolicy, OpKind, PayloadProtection, Requirements,
    RouteChoice, RouteDecision, S3Error, TlsVersion, Verdict,
};
use sluice_plugin_host::{
    Capabilities, Capability, Limits, LoadedPlugin, Operation, PluginEngine, RequestContext,
};

/// `sluice plugin check`: prints what the component imports and whether it fits the world.
pub fn check(file: &Path) -> Result<(), String> {
    let engine = engine()?;
    let wasm = read(file)?;
    let started = std::time::Instant::now();
    let imports = sluice_plugin_host::imports(&engine, &wasm)
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let compiled = started.elapsed();
    if !imports.unknown.is_empty() {
        return Err(format!(
            "{}: imports what Sluice does not offer plugins: {}",
            file.display(),
            imports.unknown.join(", ")
        ));
    }
    let grants = Capabilities {
        granted: imports.capabilities.clone(),
        ..Capabilities::default()
    };
    LoadedPlugin::load(&engine, "check", &wasm, grants, Limits::default())
        .map_err(|e| format!("{}: {e}", file.display()))?;
    println!("{}: fits sluice:plugin/plugin@0.1.0", file.display());
    let names: Vec<&str> = imports.capabilities.iter().map(|c| c.name()).collect();
    println!(
        "  capabilities it needs granted: {}",
        if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        }
    );
    if !imports.wasi.is_empty() {
        println!(
            "  WASI imports (linked to functions that trap): {}",
            imports.wasi.join(", ")
        );
    }
    println!(
        "  {} bytes, compiled (or loaded from the cache) in {} ms",
        wasm.len(),
        compiled.as_millis()
    );
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CasesFile {
    #[serde(default)]
    capabilities: Option<Vec<String>>,
    #[serde(default)]
    settings: BTreeMap<String, String>,
    #[serde(default)]
    tables: BTreeMap<String, BTreeMap<String, String>>,
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    tenant: String,
    operation: String,
    #[serde(default)]
    bucket: Option<String>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    tls: bool,
    #[serde(default)]
    presigned: bool,
    #[serde(default)]
    content_length: Option<u64>,
    #[serde(default)]
    expect: Expect,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    #[serde(default)]
    route: Option<String>,
    #[serde(default)]
    authorize: Option<String>,
}

/// `sluice plugin test`: every case's decisions, compared with what it expects.
pub fn test(file: &Path, cases: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(cases)
        .map_err(|e| format!("{}: cannot read: {e}", cases.display()))?;
    let spec: CasesFile =
        serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", cases.display()))?;
    let engine = engine()?;
    let wasm = read(file)?;
    let granted = match &spec.capabilities {
        Some(names) => names
            .iter()
            .map(|n| {
                Capability::from_name(n)
                    .ok_or_else(|| format!("{}: no capability {n:?}", cases.display()))
            })
            .collect::<Result<_, _>>()?,
        None => {
            sluice_plugin_host::imports(&engine, &wasm)
                .map_err(|e| format!("{}: {e}", file.display()))?
                .capabilities
        }
    };
    let grants = Capabilities {
        granted,
        settings: spec.settings.clone(),
        tables: spec.tables.clone(),
    };
    // A generous deadline: a test runs each case once, on a cold instance.
    let limits = Limits {
        deadline: std::time::Duration::from_millis(500),
        ..Limits::default()
    };
    let plugin = LoadedPlugin::load(&engine, "test", &wasm, grants, limits)
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let mut failures = 0;
    for case in &spec.cases {
        let ctx = context(case)
            .map(Arc::new)
            .map_err(|e| format!("{}: case {:?}: {e}", cases.display(), case.name))?;
        let route = plugin
            .route(&case.tenant, &ctx)
            .map(|r| describe_route(&r))
            .unwrap_or_else(|e| format!("failed ({e})"));
        let authorize = plugin
            .authorize(&case.tenant, &ctx)
            .map(|a| describe_verdict(&a))
            .unwrap_or_else(|e| format!("failed ({e})"));
        let mut wrong = Vec::new();
        if let Some(expected) = &case.expect.route
            && *expected != route
        {
            wrong.push(format!("route: expected {expected}"));
        }
        if let Some(expected) = &case.expect.authorize
            && *expected != authorize
        {
            wrong.push(format!("authorize: expected {expected}"));
        }
        let status = if wrong.is_empty() { "ok  " } else { "FAIL" };
        println!(
            "{status} {}: route={route} authorize={authorize}",
            case.name
        );
        for w in &wrong {
            println!("     {w}");
        }
        failures += usize::from(!wrong.is_empty());
    }
    println!(
        "{} cases, {} as expected, {failures} not",
        spec.cases.len(),
        spec.cases.len() - failures
    );
    if failures > 0 {
        return Err(format!("{failures} case(s) did not decide as expected"));
    }
    Ok(())
}

/// An engine caching compiled components where `sluice serve` does by default: a JavaScript or
/// Python component takes cranelift tens of seconds.
fn engine() -> Result<PluginEngine, String> {
    PluginEngine::new(crate::config::default_plugin_cache().as_deref()).map_err(|e| e.to_string())
}

fn read(file: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(file).map_err(|e| format!("{}: cannot read: {e}", file.display()))
}

fn describe_route(answer: &Result<RouteDecision, S3Error>) -> String {
    match answer {
        Ok(RouteDecision {
            choice: RouteChoice::Configured,
            ..
        }) => "configured".into(),
        Ok(RouteDecision {
            choice: RouteChoice::To(route),
            ..
        }) => {
            let mut out = route.backend.clone();
            if let Some(bucket) = &route.target_bucket {
                out = format!("{out}/{bucket}");
            }
            if let Some(prefix) = &route.key_prefix {
                out = format!("{out}+prefix:{prefix}");
            }
            out
        }
        Err(err) => format!("error:{}", err.code),
    }
}

fn describe_verdict(answer: &Authorization) -> String {
    match &answer.verdict {
        Verdict::Allow => "allow".into(),
        Verdict::Deny(err) => format!("deny:{}", err.code),
        Verdict::AllowIf(needs) => {
            let mut parts = Vec::new();
            if needs.contains(Requirements::TLS) {
                parts.push("tls");
            }
            if needs.contains(Requirements::ENCRYPTION) {
                parts.push("encryption");
            }
            format!("allow-if:{}", parts.join("+"))
        }
    }
}

/// Every operation a plugin may see, by S3's name, with its usual method.
const OPERATIONS: [(&str, OpKind, &str); 32] = [
    ("ListBuckets", OpKind::ListBuckets, "GET"),
    ("CreateBucket", OpKind::CreateBucket, "PUT"),
    ("HeadBucket", OpKind::HeadBucket, "HEAD"),
    ("DeleteBucket", OpKind::DeleteBucket, "DELETE"),
    ("GetBucketLocation", OpKind::GetBucketLocation, "GET"),
    ("ListObjects", OpKind::ListObjects, "GET"),
    ("ListObjectsV2", OpKind::ListObjectsV2, "GET"),
    ("ListObjectVersions", OpKind::ListObjectVersions, "GET"),
    ("ListMultipartUploads", OpKind::ListMultipartUploads, "GET"),
    ("DeleteObjects", OpKind::DeleteObjects, "POST"),
    ("GetBucketVersioning", OpKind::GetBucketVersioning, "GET"),
    ("GetBucketCors", OpKind::GetBucketCors, "GET"),
    ("PutBucketCors", OpKind::PutBucketCors, "PUT"),
    ("DeleteBucketCors", OpKind::DeleteBucketCors, "DELETE"),
    ("GetBucketEncryption", OpKind::GetBucketEncryption, "GET"),
    ("PutBucketEncryption", OpKind::PutBucketEncryption, "PUT"),
    (
        "DeleteBucketEncryption",
        OpKind::DeleteBucketEncryption,
        "DELETE",
    ),
    ("PutObject", OpKind::PutObject, "PUT"),
    ("CopyObject", OpKind::CopyObject, "PUT"),
    ("GetObject", OpKind::GetObject, "GET"),
    ("HeadObject", OpKind::HeadObject, "HEAD"),
    ("DeleteObject", OpKind::DeleteObject, "DELETE"),
    (
        "CreateMultipartUpload",
        OpKind::CreateMultipartUpload,
        "POST",
    ),
    ("UploadPart", OpKind::UploadPart, "PUT"),
    ("UploadPartCopy", OpKind::UploadPartCopy, "PUT"),
    (
        "CompleteMultipartUpload",
        OpKind::CompleteMultipartUpload,
        "POST",
    ),
    (
        "AbortMultipartUpload",
        OpKind::AbortMultipartUpload,
        "DELETE",
    ),
    ("ListParts", OpKind::ListParts, "GET"),
    ("GetObjectTagging", OpKind::GetObjectTagging, "GET"),
    ("PutObjectTagging", OpKind::PutObjectTagging, "PUT"),
    ("DeleteObjectTagging", OpKind::DeleteObjectTagging, "DELETE"),
    ("Unmodelled", OpKind::Other, "GET"),
];

fn context(case: &Case) -> Result<RequestContext, String> {
    let (name, kind, method) = OPERATIONS
        .iter()
        .find(|(name, ..)| *name == case.operation)
        .ok_or_else(|| format!("no operation named {:?}", case.operation))?;
    let headers = header_map(
        case.headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain([("host", "localhost")]),
    )?;
    Ok(RequestContext {
        tenant: case.tenant.clone(),
        access_key_id: "SLUICEPLUGINTEST".into(),
        operation: Operation {
            kind: *kind,
            name: (*name).to_owned(),
            bucket: case.bucket.clone(),
            key: case.key.clone(),
            part_number: None,
            upload_id: None,
            range: None,
            copy_source: None,
        },
        method: case
            .method
            .as_deref()
            .unwrap_or(method)
            .parse()
            .map_err(|_| format!("{:?} is not an HTTP method", case.method))?,
        query: Vec::new(),
        headers,
        source_address: ([127, 0, 0, 1], 40000).into(),
        tls: case.tls.then_some(TlsVersion::Tls13),
        auth_method: if case.presigned {
            AuthMethod::PresignedUrl
        } else {
            AuthMethod::Header
        },
        payload: if case.content_length.is_some() {
            PayloadProtection::Signed
        } else {
            PayloadProtection::None
        },
        content_length: case.content_length,
        configured_route: None,
        encryption: EncryptionPolicy::Off,
    })
}
