//! The config file exactly as written: serde structs with `deny_unknown_fields` and defaults.
//! Nothing here is trusted; `validate` turns it into typed values.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::{ByteSize, ConfigDuration};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub listeners: Vec<RawListener>,
    #[serde(default)]
    pub s3: RawS3,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub key_store: Option<RawKeyStore>,
    #[serde(default)]
    pub encryption: Option<RawEncryption>,
    #[serde(default)]
    pub backends: BTreeMap<String, RawBackend>,
    #[serde(default)]
    pub tenants: Vec<RawTenant>,
    #[serde(default)]
    pub plugins: Option<RawPlugins>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListener {
    pub bind: String,
    #[serde(default)]
    pub tls: Option<RawTls>,
    #[serde(default)]
    pub danger_plain_http: bool,
    #[serde(default)]
    pub danger_accept_unsigned_payload: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub cert: String,
    pub key: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawS3 {
    #[serde(default = "default_region")]
    pub region: String,
    #[serde(default)]
    pub base_domains: Vec<String>,
}

impl Default for RawS3 {
    fn default() -> Self {
        Self {
            region: default_region(),
            base_domains: Vec::new(),
        }
    }
}

fn default_region() -> String {
    "us-east-1".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawLimits {
    pub max_header_bytes: ByteSize,
    pub header_read_timeout: ConfigDuration,
    pub idle_timeout: ConfigDuration,
    pub max_connections: usize,
    pub shutdown_grace: ConfigDuration,
    pub body_read_timeout: ConfigDuration,
    pub body_min_bytes_per_sec: ByteSize,
}

impl Default for RawLimits {
    fn default() -> Self {
        Self {
            max_header_bytes: ByteSize(16 * 1024),
            header_read_timeout: ConfigDuration(Duration::from_secs(10)),
            idle_timeout: ConfigDuration(Duration::from_secs(60)),
            max_connections: 4096,
            shutdown_grace: ConfigDuration(Duration::from_secs(30)),
            // S3 answers RequestTimeout after about 20 s without a body byte.
            body_read_timeout: ConfigDuration(Duration::from_secs(20)),
            body_min_bytes_per_sec: ByteSize(1024),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKeyStore {
    pub path: String,
    pub master_key: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, tag = "type", rename_all = "snake_case")]
pub(super) enum RawBackend {
    Local {
        path: String,
        #[serde(default = "default_abandoned_uploads_after")]
        abandoned_uploads_after: ConfigDuration,
    },
    S3(RawUpstream),
}

/// `type: s3`: an upstream S3 store.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstream {
    #[serde(default = "default_profile")]
    pub profile: String,
    pub endpoint: String,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub addressing: Option<RawAddressing>,
    pub access_key_id: String,
    pub secret_access_key: String,
    #[serde(default)]
    pub session_token: Option<String>,
    #[serde(default)]
    pub ca: Option<String>,
    #[serde(default)]
    pub danger_plain_http: bool,
    #[serde(default)]
    pub connect_timeout: Option<ConfigDuration>,
    #[serde(default)]
    pub first_byte_timeout: Option<ConfigDuration>,
    #[serde(default)]
    pub idle_timeout: Option<ConfigDuration>,
    #[serde(default)]
    pub payload_signing: RawPayloadSigning,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawPayloadSigning {
    #[default]
    Auto,
    Chunks,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawAddressing {
    Virtual,
    Path,
}

fn default_profile() -> String {
    "generic".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTenant {
    pub name: String,
    #[serde(default)]
    pub keys: Vec<RawKey>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    /// The tenant's plugin chain; absent: `plugins.default_chain`.
    #[serde(default)]
    pub plugins: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKey {
    pub access_id: String,
    pub secret: String,
    #[serde(default)]
    pub state: KeyState,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum KeyState {
    #[default]
    Active,
    Inactive,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub bucket: String,
    pub backend: String,
    #[serde(default)]
    pub target_bucket: Option<String>,
    #[serde(default)]
    pub key_prefix: Option<String>,
    #[serde(default)]
    pub passthrough: bool,
    #[serde(default)]
    pub encryption: RawPolicy,
}

/// Encryption at rest: the keys that wrap objects' data keys, and the one new objects use.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEncryption {
    pub current: String,
    pub keys: Vec<RawWrappingKey>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWrappingKey {
    pub id: String,
    /// 32 bytes in base64: `env:NAME`, `file:PATH`, or inline (development only).
    pub key: String,
}

/// A route's encryption policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawPolicy {
    #[default]
    Off,
    On,
    Required,
}

/// S3 lifecycle rules commonly abort incomplete uploads after 7 days.
fn default_abandoned_uploads_after() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(7 * 86_400))
}

/// `plugins:`: WebAssembly plugins, the chain every tenant runs by default, and where compiled
/// components are cached.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPlugins {
    #[serde(default)]
    pub cache_dir: Option<String>,
    #[serde(default)]
    pub default_chain: Vec<String>,
    #[serde(default)]
    pub modules: BTreeMap<String, RawPlugin>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPlugin {
    pub component: String,
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Scalars (strings, numbers, booleans), given to the plugin as strings.
    #[serde(default)]
    pub settings: BTreeMap<String, serde_yaml::Value>,
    #[serde(default)]
    pub tables: BTreeMap<String, BTreeMap<String, serde_yaml::Value>>,
    #[serde(default)]
    pub deadline: Option<ConfigDuration>,
    #[serde(default)]
    pub memory: Option<ByteSize>,
    #[serde(default)]
    pub isolation: RawIsolation,
    #[serde(default)]
    pub max_calls: Option<u32>,
    #[serde(default)]
    pub warm_instances: Option<usize>,
    #[serde(default)]
    pub on_failure: RawOnFailure,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) enum RawIsolation {
    #[default]
    Warm,
    PerRequest,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawOnFailure {
    #[default]
    Deny,
    Allow,
}
