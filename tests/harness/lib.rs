//! The end-to-end harness: starts the real `sluice` binary on 127.0.0.1 with an ephemeral port
//! and a fresh data directory, waits for its readiness line (never a sleep), and stops it with
//! SIGTERM when dropped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub mod upstream;

/// How long the server may take to print its readiness line.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a SIGTERM may take to end the server.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

pub const ACCESS_ID: &str = "E2ETESTKEY000001";
pub const REGION: &str = "us-east-1";

/// Options for one server.
#[derive(Debug, Clone)]
pub struct Options {
    pub tls: bool,
    /// Plain HTTP only: `danger_accept_unsigned_payload`. On by default in tests (loopback):
    /// the Rust SDK streams file bodies unsigned, with a trailing checksum, even over plain HTTP.
    pub accept_unsigned: bool,
    /// Extra YAML appended under `limits:`.
    pub limits: String,
    /// Put the data directory on a tmpfs of this size (e.g. "24m"), to fill the disk on purpose.
    /// Needs root (CI runs as root).
    pub tmpfs_data: Option<&'static str>,
    /// Extra entries under `backends:` (each line indented by two spaces), e.g. upstreams from
    /// [`upstream::Upstream::backend_yaml`].
    pub backends: String,
    /// The `e2e` tenant's routes (lines of `      - { bucket: ..., backend: ... }`), tried
    /// before its catch-all route to the local backend.
    pub routes: String,
}

#[derive(Debug)]
pub struct Sluice {
    child: Option<Child>,
    pub endpoint: String,
    pub addr: std::net::SocketAddr,
    pub dir: tempfile::TempDir,
    pub secret: String,
    pub stderr_log: PathBuf,
    tmpfs: Option<TmpfsMount>,
}

/// The `sluice` binary built by `cargo build -p sluice`, next to this test's own target dir.
pub fn bin() -> PathBuf {
    if let Some(path) = std::env::var_os("SLUICE_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>");
    let bin = profile_dir.join("sluice");
    assert!(
        bin.exists(),
        "{} not found: build it first with `cargo build -p sluice` (tests/run.sh does)",
        bin.display()
    );
    bin
}

/// A random 40-character base64 secret.
pub fn random_secret() -> String {
    use base64::Engine as _;
    let bytes: [u8; 30] = rand::random();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

impl Default for Options {
    fn default() -> Self {
        Self {
            tls: false,
            accept_unsigned: true,
            limits: String::new(),
            tmpfs_data: None,
            backends: String::new(),
            routes: String::new(),
        }
    }
}

impl Sluice {
    pub fn start() -> Self {
        Self::start_with(Options::default())
    }

    pub fn start_with(options: Options) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let secret = random_secret();
        let master = {
            use base64::Engine as _;
            let bytes: [u8; 32] = rand::random();
            base64::engine::general_purpose::STANDARD.encode(bytes)
        };
        let listener = if options.tls {
            let out = run(Command::new(bin())
                .args(["dev-cert", "--out"])
                .arg(dir.path().join("certs")));
            assert!(
                out.status.success(),
                "dev-cert failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            "    tls: { cert: certs/cert.pem, key: certs/key.pem }".to_owned()
        } else {
            format!(
                "    danger_plain_http: true\n    danger_accept_unsigned_payload: {}",
                options.accept_unsigned
            )
        };
        let config = [
            "listeners:".to_owned(),
            "  - bind: 127.0.0.1:0".to_owned(),
            listener,
            "s3:".to_owned(),
            format!("  region: {REGION}"),
            "  base_domains: [s3.localhost]".to_owned(),
            "limits:".to_owned(),
            "  shutdown_grace: 20s".to_owned(),
            options.limits.clone(),
            "key_store:".to_owned(),
            "  path: keys.yaml".to_owned(),
            format!("  master_key: \"{master}\""),
            "backends:".to_owned(),
            "  local: { type: local, path: data }".to_owned(),
            options.backends.clone(),
            "tenants:".to_owned(),
            "  - name: e2e".to_owned(),
            "    keys:".to_owned(),
            format!("      - access_id: {ACCESS_ID}"),
            format!("        secret: \"{secret}\""),
            "    routes:".to_owned(),
            options.routes.clone(),
            "      - { bucket: \"*\", backend: local }".to_owned(),
            "  - name: other".to_owned(),
            "    routes:".to_owned(),
            "      - { bucket: \"*\", backend: local }".to_owned(),
        ]
        .into_iter()
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n");
        std::fs::write(dir.path().join("sluice.yaml"), config).expect("write config");
        let tmpfs = options
            .tmpfs_data
            .map(|size| TmpfsMount::new(&dir.path().join("data"), size));
        let stderr_log = dir.path().join("sluice.log");
        let mut server = Self {
            child: None,
            endpoint: String::new(),
            addr: "127.0.0.1:0".parse().unwrap(),
            dir,
            secret,
            stderr_log,
            tmpfs,
        };
        server.launch();
        server
    }

    /// Starts the binary on this server's config and data, and waits for its readiness line.
    fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stderr_log)
            .expect("log file");
        let mut child = Command::new(bin())
            .arg("serve")
            .arg("--config")
            .arg(self.config_path())
            .env("SLUICE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start sluice");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("sluice listening on ") {
                    let _ = tx.send(url.to_owned());
                }
            }
        });
        let endpoint = match rx.recv_timeout(START_TIMEOUT) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                panic!("sluice did not become ready: {}", self.log());
            }
        };
        self.addr = endpoint
            .rsplit("//")
            .next()
            .unwrap()
            .parse()
            .expect("listener address");
        self.endpoint = endpoint;
        self.child = Some(child);
    }

    /// Kills the server with SIGKILL (no chance to clean up), then starts it again on the same
    /// config and data directory. The new process listens on a new port.
    pub fn crash_and_restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.launch();
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("sluice.yaml")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn cert_path(&self) -> PathBuf {
        self.dir.path().join("certs/cert.pem")
    }

    /// Runs `sluice keys <args> --config <this server's config>`.
    pub fn keys(&self, args: &[&str]) -> Output {
        run(Command::new(bin())
            .arg("keys")
            .args(args)
            .arg("--config")
            .arg(self.config_path()))
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends SIGTERM and waits (bounded) for the process to exit; returns its exit status.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return child.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }
}

impl Drop for Sluice {
    fn drop(&mut self) {
        self.stop();
        // The mount (if any) goes after the server is gone.
        self.tmpfs.take();
    }
}

/// A tmpfs mounted for one test, unmounted on drop.
#[derive(Debug)]
struct TmpfsMount {
    path: PathBuf,
}

impl TmpfsMount {
    fn new(path: &Path, size: &str) -> Self {
        std::fs::create_dir_all(path).expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mounting a tmpfs failed (this test needs root, as in CI): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self {
            path: path.to_path_buf(),
        }
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("run command")
}
