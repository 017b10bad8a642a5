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
//! It does not route: `route` defers to the configured routes (cacheably).

wit_bindgen::generate!({
    path: "../../wit",
    world: "plugin",
});

use sluice::plugin::types::{
    AuthMethod, CacheHint, ContextFields, OpKind, Requirements, RouteChoice, Verdict,
};
use sluice::plugin::{settings, tables};

struct Guard;

fn deny(code: &str, message: String) -> Authorization {
    Authorization {
        verdict: Verdict::Deny(S3Error {
            code: code.to_string(),
            message,
            status: None,
        }),
        cache: None,
    }
}

fn list(text: &str) -> impl Iterator<Item = &str> {
    text.split(',').map(str::trim).filter(|p| !p.is_empty())
}

fn header<'a>(ctx: &'a RequestContext, name: &str) -> Option<&'a str> {
    ctx.headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

impl Guest for Guard {
    fn route(_ctx: RequestContext) -> Result<RouteDecision, S3Error> {
        // It never routes: the host may skip this call for five minutes at a time.
        Ok(RouteDecision {
            choice: RouteChoice::Configured,
            cache: Some(CacheHint {
                ttl_ms: 300_000,
                depends_on: ContextFields::empty(),
            }),
        })
    }

    fn authorize(ctx: RequestContext) -> Authorization {
        let op = &ctx.operation;
        let key = op.key.as_deref();

        let deletes = matches!(op.kind, OpKind::DeleteObject | OpKind::DeleteObjects);
        if deletes && let Some(protected) = settings::get("protected-prefixes") {
            let touches = match key {
                Some(key) => list(&protected).any(|p| key.starts_with(p)),
                None => true,
            };
            let approval =
                settings::get("approval-header").unwrap_or_else(|| "x-approved-by".to_string());
            if touches && header(&ctx, &approval).is_none_or(str::is_empty) {
                let what = key.unwrap_or("these keys");
                return deny(
                    "AccessDenied",
                    format!("Deleting {what} needs approval: send the {approval} header."),
                );
            }
        }

        if matches!(op.kind, OpKind::PutObject | OpKind::UploadPart)
            && let (Some(max), Some(len)) = (
                settings::get("max-object-size").and_then(|m| m.parse::<u64>().ok()),
                ctx.content_length,
            )
            && len > max
        {
            return deny(
                "EntityTooLarge",
                format!("Objects here may be at most {max} bytes."),
            );
        }

        if let (Some(key), Some(allowed)) = (key, tables::lookup("tenant-prefixes", &ctx.tenant))
            && !list(&allowed).any(|p| key.starts_with(p))
        {
            return deny(
                "AccessDenied",
                format!("Tenant {} may not use keys outside {allowed}.", ctx.tenant),
            );
        }

        if let Some(bucket) = op.bucket.as_deref()
            && tables::lookup("sensitive", bucket).is_some()
        {
            if ctx.auth_method == AuthMethod::PresignedUrl {
                return deny(
                    "AccessDenied",
                    format!("Presigned URLs are not accepted for bucket {bucket}."),
                );
            }
            return Authorization {
                verdict: Verdict::AllowIf(Requirements::TLS),
                cache: None,
            };
        }

        Authorization {
            verdict: Verdict::Allow,
            cache: None,
        }
    }
}

export!(Guard);
