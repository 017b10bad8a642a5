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

/// One owner's patterns (a tenant's, or `*`'s): exact bucket names, and prefixes longest
/// first, so that the first prefix a bucket starts with is the longest pattern that matches.
#[derive(Default)]
struct Owner {
    exact: BTreeMap<String, String>,
    prefixes: Vec<(String, String)>,
}

impl Owner {
    fn find(&self, bucket: &str) -> Option<&str> {
        if let Some(target) = self.exact.get(bucket) {
            return Some(target);
        }
        self.prefixes
            .iter()
            .find(|(prefix, _)| bucket.starts_with(prefix.as_str()))
            .map(|(_, target)| target.as_str())
    }
}

/// Table `routes` by owner, read on an instance's first call: tables do not change while it
/// lives. A key without `/` can never match (every key tried is `<owner>/<pattern>`).
fn owners() -> &'static BTreeMap<String, Owner> {
    static OWNERS: OnceLock<BTreeMap<String, Owner>> = OnceLock::new();
    OWNERS.get_or_init(|| {
        let mut owners: BTreeMap<String, Owner> = BTreeMap::new();
        for (key, target) in tables::entries("routes") {
            let Some((owner, pattern)) = key.split_once('/') else {
                continue;
            };
            let entry = owners.entry(owner.to_string()).or_default();
            match pattern.strip_suffix('*') {
                Some(prefix) => entry.prefixes.push((prefix.to_string(), target)),
                None => {
                    entry.exact.insert(pattern.to_string(), target);
                }
            }
        }
        for entry in owners.values_mut() {
            entry
                .prefixes
                .sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        }
        owners
    })
}

/// The target of the first key that matches: the tenant's own patterns, then `*`'s; in each,
/// the exact name, then the longest prefix.
fn lookup(tenant: &str, bucket: &str) -> Option<&'static str> {
    let owners = owners();
    [tenant, "*"]
        .into_iter()
        .find_map(|owner| owners.get(owner)?.find(bucket))
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
