//! The Group export itself, without HTTP: given a transaction running as the client's
//! organisation role, a Group, the request's plan and a directory, writes NDJSON files
//! and returns what the manifest lists. See the module documentation of
//! [`crate::bulk`] for what is exported and the exact `_since` / `deleted` semantics.

use crate::measure::{line_keys_sql, person_resources, references_to, Line, RAW_SQL};
use crate::serve::quote_ident;
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio_postgres::Transaction;

/// Persons fetched, assembled and written per step (their lines are in memory at once).
pub const CHUNK_PERSONS: usize = 2_000;
/// A type's output file is split after this many lines.
pub const MAX_FILE_LINES: u64 = 100_000;

/// Search parameters `_typeFilter` supports (token search on the resource's JSON).
pub const FILTER_PARAMS: &[&str] = &["code", "category", "status"];

/// Why an export did not finish.
#[derive(Debug)]
pub enum ExportError {
    /// No such Group (or not visible).
    NoGroup,
    /// Cancelled through [`Progress::cancel`].
    Cancelled,
    /// Database or file error (text without PHI).
    Failed(String),
}

impl std::fmt::Display for ExportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExportError::NoGroup => f.write_str("no such Group"),
            ExportError::Cancelled => f.write_str("export cancelled"),
            ExportError::Failed(s) => f.write_str(s),
        }
    }
}

impl From<tokio_postgres::Error> for ExportError {
    fn from(e: tokio_postgres::Error) -> Self {
        ExportError::Failed(format!("database: {}", crate::db_err(&e)))
    }
}
impl From<std::io::Error> for ExportError {
    fn from(e: std::io::Error) -> Self {
        ExportError::Failed(format!("io: {e}"))
    }
}

/// Progress of a running export (shared with the status endpoint) and its cancel flag.
#[derive(Debug, Default)]
pub struct Progress {
    pub done: AtomicU64,
    pub total: AtomicU64,
    pub cancel: AtomicBool,
}

/// Types an export can contain: the patient's own types (typed tables and every type
/// kept whole), the Group, and the Practitioner / Organization resources referenced.
pub fn exportable(t: &str) -> bool {
    matches!(t, "Patient" | "Group" | "Practitioner" | "Organization")
        || (crate::validate::loadable(t) && !crate::validate::REFERENCE_DATA.contains(&t))
}

/// One `system|code` / `code` token of a filter.
#[derive(Debug, Clone)]
struct Token {
    /// `None`: any system; `Some("")`: no system (`|code`).
    system: Option<String>,
    code: String,
}

#[derive(Debug, Clone)]
struct Filter {
    /// All must match (search parameters of one `_typeFilter` are AND-ed); each
    /// parameter's comma-separated values are OR-ed.
    params: Vec<(String, Vec<Token>)>,
}

/// What a request asks for, checked: `_type` and `_typeFilter`.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// `None`: every type.
    types: Option<BTreeSet<String>>,
    /// Per type: a resource must match one of them (several `_typeFilter` of one type
    /// are OR-ed, as the IG says).
    filters: HashMap<String, Vec<Filter>>,
    /// Lenient handling: the parameters ignored, one OperationOutcome line each in the
    /// error file.
    pub ignored: Vec<String>,
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(x) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(x);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Plan {
    /// Checks `_type` (comma-separated values allowed) and `_typeFilter`. An unknown or
    /// unsupported type, or a filter parameter other than [`FILTER_PARAMS`], is an
    /// error (400); with `lenient` (`Prefer: handling=lenient`) such a parameter is
    /// ignored and reported in [`Plan::ignored`].
    pub fn new(types: &[String], type_filters: &[String], lenient: bool) -> Result<Plan, String> {
        let mut plan = Plan::default();
        let mut set = BTreeSet::new();
        for t in types.iter().flat_map(|t| t.split(',')).map(str::trim) {
            if t.is_empty() {
                continue;
            }
            if !exportable(t) {
                return Err(format!(
                    "_type {t:?} is not a resource type this server exports"
                ));
            }
            set.insert(t.to_string());
        }
        if !set.is_empty() {
            plan.types = Some(set);
        }
        for f in type_filters {
            let f = f.trim();
            let Some((ty, query)) = f.split_once('?') else {
                return Err(format!(
                    "_typeFilter {f:?} is not of the form Type?parameters"
                ));
            };
            if !exportable(ty) {
                return Err(format!(
                    "_typeFilter names {ty:?}, not a resource type this server exports"
                ));
            }
            let mut params = Vec::new();
            for p in query.split('&').filter(|p| !p.is_empty()) {
                let (name, value) = p.split_once('=').unwrap_or((p, ""));
                let name = percent_decode(name);
                let value = percent_decode(value);
                if !FILTER_PARAMS.contains(&name.as_str()) || value.is_empty() {
                    let msg = format!(
                        "_typeFilter {ty}: search parameter {name:?} is not supported (supported: {})",
                        FILTER_PARAMS.join(", ")
                    );
                    if lenient {
                        plan.ignored.push(msg);
                        continue;
                    }
                    return Err(msg);
                }
                let tokens = value
                    .split(',')
                    .map(|v| match v.split_once('|') {
                        Some((s, c)) => Token {
                            system: Some(s.to_string()),
                            code: c.to_string(),
                        },
                        None => Token {
                            system: None,
                            code: v.to_string(),
                        },
                    })
                    .collect();
                params.push((name, tokens));
            }
            plan.filters
                .entry(ty.to_string())
                .or_default()
                .push(Filter { params });
        }
        Ok(plan)
    }

    /// Whether resources of this type are asked for.
    pub fn wants(&self, ty: &str) -> bool {
        self.types.as_ref().is_none_or(|t| t.contains(ty))
    }

    /// `_type` and `_typeFilter` applied to one resource.
    fn keeps(&self, ty: &str, v: &Value) -> bool {
        if !self.wants(ty) {
            return false;
        }
        match self.filters.get(ty) {
            None => true,
            Some(fs) => fs.iter().any(|f| {
                f.params
                    .iter()
                    .all(|(name, tokens)| param_matches(v, name, tokens))
            }),
        }
    }
}

/// The (system, code) pairs of an element: a code string, a Coding, a CodeableConcept
/// or an array of them.
fn codings<'a>(v: &'a Value, out: &mut Vec<(Option<&'a str>, &'a str)>) {
    match v {
        Value::String(s) => out.push((None, s)),
        Value::Array(a) => a.iter().for_each(|x| codings(x, out)),
        Value::Object(m) => {
            if let Some(c) = m.get("coding") {
                codings(c, out);
            } else if let Some(code) = m.get("code").and_then(Value::as_str) {
                out.push((m.get("system").and_then(Value::as_str), code));
            }
        }
        _ => {}
    }
}

fn param_matches(v: &Value, name: &str, tokens: &[Token]) -> bool {
    let element = match name {
        "code" => ["code", "medicationCodeableConcept", "vaccineCode"]
            .iter()
            .find_map(|k| v.get(*k)),
        other => v.get(other),
    };
    let Some(element) = element else {
        return false;
    };
    let mut have = Vec::new();
    codings(element, &mut have);
    tokens.iter().any(|t| {
        have.iter().any(|(sys, code)| {
            *code == t.code
                && match (&t.system, name) {
                    (_, "status") | (None, _) => true,
                    (Some(s), _) if s.is_empty() => sys.is_none(),
                    (Some(s), _) => *sys == Some(s.as_str()),
                }
        })
    })
}

/// transactionTime of an export and the change watermark recorded with it.
#[derive(Debug, Clone)]
pub struct Clock {
    /// FHIR instant (UTC, milliseconds).
    pub transaction_time: String,
    pub watermark: i64,
}

/// At kick-off: waits for in-flight source writes (ingest, matching, attribution hold
/// [`crate::measure::SOURCE_WRITE_LOCK`] shared), reads the change watermark and records
/// it with the transactionTime in `edw.bulk_clock`. Runs as the server's own role. The
/// export's transaction must start after this returns, so it sees every change at or
/// below the watermark.
pub async fn kickoff_clock(c: &mut tokio_postgres::Client) -> Result<Clock, ExportError> {
    let tx = c.transaction().await?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1)",
        &[&crate::measure::SOURCE_WRITE_LOCK],
    )
    .await?;
    // Two kick-offs in one millisecond keep the lower watermark: a later `_since` of
    // that instant then re-sends a little, never misses anything.
    let row = tx
        .query_one(
            "WITH t AS (SELECT date_trunc('milliseconds', clock_timestamp()) AS t,
                          (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM edw.change_seq) AS w)
             INSERT INTO edw.bulk_clock (transaction_time, watermark) SELECT t, w FROM t
             ON CONFLICT (transaction_time) DO UPDATE SET watermark = least(bulk_clock.watermark, EXCLUDED.watermark)
             RETURNING to_char(transaction_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),
                       (SELECT w FROM t)",
            &[],
        )
        .await?;
    tx.commit().await?;
    Ok(Clock {
        transaction_time: row.get(0),
        watermark: row.get(1),
    })
}

/// Checks a `_since` value (a FHIR instant; a dateTime with a time zone is accepted).
pub fn check_since(s: &str) -> Result<(), String> {
    crate::validate::check_datetime(s)
        .map_err(|e| format!("_since: {e}"))
        .and_then(|_| {
            let has_zone = s.len() > 10
                && (s.ends_with('Z') || s[10..].contains('+') || s[10..].rfind('-').is_some());
            if has_zone {
                Ok(())
            } else {
                Err("_since must be a FHIR instant (date, time and time zone)".into())
            }
        })
}

/// `_since=T` → the greatest watermark recorded at or before T (`None`: no export
/// clock that early, so the export is full).
pub async fn since_watermark(
    c: &impl tokio_postgres::GenericClient,
    since: &str,
) -> Result<Option<i64>, ExportError> {
    check_since(since).map_err(ExportError::Failed)?;
    Ok(c.query_opt(
        "SELECT watermark FROM edw.bulk_clock WHERE transaction_time <= $1::text::timestamptz
         ORDER BY transaction_time DESC LIMIT 1",
        &[&since],
    )
    .await?
    .map(|r| r.get(0)))
}

/// One written file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOut {
    pub resource_type: String,
    /// File name without `.ndjson`.
    pub name: String,
    pub count: u64,
}

/// What an export wrote.
#[derive(Debug, Clone, Default)]
pub struct Written {
    pub output: Vec<FileOut>,
    pub deleted: Vec<FileOut>,
    pub error: Vec<FileOut>,
    /// Group members the client's organisation may see.
    pub patients: u64,
}

/// An export's parameters.
pub struct Export<'a> {
    pub group_id: i64,
    pub plan: &'a Plan,
    /// The watermark `_since` maps to ([`since_watermark`]); `None`: full export.
    pub since: Option<i64>,
    pub dir: &'a Path,
    pub chunk: usize,
    pub max_lines: u64,
    pub progress: &'a Progress,
    /// The warehouse is in its distributed (Citus) form: each read takes the form Citus
    /// plans (the person on every join, no correlated subquery beside a set-returning
    /// function).
    pub distributed: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Output,
    Deleted,
    Error,
}

struct OpenFile {
    part: u32,
    count: u64,
    name: String,
    f: std::io::BufWriter<std::fs::File>,
}

/// The export's files: one open file per type, split at `max_lines`; mode 0600.
struct Files {
    dir: PathBuf,
    max_lines: u64,
    open: HashMap<(Kind, String), OpenFile>,
    parts: HashMap<(Kind, String), u32>,
    done: Vec<(Kind, FileOut)>,
}

impl Files {
    fn new(dir: &Path, max_lines: u64) -> std::io::Result<Files> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        Ok(Files {
            dir: dir.to_path_buf(),
            max_lines: max_lines.max(1),
            open: HashMap::new(),
            parts: HashMap::new(),
            done: Vec::new(),
        })
    }

    fn close(&mut self, key: &(Kind, String)) -> std::io::Result<()> {
        if let Some(mut o) = self.open.remove(key) {
            o.f.flush()?;
            o.f.get_ref().sync_data()?;
            let _ = o.part;
            self.done.push((
                key.0,
                FileOut {
                    resource_type: key.1.clone(),
                    name: o.name,
                    count: o.count,
                },
            ));
        }
        Ok(())
    }

    fn write(&mut self, kind: Kind, ty: &str, v: &Value) -> std::io::Result<()> {
        let key = (kind, ty.to_string());
        if self
            .open
            .get(&key)
            .is_some_and(|o| o.count >= self.max_lines)
        {
            self.close(&key)?;
        }
        if !self.open.contains_key(&key) {
            use std::os::unix::fs::OpenOptionsExt;
            let part = self.parts.entry(key.clone()).or_insert(0);
            *part += 1;
            let name = match kind {
                Kind::Output => format!("{ty}-{part}"),
                Kind::Deleted => format!("deleted-{part}"),
                Kind::Error => format!("error-{part}"),
            };
            let f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(self.dir.join(format!("{name}.ndjson")))?;
            self.open.insert(
                key.clone(),
                OpenFile {
                    part: *part,
                    count: 0,
                    name,
                    f: std::io::BufWriter::with_capacity(256 * 1024, f),
                },
            );
        }
        let o = self.open.get_mut(&key).expect("opened above");
        serde_json::to_writer(&mut o.f, v).map_err(std::io::Error::other)?;
        o.f.write_all(b"\n")?;
        o.count += 1;
        Ok(())
    }

    fn finish(mut self) -> std::io::Result<Written> {
        let keys: Vec<_> = self.open.keys().cloned().collect();
        for k in keys {
            self.close(&k)?;
        }
        self.done.sort_by(|a, b| {
            (
                a.1.resource_type.as_str(),
                a.1.name.len(),
                a.1.name.as_str(),
            )
                .cmp(&(
                    b.1.resource_type.as_str(),
                    b.1.name.len(),
                    b.1.name.as_str(),
                ))
        });
        let mut w = Written::default();
        for (k, f) in self.done {
            match k {
                Kind::Output => w.output.push(f),
                Kind::Deleted => w.deleted.push(f),
                Kind::Error => w.error.push(f),
            }
        }
        Ok(w)
    }
}

fn outcome_line(severity: &str, code: &str, msg: &str) -> Value {
    json!({"resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": msg}]})
}

/// Every `reference` to `Patient/<id>` with `id` one of the person's source records
/// becomes `Patient/{person}`.
fn rewrite_deep(v: &mut Value, ids: &HashSet<String>, to: &str) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if k == "reference" {
                    let hit = x
                        .as_str()
                        .and_then(crate::validate::reference_parts)
                        .is_some_and(|(t, id)| t == "Patient" && ids.contains(id));
                    if hit {
                        *x = Value::String(to.to_string());
                    }
                } else {
                    rewrite_deep(x, ids, to);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| rewrite_deep(x, ids, to)),
        _ => {}
    }
}

/// Role switching for the raw lines: staging lines carry no organisation, so org roles
/// are not granted `staging.raw_line`; the export reads exactly the keys of rows it
/// selected under row-level security, as the server's own role, then switches back.
struct Roles {
    /// The organisation role the transaction runs as (`None`: not switched).
    org: Option<String>,
}

impl Roles {
    async fn detect(tx: &Transaction<'_>) -> Result<Roles, ExportError> {
        let r = tx
            .query_one("SELECT current_user::text, session_user::text", &[])
            .await?;
        let (cur, sess): (String, String) = (r.get(0), r.get(1));
        Ok(Roles {
            org: (cur != sess).then_some(cur),
        })
    }
    async fn server(&self, tx: &Transaction<'_>) -> Result<(), ExportError> {
        if self.org.is_some() {
            tx.batch_execute("SET LOCAL ROLE NONE").await?;
        }
        Ok(())
    }
    async fn org(&self, tx: &Transaction<'_>) -> Result<(), ExportError> {
        if let Some(o) = &self.org {
            tx.batch_execute(&format!("SET LOCAL ROLE {}", quote_ident(o)))
                .await?;
        }
        Ok(())
    }
}

async fn raw_lines(
    tx: &Transaction<'_>,
    roles: &Roles,
    keys: &[(i64, i64)],
) -> Result<HashMap<(i64, i64), String>, ExportError> {
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let (b, l): (Vec<i64>, Vec<i64>) = keys.iter().copied().unzip();
    roles.server(tx).await?;
    let rows = tx.query(RAW_SQL, &[&b, &l]).await;
    roles.org(tx).await?;
    Ok(rows?
        .into_iter()
        .map(|r| ((r.get(0), r.get(1)), r.get(2)))
        .collect())
}

/// Of these persons, those with no source record at all (merged into another person):
/// an org role cannot tell "gone" from "another organisation's", so a SECURITY DEFINER
/// function of migration 0016 answers.
async fn gone_persons(tx: &Transaction<'_>, ids: &[i64]) -> Result<Vec<i64>, ExportError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(tx
        .query("SELECT edw.persons_without_records($1::bigint[])", &[&ids])
        .await?
        .into_iter()
        .map(|r| r.get(0))
        .collect())
}

/// A referenced resource found: (type, id, its line, or the resource built from its row).
type Found = (String, String, Option<(i64, i64)>, Option<Value>);

/// Reference data followed from exported resources: (type, source, id).
type RefKey = (String, String, String);

struct Refs {
    /// Types followed: Practitioner, Organization and the shared types (rows of
    /// `edw.resource` about no patient: Medication, Location, ...) that are wanted.
    types: Vec<String>,
    /// Already written, by (type, id) (ids as sent; the first source wins).
    written: HashSet<(String, String)>,
    pending: BTreeSet<RefKey>,
}

impl Refs {
    fn collect(&mut self, v: &Value, source: &str) {
        if self.types.is_empty() {
            return;
        }
        let mut out = Vec::new();
        references_to(v, &self.types, &mut out);
        for (t, id) in out {
            if !self.written.contains(&(t.clone(), id.clone())) {
                self.pending.insert((t, source.to_string(), id));
            }
        }
    }

    /// Looks up and writes the pending references.
    async fn flush(
        &mut self,
        tx: &Transaction<'_>,
        roles: &Roles,
        plan: &Plan,
        distributed: bool,
        files: &mut Files,
    ) -> Result<(), ExportError> {
        let pending = std::mem::take(&mut self.pending);
        if pending.is_empty() {
            return Ok(());
        }
        let mut by_type: HashMap<&str, (Vec<&str>, Vec<&str>)> = HashMap::new();
        for (t, s, i) in &pending {
            let e = by_type.entry(t.as_str()).or_default();
            e.0.push(s);
            e.1.push(i);
        }
        // (type, id) -> either a line key or a resource built from the row.
        let mut found: Vec<Found> = Vec::new();
        for (t, (ss, is)) in by_type {
            match t {
                "Practitioner" => {
                    for r in tx
                        .query(
                            "SELECT p.source_id, p.batch_id, p.line_no, p.npi, p.family, p.given, p.active
                             FROM unnest($1::text[], $2::text[]) AS u(s, i)
                             JOIN edw.practitioner p ON p.source = u.s AND p.source_id = u.i",
                            &[&ss, &is],
                        )
                        .await?
                    {
                        let id: String = r.get(0);
                        let key = r.get::<_, Option<i64>>(1).zip(r.get::<_, Option<i64>>(2));
                        let built = key.is_none().then(|| {
                            practitioner_from_row(
                                &id,
                                r.get(3),
                                r.get(4),
                                r.get(5),
                                r.get(6),
                            )
                        });
                        found.push((t.to_string(), id, key, built));
                    }
                }
                "Organization" => {
                    for r in tx
                        .query(
                            "SELECT o.source_id, o.batch_id, o.line_no, o.npi, o.name, o.active
                             FROM unnest($1::text[], $2::text[]) AS u(s, i)
                             JOIN edw.organization o ON o.source = u.s AND o.source_id = u.i",
                            &[&ss, &is],
                        )
                        .await?
                    {
                        let id: String = r.get(0);
                        let key = r.get::<_, Option<i64>>(1).zip(r.get::<_, Option<i64>>(2));
                        let built = key.is_none().then(|| {
                            organization_from_row(&id, r.get(3), r.get(4), r.get(5))
                        });
                        found.push((t.to_string(), id, key, built));
                    }
                }
                _ => {
                    let sql = if distributed {
                        // Person 0's shard, by its (source, type, id) index.
                        "SELECT r.source_id, r.batch_id, r.line_no FROM edw.resource r
                         WHERE r.person_id = 0 AND r.resource_type = $3
                           AND (r.source, r.source_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))"
                    } else {
                        "SELECT r.source_id, r.batch_id, r.line_no
                         FROM unnest($1::text[], $2::text[]) AS u(s, i)
                         CROSS JOIN LATERAL (SELECT x.source_id, x.batch_id, x.line_no FROM edw.resource x
                             WHERE x.source = u.s AND x.resource_type = $3 AND x.source_id = u.i
                               AND x.source_patient_id IS NULL OFFSET 0) r"
                    };
                    for r in tx.query(sql, &[&ss, &is, &t]).await?
                    {
                        found.push((t.to_string(), r.get(0), Some((r.get(1), r.get(2))), None));
                    }
                }
            }
        }
        let keys: Vec<(i64, i64)> = found.iter().filter_map(|f| f.2).collect();
        let raws = raw_lines(tx, roles, &keys).await?;
        for (t, id, key, built) in found {
            if self.written.contains(&(t.clone(), id.clone())) {
                continue;
            }
            let v = match (key, built) {
                (_, Some(v)) => v,
                (Some(k), None) => match raws.get(&k).and_then(|r| serde_json::from_str(r).ok()) {
                    Some(v) => v,
                    None => continue,
                },
                (None, None) => continue,
            };
            self.written.insert((t.clone(), id));
            if plan.keeps(&t, &v) {
                files.write(Kind::Output, &t, &v)?;
            }
        }
        Ok(())
    }
}

fn practitioner_from_row(
    id: &str,
    npi: Option<String>,
    family: Option<String>,
    given: Option<String>,
    active: Option<bool>,
) -> Value {
    let mut v = json!({"resourceType": "Practitioner", "id": id});
    if let Some(n) = npi {
        v["identifier"] = json!([{"system": "http://hl7.org/fhir/sid/us-npi", "value": n}]);
    }
    if family.is_some() || given.is_some() {
        let mut name = json!({});
        if let Some(f) = family {
            name["family"] = json!(f);
        }
        if let Some(g) = given {
            name["given"] = json!(g.split(' ').collect::<Vec<_>>());
        }
        v["name"] = json!([name]);
    }
    if let Some(a) = active {
        v["active"] = json!(a);
    }
    v
}

fn organization_from_row(
    id: &str,
    npi: Option<String>,
    name: Option<String>,
    active: Option<bool>,
) -> Value {
    let mut v = json!({"resourceType": "Organization", "id": id});
    if let Some(n) = npi {
        v["identifier"] = json!([{"system": "http://hl7.org/fhir/sid/us-npi", "value": n}]);
    }
    if let Some(n) = name {
        v["name"] = json!(n);
    }
    if let Some(a) = active {
        v["active"] = json!(a);
    }
    v
}

/// Types with rows about no patient in `edw.resource` (Medication, Location, ...). On the
/// cluster they are person 0's rows, on one shard.
async fn shared_types(tx: &Transaction<'_>, distributed: bool) -> Result<Vec<String>, ExportError> {
    let candidates: Vec<&str> = crate::validate::R4_TYPES
        .iter()
        .copied()
        .filter(|t| !crate::validate::SUPPORTED.contains(t) && crate::validate::loadable(t))
        .collect();
    let sql = if distributed {
        "SELECT DISTINCT r.resource_type FROM edw.resource r
         WHERE r.person_id = 0 AND r.resource_type = ANY($1::text[])"
    } else {
        "SELECT t FROM unnest($1::text[]) AS u(t)
         WHERE EXISTS (SELECT 1 FROM edw.resource r WHERE r.resource_type = u.t AND r.source_patient_id IS NULL)"
    };
    Ok(tx
        .query(sql, &[&candidates])
        .await?
        .into_iter()
        .map(|r| r.get(0))
        .collect())
}

/// Tables whose rows hang off a source patient (as measure reads them).
fn patient_line_tables() -> impl Iterator<Item = &'static str> {
    crate::CLINICAL_TABLES.iter().copied().chain(["resource"])
}

/// Runs the export. `tx` must run as the client's organisation role (every selection
/// is filtered by row-level security) and should have started after
/// [`kickoff_clock`].
pub async fn export(tx: &Transaction<'_>, x: &Export<'_>) -> Result<Written, ExportError> {
    let roles = Roles::detect(tx).await?;
    let plan = x.plan;
    let mut files = Files::new(x.dir, x.max_lines)?;
    for msg in &plan.ignored {
        files.write(
            Kind::Error,
            "OperationOutcome",
            &outcome_line("warning", "not-supported", msg),
        )?;
    }

    // The Group.
    let Some(g) = tx
        .query_opt(
            "SELECT g.kind, g.name,
                    CASE g.kind WHEN 'practitioner' THEN (SELECT 'Practitioner/' || p.source_id FROM edw.practitioner p WHERE p.id = g.ref_id)
                                ELSE (SELECT 'Organization/' || o.source_id FROM edw.care_team ct JOIN edw.organization o ON o.id = ct.organization_id WHERE ct.id = g.ref_id) END,
                    CASE g.kind WHEN 'practitioner' THEN (SELECT p.source FROM edw.practitioner p WHERE p.id = g.ref_id)
                                ELSE (SELECT o.source FROM edw.care_team ct JOIN edw.organization o ON o.id = ct.organization_id WHERE ct.id = g.ref_id) END
             FROM edw.patient_group g WHERE g.id = $1",
            &[&x.group_id],
        )
        .await?
    else {
        return Err(ExportError::NoGroup);
    };
    let (name, managing, managing_source): (Option<String>, Option<String>, Option<String>) =
        (g.get(1), g.get(2), g.get(3));
    // Members the organisation may see (edw.person is filtered by row-level security):
    // a member of another organisation is never exported, even by id.
    let members: Vec<(i64, i64)> = tx
        .query(
            "SELECT m.person_id, m.joined_change_no FROM edw.patient_group_member m
             WHERE m.group_id = $1 AND m.person_id IN (SELECT id FROM edw.person)
             ORDER BY m.person_id",
            &[&x.group_id],
        )
        .await?
        .into_iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let mut written = Written {
        patients: members.len() as u64,
        ..Written::default()
    };

    let mut ref_types: Vec<String> = ["Practitioner", "Organization"]
        .into_iter()
        .map(String::from)
        .collect();
    ref_types.extend(shared_types(tx, x.distributed).await?);
    ref_types.retain(|t| plan.wants(t));
    let mut refs = Refs {
        types: ref_types,
        written: HashSet::new(),
        pending: BTreeSet::new(),
    };

    // With `_since`, the Group itself only when its membership changed after the
    // watermark (a member joined or left): a 50,000-member Group is 2 MB.
    let group_changed = match x.since {
        None => true,
        Some(w) => {
            members.iter().any(|(_, joined)| *joined > w)
                || tx
                    .query_one(
                        "SELECT EXISTS (SELECT 1 FROM edw.patient_group_left
                                        WHERE group_id = $1 AND left_change_no > $2)",
                        &[&x.group_id, &w],
                    )
                    .await?
                    .get::<_, bool>(0)
        }
    };
    if plan.wants("Group") && group_changed {
        let mut group = json!({"resourceType": "Group", "id": x.group_id.to_string(),
            "type": "person", "actual": true, "quantity": members.len()});
        if let Some(n) = name {
            group["name"] = json!(n);
        }
        if let Some(m) = &managing {
            group["managingEntity"] = json!({"reference": m});
        }
        group["member"] = Value::Array(
            members
                .iter()
                .map(|(p, _)| json!({"entity": {"reference": format!("Patient/{p}")}}))
                .collect(),
        );
        if plan.keeps("Group", &group) {
            files.write(Kind::Output, "Group", &group)?;
        }
    }
    if let (Some(m), Some(s), true) = (&managing, &managing_source, group_changed) {
        refs.collect(&json!({"managingEntity": {"reference": m}}), s);
    }

    // Persons to export: (person, whole record).
    let member_ids: Vec<i64> = members.iter().map(|m| m.0).collect();
    let persons: Vec<(i64, bool)> = match x.since {
        None => member_ids.iter().map(|p| (*p, true)).collect(),
        Some(w) => {
            // Whole: joined after the watermark, or one of their source records changed
            // (a record matched to them, demographics).
            let mut whole: HashSet<i64> = members.iter().filter(|m| m.1 > w).map(|m| m.0).collect();
            for r in tx
                .query(
                    "SELECT DISTINCT sp.person_id FROM edw.source_patient sp
                     WHERE sp.person_id = ANY($1) AND sp.change_no > $2",
                    &[&member_ids, &w],
                )
                .await?
            {
                whole.insert(r.get(0));
            }
            let changed_sql: String = patient_line_tables()
                .map(|t| {
                    if x.distributed {
                        format!(
                            "SELECT t.person_id FROM edw.{t} t WHERE t.change_no > $2 AND t.person_id = ANY($1)"
                        )
                    } else {
                        format!(
                            "SELECT sp.person_id FROM edw.{t} t JOIN edw.source_patient sp ON sp.id = t.source_patient_id
                             WHERE t.change_no > $2 AND sp.person_id = ANY($1)"
                        )
                    }
                })
                .collect::<Vec<_>>()
                .join("\nUNION ");
            let mut changed: BTreeSet<i64> = whole.iter().copied().collect();
            for r in tx.query(&changed_sql, &[&member_ids, &w]).await? {
                changed.insert(r.get(0));
            }
            changed
                .into_iter()
                .map(|p| (p, whole.contains(&p)))
                .collect()
        }
    };
    x.progress
        .total
        .store(persons.len() as u64, Ordering::Relaxed);
    x.progress.done.store(0, Ordering::Relaxed);

    let keys_stmt = tx.prepare(&line_keys_sql(x.distributed)).await?;
    for chunk in persons.chunks(x.chunk.max(1)) {
        if x.progress.cancel.load(Ordering::Relaxed) {
            return Err(ExportError::Cancelled);
        }
        let whole: HashMap<i64, bool> = chunk.iter().copied().collect();
        let ids: Vec<i64> = chunk.iter().map(|c| c.0).collect();
        // (person, record, kind, batch, line, source, change_no)
        type Key = (i64, i64, i32, Option<i64>, Option<i64>, String, i64);
        let keys: Vec<Key> = tx
            .query(&keys_stmt, &[&ids])
            .await?
            .into_iter()
            .map(|r| {
                (
                    r.get(0),
                    r.get(1),
                    r.get(2),
                    r.get(3),
                    r.get(4),
                    r.get(5),
                    r.get(6),
                )
            })
            .filter(|k: &Key| {
                k.2 == 0
                    || whole.get(&k.0).copied().unwrap_or(true)
                    || x.since.is_none_or(|w| k.6 > w)
            })
            .collect();
        let line_keys: Vec<(i64, i64)> = keys.iter().filter_map(|k| k.3.zip(k.4)).collect();
        let mut raws = raw_lines(tx, &roles, &line_keys).await?;
        // Group by person, in chunk order.
        let mut by_person: HashMap<i64, (Vec<(Line, i64)>, String)> = HashMap::new();
        for (person, record, kind, b, l, source, cn) in keys {
            let Some(raw) = b.zip(l).and_then(|k| raws.remove(&k)) else {
                continue;
            };
            let e = by_person
                .entry(person)
                .or_insert_with(|| (Vec::new(), source));
            e.0.push(((record, kind, b.unwrap_or(0), l.unwrap_or(0), raw), cn));
        }
        for &(person, whole) in chunk {
            let Some((lines, source)) = by_person.remove(&person) else {
                continue;
            };
            let mut source_ids: HashSet<String> = HashSet::new();
            for ((_, kind, _, _, raw), _) in &lines {
                if *kind == 0 {
                    if let Some(id) = serde_json::from_str::<Value>(raw)
                        .ok()
                        .and_then(|v| v.get("id").and_then(Value::as_str).map(String::from))
                    {
                        source_ids.insert(id);
                    }
                }
            }
            let Ok((primary, resources)) = person_resources(lines) else {
                files.write(
                    Kind::Error,
                    "OperationOutcome",
                    &outcome_line(
                        "error",
                        "processing",
                        &format!("the record of Patient/{person} could not be read"),
                    ),
                )?;
                continue;
            };
            source_ids.insert(primary);
            let to = format!("Patient/{person}");
            for (i, (cn, mut v)) in resources.into_iter().enumerate() {
                if !whole && x.since.is_some_and(|w| cn <= w) {
                    continue;
                }
                if i == 0 {
                    v["id"] = json!(person.to_string());
                }
                rewrite_deep(&mut v, &source_ids, &to);
                let Some(ty) = v
                    .get("resourceType")
                    .and_then(Value::as_str)
                    .map(String::from)
                else {
                    continue;
                };
                if plan.keeps(&ty, &v) {
                    files.write(Kind::Output, &ty, &v)?;
                    refs.collect(&v, &source);
                }
            }
        }
        refs.flush(tx, &roles, plan, x.distributed, &mut files)
            .await?;
        x.progress
            .done
            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
    }
    refs.flush(tx, &roles, plan, x.distributed, &mut files)
        .await?;

    // Deleted: members who left after the watermark (and are not members again) and
    // whom the organisation may see or who have no record left; members whose person
    // has no record left (merged away).
    if let Some(w) = x.since {
        let left: Vec<i64> = tx
            .query(
                "SELECT DISTINCT l.person_id FROM edw.patient_group_left l
                 WHERE l.group_id = $1 AND l.left_change_no > $2
                   AND NOT EXISTS (SELECT 1 FROM edw.patient_group_member m
                                   WHERE m.group_id = $1 AND m.person_id = l.person_id)
                 ORDER BY 1",
                &[&x.group_id, &w],
            )
            .await?
            .into_iter()
            .map(|r| r.get(0))
            .collect();
        let visible: HashSet<i64> = tx
            .query("SELECT id FROM edw.person WHERE id = ANY($1)", &[&left])
            .await?
            .into_iter()
            .map(|r| r.get(0))
            .collect();
        let invisible_members: Vec<i64> = tx
            .query(
                "SELECT m.person_id FROM edw.patient_group_member m
                 WHERE m.group_id = $1 AND m.person_id NOT IN (SELECT id FROM edw.person)",
                &[&x.group_id],
            )
            .await?
            .into_iter()
            .map(|r| r.get(0))
            .collect();
        let mut check: Vec<i64> = left
            .iter()
            .copied()
            .filter(|p| !visible.contains(p))
            .collect();
        check.extend(&invisible_members);
        let gone: HashSet<i64> = gone_persons(tx, &check).await?.into_iter().collect();
        let mut deleted: BTreeSet<i64> = left
            .iter()
            .copied()
            .filter(|p| visible.contains(p) || gone.contains(p))
            .collect();
        deleted.extend(invisible_members.iter().filter(|p| gone.contains(p)));
        for p in deleted {
            files.write(
                Kind::Deleted,
                "Bundle",
                &json!({"resourceType": "Bundle", "type": "transaction",
                    "entry": [{"request": {"method": "DELETE", "url": format!("Patient/{p}")}}]}),
            )?;
        }
    }
    let w = files.finish()?;
    written.output = w.output;
    written.deleted = w.deleted;
    written.error = w.error;
    Ok(written)
}
