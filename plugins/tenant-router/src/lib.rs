//! tenant-router: sends a tenant's buckets to backends by pattern. Its table is the plugin's
//! `tables` capability, table `routes`: keys `<tenant>/<bucket pattern>` or `*/<bucket pattern>`
//! (a pattern is an exact name or a prefix ending in `*`), values `<backend>` or
//! `<backend>/<target bucket>`. The first key that matches, tenant's own before `*`, longest
//! pattern first, wins; no match defers to the configured routes. The table is read once per
//! instance (`tables.entries`) and kept for its later calls.

wit_bindgen::generate!({
    path: "../../wit",
    world: "plugin",
});

// Not `HashMap`: its default hasher seeds itself from WASI's randomness, which a plugin is
// not given (the call would trap).
use std::collections::BTreeMap;
use std::sync::OnceLock;

use sluice::plugin::tables;
use sluice::plugin::types::{CacheHint, ContextFields, Route, RouteChoice, Verdict};

struct Router;

/// Table `routes`, read on an instance's first call: tables do not change while it lives.
fn routes() -> &'static BTreeMap<String, String> {
    static ROUTES: OnceLock<BTreeMap<String, String>> = OnceLock::new();
    ROUTES.get_or_init(|| tables::entries("routes").into_iter().collect())
}

/// The target of the first key that matches: `<owner>/<bucket>`, then `<owner>/<prefix>*` for
/// each prefix of the bucket, longest first, for the tenant and then for `*`.
fn lookup(tenant: &str, bucket: &str) -> Option<&'static str> {
    let routes = routes();
    let mut key = String::with_capacity(tenant.len().max(1) + bucket.len() + 2);
    for owner in [tenant, "*"] {
        key.clear();
        key.push_str(owner);
        key.push('/');
        let start = key.len();
        key.push_str(bucket);
        if let Some(target) = routes.get(&key) {
            return Some(target);
        }
        for end in (0..=bucket.len()).rev() {
            if bucket.is_char_boundary(end) {
                key.truncate(start + end);
                key.push('*');
                if let Some(target) = routes.get(&key) {
                    return Some(target);
                }
                key.pop();
            }
        }
    }
    None
}

impl Guest for Router {
    fn route(ctx: &RequestContext) -> Result<RouteDecision, S3Error> {
        // Same tenant and bucket, same answer: for a minute.
        let cache = Some(CacheHint {
            ttl_ms: 60_000,
            depends_on: ContextFields::TENANT | ContextFields::BUCKET,
        });
        let Some(bucket) = ctx.bucket() else {
            return Ok(RouteDecision {
                choice: RouteChoice::Configured,
                cache,
            });
        };
        let choice = match lookup(&ctx.tenant(), &bucket) {
            None => RouteChoice::Configured,
            Some(target) => {
                let (backend, target_bucket) = match target.split_once('/') {
                    Some((b, t)) => (b.to_string(), Some(t.to_string())),
                    None => (target.to_string(), None),
                };
                RouteChoice::To(Route {
                    backend,
                    target_bucket,
                    key_prefix: None,
                })
            }
        };
        Ok(RouteDecision { choice, cache })
    }

    fn authorize(_ctx: &RequestContext) -> Authorization {
        Authorization {
            verdict: Verdict::Allow,
            cache: None,
        }
    }
}

export!(Router);
