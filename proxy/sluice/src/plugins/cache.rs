//! The decision cache: answers a plugin marked reusable (`cache-hint`: a TTL and the context
//! fields the answer depends on), kept until their TTL ends, keyed by those fields (see
//! [`super::Facts::write_cache_key`]). Identical requests within the TTL skip the call.
//!
//! Keys hold what clients send (bucket names, keys, headers), so they are hashed with a
//! per-process random seed (foldhash): fast, and no client can aim requests at one bucket of
//! the table.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_plugin_host::types::{RouteChoice, S3Error, Verdict};

/// Longest a decision is kept, whatever TTL the plugin asks for.
pub const MAX_TTL: Duration = Duration::from_secs(300);
/// Decisions kept at once, across plugins and tenants.
const CAPACITY: u64 = 100_000;

/// A plugin's answer, as reused.
#[derive(Debug)]
pub enum Cached {
    Route(Result<RouteChoice, S3Error>),
    Authorize(Verdict),
}

#[derive(Clone)]
struct Entry {
    answer: Arc<Cached>,
    ttl: Duration,
}

struct ByTtl;

impl moka::Expiry<Box<[u8]>, Entry> for ByTtl {
    fn expire_after_create(
        &self,
        _key: &Box<[u8]>,
        value: &Entry,
        _now: Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

pub struct DecisionCache {
    entries: moka::sync::Cache<Box<[u8]>, Entry, foldhash::fast::RandomState>,
}

impl std::fmt::Debug for DecisionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecisionCache")
            .field("entries", &self.entries.entry_count())
            .finish()
    }
}

impl DecisionCache {
    pub fn new() -> Self {
        Self {
            entries: moka::sync::Cache::builder()
                .max_capacity(CAPACITY)
                .expire_after(ByTtl)
                .build_with_hasher(foldhash::fast::RandomState::default()),
        }
    }

    pub fn get(&self, key: &[u8]) -> Option<Arc<Cached>> {
        self.entries.get(key).map(|e| e.answer)
    }

    pub fn insert(&self, key: &[u8], answer: Arc<Cached>, ttl_ms: u32) {
        let ttl = Duration::from_millis(u64::from(ttl_ms)).min(MAX_TTL);
        self.entries.insert(key.into(), Entry { answer, ttl });
    }
}

impl Default for DecisionCache {
    fn default() -> Self {
        Self::new()
    }
}
