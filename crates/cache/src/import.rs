//! Import of FHIR resources into the cache: one transaction that replaces
//! every clinical table, so a failed or killed import leaves the previous
//! panel exactly as it was.

use fhir::{CodeableConcept, HumanName, NdjsonReader, Reference, Resource};
use rusqlite::Transaction;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use crate::query::{LOINC_BP_PANELS, LOINC_DIASTOLIC, LOINC_SYSTOLIC};
use crate::{Cache, CacheError};

/// Progress of an import: resources read so far, and the total when known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportProgress {
    pub resources: u64,
    pub total: Option<u64>,
    /// True for the final event (after commit).
    pub done: bool,
}

/// Counts of what an import stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportSummary {
    pub resources: u64,
    pub patients: u64,
    pub practitioners: u64,
    pub organizations: u64,
    pub groups: u64,
    pub events: u64,
    pub other: u64,
}

/// `PRAGMA cache_size` normally (64 MiB) and during an import (256 MiB).
pub(crate) const DEFAULT_CACHE_SIZE: i64 = -65536;
const IMPORT_CACHE_SIZE: i64 = -262144;

/// How often (in resources) the progress callback is called.
pub const PROGRESS_EVERY: u64 = 1000;

/// Where a resource came from, for error messages (never content).
#[derive(Clone, Copy)]
pub(crate) enum Origin<'a> {
    Index(u64),
    Line(&'a str, u64),
}

impl Origin<'_> {
    pub(crate) fn error(&self, reason: impl Into<String>) -> CacheError {
        match *self {
            Origin::Index(i) => CacheError::Import(format!("resource #{i}: {}", reason.into())),
            Origin::Line(file, line) => CacheError::Ndjson {
                file: file.to_owned(),
                line,
                reason: reason.into(),
            },
        }
    }
}

const CLEAR_SQL: &str = "
    DELETE FROM panel_row;
    DELETE FROM events;
    DELETE FROM other_resources;
    DELETE FROM group_members;
    DELETE FROM groups;
    DELETE FROM patients;
    DELETE FROM practitioners;
    DELETE FROM organizations;
    DROP INDEX IF EXISTS panel_name;
    DROP INDEX IF EXISTS panel_birth;
    DROP INDEX IF EXISTS panel_pcp;
    DROP INDEX IF EXISTS panel_last_visit;
";

/// Builds the denormalized panel list from the imported patients and the
/// per-patient aggregates collected during the import (`temp.panel_agg`), so
/// the events table is not read back. `{filter}` restricts the patients (a
/// sync rebuilds the rows of changed patients only).
pub(crate) const PANEL_SQL_TEMPLATE: &str = "
INSERT INTO panel_row(patient_id, name, name_lc, birth_date, sex, pcp_id, pcp_name,
                      last_visit, conditions, condition_codes)
SELECT p.id, p.name, p.name_lc, p.birth_date, p.sex, p.pid, pr.name,
       a.last_visit, coalesce(a.conditions, ''), coalesce(a.condition_codes, '|')
FROM (SELECT p.*, coalesce(p.pcp_id,
        (SELECT g.practitioner_id FROM group_members gm JOIN groups g ON g.id = gm.group_id
          WHERE gm.patient_id = p.id AND g.practitioner_id IS NOT NULL
          ORDER BY g.id LIMIT 1)) AS pid
      FROM patients p {filter}) p
LEFT JOIN practitioners pr ON pr.id = p.pid
LEFT JOIN temp.panel_agg a ON a.patient_id = p.id;
";

fn panel_sql(filter: &str) -> String {
    PANEL_SQL_TEMPLATE.replace("{filter}", filter)
}

/// Per-patient panel aggregates gathered while streaming.
#[derive(Default)]
pub(crate) struct PatientAgg {
    /// (ts, date as written) of the latest encounter.
    last_visit: Option<(i64, String)>,
    /// Active condition displays (or codes when there is no display).
    conditions: std::collections::BTreeSet<String>,
    codes: std::collections::BTreeSet<String>,
    events: u64,
}

pub(crate) struct Writer<'t, 'c, F: FnMut(ImportProgress)> {
    pub(crate) tx: &'t Transaction<'c>,
    pub(crate) patient_ids: std::collections::HashSet<String>,
    pub(crate) aggs: std::collections::HashMap<String, PatientAgg>,
    pub(crate) summary: ImportSummary,
    total: Option<u64>,
    progress: F,
}

impl Cache {
    /// Replaces the cache's clinical content (patients, practitioners,
    /// organizations, groups, events, panel list) with `resources`, in one
    /// transaction. Accounts, audit and settings are kept. On any error the
    /// cache is exactly as before. `progress` is called every
    /// [`PROGRESS_EVERY`] resources and once at the end.
    pub fn import_resources<I, F>(
        &mut self,
        resources: I,
        progress: F,
    ) -> Result<ImportSummary, CacheError>
    where
        I: IntoIterator<Item = Resource>,
        F: FnMut(ImportProgress),
    {
        let iter = resources.into_iter();
        let total = match iter.size_hint() {
            (lo, Some(hi)) if lo == hi => Some(lo as u64),
            _ => None,
        };
        self.replace_all(total, progress, |w| {
            for (i, r) in iter.enumerate() {
                w.add(&r, None, Origin::Index(i as u64 + 1))?;
            }
            Ok(())
        })
    }

    /// Like [`Cache::import_resources`] for NDJSON: a file, or every
    /// `*.ndjson` file in a directory (sorted by name). A malformed or
    /// truncated line fails the whole import with the file name and line
    /// number; the cache is then unchanged.
    pub fn import_ndjson<F>(
        &mut self,
        path: &Path,
        progress: F,
    ) -> Result<ImportSummary, CacheError>
    where
        F: FnMut(ImportProgress),
    {
        let files = ndjson_files(path)?;
        let mut total = 0u64;
        for f in &files {
            total += count_lines(f)?;
        }
        self.replace_all(Some(total), progress, |w| {
            for f in &files {
                let name = f
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let file = std::fs::File::open(f).map_err(|e| io_err(f, &e))?;
                let mut reader =
                    NdjsonReader::new(std::io::BufReader::with_capacity(1 << 20, file));
                while let Some(rec) = reader.next_record() {
                    let rec = rec.map_err(|e| ndjson_err(&name, &e))?;
                    let res = rec.parse().map_err(|e| ndjson_err(&name, &e))?;
                    w.add(&res, Some(rec.text), Origin::Line(&name, rec.line_no))?;
                }
            }
            Ok(())
        })
    }

    pub(crate) fn replace_all<F, G>(
        &mut self,
        total: Option<u64>,
        progress: F,
        feed: G,
    ) -> Result<ImportSummary, CacheError>
    where
        F: FnMut(ImportProgress),
        G: FnOnce(&mut Writer<'_, '_, F>) -> Result<(), CacheError>,
    {
        let timing = std::env::var_os("PHM_CACHE_IMPORT_TIMING").is_some();
        let t0 = std::time::Instant::now();
        let phase = |name: &str| {
            if timing {
                eprintln!("import phase {name}: {:.2} s", t0.elapsed().as_secs_f64());
            }
        };
        // A larger page cache during the import means fewer pages spilled to
        // disk and encrypted more than once. Only if the default is in use.
        let cache_size: i64 = self.conn.query_row("PRAGMA cache_size", [], |r| r.get(0))?;
        let import_cache_size = if cache_size == DEFAULT_CACHE_SIZE {
            IMPORT_CACHE_SIZE
        } else {
            cache_size
        };
        // The import builds a fresh database file and swaps it in, so the
        // previous panel's pages are never read (decrypted) to be freed.
        // Only possible when no other connection has the cache open.
        let result = if self.close_alone()? {
            self.replace_by_swap(import_cache_size, total, progress, feed, &phase)
        } else {
            self.conn
                .execute_batch(&format!("PRAGMA cache_size = {import_cache_size}"))?;
            self.replace_in_place(total, progress, feed, &phase)
        };
        self.conn
            .execute_batch(&format!("PRAGMA cache_size = {cache_size}"))?;
        result
    }

    /// Imports into `<cache>.import` (same key), copies accounts, audit and
    /// settings into it, then swaps it in: a crash at any point leaves either
    /// the previous file or the complete new one.
    fn replace_by_swap<F, G>(
        &mut self,
        cache_size: i64,
        total: Option<u64>,
        progress: F,
        feed: G,
        phase: &impl Fn(&str),
    ) -> Result<ImportSummary, CacheError>
    where
        F: FnMut(ImportProgress),
        G: FnOnce(&mut Writer<'_, '_, F>) -> Result<(), CacheError>,
    {
        let fresh_path = self.import_path();
        let built = (|| {
            let mut fresh = self.create_fresh(&fresh_path)?;
            fresh.execute_batch(&format!("PRAGMA cache_size = {cache_size}"))?;
            let tx = fresh.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            copy_kept_tables(&self.conn, &tx)?;
            phase("clear");
            let out = fill(&tx, total, progress, feed, phase)?;
            tx.commit()?;
            phase("commit");
            fresh.execute_batch("PRAGMA optimize")?;
            fresh.close().map_err(|(_, e)| CacheError::from(e))?;
            Ok::<_, CacheError>(out)
        })();
        let (summary, mut progress) = match built {
            Ok(x) => x,
            Err(e) => {
                let _ = crate::db::remove_db_files(&fresh_path);
                return Err(e);
            }
        };
        self.swap_in(&fresh_path)?;
        phase("swap");
        progress(ImportProgress {
            resources: summary.resources,
            total,
            done: true,
        });
        Ok(summary)
    }

    /// Replaces the clinical tables in the cache itself, in one transaction.
    fn replace_in_place<F, G>(
        &mut self,
        total: Option<u64>,
        progress: F,
        feed: G,
        phase: &impl Fn(&str),
    ) -> Result<ImportSummary, CacheError>
    where
        F: FnMut(ImportProgress),
        G: FnOnce(&mut Writer<'_, '_, F>) -> Result<(), CacheError>,
    {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(CLEAR_SQL)?;
        // Drop the in-memory panel now; it reloads from whichever panel is
        // committed (the new one, or the old one if this import fails).
        *self.panel_mem.get_mut() = None;
        *self.worklist_mem.get_mut() = None;
        phase("clear");
        let (summary, mut progress) = fill(&tx, total, progress, feed, phase)?;
        tx.commit()?;
        phase("commit");
        self.conn.execute_batch("PRAGMA optimize")?;
        phase("optimize");
        progress(ImportProgress {
            resources: summary.resources,
            total,
            done: true,
        });
        Ok(summary)
    }
}

/// Tables kept across imports (not clinical content).
pub(crate) const KEPT_TABLES: &[&str] = &[
    "accounts",
    "sync_state",
    "sync_group",
    "audit",
    "settings",
    "account_groups",
    "measure_package",
    "eval_run",
    "eval_patient",
    "measure_result",
    "result_value",
    "measure_result_history",
    "care_gap",
    "gap_work",
    "outbox",
    "local_resource",
    "saved_view",
];

/// Copies [`KEPT_TABLES`] row for row (same columns, same rowids) from the
/// current cache into the replacement.
fn copy_kept_tables(from: &rusqlite::Connection, to: &Transaction<'_>) -> Result<(), CacheError> {
    for table in KEPT_TABLES {
        let mut read = from.prepare(&format!("SELECT * FROM main.{table}"))?;
        let n = read.column_count();
        let placeholders = vec!["?"; n].join(",");
        let mut write = to.prepare(&format!("INSERT INTO main.{table} VALUES ({placeholders})"))?;
        let mut rows = read.query([])?;
        while let Some(row) = rows.next()? {
            let values = (0..n)
                .map(|i| row.get::<_, rusqlite::types::Value>(i))
                .collect::<Result<Vec<_>, _>>()?;
            write.execute(rusqlite::params_from_iter(values))?;
        }
    }
    Ok(())
}

/// Streams the resources into the (empty) clinical tables of `tx` and builds
/// the panel list. Returns the summary and the progress callback.
fn fill<F, G>(
    tx: &Transaction<'_>,
    total: Option<u64>,
    progress: F,
    feed: G,
    phase: &impl Fn(&str),
) -> Result<(ImportSummary, F), CacheError>
where
    F: FnMut(ImportProgress),
    G: FnOnce(&mut Writer<'_, '_, F>) -> Result<(), CacheError>,
{
    let mut w = Writer::new(tx, total, progress);
    feed(&mut w)?;
    phase("insert");
    let orphans = w.orphan_events();
    if orphans > 0 {
        return Err(CacheError::Import(format!(
            "{orphans} clinical resource(s) refer to patients that are not in the import"
        )));
    }
    phase("orphans");
    w.write_aggregates()?;
    tx.execute_batch(&panel_sql(""))?;
    tx.execute_batch("DROP TABLE temp.panel_agg")?;
    phase("panel");
    let now = access::time::rfc3339_from_unix_ms(access::time::now_unix_ms());
    tx.execute(
        "INSERT INTO settings(key, value) VALUES ('last_import_at', ?1)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [&now],
    )?;
    let Writer {
        summary, progress, ..
    } = w;
    Ok((summary, progress))
}

fn io_err(path: &Path, e: &std::io::Error) -> CacheError {
    CacheError::Io {
        file: path.display().to_string(),
        reason: e.kind().to_string(),
    }
}

fn ndjson_err(file: &str, e: &fhir::NdjsonError) -> CacheError {
    let full = e.to_string();
    let prefix = format!("line {}: ", e.line);
    CacheError::Ndjson {
        file: file.to_owned(),
        line: e.line,
        reason: full.strip_prefix(&prefix).unwrap_or(&full).to_owned(),
    }
}

fn ndjson_files(path: &Path) -> Result<Vec<PathBuf>, CacheError> {
    let meta = std::fs::metadata(path).map_err(|e| io_err(path, &e))?;
    if meta.is_file() {
        return Ok(vec![path.to_owned()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(|e| io_err(path, &e))? {
        let p = entry.map_err(|e| io_err(path, &e))?.path();
        if p.is_file() && p.extension().is_some_and(|x| x == "ndjson") {
            files.push(p);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(CacheError::Import(format!(
            "no .ndjson files in {}",
            path.display()
        )));
    }
    Ok(files)
}

/// Non-blank lines (an upper bound of resources, for progress).
fn count_lines(path: &Path) -> Result<u64, CacheError> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| io_err(path, &e))?;
    let mut buf = vec![0u8; 1 << 20];
    let (mut n, mut line_has_content) = (0u64, false);
    loop {
        let k = f.read(&mut buf).map_err(|e| io_err(path, &e))?;
        if k == 0 {
            break;
        }
        for &b in &buf[..k] {
            match b {
                b'\n' => {
                    n += u64::from(line_has_content);
                    line_has_content = false;
                }
                b' ' | b'\t' | b'\r' => {}
                _ => line_has_content = true,
            }
        }
    }
    Ok(n + u64::from(line_has_content))
}

/// Id from a `Type/id` (or `urn:uuid:id`) reference.
pub(crate) fn ref_id(r: Option<&Reference>, ty: &str) -> Option<String> {
    let r = r?;
    if let Some(id) = r.id_of(ty) {
        return Some(id.to_owned());
    }
    let s = r.reference.as_deref()?;
    s.strip_prefix("urn:uuid:")
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
}

/// `(family, given, "Family, Given")` from the official name, else the first.
fn person_name(names: &[HumanName]) -> (Option<String>, Option<String>, String) {
    let n = names
        .iter()
        .find(|n| n.r#use.as_deref() == Some("official"))
        .or_else(|| names.first());
    let Some(n) = n else {
        return (None, None, String::new());
    };
    let family = n.family.clone().filter(|s| !s.is_empty());
    let given = Some(n.given.join(" ")).filter(|s| !s.is_empty());
    let display = match (&family, &given) {
        (Some(f), Some(g)) => format!("{f}, {g}"),
        (Some(f), None) => f.clone(),
        (None, Some(g)) => g.clone(),
        (None, None) => n.text.clone().unwrap_or_default(),
    };
    (family, given, display)
}

/// `(system, code, display)` of the first coding with a code (display falls back to text).
fn concept(cc: Option<&CodeableConcept>) -> (Option<String>, Option<String>, Option<String>) {
    let Some(cc) = cc else {
        return (None, None, None);
    };
    let c = cc
        .coding
        .iter()
        .find(|c| c.code.is_some())
        .or_else(|| cc.coding.first());
    let display = c
        .and_then(|c| c.display.clone())
        .or_else(|| cc.text.clone());
    (
        c.and_then(|c| c.system.clone()),
        c.and_then(|c| c.code.clone()),
        display,
    )
}

fn first_code(cc: Option<&CodeableConcept>) -> Option<String> {
    concept(cc).1
}

/// Unix ms for a FHIR date/dateTime/instant, including partial dates (`YYYY`, `YYYY-MM`).
pub(crate) fn fhir_ts(s: Option<&str>) -> Option<i64> {
    let s = s?;
    if let Some(ms) = access::time::parse_rfc3339_ms(s) {
        return Some(ms);
    }
    match s.len() {
        4 => access::time::parse_rfc3339_ms(&format!("{s}-01-01")),
        7 => access::time::parse_rfc3339_ms(&format!("{s}-01")),
        _ => None,
    }
}

#[derive(Default)]
struct Event {
    kind: &'static str,
    date: Option<String>,
    end_date: Option<String>,
    concept: (Option<String>, Option<String>, Option<String>),
    value_num: Option<f64>,
    value2_num: Option<f64>,
    value_text: Option<String>,
    unit: Option<String>,
    status: Option<String>,
    /// Every coding's code of a condition (e.g. ICD-10 and SNOMED), for the panel's code filter.
    all_codes: Vec<String>,
}

/// Same rule as [`crate::query::ACTIVE_CONDITION`].
fn condition_is_active(ev: &Event) -> bool {
    match ev.status.as_deref() {
        Some(s) => matches!(s, "active" | "recurrence" | "relapse"),
        None => ev.end_date.is_none(),
    }
}

impl<'t, 'c, F: FnMut(ImportProgress)> Writer<'t, 'c, F> {
    pub(crate) fn new(tx: &'t Transaction<'c>, total: Option<u64>, progress: F) -> Self {
        Writer {
            tx,
            patient_ids: Default::default(),
            aggs: Default::default(),
            summary: ImportSummary::default(),
            total,
            progress,
        }
    }

    /// Clinical resources whose patient is not in the import.
    fn orphan_events(&self) -> u64 {
        self.aggs
            .iter()
            .filter(|(pid, _)| !self.patient_ids.contains(*pid))
            .map(|(_, a)| a.events)
            .sum()
    }

    /// Writes the aggregates into an in-memory temp table for PANEL_SQL.
    fn write_aggregates(&mut self) -> Result<(), CacheError> {
        write_aggregates(self.tx, self.aggs.drain())
    }

    pub(crate) fn add(
        &mut self,
        res: &Resource,
        raw: Option<&str>,
        at: Origin<'_>,
    ) -> Result<(), CacheError> {
        let owned;
        let raw = match raw {
            Some(r) => r,
            None => {
                owned = res.to_json_string();
                &owned
            }
        };
        let dup = |e: rusqlite::Error, what: &str| match &e {
            rusqlite::Error::SqliteFailure(f, _)
                if f.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                at.error(format!("duplicate {what} id"))
            }
            _ => e.into(),
        };
        match res {
            Resource::Patient(p) => {
                let id =
                    p.id.as_deref()
                        .ok_or_else(|| at.error("Patient without an id"))?;
                let (family, given, name) = person_name(&p.name);
                let deceased = p.deceased_boolean == Some(true) || p.deceased_date_time.is_some();
                self.tx
                    .prepare_cached(
                        "INSERT INTO patients(id, name, name_lc, family, given, birth_date, sex,
                           pcp_id, organization_id, active, deceased, raw)
                         VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12)",
                    )?
                    .execute(rusqlite::params![
                        id,
                        name,
                        name.to_lowercase(),
                        family,
                        given,
                        p.birth_date,
                        p.gender,
                        p.general_practitioner
                            .iter()
                            .find_map(|r| ref_id(Some(r), "Practitioner")),
                        ref_id(p.managing_organization.as_ref(), "Organization"),
                        p.active.unwrap_or(true),
                        deceased,
                        raw,
                    ])
                    .map_err(|e| dup(e, "Patient"))?;
                self.patient_ids.insert(id.to_owned());
                self.summary.patients += 1;
            }
            Resource::Practitioner(p) => {
                let id =
                    p.id.as_deref()
                        .ok_or_else(|| at.error("Practitioner without an id"))?;
                let (_, _, name) = person_name(&p.name);
                self.tx
                    .prepare_cached("INSERT INTO practitioners(id, name, raw) VALUES (?1,?2,?3)")?
                    .execute(rusqlite::params![
                        id,
                        Some(name).filter(|n| !n.is_empty()),
                        raw
                    ])
                    .map_err(|e| dup(e, "Practitioner"))?;
                self.summary.practitioners += 1;
            }
            Resource::Organization(o) => {
                let id =
                    o.id.as_deref()
                        .ok_or_else(|| at.error("Organization without an id"))?;
                self.tx
                    .prepare_cached("INSERT INTO organizations(id, name, raw) VALUES (?1,?2,?3)")?
                    .execute(rusqlite::params![id, o.name, raw])
                    .map_err(|e| dup(e, "Organization"))?;
                self.summary.organizations += 1;
            }
            Resource::Group(g) => {
                let id =
                    g.id.as_deref()
                        .ok_or_else(|| at.error("Group without an id"))?;
                self.tx
                    .prepare_cached(
                        "INSERT INTO groups(id, name, practitioner_id, raw) VALUES (?1,?2,?3,?4)",
                    )?
                    .execute(rusqlite::params![
                        id,
                        g.name,
                        ref_id(g.managing_entity.as_ref(), "Practitioner"),
                        raw
                    ])
                    .map_err(|e| dup(e, "Group"))?;
                let mut stmt = self.tx.prepare_cached(
                    "INSERT OR IGNORE INTO group_members(group_id, patient_id) VALUES (?1, ?2)",
                )?;
                for m in &g.member {
                    if m.inactive == Some(true) {
                        continue;
                    }
                    if let Some(pid) = ref_id(m.entity.as_ref(), "Patient") {
                        stmt.execute([id, pid.as_str()])?;
                    }
                }
                self.summary.groups += 1;
            }
            _ => {
                if let Some(ev) = event_of(res) {
                    let pid = res
                        .patient_reference()
                        .and_then(|r| ref_id(Some(r), "Patient"))
                        .ok_or_else(|| {
                            at.error(format!("{} without a Patient subject", res.resource_type()))
                        })?;
                    let ts = fhir_ts(ev.date.as_deref());
                    self.tx
                        .prepare_cached(
                            "INSERT INTO events(patient_id, kind, resource_id, date, ts, end_date,
                               code_system, code, display, value_num, value2_num, value_text, unit,
                               status, raw)
                             VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15)",
                        )?
                        .execute(rusqlite::params![
                            pid,
                            ev.kind,
                            res.id(),
                            ev.date,
                            ts,
                            ev.end_date,
                            ev.concept.0,
                            ev.concept.1,
                            ev.concept.2,
                            ev.value_num,
                            ev.value2_num,
                            ev.value_text,
                            ev.unit,
                            ev.status,
                            raw,
                        ])?;
                    self.summary.events += 1;
                    self.aggs.entry(pid).or_default().add(&ev, ts);
                } else {
                    self.tx
                        .prepare_cached(
                            "INSERT INTO other_resources(resource_type, resource_id, patient_id, raw)
                             VALUES (?1,?2,?3,?4)",
                        )?
                        .execute(rusqlite::params![
                            res.resource_type(),
                            res.id(),
                            res.subject_patient_id(),
                            raw
                        ])?;
                    self.summary.other += 1;
                }
            }
        }
        self.summary.resources += 1;
        if self.summary.resources.is_multiple_of(PROGRESS_EVERY) {
            (self.progress)(ImportProgress {
                resources: self.summary.resources,
                total: self.total,
                done: false,
            });
        }
        Ok(())
    }
}

/// Creates `temp.panel_agg` and fills it with `aggs`, for the panel SQL.
pub(crate) fn write_aggregates(
    tx: &Transaction<'_>,
    aggs: impl Iterator<Item = (String, PatientAgg)>,
) -> Result<(), CacheError> {
    tx.execute_batch(
        "CREATE TEMP TABLE panel_agg(patient_id TEXT PRIMARY KEY, last_visit TEXT,
           conditions TEXT, condition_codes TEXT)",
    )?;
    let mut stmt = tx.prepare("INSERT INTO temp.panel_agg VALUES (?1, ?2, ?3, ?4)")?;
    for (pid, a) in aggs {
        let conditions = a.conditions.into_iter().collect::<Vec<_>>().join("; ");
        let codes = if a.codes.is_empty() {
            "|".to_owned()
        } else {
            format!("|{}|", a.codes.into_iter().collect::<Vec<_>>().join("|"))
        };
        stmt.execute(rusqlite::params![
            pid,
            a.last_visit.map(|(_, d)| d),
            conditions,
            codes
        ])?;
    }
    Ok(())
}

/// Rebuilds the `panel_row`s of the patients listed in `temp.panel_patients` (one column,
/// `id`) from the stored patients, groups, practitioners and events: the same rows an import
/// builds. The events' aggregates are recomputed from their stored resources.
pub(crate) fn rebuild_panel_rows(tx: &Transaction<'_>) -> Result<(), CacheError> {
    tx.execute(
        "DELETE FROM panel_row WHERE patient_id IN (SELECT id FROM temp.panel_patients)",
        [],
    )?;
    let mut aggs: std::collections::HashMap<String, PatientAgg> = Default::default();
    {
        let mut stmt = tx.prepare(
            "SELECT e.patient_id, e.raw FROM events e JOIN temp.panel_patients t
               ON t.id = e.patient_id WHERE e.kind IN ('encounter', 'condition')",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let pid: String = row.get(0)?;
            let raw: String = row.get(1)?;
            let res = Resource::from_json_str(&raw)
                .map_err(|_| CacheError::Import("a stored event no longer parses".into()))?;
            if let Some(ev) = event_of(&res) {
                let ts = fhir_ts(ev.date.as_deref());
                aggs.entry(pid).or_default().add(&ev, ts);
            }
        }
    }
    write_aggregates(tx, aggs.into_iter())?;
    tx.execute_batch(&panel_sql(
        "WHERE p.id IN (SELECT id FROM temp.panel_patients)",
    ))?;
    tx.execute_batch("DROP TABLE temp.panel_agg")?;
    Ok(())
}

impl PatientAgg {
    /// Counts one clinical event of the patient into the panel aggregates.
    fn add(&mut self, ev: &Event, ts: Option<i64>) {
        self.events += 1;
        match ev.kind {
            "encounter" => {
                if let (Some(t), Some(d)) = (ts, &ev.date) {
                    if self.last_visit.as_ref().is_none_or(|(lt, _)| t > *lt) {
                        self.last_visit = Some((t, d.clone()));
                    }
                }
            }
            "condition" if condition_is_active(ev) => {
                let (_, code, display) = &ev.concept;
                if let Some(d) = display.as_ref().or(code.as_ref()) {
                    self.conditions.insert(d.clone());
                }
                if let Some(c) = code {
                    self.codes.insert(c.clone());
                }
                self.codes.extend(ev.all_codes.iter().cloned());
            }
            _ => {}
        }
    }
}

/// The `events.kind` a resource type is stored under, if it is a timeline type.
pub(crate) fn event_kind_of_type(resource_type: &str) -> Option<&'static str> {
    Some(match resource_type {
        "Encounter" => "encounter",
        "Condition" => "condition",
        "Observation" => "observation",
        "Procedure" => "procedure",
        "MedicationRequest" => "medication",
        "Immunization" => "immunization",
        _ => return None,
    })
}

/// The event row for a clinical resource; `None` for other types.
/// The timeline event of a resource recorded on this workstation (a `local_resource` row, e.g.
/// closure evidence), with its timestamp for ordering. Its id is `-rowid`, which
/// [`Cache::event_raw`] resolves; `None` for a type that has no timeline event.
pub(crate) fn local_timeline_event(
    rowid: i64,
    raw: &str,
) -> Option<(Option<i64>, crate::query::TimelineEvent)> {
    let line = fhir::NdjsonLine {
        line_no: 1,
        text: raw.to_owned(),
        unterminated: false,
    };
    let res = line.parse().ok()?;
    let ev = event_of(&res)?;
    Some((
        fhir_ts(ev.date.as_deref()),
        crate::query::TimelineEvent {
            id: -rowid,
            kind: crate::query::EventKind::from_id(ev.kind)?,
            resource_id: res.id().map(str::to_owned),
            date: ev.date,
            end_date: ev.end_date,
            code_system: ev.concept.0,
            code: ev.concept.1,
            display: ev.concept.2,
            value: ev.value_num,
            value2: ev.value2_num,
            value_text: ev.value_text,
            unit: ev.unit,
            status: ev.status,
        },
    ))
}

fn event_of(res: &Resource) -> Option<Event> {
    Some(match res {
        Resource::Encounter(e) => {
            let mut concept = concept(e.r#type.first());
            if concept.1.is_none() {
                if let Some(c) = &e.class {
                    concept = (c.system.clone(), c.code.clone(), c.display.clone());
                }
            }
            Event {
                kind: "encounter",
                date: e.period.as_ref().and_then(|p| p.start.clone()),
                end_date: e.period.as_ref().and_then(|p| p.end.clone()),
                concept,
                status: e.status.clone(),
                ..Event::default()
            }
        }
        Resource::Condition(c) => Event {
            kind: "condition",
            date: c
                .onset_date_time
                .clone()
                .or_else(|| c.onset_period.as_ref().and_then(|p| p.start.clone()))
                .or_else(|| c.recorded_date.clone()),
            end_date: c
                .abatement_date_time
                .clone()
                .or_else(|| c.abatement_period.as_ref().and_then(|p| p.end.clone()))
                .or_else(|| c.abatement_string.clone()),
            concept: concept(c.code.as_ref()),
            status: first_code(c.clinical_status.as_ref()),
            all_codes: c
                .code
                .iter()
                .flat_map(|cc| cc.coding.iter().filter_map(|x| x.code.clone()))
                .collect(),
            ..Event::default()
        },
        Resource::Observation(o) => {
            let concept = concept(o.code.as_ref());
            let mut ev = Event {
                kind: "observation",
                date: o
                    .effective_date_time
                    .clone()
                    .or_else(|| o.effective_period.as_ref().and_then(|p| p.start.clone()))
                    .or_else(|| o.effective_instant.clone())
                    .or_else(|| o.issued.clone()),
                end_date: o.effective_period.as_ref().and_then(|p| p.end.clone()),
                status: o.status.clone(),
                ..Event::default()
            };
            if let Some(q) = &o.value_quantity {
                ev.value_num = q.value;
                ev.unit = q.unit.clone().or_else(|| q.code.clone());
            } else if let Some(cc) = &o.value_codeable_concept {
                let (_, code, display) = self::concept(Some(cc));
                ev.value_text = display.or(code);
            } else if let Some(s) = &o.value_string {
                ev.value_text = Some(s.clone());
            } else if let Some(b) = o.value_boolean {
                ev.value_text = Some(b.to_string());
            } else if let Some(i) = o.value_integer {
                ev.value_num = Some(i as f64);
            }
            let is_bp_panel = concept
                .1
                .as_deref()
                .is_some_and(|c| LOINC_BP_PANELS.contains(&c));
            if is_bp_panel {
                for comp in &o.component {
                    let code = first_code(comp.code.as_ref());
                    let q = comp.value_quantity.as_ref();
                    match code.as_deref() {
                        Some(LOINC_SYSTOLIC) => {
                            ev.value_num = q.and_then(|q| q.value);
                            ev.unit = q.and_then(|q| q.unit.clone().or_else(|| q.code.clone()));
                        }
                        Some(LOINC_DIASTOLIC) => ev.value2_num = q.and_then(|q| q.value),
                        _ => {}
                    }
                }
                if let (Some(s), Some(d)) = (ev.value_num, ev.value2_num) {
                    ev.value_text = Some(format!("{s}/{d}"));
                }
            }
            ev.concept = concept;
            ev
        }
        Resource::Procedure(p) => Event {
            kind: "procedure",
            date: p
                .performed_date_time
                .clone()
                .or_else(|| p.performed_period.as_ref().and_then(|x| x.start.clone())),
            end_date: p.performed_period.as_ref().and_then(|x| x.end.clone()),
            concept: concept(p.code.as_ref()),
            status: p.status.clone(),
            ..Event::default()
        },
        Resource::MedicationRequest(m) => Event {
            kind: "medication",
            date: m.authored_on.clone(),
            concept: concept(m.medication_codeable_concept.as_ref()),
            status: m.status.clone(),
            ..Event::default()
        },
        Resource::Immunization(i) => Event {
            kind: "immunization",
            date: i.occurrence_date_time.clone(),
            concept: concept(i.vaccine_code.as_ref()),
            status: i.status.clone(),
            ..Event::default()
        },
        _ => return None,
    })
}
