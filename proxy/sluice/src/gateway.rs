//! The running gateway's shared state, built once from a validated [`Config`]: the key table,
//! the opened backends, each tenant's routes and plugin chain, and the stores that routes
//! chosen by plugins reach.

use std::collections::HashMap;
use std::sync::Arc;

use sluice_storage::{Backend, BucketName, Encrypted, LocalBackend, Policy, Renamed};
use sluice_upstream::UpstreamBackend;

use crate::config::{
    BackendConfig, BucketPattern, Config, Limits, Route, S3Settings, TenantConfig,
};
use crate::keys::KeyTable;
use crate::plugins::{Plugins, Slot};

#[derive(Debug)]
pub struct Gateway {
    s3: S3Settings,
    limits: Limits,
    keys: Arc<KeyTable>,
    tenants: HashMap<String, Tenant>,
    /// Local backends and how long their unfinished multipart uploads may live.
    maintenance: Vec<(LocalBackend, std::time::Duration)>,
    /// Every backend by name, for routes that plugins choose.
    backends: HashMap<String, Arc<dyn Backend>>,
    local_backends: std::collections::HashSet<String>,
    keyring: Option<Arc<sluice_crypto::Keyring>>,
    plugins: Option<Arc<Plugins>>,
    /// The stores of routes plugins chose, built once each.
    plugin_stores: moka::sync::Cache<PluginStoreKey, Arc<dyn Backend>>,
}

/// A store for a plugin's route: backend, (client bucket, target bucket), key prefix, policy.
type PluginStoreKey = (String, Option<(BucketName, BucketName)>, String, Policy);

/// A tenant and the store each of its routes reaches (in the order of its routes): the
/// backend itself, or a view of it that renames the bucket or prefixes keys.
#[derive(Debug)]
struct Tenant {
    config: TenantConfig,
    stores: Vec<Arc<dyn Backend>>,
    /// Each route's encryption layer, where it has one (the same store as in `stores`).
    layers: Vec<Option<Arc<Encrypted>>>,
    /// The tenant's plugin chain, in order.
    chain: Vec<Arc<Slot>>,
}

impl Gateway {
    pub async fn new(config: Config) -> Result<Self, String> {
        let keys = Arc::new(KeyTable::from_config(&config).map_err(|e| e.to_string())?);
        let mut backends = HashMap::new();
        let mut local_backends = std::collections::HashSet::new();
        let mut maintenance = Vec::new();
        for (name, backend) in config.backends {
            let opened: Arc<dyn Backend> = match backend {
                BackendConfig::Local {
                    path,
                    abandoned_uploads_after,
                } => {
                    let backend = LocalBackend::open(&path).await.map_err(|e| {
                        format!("backends.{name}: cannot open {}: {e}", path.display())
                    })?;
                    maintenance.push((backend.clone(), abandoned_uploads_after));
                    local_backends.insert(name.clone());
                    Arc::new(backend)
                }
                BackendConfig::S3(upstream) => Arc::new(
                    UpstreamBackend::new(*upstream).map_err(|e| format!("backends.{name}: {e}"))?,
                ),
            };
            backends.insert(name, opened);
        }
        let plugins = if config.plugins.modules.is_empty() {
            None
        } else {
            let plugins_config = config.plugins.clone();
            // Compiling a component takes cranelift from milliseconds to tens of seconds.
            let loaded = tokio::task::spawn_blocking(move || Plugins::load(&plugins_config))
                .await
                .map_err(|e| format!("plugins: loading panicked: {e}"))??;
            Some(Arc::new(loaded))
        };
        let tenants = config
            .tenants
            .into_iter()
            .map(|mut t| {
                // Static key secrets live in the key table only; no second copy stays here.
                t.keys.clear();
                let (stores, layers) = t
                    .routes
                    .iter()
                    .map(|route| {
                        let mut store = Arc::clone(&backends[&route.backend]);
                        if route.renames() {
                            let rename = match (&route.bucket, &route.target_bucket) {
                                (BucketPattern::Exact(client), Some(target)) => {
                                    Some((client.clone(), target.clone()))
                                }
                                _ => None,
                            };
                            store = Arc::new(Renamed::new(store, rename, route.key_prefix.clone()));
                        }
                        // With a keyring, every local route reads encrypted objects (whatever
                        // its own policy), and writes them as its policy says. An upstream
                        // route encrypts where its policy says so (its listings cost a read
                        // per object not seen before: plain routes are spared that).
                        if let Some(keyring) = &config.keyring
                            && (local_backends.contains(&route.backend)
                                || route.encryption != sluice_storage::Policy::Off)
                        {
                            let layer = Arc::new(Encrypted::new(
                                store,
                                Arc::clone(keyring),
                                route.encryption,
                            ));
                            return (Arc::clone(&layer) as Arc<dyn Backend>, Some(layer));
                        }
                        (store, None)
                    })
                    .unzip();
                let chain = plugins
                    .as_ref()
                    .map(|p| p.chain(&t.plugins))
                    .unwrap_or_default();
                let tenant = Tenant {
                    config: t,
                    stores,
                    layers,
                    chain,
                };
                (tenant.config.id.as_str().to_owned(), tenant)
            })
            .collect();
        Ok(Self {
            s3: config.s3,
            limits: config.limits,
            keys,
            tenants,
            maintenance,
            backends,
            local_backends,
            keyring: config.keyring,
            plugins,
            plugin_stores: moka::sync::Cache::new(10_000),
        })
    }

    /// The loaded plugins, if the config has any.
    pub fn plugins(&self) -> Option<&Arc<Plugins>> {
        self.plugins.as_ref()
    }

    /// The plugin chain a tenant's requests run through (empty: none).
    pub fn plugin_chain(&self, tenant: &TenantConfig) -> &[Arc<Slot>] {
        self.tenants
            .get(tenant.id.as_str())
            .map_or(&[], |t| t.chain.as_slice())
    }

    /// Whether a plugin may send `tenant`'s requests to `route`: its backend must be one the
    /// tenant's own routes name, its target bucket a valid name, its prefix of route size.
    pub fn check_plugin_route(
        &self,
        tenant: &TenantConfig,
        route: &sluice_plugin_host::types::Route,
    ) -> Result<(), String> {
        if !tenant.routes.iter().any(|r| r.backend == route.backend) {
            return Err(format!(
                "it chose backend {:?}, which none of tenant {}'s routes names",
                route.backend,
                tenant.id.as_str()
            ));
        }
        if let Some(target) = &route.target_bucket {
            BucketName::parse(target)
                .map_err(|e| format!("it chose target bucket {target:?}: {e}"))?;
        }
        if let Some(prefix) = &route.key_prefix {
            crate::config::check_key_prefix(prefix)
                .map_err(|e| format!("it chose key prefix {prefix:?}, which {e}"))?;
        }
        Ok(())
    }

    /// The store a plugin's `route` (checked by [`Self::check_plugin_route`]) reaches for
    /// `bucket`. Its encryption policy is the stricter of the bucket's configured route's and
    /// that of the tenant's first route to the chosen backend: a plugin can move a request,
    /// never weaken its encryption.
    pub fn plugin_store(
        &self,
        tenant: &TenantConfig,
        bucket: &BucketName,
        route: &sluice_plugin_host::types::Route,
    ) -> Result<Arc<dyn Backend>, String> {
        let policy = [
            tenant.route_for(bucket).map(|r| r.encryption),
            tenant
                .routes
                .iter()
                .find(|r| r.backend == route.backend)
                .map(|r| r.encryption),
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or_default();
        let rename = match &route.target_bucket {
            Some(target) => Some((
                bucket.clone(),
                BucketName::parse(target).map_err(|e| e.to_string())?,
            )),
            None => None,
        };
        let prefix = route.key_prefix.clone().unwrap_or_default();
        let key = (route.backend.clone(), rename, prefix, policy);
        if let Some(store) = self.plugin_stores.get(&key) {
            return Ok(store);
        }
        let (backend, rename, prefix, policy) = key.clone();
        let mut store = Arc::clone(&self.backends[&backend]);
        if rename.is_some() || !prefix.is_empty() {
            store = Arc::new(Renamed::new(store, rename, prefix));
        }
        if let Some(keyring) = &self.keyring
            && (self.local_backends.contains(&backend) || policy != Policy::Off)
        {
            store = Arc::new(Encrypted::new(store, Arc::clone(keyring), policy));
        }
        self.plugin_stores.insert(key, Arc::clone(&store));
        Ok(store)
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
        self.tenants.get(name).map(|t| &t.config)
    }

    /// The store a tenant's routes name for `bucket`, if any.
    pub fn backend_for(
        &self,
        tenant: &TenantConfig,
        bucket: &BucketName,
    ) -> Option<&Arc<dyn Backend>> {
        self.route_for(tenant, bucket).map(|(_, store)| store)
    }

    /// The tenant's first route matching `bucket`, and the store it reaches.
    pub fn route_for(
        &self,
        tenant: &TenantConfig,
        bucket: &BucketName,
    ) -> Option<(&Route, &Arc<dyn Backend>)> {
        let tenant = self.tenants.get(tenant.id.as_str())?;
        let index = tenant
            .config
            .routes
            .iter()
            .position(|r| r.bucket.matches(bucket))?;
        Some((&tenant.config.routes[index], tenant.stores.get(index)?))
    }

    /// The encryption layer of the route a tenant's `bucket` takes (`sluice scan`, `sluice
    /// rewrap`); for a route without one, a layer that writes nothing new over the same store.
    pub fn encryption_for(
        &self,
        tenant: &str,
        bucket: &BucketName,
        keyring: &Arc<sluice_crypto::Keyring>,
    ) -> Result<Arc<Encrypted>, String> {
        let t = self
            .tenants
            .get(tenant)
            .ok_or_else(|| format!("no tenant named {tenant:?}"))?;
        let index = t
            .config
            .routes
            .iter()
            .position(|r| r.bucket.matches(bucket))
            .ok_or_else(|| format!("no route of tenant {tenant:?} takes bucket {bucket}"))?;
        Ok(match &t.layers[index] {
            Some(layer) => Arc::clone(layer),
            None => Arc::new(Encrypted::new(
                Arc::clone(&t.stores[index]),
                Arc::clone(keyring),
                sluice_storage::Policy::Off,
            )),
        })
    }

    /// For an unauthenticated CORS preflight: every tenant whose routes reach `bucket`, with
    /// the backend they route it to.
    pub fn routes_to(&self, bucket: &BucketName) -> Vec<(&sluice_storage::TenantId, &dyn Backend)> {
        self.tenants
            .values()
            .filter_map(|t| {
                self.backend_for(&t.config, bucket)
                    .map(|b| (&t.config.id, b.as_ref()))
            })
            .collect()
    }

    /// Every distinct store a tenant's routes reach, with the first route to it (for
    /// ListBuckets).
    pub fn tenant_backends(&self, tenant: &TenantConfig) -> Vec<(&Arc<dyn Backend>, &Route)> {
        let mut stores: Vec<(&Arc<dyn Backend>, &Route)> = Vec::new();
        let Some(t) = self.tenants.get(tenant.id.as_str()) else {
            return stores;
        };
        for (store, route) in t.stores.iter().zip(&t.config.routes) {
            if !stores.iter().any(|(s, _)| Arc::ptr_eq(s, store)) {
                stores.push((store, route));
            }
        }
        stores
    }
}
