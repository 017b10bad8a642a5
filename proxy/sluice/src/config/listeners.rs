//! `listeners`: where Sluice accepts connections, TLS or (only when asked for) plain HTTP.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::Check;
use super::raw::RawListener;

#[derive(Debug, Clone)]
pub struct ListenerConfig {
    pub bind: SocketAddr,
    pub tls: Option<TlsFiles>,
    /// Plain HTTP only: accept bodies the signature does not cover (`UNSIGNED-PAYLOAD`,
    /// `STREAMING-UNSIGNED-PAYLOAD-TRAILER`), which a man in the middle could alter.
    pub danger_accept_unsigned_payload: bool,
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub(super) fn validate(
    raw: &[RawListener],
    rel: &dyn Fn(&str) -> PathBuf,
    check: &mut Check,
) -> Vec<ListenerConfig> {
    if raw.is_empty() {
        check.err("listeners", "at least one listener is required");
    }
    let mut listeners = Vec::new();
    for (i, l) in raw.iter().enumerate() {
        let place = format!("listeners[{i}]");
        let bind = match l.bind.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                check.err(
                    format_args!("{place}.bind"),
                    format_args!("{:?} is not an address:port", l.bind),
                );
                None
            }
        };
        let tls = l.tls.as_ref().map(|t| TlsFiles {
            cert: rel(&t.cert),
            key: rel(&t.key),
        });
        match (&tls, l.danger_plain_http) {
            (None, false) => check.err(
                &place,
                "has no tls section; plain HTTP must be asked for with `danger_plain_http: true`",
            ),
            (Some(_), true) => check.err(&place, "has both tls and danger_plain_http"),
            (Some(_), false) if l.danger_accept_unsigned_payload => check.err(
                format_args!("{place}.danger_accept_unsigned_payload"),
                "only applies to plain-HTTP listeners (TLS listeners always accept unsigned payloads)",
            ),
            _ => {}
        }
        if let Some(t) = &tls {
            for (what, file) in [("cert", &t.cert), ("key", &t.key)] {
                if !file.is_file() {
                    check.err(
                        format_args!("{place}.tls.{what}"),
                        format_args!("{} does not exist", file.display()),
                    );
                }
            }
        }
        if let Some(bind) = bind {
            listeners.push(ListenerConfig {
                bind,
                tls,
                danger_accept_unsigned_payload: l.danger_accept_unsigned_payload,
            });
        }
    }
    listeners
}
