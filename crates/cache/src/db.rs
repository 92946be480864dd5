//! Opening the SQLCipher database.

use rusqlite::{Connection, OpenFlags, OptionalExtension};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::key::{wipe_string, CacheKey};
use crate::{migrate, CacheError};

/// The open cache. One connection; wrap in a `Mutex` to share across threads.
pub struct Cache {
    pub(crate) conn: Connection,
    /// In-memory panel list; `None` until first used and after each import.
    pub(crate) panel_mem: std::cell::RefCell<Option<crate::query::PanelMem>>,
    path: PathBuf,
    encrypted: bool,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("path", &self.path)
            .field("encrypted", &self.encrypted)
            .finish_non_exhaustive()
    }
}

const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// Database page size. SQLCipher encrypts and authenticates (HMAC-SHA512)
/// each page separately, so larger pages amortize its per-page cost.
/// Part of the file format: every open must use the same value.
pub const PAGE_SIZE: u32 = 16384;

/// Page authentication: HMAC-SHA256 (hardware-accelerated by SHA-NI on
/// current x86-64 CPUs) instead of SQLCipher 4's default HMAC-SHA512.
/// Part of the file format, like [`PAGE_SIZE`].
pub const HMAC_ALGORITHM: &str = "HMAC_SHA256";

impl Cache {
    /// Opens (creating if missing) the encrypted cache at `path` with `key`.
    ///
    /// The key is checked by reading `sqlite_master` before anything is
    /// written, so a wrong key gives [`CacheError::WrongKey`] and leaves the
    /// file untouched. Then: WAL journal, `synchronous=NORMAL`,
    /// `temp_store=MEMORY` (no plaintext temp files), foreign keys on, and
    /// pending migrations.
    pub fn open(path: impl AsRef<Path>, key: &CacheKey) -> Result<Cache, CacheError> {
        let path = path.as_ref();
        if has_plain_sqlite_header(path)? {
            return Err(CacheError::NotEncrypted);
        }
        // Check the key on a read-only, immutable view of the main file:
        // SQLite then neither opens nor checkpoints an existing -wal file, nor
        // touches -shm, so a wrong key changes no byte on disk. An immutable
        // view takes no locks, so a page being rewritten by another connection
        // at that instant could read torn: retry before calling the key wrong.
        if std::fs::metadata(path)
            .map(|m| m.len() > 0)
            .unwrap_or(false)
        {
            let mut attempt = 0;
            loop {
                match probe_key(path, key) {
                    Err(CacheError::WrongKey) if attempt < 2 => {
                        attempt += 1;
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    other => break other?,
                }
            }
        }
        // cipher_memory_security stays at SQLCipher's default (off): wiping
        // every SQLite allocation costs throughput, and the PHI it would
        // protect is in this process's Rust memory anyway once displayed.
        let conn = connect(path)?;
        apply_key(&conn, key)?;
        check_key(&conn)?;
        let cipher: Option<String> = conn
            .query_row("PRAGMA cipher_version", [], |r| r.get(0))
            .optional()?;
        if cipher.is_none() {
            // Linked against plain SQLite: the key pragma was ignored.
            return Err(CacheError::Db("SQLCipher is not available".into()));
        }
        Cache::finish(conn, path, true)
    }

    /// Opens a PLAIN (unencrypted) SQLite database with the same schema.
    /// Only for the import benchmark's baseline and the tests' plaintext
    /// control: never for real data.
    #[doc(hidden)]
    pub fn open_plaintext_for_benchmark(path: impl AsRef<Path>) -> Result<Cache, CacheError> {
        let path = path.as_ref();
        let conn = connect(path)?;
        Cache::finish(conn, path, false)
    }

    fn finish(mut conn: Connection, path: &Path, encrypted: bool) -> Result<Cache, CacheError> {
        if !encrypted {
            // Same page size as the encrypted cache (no effect on an existing file).
            conn.execute_batch(&format!("PRAGMA page_size = {PAGE_SIZE}"))?;
        }
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(CacheError::Db(format!(
                "could not enable WAL (journal mode {mode})"
            )));
        }
        conn.execute_batch(
            "PRAGMA synchronous = NORMAL;
             PRAGMA temp_store = MEMORY;
             PRAGMA foreign_keys = ON;
",
        )?;
        conn.execute_batch(&format!(
            "PRAGMA cache_size = {}",
            crate::import::DEFAULT_CACHE_SIZE
        ))?;
        conn.busy_timeout(Duration::from_secs(5))?;
        migrate::migrate(&mut conn)?;
        Ok(Cache {
            conn,
            panel_mem: std::cell::RefCell::new(None),
            path: path.to_owned(),
            encrypted,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the database is encrypted (always, except the benchmark baseline).
    pub fn is_encrypted(&self) -> bool {
        self.encrypted
    }

    /// `PRAGMA user_version`.
    pub fn schema_version(&self) -> Result<i64, CacheError> {
        Ok(self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    /// SQLCipher version string, e.g. `4.6.1 community`.
    pub fn cipher_version(&self) -> Result<Option<String>, CacheError> {
        Ok(self
            .conn
            .query_row("PRAGMA cipher_version", [], |r| r.get(0))
            .optional()?)
    }

    /// An app setting.
    pub fn setting(&self, key: &str) -> Result<Option<String>, CacheError> {
        Ok(self
            .conn
            .query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()?)
    }

    /// Sets an app setting.
    pub fn set_setting(&self, key: &str, value: &str) -> Result<(), CacheError> {
        self.conn.execute(
            "INSERT INTO settings(key, value) VALUES (?1, ?2)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [key, value],
        )?;
        Ok(())
    }

    /// Sets SQLite's page cache size in KiB (default 64 MiB). A smaller cache
    /// makes large imports spill to the WAL earlier (used by tests).
    pub fn set_page_cache_kib(&self, kib: u32) -> Result<(), CacheError> {
        self.conn
            .execute_batch(&format!("PRAGMA cache_size = -{}", kib.max(64)))?;
        Ok(())
    }

    /// Writes the WAL back into the main file (e.g. before a backup).
    pub fn checkpoint(&self) -> Result<(), CacheError> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }
}

/// Opens `path` immutable and read-only and checks `key` on its page 1.
fn probe_key(path: &Path, key: &CacheKey) -> Result<(), CacheError> {
    let probe = Connection::open_with_flags(
        immutable_uri(path),
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| CacheError::Io {
        file: path.display().to_string(),
        reason: crate::db_error_message(&e),
    })?;
    apply_key(&probe, key)?;
    check_key(&probe)
}

fn apply_key(conn: &Connection, key: &CacheKey) -> Result<(), CacheError> {
    let mut pragma = format!(
        "PRAGMA key = \"x'{}'\"; PRAGMA cipher_page_size = {PAGE_SIZE}; \
         PRAGMA cipher_hmac_algorithm = {HMAC_ALGORITHM};",
        key.to_hex()
    );
    let r = conn.execute_batch(&pragma);
    wipe_string(std::mem::take(&mut pragma));
    r?;
    Ok(())
}

/// Reads `sqlite_master`: fails with `WrongKey` when page 1 does not decrypt.
fn check_key(conn: &Connection) -> Result<(), CacheError> {
    match conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    }) {
        Ok(_) => Ok(()),
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::NotADatabase =>
        {
            Err(CacheError::WrongKey)
        }
        Err(e) => Err(e.into()),
    }
}

/// `file:<percent-encoded path>?immutable=1`.
fn immutable_uri(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let mut s = String::from("file:");
    for &b in abs.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.' | b'~') {
            s.push(char::from(b));
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s.push_str("?immutable=1");
    s
}

fn connect(path: &Path) -> Result<Connection, CacheError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    Connection::open_with_flags(path, flags).map_err(|e| CacheError::Io {
        file: path.display().to_string(),
        reason: crate::db_error_message(&e),
    })
}

fn has_plain_sqlite_header(path: &Path) -> Result<bool, CacheError> {
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => {
            return Err(CacheError::Io {
                file: path.display().to_string(),
                reason: e.kind().to_string(),
            })
        }
    };
    let mut head = [0u8; 16];
    match f.read_exact(&mut head) {
        Ok(()) => Ok(&head == SQLITE_HEADER),
        Err(_) => Ok(false),
    }
}
