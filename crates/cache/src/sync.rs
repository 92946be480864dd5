//! The cache's side of panel sync from the EDW (FHIR Bulk Data Group export): the sync
//! state (server, client, per-Group `transactionTime`), the staging store for downloads in
//! progress, and the atomic apply of an export.
//!
//! * **Full** (first sync, or a new set of Groups): the panel is replaced through the import
//!   machinery (one transaction into a fresh file swapped in), fed line by line while the
//!   download goes on.
//! * **Incremental** (`_since` = the last `transactionTime`): in ONE transaction every
//!   resource is upserted by (type, id), deletions are applied (a Patient takes everything of
//!   theirs with them), the panel rows of the affected patients are rebuilt, and the new
//!   `transactionTime` is recorded. A failure or a kill leaves the previous state.
//!
//! Downloads are staged in [`SyncStage`], a second SQLCipher database beside the cache
//! (`<cache>.sync`, the same key), so nothing is ever in plaintext on disk and a killed sync
//! resumes without fetching bytes it already has.

use rusqlite::{OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::import::{
    event_kind_of_type, rebuild_panel_rows, ImportProgress, ImportSummary, Origin, Writer,
};
use crate::{Cache, CacheError, CacheKey};

/// What the cache knows about syncing from the EDW.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncState {
    pub server_url: Option<String>,
    pub client_id: Option<String>,
    /// The Groups synced so far, with their last `transactionTime`.
    pub groups: Vec<GroupSyncState>,
    pub last_synced_at: Option<String>,
    pub last_full_at: Option<String>,
    /// Plain and PHI-free; `None` after a successful sync.
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
    /// JSON the sync client stored with the last applied sync (its counts).
    pub last_report: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSyncState {
    pub group_id: String,
    /// The manifest `transactionTime` of the last applied export: the next `_since`.
    pub transaction_time: String,
    pub synced_at: String,
}

/// Which manifest list a file came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncFileKind {
    /// `output`: resources to store.
    Output,
    /// `deleted`: Bundles of `DELETE` entries.
    Deleted,
    /// `error`: OperationOutcomes (reported, never applied).
    Error,
}

impl SyncFileKind {
    fn as_str(self) -> &'static str {
        match self {
            SyncFileKind::Output => "output",
            SyncFileKind::Deleted => "deleted",
            SyncFileKind::Error => "error",
        }
    }

    fn parse(s: &str) -> Option<SyncFileKind> {
        Some(match s {
            "output" => SyncFileKind::Output,
            "deleted" => SyncFileKind::Deleted,
            "error" => SyncFileKind::Error,
            _ => return None,
        })
    }
}

/// One NDJSON line of an export, in the order it is to be applied.
#[derive(Debug, Clone)]
pub struct SyncLine {
    /// Index of the export's Group in [`SyncApply::groups`].
    pub group: usize,
    pub kind: SyncFileKind,
    /// A name for error messages (never content), e.g. `Group g1 output #3 (Patient)`.
    pub file: Arc<str>,
    pub line_no: u64,
    pub text: String,
}

/// What an apply records besides the data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncApply {
    /// Replace the whole panel (true) or upsert (false).
    pub full: bool,
    /// `(Group id, manifest transactionTime)` of each export applied, in line order.
    pub groups: Vec<(String, String)>,
    /// Stored as [`SyncState::last_report`].
    pub report: Option<String>,
}

/// What an apply changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncApplied {
    pub full: bool,
    /// Resources stored (inserted or replaced).
    pub summary: ImportSummary,
    /// Resources removed by `deleted` entries (a Patient counts once).
    pub deleted: u64,
    /// Patients whose data changed and who are in the cache now, sorted: the app
    /// re-evaluates care gaps for these only (every patient after a full sync).
    pub changed_patients: Vec<String>,
    /// Patients removed, sorted.
    pub removed_patients: Vec<String>,
}

fn now_rfc3339() -> String {
    access::time::rfc3339_from_unix_ms(access::time::now_unix_ms())
}

impl Cache {
    /// The sync state (all `None`/empty before the first sync).
    pub fn sync_state(&self) -> Result<SyncState, CacheError> {
        let mut s: SyncState = self
            .conn
            .query_row(
                "SELECT server_url, client_id, last_synced_at, last_full_at, last_error,
                        last_error_at, last_report FROM sync_state WHERE id = 1",
                [],
                |r| {
                    Ok(SyncState {
                        server_url: r.get(0)?,
                        client_id: r.get(1)?,
                        groups: Vec::new(),
                        last_synced_at: r.get(2)?,
                        last_full_at: r.get(3)?,
                        last_error: r.get(4)?,
                        last_error_at: r.get(5)?,
                        last_report: r.get(6)?,
                    })
                },
            )
            .optional()?
            .unwrap_or_default();
        let mut stmt = self.conn.prepare(
            "SELECT group_id, transaction_time, synced_at FROM sync_group ORDER BY group_id",
        )?;
        s.groups = stmt
            .query_map([], |r| {
                Ok(GroupSyncState {
                    group_id: r.get(0)?,
                    transaction_time: r.get(1)?,
                    synced_at: r.get(2)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(s)
    }

    /// Records the server and client this cache syncs from. A different server or client
    /// than before forgets the per-Group `transactionTime`s, so the next sync is full.
    /// Returns true when it changed.
    pub fn set_sync_server(&self, server_url: &str, client_id: &str) -> Result<bool, CacheError> {
        let cur = self.sync_state()?;
        if cur.server_url.as_deref() == Some(server_url)
            && cur.client_id.as_deref() == Some(client_id)
        {
            return Ok(false);
        }
        let tx = self.conn.unchecked_transaction()?;
        tx.execute(
            "INSERT INTO sync_state(id, server_url, client_id) VALUES (1, ?1, ?2)
             ON CONFLICT(id) DO UPDATE SET server_url = excluded.server_url,
               client_id = excluded.client_id",
            [server_url, client_id],
        )?;
        tx.execute("DELETE FROM sync_group", [])?;
        tx.commit()?;
        Ok(true)
    }

    /// Records a failed sync (`message` must be plain and PHI-free).
    pub fn record_sync_error(&self, message: &str) -> Result<(), CacheError> {
        // Also before any sync reached the server (no state row yet).
        self.conn.execute(
            "INSERT INTO sync_state(id, server_url, client_id, last_error, last_error_at)
             VALUES (1, '', '', ?1, ?2)
             ON CONFLICT(id) DO UPDATE SET last_error = excluded.last_error,
               last_error_at = excluded.last_error_at",
            [message, &now_rfc3339()],
        )?;
        Ok(())
    }

    /// Applies an export's lines atomically (see the module docs). `lines` may block (the
    /// download feeding it); an `Err` from it, a malformed line or any database error
    /// leaves the cache exactly as before. The server and client must have been recorded
    /// with [`Cache::set_sync_server`].
    pub fn apply_sync<I, F>(
        &mut self,
        plan: &SyncApply,
        lines: I,
        progress: F,
    ) -> Result<SyncApplied, CacheError>
    where
        I: IntoIterator<Item = Result<SyncLine, CacheError>>,
        F: FnMut(ImportProgress),
    {
        if self.sync_state()?.server_url.is_none() {
            return Err(CacheError::Import(
                "no sync server recorded; call set_sync_server first".into(),
            ));
        }
        if plan.full {
            self.apply_full(plan, lines.into_iter(), progress)
        } else {
            self.apply_incremental(plan, lines.into_iter(), progress)
        }
    }

    fn apply_full<I, F>(
        &mut self,
        plan: &SyncApply,
        lines: I,
        progress: F,
    ) -> Result<SyncApplied, CacheError>
    where
        I: Iterator<Item = Result<SyncLine, CacheError>>,
        F: FnMut(ImportProgress),
    {
        let multi = plan.groups.len() > 1;
        let mut patients: Vec<String> = Vec::new();
        let summary = self.replace_all(None, progress, |w| {
            // A patient in several Groups arrives in each of their exports: keep the first.
            let mut earlier: HashSet<String> = HashSet::new();
            let mut current: HashSet<String> = HashSet::new();
            let mut shared: HashSet<(String, String)> = HashSet::new();
            let mut group = 0usize;
            for line in lines {
                let line = line?;
                if line.kind != SyncFileKind::Output {
                    // Nothing to delete from a panel being replaced.
                    continue;
                }
                let at = Origin::Line(&line.file, line.line_no);
                let res = parse_line(&line)?;
                if multi {
                    if line.group != group {
                        earlier.extend(current.drain());
                        group = line.group;
                    }
                    match res.subject_patient_id() {
                        Some(pid) => {
                            if earlier.contains(pid) {
                                continue;
                            }
                            current.insert(pid.to_owned());
                        }
                        None => {
                            let key = (
                                res.resource_type().to_owned(),
                                res.id().unwrap_or_default().to_owned(),
                            );
                            if !shared.insert(key) {
                                continue;
                            }
                        }
                    }
                }
                w.add(&res, Some(&line.text), at)?;
            }
            record_groups(w.tx, plan, true)?;
            patients = w.patient_ids.iter().cloned().collect();
            Ok(())
        })?;
        patients.sort();
        Ok(SyncApplied {
            full: true,
            summary,
            deleted: 0,
            changed_patients: patients,
            removed_patients: Vec::new(),
        })
    }

    fn apply_incremental<I, F>(
        &mut self,
        plan: &SyncApply,
        lines: I,
        progress: F,
    ) -> Result<SyncApplied, CacheError>
    where
        I: Iterator<Item = Result<SyncLine, CacheError>>,
        F: FnMut(ImportProgress),
    {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut ch = Changes::default();
        let mut w = Writer::new(&tx, None, progress);
        for line in lines {
            let line = line?;
            match line.kind {
                SyncFileKind::Output => {
                    let at = Origin::Line(&line.file, line.line_no);
                    let res = parse_line(&line)?;
                    let ty = res.resource_type().to_owned();
                    let id = res
                        .id()
                        .ok_or_else(|| at.error(format!("{ty} without an id")))?
                        .to_owned();
                    // A Group is re-sent with every export: only members who joined or left
                    // (or all, when its practitioner changed) need their panel row rebuilt.
                    let before = if ty == "Group" {
                        Some(group_state(&tx, &id)?)
                    } else {
                        None
                    };
                    remove_resource(&tx, &ty, &id, &mut ch)?;
                    if let Some(pid) = res.subject_patient_id() {
                        ch.changed.insert(pid.to_owned());
                    }
                    w.add(&res, Some(&line.text), at)?;
                    match ty.as_str() {
                        "Group" => {
                            let (old_pcp, old) = before.unwrap_or_default();
                            let (new_pcp, new) = group_state(&tx, &id)?;
                            if old_pcp == new_pcp {
                                ch.panel.extend(old.symmetric_difference(&new).cloned());
                            } else {
                                ch.panel.extend(old.into_iter().chain(new));
                            }
                        }
                        "Practitioner" => ch.practitioners.push(id),
                        _ => {}
                    }
                }
                SyncFileKind::Deleted => {
                    let at = Origin::Line(&line.file, line.line_no);
                    for (ty, id) in deleted_entries(&line.text).map_err(|e| at.error(e))? {
                        if ty == "Patient" {
                            remove_patient(&tx, &id, &mut ch)?;
                        } else {
                            remove_resource(&tx, &ty, &id, &mut ch)?;
                            if ty == "Practitioner" {
                                ch.practitioners.push(id);
                            }
                        }
                        ch.deleted += 1;
                    }
                }
                SyncFileKind::Error => {}
            }
        }
        let summary = std::mem::take(&mut w.summary);
        drop(w);
        // Patients whose panel row shows a changed practitioner.
        for pr in &ch.practitioners {
            let mut stmt = tx.prepare_cached(
                "SELECT id FROM patients WHERE pcp_id = ?1
                 UNION SELECT gm.patient_id FROM group_members gm
                   JOIN groups g ON g.id = gm.group_id WHERE g.practitioner_id = ?1",
            )?;
            let ids = stmt
                .query_map([pr], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            ch.panel.extend(ids);
        }
        tx.execute_batch("CREATE TEMP TABLE panel_patients(id TEXT PRIMARY KEY) WITHOUT ROWID")?;
        {
            let mut ins = tx.prepare("INSERT OR IGNORE INTO temp.panel_patients VALUES (?1)")?;
            for id in ch.changed.iter().chain(ch.panel.iter()) {
                ins.execute([id])?;
            }
        }
        let orphans: i64 = tx.query_row(
            "SELECT (SELECT count(*) FROM events e JOIN temp.panel_patients t ON t.id = e.patient_id
                     WHERE e.patient_id NOT IN (SELECT id FROM patients))
                  + (SELECT count(*) FROM other_resources o JOIN temp.panel_patients t
                       ON t.id = o.patient_id WHERE o.patient_id NOT IN (SELECT id FROM patients))",
            [],
            |r| r.get(0),
        )?;
        if orphans > 0 {
            return Err(CacheError::Import(format!(
                "{orphans} clinical resource(s) refer to patients that are neither in the cache nor in the export"
            )));
        }
        rebuild_panel_rows(&tx)?;
        let mut changed: Vec<String> = Vec::new();
        {
            let mut stmt = tx.prepare(
                "SELECT t.id FROM temp.panel_patients t JOIN patients p ON p.id = t.id ORDER BY 1",
            )?;
            let present: HashSet<String> = stmt
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<_, _>>()?;
            changed.extend(ch.changed.iter().filter(|p| present.contains(*p)).cloned());
        }
        changed.sort();
        tx.execute_batch("DROP TABLE temp.panel_patients")?;
        record_groups(&tx, plan, false)?;
        tx.commit()?;
        *self.panel_mem.get_mut() = None;
        *self.worklist_mem.get_mut() = None;
        let mut removed: Vec<String> = ch.removed.into_iter().collect();
        removed.sort();
        Ok(SyncApplied {
            full: false,
            summary,
            deleted: ch.deleted,
            changed_patients: changed,
            removed_patients: removed,
        })
    }
}

/// What an incremental apply touched.
#[derive(Default)]
struct Changes {
    /// Patients whose own data changed.
    changed: HashSet<String>,
    /// Patients whose panel row may change for another reason (Group, practitioner).
    panel: HashSet<String>,
    practitioners: Vec<String>,
    removed: HashSet<String>,
    deleted: u64,
}

fn parse_line(line: &SyncLine) -> Result<fhir::Resource, CacheError> {
    let rec = fhir::NdjsonLine {
        line_no: line.line_no,
        text: line.text.clone(),
        unterminated: false,
    };
    rec.parse().map_err(|e| {
        let full = e.to_string();
        let prefix = format!("line {}: ", e.line);
        CacheError::Ndjson {
            file: line.file.to_string(),
            line: line.line_no,
            reason: full.strip_prefix(&prefix).unwrap_or(&full).to_owned(),
        }
    })
}

/// Removes the stored version of `(ty, id)`, if any, noting whose data that was.
fn remove_resource(
    tx: &Transaction<'_>,
    ty: &str,
    id: &str,
    ch: &mut Changes,
) -> Result<(), CacheError> {
    let returning =
        |sql: &str, params: &[&dyn rusqlite::ToSql]| -> Result<Vec<String>, CacheError> {
            let mut stmt = tx.prepare_cached(sql)?;
            let v = stmt
                .query_map(params, |r| r.get::<_, Option<String>>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(v.into_iter().flatten().collect())
        };
    match ty {
        "Patient" => {
            tx.prepare_cached("DELETE FROM patients WHERE id = ?1")?
                .execute([id])?;
            ch.changed.insert(id.to_owned());
        }
        "Practitioner" => {
            tx.prepare_cached("DELETE FROM practitioners WHERE id = ?1")?
                .execute([id])?;
        }
        "Organization" => {
            tx.prepare_cached("DELETE FROM organizations WHERE id = ?1")?
                .execute([id])?;
        }
        "Group" => {
            let old = returning(
                "DELETE FROM group_members WHERE group_id = ?1 RETURNING patient_id",
                &[&id],
            )?;
            ch.panel.extend(old);
            tx.prepare_cached("DELETE FROM groups WHERE id = ?1")?
                .execute([id])?;
        }
        _ => {
            let pids = match event_kind_of_type(ty) {
                Some(kind) => returning(
                    "DELETE FROM events WHERE resource_id = ?1 AND kind = ?2 RETURNING patient_id",
                    &[&id, &kind],
                )?,
                None => returning(
                    "DELETE FROM other_resources WHERE resource_id = ?1 AND resource_type = ?2
                     RETURNING patient_id",
                    &[&id, &ty],
                )?,
            };
            ch.changed.extend(pids);
        }
    }
    Ok(())
}

/// Removes a patient and everything of theirs.
fn remove_patient(tx: &Transaction<'_>, id: &str, ch: &mut Changes) -> Result<(), CacheError> {
    for sql in [
        "DELETE FROM patients WHERE id = ?1",
        "DELETE FROM events WHERE patient_id = ?1",
        "DELETE FROM other_resources WHERE patient_id = ?1",
        "DELETE FROM group_members WHERE patient_id = ?1",
        "DELETE FROM panel_row WHERE patient_id = ?1",
    ] {
        tx.prepare_cached(sql)?.execute([id])?;
    }
    ch.changed.insert(id.to_owned());
    ch.removed.insert(id.to_owned());
    Ok(())
}

/// `(type, id)` of each `DELETE` entry of a `deleted` Bundle line. The `request.url` may be
/// relative (`Patient/123`) or absolute, with or without `_history`.
pub fn deleted_entries(text: &str) -> Result<Vec<(String, String)>, String> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|_| "not a JSON Bundle".to_owned())?;
    if v.get("resourceType").and_then(|x| x.as_str()) != Some("Bundle") {
        return Err("a deleted file line that is not a Bundle".into());
    }
    let mut out = Vec::new();
    for e in v
        .get("entry")
        .and_then(|x| x.as_array())
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let Some(req) = e.get("request") else {
            continue;
        };
        if !req
            .get("method")
            .and_then(|m| m.as_str())
            .is_some_and(|m| m.eq_ignore_ascii_case("DELETE"))
        {
            continue;
        }
        let url = req.get("url").and_then(|u| u.as_str()).unwrap_or("");
        let url = url.split(['?', '#']).next().unwrap_or("");
        let mut segs: Vec<&str> = url.split('/').filter(|s| !s.is_empty()).collect();
        if let Some(h) = segs.iter().position(|s| *s == "_history") {
            segs.truncate(h);
        }
        match segs.as_slice() {
            [.., ty, id] if fhir::is_resource_type_name(ty) && fhir::is_valid_id(id) => {
                out.push(((*ty).to_owned(), (*id).to_owned()))
            }
            _ => return Err("a DELETE entry without a Type/id url".into()),
        }
    }
    Ok(out)
}

/// Records the applied exports' `transactionTime`s and the sync's outcome.
fn record_groups(tx: &Transaction<'_>, plan: &SyncApply, full: bool) -> Result<(), CacheError> {
    let now = now_rfc3339();
    if full {
        tx.execute("DELETE FROM sync_group", [])?;
    }
    let mut stmt = tx.prepare(
        "INSERT INTO sync_group(group_id, transaction_time, synced_at) VALUES (?1, ?2, ?3)
         ON CONFLICT(group_id) DO UPDATE SET transaction_time = excluded.transaction_time,
           synced_at = excluded.synced_at",
    )?;
    for (g, t) in &plan.groups {
        stmt.execute([g, t, &now])?;
    }
    tx.execute(
        "UPDATE sync_state SET last_synced_at = ?1, last_error = NULL, last_error_at = NULL,
           last_report = ?2, last_full_at = CASE WHEN ?3 THEN ?1 ELSE last_full_at END
         WHERE id = 1",
        rusqlite::params![now, plan.report, full],
    )?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Staging

/// `<cache>.sync`: where a sync's downloads are staged.
pub fn stage_path(cache_path: &Path) -> PathBuf {
    let mut s = cache_path.as_os_str().to_owned();
    s.push(".sync");
    PathBuf::from(s)
}

const STAGE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS stage_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS stage_export (
    group_id      TEXT PRIMARY KEY,
    pos           INTEGER NOT NULL,
    since         TEXT,
    status_url    TEXT,
    manifest      TEXT,
    kicked_off_at TEXT
);
CREATE TABLE IF NOT EXISTS stage_file (
    group_id      TEXT NOT NULL,
    idx           INTEGER NOT NULL,
    kind          TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    url           TEXT NOT NULL,
    count         INTEGER,
    bytes         INTEGER NOT NULL DEFAULT 0,
    lines         INTEGER NOT NULL DEFAULT 0,
    complete      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (group_id, idx)
);
CREATE TABLE IF NOT EXISTS stage_chunk (
    id       INTEGER PRIMARY KEY,
    group_id TEXT NOT NULL,
    file_idx INTEGER NOT NULL,
    data     BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS stage_chunk_file ON stage_chunk(group_id, file_idx, id);
";

/// The sync in progress, as staged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StagedSync {
    pub server_url: String,
    pub client_id: String,
    pub full: bool,
    /// One per Group, in apply order.
    pub exports: Vec<StagedExport>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StagedExport {
    pub group_id: String,
    /// The `_since` it was requested with (`None`: everything).
    pub since: Option<String>,
    /// The status URL (`Content-Location` of the kick-off), once known.
    pub status_url: Option<String>,
    /// The completion manifest as received (JSON), once known.
    pub manifest: Option<String>,
    pub files: Vec<StagedFile>,
}

/// One manifest file and how much of it is staged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedFile {
    pub kind: SyncFileKind,
    pub resource_type: String,
    pub url: String,
    /// The manifest's `count`, if given.
    pub count: Option<u64>,
    /// Bytes staged (always whole lines): the next `Range` start.
    pub bytes: u64,
    /// Lines staged.
    pub lines: u64,
    pub complete: bool,
}

impl StagedFile {
    pub fn new(
        kind: SyncFileKind,
        resource_type: &str,
        url: &str,
        count: Option<u64>,
    ) -> StagedFile {
        StagedFile {
            kind,
            resource_type: resource_type.to_owned(),
            url: url.to_owned(),
            count,
            bytes: 0,
            lines: 0,
            complete: false,
        }
    }
}

/// The staging store: a SQLCipher database with the cache's key. `Send`, so a download
/// thread can own it.
pub struct SyncStage {
    db: Cache,
}

impl std::fmt::Debug for SyncStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncStage")
            .field("path", &self.db.path())
            .finish_non_exhaustive()
    }
}

impl SyncStage {
    /// Opens (creating if missing) the stage of the cache at `cache_path`.
    pub fn open(cache_path: &Path, key: &CacheKey) -> Result<SyncStage, CacheError> {
        let db = Cache::open(stage_path(cache_path), key)?;
        db.conn.execute_batch(STAGE_SCHEMA)?;
        Ok(SyncStage { db })
    }

    /// The stage beside `cache`, opened with the cache's key.
    pub fn open_beside(cache: &Cache) -> Result<SyncStage, CacheError> {
        let db = cache.open_sibling(&stage_path(cache.path()))?;
        db.conn.execute_batch(STAGE_SCHEMA)?;
        Ok(SyncStage { db })
    }

    /// The stage's database file.
    pub fn path(&self) -> &Path {
        self.db.path()
    }

    /// The staged sync, if one is in progress.
    pub fn staged(&self) -> Result<Option<StagedSync>, CacheError> {
        let c = &self.db.conn;
        let meta = |k: &str| -> Result<Option<String>, CacheError> {
            Ok(
                c.query_row("SELECT value FROM stage_meta WHERE key = ?1", [k], |r| {
                    r.get(0)
                })
                .optional()?,
            )
        };
        let (Some(server_url), Some(client_id), Some(full)) =
            (meta("server_url")?, meta("client_id")?, meta("full")?)
        else {
            return Ok(None);
        };
        let mut s = StagedSync {
            server_url,
            client_id,
            full: full == "1",
            exports: Vec::new(),
        };
        let mut ex = c.prepare(
            "SELECT group_id, since, status_url, manifest FROM stage_export ORDER BY pos",
        )?;
        s.exports = ex
            .query_map([], |r| {
                Ok(StagedExport {
                    group_id: r.get(0)?,
                    since: r.get(1)?,
                    status_url: r.get(2)?,
                    manifest: r.get(3)?,
                    files: Vec::new(),
                })
            })?
            .collect::<Result<_, _>>()?;
        let mut fs = c.prepare(
            "SELECT kind, resource_type, url, count, bytes, lines, complete FROM stage_file
             WHERE group_id = ?1 ORDER BY idx",
        )?;
        for e in &mut s.exports {
            e.files = fs
                .query_map([&e.group_id], |r| {
                    let kind: String = r.get(0)?;
                    Ok(StagedFile {
                        kind: SyncFileKind::parse(&kind).unwrap_or(SyncFileKind::Error),
                        resource_type: r.get(1)?,
                        url: r.get(2)?,
                        count: r.get::<_, Option<i64>>(3)?.map(|n| n as u64),
                        bytes: r.get::<_, i64>(4)? as u64,
                        lines: r.get::<_, i64>(5)? as u64,
                        complete: r.get(6)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
        }
        Ok(Some(s))
    }

    /// Forgets any staged sync and starts a new one for these Groups (`since` per Group).
    pub fn begin(
        &mut self,
        server_url: &str,
        client_id: &str,
        full: bool,
        groups: &[(String, Option<String>)],
    ) -> Result<(), CacheError> {
        let tx = self.db.conn.transaction()?;
        tx.execute_batch(
            "DELETE FROM stage_chunk; DELETE FROM stage_file; DELETE FROM stage_export;
             DELETE FROM stage_meta;",
        )?;
        for (k, v) in [
            ("server_url", server_url),
            ("client_id", client_id),
            ("full", if full { "1" } else { "0" }),
        ] {
            tx.execute("INSERT INTO stage_meta(key, value) VALUES (?1, ?2)", [k, v])?;
        }
        for (i, (g, since)) in groups.iter().enumerate() {
            tx.execute(
                "INSERT INTO stage_export(group_id, pos, since) VALUES (?1, ?2, ?3)",
                rusqlite::params![g, i as i64, since],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Records the status URL of a Group's kicked-off export.
    pub fn set_status_url(&self, group_id: &str, status_url: &str) -> Result<(), CacheError> {
        self.db.conn.execute(
            "UPDATE stage_export SET status_url = ?2, kicked_off_at = ?3 WHERE group_id = ?1",
            [group_id, status_url, &now_rfc3339()],
        )?;
        Ok(())
    }

    /// Records a Group's completion manifest and its files (in apply order).
    pub fn set_manifest(
        &mut self,
        group_id: &str,
        manifest: &str,
        files: &[StagedFile],
    ) -> Result<(), CacheError> {
        let tx = self.db.conn.transaction()?;
        tx.execute(
            "UPDATE stage_export SET manifest = ?2 WHERE group_id = ?1",
            [group_id, manifest],
        )?;
        tx.execute("DELETE FROM stage_chunk WHERE group_id = ?1", [group_id])?;
        tx.execute("DELETE FROM stage_file WHERE group_id = ?1", [group_id])?;
        for (i, f) in files.iter().enumerate() {
            tx.execute(
                "INSERT INTO stage_file(group_id, idx, kind, resource_type, url, count)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                rusqlite::params![
                    group_id,
                    i as i64,
                    f.kind.as_str(),
                    f.resource_type,
                    f.url,
                    f.count.map(|n| n as i64)
                ],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Appends whole lines (`data` ends with `\n`, or is empty) to a staged file, and marks
    /// it complete if `complete`; one transaction.
    pub fn append(
        &mut self,
        group_id: &str,
        file_idx: usize,
        data: &[u8],
        lines: u64,
        complete: bool,
    ) -> Result<(), CacheError> {
        let tx = self.db.conn.transaction()?;
        if !data.is_empty() {
            tx.prepare_cached(
                "INSERT INTO stage_chunk(group_id, file_idx, data) VALUES (?1, ?2, ?3)",
            )?
            .execute(rusqlite::params![group_id, file_idx as i64, data])?;
        }
        tx.prepare_cached(
            "UPDATE stage_file SET bytes = bytes + ?3, lines = lines + ?4,
               complete = complete OR ?5 WHERE group_id = ?1 AND idx = ?2",
        )?
        .execute(rusqlite::params![
            group_id,
            file_idx as i64,
            data.len() as i64,
            lines as i64,
            complete
        ])?;
        tx.commit()?;
        Ok(())
    }

    /// Discards what is staged of one file (e.g. its URL expired and must be fetched anew).
    pub fn reset_file(&mut self, group_id: &str, file_idx: usize) -> Result<(), CacheError> {
        let tx = self.db.conn.transaction()?;
        tx.execute(
            "DELETE FROM stage_chunk WHERE group_id = ?1 AND file_idx = ?2",
            rusqlite::params![group_id, file_idx as i64],
        )?;
        tx.execute(
            "UPDATE stage_file SET bytes = 0, lines = 0, complete = 0
             WHERE group_id = ?1 AND idx = ?2",
            rusqlite::params![group_id, file_idx as i64],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Calls `f` with each staged chunk of a file, in order.
    pub fn read_file(
        &self,
        group_id: &str,
        file_idx: usize,
        mut f: impl FnMut(&[u8]) -> Result<(), CacheError>,
    ) -> Result<(), CacheError> {
        let mut stmt = self.db.conn.prepare_cached(
            "SELECT data FROM stage_chunk WHERE group_id = ?1 AND file_idx = ?2 ORDER BY id",
        )?;
        let mut rows = stmt.query(rusqlite::params![group_id, file_idx as i64])?;
        while let Some(row) = rows.next()? {
            let data = row.get_ref(0)?.as_blob().map_err(rusqlite::Error::from)?;
            f(data)?;
        }
        Ok(())
    }

    /// Forgets the staged sync (after it was applied, or to start anew) and gives the
    /// space back.
    /// Removes the stage's files (after a sync was applied): much faster than deleting a
    /// large download's chunks, and a missing stage is simply an empty one.
    pub fn discard(self) -> Result<(), CacheError> {
        let path = self.db.path().to_path_buf();
        drop(self.db);
        crate::db::remove_db_files(&path)
    }

    pub fn clear(&mut self) -> Result<(), CacheError> {
        self.db.conn.execute_batch(
            "DELETE FROM stage_chunk; DELETE FROM stage_file; DELETE FROM stage_export;
             DELETE FROM stage_meta;",
        )?;
        self.db.conn.execute_batch("VACUUM")?;
        self.db.checkpoint()
    }
}

/// A Group's practitioner and members as the cache holds them.
fn group_state(
    tx: &rusqlite::Transaction<'_>,
    group_id: &str,
) -> Result<(Option<String>, std::collections::BTreeSet<String>), CacheError> {
    use rusqlite::OptionalExtension;
    let pcp: Option<Option<String>> = tx
        .prepare_cached("SELECT practitioner_id FROM groups WHERE id = ?1")?
        .query_row([group_id], |r| r.get(0))
        .optional()?;
    let members = tx
        .prepare_cached("SELECT patient_id FROM group_members WHERE group_id = ?1")?
        .query_map([group_id], |r| r.get::<_, String>(0))?
        .collect::<Result<_, _>>()?;
    Ok((pcp.flatten(), members))
}
