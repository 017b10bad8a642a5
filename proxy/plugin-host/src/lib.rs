//! Sluice's plugin host: WebAssembly components of the world in `wit/plugin.wit`
//! (`sluice:plugin@0.1.0`), each called per request to route it (`route`) and to decide whether
//! it may proceed (`authorize`). The only crate that names wasmtime; its API speaks the
//! interface's own types ([`types`], generated from the WIT).
//!
//! The sandbox, per plugin:
//! - **capabilities**: only the host interfaces the config grants are linked (`log`,
//!   `settings`, `tables`, `clock`); a component importing another of Sluice's, or anything
//!   that is neither Sluice's nor WASI, is refused when loaded, with the import named. WASI
//!   (which language runtimes import whether they call it or not) is linked to functions that
//!   trap: no filesystem, network, environment, clock or randomness;
//! - **CPU**: each call has a deadline (epoch interruption, 1 ms ticks), so no call holds a
//!   thread longer than that;
//! - **memory**: each instance's linear memory is capped;
//! - **isolation**: warm instances are kept per (plugin, tenant), never shared between
//!   tenants, and thrown away after a trap, a timeout or a number of calls.
//!
//! Module map: [`engine`] (the wasmtime engine, its pooling allocator and epoch ticker, and
//! the on-disk cache of compiled components), [`plugin`] (a loaded plugin: its checked
//! imports, `InstancePre`, warm instances, and calls with their failure kinds),
//! [`context`] (the request a call is about, and the methods plugins read it with),
//! [`capabilities`] (the host side of the granted interfaces).

pub mod capabilities;
pub mod context;
pub mod engine;
pub mod plugin;

pub use capabilities::{Capabilities, Capability};
pub use context::{Operation, RequestContext};
pub use engine::PluginEngine;
pub use plugin::{CallError, Imports, Limits, LoadError, LoadedPlugin, imports};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "plugin",
        imports: { default: trappable },
        additional_derives: [PartialEq, Eq],
        with: { "sluice:plugin/types.request-context": crate::context::RequestContext },
    });
}

/// The interface's types (`sluice:plugin/types`), as plugins see them; the request context
/// is [`RequestContext`], which plugins read through its resource's methods.
pub mod types {
    pub use crate::bindings::sluice::plugin::types::*;
}
