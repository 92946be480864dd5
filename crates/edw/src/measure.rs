//! `phm-edw measure`: run eCQM packages (the `ecqm` crate) over the persons in the
//! EDW for one calendar year; writes `edw.measure_result` (the population flags of
//! each person in a measure's initial population; a row set to 0 when a person
//! leaves a population) and `edw.care_gap` (proportion measures: open when in the
//! denominator, not excluded/excepted and not meeting the measure's goal;
//! not-applicable once a person leaves the denominator).
//!
//! Incremental: a run records the highest `edw.change_seq` value its input reflects.
//! The next run of the same period with the same packages and options evaluates only
//! persons with a source row changed after that (or whose records were matched away);
//! otherwise, or with `full`, everyone.
//!
//! A person's resources are the exact source JSON lines (staging.raw_line) behind
//! the current 3NF rows of all their source records; references to the patient are
//! rewritten to the person's primary record so the engine sees one patient.

use crate::{Error, Result};
use ecqm::engine::{MeasurePackage, PreparedMeasure};
use ecqm::{EvalOptions, ImprovementNotation, PatientRecord, Period, PopulationCode};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

/// Taken shared by every transaction that writes source rows (ingest chunks,
/// matching) and exclusively, briefly, by `measure` while it reads the change
/// watermark: no source row with a lower change number can commit after that.
pub const SOURCE_WRITE_LOCK: i64 = 7_419_005;

#[derive(Debug, Default, Clone)]
pub struct Report {
    pub measures: usize,
    /// "full" or "incremental".
    pub mode: &'static str,
    /// Persons evaluated.
    pub persons: usize,
    /// Population rows written (persons in a measure's initial population).
    pub results: u64,
    pub open_gaps: u64,
    pub errors: u64,
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Persons evaluated (in parallel) and written per transaction.
    pub chunk: usize,
    pub overrides: Vec<(String, ImprovementNotation)>,
    /// Evaluate everyone even when an incremental run is possible.
    pub full: bool,
    pub progress: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            chunk: CHUNK_PERSONS,
            overrides: Vec::new(),
            full: false,
            progress: false,
        }
    }
}

use crate::CLINICAL_TABLES;

/// One chunk's source lines. Every step is a LATERAL subquery with `OFFSET 0`, which
/// the planner cannot flatten into a join: each is an index probe per outer row. As a
/// plain join, the planner (given 4,000 persons and statistics lagging behind a load)
/// chose hash joins over sequential scans of whole tables for every chunk: 90 s per
/// chunk at 500,000 patients instead of 0.8 s.
fn fetch_sql() -> String {
    let per_table: String = CLINICAL_TABLES
        .iter()
        .map(|t| {
            format!(
                "\n    UNION ALL SELECT 1, t.batch_id, t.line_no FROM edw.{t} t WHERE t.source_patient_id = sp.id"
            )
        })
        .collect();
    format!(
        "SELECT sp.person_id, sp.id, x.kind, x.batch_id, x.line_no, l.raw
FROM unnest($1::bigint[]) AS p(id)
CROSS JOIN LATERAL (SELECT s.id, s.person_id, s.batch_id, s.line_no FROM edw.source_patient s
                    WHERE s.person_id = p.id OFFSET 0) sp
CROSS JOIN LATERAL (
    SELECT 0 AS kind, sp.batch_id, sp.line_no{per_table}
    OFFSET 0) x
CROSS JOIN LATERAL (SELECT r.raw FROM staging.raw_line r
                    WHERE r.batch_id = x.batch_id AND r.line_no = x.line_no OFFSET 0) l"
    )
}

/// Persons with a source row changed after $1, and persons with results for the
/// period ($2) but no source record left (matched into another person).
/// Only encounter and observation have change_no indexes (the star ETL reads them);
/// the other tables are scanned: cheaper than an index maintained on every load.
fn changed_sql() -> String {
    let per_table: String = CLINICAL_TABLES
        .iter()
        .map(|t| {
            format!(
                "\nUNION SELECT sp.person_id FROM edw.{t} t JOIN edw.source_patient sp ON sp.id = t.source_patient_id WHERE t.change_no > $1"
            )
        })
        .collect();
    format!(
        "SELECT person_id FROM edw.source_patient WHERE change_no > $1 AND person_id IS NOT NULL{per_table}
UNION SELECT r.person_id FROM edw.measure_result r WHERE r.period_start = $2::text::date AND r.count <> 0
      AND NOT EXISTS (SELECT 1 FROM edw.source_patient sp WHERE sp.person_id = r.person_id)"
    )
}

fn rewrite_patient_refs(v: &mut Value, primary: &str) {
    for key in ["subject", "patient", "beneficiary"] {
        if let Some(r) = v.get_mut(key).and_then(|s| s.get_mut("reference")) {
            if r.as_str()
                .is_some_and(|s| s.contains("Patient/") || s.starts_with("urn:uuid:"))
            {
                *r = Value::String(format!("Patient/{primary}"));
            }
        }
    }
}

/// Persons evaluated (in parallel) and written per transaction.
pub const CHUNK_PERSONS: usize = 4_000;

/// One fetched row: (source record id, kind: 0 Patient / 1 other, batch, line, raw JSON).
type Line = (i64, i32, i64, i64, String);

/// What evaluating one person gave.
enum Outcome {
    /// No source record (matched away): every population 0, gaps not applicable.
    NoRecord,
    Failed,
    Evaluated(Vec<Option<ecqm::PatientResult>>),
}

/// Builds a person's record from their lines: the primary Patient is the one of the
/// lowest source record id; other records' Patient resources are dropped
/// (demographics come from the primary) and every reference to a patient points to it.
fn person_record(mut lines: Vec<Line>) -> std::result::Result<PatientRecord, ()> {
    lines.sort_unstable_by_key(|l| (l.1, l.0, l.2, l.3));
    let mut resources = Vec::with_capacity(lines.len());
    let mut id = String::new();
    for (i, (_, kind, _, _, raw)) in lines.into_iter().enumerate() {
        let mut v: Value = serde_json::from_str(&raw).map_err(|_| ())?;
        if i == 0 {
            if kind != 0 {
                return Err(()); // clinical rows without the Patient they hang off
            }
            id = v
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
        } else if kind == 0 {
            continue;
        }
        rewrite_patient_refs(&mut v, &id);
        resources.push(v);
    }
    Ok(PatientRecord { id, resources })
}

fn evaluate_person(measures: &[PreparedMeasure], lines: Option<Vec<Line>>) -> Outcome {
    let Some(lines) = lines else {
        return Outcome::NoRecord;
    };
    let Ok(rec) = person_record(lines) else {
        return Outcome::Failed;
    };
    match ecqm::engine::evaluate_all(measures, &rec, EvalOptions::default()) {
        Ok(per_measure) => Outcome::Evaluated(per_measure.into_iter().map(|r| r.ok()).collect()),
        Err(_) => Outcome::Failed,
    }
}

/// Phases of a run (seconds, accumulated; the bench prints them): fetch lines,
/// evaluate (parse + engine, overlapping the others), write results.
static PROFILE: [std::sync::atomic::AtomicU64; 3] =
    [const { std::sync::atomic::AtomicU64::new(0) }; 3];
pub const PHASES: [&str; 3] = ["fetch lines", "evaluate (overlapped)", "write results"];

fn prof(phase: usize, since: Instant) {
    PROFILE[phase].fetch_add(
        since.elapsed().as_micros() as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
}

pub fn profile() -> [f64; 3] {
    std::array::from_fn(|i| PROFILE[i].load(std::sync::atomic::Ordering::Relaxed) as f64 / 1e6)
}

struct Writer {
    up: postgres::Statement,
    zero: postgres::Statement,
    gap: postgres::Statement,
    void_gap: postgres::Statement,
    period_start: String,
    period_end: String,
    /// No results exist for the period: nothing to zero or void.
    fresh: bool,
}

/// Writes one chunk's outcomes, measure by measure, in one transaction (timed for
/// the profile).
fn write_chunk(
    c: &mut postgres::Client,
    w: &Writer,
    measures: &[PreparedMeasure],
    ids: &[i64],
    outcomes: &[Outcome],
    rep: &mut Report,
    overrides: &[(String, ImprovementNotation)],
) -> Result<()> {
    let t = Instant::now();
    let mut tx = c.transaction()?;
    for (mi, m) in measures.iter().enumerate() {
        let improvement = improvement_for(m, overrides);
        let mid = &m.def.name;
        let (mut rp, mut rpop, mut rn): (Vec<i64>, Vec<&'static str>, Vec<i32>) =
            Default::default();
        let (mut gp, mut gs): (Vec<i64>, Vec<&'static str>) = Default::default();
        let (mut out_ip, mut out_denom): (Vec<i64>, Vec<i64>) = Default::default();
        for (pid, outcome) in ids.iter().zip(outcomes) {
            let res = match outcome {
                Outcome::NoRecord => {
                    out_ip.push(*pid);
                    out_denom.push(*pid);
                    continue;
                }
                Outcome::Failed => {
                    rep.errors += 1;
                    continue;
                }
                Outcome::Evaluated(per) => match &per[mi] {
                    Some(r) => r,
                    None => {
                        rep.errors += 1;
                        continue;
                    }
                },
            };
            let Some(g) = res.groups.first() else {
                continue;
            };
            let p = &g.populations;
            if p.is(PopulationCode::InitialPopulation) {
                for (code, member) in &p.0 {
                    rp.push(*pid);
                    rpop.push(code.code());
                    rn.push(*member as i32);
                    rep.results += 1;
                }
            } else {
                out_ip.push(*pid);
            }
            if p.is(PopulationCode::Denominator)
                && !p.is(PopulationCode::DenominatorExclusion)
                && !p.is(PopulationCode::DenominatorException)
            {
                let met = p.is(PopulationCode::Numerator);
                let open = match improvement {
                    Some(ImprovementNotation::Decrease) => met,
                    _ => !met,
                };
                rep.open_gaps += open as u64;
                gp.push(*pid);
                gs.push(if open { "open" } else { "closed" });
            } else {
                out_denom.push(*pid);
            }
        }
        if !rp.is_empty() {
            tx.execute(
                &w.up,
                &[&rp, mid, &w.period_start, &w.period_end, &rpop, &rn],
            )?;
        }
        if !w.fresh && !out_ip.is_empty() {
            tx.execute(&w.zero, &[&out_ip, mid, &w.period_start])?;
        }
        if !gp.is_empty() {
            tx.execute(&w.gap, &[&gp, mid, &w.period_start, &gs])?;
        }
        if !w.fresh && !out_denom.is_empty() {
            tx.execute(&w.void_gap, &[&out_denom, mid, &w.period_start])?;
        }
    }
    tx.commit()?;
    prof(2, t);
    Ok(())
}

/// sha256 over the package bytes (the files `MeasurePackage::load_all` reads), the
/// engine version and the options that change results.
fn fingerprint(package: &Path, overrides: &[(String, ImprovementNotation)]) -> Result<String> {
    let mut files = Vec::new();
    if package.is_file() {
        files.push(package.to_path_buf());
    } else {
        for e in std::fs::read_dir(package)? {
            let p = e?.path();
            if p.is_file() && p.extension().and_then(|e| e.to_str()) == Some("json") {
                files.push(p);
            }
        }
        files.sort();
    }
    let mut h = Sha256::new();
    h.update(ecqm::VERSION.as_bytes());
    for f in files {
        h.update(f.file_name().map(|n| n.as_encoded_bytes()).unwrap_or(b""));
        let bytes = std::fs::read(&f)?;
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    }
    let mut o: Vec<String> = overrides
        .iter()
        .map(|(m, v)| format!("{m}={v:?}"))
        .collect();
    o.sort();
    h.update(o.join(",").as_bytes());
    Ok(crate::migrate::hex(&h.finalize()))
}

pub fn run(c: &mut postgres::Client, package: &Path, year: i32) -> Result<Report> {
    run_in_chunks(c, package, year, CHUNK_PERSONS, &[])
}

/// Parses `MEASURE=increase|decrease[,MEASURE=...]`: the improvement notation to
/// use for a measure (by name, id or CMS id) whose package states none or a
/// contradictory one.
pub fn parse_improvement_overrides(s: &str) -> Result<Vec<(String, ImprovementNotation)>> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let (m, v) = p.split_once('=').ok_or_else(|| {
                Error::msg("--improvement-notation takes MEASURE=increase|decrease[,...]")
            })?;
            let v = ImprovementNotation::parse(v).ok_or_else(|| {
                Error::msg("--improvement-notation values are increase or decrease")
            })?;
            Ok((m.trim().to_owned(), v))
        })
        .collect()
}

fn improvement_for(
    m: &PreparedMeasure,
    overrides: &[(String, ImprovementNotation)],
) -> Option<ImprovementNotation> {
    let d = &m.def;
    overrides
        .iter()
        .find(|(k, _)| *k == d.name || *k == d.id || d.cms_id.as_deref() == Some(k.as_str()))
        .map(|(_, v)| *v)
        .or_else(|| d.groups.first().and_then(|g| g.improvement_notation))
}

/// As [`run`], evaluating `chunk` persons at a time (tests use small chunks to
/// cross chunk boundaries).
pub fn run_in_chunks(
    c: &mut postgres::Client,
    package: &Path,
    year: i32,
    chunk: usize,
    overrides: &[(String, ImprovementNotation)],
) -> Result<Report> {
    run_with(
        c,
        package,
        year,
        &Options {
            chunk,
            overrides: overrides.to_vec(),
            ..Options::default()
        },
    )
}

pub fn run_with(
    c: &mut postgres::Client,
    package: &Path,
    year: i32,
    opts: &Options,
) -> Result<Report> {
    let chunk = opts.chunk.max(1);
    let overrides = &opts.overrides[..];
    let t0 = Instant::now();
    let pkgs = MeasurePackage::load_all(package)
        .map_err(|e| Error::msg(format!("measure package: {e}")))?;
    let period = Period::new(&format!("{year}-01-01"), &format!("{year}-12-31"))
        .map_err(|e| Error::msg(format!("--period: {e}")))?;
    let prepared: Vec<_> = pkgs
        .iter()
        .map(|p| p.prepare(&period))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::msg(format!("measure package: {e}")))?;
    let fp = fingerprint(package, overrides)?;
    let period_start = format!("{year}-01-01");
    let period_end = format!("{year}-12-31");

    // The watermark: wait for in-flight source writes, then read the sequence.
    let through: i64 = {
        let mut tx = c.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SOURCE_WRITE_LOCK])?;
        let v = tx
            .query_one(
                "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM edw.change_seq",
                &[],
            )?
            .get(0);
        tx.commit()?;
        v
    };
    let since: Option<i64> = if opts.full {
        None
    } else {
        c.query_opt(
            "SELECT through_change_no FROM edw.measure_run
             WHERE period_start = $1::text::date AND fingerprint = $2 AND completed_at IS NOT NULL
             ORDER BY id DESC LIMIT 1",
            &[&period_start, &fp],
        )?
        .map(|r| r.get(0))
    };
    let persons: Vec<i64> = match since {
        Some(w) => c.query(&changed_sql(), &[&w, &period_start])?,
        None => c.query("SELECT id FROM edw.person ORDER BY id", &[])?,
    }
    .iter()
    .map(|r| r.get(0))
    .collect();
    let mut persons = persons;
    persons.sort_unstable();
    persons.dedup();
    let mode = if since.is_some() {
        "incremental"
    } else {
        "full"
    };
    let fresh = since.is_none()
        && !c
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM edw.measure_result WHERE period_start = $1::text::date)
                     OR EXISTS (SELECT 1 FROM edw.care_gap WHERE period_start = $1::text::date)",
                &[&period_start],
            )?
            .get::<_, bool>(0);
    let run_id: i64 = c
        .query_one(
            "INSERT INTO edw.measure_run (period_start, fingerprint, mode, through_change_no)
             VALUES ($1::text::date, $2, $3, $4) RETURNING id",
            &[&period_start, &fp, &mode, &through],
        )?
        .get(0);
    if opts.progress {
        eprintln!(
            "measure: {} measures, period {year}, {mode} run: {} persons to evaluate",
            prepared.len(),
            persons.len()
        );
    }
    let mut rep = Report {
        measures: prepared.len(),
        mode,
        ..Default::default()
    };
    // Writes are batched per measure (one statement per array batch, not one round
    // trip per row).
    let writer = Writer {
        up: c.prepare(
            "INSERT INTO edw.measure_result (person_id, measure_id, period_start, period_end, population, count)
             SELECT u.p, $2, $3::text::date, $4::text::date, u.pop, u.n
             FROM unnest($1::bigint[], $5::text[], $6::int[]) AS u(p, pop, n)
             ON CONFLICT (measure_id, period_start, person_id, population) DO UPDATE
               SET count = EXCLUDED.count, computed_at = now(), change_no = nextval('edw.change_seq')
             WHERE measure_result.count <> EXCLUDED.count",
        )?,
        // The rows to change are found by index probes per person (LATERAL ... OFFSET 0,
        // see fetch_sql) and updated by primary key: never a scan of the whole table
        // per chunk, whatever the statistics say.
        zero: c.prepare(
            "UPDATE edw.measure_result SET count = 0, computed_at = now(), change_no = nextval('edw.change_seq')
             WHERE id = ANY(ARRAY(
               SELECT m.id FROM unnest($1::bigint[]) AS u(p)
               CROSS JOIN LATERAL (SELECT x.id FROM edw.measure_result x
                 WHERE x.measure_id = $2 AND x.period_start = $3::text::date AND x.person_id = u.p
                   AND x.count <> 0 OFFSET 0) m))",
        )?,
        gap: c.prepare(
            "INSERT INTO edw.care_gap (person_id, measure_id, period_start, status, closed_at)
             SELECT u.p, $2, $3::text::date, u.s, CASE WHEN u.s = 'closed' THEN now() END
             FROM unnest($1::bigint[], $4::text[]) AS u(p, s)
             ON CONFLICT (measure_id, period_start, person_id) DO UPDATE
               SET status = EXCLUDED.status, closed_at = EXCLUDED.closed_at, change_no = nextval('edw.change_seq')
             WHERE care_gap.status <> EXCLUDED.status",
        )?,
        void_gap: c.prepare(
            "UPDATE edw.care_gap SET status = 'not-applicable', closed_at = NULL, change_no = nextval('edw.change_seq')
             WHERE id = ANY(ARRAY(
               SELECT g.id FROM unnest($1::bigint[]) AS u(p)
               CROSS JOIN LATERAL (SELECT x.id FROM edw.care_gap x
                 WHERE x.measure_id = $2 AND x.period_start = $3::text::date AND x.person_id = u.p
                   AND x.status <> 'not-applicable' OFFSET 0) g))",
        )?,
        period_start,
        period_end,
        fresh,
    };
    let fetch = LineFetch(c.prepare(&fetch_sql())?);
    // Pipeline: while chunk k is evaluated (rayon, all cores), this thread writes
    // chunk k-1's results and fetches chunk k+1's lines, so PostgreSQL and the engine
    // work at the same time.
    let chunks: Vec<&[i64]> = persons.chunks(chunk).collect();
    let mut next = match chunks.first() {
        Some(ids) => Some(fetch.lines(c, ids)?),
        None => None,
    };
    let mut pending: Option<(usize, Vec<Outcome>)> = None;
    let mut done = 0usize;
    let mut last_line = Instant::now();
    for k in 0..chunks.len() {
        let mut lines = next.take().expect("fetched ahead");
        let ids = chunks[k];
        let (outcomes, io) = std::thread::scope(|s| {
            let eval = s.spawn(|| {
                use rayon::prelude::*;
                let t = Instant::now();
                let per: Vec<Option<Vec<Line>>> = ids.iter().map(|id| lines.remove(id)).collect();
                let out: Vec<Outcome> = per
                    .into_par_iter()
                    .map(|l| evaluate_person(&prepared, l))
                    .collect();
                prof(1, t);
                out
            });
            let io = (|| -> Result<()> {
                if let Some((pk, outs)) = pending.take() {
                    write_chunk(
                        c, &writer, &prepared, chunks[pk], &outs, &mut rep, overrides,
                    )?;
                }
                if let Some(ids) = chunks.get(k + 1) {
                    next = Some(fetch.lines(c, ids)?);
                }
                Ok(())
            })();
            (eval.join().expect("evaluation thread panicked"), io)
        });
        io?;
        pending = Some((k, outcomes));
        done += ids.len();
        rep.persons = done;
        // A line every 10 s (and the last chunk), not one per chunk.
        if opts.progress && (last_line.elapsed().as_secs() >= 10 || done == persons.len()) {
            last_line = Instant::now();
            let secs = t0.elapsed().as_secs_f64().max(1e-3);
            eprintln!(
                "measure: {done}/{} persons, {:.0} persons/s",
                persons.len(),
                done as f64 / secs
            );
        }
    }
    if let Some((pk, outs)) = pending.take() {
        write_chunk(
            c, &writer, &prepared, chunks[pk], &outs, &mut rep, overrides,
        )?;
    }
    c.execute(
        "UPDATE edw.measure_run SET completed_at = now(), persons = $2 WHERE id = $1",
        &[&run_id, &(rep.persons as i64)],
    )?;
    if opts.progress {
        eprintln!(
            "measure: done: {} persons, {} population rows, {} open gaps, {} errors ({:.1}s)",
            rep.persons,
            rep.results,
            rep.open_gaps,
            rep.errors,
            t0.elapsed().as_secs_f64()
        );
    }
    Ok(rep)
}

/// The prepared chunk query ([`fetch_sql`]).
struct LineFetch(postgres::Statement);

impl LineFetch {
    /// The lines of a chunk of persons, grouped by person.
    fn lines(&self, c: &mut postgres::Client, ids: &[i64]) -> Result<HashMap<i64, Vec<Line>>> {
        let t = Instant::now();
        let mut by_person: HashMap<i64, Vec<Line>> = HashMap::with_capacity(ids.len());
        for row in c.query(&self.0, &[&ids])? {
            by_person.entry(row.get(0)).or_default().push((
                row.get(1),
                row.get(2),
                row.get(3),
                row.get(4),
                row.get(5),
            ));
        }
        prof(0, t);
        Ok(by_person)
    }
}
