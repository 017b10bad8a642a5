//! tenant-router: sends a tenant's buckets to backends by pattern. Its table is the plugin's
//! `tables` capability, table `routes`: keys `<tenant>/<bucket pattern>` or `*/<bucket pattern>`
//! (a pattern is an exact name or a prefix ending in `*`), values `<backend>` or
//! `<backend>/<target bucket>`. The first key that matches, tenant's own before `*`, longest
//! pattern first, wins; no match defers to the configured routes. An instance serves one tenant
//! only: on its first call it reads the tenant and the table (`tables.entries`) once, keeps
//! the patterns that can apply to that tenant, and a later call asks only for the bucket.

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

/// The patterns that apply to this instance's tenant: its own, then `*`'s. Read from table
/// `routes` on the instance's first call and kept: an instance serves one tenant only, and
/// tables do not change while it lives. A key without `/` can never match (every key tried
/// is `<owner>/<pattern>`).
fn patterns(ctx: &RequestContext) -> &'static [Owner; 2] {
    static PATTERNS: OnceLock<[Owner; 2]> = OnceLock::new();
    PATTERNS.get_or_init(|| {
        let tenant = ctx.tenant();
        let mut patterns = [Owner::default(), Owner::default()];
        for (key, target) in tables::entries("routes") {
            let Some((owner, pattern)) = key.split_once('/') else {
                continue;
            };
            let entry = match owner {
                _ if owner == tenant => &mut patterns[0],
                "*" => &mut patterns[1],
                _ => continue,
            };
            match pattern.strip_suffix('*') {
                Some(prefix) => entry.prefixes.push((prefix.to_string(), target)),
                None => {
                    entry.exact.insert(pattern.to_string(), target);
                }
            }
        }
        for entry in &mut patterns {
            entry
                .prefixes
                .sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        }
        patterns
    })
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
        let found = patterns(ctx).iter().find_map(|owner| owner.find(&bucket));
        let choice = match found {
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
