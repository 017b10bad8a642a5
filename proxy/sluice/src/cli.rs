//! The `sluice` command line: `serve`, `check`, `keys …`, `dev-cert`, `master-key`, `decrypt`,
//! `scan`, `rewrap`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::at_rest::Action;
use crate::config::{self, Config};
use crate::gateway::Gateway;
use crate::keys::{KeyState, KeyStore};

/// How often a running server looks at the key store file for changes.
const KEY_STORE_POLL: Duration = Duration::from_secs(1);

#[derive(Debug, Parser)]
#[command(name = "sluice", version, about = "Sluice, an S3 edge gateway")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a config file and print every error with its place.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Manage tenants' HMAC keys in the key store named by the config.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        #[arg(long, short, global = true)]
        tenant: Option<String>,
    },
    /// Write a self-signed certificate and key for development (cert.pem, key.pem).
    DevCert {
        #[arg(long, default_value = "certs")]
        out: PathBuf,
        /// Names the certificate is valid for.
        #[arg(long = "name", default_values = ["localhost", "127.0.0.1", "::1"])]
        names: Vec<String>,
    },
    /// Print a new random master key (base64) for `key_store.master_key`.
    MasterKey,
    /// A plugin author's tools: does a component fit the plugin world, and what it decides.
    Plugin {
        #[command(subcommand)]
        action: PluginAction,
    },
    /// Decrypt an encrypted object offline, from its stored bytes (as the storage holds them:
    /// one stream, or a multipart object's streams end to end) and its envelope (the
    /// `sluice-enc` metadata), with the config's `encryption` keys. Every segment and footer is
    /// checked; the object's ETag is printed on stderr.
    Decrypt {
        #[arg(long, short)]
        config: PathBuf,
        /// The envelope: `v1;seg=...;kek=...;dk=...`.
        #[arg(long)]
        envelope: String,
        #[arg(long = "in")]
        input: PathBuf,
        #[arg(long = "out")]
        output: PathBuf,
    },
    /// Report every object of a bucket that is not ciphertext under the current key
    /// (plaintext, an older key, an SSE-C key, or damaged), reading the backend directly. Exits
    /// 1 if there is any. A local backend must not be in use by a running server.
    Scan {
        #[arg(long, short)]
        config: PathBuf,
        /// The tenant whose bucket it is (needed if the config has several).
        #[arg(long, short)]
        tenant: Option<String>,
        #[arg(long, short)]
        bucket: String,
    },
    /// Rewrap the data keys of a bucket's objects under the current key, keeping their stored
    /// bytes. Safe to interrupt; run again (or with --start-after) to resume.
    Rewrap {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long, short)]
        tenant: Option<String>,
        #[arg(long, short)]
        bucket: String,
        /// Resume after this key (as an interrupted run printed it).
        #[arg(long)]
        start_after: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum PluginAction {
    /// Whether FILE fits the world sluice:plugin/plugin@0.1.0, and what it imports.
    Check { file: PathBuf },
    /// Runs FILE on the sample requests of a cases file, prints each decision, and exits
    /// non-zero when a decision differs from the one the case expects.
    Test {
        file: PathBuf,
        #[arg(long)]
        cases: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum KeysAction {
    /// Create a key; its secret is printed once and never again.
    Create,
    /// List keys (secrets are never shown).
    List,
    Deactivate {
        access_id: String,
    },
    Activate {
        access_id: String,
    },
    /// Delete an inactive key.
    Delete {
        access_id: String,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Serve { config } => serve(&config),
        Command::Check { config } => {
            let config = load(&config)?;
            // Every plugin is compiled (or taken from the cache) and checked against the world
            // and its grants, as the server will.
            if !config.plugins.modules.is_empty() {
                crate::plugins::Plugins::load(&config.plugins)?;
                for plugin in &config.plugins.modules {
                    println!(
                        "plugin {}: OK ({})",
                        plugin.name,
                        plugin.component.display()
                    );
                }
            }
            println!(
                "{}: OK ({} listener(s), {} tenant(s), {} backend(s))",
                config.source.display(),
                config.listeners.len(),
                config.tenants.len(),
                config.backends.len()
            );
            Ok(())
        }
        Command::Keys {
            action,
            config,
            tenant,
        } => {
            let config = config.ok_or("--config is required")?;
            keys(action, &load(&config)?, tenant.as_deref())
        }
        Command::DevCert { out, names } => {
            crate::server::tls::write_dev_cert(&out, names)?;
            println!("wrote {0}/cert.pem and {0}/key.pem", out.display());
            Ok(())
        }
        Command::Decrypt {
            config,
            envelope,
            input,
            output,
        } => {
            let config = load(&config)?;
            let keyring = config
                .keyring
                .as_ref()
                .ok_or("the config has no encryption section")?;
            let etag = crate::decrypt::decrypt_file(keyring, &envelope, &input, &output)?;
            eprintln!(
                "decrypted {} to {} (ETag \"{etag}\")",
                input.display(),
                output.display()
            );
            Ok(())
        }
        Command::Scan {
            config,
            tenant,
            bucket,
        } => at_rest(&config, tenant, &bucket, None, Action::Scan),
        Command::Rewrap {
            config,
            tenant,
            bucket,
            start_after,
        } => at_rest(&config, tenant, &bucket, start_after, Action::Rewrap),
        Command::Plugin { action } => match action {
            PluginAction::Check { file } => crate::plugin_tool::check(&file),
            PluginAction::Test { file, cases } => crate::plugin_tool::test(&file, &cases),
        },
        Command::MasterKey => {
            println!("{}", sluice_crypto::MasterKey::generate_base64());
            Ok(())
        }
    }
}

fn at_rest(
    config: &Path,
    tenant: Option<String>,
    bucket: &str,
    start_after: Option<String>,
    action: Action,
) -> Result<(), String> {
    init_tracing();
    let config = load(config)?;
    match crate::at_rest::run(config, tenant.as_deref(), bucket, start_after, action)? {
        true => Ok(()),
        false => Err(match action {
            Action::Scan => "objects not encrypted under the current key were found".into(),
            Action::Rewrap => "some objects could not be rewrapped (see above)".into(),
        }),
    }
}

fn load(path: &Path) -> Result<Config, String> {
    config::load(path).map_err(|errors| {
        format!("{}: invalid config\n{errors}", path.display())
            .trim_end()
            .to_owned()
    })
}

fn serve(path: &Path) -> Result<(), String> {
    init_tracing();
    let config = load(path)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let listeners_config = config.listeners.clone();
        let gateway = Arc::new(Gateway::new(config).await?);
        let mut listeners = Vec::new();
        for l in &listeners_config {
            listeners.push(crate::server::bind(l).await?);
        }
        // The readiness signal scripts and tests wait for: one line per listener, on stdout.
        let mut stdout = std::io::stdout().lock();
        for l in &listeners {
            let _ = writeln!(stdout, "sluice listening on {}", l.url());
        }
        let _ = stdout.flush();
        drop(stdout);
        let watcher = gateway.keys().spawn_watcher(KEY_STORE_POLL);
        let maintenance = gateway.spawn_maintenance();
        let reload = gateway.plugins().map(|plugins| {
            let reloader = crate::plugins::reload::watch(Arc::clone(plugins));
            tokio::spawn(async move {
                use tokio::signal::unix::{SignalKind, signal};
                let Ok(mut hup) = signal(SignalKind::hangup()) else {
                    return;
                };
                while hup.recv().await.is_some() {
                    tracing::info!("SIGHUP: reloading plugins");
                    reloader.reload_now();
                }
            })
        });
        crate::server::serve(gateway, listeners, shutdown_signal()).await;
        watcher.abort();
        if let Some(reload) = reload {
            reload.abort();
        }
        maintenance.iter().for_each(tokio::task::JoinHandle::abort);
        Ok(())
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

fn keys(action: KeysAction, config: &Config, tenant: Option<&str>) -> Result<(), String> {
    let ks = config
        .key_store
        .as_ref()
        .ok_or("the config has no key_store section")?;
    let store = KeyStore::new(&ks.path);
    let tenant_config = |name: Option<&str>| {
        let name = name.ok_or("--tenant is required")?;
        config
            .tenants
            .iter()
            .find(|t| t.id.as_str() == name)
            .ok_or_else(|| format!("no tenant named {name:?} in the config"))
    };
    match action {
        KeysAction::Create => {
            let t = tenant_config(tenant)?;
            let key = store
                .create(&ks.master_key, t.id.as_str(), t.keys.len())
                .map_err(|e| e.to_string())?;
            println!("access_id: {}", key.record.access_id);
            println!("secret:    {}", key.secret.expose());
            eprintln!(
                "The secret is shown only now; it is stored encrypted and cannot be shown again."
            );
        }
        KeysAction::List => {
            println!(
                "{:<28} {:<16} {:<9} {:<8} CREATED",
                "ACCESS_ID", "TENANT", "STATE", "SOURCE"
            );
            for t in config
                .tenants
                .iter()
                .filter(|t| tenant.is_none_or(|n| t.id.as_str() == n))
            {
                for k in &t.keys {
                    let state = if k.active {
                        KeyState::Active
                    } else {
                        KeyState::Inactive
                    };
                    println!(
                        "{:<28} {:<16} {:<9} {:<8} -",
                        k.access_id,
                        t.id.as_str(),
                        state,
                        "config"
                    );
                }
            }
            for k in store.list().map_err(|e| e.to_string())? {
                if tenant.is_none_or(|n| k.tenant == n) {
                    println!(
                        "{:<28} {:<16} {:<9} {:<8} {}",
                        k.access_id, k.tenant, k.state, "store", k.created
                    );
                }
            }
        }
        KeysAction::Deactivate { access_id } | KeysAction::Activate { access_id }
            if config
                .tenants
                .iter()
                .any(|t| t.keys.iter().any(|k| k.access_id == access_id)) =>
        {
            return Err(format!(
                "{access_id} is declared in the config file; change its state there"
            ));
        }
        KeysAction::Deactivate { access_id } => {
            let t = tenant_config(tenant)?;
            let r = store
                .set_state(t.id.as_str(), &access_id, KeyState::Inactive)
                .map_err(|e| e.to_string())?;
            println!("{} is now {}", r.access_id, r.state);
        }
        KeysAction::Activate { access_id } => {
            let t = tenant_config(tenant)?;
            let r = store
                .set_state(t.id.as_str(), &access_id, KeyState::Active)
                .map_err(|e| e.to_string())?;
            println!("{} is now {}", r.access_id, r.state);
        }
        KeysAction::Delete { access_id } => {
            let t = tenant_config(tenant)?;
            store
                .delete(t.id.as_str(), &access_id)
                .map_err(|e| e.to_string())?;
            println!("{access_id} deleted");
        }
    }
    Ok(())
}
