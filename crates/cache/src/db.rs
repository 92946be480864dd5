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
    /// In-memory worklist; `None` until first used and after each import.
    pub(crate) worklist_mem: std::cell::RefCell<Option<crate::worklist::WorklistMem>>,
    path: PathBuf,
    encrypted: bool,
    /// The key, kept to open the replacement file of an import and to reopen
    /// after swapping it in (`None` for the plain benchmark baseline).
    key: Option<CacheKey>,
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
        Cache::finish(conn, path, Some(key.clone()))
    }

    /// Opens a PLAIN (unencrypted) SQLite database with the same schema.
    /// Only for the import benchmark's baseline and the tests' plaintext
    /// control: never for real data.
    #[doc(hidden)]
    pub fn open_plaintext_for_benchmark(path: impl AsRef<Path>) -> Result<Cache, CacheError> {
        let path = path.as_ref();
        let conn = connect(path)?;
        Cache::finish(conn, path, None)
    }

    fn finish(conn: Connection, path: &Path, key: Option<CacheKey>) -> Result<Cache, CacheError> {
        let encrypted = key.is_some();
        let conn = configure(conn, encrypted)?;
        Ok(Cache {
            conn,
            panel_mem: std::cell::RefCell::new(None),
            worklist_mem: std::cell::RefCell::new(None),
            path: path.to_owned(),
            encrypted,
            key,
        })
    }

    /// Another connection to this cache file, with its key (a sync applies through it
    /// while this one keeps serving reads).
    pub fn second_connection(&self) -> Result<Cache, CacheError> {
        self.open_sibling(&self.path)
    }

    /// Opens (creating if missing) the database at `path` with this cache's key.
    pub(crate) fn open_sibling(&self, path: &Path) -> Result<Cache, CacheError> {
        match &self.key {
            Some(k) => Cache::open(path, k),
            None => Cache::open_plaintext_for_benchmark(path),
        }
    }

    /// `<cache>.import`: where an import builds the replacement database.
    pub(crate) fn import_path(&self) -> PathBuf {
        sidecar(&self.path, ".import")
    }

    /// Creates a fresh database at `path` (removing any leftover of a killed
    /// import) with this cache's key and cipher settings and the current
    /// schema. No journal and no syncs: the file is only used once complete,
    /// flushed by [`Cache::swap_in`]; an incomplete one is deleted.
    pub(crate) fn create_fresh(&self, path: &Path) -> Result<Connection, CacheError> {
        remove_db_files(path)?;
        let mut conn = connect(path)?;
        match &self.key {
            Some(k) => apply_key(&conn, k)?,
            None => conn.execute_batch(&format!("PRAGMA page_size = {PAGE_SIZE}"))?,
        }
        conn.execute_batch(
            "PRAGMA journal_mode = OFF;
             PRAGMA synchronous = OFF;
             PRAGMA temp_store = MEMORY;
             PRAGMA foreign_keys = ON;",
        )?;
        migrate::migrate(&mut conn)?;
        Ok(conn)
    }

    /// Closes the current connection; true if that removed the WAL, i.e. no
    /// other connection has the cache open (then its file can be replaced).
    /// Reopens in any case.
    pub(crate) fn close_alone(&mut self) -> Result<bool, CacheError> {
        self.close_conn()?;
        let alone = !sidecar(&self.path, "-wal").exists();
        self.reopen()?;
        Ok(alone)
    }

    /// Closes the connection (leaving a placeholder until [`Cache::reopen`]);
    /// if SQLite refuses, the connection stays in place.
    fn close_conn(&mut self) -> Result<(), CacheError> {
        let old = std::mem::replace(&mut self.conn, Connection::open_in_memory()?);
        old.close().map_err(|(conn, e)| {
            self.conn = conn;
            CacheError::from(e)
        })
    }

    fn reopen(&mut self) -> Result<(), CacheError> {
        let conn = connect(&self.path)?;
        if let Some(k) = &self.key {
            apply_key(&conn, k)?;
            check_key(&conn)?;
        }
        self.conn = configure(conn, self.encrypted)?;
        Ok(())
    }

    /// Atomically replaces the cache file with the complete database at
    /// `fresh` (closed): flush it, close the current connection (SQLite
    /// checkpoints and deletes the WAL), rename, flush the directory, reopen.
    /// A crash before the rename leaves the previous file; after it, the new
    /// one. If another connection still holds the cache (its WAL remains),
    /// nothing is replaced and the import fails.
    pub(crate) fn swap_in(&mut self, fresh: &Path) -> Result<(), CacheError> {
        let io = |p: &Path, e: std::io::Error| CacheError::Io {
            file: p.display().to_string(),
            reason: e.kind().to_string(),
        };
        std::fs::File::open(fresh)
            .and_then(|f| f.sync_all())
            .map_err(|e| io(fresh, e))?;
        self.close_conn()?;
        if sidecar(&self.path, "-wal").exists() {
            let _ = remove_db_files(fresh);
            self.reopen()?;
            return Err(CacheError::Import(
                "the cache is open in another connection; import not applied".into(),
            ));
        }
        let renamed = std::fs::rename(fresh, &self.path).map_err(|e| io(fresh, e));
        if renamed.is_ok() {
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
            }
        } else {
            let _ = remove_db_files(fresh);
        }
        self.reopen()?;
        *self.panel_mem.get_mut() = None;
        *self.worklist_mem.get_mut() = None;
        renamed
    }
}

/// `path` with `suffix` appended to its file name.
fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Removes a database file and its journal/WAL/shm, if present.
pub(crate) fn remove_db_files(path: &Path) -> Result<(), CacheError> {
    for suffix in ["", "-journal", "-wal", "-shm"] {
        let p = sidecar(path, suffix);
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(CacheError::Io {
                    file: p.display().to_string(),
                    reason: e.kind().to_string(),
                })
            }
        }
    }
    Ok(())
}

/// WAL, `synchronous=NORMAL`, in-memory temp store, foreign keys, default
/// page cache, busy timeout, pending migrations.
fn configure(mut conn: Connection, encrypted: bool) -> Result<Connection, CacheError> {
    {
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
        Ok(conn)
    }
}

impl Cache {
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
