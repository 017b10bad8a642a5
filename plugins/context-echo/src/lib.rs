//! context-echo: a test fixture that reads every part of the request context through its
//! methods and answers with what it read: `route` refuses with `InvalidRequest` and the
//! operation's parts as the message, `authorize` denies with `AccessDenied` and the rest. A
//! test compares the messages with the context it built, method by method.

wit_bindgen::generate!({
    path: "../../wit",
    world: "plugin",
});

use std::fmt::Write as _;

use sluice::plugin::types::Verdict;

struct Echo;

fn refuse(code: &str, message: String) -> S3Error {
    S3Error {
        code: code.to_string(),
        message,
        status: None,
    }
}

impl Guest for Echo {
    fn route(ctx: &RequestContext) -> Result<RouteDecision, S3Error> {
        let mut out = String::new();
        let _ = write!(
            out,
            "operation={:?} name={} bucket={:?} key={:?} part={:?} upload={:?} range={:?} copy={:?}",
            ctx.operation(),
            ctx.operation_name(),
            ctx.bucket(),
            ctx.key(),
            ctx.part_number(),
            ctx.upload_id(),
            ctx.range(),
            ctx.copy_source(),
        );
        Err(refuse("InvalidRequest", out))
    }

    fn authorize(ctx: &RequestContext) -> Authorization {
        let mut out = String::new();
        let _ = write!(
            out,
            "tenant={} akid={} method={} query={:?} headers={:?} approved={:?} missing={:?} \
             secret={:?} source={} tls={:?} auth={:?} payload={:?} length={:?} route={:?} \
             encryption={:?}",
            ctx.tenant(),
            ctx.access_key_id(),
            ctx.method(),
            ctx.query(),
            ctx.headers(),
            ctx.header("X-Approved-By"),
            ctx.header("x-not-sent"),
            ctx.header("Authorization"),
            ctx.source_address(),
            ctx.tls(),
            ctx.auth_method(),
            ctx.payload(),
            ctx.content_length(),
            ctx.configured_route(),
            ctx.encryption(),
        );
        Authorization {
            verdict: Verdict::Deny(refuse("AccessDenied", out)),
            cache: None,
        }
    }
}

export!(Echo);
