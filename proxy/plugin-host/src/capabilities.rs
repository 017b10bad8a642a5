//! The host side of the interfaces a plugin may be granted (`wit/plugin.wit`): `log`,
//! `settings`, `tables` and `clock`. Only granted interfaces are linked; what each gives a
//! plugin is exactly what the config put there.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::bindings::sluice::plugin::{clock, log, settings, tables};

/// A host interface a plugin may import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Capability {
    Log,
    Settings,
    Tables,
    Clock,
}

impl Capability {
    pub const ALL: [Capability; 4] = [Self::Log, Self::Settings, Self::Tables, Self::Clock];

    /// The name in the config (`capabilities: [log, clock]`) and in the WIT.
    pub fn name(self) -> &'static str {
        match self {
            Self::Log => "log",
            Self::Settings => "settings",
            Self::Tables => "tables",
            Self::Clock => "clock",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The component import that names this interface (`sluice:plugin/log@0.1.0`).
    pub(crate) fn import_name(self) -> String {
        format!("sluice:plugin/{}@0.1.0", self.name())
    }
}

/// What one plugin is granted: which interfaces, and the values behind `settings` and
/// `tables`.
#[derive(Debug, Clone, Default)]
pub struct Capabilities {
    pub granted: Vec<Capability>,
    pub settings: BTreeMap<String, String>,
    pub tables: BTreeMap<String, BTreeMap<String, String>>,
}

impl Capabilities {
    pub fn grants(&self, capability: Capability) -> bool {
        self.granted.contains(&capability)
    }
}

/// The most log lines one call may write; further lines are dropped.
const MAX_LINES_PER_CALL: u32 = 16;
/// Longer messages and field values are cut to this many bytes.
const MAX_LOG_TEXT: usize = 512;

/// What a plugin instance's host functions see.
pub(crate) struct HostState {
    pub(crate) plugin: Arc<str>,
    pub(crate) grants: Arc<Capabilities>,
    pub(crate) limiter: crate::plugin::MemoryLimiter,
    /// Lines logged during the current call.
    pub(crate) lines: u32,
    /// The epoch ticks at which the current call was seen running, and the thread's CPU time
    /// at the first of them; the call's budget, as CPU time and as ticks.
    pub(crate) ticks: u32,
    pub(crate) cpu_at_first_tick: Option<std::time::Duration>,
    pub(crate) budget: std::time::Duration,
    pub(crate) budget_ticks: u32,
    /// The request of the call under way (`None` between calls).
    pub(crate) context: Option<Arc<crate::context::RequestContext>>,
}

fn cut(text: &str) -> &str {
    if text.len() <= MAX_LOG_TEXT {
        return text;
    }
    let mut end = MAX_LOG_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

impl log::Host for HostState {
    fn write(
        &mut self,
        level: log::Level,
        message: String,
        fields: Vec<(String, String)>,
    ) -> wasmtime::Result<()> {
        self.lines += 1;
        if self.lines > MAX_LINES_PER_CALL {
            return Ok(());
        }
        let fields: Vec<String> = fields
            .iter()
            .take(16)
            .map(|(k, v)| format!("{}={}", cut(k), cut(v)))
            .collect();
        let (plugin, message, fields) = (&*self.plugin, cut(&message), fields.join(" "));
        match level {
            log::Level::Debug => {
                tracing::debug!(target: "sluice::plugin", plugin, fields, "{message}")
            }
            log::Level::Info => {
                tracing::info!(target: "sluice::plugin", plugin, fields, "{message}")
            }
            log::Level::Warn => {
                tracing::warn!(target: "sluice::plugin", plugin, fields, "{message}")
            }
            log::Level::Error => {
                tracing::error!(target: "sluice::plugin", plugin, fields, "{message}")
            }
        }
        Ok(())
    }
}

impl settings::Host for HostState {
    fn get(&mut self, name: String) -> wasmtime::Result<Option<String>> {
        Ok(self.grants.settings.get(&name).cloned())
    }
}

impl tables::Host for HostState {
    fn lookup(&mut self, table: String, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self
            .grants
            .tables
            .get(&table)
            .and_then(|t| t.get(&key))
            .cloned())
    }

    fn entries(&mut self, table: String) -> wasmtime::Result<Vec<(String, String)>> {
        Ok(self
            .grants
            .tables
            .get(&table)
            .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default())
    }
}

impl crate::bindings::sluice::plugin::types::Host for HostState {}

impl clock::Host for HostState {
    fn now_ms(&mut self) -> wasmtime::Result<u64> {
        Ok(std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64))
    }
}

/// Links the interfaces `grants` names, and nothing else.
pub(crate) fn link(
    linker: &mut wasmtime::component::Linker<HostState>,
    grants: &Capabilities,
) -> wasmtime::Result<()> {
    use wasmtime::component::{HasSelf, ResourceType};
    crate::bindings::sluice::plugin::types::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?;
    // The world's own `use` of the context type (an import of every plugin): the same type.
    linker.root().resource(
        "request-context",
        ResourceType::host::<crate::context::RequestContext>(),
        |_, _| Ok(()),
    )?;
    for capability in &grants.granted {
        match capability {
            Capability::Log => log::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?,
            Capability::Settings => settings::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?,
            Capability::Tables => tables::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?,
            Capability::Clock => clock::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?,
        }
    }
    Ok(())
}
