//! `phm-edw ingest`: NDJSON files -> staging (COPY) -> validated 3NF upserts + quarantine.
//!
//! Crash safety / idempotence:
//! * batch identity = (source, sha256 of the file). A merged batch is skipped.
//! * staging of a file (batch row + COPY of all lines) is one transaction.
//! * the merge runs in chunks; each chunk's upserts, quarantine rows and the batch's
//!   `merged_through` restart point commit together. A killed run resumes after the
//!   last committed chunk; upserts are keyed by (source, resource id) and only touch
//!   rows whose content hash changed, so re-running never duplicates anything.

use crate::validate::{self, validate_line};
use crate::{Error, Result};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct Options {
    pub source: String,
    pub chunk: usize,
    pub progress: bool,
    /// Validate the next chunk on a helper thread while the current one merges
    /// (default). `false` runs everything on the caller's thread (for profiling).
    pub pipeline: bool,
    /// Sessions merging files at once (with `url`). Files of the clinical types,
    /// which only reference patients and reference data loaded before them, merge in
    /// parallel, one type per session (different target tables: no lock conflicts).
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

/// From this type on (see `validate::SUPPORTED`) files depend only on types ranked
/// before it, not on each other.
const PARALLEL_FROM: &str = "Group";

#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileReport {
    pub file: String,
    pub sha256: String,
    /// The batch had been merged before: nothing was done.
    pub already_loaded: bool,
    /// A previous run had staged (and maybe partly merged) this batch.
    pub resumed: bool,
    pub lines: i64,
    pub loaded: i64,
    pub quarantined: i64,
}

/// Where ingest time goes (process-wide, cumulative wall seconds per phase); read by the
/// bench via [`profile`] and reset with [`reset_profile`]. Phases: 0 stage COPY,
/// 1 fetch staged lines, 2 validate (Rust), 3 COPY into mi + ANALYZE, 4 duplicate and
/// reference checks (SQL), 5 3NF merge SQL, 6 quarantine + restart point + commit.
pub const PHASES: [&str; 7] = [
    "stage COPY",
    "fetch staged lines",
    "validate (Rust: parse + checks + hash)",
    "COPY into mi + ANALYZE",
    "duplicate/reference checks (SQL)",
    "3NF merge SQL",
    "quarantine + restart point + commit",
];
static PROFILE: [std::sync::atomic::AtomicU64; 7] =
    [const { std::sync::atomic::AtomicU64::new(0) }; 7];

fn prof(phase: usize, since: Instant) -> Instant {
    let now = Instant::now();
    PROFILE[phase].fetch_add(
        (now - since).as_nanos() as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
    now
}

/// Seconds spent per phase (same order as [`PHASES`]) since the last reset.
pub fn profile() -> [f64; 7] {
    std::array::from_fn(|i| PROFILE[i].load(std::sync::atomic::Ordering::Relaxed) as f64 / 1e9)
}

pub fn reset_profile() {
    for p in &PROFILE {
        p.store(0, std::sync::atomic::Ordering::Relaxed);
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

pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(crate::migrate::hex(&h.finalize()))
}

/// Escape a value for COPY text format.
fn copy_escape(s: &str, out: &mut Vec<u8>) {
    for b in s.bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(b),
        }
    }
}

fn copy_field(v: Option<&str>, out: &mut Vec<u8>) {
    match v {
        Some(s) => copy_escape(s, out),
        None => out.extend_from_slice(b"\\N"),
    }
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
    let files = collect_files(paths)?;
    let mut reports = Vec::new();
    let url = match &opts.url {
        Some(u) if opts.workers > 1 => u.clone(),
        _ => {
            for f in files {
                reports.push(ingest_file(client, &f, opts)?);
            }
            return Ok(reports);
        }
    };
    let from = validate::type_rank(PARALLEL_FROM);
    let unknown = validate::SUPPORTED.len();
    // Reference data and patients first, in order; then the independent types in
    // parallel (files of one type in order, in one session); unknown names last.
    let mut groups: Vec<(usize, Vec<PathBuf>)> = Vec::new();
    for f in files.iter().filter(|f| file_rank(f) < from) {
        reports.push(ingest_file(client, f, opts)?);
    }
    for f in files
        .iter()
        .filter(|f| (from..unknown).contains(&file_rank(f)))
    {
        match groups.last_mut() {
            Some((r, g)) if *r == file_rank(f) => g.push(f.clone()),
            _ => groups.push((file_rank(f), vec![f.clone()])),
        }
    }
    let queue = std::sync::Mutex::new(groups.into_iter().enumerate().collect::<Vec<_>>());
    let failed = std::sync::atomic::AtomicBool::new(false);
    let work = |c: &mut postgres::Client| -> Result<GroupReports> {
        let mut done = Vec::new();
        loop {
            let next = {
                let mut q = queue.lock().expect("queue");
                if q.is_empty() {
                    None
                } else {
                    Some(q.remove(0))
                }
            };
            let Some((i, (_, files))) = next else {
                return Ok(done);
            };
            let mut reps = Vec::new();
            for f in &files {
                if failed.load(std::sync::atomic::Ordering::Relaxed) {
                    return Ok(done);
                }
                match ingest_file(c, f, opts) {
                    Ok(r) => reps.push(r),
                    Err(e) => {
                        failed.store(true, std::sync::atomic::Ordering::Relaxed);
                        return Err(e);
                    }
                }
            }
            done.push((i, reps));
        }
    };
    let results: Vec<Result<GroupReports>> = std::thread::scope(|s| {
        let extra: Vec<_> = (1..opts.workers)
            .map(|_| {
                let url = url.clone();
                let work = &work;
                s.spawn(move || {
                    let mut c = crate::connect(&url)?;
                    work(&mut c)
                })
            })
            .collect();
        let mut all = vec![work(client)];
        all.extend(
            extra
                .into_iter()
                .map(|h| h.join().expect("ingest worker panicked")),
        );
        all
    });
    let mut parallel = Vec::new();
    for r in results {
        parallel.extend(r?);
    }
    parallel.sort_by_key(|(i, _)| *i);
    reports.extend(parallel.into_iter().flat_map(|(_, r)| r));
    for f in files.iter().filter(|f| file_rank(f) >= unknown) {
        reports.push(ingest_file(client, f, opts)?);
    }
    Ok(reports)
}

/// Reports of the file groups one session merged, with the groups' positions.
type GroupReports = Vec<(usize, Vec<FileReport>)>;

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

pub fn ingest_file(
    client: &mut postgres::Client,
    path: &Path,
    opts: &Options,
) -> Result<FileReport> {
    let t0 = Instant::now();
    let name = file_label(path);
    let sha = sha256_file(path)?;
    let mut rep = FileReport {
        file: name.clone(),
        sha256: sha.clone(),
        ..Default::default()
    };
    let existing = client.query_opt(
        "SELECT id, status, line_count, loaded_count, quarantined_count
         FROM staging.load_batch WHERE source = $1 AND file_sha256 = $2",
        &[&opts.source, &sha],
    )?;
    let batch_id: i64 = match existing {
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
            r.get(0)
        }
        None => stage_file(client, path, &name, &sha, opts)?,
    };
    merge_batch(client, batch_id, &name, opts, t0, &mut rep)?;
    Ok(rep)
}

/// Stage all lines of a file in one transaction. Returns the new batch id.
fn stage_file(
    client: &mut postgres::Client,
    path: &Path,
    name: &str,
    sha: &str,
    opts: &Options,
) -> Result<i64> {
    let t0 = Instant::now();
    let mut tx = client.transaction()?;
    let batch_id: i64 = tx
        .query_one(
            "INSERT INTO staging.load_batch (source, file_name, file_sha256) VALUES ($1, $2, $3) RETURNING id",
            &[&opts.source, &name, &sha],
        )?
        .get(0);
    let mut reader = BufReader::with_capacity(1 << 20, std::fs::File::open(path)?);
    let mut writer =
        tx.copy_in("COPY staging.raw_line (batch_id, line_no, raw, bad_utf8) FROM STDIN")?;
    let mut line = Vec::new();
    let mut out = Vec::with_capacity(1 << 20);
    let mut n: i64 = 0;
    loop {
        line.clear();
        let got = reader.read_until(b'\n', &mut line)?;
        if got == 0 {
            break;
        }
        n += 1;
        while matches!(line.last(), Some(b'\n' | b'\r')) {
            line.pop();
        }
        // Invalid UTF-8 and NUL (which PostgreSQL text cannot hold) are kept lossily
        // and flagged, so the merge quarantines the line instead of dropping it.
        let bad = std::str::from_utf8(&line).is_err() || line.contains(&0);
        let text = String::from_utf8_lossy(&line).replace('\0', "\u{FFFD}");
        write!(out, "{batch_id}\t{n}\t")?;
        copy_escape(&text, &mut out);
        out.extend_from_slice(if bad { b"\tt\n" } else { b"\tf\n" });
        if out.len() >= 1 << 20 {
            writer.write_all(&out)?;
            out.clear();
        }
    }
    writer.write_all(&out)?;
    writer.finish()?;
    tx.execute(
        "UPDATE staging.load_batch SET line_count = $2 WHERE id = $1",
        &[&batch_id, &n],
    )?;
    tx.commit()?;
    prof(0, t0);
    if opts.progress {
        eprintln!(
            "ingest: {name}: staged {n} lines in {:.1}s",
            t0.elapsed().as_secs_f64()
        );
    }
    Ok(batch_id)
}

/// Per resource type: (type, target table for duplicate detection, patient reference path, SQL).
/// SQL parameters: $1 source, $2 batch id. Rows come from temp table `mi` with reason IS NULL.
struct TypeSpec {
    rtype: &'static str,
    table: Option<&'static str>,
    patient_path: Option<&'static str>,
    /// Extra reference checks: (json path to a reference object, table, type name).
    required_refs: &'static [(&'static str, &'static str)],
    sql: &'static [&'static str],
}

static SPECS: &[TypeSpec] = &[
    TypeSpec {
        rtype: "Organization",
        table: Some("organization"),
        patient_path: None,
        required_refs: &[],
        sql: &["INSERT INTO edw.organization AS t (source, source_id, name, npi, type_code, active, content_hash, batch_id, line_no)
            SELECT $1, mi.rid, b->>'name',
              (SELECT x->>'value' FROM jsonb_array_elements(edw.jarr(b->'identifier')) x
                WHERE x->>'system' = 'http://hl7.org/fhir/sid/us-npi' LIMIT 1),
              b->'type'->0->'coding'->0->>'code', edw.jbool(b->'active'), mi.hash, $2, mi.line_no
            FROM mi WHERE mi.reason IS NULL AND mi.rtype = 'Organization'
            ON CONFLICT (source, source_id) DO UPDATE SET name = EXCLUDED.name, npi = EXCLUDED.npi,
              type_code = EXCLUDED.type_code, active = EXCLUDED.active, content_hash = EXCLUDED.content_hash,
              batch_id = EXCLUDED.batch_id, line_no = EXCLUDED.line_no, change_no = nextval('edw.change_seq')
            WHERE t.content_hash <> EXCLUDED.content_hash"],
    },
    TypeSpec {
        rtype: "Practitioner",
        table: Some("practitioner"),
        patient_path: None,
        required_refs: &[],
        sql: &[
            "INSERT INTO edw.practitioner AS t (source, source_id, npi, family, given, active, content_hash, batch_id, line_no)
            SELECT $1, mi.rid,
              (SELECT x->>'value' FROM jsonb_array_elements(edw.jarr(b->'identifier')) x
                WHERE x->>'system' = 'http://hl7.org/fhir/sid/us-npi' LIMIT 1),
              b->'name'->0->>'family', nullif(edw.jjoin(b->'name'->0->'given'), ''),
              edw.jbool(b->'active'), mi.hash, $2, mi.line_no
            FROM mi WHERE mi.reason IS NULL AND mi.rtype = 'Practitioner'
            ON CONFLICT (source, source_id) DO UPDATE SET npi = EXCLUDED.npi, family = EXCLUDED.family,
              given = EXCLUDED.given, active = EXCLUDED.active, content_hash = EXCLUDED.content_hash,
              batch_id = EXCLUDED.batch_id, line_no = EXCLUDED.line_no, change_no = nextval('edw.change_seq')
            WHERE t.content_hash <> EXCLUDED.content_hash",
            "INSERT INTO edw.practitioner_specialty (practitioner_id, system, code, display)
            SELECT DISTINCT ON (p.id, c->>'system', c->>'code') p.id, c->>'system', c->>'code', c->>'display'
            FROM mi JOIN edw.practitioner p ON p.source = $1 AND p.source_id = mi.rid,
                 jsonb_array_elements(edw.jarr(mi.b->'qualification')) q,
                 jsonb_array_elements(edw.jarr(q->'code'->'coding')) c
            WHERE mi.reason IS NULL AND mi.rtype = 'Practitioner' AND c->>'system' IS NOT NULL AND c->>'code' IS NOT NULL
            ON CONFLICT DO NOTHING",
        ],
    },
    TypeSpec {
        rtype: "PractitionerRole",
        table: None,
        patient_path: None,
        required_refs: &[("practitioner", "practitioner")],
        sql: &["INSERT INTO edw.practitioner_specialty (practitioner_id, system, code, display)
            SELECT DISTINCT ON (p.id, c->>'system', c->>'code') p.id, c->>'system', c->>'code', c->>'display'
            FROM mi JOIN edw.practitioner p ON p.source = $1 AND p.source_id = edw.ref_id(mi.b->'practitioner'->>'reference'),
                 jsonb_array_elements(edw.jarr(mi.b->'specialty')) s,
                 jsonb_array_elements(edw.jarr(s->'coding')) c
            WHERE mi.reason IS NULL AND mi.rtype = 'PractitionerRole' AND c->>'system' IS NOT NULL AND c->>'code' IS NOT NULL
            ON CONFLICT DO NOTHING"],
    },
    TypeSpec {
        rtype: "CareTeam",
        table: Some("care_team"),
        patient_path: None,
        required_refs: &[],
        sql: &[
            "INSERT INTO edw.care_team AS t (source, source_id, name, organization_id, content_hash, batch_id, line_no)
            SELECT $1, mi.rid, b->>'name', o.id, mi.hash, $2, mi.line_no
            FROM mi LEFT JOIN edw.organization o ON o.source = $1
                 AND o.source_id = edw.ref_id(mi.b->'managingOrganization'->0->>'reference')
            WHERE mi.reason IS NULL AND mi.rtype = 'CareTeam'
            ON CONFLICT (source, source_id) DO UPDATE SET name = EXCLUDED.name,
              organization_id = EXCLUDED.organization_id, content_hash = EXCLUDED.content_hash,
              batch_id = EXCLUDED.batch_id, line_no = EXCLUDED.line_no, change_no = nextval('edw.change_seq')
            WHERE t.content_hash <> EXCLUDED.content_hash",
            "DELETE FROM edw.care_team_member m USING mi, edw.care_team ct
            WHERE mi.reason IS NULL AND mi.rtype = 'CareTeam' AND ct.source = $1 AND ct.source_id = mi.rid
              AND m.care_team_id = ct.id",
            "INSERT INTO edw.care_team_member (care_team_id, practitioner_id, role_code)
            SELECT DISTINCT ct.id, p.id, coalesce(part->'role'->0->'coding'->0->>'code', '')
            FROM mi JOIN edw.care_team ct ON ct.source = $1 AND ct.source_id = mi.rid,
                 jsonb_array_elements(edw.jarr(mi.b->'participant')) part
                 JOIN edw.practitioner p ON p.source = $1
                   AND p.source_id = edw.ref_id(part->'member'->>'reference')
            WHERE mi.reason IS NULL AND mi.rtype = 'CareTeam'
              AND part->'member'->>'reference' LIKE 'Practitioner/%'
            ON CONFLICT DO NOTHING",
        ],
    },
    TypeSpec {
        rtype: "Patient",
        table: Some("source_patient"),
        patient_path: None,
        required_refs: &[],
        sql: &[
            "INSERT INTO edw.source_patient AS t (source, source_id, org_id, birth_date, sex, deceased, active, content_hash, batch_id, line_no)
            SELECT $1, mi.rid, o.id, edw.fhir_date(b->>'birthDate'), b->>'gender',
              CASE WHEN b ? 'deceasedDateTime' THEN true ELSE edw.jbool(b->'deceasedBoolean') END,
              edw.jbool(b->'active'), mi.hash, $2, mi.line_no
            FROM mi LEFT JOIN edw.organization o ON o.source = $1
                 AND o.source_id = edw.ref_id(mi.b->'managingOrganization'->>'reference')
            WHERE mi.reason IS NULL AND mi.rtype = 'Patient'
            ON CONFLICT (source, source_id) DO UPDATE SET org_id = EXCLUDED.org_id,
              birth_date = EXCLUDED.birth_date, sex = EXCLUDED.sex, deceased = EXCLUDED.deceased,
              active = EXCLUDED.active, content_hash = EXCLUDED.content_hash,
              batch_id = EXCLUDED.batch_id, line_no = EXCLUDED.line_no, change_no = nextval('edw.change_seq')
            WHERE t.content_hash <> EXCLUDED.content_hash",
            // Demographic history: close values no longer sent, (re)open the ones sent.
            "WITH p AS (SELECT sp.id, mi.b FROM mi JOIN edw.source_patient sp ON sp.source = $1 AND sp.source_id = mi.rid
                       WHERE mi.reason IS NULL AND mi.rtype = 'Patient'),
             n AS (SELECT DISTINCT ON (p.id, coalesce(x->>'system', ''), x->>'value')
                     p.id, coalesce(x->>'system', '') AS sys, x->>'value' AS val,
                     x->'type'->'coding'->0->>'code' AS tc
                   FROM p, jsonb_array_elements(edw.jarr(p.b->'identifier')) x WHERE x->>'value' IS NOT NULL),
             c AS (UPDATE edw.patient_identifier h SET valid_to = now() FROM p
                   WHERE h.source_patient_id = p.id AND h.valid_to IS NULL
                     AND NOT EXISTS (SELECT 1 FROM n WHERE n.id = h.source_patient_id AND n.sys = h.system AND n.val = h.value))
             INSERT INTO edw.patient_identifier (source_patient_id, system, value, type_code)
             SELECT id, sys, val, tc FROM n
             ON CONFLICT (source_patient_id, system, value) DO UPDATE SET valid_to = NULL
             WHERE patient_identifier.valid_to IS NOT NULL",
            "WITH p AS (SELECT sp.id, mi.b FROM mi JOIN edw.source_patient sp ON sp.source = $1 AND sp.source_id = mi.rid
                       WHERE mi.reason IS NULL AND mi.rtype = 'Patient'),
             n AS (SELECT DISTINCT p.id, coalesce(x->>'use', '') AS use, coalesce(x->>'family', '') AS family,
                     edw.jjoin(x->'given') AS given
                   FROM p, jsonb_array_elements(edw.jarr(p.b->'name')) x),
             c AS (UPDATE edw.patient_name h SET valid_to = now() FROM p
                   WHERE h.source_patient_id = p.id AND h.valid_to IS NULL
                     AND NOT EXISTS (SELECT 1 FROM n WHERE n.id = h.source_patient_id AND n.use = h.use
                                     AND n.family = h.family AND n.given = h.given))
             INSERT INTO edw.patient_name (source_patient_id, use, family, given)
             SELECT id, use, family, given FROM n
             ON CONFLICT (source_patient_id, use, family, given) DO UPDATE SET valid_to = NULL
             WHERE patient_name.valid_to IS NOT NULL",
            "WITH p AS (SELECT sp.id, mi.b FROM mi JOIN edw.source_patient sp ON sp.source = $1 AND sp.source_id = mi.rid
                       WHERE mi.reason IS NULL AND mi.rtype = 'Patient'),
             n AS (SELECT DISTINCT p.id, edw.jjoin(x->'line') AS line, coalesce(x->>'city', '') AS city,
                     coalesce(x->>'state', '') AS state, coalesce(x->>'postalCode', '') AS postal
                   FROM p, jsonb_array_elements(edw.jarr(p.b->'address')) x),
             c AS (UPDATE edw.patient_address h SET valid_to = now() FROM p
                   WHERE h.source_patient_id = p.id AND h.valid_to IS NULL
                     AND NOT EXISTS (SELECT 1 FROM n WHERE n.id = h.source_patient_id AND n.line = h.line
                                     AND n.city = h.city AND n.state = h.state AND n.postal = h.postal_code))
             INSERT INTO edw.patient_address (source_patient_id, line, city, state, postal_code)
             SELECT id, line, city, state, postal FROM n
             ON CONFLICT (source_patient_id, line, city, state, postal_code) DO UPDATE SET valid_to = NULL
             WHERE patient_address.valid_to IS NOT NULL",
            "WITH p AS (SELECT sp.id, mi.b FROM mi JOIN edw.source_patient sp ON sp.source = $1 AND sp.source_id = mi.rid
                       WHERE mi.reason IS NULL AND mi.rtype = 'Patient'),
             n AS (SELECT DISTINCT p.id, coalesce(x->>'system', '') AS sys, x->>'value' AS val
                   FROM p, jsonb_array_elements(edw.jarr(p.b->'telecom')) x WHERE x->>'value' IS NOT NULL),
             c AS (UPDATE edw.patient_telecom h SET valid_to = now() FROM p
                   WHERE h.source_patient_id = p.id AND h.valid_to IS NULL
                     AND NOT EXISTS (SELECT 1 FROM n WHERE n.id = h.source_patient_id AND n.sys = h.system AND n.val = h.value))
             INSERT INTO edw.patient_telecom (source_patient_id, system, value)
             SELECT id, sys, val FROM n
             ON CONFLICT (source_patient_id, system, value) DO UPDATE SET valid_to = NULL
             WHERE patient_telecom.valid_to IS NOT NULL",
        ],
    },
    TypeSpec {
        rtype: "Group",
        table: Some("source_group"),
        patient_path: None,
        required_refs: &[],
        sql: &[
            "UPDATE mi SET reason = 'unresolved reference member.entity: no such Patient from this source'
            WHERE mi.reason IS NULL AND mi.rtype = 'Group' AND EXISTS (
              SELECT 1 FROM jsonb_array_elements(edw.jarr(mi.b->'member')) m
              WHERE m->'entity'->>'reference' LIKE 'Patient/%' AND NOT EXISTS (
                SELECT 1 FROM edw.source_patient sp WHERE sp.source = $1
                  AND sp.source_id = edw.ref_id(m->'entity'->>'reference')))",
            "INSERT INTO edw.source_group AS t (source, source_id, name, type, managing_ref, practitioner_id,
              content_hash, batch_id, line_no)
            SELECT $1, mi.rid, b->>'name', b->>'type', b->'managingEntity'->>'reference', pr.id, mi.hash, $2, mi.line_no
            FROM mi LEFT JOIN edw.practitioner pr ON pr.source = $1
                 AND b->'managingEntity'->>'reference' LIKE 'Practitioner/%'
                 AND pr.source_id = edw.ref_id(b->'managingEntity'->>'reference')
            WHERE mi.reason IS NULL AND mi.rtype = 'Group'
            ON CONFLICT (source, source_id) DO UPDATE SET name = EXCLUDED.name, type = EXCLUDED.type,
              managing_ref = EXCLUDED.managing_ref, practitioner_id = EXCLUDED.practitioner_id,
              content_hash = EXCLUDED.content_hash, batch_id = EXCLUDED.batch_id, line_no = EXCLUDED.line_no,
              change_no = nextval('edw.change_seq')
            WHERE t.content_hash <> EXCLUDED.content_hash",
            "DELETE FROM edw.source_group_member m USING mi, edw.source_group g
            WHERE mi.reason IS NULL AND mi.rtype = 'Group' AND g.source = $1 AND g.source_id = mi.rid
              AND m.group_id = g.id",
            "INSERT INTO edw.source_group_member (group_id, source_patient_id)
            SELECT DISTINCT g.id, sp.id
            FROM mi JOIN edw.source_group g ON g.source = $1 AND g.source_id = mi.rid,
                 jsonb_array_elements(edw.jarr(mi.b->'member')) m
                 JOIN edw.source_patient sp ON sp.source = $1
                   AND sp.source_id = edw.ref_id(m->'entity'->>'reference')
            WHERE mi.reason IS NULL AND mi.rtype = 'Group' AND m->'entity'->>'reference' LIKE 'Patient/%'
            ON CONFLICT DO NOTHING",
        ],
    },
    TypeSpec {
        rtype: "Coverage",
        table: Some("coverage"),
        patient_path: Some("beneficiary"),
        required_refs: &[],
        sql: &["INSERT INTO edw.coverage AS t (source, source_id, source_patient_id, status, type_code, payor,
              period_start, period_end, content_hash, batch_id, line_no)
            SELECT $1, mi.rid, sp.id, b->>'status', b->'type'->'coding'->0->>'code',
              coalesce(b->'payor'->0->>'display', edw.ref_id(b->'payor'->0->>'reference')),
              edw.fhir_ts(b->'period'->>'start'), edw.fhir_ts(b->'period'->>'end'), mi.hash, $2, mi.line_no
            FROM mi JOIN edw.source_patient sp ON sp.source = $1 AND sp.source_id = edw.ref_id(mi.b->'beneficiary'->>'reference')
            WHERE mi.reason IS NULL AND mi.rtype = 'Coverage'
            ON CONFLICT (source, source_id) DO UPDATE SET source_patient_id = EXCLUDED.source_patient_id,
              status = EXCLUDED.status, type_code = EXCLUDED.type_code, payor = EXCLUDED.payor,
              period_start = EXCLUDED.period_start, period_end = EXCLUDED.period_end,
              content_hash = EXCLUDED.content_hash, batch_id = EXCLUDED.batch_id, line_no = EXCLUDED.line_no,
              change_no = nextval('edw.change_seq')
            WHERE t.content_hash <> EXCLUDED.content_hash"],
    },
    TypeSpec {
        rtype: "Encounter",
        table: Some("encounter"),
        patient_path: Some("subject"),
        required_refs: &[],
        sql: &["INSERT INTO edw.encounter AS t (source, source_id, source_patient_id, status, class_code,
              type_system, type_code, type_display, period_start, period_end, practitioner_ref,
              practitioner_id, organization_id, content_hash, batch_id, line_no)
            SELECT $1, mi.rid, sp.id, b->>'status', b->'class'->>'code',
              b->'type'->0->'coding'->0->>'system', b->'type'->0->'coding'->0->>'code',
              b->'type'->0->'coding'->0->>'display',
              edw.fhir_ts(b->'period'->>'start'), edw.fhir_ts(b->'period'->>'end'),
              edw.ref_id(b->'participant'->0->'individual'->>'reference'), pr.id, o.id, mi.hash, $2, mi.line_no
            FROM mi JOIN edw.source_patient sp ON sp.source = $1 AND sp.source_id = edw.ref_id(mi.b->'subject'->>'reference')
            LEFT JOIN edw.practitioner pr ON pr.source = $1
                 AND pr.source_id = edw.ref_id(mi.b->'participant'->0->'individual'->>'reference')
            LEFT JOIN edw.organization o ON o.source = $1 AND o.source_id = edw.ref_id(mi.b->'serviceProvider'->>'reference')
            WHERE mi.reason IS NULL AND mi.rtype = 'Encounter'
            ON CONFLICT (source, source_id) DO UPDATE SET source_patient_id = EXCLUDED.source_patient_id,
              status = EXCLUDED.status, class_code = EXCLUDED.class_code, type_system = EXCLUDED.type_system,
              type_code = EXCLUDED.type_code, type_display = EXCLUDED.type_display,
              period_start = EXCLUDED.period_start, period_end = EXCLUDED.period_end,
              practitioner_ref = EXCLUDED.practitioner_ref, practitioner_id = EXCLUDED.practitioner_id,
              organization_id = EXCLUDED.organization_id,
              content_hash = EXCLUDED.content_hash, batch_id = EXCLUDED.batch_id, line_no = EXCLUDED.line_no,
              change_no = nextval('edw.change_seq')
            WHERE t.content_hash <> EXCLUDED.content_hash"],
    },
    TypeSpec {
        rtype: "Condition",
        table: Some("condition"),
        patient_path: Some("subject"),
        required_refs: &[],
        sql: &["INSERT INTO edw.condition AS t (source, source_id, source_patient_id, encounter_ref, clinical_status,
              verification_status, category, code_system, code, display, onset, abatement, recorded_date,
              content_hash, batch_id, line_no)
            SELECT $1, mi.rid, sp.id, edw.ref_id(b->'encounter'->>'reference'),
              b->'clinicalStatus'->'coding'->0->>'code', b->'verificationStatus'->'coding'->0->>'code',
              b->'category'->0->'coding'->0->>'code',
              b->'code'->'coding'->0->>'system', b->'code'->'coding'->0->>'code', b->'code'->'coding'->0->>'display',
              edw.fhir_ts(b->>'onsetDateTime'), edw.fhir_ts(b->>'abatementDateTime'), edw.fhir_ts(b->>'recordedDate'),
              mi.hash, $2, mi.line_no
            FROM mi JOIN edw.source_patient sp ON sp.source = $1 AND sp.source_id = edw.ref_id(mi.b->'subject'->>'reference')
            WHERE mi.reason IS NULL AND mi.rtype = 'Condition'
            ON CONFLICT (source, source_id) DO UPDATE SET source_patient_id = EXCLUDED.source_patient_id,
              encounter_ref = EXCLUDED.encounter_ref, clinical_status = EXCLUDED.clinical_status,
              verification_status = EXCLUDED.verification_status, category = EXCLUDED.category,
              code_system = EXCLUDED.code_system, code = EXCLUDED.code, display = EXCLUDED.display,
              onset = EXCLUDED.onset, abatement = EXCLUDED.abatement, recorded_date = EXCLUDED.recorded_date,
              content_hash = EXCLUDED.content_hash, batch_id = EXCLUDED.batch_id, line_no = EXCLUDED.line_no,
              change_no = nextval('edw.change_seq')
            WHERE t.content_hash <> EXCLUDED.content_hash"],
    },
    TypeSpec {
        rtype: "Observation",
        table: Some("observation"),
        patient_path: Some("subject"),
        required_refs: &[],
        sql: &["INSERT INTO edw.observation AS t (source, source_id, source_patient_id, encounter_ref, status, category,
              code_system, code, display, effective, value_num, value_unit, value_code_system, value_code,
              value_string, ref_low, ref_high, interpretation, content_hash, batch_id, line_no)
            SELECT $1, mi.rid, sp.id, edw.ref_id(b->'encounter'->>'reference'), b->>'status',
              b->'category'->0->'coding'->0->>'code',
              b->'code'->'coding'->0->>'system', b->'code'->'coding'->0->>'code', b->'code'->'coding'->0->>'display',
              edw.fhir_ts(coalesce(b->>'effectiveDateTime', b->'effectivePeriod'->>'start')),
              edw.jnum(b->'valueQuantity'->'value'),
              coalesce(b->'valueQuantity'->>'unit', b->'valueQuantity'->>'code'),
              b->'valueCodeableConcept'->'coding'->0->>'system', b->'valueCodeableConcept'->'coding'->0->>'code',
              b->>'valueString',
              edw.jnum(b->'referenceRange'->0->'low'->'value'), edw.jnum(b->'referenceRange'->0->'high'->'value'),
              b->'interpretation'->0->'coding'->0->>'code', mi.hash, $2, mi.line_no
            FROM mi JOIN edw.source_patient sp ON sp.source = $1 AND sp.source_id = edw.ref_id(mi.b->'subject'->>'reference')
            WHERE mi.reason IS NULL AND mi.rtype = 'Observation'
            ON CONFLICT (source, source_id) DO UPDATE SET source_patient_id = EXCLUDED.source_patient_id,
              encounter_ref = EXCLUDED.encounter_ref, status = EXCLUDED.status, category = EXCLUDED.category,
              code_system = EXCLUDED.code_system, code = EXCLUDED.code, display = EXCLUDED.display,
              effective = EXCLUDED.effective, value_num = EXCLUDED.value_num, value_unit = EXCLUDED.value_unit,
              value_code_system = EXCLUDED.value_code_system, value_code = EXCLUDED.value_code,
              value_string = EXCLUDED.value_string, ref_low = EXCLUDED.ref_low, ref_high = EXCLUDED.ref_high,
              interpretation = EXCLUDED.interpretation,
              content_hash = EXCLUDED.content_hash, batch_id = EXCLUDED.batch_id, line_no = EXCLUDED.line_no,
              change_no = nextval('edw.change_seq')
            WHERE t.content_hash <> EXCLUDED.content_hash"],
    },
    TypeSpec {
        rtype: "Procedure",
        table: Some("procedure"),
        patient_path: Some("subject"),
        required_refs: &[],
        sql: &["INSERT INTO edw.procedure AS t (source, source_id, source_patient_id, encounter_ref, status,
              code_system, code, display, performed_start, performed_end, content_hash, batch_id, line_no)
            SELECT $1, mi.rid, sp.id, edw.ref_id(b->'encounter'->>'reference'), b->>'status',
              b->'code'->'coding'->0->>'system', b->'code'->'coding'->0->>'code', b->'code'->'coding'->0->>'display',
              edw.fhir_ts(coalesce(b->>'performedDateTime', b->'performedPeriod'->>'start')),
              edw.fhir_ts(b->'performedPeriod'->>'end'), mi.hash, $2, mi.line_no
            FROM mi JOIN edw.source_patient sp ON sp.source = $1 AND sp.source_id = edw.ref_id(mi.b->'subject'->>'reference')
            WHERE mi.reason IS NULL AND mi.rtype = 'Procedure'
            ON CONFLICT (source, source_id) DO UPDATE SET source_patient_id = EXCLUDED.source_patient_id,
              encounter_ref = EXCLUDED.encounter_ref, status = EXCLUDED.status,
              code_system = EXCLUDED.code_system, code = EXCLUDED.code, display = EXCLUDED.display,
              performed_start = EXCLUDED.performed_start, performed_end = EXCLUDED.performed_end,
              content_hash = EXCLUDED.content_hash, batch_id = EXCLUDED.batch_id, line_no = EXCLUDED.line_no,
              change_no = nextval('edw.change_seq')
            WHERE t.content_hash <> EXCLUDED.content_hash"],
    },
    TypeSpec {
        rtype: "MedicationRequest",
        table: Some("medication_request"),
        patient_path: Some("subject"),
        required_refs: &[],
        sql: &["INSERT INTO edw.medication_request AS t (source, source_id, source_patient_id, status, intent,
              code_system, code, display, authored_on, content_hash, batch_id, line_no)
            SELECT $1, mi.rid, sp.id, b->>'status', b->>'intent',
              b->'medicationCodeableConcept'->'coding'->0->>'system', b->'medicationCodeableConcept'->'coding'->0->>'code',
              b->'medicationCodeableConcept'->'coding'->0->>'display', edw.fhir_ts(b->>'authoredOn'), mi.hash, $2, mi.line_no
            FROM mi JOIN edw.source_patient sp ON sp.source = $1 AND sp.source_id = edw.ref_id(mi.b->'subject'->>'reference')
            WHERE mi.reason IS NULL AND mi.rtype = 'MedicationRequest'
            ON CONFLICT (source, source_id) DO UPDATE SET source_patient_id = EXCLUDED.source_patient_id,
              status = EXCLUDED.status, intent = EXCLUDED.intent, code_system = EXCLUDED.code_system,
              code = EXCLUDED.code, display = EXCLUDED.display, authored_on = EXCLUDED.authored_on,
              content_hash = EXCLUDED.content_hash, batch_id = EXCLUDED.batch_id, line_no = EXCLUDED.line_no,
              change_no = nextval('edw.change_seq')
            WHERE t.content_hash <> EXCLUDED.content_hash"],
    },
    TypeSpec {
        rtype: "Immunization",
        table: Some("immunization"),
        patient_path: Some("patient"),
        required_refs: &[],
        sql: &["INSERT INTO edw.immunization AS t (source, source_id, source_patient_id, status, code_system, code,
              display, occurrence, content_hash, batch_id, line_no)
            SELECT $1, mi.rid, sp.id, b->>'status', b->'vaccineCode'->'coding'->0->>'system',
              b->'vaccineCode'->'coding'->0->>'code', b->'vaccineCode'->'coding'->0->>'display',
              edw.fhir_ts(b->>'occurrenceDateTime'), mi.hash, $2, mi.line_no
            FROM mi JOIN edw.source_patient sp ON sp.source = $1 AND sp.source_id = edw.ref_id(mi.b->'patient'->>'reference')
            WHERE mi.reason IS NULL AND mi.rtype = 'Immunization'
            ON CONFLICT (source, source_id) DO UPDATE SET source_patient_id = EXCLUDED.source_patient_id,
              status = EXCLUDED.status, code_system = EXCLUDED.code_system, code = EXCLUDED.code,
              display = EXCLUDED.display, occurrence = EXCLUDED.occurrence,
              content_hash = EXCLUDED.content_hash, batch_id = EXCLUDED.batch_id, line_no = EXCLUDED.line_no,
              change_no = nextval('edw.change_seq')
            WHERE t.content_hash <> EXCLUDED.content_hash"],
    },
];

/// Validate one chunk of staged lines in Rust; returns the COPY payload for temp table
/// mi and the supported types present (in merge order). Chunks are independent
/// (duplicates across chunks are found in SQL), so the next chunk is validated on a
/// second thread while the current one merges.
fn validate_chunk(rows: &[postgres::Row]) -> Result<(Vec<u8>, Vec<&'static str>)> {
    let t = Instant::now();
    let mut buf = Vec::with_capacity(rows.len() * 600);
    let mut seen: HashMap<(String, String), i64> = HashMap::new();
    let mut types: Vec<&'static str> = Vec::new();
    for row in rows {
        let line_no: i64 = row.get(0);
        let raw: &str = row.get(1);
        let bad_utf8: bool = row.get(2);
        let res = if bad_utf8 {
            Err(validate::Invalid {
                resource_type: None,
                resource_id: None,
                reason: "line is not valid UTF-8".into(),
            })
        } else {
            validate_line(raw)
        };
        let (rtype, rid, body, hash, reason) = match res {
            Ok(v) => {
                let key = (v.resource_type.clone(), v.id.clone());
                if let Some(first) = seen.get(&key) {
                    let reason = format!("duplicate resource id in file (first at line {first})");
                    (Some(v.resource_type), Some(v.id), None, None, Some(reason))
                } else {
                    seen.insert(key, line_no);
                    if let Some(t) = validate::SUPPORTED.iter().find(|t| **t == v.resource_type) {
                        if !types.contains(t) {
                            types.push(t);
                        }
                    }
                    let hash = crate::migrate::hex(&Sha256::digest(raw.trim().as_bytes()));
                    // The line as sent (it parsed as JSON): PostgreSQL's jsonb reads it
                    // as well as a re-serialised copy, which cost a serialisation per line.
                    (
                        Some(v.resource_type),
                        Some(v.id),
                        Some(raw.trim().to_string()),
                        Some(hash),
                        None,
                    )
                }
            }
            Err(inv) => (
                inv.resource_type,
                inv.resource_id,
                None,
                None,
                Some(inv.reason),
            ),
        };
        write!(buf, "{line_no}\t")?;
        copy_field(rtype.as_deref(), &mut buf);
        buf.push(b'\t');
        copy_field(rid.as_deref(), &mut buf);
        buf.push(b'\t');
        copy_field(body.as_deref(), &mut buf);
        buf.push(b'\t');
        copy_field(hash.as_deref(), &mut buf);
        buf.push(b'\t');
        copy_field(reason.as_deref(), &mut buf);
        buf.push(b'\n');
    }
    types.sort_by_key(|t| validate::type_rank(t));
    prof(2, t);
    Ok((buf, types))
}

fn merge_batch(
    client: &mut postgres::Client,
    batch_id: i64,
    name: &str,
    opts: &Options,
    t0: Instant,
    rep: &mut FileReport,
) -> Result<()> {
    client.batch_execute(
        "CREATE TEMP TABLE IF NOT EXISTS mi (
            line_no bigint NOT NULL, rtype text, rid text, b jsonb, hash text, reason text
         ) ON COMMIT DELETE ROWS",
    )?;
    let r = client.query_one(
        "SELECT merged_through, line_count, loaded_count, quarantined_count FROM staging.load_batch WHERE id = $1",
        &[&batch_id],
    )?;
    let mut through: i64 = r.get(0);
    let total: i64 = r.get::<_, Option<i64>>(1).unwrap_or(0);
    rep.lines = total;
    rep.loaded = r.get(2);
    rep.quarantined = r.get(3);
    if rep.resumed && opts.progress {
        eprintln!("ingest: {name}: resuming after line {through} of {total}");
    }
    // Fresh statistics on the tables the merge resolves references against (loaded by
    // the previous files of this run; autovacuum lags behind a bulk load), so their joins
    // are planned as index probes, not scans of every row per chunk. A sample: ~0.1 s.
    client.batch_execute("ANALYZE edw.source_patient, edw.organization, edw.practitioner")?;
    let start_line = through;
    let merge_t0 = Instant::now();
    let fetch = |client: &mut postgres::Client, after: i64| {
        client.query(
            "SELECT line_no, raw, bad_utf8 FROM staging.raw_line
             WHERE batch_id = $1 AND line_no > $2 ORDER BY line_no LIMIT $3",
            &[&batch_id, &after, &(opts.chunk as i64)],
        )
    };
    let tp = Instant::now();
    let mut rows = fetch(client, through)?;
    prof(1, tp);
    let mut pending: Option<(Vec<u8>, Vec<&'static str>)> = None;
    while !rows.is_empty() {
        let last: i64 = rows[rows.len() - 1].get(0);
        // Validated on the helper thread during the previous chunk's merge (the
        // first chunk: here).
        let (buf, types) = match pending.take() {
            Some(v) => v,
            None => validate_chunk(&rows)?,
        };
        let tp = Instant::now();
        let next = fetch(client, last)?;
        let tp = prof(1, tp);
        let (res, validated) = std::thread::scope(|s| {
            let helper =
                (opts.pipeline && !next.is_empty()).then(|| s.spawn(|| validate_chunk(&next)));
            let res = (|| -> Result<(i64, i64)> {
                let mut tx = client.transaction()?;
                // JIT compilation (on by default in Debian's PostgreSQL 15) costs more than
                // these per-chunk statements run for.
                tx.batch_execute("SET LOCAL jit = off")?;
                // Writes source rows: `measure` waits for this before reading its
                // change watermark.
                tx.execute(
                    "SELECT pg_advisory_xact_lock_shared($1)",
                    &[&crate::measure::SOURCE_WRITE_LOCK],
                )?;
                let mut w =
                    tx.copy_in("COPY mi (line_no, rtype, rid, b, hash, reason) FROM STDIN")?;
                w.write_all(&buf)?;
                w.finish()?;
                // Fresh statistics for the planner (temp tables are never auto-analysed).
                // Only the columns the merge filters and joins on: no plan uses statistics
                // on the jsonb bodies, and computing them reads every body again.
                tx.batch_execute("ANALYZE mi (line_no, rtype, rid, reason)")?;
                let mut tp = prof(3, tp);
                for t in &types {
                    let spec = SPECS
                        .iter()
                        .find(|s| s.rtype == *t)
                        .expect("spec for supported type");
                    if let Some(table) = spec.table {
                        tx.execute(
                    &format!(
                        // One index probe per mi row (LATERAL ... LIMIT 1 is never turned
                        // into a join over the whole table): the planner's statistics on
                        // tables being loaded lag, and a hash or merge join read all of
                        // edw.{table} for every chunk (quadratic in the load).
                        "UPDATE mi SET reason = 'duplicate resource id in file (first at line ' || d.first || ')'
                         FROM (SELECT m.line_no, f.first FROM mi m CROSS JOIN LATERAL (
                                 SELECT t.line_no AS first FROM edw.{table} t
                                 WHERE t.source = $1 AND t.source_id = m.rid
                                   AND t.batch_id = $2 AND t.line_no < m.line_no LIMIT 1) f
                               WHERE m.reason IS NULL AND m.rtype = $3) d
                         WHERE mi.line_no = d.line_no"
                    ),
                    &[&opts.source, &batch_id, t],
                )?;
                    }
                    let mut refs: Vec<(&str, &str)> = spec.required_refs.to_vec();
                    if let Some(p) = spec.patient_path {
                        refs.push((p, "source_patient"));
                    }
                    for (path, table) in refs {
                        tx.execute(
                    &format!(
                        // A scalar subquery: one index probe per row, whatever the
                        // (lagging) statistics say; see the duplicate check above.
                        "UPDATE mi SET reason = 'unresolved reference {path}: no such resource from this source'
                         WHERE mi.reason IS NULL AND mi.rtype = $2 AND (
                           SELECT 1 FROM edw.{table} x WHERE x.source = $1
                             AND x.source_id = edw.ref_id(mi.b->'{path}'->>'reference') LIMIT 1) IS NULL"
                    ),
                    &[&opts.source, t],
                )?;
                    }
                    tp = prof(4, tp);
                    for sql in spec.sql {
                        let r = if sql.contains("$2") {
                            tx.execute(*sql, &[&opts.source, &batch_id])
                        } else {
                            tx.execute(*sql, &[&opts.source])
                        };
                        r.map_err(|e| {
                            Error::msg(format!(
                                "merge of {t} lines {}..={last} of {name} failed: {}",
                                through + 1,
                                crate::db_err(&e)
                            ))
                        })?;
                    }
                    tp = prof(5, tp);
                }
                let q = tx.execute(
            "INSERT INTO edw.quarantine (batch_id, line_no, source, file_name, resource_type, resource_id, reason)
             SELECT $1, line_no, $2, $3, rtype, rid, reason FROM mi WHERE reason IS NOT NULL
             ON CONFLICT (batch_id, line_no) DO NOTHING",
            &[&batch_id, &opts.source, &name],
        )? as i64;
                let chunk_lines = rows.len() as i64;
                let loaded = chunk_lines - q;
                tx.execute(
            "UPDATE staging.load_batch SET merged_through = $2, loaded_count = loaded_count + $3,
                    quarantined_count = quarantined_count + $4 WHERE id = $1",
            &[&batch_id, &last, &loaded, &q],
        )?;
                tx.commit()?;
                prof(6, tp);
                Ok((loaded, q))
            })();
            let validated = helper.map(|h| h.join().expect("validator thread panicked"));
            (res, validated)
        });
        let (loaded, q) = res?;
        pending = validated.transpose()?;
        rows = next;
        through = last;
        rep.loaded += loaded;
        rep.quarantined += q;
        if opts.progress {
            let secs = merge_t0.elapsed().as_secs_f64().max(1e-3);
            eprintln!(
                "ingest: {name}: {through}/{total} lines, {} loaded, {} quarantined, {:.0} lines/s",
                rep.loaded,
                rep.quarantined,
                (through - start_line) as f64 / secs
            );
        }
    }
    client.execute(
        "UPDATE staging.load_batch SET status = 'merged', completed_at = now() WHERE id = $1",
        &[&batch_id],
    )?;
    if opts.progress {
        eprintln!(
            "ingest: {name}: done: {} lines = {} loaded + {} quarantined ({:.1}s)",
            rep.lines,
            rep.loaded,
            rep.quarantined,
            t0.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
