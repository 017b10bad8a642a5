//! The front door: listeners, TLS, per-connection limits, graceful shutdown.
//!
//! hyper types stay inside this module and `pipeline`; the rest of the crate sees
//! `http::Request`/`Response` and Sluice's own body types.

mod idle;
mod listener;
pub mod tls;

pub use listener::{BoundListener, bind, serve};
