//! "Copy diagnostics": plain text for support about this installation, with no PHI.
//!
//! It holds the app's version, the OS, the cache's schema, how many patients and accounts
//! the cache holds (counts only), the sync state's summary, where the data lives and the
//! end of the newest log file (logs never hold PHI: only codes, counts and kinds). It needs
//! no session (a user who cannot sign in is the one who needs support most), reads nothing
//! about any one patient and so is not audited; it never waits for the cache (a sync or an
//! import holding it is reported as busy).

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::{Config, StartupStatus, Workstation};

/// The app's log files: `<data dir>/logs/phm-workstation.<YYYY-MM-DD>.log` (UTC date),
/// rotated daily by the app, which keeps [`LOG_MAX_FILES`] of them.
pub const LOG_FILE_PREFIX: &str = "phm-workstation";
pub const LOG_FILE_SUFFIX: &str = "log";
pub const LOG_MAX_FILES: usize = 7;
/// Lines of the newest log file in the diagnostics.
pub const DIAGNOSTICS_LOG_LINES: usize = 200;

/// The folder of the log files for a data directory.
pub fn log_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("logs")
}

/// The diagnostics text. `app_version` is the app's own (the shell's package version);
/// `ws` is `None` while the cache is still opening or when it could not be opened, and
/// `startup` then says why.
pub fn diagnostics(
    app_version: &str,
    config: &Config,
    startup: &StartupStatus,
    ws: Option<&Workstation>,
) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: &str| {
        out.push_str(k);
        out.push_str(": ");
        out.push_str(v);
        out.push('\n');
    };
    line("PHM Workstation diagnostics", "no patient data");
    line(
        "generated",
        &access::time::rfc3339_from_unix_ms(access::time::now_unix_ms()),
    );
    line("app version", app_version);
    line("os", &os_name());
    line(
        "platform",
        &format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
    );
    line("demo mode", if config.demo { "yes" } else { "no" });
    line("data dir", &config.data_dir.display().to_string());
    line(
        "keyring",
        match std::env::var("PHM_KEYRING").as_deref() {
            Ok("keyutils") => "kernel keyring (PHM_KEYRING=keyutils)",
            _ => "Secret Service",
        },
    );
    line(
        "startup",
        &if startup.message.is_empty() {
            startup.phase.clone()
        } else {
            format!("{} ({})", startup.phase, startup.message)
        },
    );
    line("cache schema supported", &cache::SCHEMA_VERSION.to_string());
    match ws {
        None => line("cache", "not open"),
        Some(ws) => cache_lines(ws, &mut line),
    }
    out.push('\n');
    out.push_str(&log_section(&log_dir(&config.data_dir)));
    out
}

/// Schema, counts and sync summary; "busy" rather than waiting for a sync or an import.
fn cache_lines(ws: &Workstation, line: &mut dyn FnMut(&str, &str)) {
    let cache = match ws.cache.try_lock() {
        Ok(c) => c,
        Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
        Err(std::sync::TryLockError::WouldBlock) => {
            line("cache", "busy (a sync or an evaluation is writing)");
            return;
        }
    };
    let show = |r: Result<String, cache::CacheError>| match r {
        Ok(v) => v,
        // Cache errors name tables and SQLite codes, never a value.
        Err(e) => format!("unreadable ({e})"),
    };
    line(
        "cache schema",
        &show(cache.schema_version().map(|v| v.to_string())),
    );
    line(
        "cache cipher",
        &show(
            cache
                .cipher_version()
                .map(|v| v.unwrap_or_else(|| "none".into())),
        ),
    );
    line(
        "patients",
        &show(cache.patient_count().map(|n| n.to_string())),
    );
    line(
        "accounts",
        &show(cache.account_count().map(|n| n.to_string())),
    );
    match cache.sync_state() {
        Ok(s) => {
            line(
                "sync server set",
                if s.server_url.is_some() { "yes" } else { "no" },
            );
            line(
                "last synced",
                s.last_synced_at.as_deref().unwrap_or("never"),
            );
            line("groups synced", &s.groups.len().to_string());
            // Sync errors are plain and PHI-free (see cache::SyncState::last_error).
            if let Some(err) = &s.last_error {
                let at = s.last_error_at.as_deref().unwrap_or("?");
                line("last sync error", &format!("{at}: {err}"));
            }
        }
        Err(e) => line("sync", &format!("unreadable ({e})")),
    }
    line(
        "actions waiting to sync",
        &show(cache.outbox_pending().map(|p| p.len().to_string())),
    );
}

/// `PRETTY_NAME` of /etc/os-release, else the OS family.
fn os_name() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| os_release_pretty_name(&s))
        .unwrap_or_else(|| std::env::consts::OS.to_string())
}

fn os_release_pretty_name(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let v = l.trim().strip_prefix("PRETTY_NAME=")?;
        Some(v.trim().trim_matches('"').trim_matches('\'').to_string())
    })
}

/// The newest of the app's log files in `dir` (the date in the name sorts them).
pub fn newest_log_file(dir: &Path) -> Option<PathBuf> {
    let prefix = format!("{LOG_FILE_PREFIX}.");
    let suffix = format!(".{LOG_FILE_SUFFIX}");
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            (name.starts_with(&prefix) && name.ends_with(&suffix)).then_some(name)
        })
        .max()
        .map(|name| dir.join(name))
}

/// The last `n` lines of a file, reading at most its last 256 KiB.
pub fn tail_lines(path: &Path, n: usize) -> std::io::Result<String> {
    const MAX_BYTES: u64 = 256 * 1024;
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let start = len.saturating_sub(MAX_BYTES);
    f.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let mut lines: Vec<&str> = text.lines().collect();
    if start > 0 && !lines.is_empty() {
        // The first line read is likely cut.
        lines.remove(0);
    }
    let keep = &lines[lines.len().saturating_sub(n)..];
    let mut out = keep.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    Ok(out)
}

fn log_section(dir: &Path) -> String {
    let Some(file) = newest_log_file(dir) else {
        return format!("log: no log file in {}\n", dir.display());
    };
    match tail_lines(&file, DIAGNOSTICS_LOG_LINES) {
        Ok(text) => format!(
            "log: last {DIAGNOSTICS_LOG_LINES} lines of {}\n{text}",
            file.display()
        ),
        Err(e) => format!("log: {} could not be read ({})\n", file.display(), e.kind()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pretty_name_from_os_release() {
        let text = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n";
        assert_eq!(
            os_release_pretty_name(text).as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(os_release_pretty_name("ID=debian\n"), None);
    }

    #[test]
    fn newest_log_and_its_tail() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(newest_log_file(dir.path()), None);
        let old = dir.path().join("phm-workstation.2025-01-01.log");
        let new = dir.path().join("phm-workstation.2025-01-02.log");
        std::fs::write(&old, "old\n").unwrap();
        let text: String = (1..=300).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&new, text).unwrap();
        std::fs::write(dir.path().join("other.2025-01-03.log"), "x\n").unwrap();
        std::fs::create_dir(dir.path().join("phm-workstation.2025-01-04.log")).unwrap();
        assert_eq!(newest_log_file(dir.path()), Some(new.clone()));

        let tail = tail_lines(&new, 200).unwrap();
        let lines: Vec<&str> = tail.lines().collect();
        assert_eq!(lines.len(), 200);
        assert_eq!(lines[0], "line 101");
        assert_eq!(lines[199], "line 300");
        assert_eq!(tail_lines(&old, 200).unwrap(), "old\n");
    }

    #[test]
    fn a_long_log_is_read_from_its_end_only() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("phm-workstation.2025-01-01.log");
        let text: String = (1..=50_000)
            .map(|i| format!("a long log line number {i}\n"))
            .collect();
        std::fs::write(&file, text).unwrap();
        let tail = tail_lines(&file, 3).unwrap();
        assert_eq!(
            tail,
            "a long log line number 49998\na long log line number 49999\na long log line number 50000\n"
        );
    }

    #[test]
    fn before_the_cache_opens() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::new(dir.path());
        let logs = log_dir(dir.path());
        std::fs::create_dir_all(&logs).unwrap();
        std::fs::write(
            logs.join("phm-workstation.2025-01-01.log"),
            "INFO startup failed code=keyring\n",
        )
        .unwrap();
        let text = diagnostics(
            "9.9.9",
            &config,
            &StartupStatus::starting("Opening the encrypted cache…"),
            None,
        );
        assert!(text.contains("app version: 9.9.9\n"), "{text}");
        assert!(text.contains("cache: not open\n"), "{text}");
        assert!(
            text.contains(&format!(
                "cache schema supported: {}\n",
                cache::SCHEMA_VERSION
            )),
            "{text}"
        );
        assert!(text.contains(&format!("data dir: {}\n", dir.path().display())));
        assert!(text.contains("startup: starting (Opening the encrypted cache…)\n"));
        assert!(
            text.ends_with("INFO startup failed code=keyring\n"),
            "{text}"
        );
    }
}
