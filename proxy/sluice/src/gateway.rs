//! The running gateway's shared state, built once from a validated [`Config`]: the key table,
//! the opened backends, and each tenant's routes.

use std::collections::HashMap;
use std::sync::Arc;

use sluice_storage::{Backend, BucketName, LocalBackend};

use crate::config::{BackendConfig, Config, Limits, S3Settings, TenantConfig};
use crate::keys::KeyTable;

#[derive(Debug)]
pub struct Gateway {
    s3: S3Settings,
    limits: Limits,
    keys: Arc<KeyTable>,
    backends: HashMap<String, Arc<dyn Backend>>,
    tenants: HashMap<String, TenantConfig>,
    /// Local backends and how long their unfinished multipart uploads may live.
    maintenance: Vec<(LocalBackend, std::time::Duration)>,
}

impl Gateway {
    pub async fn new(config: Config) -> Result<Self, String> {
        let keys = Arc::new(KeyTable::from_config(&config).map_err(|e| e.to_string())?);
        let mut backends = HashMap::new();
        let mut maintenance = Vec::new();
        for (name, backend) in &config.backends {
            let opened: Arc<dyn Backend> = match backend {
                BackendConfig::Local {
                    path,
                    abandoned_uploads_after,
                } => {
                    let backend = LocalBackend::open(path).await.map_err(|e| {
                        format!("backends.{name}: cannot open {}: {e}", path.display())
                    })?;
                    maintenance.push((backend.clone(), *abandoned_uploads_after));
                    Arc::new(backend)
                }
            };
            backends.insert(name.clone(), opened);
        }
        // Static key secrets live in the key table only; no second copy stays here.
        let tenants = config
            .tenants
            .into_iter()
            .map(|mut t| {
                t.keys.clear();
                (t.id.as_str().to_owned(), t)
            })
            .collect();
        Ok(Self {
            s3: config.s3,
            limits: config.limits,
            keys,
            backends,
            tenants,
            maintenance,
        })
    }

    /// Background upkeep until the returned tasks are aborted: aborts multipart uploads left
    /// unfinished longer than their backend allows, checking every tenth of that age (at most
    /// hourly).
    pub fn spawn_maintenance(&self) -> Vec<tokio::task::JoinHandle<()>> {
        self.maintenance
            .iter()
            .map(|(backend, max_age)| {
                let (backend, max_age) = (backend.clone(), *max_age);
                let every = (max_age / 10).clamp(std::time::Duration::from_secs(1), std::time::Duration::from_secs(3600));
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval(every);
                    loop {
                        tick.tick().await;
                        match backend.abort_abandoned_uploads(max_age).await {
                            Ok(0) => {}
                            Ok(parts) => tracing::info!(parts, "aborted abandoned multipart uploads"),
                            Err(err) => tracing::error!(error = %err, "aborting abandoned multipart uploads failed"),
                        }
                    }
                })
            })
            .collect()
    }

    pub fn s3(&self) -> &S3Settings {
        &self.s3
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn keys(&self) -> &Arc<KeyTable> {
        &self.keys
    }

    pub fn tenant(&self, name: &str) -> Option<&TenantConfig> {
        self.tenants.get(name)
    }

    /// The backend a tenant's routes name for `bucket`, if any.
    pub fn backend_for(
        &self,
        tenant: &TenantConfig,
        bucket: &BucketName,
    ) -> Option<&Arc<dyn Backend>> {
        tenant
            .backend_for(bucket)
            .and_then(|name| self.backends.get(name))
    }

    /// For an unauthenticated CORS preflight: every tenant whose routes reach `bucket`, with
    /// the backend they route it to.
    pub fn routes_to(&self, bucket: &BucketName) -> Vec<(&sluice_storage::TenantId, &dyn Backend)> {
        self.tenants
            .values()
            .filter_map(|t| self.backend_for(t, bucket).map(|b| (&t.id, b.as_ref())))
            .collect()
    }

    /// Every distinct backend a tenant routes to (for ListBuckets).
    pub fn tenant_backends(&self, tenant: &TenantConfig) -> Vec<&Arc<dyn Backend>> {
        let mut names: Vec<&str> = tenant.routes.iter().map(|r| r.backend.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        names
            .into_iter()
            .filter_map(|n| self.backends.get(n))
            .collect()
    }
}
