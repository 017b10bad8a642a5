//! A Sluice plugin to start from: copy this directory, rename the crate, add it to the
//! workspace's `members`, and fill in the two functions. As it stands it defers every route
//! to the configured routes and allows every request, and says both answers may be reused
//! for a minute per tenant and operation.
//!
//! Build it with `bash plugins/build.sh` (a component in `plugins/dist/`), see what it
//! imports with `sluice plugin check plugins/dist/plugin_template.wasm`, and run it on sample
//! requests with `sluice plugin test plugins/dist/plugin_template.wasm --cases cases.yaml`.

wit_bindgen::generate!({
    path: "../../wit",
    world: "plugin",
});

// The capabilities a plugin may import: `log`, `settings`, `tables`, `clock`. Each one used
// here must be granted in the config (`capabilities: [...]`); `sluice plugin check` lists them.
use sluice::plugin::types::{CacheHint, ContextFields, RouteChoice, Verdict};

struct Plugin;

/// Decisions that depend only on these fields may be reused for `ttl_ms`.
fn reusable() -> Option<CacheHint> {
    Some(CacheHint {
        ttl_ms: 60_000,
        depends_on: ContextFields::TENANT | ContextFields::OPERATION_KIND,
    })
}

impl Guest for Plugin {
    /// Where the request goes: `RouteChoice::Configured`, or `RouteChoice::To(Route { .. })`
    /// naming a backend the tenant's routes name. An `Err` refuses the request with that error.
    fn route(_ctx: &RequestContext) -> Result<RouteDecision, S3Error> {
        Ok(RouteDecision {
            choice: RouteChoice::Configured,
            cache: reusable(),
        })
    }

    /// Whether it may proceed: `Verdict::Allow`, `Verdict::Deny(S3Error { .. })`, or
    /// `Verdict::AllowIf(Requirements::TLS | Requirements::ENCRYPTION)`.
    fn authorize(_ctx: &RequestContext) -> Authorization {
        Authorization {
            verdict: Verdict::Allow,
            cache: reusable(),
        }
    }
}

export!(Plugin);
