//! `limits`: connection, header and body limits of the front door.

use std::time::Duration;

use super::Check;
use super::raw::RawLimits;

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_header_bytes: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub shutdown_grace: Duration,
    /// How request bodies must arrive; see [`BodyPace`].
    pub body: BodyPace,
}

/// How slowly a request body may arrive before Sluice answers `400 RequestTimeout` and closes
/// the connection. Time counts only while Sluice waits for the client (never while it writes
/// to storage). Two rules:
/// - no body byte for `read_timeout`;
/// - past a grace of `read_timeout`, fewer than `min_bytes_per_sec` on average (each byte
///   received buys `1 / min_bytes_per_sec` s more), so a trickle cannot hold a connection and
///   its upload for ever. `0` turns this rule off.
#[derive(Debug, Clone, Copy)]
pub struct BodyPace {
    pub read_timeout: Duration,
    pub min_bytes_per_sec: u64,
}

pub(super) fn validate(l: &RawLimits, check: &mut Check) -> Limits {
    let limits = Limits {
        max_header_bytes: l.max_header_bytes.0 as usize,
        header_read_timeout: l.header_read_timeout.0,
        idle_timeout: l.idle_timeout.0,
        max_connections: l.max_connections,
        shutdown_grace: l.shutdown_grace.0,
        body: BodyPace {
            read_timeout: l.body_read_timeout.0,
            min_bytes_per_sec: l.body_min_bytes_per_sec.0,
        },
    };
    if !(8192..=1 << 20).contains(&limits.max_header_bytes) {
        check.err("limits.max_header_bytes", "must be between 8KiB and 1MiB");
    }
    if limits.max_connections == 0 {
        check.err("limits.max_connections", "must be at least 1");
    }
    for (name, d) in [
        ("header_read_timeout", limits.header_read_timeout),
        ("idle_timeout", limits.idle_timeout),
        ("body_read_timeout", limits.body.read_timeout),
    ] {
        if d.is_zero() {
            check.err(format_args!("limits.{name}"), "must be greater than zero");
        }
    }
    limits
}
