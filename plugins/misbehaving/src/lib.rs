//! misbehaving: a test fixture that fails the way its `mode` setting says, in both exports, so
//! that the host's limits can be seen to hold:
//!
//! - `trap`: panics (a trap: `unreachable` after the panic hook);
//! - `loop`: spins forever (stopped by the call's CPU deadline);
//! - `hog`: allocates without bound (stopped by the instance's memory cap);
//! - `unknown-backend`: routes every request to a backend named `nowhere`, and allows it.
//!
//! Any other mode (or none) behaves: it defers and allows.

wit_bindgen::generate!({
    path: "../../wit",
    world: "plugin",
});

use sluice::plugin::settings;
use sluice::plugin::types::{Route, RouteChoice, Verdict};

struct Misbehaving;

/// Fails as `mode` says; returns only for modes that do not fail here.
fn misbehave() {
    match settings::get("mode").as_deref() {
        Some("trap") => panic!("the trap fixture traps"),
        Some("loop") => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        Some("hog") => {
            let mut held: Vec<Vec<u8>> = Vec::new();
            loop {
                // Reserved, not written: the point is the memory, not the time to fill it.
                let mut block = Vec::with_capacity(1 << 20);
                block.push(held.len() as u8);
                held.push(std::hint::black_box(block));
            }
        }
        _ => {}
    }
}

impl Guest for Misbehaving {
    fn route(_ctx: &RequestContext) -> Result<RouteDecision, S3Error> {
        misbehave();
        let choice = match settings::get("mode").as_deref() {
            Some("unknown-backend") => RouteChoice::To(Route {
                backend: "nowhere".to_string(),
                target_bucket: None,
                key_prefix: None,
            }),
            _ => RouteChoice::Configured,
        };
        Ok(RouteDecision {
            choice,
            cache: None,
        })
    }

    fn authorize(_ctx: &RequestContext) -> Authorization {
        misbehave();
        Authorization {
            verdict: Verdict::Allow,
            cache: None,
        }
    }
}

export!(Misbehaving);
