//! tenant-router: sends a tenant's buckets to backends by pattern. Its table is the plugin's
//! `tables` capability, table `routes`: keys `<tenant>/<bucket pattern>` or `*/<bucket pattern>`
//! (a pattern is an exact name or a prefix ending in `*`), values `<backend>` or
//! `<backend>/<target bucket>`. The first key that matches, tenant's own before `*`, longest
//! pattern first, wins; no match defers to the configured routes.

wit_bindgen::generate!({
    path: "../../wit",
    world: "plugin",
});

use sluice::plugin::tables;
use sluice::plugin::types::{CacheHint, ContextFields, Route, RouteChoice, Verdict};

struct Router;

/// The patterns tried for `bucket`, most specific first: the name itself, then its prefixes
/// with `*`, longest first.
fn patterns(bucket: &str) -> Vec<String> {
    let mut out = Vec::with_capacity(bucket.len() + 2);
    out.push(bucket.to_string());
    for end in (0..=bucket.len()).rev() {
        if bucket.is_char_boundary(end) {
            let mut p = bucket[..end].to_string();
            p.push('*');
            out.push(p);
        }
    }
    out
}

fn lookup(tenant: &str, bucket: &str) -> Option<String> {
    for owner in [tenant, "*"] {
        for pattern in patterns(bucket) {
            let key = format!("{owner}/{pattern}");
            if let Some(target) = tables::lookup("routes", &key) {
                return Some(target);
            }
        }
    }
    None
}

impl Guest for Router {
    fn route(ctx: RequestContext) -> Result<RouteDecision, S3Error> {
        // Same tenant and bucket, same answer: for a minute.
        let cache = Some(CacheHint {
            ttl_ms: 60_000,
            depends_on: ContextFields::TENANT | ContextFields::BUCKET,
        });
        let Some(bucket) = ctx.operation.bucket.as_deref() else {
            return Ok(RouteDecision {
                choice: RouteChoice::Configured,
                cache,
            });
        };
        let choice = match lookup(&ctx.tenant, bucket) {
            None => RouteChoice::Configured,
            Some(target) => {
                let (backend, target_bucket) = match target.split_once('/') {
                    Some((b, t)) => (b.to_string(), Some(t.to_string())),
                    None => (target, None),
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

    fn authorize(_ctx: RequestContext) -> Authorization {
        Authorization {
            verdict: Verdict::Allow,
            cache: None,
        }
    }
}

export!(Router);
