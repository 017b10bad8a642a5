//! Hot reload: a thread checks every plugin's component file each second (and at once on
//! SIGHUP). A file whose contents changed is loaded and, if it compiles and fits the world,
//! serves new requests; requests under way finish on the component they started with. A file
//! that does not load is refused with the reason logged, and the old component keeps serving;
//! it is tried again only when the file changes again.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, SystemTime};

use sha2::{Digest as _, Sha256};

use super::{Plugins, load_component};

/// How often component files are looked at.
const POLL: Duration = Duration::from_secs(1);

/// A component file as seen: its size and modification time (cheap to compare each second)
/// and, once read, the SHA-256 of its contents (a file touched but not changed is not reloaded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    sha256: [u8; 32],
}

impl Stamp {
    pub fn of(path: &Path, contents: &[u8]) -> Self {
        let (len, modified) = look(path).unwrap_or((contents.len() as u64, None));
        Self {
            len,
            modified,
            sha256: Sha256::digest(contents).into(),
        }
    }
}

fn look(path: &Path) -> Option<(u64, Option<SystemTime>)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()))
}

/// Asks the reload thread to look now (SIGHUP). Dropping every handle stops the thread.
#[derive(Debug, Clone)]
pub struct Reloader {
    nudge: Sender<()>,
}

impl Reloader {
    pub fn reload_now(&self) {
        let _ = self.nudge.send(());
    }
}

/// Starts the reload thread for `plugins`.
pub fn watch(plugins: Arc<Plugins>) -> Reloader {
    let (nudge, wake) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("sluice-plugin-reload".into())
        .spawn(move || run(&plugins, &wake))
        .expect("starting the plugin reload thread");
    Reloader { nudge }
}

fn run(plugins: &Plugins, wake: &Receiver<()>) {
    // Per plugin, the file as last looked at, loaded or not: a file that failed is not tried
    // again until it changes.
    let mut seen: HashMap<String, (u64, Option<SystemTime>)> = plugins
        .slots()
        .map(|s| {
            let stamp = &s.current().stamp;
            (s.config.name.clone(), (stamp.len, stamp.modified))
        })
        .collect();
    loop {
        let forced = match wake.recv_timeout(POLL) {
            Ok(()) => true,
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        for slot in plugins.slots() {
            let path = &slot.config.component;
            let Some(now) = look(path) else {
                continue;
            };
            let name = &slot.config.name;
            if !forced && seen.get(name) == Some(&now) {
                continue;
            }
            seen.insert(name.clone(), now);
            let contents = match std::fs::read(path) {
                Ok(contents) => contents,
                Err(err) => {
                    tracing::error!(target: "sluice::plugin", plugin = name.as_str(), path = %path.display(), error = %err, "plugin reload: cannot read the component; the old one keeps serving");
                    continue;
                }
            };
            if Sha256::digest(&contents)[..] == slot.current().stamp.sha256[..] {
                continue;
            }
            match load_component(plugins.engine(), &slot.config, path) {
                Ok(loaded) => {
                    slot.replace(loaded);
                    tracing::info!(target: "sluice::plugin", plugin = name.as_str(), path = %path.display(), "plugin reloaded");
                }
                Err(err) => {
                    tracing::error!(target: "sluice::plugin", plugin = name.as_str(), error = %err, "plugin reload refused; the old component keeps serving");
                }
            }
        }
    }
}
