//! `sluice scan` and `sluice rewrap`: one bucket's objects as they are at rest, read from the
//! store its route names (through the route's renaming, never through a running server).
//!
//! - scan: every object that is not ciphertext under the keyring's current key is reported
//!   (plaintext, an older key, or a record whose envelope, key or footers do not check out);
//!   the exit status says whether there were any. Objects under a client's SSE-C key are
//!   listed too (`customer-key`), as ciphertext.
//! - rewrap: every object under an older key gets its data key wrapped under the current one,
//!   its stored bytes untouched (a copy onto itself, of the version examined). Each object is
//!   rewrapped atomically, so an interrupted run leaves nothing half done; a second run skips
//!   what is current, or resumes after a key with `--start-after`.
//!
//! Only the route's own backend is opened: a local backend in use by a running server is
//! locked (scan and rewrap it with the server stopped, or rewrap online with a copy onto itself
//! asking `x-amz-server-side-encryption: AES256`); an upstream can be scanned at any time.

use std::sync::Arc;

use futures_util::StreamExt as _;
use sluice_storage::{BucketName, Encrypted, Finding, ListRequest, ObjectKey, TenantId};

use crate::config::Config;
use crate::gateway::Gateway;

/// What to do with each object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Scan,
    Rewrap,
}

/// Objects looked at together.
const AT_ONCE: usize = 8;
/// Keys listed per page.
const PAGE: usize = 1000;

/// Runs `action` over `bucket` of `tenant` (the config's only tenant if `None`); returns
/// whether every object ended up ciphertext under the current key. Findings go to stdout, one
/// line each (`<finding>\t<key>`), the tally to stderr.
pub fn run(
    config: Config,
    tenant: Option<&str>,
    bucket: &str,
    start_after: Option<String>,
    action: Action,
) -> Result<bool, String> {
    let bucket = BucketName::parse(bucket).map_err(|e| format!("--bucket: {e}"))?;
    let keyring = config
        .keyring
        .clone()
        .ok_or("the config has no encryption section")?;
    let config = only_route(config, tenant, &bucket)?;
    let tenant_id = config.tenants[0].id.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let gateway = Gateway::new(config).await?;
        let layer = gateway.encryption_for(tenant_id.as_str(), &bucket, &keyring)?;
        walk(&layer, &tenant_id, &bucket, start_after, action).await
    })
}

/// The config reduced to the one route `bucket` takes and its backend, so that nothing else
/// is opened.
fn only_route(
    mut config: Config,
    tenant: Option<&str>,
    bucket: &BucketName,
) -> Result<Config, String> {
    let index = match tenant {
        Some(name) => config
            .tenants
            .iter()
            .position(|t| t.id.as_str() == name)
            .ok_or_else(|| format!("no tenant named {name:?}"))?,
        None if config.tenants.len() == 1 => 0,
        None => return Err("the config has several tenants: name one with --tenant".into()),
    };
    let mut chosen = config.tenants.swap_remove(index);
    let route = chosen
        .routes
        .drain(..)
        .find(|r| r.bucket.matches(bucket))
        .ok_or_else(|| {
            format!(
                "no route of tenant {} takes bucket {bucket}",
                chosen.id.as_str()
            )
        })?;
    config.backends.retain(|name, _| *name == route.backend);
    chosen.routes = vec![route];
    config.tenants = vec![chosen];
    Ok(config)
}

#[derive(Debug, Default)]
struct Tally {
    current: u64,
    rewrapped: u64,
    old_key: u64,
    customer_key: u64,
    plaintext: u64,
    unreadable: u64,
    /// Deleted while the walk looked at them.
    gone: u64,
}

async fn walk(
    layer: &Arc<Encrypted>,
    tenant: &TenantId,
    bucket: &BucketName,
    start_after: Option<String>,
    action: Action,
) -> Result<bool, String> {
    let store = layer.inner();
    let mut tally = Tally::default();
    let mut request = ListRequest {
        start_after,
        max_keys: PAGE,
        ..Default::default()
    };
    let mut last_done: Option<String> = None;
    loop {
        let page = store
            .list_objects(tenant, bucket, request.clone())
            .await
            .map_err(|e| format!("listing {bucket}: {e}"))?;
        let keys: Vec<ObjectKey> = page.objects.into_iter().map(|(key, _)| key).collect();
        let mut results = futures_util::stream::iter(keys)
            .map(|key| async move {
                let finding = match action {
                    Action::Scan => layer.scan(tenant, bucket, &key).await,
                    Action::Rewrap => layer.rewrap(tenant, bucket, &key).await,
                };
                (key, finding)
            })
            .buffered(AT_ONCE);
        while let Some((key, finding)) = results.next().await {
            let finding = match finding {
                Ok(finding) => finding,
                Err(sluice_storage::StorageError::NoSuchKey) => Finding::Gone,
                Err(err) => {
                    let resume = last_done
                        .map(|k| format!("; to resume: --start-after '{k}'"))
                        .unwrap_or_default();
                    return Err(format!("{key}: {err}{resume}"));
                }
            };
            let (label, count) = match (finding, action) {
                (Finding::Current, _) => (None, &mut tally.current),
                (Finding::Gone, _) => (None, &mut tally.gone),
                (Finding::OldKey, Action::Rewrap) => (Some("rewrapped"), &mut tally.rewrapped),
                (Finding::OldKey, Action::Scan) => (Some("old-key"), &mut tally.old_key),
                (Finding::CustomerKey, _) => (Some("customer-key"), &mut tally.customer_key),
                (Finding::Plaintext, _) => (Some("plaintext"), &mut tally.plaintext),
                (Finding::Unreadable, _) => (Some("unreadable"), &mut tally.unreadable),
            };
            *count += 1;
            if let Some(label) = label {
                println!("{label}\t{key}");
            }
            last_done = Some(key.as_str().to_owned());
        }
        match page.next_token {
            Some(token) => request.continuation = Some(token),
            None => break,
        }
    }
    eprintln!(
        "{bucket}: {} current, {} rewrapped, {} under an older key, {} under a customer key, {} plaintext, {} unreadable",
        tally.current,
        tally.rewrapped,
        tally.old_key,
        tally.customer_key,
        tally.plaintext,
        tally.unreadable
    );
    // SSE-C objects are ciphertext (their footer key under the current key): reported, not
    // failed.
    Ok(tally.old_key + tally.plaintext + tally.unreadable == 0)
}
