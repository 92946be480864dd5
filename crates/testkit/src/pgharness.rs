//! Throwaway PostgreSQL server for tests (and benchmarks).
//!
//! Starts Debian's PostgreSQL (`/usr/lib/postgresql/*/bin`) in a fresh temp
//! directory, listening on a private unix socket (optionally also on a TCP port
//! on 127.0.0.1), with `fsync=off`. The server is stopped and the directory
//! deleted on `Drop`, which also runs when a test panics.
//!
//! `initdb` refuses to run as root; when the current user is root the server
//! commands run as the system user `pgharness` (created with `useradd --system`
//! if missing) via `setpriv`.
//!
//! ```no_run
//! let pg = testkit::pgharness::PgHarness::start().unwrap();
//! let url = pg.create_db("t1").unwrap();
//! let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
//! ```

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

const RUN_AS: &str = "pgharness";

pub struct PgHarness {
    dir: PathBuf,
    bin: PathBuf,
    run_as_other: bool,
    port: Option<u16>,
}

#[derive(Debug)]
pub struct HarnessError(pub String);

impl std::fmt::Display for HarnessError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pgharness: {}", self.0)
    }
}
impl std::error::Error for HarnessError {}

fn err<T>(msg: impl Into<String>) -> Result<T, HarnessError> {
    Err(HarnessError(msg.into()))
}

/// Directory of the newest installed PostgreSQL server binaries.
pub fn find_bin_dir() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("PGHARNESS_BIN") {
        return Some(PathBuf::from(p));
    }
    let mut best: Option<(u32, PathBuf)> = None;
    for e in std::fs::read_dir("/usr/lib/postgresql").ok()?.flatten() {
        let v: u32 = match e.file_name().to_string_lossy().parse() {
            Ok(v) => v,
            Err(_) => continue,
        };
        let bin = e.path().join("bin");
        if bin.join("initdb").exists() && best.as_ref().is_none_or(|(bv, _)| v > *bv) {
            best = Some((v, bin));
        }
    }
    best.map(|(_, b)| b)
}

fn is_root() -> bool {
    // The owner of /proc/self is the effective uid (no libc dependency needed).
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

static USER_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn user_exists() -> bool {
    Command::new("id")
        .arg("-u")
        .arg(RUN_AS)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn ensure_user() -> Result<(), HarnessError> {
    let _g = USER_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if user_exists() {
        return Ok(());
    }
    let out = Command::new("useradd")
        .args(["--system", "--no-create-home", RUN_AS])
        .output()
        .map_err(|e| HarnessError(format!("useradd: {e}")))?;
    // A parallel test may have created it meanwhile (exit 9 = already exists).
    if !out.status.success() && out.status.code() != Some(9) {
        return err(format!(
            "useradd {RUN_AS} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    // Another process may still be writing /etc/passwd: wait until the user resolves.
    for _ in 0..50 {
        if user_exists() {
            std::thread::sleep(std::time::Duration::from_millis(100));
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    err(format!("user {RUN_AS} does not resolve after useradd"))
}

/// A free TCP port on 127.0.0.1 (best effort: bind port 0 and release it).
pub fn free_port() -> Result<u16, HarnessError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| HarnessError(format!("bind: {e}")))?;
    Ok(l.local_addr()
        .map_err(|e| HarnessError(e.to_string()))?
        .port())
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl PgHarness {
    /// Start a server on a unix socket only.
    pub fn start() -> Result<Self, HarnessError> {
        Self::start_opts(false)
    }

    /// Start a server that also listens on 127.0.0.1:<free port>.
    pub fn start_with_tcp() -> Result<Self, HarnessError> {
        Self::start_opts(true)
    }

    /// Start a server on 127.0.0.1:<free port> that also accepts TLS (`ssl=on`) with a
    /// fresh self-signed certificate for `127.0.0.1`/`localhost`; see
    /// [`PgHarness::ssl_cert`] and [`PgHarness::tcp_url`].
    pub fn start_with_ssl() -> Result<Self, HarnessError> {
        Self::start_opts_ssl(true, true)
    }

    fn start_opts(tcp: bool) -> Result<Self, HarnessError> {
        Self::start_opts_ssl(tcp, false)
    }

    fn start_opts_ssl(tcp: bool, ssl: bool) -> Result<Self, HarnessError> {
        Self::start_with_settings(tcp, ssl, &[])
    }

    /// Start a server with extra `postgresql.conf` settings (name, value), e.g. a Citus node
    /// (see [`crate::citus`]).
    pub fn start_with_settings(
        tcp: bool,
        ssl: bool,
        settings: &[(&str, &str)],
    ) -> Result<Self, HarnessError> {
        let bin = find_bin_dir().ok_or_else(|| {
            HarnessError(
                "no PostgreSQL server found under /usr/lib/postgresql/*/bin \
                 (apt-get install postgresql-15)"
                    .into(),
            )
        })?;
        let run_as_other = is_root();
        if run_as_other {
            ensure_user()?;
        }
        sweep_stale(&bin, run_as_other);
        // Short path: the unix socket path must stay under ~100 bytes.
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = PathBuf::from(format!("/tmp/pgh-{}-{}", std::process::id(), n));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| HarnessError(format!("mkdir: {e}")))?;
        let mut h = PgHarness {
            dir,
            bin,
            run_as_other,
            port: None,
        };
        if run_as_other {
            let st = Command::new("chown")
                .arg(format!("{RUN_AS}:{RUN_AS}"))
                .arg(&h.dir)
                .status()
                .map_err(|e| HarnessError(format!("chown: {e}")))?;
            if !st.success() {
                return err("chown of the harness dir failed");
            }
        }
        let data = h.dir.join("data");
        h.run(
            "initdb",
            &[
                "-D",
                path_str(&data)?,
                "-A",
                "trust",
                "-U",
                "app",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale",
                "C",
            ],
        )?;
        let mut opts = format!(
            "-c listen_addresses='' -k {} -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=50",
            path_str(&h.dir)?
        );
        if tcp {
            let port = free_port()?;
            opts = format!(
                "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off \
                 -c synchronous_commit=off -c full_page_writes=off -c max_connections=50",
                path_str(&h.dir)?
            );
            h.port = Some(port);
        }
        if ssl {
            let ck = rcgen::generate_simple_self_signed(vec![
                "127.0.0.1".to_string(),
                "localhost".to_string(),
            ])
            .map_err(|e| HarnessError(format!("certificate: {e}")))?;
            let (cert, key) = (h.dir.join("server.crt"), h.dir.join("server.key"));
            std::fs::write(&cert, ck.cert.pem()).map_err(|e| HarnessError(e.to_string()))?;
            std::fs::write(&key, ck.signing_key.serialize_pem())
                .map_err(|e| HarnessError(e.to_string()))?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| HarnessError(e.to_string()))?;
            if run_as_other {
                let st = Command::new("chown")
                    .arg(format!("{RUN_AS}:{RUN_AS}"))
                    .arg(&cert)
                    .arg(&key)
                    .status()
                    .map_err(|e| HarnessError(format!("chown: {e}")))?;
                if !st.success() {
                    return err("chown of the certificate failed");
                }
            }
            opts.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                path_str(&cert)?,
                path_str(&key)?
            ));
        }
        for (name, value) in settings {
            if value.contains('\'')
                || !name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_' || c == '.')
            {
                return err(format!("bad setting {name}"));
            }
            // pg_ctl starts the server through the shell: quoted, a value may hold spaces.
            opts.push_str(&format!(" -c {name}='{value}'"));
        }
        // Extra server settings for benchmarks (e.g. shared_buffers): PGHARNESS_SETTINGS
        // = "name=value,name=value".
        if let Ok(extra) = std::env::var("PGHARNESS_SETTINGS") {
            for kv in extra.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let ok = kv.split_once('=').is_some_and(|(k, v)| {
                    !k.is_empty()
                        && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                        && !v.is_empty()
                        && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '.')
                });
                if !ok {
                    return err(format!("PGHARNESS_SETTINGS: bad setting {kv:?}"));
                }
                opts.push_str(&format!(" -c {kv}"));
            }
        }
        let log = h.dir.join("log");
        h.run(
            "pg_ctl",
            &[
                "-D",
                path_str(&data)?,
                "-l",
                path_str(&log)?,
                "-w",
                "-t",
                "60",
                "-o",
                &opts,
                "start",
            ],
        )?;
        Ok(h)
    }

    fn run(&self, prog: &str, args: &[&str]) -> Result<(), HarnessError> {
        let exe = self.bin.join(prog);
        let mut cmd = if self.run_as_other {
            let mut c = Command::new("setpriv");
            c.args([
                &format!("--reuid={RUN_AS}"),
                &format!("--regid={RUN_AS}"),
                "--clear-groups",
            ])
            .arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        cmd.args(args).current_dir(&self.dir);
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .map_err(|e| HarnessError(format!("{prog}: {e}")))?;
        if !out.status.success() {
            let log = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
            return err(format!(
                "{prog} failed: {}{}\n{log}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    }

    /// The socket directory.
    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    /// TCP port, when started with [`PgHarness::start_with_tcp`].
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The server certificate (PEM) of a server started with [`PgHarness::start_with_ssl`].
    pub fn ssl_cert(&self) -> PathBuf {
        self.dir.join("server.crt")
    }

    /// Connection string over TCP to 127.0.0.1 (for TLS), as superuser `app`.
    pub fn tcp_url(&self, db: &str) -> Option<String> {
        self.port
            .map(|p| format!("host=127.0.0.1 port={p} user=app dbname={db}"))
    }

    /// Connection string (key=value form) for database `db` as superuser `app`.
    pub fn url(&self, db: &str) -> String {
        self.url_as("app", db)
    }

    /// Connection string for database `db` as `user` (trust auth: no password).
    pub fn url_as(&self, user: &str, db: &str) -> String {
        let port = self.port.map(|p| format!(" port={p}")).unwrap_or_default();
        format!("host={} user={user} dbname={db}{port}", self.dir.display())
    }

    /// Create a fresh database and return its connection string.
    pub fn create_db(&self, name: &str) -> Result<String, HarnessError> {
        let mut c = postgres::Client::connect(&self.url("postgres"), postgres::NoTls)
            .map_err(|e| HarnessError(format!("connect: {e}")))?;
        c.batch_execute(&format!("CREATE DATABASE \"{}\"", name.replace('"', "")))
            .map_err(|e| HarnessError(format!("create database: {e}")))?;
        Ok(self.url(name))
    }
}

/// Stop and delete servers left by harness processes that died without running
/// `Drop` (e.g. a test binary killed with SIGKILL): `/tmp/pgh-<pid>-<n>` whose pid is gone.
fn sweep_stale(bin: &Path, run_as_other: bool) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let Ok(rd) = std::fs::read_dir("/tmp") else {
            return;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix("pgh-") else {
                continue;
            };
            let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
                continue;
            }
            let h = PgHarness {
                dir: e.path(),
                bin: bin.to_path_buf(),
                run_as_other,
                port: None,
            };
            drop(h); // Drop stops the server (if any) and removes the directory.
        }
    });
}

fn path_str(p: &Path) -> Result<&str, HarnessError> {
    p.to_str()
        .ok_or_else(|| HarnessError("non-UTF-8 temp path".into()))
}

impl Drop for PgHarness {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        if let Some(d) = data.to_str() {
            let _ = self.run("pg_ctl", &["-D", d, "-m", "immediate", "-w", "stop"]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
