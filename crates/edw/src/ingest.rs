//! `phm-edw ingest`: NDJSON files -> staging (COPY) -> validated 3NF upserts + quarantine.
//!
//! A file is read once (sha256 + line count), registered as a batch, then cut into
//! chunks of a fixed number of lines. Each chunk is validated and its columns are
//! extracted in Rust, then one transaction COPYs its raw lines into staging, merges
//! the valid ones into 3NF, quarantines the others with their reason and records the
//! chunk as merged. Several sessions merge chunks of the same file at once.
//!
//! Crash safety / idempotence:
//! * batch identity = (source, sha256 of the file). A merged batch is skipped.
//! * a chunk's staging lines, upserts, quarantine rows and its `staging.merged_chunk`
//!   record commit together; a killed run resumes with the chunks not recorded (the
//!   chunk size is stored with the batch, so the boundaries are the same).
//! * upserts are keyed by (source, resource id) and only touch rows whose content hash
//!   changed, so re-running never duplicates anything.
//! * duplicate ids within a file are found in Rust in line order (the first valid line
//!   wins), so the result does not depend on which session merged which chunk.
//! * chunks only reference types of lower merge rank; a chunk of one type runs in
//!   parallel only with chunks of the same type after every earlier chunk of other
//!   types has committed (files of one type per file, as Bulk Data writes them, merge
//!   fully in parallel; mixed files still merge correctly).

mod generic;
mod json_merge;
mod patient;
mod typed;

use crate::validate::{self, validate_line};
use crate::{Error, Result};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct Options {
    pub source: String,
    /// Lines per chunk (one transaction each) for new batches.
    pub chunk: usize,
    pub progress: bool,
    /// Validate the next chunk on a helper thread while the current one merges
    /// (default). `false` runs everything on the session's thread (for profiling).
    pub pipeline: bool,
    /// Sessions merging chunks of a file at once (with `url`).
    pub workers: usize,
    /// Connection string for the extra sessions.
    pub url: Option<String>,
}

impl Options {
    pub fn new(source: &str) -> Self {
        Options {
            source: source.to_string(),
            chunk: 5000,
            progress: false,
            pipeline: true,
            workers: 1,
            url: None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileReport {
    pub file: String,
    pub sha256: String,
    /// The batch had been merged before: nothing was done.
    pub already_loaded: bool,
    /// A previous run had started (and maybe partly merged) this batch.
    pub resumed: bool,
    pub lines: i64,
    pub loaded: i64,
    pub quarantined: i64,
}

/// Where ingest time goes (process-wide, cumulative seconds per phase, summed over
/// threads, so phases of parallel sessions add up to more than the wall time); read by
/// the bench via [`profile`] and reset with [`reset_profile`].
pub const PHASES: [&str; 7] = [
    "read file (sha256, lines)",
    "validate + extract (Rust)",
    "wait for line order / earlier chunks",
    "COPY staging + temp tables",
    "merge SQL (reference types, jsonb)",
    "merge SQL (clinical types, typed)",
    "quarantine + chunk record + commit",
];
static PROFILE: [AtomicU64; 7] = [const { AtomicU64::new(0) }; 7];

fn prof(phase: usize, since: Instant) -> Instant {
    let now = Instant::now();
    PROFILE[phase].fetch_add((now - since).as_nanos() as u64, Ordering::Relaxed);
    now
}

/// Seconds spent per phase (same order as [`PHASES`]) since the last reset.
pub fn profile() -> [f64; 7] {
    std::array::from_fn(|i| PROFILE[i].load(Ordering::Relaxed) as f64 / 1e9)
}

pub fn reset_profile() {
    for p in &PROFILE {
        p.store(0, Ordering::Relaxed);
    }
}

/// NDJSON files under the given paths, in merge order (referenced types first).
pub fn collect_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for p in paths {
        let md = std::fs::metadata(p).map_err(|e| Error::msg(format!("{}: {e}", p.display())))?;
        if md.is_dir() {
            for e in std::fs::read_dir(p)? {
                let path = e?.path();
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if path.is_file() && (name.ends_with(".ndjson") || name.ends_with(".jsonl")) {
                    files.push(path);
                }
            }
        } else {
            files.push(p.clone());
        }
    }
    let rank = |p: &PathBuf| (file_rank(p), p.clone());
    files.sort_by_key(rank);
    files.dedup();
    if files.is_empty() {
        return Err(Error::msg("no .ndjson files found"));
    }
    Ok(files)
}

/// sha256 (hex) and number of lines of a file, in one read.
pub fn scan_file(path: &Path) -> Result<(String, i64)> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut lines = 0i64;
    let mut last = b'\n';
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        lines += buf[..n].iter().filter(|b| **b == b'\n').count() as i64;
        last = buf[n - 1];
    }
    if last != b'\n' {
        lines += 1;
    }
    Ok((crate::migrate::hex(&h.finalize()), lines))
}

/// Escape a value for COPY text format.
fn copy_escape(s: &str, out: &mut Vec<u8>) {
    // Runs without special bytes are copied whole (most lines have few escapes).
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'\\' => b"\\\\",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(esc);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

fn copy_field(v: Option<&str>, out: &mut Vec<u8>) {
    match v {
        Some(s) => copy_escape(s, out),
        None => out.extend_from_slice(b"\\N"),
    }
}

/// One COPY text row of a temp table keyed by line number: `line_no`, then the fields.
fn copy_row<'a>(
    out: &mut Vec<u8>,
    line_no: i64,
    fields: impl IntoIterator<Item = Option<&'a str>>,
) {
    out.extend_from_slice(line_no.to_string().as_bytes());
    for f in fields {
        out.push(b'\t');
        copy_field(f, out);
    }
    out.push(b'\n');
}

/// Ingest files; returns one report per file.
pub fn ingest(
    client: &mut postgres::Client,
    paths: &[PathBuf],
    opts: &Options,
) -> Result<Vec<FileReport>> {
    if opts.source.trim().is_empty() {
        return Err(Error::msg("--source must not be empty"));
    }
    match crate::migrate::current_version(client)? {
        Some(v) if v >= crate::migrate::latest_version() => {}
        _ => {
            return Err(Error::msg(
                "database is not migrated: run `phm-edw migrate` first",
            ))
        }
    }
    let distributed = crate::migrate::is_distributed(client)?;
    let files = collect_files(paths)?;
    let mut extra = Vec::new();
    if let Some(url) = &opts.url {
        for _ in 1..opts.workers.max(1) {
            extra.push(crate::connect(url)?);
        }
    }
    let mut sessions: Vec<&mut postgres::Client> = vec![client];
    sessions.extend(extra.iter_mut());
    for s in sessions.iter_mut() {
        prepare_session(s)?;
    }
    let mut reports = Vec::new();
    // Files in merge order, one after the other: a file's chunks only reference
    // resources of files before it.
    for f in &files {
        reports.push(ingest_file(&mut sessions, f, opts, distributed)?);
    }
    Ok(reports)
}

/// The merge rank of a file from its name (`Observation.ndjson`, `Observation-2.ndjson`).
fn file_rank(p: &Path) -> usize {
    let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    validate::type_rank(stem.split(['.', '-', '_']).next().unwrap_or(""))
}

fn file_label(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Temp tables a session merges through (emptied at each commit).
fn prepare_session(c: &mut postgres::Client) -> Result<()> {
    c.batch_execute(
        "CREATE TEMP TABLE IF NOT EXISTS mi (
            line_no bigint NOT NULL, rtype text, rid text, b jsonb, hash text, reason text
         ) ON COMMIT DELETE ROWS;
         CREATE TEMP TABLE IF NOT EXISTS mt_group_member (
            line_no bigint NOT NULL, pid text NOT NULL
         ) ON COMMIT DELETE ROWS;
         CREATE TEMP TABLE IF NOT EXISTS mt_patient_org (
            rid text NOT NULL, org_id bigint
         ) ON COMMIT DELETE ROWS",
    )?;
    for (t, cols) in patient::TABLES {
        c.batch_execute(&format!(
            "CREATE TEMP TABLE IF NOT EXISTS {t} ({cols}) ON COMMIT DELETE ROWS"
        ))?;
    }
    for s in typed::SPECS {
        c.batch_execute(&s.create_temp_sql())?;
    }
    c.batch_execute(generic::CREATE_TEMP)?;
    Ok(())
}

struct Batch {
    id: i64,
    chunk_lines: i64,
    /// Chunks merged by an earlier (killed) run.
    merged: HashSet<i64>,
}

fn ingest_file(
    sessions: &mut [&mut postgres::Client],
    path: &Path,
    opts: &Options,
    distributed: bool,
) -> Result<FileReport> {
    let t0 = Instant::now();
    let name = file_label(path);
    let (sha, lines) = scan_file(path)?;
    prof(0, t0);
    let mut rep = FileReport {
        file: name.clone(),
        sha256: sha.clone(),
        lines,
        ..Default::default()
    };
    let client = &mut *sessions[0];
    let existing = client.query_opt(
        "SELECT id, status, line_count, loaded_count, quarantined_count, chunk_lines
         FROM staging.load_batch WHERE source = $1 AND file_sha256 = $2",
        &[&opts.source, &sha],
    )?;
    let batch = match existing {
        Some(r) if r.get::<_, String>(1) == "merged" => {
            rep.already_loaded = true;
            rep.lines = r.get::<_, Option<i64>>(2).unwrap_or(0);
            rep.loaded = r.get(3);
            rep.quarantined = r.get(4);
            if opts.progress {
                eprintln!("ingest: {name}: already loaded (same source and sha256), skipped");
            }
            return Ok(rep);
        }
        Some(r) => {
            rep.resumed = true;
            let id: i64 = r.get(0);
            let chunk_lines = r
                .get::<_, Option<i32>>(5)
                .ok_or_else(|| {
                    Error::msg(format!(
                        "{name}: batch {id} was started by an older phm-edw; remove it or re-run with that version"
                    ))
                })? as i64;
            let merged = client
                .query(
                    "SELECT chunk_no FROM staging.merged_chunk WHERE batch_id = $1",
                    &[&id],
                )?
                .iter()
                .map(|r| r.get::<_, i32>(0) as i64)
                .collect::<HashSet<_>>();
            if opts.progress {
                eprintln!(
                    "ingest: {name}: resuming: {} of {} chunks merged by an earlier run",
                    merged.len(),
                    chunk_count(lines, chunk_lines)
                );
            }
            Batch {
                id,
                chunk_lines,
                merged,
            }
        }
        None => {
            let chunk_lines = opts.chunk.clamp(1, i32::MAX as usize) as i32;
            let id: i64 = client
                .query_one(
                    "INSERT INTO staging.load_batch (source, file_name, file_sha256, line_count, status, chunk_lines)
                     VALUES ($1, $2, $3, $4, 'loading', $5) RETURNING id",
                    &[&opts.source, &name, &sha, &lines, &chunk_lines],
                )?
                .get(0);
            Batch {
                id,
                chunk_lines: chunk_lines as i64,
                merged: HashSet::new(),
            }
        }
    };
    // Fresh statistics on the tables the merge resolves references against (loaded by
    // the previous files of this run; autovacuum lags behind a bulk load). A sample.
    client.batch_execute(if distributed {
        "ANALYZE edw.patient_key, edw.organization, edw.practitioner"
    } else {
        "ANALYZE edw.source_patient, edw.organization, edw.practitioner"
    })?;
    let run = FileRun::new(path, &name, lines, &batch, opts, distributed)?;
    let chunks = chunk_count(lines, batch.chunk_lines);
    let todo = chunks - batch.merged.len() as i64;
    let n = (sessions.len() as i64).min(todo.max(1)) as usize;
    let results: Vec<Result<()>> = std::thread::scope(|s| {
        let handles: Vec<_> = sessions[..n]
            .iter_mut()
            .map(|c| {
                let run = &run;
                s.spawn(move || {
                    let r = run.work(c);
                    if r.is_err() {
                        run.fail();
                    }
                    r
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("ingest session thread panicked"))
            .collect()
    });
    for r in results {
        r?;
    }
    let low = run.commits.lock().expect("commits").low;
    if low != chunks {
        return Err(Error::msg(format!(
            "{name}: {low} of {chunks} chunks merged; re-run to resume"
        )));
    }
    let client = &mut *sessions[0];
    let r = client.query_one(
        "UPDATE staging.load_batch b SET status = 'merged', completed_at = now(), merged_through = b.line_count,
                loaded_count = coalesce(s.loaded, 0), quarantined_count = coalesce(s.quarantined, 0)
         FROM (SELECT sum(loaded)::bigint AS loaded, sum(quarantined)::bigint AS quarantined
               FROM staging.merged_chunk WHERE batch_id = $1) s
         WHERE b.id = $1 RETURNING b.loaded_count, b.quarantined_count",
        &[&batch.id],
    )?;
    rep.loaded = r.get(0);
    rep.quarantined = r.get(1);
    if opts.progress {
        eprintln!(
            "ingest: {name}: done: {} lines = {} loaded + {} quarantined ({:.1}s)",
            rep.lines,
            rep.loaded,
            rep.quarantined,
            t0.elapsed().as_secs_f64()
        );
    }
    Ok(rep)
}

fn chunk_count(lines: i64, chunk_lines: i64) -> i64 {
    (lines + chunk_lines - 1) / chunk_lines
}

/// Lines of one chunk as read.
struct RawChunk {
    no: i64,
    first_line: i64,
    lines: Vec<Vec<u8>>,
}

/// What validation made of a line.
enum Kind {
    /// Reference types: merged from the jsonb body in SQL (`json_merge`).
    Json {
        hash: String,
        /// Group: the ids of the members' Patient references (jsonb paths and a
        /// regex per member cost 20 µs a member in SQL).
        members: Vec<String>,
    },
    /// Patients: the rows of the `patient::TABLES`.
    Patient(patient::Rows),
    /// Clinical types: the COPY row of the type's temp table.
    Typed {
        spec: &'static typed::TypedSpec,
        row: Vec<u8>,
    },
    /// Types without a typed table: the COPY row of `mt_resource`.
    Generic(Vec<u8>),
    Bad(String),
}

struct LineOut {
    rtype: Option<String>,
    rid: Option<String>,
    kind: Kind,
}

/// A chunk ready for its transaction.
struct Ready {
    no: i64,
    first_line: i64,
    last_line: i64,
    /// Every chunk below this one must have committed first.
    wait_upto: i64,
    skip: bool,
    staging: Vec<u8>,
    mi: Vec<u8>,
    /// Rows of `mt_group_member` for the chunk's Groups.
    members: Vec<u8>,
    patients: patient::Rows,
    json_types: Vec<&'static str>,
    typed: Vec<(&'static typed::TypedSpec, Vec<u8>)>,
    generic: Vec<u8>,
    quarantine: Vec<u8>,
    quarantined: i64,
}

impl Ready {
    /// Records that the chunk has valid lines of this reference type.
    fn add_json_type(&mut self, rtype: Option<&str>) {
        let t = validate::SUPPORTED
            .iter()
            .find(|s| Some(**s) == rtype)
            .expect("valid lines have a supported type");
        if !self.json_types.contains(t) {
            self.json_types.push(t);
        }
    }
}

/// Line order state, advanced chunk by chunk in file order.
struct Order {
    turn: i64,
    /// First valid line of each (type, id) so far (128 bits of sha256: no collisions
    /// in practice, and a fraction of the memory of the strings).
    seen: HashMap<u128, i64>,
    run_type: Option<&'static str>,
    run_start: i64,
}

struct Commits {
    done: Vec<bool>,
    /// All chunks below `low` have committed.
    low: i64,
    merged_lines: i64,
    loaded: i64,
    quarantined: i64,
    last_print: Instant,
}

struct FileRun<'a> {
    opts: &'a Options,
    name: &'a str,
    batch_id: i64,
    lines: i64,
    chunk_lines: i64,
    merged_before: &'a HashSet<i64>,
    /// The warehouse is distributed (Citus): the merge takes its distributed form.
    distributed: bool,
    reader: Mutex<(BufReader<std::fs::File>, i64)>,
    order: Mutex<Order>,
    order_cv: Condvar,
    commits: Mutex<Commits>,
    commits_cv: Condvar,
    failed: AtomicBool,
    started: Instant,
}

fn key_of(rtype: &str, id: &str) -> u128 {
    let mut h = Sha256::new();
    h.update(rtype.as_bytes());
    h.update([0]);
    h.update(id.as_bytes());
    let d = h.finalize();
    u128::from_le_bytes(d[..16].try_into().expect("16 bytes"))
}

/// A transaction that may be retried: deadlock or serialization failure between
/// sessions (e.g. two chunks adding the same practitioner specialty).
fn retryable(e: &Error) -> bool {
    let s = e.to_string();
    s.contains("40P01") || s.contains("40001")
}

impl<'a> FileRun<'a> {
    fn new(
        path: &Path,
        name: &'a str,
        lines: i64,
        batch: &'a Batch,
        opts: &'a Options,
        distributed: bool,
    ) -> Result<Self> {
        let chunks = chunk_count(lines, batch.chunk_lines);
        let mut done = vec![false; chunks as usize];
        for c in &batch.merged {
            if let Some(d) = done.get_mut(*c as usize) {
                *d = true;
            }
        }
        let low = done.iter().take_while(|d| **d).count() as i64;
        Ok(FileRun {
            opts,
            name,
            batch_id: batch.id,
            lines,
            chunk_lines: batch.chunk_lines,
            merged_before: &batch.merged,
            distributed,
            reader: Mutex::new((
                BufReader::with_capacity(1 << 20, std::fs::File::open(path)?),
                0,
            )),
            order: Mutex::new(Order {
                turn: 0,
                seen: HashMap::new(),
                run_type: None,
                run_start: 0,
            }),
            order_cv: Condvar::new(),
            commits: Mutex::new(Commits {
                done,
                low,
                merged_lines: 0,
                loaded: 0,
                quarantined: 0,
                last_print: Instant::now(),
            }),
            commits_cv: Condvar::new(),
            failed: AtomicBool::new(false),
            started: Instant::now(),
        })
    }

    fn fail(&self) {
        self.failed.store(true, Ordering::SeqCst);
        // Take the locks so no waiter misses the wake-up between its check and wait.
        drop(self.order.lock());
        self.order_cv.notify_all();
        drop(self.commits.lock());
        self.commits_cv.notify_all();
    }

    fn check_failed(&self) -> Result<()> {
        if self.failed.load(Ordering::SeqCst) {
            Err(Error::msg("ingest stopped: another session failed"))
        } else {
            Ok(())
        }
    }

    /// One session: take chunks in file order, prepare, merge, until the file ends.
    fn work(&self, c: &mut postgres::Client) -> Result<()> {
        let mut next = self.next_ready()?;
        while let Some(cur) = next {
            self.check_failed()?;
            let (res, following) = if self.opts.pipeline {
                std::thread::scope(|s| {
                    let helper = s.spawn(|| {
                        let r = self.next_ready();
                        if r.is_err() {
                            self.fail();
                        }
                        r
                    });
                    let res = self.merge(c, &cur);
                    if res.is_err() {
                        self.fail();
                    }
                    (res, helper.join().expect("ingest helper thread panicked"))
                })
            } else {
                let res = self.merge(c, &cur);
                let following = if res.is_err() {
                    Ok(None)
                } else {
                    self.next_ready()
                };
                (res, following)
            };
            res?;
            next = following?;
        }
        Ok(())
    }

    /// The next chunk of the file, validated and in line order; `None` at the end.
    /// Chunks an earlier run merged are validated too (for the duplicate state) and
    /// skipped.
    fn next_ready(&self) -> Result<Option<Ready>> {
        loop {
            self.check_failed()?;
            let Some(raw) = self.read_chunk()? else {
                return Ok(None);
            };
            let t = Instant::now();
            let outs = self.validate(&raw);
            let t = prof(1, t);
            let ready = self.order(raw, outs)?;
            prof(2, t);
            if !ready.skip {
                return Ok(Some(ready));
            }
        }
    }

    fn read_chunk(&self) -> Result<Option<RawChunk>> {
        let t = Instant::now();
        let mut g = self.reader.lock().expect("reader");
        let (reader, read) = &mut *g;
        if *read >= self.lines {
            return Ok(None);
        }
        let no = *read / self.chunk_lines;
        let first_line = *read + 1;
        let mut lines = Vec::with_capacity(self.chunk_lines as usize);
        while (lines.len() as i64) < self.chunk_lines && *read < self.lines {
            let mut line = Vec::new();
            if reader.read_until(b'\n', &mut line)? == 0 {
                return Err(Error::msg(format!(
                    "{}: the file changed while it was read ({} of {} lines)",
                    self.name, *read, self.lines
                )));
            }
            while matches!(line.last(), Some(b'\n' | b'\r')) {
                line.pop();
            }
            lines.push(line);
            *read += 1;
        }
        drop(g);
        prof(0, t);
        Ok(Some(RawChunk {
            no,
            first_line,
            lines,
        }))
    }

    fn validate(&self, raw: &RawChunk) -> Vec<LineOut> {
        raw.lines
            .iter()
            .enumerate()
            .map(|(i, line)| {
                let line_no = raw.first_line + i as i64;
                let bad = |t: Option<String>, id: Option<String>, r: String| LineOut {
                    rtype: t,
                    rid: id,
                    kind: Kind::Bad(r),
                };
                let text = match std::str::from_utf8(line) {
                    Ok(t) if !line.contains(&0) => t,
                    _ => return bad(None, None, "line is not valid UTF-8".into()),
                };
                let v = match validate_line(text) {
                    Ok(v) => v,
                    Err(inv) => return bad(inv.resource_type, inv.resource_id, inv.reason),
                };
                let hash = crate::migrate::hex(&Sha256::digest(text.trim().as_bytes()));
                let kind = match typed::spec(&v.resource_type) {
                    None if v.resource_type == "Patient" => {
                        Kind::Patient(patient::Rows::extract(line_no, &v.id, &hash, &v.body))
                    }
                    Some(spec) => {
                        let mut row = Vec::with_capacity(line.len() / 2);
                        match spec.copy_row(line_no, &v.id, &hash, &v.body, &mut row) {
                            Ok(()) => Kind::Typed { spec, row },
                            Err(reason) => Kind::Bad(reason),
                        }
                    }
                    None if !validate::SUPPORTED.contains(&v.resource_type.as_str()) => {
                        let mut row = Vec::new();
                        generic::copy_row(
                            line_no,
                            &v.resource_type,
                            &v.id,
                            &hash,
                            &v.body,
                            &mut row,
                        );
                        Kind::Generic(row)
                    }
                    None => Kind::Json {
                        hash,
                        members: if v.resource_type == "Group" {
                            typed::group_member_patients(&v.body)
                        } else {
                            Vec::new()
                        },
                    },
                };
                LineOut {
                    rtype: Some(v.resource_type),
                    rid: Some(v.id),
                    kind,
                }
            })
            .collect()
    }

    /// In file order: mark duplicates, decide what the chunk waits for, build the
    /// COPY payloads.
    fn order(&self, raw: RawChunk, mut outs: Vec<LineOut>) -> Result<Ready> {
        let mut types: Vec<&'static str> = Vec::new();
        let wait_upto;
        {
            let mut o = self.order.lock().expect("order");
            while o.turn != raw.no {
                self.check_failed()?;
                o = self.order_cv.wait(o).expect("order");
            }
            for (i, out) in outs.iter_mut().enumerate() {
                if matches!(out.kind, Kind::Bad(_)) {
                    continue;
                }
                let (Some(t), Some(id)) = (&out.rtype, &out.rid) else {
                    continue;
                };
                let line_no = raw.first_line + i as i64;
                match o.seen.entry(key_of(t, id)) {
                    std::collections::hash_map::Entry::Occupied(e) => {
                        out.kind = Kind::Bad(format!(
                            "duplicate resource id in file (first at line {})",
                            e.get()
                        ));
                    }
                    std::collections::hash_map::Entry::Vacant(e) => {
                        e.insert(line_no);
                        // The modelled types first: they are almost every line.
                        let st = validate::SUPPORTED
                            .iter()
                            .chain(validate::R4_TYPES)
                            .find(|s| **s == t.as_str())
                            .expect("valid lines have an R4 type");
                        if !types.contains(st) {
                            types.push(st);
                        }
                    }
                }
            }
            wait_upto = match types.as_slice() {
                [] => 0,
                [t] if o.run_type == Some(*t) => o.run_start,
                [t] => {
                    o.run_type = Some(*t);
                    o.run_start = raw.no;
                    raw.no
                }
                // Mixed: no run; the next chunk of one type starts a new run, so it
                // waits for this one.
                _ => {
                    o.run_type = None;
                    raw.no
                }
            };
            o.turn += 1;
        }
        self.order_cv.notify_all();
        types.sort_by_key(|t| validate::type_rank(t));
        let skip = self.merged_before.contains(&raw.no);
        let last_line = raw.first_line + raw.lines.len() as i64 - 1;
        let mut ready = Ready {
            no: raw.no,
            first_line: raw.first_line,
            last_line,
            wait_upto,
            skip,
            staging: Vec::new(),
            mi: Vec::new(),
            members: Vec::new(),
            patients: patient::Rows::default(),
            json_types: Vec::new(),
            typed: Vec::new(),
            generic: Vec::new(),
            quarantine: Vec::new(),
            quarantined: 0,
        };
        if skip {
            return Ok(ready);
        }
        let mut typed_rows: HashMap<&'static str, Vec<u8>> = HashMap::new();
        let b = self.batch_id.to_string();
        for (i, (line, out)) in raw.lines.iter().zip(outs).enumerate() {
            let line_no = raw.first_line + i as i64;
            // Invalid UTF-8 and NUL (which PostgreSQL text cannot hold) are kept lossily
            // and flagged.
            let (text, bad_utf8) = match std::str::from_utf8(line) {
                Ok(t) if !line.contains(&0) => (std::borrow::Cow::Borrowed(t), false),
                _ => (
                    std::borrow::Cow::Owned(
                        String::from_utf8_lossy(line).replace('\0', "\u{FFFD}"),
                    ),
                    true,
                ),
            };
            write!(ready.staging, "{b}\t{line_no}\t")?;
            copy_escape(&text, &mut ready.staging);
            ready
                .staging
                .extend_from_slice(if bad_utf8 { b"\tt\n" } else { b"\tf\n" });
            match out.kind {
                Kind::Json { hash, members } => {
                    for pid in &members {
                        copy_row(&mut ready.members, line_no, [Some(pid.as_str())]);
                    }
                    write!(ready.mi, "{line_no}\t")?;
                    copy_field(out.rtype.as_deref(), &mut ready.mi);
                    ready.mi.push(b'\t');
                    copy_field(out.rid.as_deref(), &mut ready.mi);
                    ready.mi.push(b'\t');
                    // The line as sent (it parsed as JSON): jsonb reads it directly.
                    copy_escape(text.trim(), &mut ready.mi);
                    writeln!(ready.mi, "\t{hash}\t\\N")?;
                    ready.add_json_type(out.rtype.as_deref());
                }
                Kind::Patient(mut rows) => {
                    ready.patients.append(&mut rows);
                    ready.add_json_type(out.rtype.as_deref());
                }
                Kind::Typed { spec, row } => {
                    typed_rows
                        .entry(spec.rtype)
                        .or_default()
                        .extend_from_slice(&row);
                }
                Kind::Generic(row) => ready.generic.extend_from_slice(&row),
                Kind::Bad(reason) => {
                    ready.quarantined += 1;
                    write!(ready.quarantine, "{b}\t{line_no}\t")?;
                    copy_escape(&self.opts.source, &mut ready.quarantine);
                    ready.quarantine.push(b'\t');
                    copy_escape(self.name, &mut ready.quarantine);
                    ready.quarantine.push(b'\t');
                    copy_field(out.rtype.as_deref(), &mut ready.quarantine);
                    ready.quarantine.push(b'\t');
                    copy_field(out.rid.as_deref(), &mut ready.quarantine);
                    ready.quarantine.push(b'\t');
                    copy_escape(&reason, &mut ready.quarantine);
                    ready.quarantine.push(b'\n');
                }
            }
        }
        ready.json_types.sort_by_key(|t| validate::type_rank(t));
        let mut typed: Vec<_> = typed_rows
            .into_iter()
            .map(|(t, rows)| (typed::spec(t).expect("typed spec"), rows))
            .collect();
        typed.sort_by_key(|(s, _)| validate::type_rank(s.rtype));
        ready.typed = typed;
        Ok(ready)
    }

    /// The chunk's transaction (retried on a deadlock with another session).
    fn merge(&self, c: &mut postgres::Client, r: &Ready) -> Result<()> {
        let t = Instant::now();
        {
            let mut g = self.commits.lock().expect("commits");
            while g.low < r.wait_upto {
                self.check_failed()?;
                g = self.commits_cv.wait(g).expect("commits");
            }
        }
        prof(2, t);
        let mut attempt = 0;
        let quarantined = loop {
            match self.merge_tx(c, r) {
                Ok(q) => break q,
                Err(e) if retryable(&e) && attempt < 3 => attempt += 1,
                Err(e) => {
                    return Err(Error::msg(format!(
                        "merge of lines {}..={} of {} failed: {e}",
                        r.first_line, r.last_line, self.name
                    )))
                }
            }
        };
        let lines = r.last_line - r.first_line + 1;
        let mut g = self.commits.lock().expect("commits");
        g.done[r.no as usize] = true;
        while g.done.get(g.low as usize).copied().unwrap_or(false) {
            g.low += 1;
        }
        g.merged_lines += lines;
        g.quarantined += quarantined;
        g.loaded += lines - quarantined;
        if self.opts.progress && g.last_print.elapsed().as_secs_f64() >= 2.0 {
            g.last_print = Instant::now();
            let secs = self.started.elapsed().as_secs_f64().max(1e-3);
            eprintln!(
                "ingest: {}: {}/{} lines, {} loaded, {} quarantined, {:.0} lines/s",
                self.name,
                g.merged_lines,
                self.lines,
                g.loaded,
                g.quarantined,
                g.merged_lines as f64 / secs
            );
        }
        drop(g);
        self.commits_cv.notify_all();
        Ok(())
    }

    /// Whether another batch of the source may hold resources of these types (one still
    /// being loaded, or a merged one that had them; migration 0017), so that one of the
    /// chunk's resources may be stored about another patient: on the cluster it must be
    /// looked for on every shard, and on both forms its old person is logged for the
    /// incremental measure. The file's own batch never does: within a file an id is valid
    /// once.
    fn types_loaded_before(&self, tx: &mut postgres::Transaction, types: &[&str]) -> Result<bool> {
        Ok(tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM staging.load_batch b
                    WHERE b.source = $1 AND b.id <> $2
                      AND (b.status = 'staged'
                           OR EXISTS (SELECT 1 FROM staging.batch_type t WHERE t.batch_id = b.id
                                        AND (t.resource_type = ANY ($3::text[]) OR t.resource_type = '*'))))",
                &[&self.opts.source, &self.batch_id, &types],
            )?
            .get(0))
    }

    /// Returns the number of lines quarantined.
    fn merge_tx(&self, c: &mut postgres::Client, r: &Ready) -> Result<i64> {
        let src = &self.opts.source;
        let batch_id = self.batch_id;
        let mut tp = Instant::now();
        let mut tx = c.transaction()?;
        // JIT compilation (on by default in Debian's PostgreSQL 15) costs more than
        // these per-chunk statements run for.
        tx.batch_execute("SET LOCAL jit = off")?;
        // Writes source rows: `measure` waits for this before reading its change
        // watermark.
        tx.execute(
            "SELECT pg_advisory_xact_lock_shared($1)",
            &[&crate::measure::SOURCE_WRITE_LOCK],
        )?;
        let copy = |tx: &mut postgres::Transaction, sql: &str, data: &[u8]| -> Result<()> {
            let mut w = tx.copy_in(sql)?;
            w.write_all(data)?;
            w.finish()?;
            Ok(())
        };
        copy(
            &mut tx,
            "COPY staging.raw_line (batch_id, line_no, raw, bad_utf8) FROM STDIN",
            &r.staging,
        )?;
        let mut quarantined = r.quarantined;
        if !r.mi.is_empty() {
            copy(
                &mut tx,
                "COPY mi (line_no, rtype, rid, b, hash, reason) FROM STDIN",
                &r.mi,
            )?;
            // Temp tables are never auto-analysed; the reference-type statements join mi.
            tx.batch_execute("ANALYZE mi (line_no, rtype, rid, reason)")?;
        }
        if !r.patients.is_empty() {
            for ((t, _), rows) in patient::TABLES.iter().zip(&r.patients.0) {
                if !rows.is_empty() {
                    copy(&mut tx, &format!("COPY {t} FROM STDIN"), rows)?;
                }
            }
        }
        if !r.members.is_empty() {
            copy(
                &mut tx,
                "COPY mt_group_member (line_no, pid) FROM STDIN",
                &r.members,
            )?;
            tx.batch_execute("ANALYZE mt_group_member")?;
        }
        for (spec, rows) in &r.typed {
            copy(&mut tx, &spec.copy_sql(), rows)?;
        }
        if !r.generic.is_empty() {
            copy(&mut tx, generic::COPY, &r.generic)?;
        }
        tp = prof(3, tp);
        for t in &r.json_types {
            let spec = json_merge::SPECS
                .iter()
                .find(|s| s.rtype == *t)
                .expect("json spec for a reference type");
            for (path, table) in spec.required_refs {
                // The referenced table (small; a reference table on Citus) in a CTE, then the
                // lines marked by number: Citus plans no join of one with a temp table that
                // is being updated.
                let unresolved: Vec<i64> = tx
                    .query(
                        &format!(
                            "WITH x AS MATERIALIZED (SELECT source_id FROM edw.{table} WHERE source = $1)
                             SELECT mi.line_no FROM mi WHERE mi.reason IS NULL AND mi.rtype = $2
                               AND NOT EXISTS (SELECT 1 FROM x WHERE x.source_id = edw.ref_id(mi.b->'{path}'->>'reference'))"
                        ),
                        &[src, t],
                    )?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                if !unresolved.is_empty() {
                    tx.execute(
                        "UPDATE mi SET reason = $1 WHERE line_no = ANY ($2)",
                        &[
                            &format!(
                                "unresolved reference {path}: no such resource from this source"
                            ),
                            &unresolved,
                        ],
                    )?;
                }
            }
            let distributed_steps = match spec.distributed {
                Some(steps) if self.distributed => steps(),
                _ => Vec::new(),
            };
            let steps = if distributed_steps.is_empty() {
                spec.sql
            } else {
                &distributed_steps[..]
            };
            for step in steps {
                let sql = match step {
                    json_merge::Step::Sql(sql) => *sql,
                    json_merge::Step::Owned(sql) => sql.as_str(),
                    json_merge::Step::ById { ids, sql } => {
                        let ids: Vec<i64> =
                            tx.query(*ids, &[src])?.iter().map(|r| r.get(0)).collect();
                        if !ids.is_empty() {
                            tx.execute(*sql, &[&ids])?;
                        }
                        continue;
                    }
                };
                if sql.contains("$2") {
                    tx.execute(sql, &[src, &batch_id])?;
                } else {
                    tx.execute(sql, &[src])?;
                }
            }
        }
        if !r.mi.is_empty() {
            quarantined += tx.execute(
                "INSERT INTO edw.quarantine (batch_id, line_no, source, file_name, resource_type, resource_id, reason)
                 SELECT $1, line_no, $2, $3, rtype, rid, reason FROM mi WHERE reason IS NOT NULL
                 ON CONFLICT (batch_id, line_no) DO NOTHING",
                &[&batch_id, src, &self.name],
            )? as i64;
        }
        tp = prof(4, tp);
        for (spec, _) in &r.typed {
            if self.types_loaded_before(&mut tx, &[spec.rtype])? {
                if self.distributed {
                    tx.execute(&spec.unlink_moved_sql(), &[src])?;
                } else {
                    tx.execute(&spec.log_moved_sql(), &[src])?;
                }
            }
            quarantined += tx.execute(
                &spec.merge_sql(self.distributed),
                &[src, &batch_id, &self.name],
            )? as i64;
        }
        let mut chunk_types: Vec<String> = r.json_types.iter().map(|t| t.to_string()).collect();
        chunk_types.extend(r.typed.iter().map(|(spec, _)| spec.rtype.to_string()));
        if !r.generic.is_empty() {
            let types: Vec<String> = tx
                .query("SELECT DISTINCT rtype FROM mt_resource", &[])?
                .iter()
                .map(|r| r.get(0))
                .collect();
            let types_ref: Vec<&str> = types.iter().map(String::as_str).collect();
            if self.types_loaded_before(&mut tx, &types_ref)? {
                if self.distributed {
                    tx.execute(&generic::unlink_moved_sql(), &[src])?;
                } else {
                    tx.execute(&generic::log_moved_sql(), &[src])?;
                }
            }
            chunk_types.extend(types);
            quarantined += tx.execute(
                &generic::merge_sql(self.distributed),
                &[src, &batch_id, &self.name],
            )? as i64;
        }
        tp = prof(5, tp);
        if !r.quarantine.is_empty() {
            copy(
                &mut tx,
                "COPY edw.quarantine (batch_id, line_no, source, file_name, resource_type, resource_id, reason) FROM STDIN",
                &r.quarantine,
            )?;
        }
        if !chunk_types.is_empty() {
            tx.execute(
                "INSERT INTO staging.batch_type (batch_id, resource_type)
                 SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING",
                &[&batch_id, &chunk_types],
            )?;
        }
        let lines = r.last_line - r.first_line + 1;
        tx.execute(
            "INSERT INTO staging.merged_chunk (batch_id, chunk_no, first_line, last_line, loaded, quarantined)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &batch_id,
                &(r.no as i32),
                &r.first_line,
                &r.last_line,
                &((lines - quarantined) as i32),
                &(quarantined as i32),
            ],
        )?;
        tx.commit()?;
        prof(6, tp);
        Ok(quarantined)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_escape_escapes_only_copy_specials() {
        let mut out = Vec::new();
        copy_escape("a\\b\tc\nd\re", &mut out);
        assert_eq!(out, b"a\\\\b\\tc\\nd\\re");
        out.clear();
        copy_escape("\\\\plain \u{e9}\n", &mut out);
        assert_eq!(out, "\\\\\\\\plain \u{e9}\\n".as_bytes());
        out.clear();
        copy_field(None, &mut out);
        assert_eq!(out, b"\\N");
    }

    #[test]
    fn hex_is_lowercase_two_digits_per_byte() {
        assert_eq!(crate::migrate::hex(&[0, 9, 10, 255, 0x5a]), "00090aff5a");
        assert_eq!(
            crate::migrate::hex(&Sha256::digest(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
