//! policy-guard: request policy for a tenant, from its `settings` and `tables` capabilities.
//!
//! - Deletes of keys under `protected-prefixes` (setting, comma-separated; a batch delete,
//!   whose keys are in its body, counts as touching them) need the header named by
//!   `approval-header` (setting, default `x-approved-by`): else `AccessDenied`.
//! - `max-object-size` (setting, bytes): larger PutObject and UploadPart bodies get
//!   `EntityTooLarge`.
//! - Table `tenant-prefixes`: tenant → comma-separated key prefixes the tenant may touch;
//!   object requests outside them get `AccessDenied`. A tenant not in the table is not limited.
//! - Table `sensitive`: bucket → anything: presigned URLs are refused there (`AccessDenied`),
//!   and plain HTTP is allowed only if it is TLS (`allow-if tls`, which the host enforces).
//!
//! It does not route: `route` defers to the configured routes (cacheably). Its verdicts on
//! anything but deletes may be reused for a minute: they depend on the operation and, where
//! the policy uses them, the content length, key, bucket and how the request was signed.
//! Its settings and tables are read on an instance's first call and kept for the instance's
//! later calls.

wit_bindgen::generate!({
    path: "../../wit",
    world: "plugin",
});

// Not `HashMap`: its default hasher seeds itself from WASI's randomness, which a plugin is
// not given (the call would trap).
use std::collections::BTreeMap;
use std::sync::OnceLock;

use sluice::plugin::types::{
    AuthMethod, CacheHint, ContextFields, OpKind, Requirements, RouteChoice, Verdict,
};
use sluice::plugin::{settings, tables};

struct Guard;

/// The policy, as the config gives it: read on an instance's first call (settings and tables
/// do not change while it lives) and kept for its later ones.
struct Policy {
    protected: Option<Vec<String>>,
    approval_header: String,
    max_object_size: Option<u64>,
    tenant_prefixes: BTreeMap<String, String>,
    sensitive: BTreeMap<String, String>,
}

fn policy() -> &'static Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY.get_or_init(|| Policy {
        protected: settings::get("protected-prefixes")
            .map(|p| list(&p).map(str::to_string).collect()),
        approval_header: settings::get("approval-header")
            .unwrap_or_else(|| "x-approved-by".to_string()),
        max_object_size: settings::get("max-object-size").and_then(|m| m.parse().ok()),
        tenant_prefixes: tables::entries("tenant-prefixes").into_iter().collect(),
        sensitive: tables::entries("sensitive").into_iter().collect(),
    })
}

fn deny(code: &str, message: String) -> Verdict {
    Verdict::Deny(S3Error {
        code: code.to_string(),
        message,
        status: None,
    })
}

/// What a verdict on anything but a delete depends on under `policy`: the same fields for
/// every such request (the host keys its cache by the fields a plugin names), so that
/// repeated requests (a GET of any key, without tenant prefixes) reuse one verdict.
fn reusable(policy: &Policy) -> Option<CacheHint> {
    let mut depends_on = ContextFields::OPERATION_KIND;
    if policy.max_object_size.is_some() {
        depends_on |= ContextFields::CONTENT_LENGTH;
    }
    if !policy.tenant_prefixes.is_empty() {
        depends_on |= ContextFields::KEY;
    }
    if !policy.sensitive.is_empty() {
        depends_on |= ContextFields::BUCKET | ContextFields::AUTH;
    }
    Some(CacheHint {
        ttl_ms: 60_000,
        depends_on,
    })
}

fn list(text: &str) -> impl Iterator<Item = &str> {
    text.split(',').map(str::trim).filter(|p| !p.is_empty())
}

impl Guest for Guard {
    fn route(_ctx: &RequestContext) -> Result<RouteDecision, S3Error> {
        // It never routes: the host may skip this call for five minutes at a time.
        Ok(RouteDecision {
            choice: RouteChoice::Configured,
            cache: Some(CacheHint {
                ttl_ms: 300_000,
                depends_on: ContextFields::empty(),
            }),
        })
    }

    fn authorize(ctx: &RequestContext) -> Authorization {
        let policy = policy();
        let kind = ctx.operation();

        // Deletes depend on the key and a header's value: never reused.
        if matches!(kind, OpKind::DeleteObject | OpKind::DeleteObjects) {
            if let Some(protected) = &policy.protected {
                let key = ctx.key();
                let touches = match &key {
                    Some(key) => protected.iter().any(|p| key.starts_with(p.as_str())),
                    None => true,
                };
                let approval = &policy.approval_header;
                if touches && ctx.header(approval).is_none_or(|v| v.is_empty()) {
                    let what = key.as_deref().unwrap_or("these keys");
                    return Authorization {
                        verdict: deny(
                            "AccessDenied",
                            format!("Deleting {what} needs approval: send the {approval} header."),
                        ),
                        cache: None,
                    };
                }
            }
            return Authorization {
                verdict: prefixes_and_sensitivity(ctx, policy),
                cache: None,
            };
        }

        let cache = reusable(policy);
        if matches!(kind, OpKind::PutObject | OpKind::UploadPart)
            && let (Some(max), Some(len)) = (policy.max_object_size, ctx.content_length())
            && len > max
        {
            return Authorization {
                verdict: deny(
                    "EntityTooLarge",
                    format!("Objects here may be at most {max} bytes."),
                ),
                cache,
            };
        }
        Authorization {
            verdict: prefixes_and_sensitivity(ctx, policy),
            cache,
        }
    }
}

/// The tenant's key prefixes, then the bucket's sensitivity.
fn prefixes_and_sensitivity(ctx: &RequestContext, policy: &Policy) -> Verdict {
    if !policy.tenant_prefixes.is_empty()
        && let Some(key) = ctx.key()
    {
        let tenant = ctx.tenant();
        if let Some(allowed) = policy.tenant_prefixes.get(&tenant)
            && !list(allowed).any(|p| key.starts_with(p))
        {
            return deny(
                "AccessDenied",
                format!("Tenant {tenant} may not use keys outside {allowed}."),
            );
        }
    }
    if !policy.sensitive.is_empty()
        && let Some(bucket) = ctx.bucket()
        && policy.sensitive.contains_key(&bucket)
    {
        if ctx.auth_method() == AuthMethod::PresignedUrl {
            return deny(
                "AccessDenied",
                format!("Presigned URLs are not accepted for bucket {bucket}."),
            );
        }
        return Verdict::AllowIf(Requirements::TLS);
    }
    Verdict::Allow
}

export!(Guard);
