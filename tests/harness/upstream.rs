//! Independent S3 servers, started on 127.0.0.1 as upstreams behind Sluice, with signature
//! checking on: s3s-fs (checks SigV4 headers, presigned URLs, payload hashes and aws-chunked
//! signatures) and moto in server mode (checks header signatures against its IAM keys; checks no
//! payloads, which makes it the upstream that shows whether Sluice itself held back a bad body).
//!
//! Both are installed by `tests/upstreams/install.sh` and `tests/python/requirements.txt`; the
//! test runner exports `SLUICE_S3S_FS` (the s3s-fs binary) and `SLUICE_VENV` (moto's venv).
//! Readiness is each server's own "listening" line, read with a bounded wait, never a sleep.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    S3sFs,
    Moto,
}

/// A running upstream S3 server, killed on drop.
#[derive(Debug)]
pub struct Upstream {
    pub kind: Kind,
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    /// s3s-fs: where it keeps buckets (one directory each) and objects.
    pub dir: tempfile::TempDir,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The s3s-fs binary: `SLUICE_S3S_FS`, else installed now by `tests/upstreams/install.sh`.
pub fn s3s_fs_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("SLUICE_S3S_FS") {
        return PathBuf::from(path);
    }
    let out = Command::new("bash")
        .arg(repo().join("tests/upstreams/install.sh"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run tests/upstreams/install.sh");
    assert!(out.status.success(), "installing s3s-fs failed");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// The venv holding moto and boto3: `SLUICE_VENV`, else the default of `tests/run.sh`.
pub fn venv() -> PathBuf {
    std::env::var_os("SLUICE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/sluice/venv")
        })
}

/// Starts `cmd` and waits for a line on its stderr or stdout containing `http://127.0.0.1:`,
/// returning the address that follows.
fn spawn_and_read_address(mut cmd: Command, what: &str, log: &std::path::Path) -> (Child, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {what}: {e}"));
    let (tx, rx) = mpsc::channel();
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        let log = log.to_path_buf();
        std::thread::spawn(move || {
            use std::io::Write;
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .ok();
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if let Some(f) = file.as_mut() {
                    let _ = writeln!(f, "{line}");
                }
                if let Some(at) = line.find("http://127.0.0.1:") {
                    let addr: String = line[at..]
                        .chars()
                        .take_while(|c| !c.is_whitespace())
                        .collect();
                    let _ = tx.send(addr.trim_end_matches('/').to_owned());
                }
            }
        });
    }
    match rx.recv_timeout(START_TIMEOUT) {
        Ok(addr) => (child, addr),
        Err(_) => {
            let _ = child.kill();
            panic!(
                "{what} did not report its address: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
    }
}

impl Upstream {
    /// s3s-fs with its own key, on an ephemeral port.
    pub fn s3s_fs() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("data dir");
        let access_key = format!("S3SFS{}", hex_id());
        let secret_key = crate::random_secret();
        let mut cmd = Command::new(s3s_fs_bin());
        cmd.env("RUST_LOG", "s3s_fs=info")
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(["--access-key", &access_key, "--secret-key", &secret_key])
            .arg(&data);
        let (child, endpoint) = spawn_and_read_address(cmd, "s3s-fs", &dir.path().join("log"));
        Self {
            kind: Kind::S3sFs,
            child: Some(child),
            endpoint,
            access_key,
            secret_key,
            dir,
        }
    }

    /// moto in server mode, an IAM key created for Sluice, then authentication switched on.
    pub fn moto() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let bin = venv().join("bin");
        let mut cmd = Command::new(bin.join("moto_server"));
        cmd.args(["-H", "127.0.0.1", "-p", "0"]);
        let (child, endpoint) = spawn_and_read_address(cmd, "moto", &dir.path().join("log"));
        let mut upstream = Self {
            kind: Kind::Moto,
            child: Some(child),
            endpoint,
            access_key: String::new(),
            secret_key: String::new(),
            dir,
        };
        // moto prints its address before it serves: the bootstrap's first call retries until
        // it answers (boto3's own bounded retries).
        let out = Command::new(bin.join("python"))
            .arg(repo().join("tests/upstreams/moto_bootstrap.py"))
            .arg(&upstream.endpoint)
            .env("AWS_MAX_ATTEMPTS", "10")
            .env("AWS_RETRY_MODE", "standard")
            .stdin(Stdio::null())
            .output()
            .expect("run moto_bootstrap.py");
        assert!(
            out.status.success(),
            "moto bootstrap failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut words = text.split_whitespace();
        upstream.access_key = words.next().expect("access key").to_owned();
        upstream.secret_key = words.next().expect("secret key").to_owned();
        upstream
    }

    /// The `backends:` entry naming this server, for a Sluice config.
    pub fn backend_yaml(&self, name: &str, profile: &str) -> String {
        format!(
            "  {name}:\n    type: s3\n    profile: {profile}\n    endpoint: {}\n    region: us-east-1\n    addressing: path\n    access_key_id: {}\n    secret_access_key: \"{}\"\n    first_byte_timeout: 20s\n    idle_timeout: 20s\n    connect_timeout: 5s",
            self.endpoint, self.access_key, self.secret_key
        )
    }

    /// Stops the server abruptly (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.kill();
    }
}

fn hex_id() -> String {
    let bytes: [u8; 6] = rand::random();
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}
