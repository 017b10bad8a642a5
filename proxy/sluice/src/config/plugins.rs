//! `plugins:`: the WebAssembly plugins Sluice may run (`wit/plugin.wit`), each with its
//! component file, the capabilities it is granted and its limits; the chain a tenant runs
//! unless its own `plugins:` names another; where compiled components are cached.
//!
//! ```yaml
//! plugins:
//!   default_chain: [policy-guard]
//!   modules:
//!     policy-guard:
//!       component: ../plugins/dist/policy_guard.wasm
//!       capabilities: [log, settings]
//!       settings: { protected-prefixes: "protected/" }
//!       deadline: 5ms          # CPU time per call
//!       memory: 16MiB          # linear memory per instance
//!       isolation: warm        # or per-request: a fresh instance for every call
//!       on_failure: deny       # a trap, timeout or garbage answer denies; `allow` lets it pass
//! tenants:
//!   - name: acme
//!     plugins: [tenant-router, policy-guard]   # run in this order
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sluice_plugin_host::{Capabilities, Capability, Limits};

use super::raw::{RawIsolation, RawOnFailure, RawPlugin, RawPlugins};
use super::{Check, valid_name};

#[derive(Debug, Clone, Default)]
pub struct PluginsConfig {
    /// Where compiled components are kept; none: compiled at every start.
    pub cache_dir: Option<PathBuf>,
    /// In name order.
    pub modules: Vec<PluginConfig>,
}

impl PluginsConfig {
    pub fn get(&self, name: &str) -> Option<&PluginConfig> {
        self.modules.iter().find(|p| p.name == name)
    }
}

#[derive(Debug, Clone)]
pub struct PluginConfig {
    pub name: String,
    pub component: PathBuf,
    pub grants: Capabilities,
    pub limits: Limits,
    pub on_failure: OnFailure,
}

/// What a request meets when a plugin gives no decision (it trapped, ran out of time or
/// memory, answered garbage, or named a backend that does not exist).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// Fail closed: `AccessDenied`, naming the plugin.
    Deny,
    /// Fail open: as if the plugin had deferred and allowed (logged at WARN).
    Allow,
}

/// Deadlines outside this range are refused: under a tick nothing can run, and a plugin that
/// needs more than a second per request should not be in a request's path.
const DEADLINES: (Duration, Duration) = (Duration::from_millis(1), Duration::from_secs(1));
/// Memory below this cannot hold a language runtime's first page set.
const MIN_MEMORY: u64 = 1 << 20;

pub(super) fn validate(
    raw: Option<&RawPlugins>,
    base_dir: &Path,
    check: &mut Check,
) -> PluginsConfig {
    let Some(raw) = raw else {
        return PluginsConfig::default();
    };
    let modules = raw
        .modules
        .iter()
        .filter_map(|(name, p)| module(name, p, base_dir, check))
        .collect();
    let config = PluginsConfig {
        cache_dir: match &raw.cache_dir {
            Some(dir) => Some(base_dir.join(dir)),
            None => default_cache_dir(),
        },
        modules,
    };
    names_declared(&raw.default_chain, "plugins.default_chain", raw, check);
    config
}

/// The chain of a tenant: its own if it names one (`[]` runs none), else the default.
pub(super) fn chain(
    own: Option<&[String]>,
    raw: Option<&RawPlugins>,
    place: &str,
    check: &mut Check,
) -> Vec<String> {
    match (own, raw) {
        (Some(own), Some(raw)) => {
            names_declared(own, place, raw, check);
            own.to_vec()
        }
        (Some(own), None) => {
            if !own.is_empty() {
                check.err(place, "names plugins, but there is no plugins section");
            }
            Vec::new()
        }
        (None, Some(raw)) => raw.default_chain.clone(),
        (None, None) => Vec::new(),
    }
}

fn names_declared(chain: &[String], place: &str, raw: &RawPlugins, check: &mut Check) {
    for (i, name) in chain.iter().enumerate() {
        if !raw.modules.contains_key(name) {
            check.err(
                format_args!("{place}[{i}]"),
                format_args!("no plugin named {name:?} in plugins.modules"),
            );
        }
        if chain[..i].contains(name) {
            check.err(
                format_args!("{place}[{i}]"),
                format_args!("{name:?} is in the chain twice"),
            );
        }
    }
}

/// `$XDG_CACHE_HOME/sluice/plugins`, else `$HOME/.cache/sluice/plugins`.
pub fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("sluice").join("plugins"))
}

fn module(name: &str, raw: &RawPlugin, base_dir: &Path, check: &mut Check) -> Option<PluginConfig> {
    let place = format!("plugins.modules.{name}");
    let errors = check.errors.len();
    if !valid_name(name) {
        check.err(&place, "plugin names are a-z, 0-9, - and _");
    }
    let mut granted = Vec::new();
    for (i, c) in raw.capabilities.iter().enumerate() {
        match Capability::from_name(c) {
            Some(c) if granted.contains(&c) => {
                check.err(format_args!("{place}.capabilities[{i}]"), "given twice")
            }
            Some(c) => granted.push(c),
            None => check.err(
                format_args!("{place}.capabilities[{i}]"),
                format_args!(
                    "{c:?} is not a capability Sluice offers (log, settings, tables, clock)"
                ),
            ),
        }
    }
    // Values the plugin could never read are a config mistake, not something to carry silently.
    if !raw.settings.is_empty() && !granted.contains(&Capability::Settings) {
        check.err(
            format_args!("{place}.settings"),
            "given, but `settings` is not in its capabilities",
        );
    }
    if !raw.tables.is_empty() && !granted.contains(&Capability::Tables) {
        check.err(
            format_args!("{place}.tables"),
            "given, but `tables` is not in its capabilities",
        );
    }
    let settings = raw
        .settings
        .iter()
        .filter_map(|(k, v)| {
            Some((
                k.clone(),
                scalar(v, &format!("{place}.settings.{k}"), check)?,
            ))
        })
        .collect();
    let tables = raw
        .tables
        .iter()
        .map(|(table, rows)| {
            let rows = rows
                .iter()
                .filter_map(|(k, v)| {
                    Some((
                        k.clone(),
                        scalar(v, &format!("{place}.tables.{table}.{k}"), check)?,
                    ))
                })
                .collect::<BTreeMap<_, _>>();
            (table.clone(), rows)
        })
        .collect();
    let defaults = Limits::default();
    let deadline = raw.deadline.map_or(defaults.deadline, |d| d.0);
    if deadline < DEADLINES.0 || deadline > DEADLINES.1 {
        check.err(
            format_args!("{place}.deadline"),
            "must be between 1ms and 1s",
        );
    }
    let memory = raw.memory.map_or(defaults.memory as u64, |m| m.0);
    let most = sluice_plugin_host::engine::MAX_MEMORY as u64;
    if !(MIN_MEMORY..=most).contains(&memory) {
        check.err(
            format_args!("{place}.memory"),
            format_args!("must be between 1MiB and {}MiB", most >> 20),
        );
    }
    let max_calls = match (raw.isolation, raw.max_calls) {
        (RawIsolation::PerRequest, Some(_)) => {
            check.err(
                format_args!("{place}.max_calls"),
                "means nothing with isolation: per-request",
            );
            1
        }
        (RawIsolation::PerRequest, None) => 1,
        (RawIsolation::Warm, Some(0)) => {
            check.err(format_args!("{place}.max_calls"), "must be at least 1");
            1
        }
        (RawIsolation::Warm, calls) => calls.unwrap_or(defaults.max_calls),
    };
    if check.errors.len() != errors {
        return None;
    }
    Some(PluginConfig {
        name: name.to_owned(),
        component: base_dir.join(&raw.component),
        grants: Capabilities {
            granted,
            settings,
            tables,
        },
        limits: Limits {
            deadline,
            memory: memory as usize,
            max_calls,
            warm_per_tenant: raw.warm_instances.unwrap_or(defaults.warm_per_tenant),
        },
        on_failure: match raw.on_failure {
            RawOnFailure::Deny => OnFailure::Deny,
            RawOnFailure::Allow => OnFailure::Allow,
        },
    })
}

fn scalar(value: &serde_yaml::Value, place: &str, check: &mut Check) -> Option<String> {
    match value {
        serde_yaml::Value::String(s) => Some(s.clone()),
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        serde_yaml::Value::Bool(b) => Some(b.to_string()),
        _ => {
            check.err(place, "must be a string, a number or a boolean");
            None
        }
    }
}
