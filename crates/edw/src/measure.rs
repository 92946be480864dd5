//! `phm-edw measure`: run eCQM packages (the `ecqm` crate) over the persons in the
//! EDW for one calendar year; writes, per population group, `edw.measure_result` (the
//! population flags of each person in the group's initial population; a row set to 0
//! when a person leaves a population), `edw.care_gap` (the status `ecqm::gaps` decides;
//! not-applicable once a person leaves the denominator) and `edw.measure_detail`
//! (stratifier values and supplemental data of persons in an initial population).
//! `edw.measure_def` keeps each measure's groups and parsed definition (with its
//! version-specific id and the CMS supplemental data elements) for `results` and
//! `report`.
//!
//! Incremental: a run records the highest `edw.change_seq` value its input reflects.
//! The next run of the same period with the same packages and options evaluates only
//! persons with a source row changed after that (or whose records were matched away);
//! otherwise, or with `full`, everyone.
//!
//! A person's resources are the exact source JSON lines (staging.raw_line) behind
//! the current rows of all their source records (typed tables and `edw.resource`),
//! plus the resources about no patient (Medication, Location) that those lines
//! reference; references to the patient are rewritten to the person's primary record
//! so the engine sees one patient.

use crate::{Error, Result};
use ecqm::engine::{MeasurePackage, PreparedMeasure};
use ecqm::{
    gap_status, EvalOptions, GapStatus, ImprovementOverrides, PatientRecord, Period, PopulationCode,
};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap, HashSet};
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
    pub overrides: ImprovementOverrides,
    /// Evaluate everyone even when an incremental run is possible.
    pub full: bool,
    pub progress: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            chunk: CHUNK_PERSONS,
            overrides: ImprovementOverrides::default(),
            full: false,
            progress: false,
        }
    }
}

use crate::CLINICAL_TABLES;

/// Tables whose rows hang off a source patient and point at their source line: the
/// typed clinical tables and `edw.resource` (every other type, kept whole).
fn patient_line_tables() -> impl Iterator<Item = &'static str> {
    CLINICAL_TABLES.iter().copied().chain(["resource"])
}

/// One chunk's source lines. Every step is a LATERAL subquery with `OFFSET 0`, which
/// the planner cannot flatten into a join: each is an index probe per outer row. As a
/// plain join, the planner (given 4,000 persons and statistics lagging behind a load)
/// chose hash joins over sequential scans of whole tables for every chunk: 90 s per
/// chunk at 500,000 patients instead of 0.8 s.
fn fetch_sql() -> String {
    lines_sql(true)
}

/// As [`fetch_sql`] without the raw text: (person, source record, kind, batch, line,
/// source, change_no) of every line behind a chunk of persons ($1), in the warehouse's
/// form. The bulk export selects rows with it as the client's organisation role
/// (row-level security applies) and reads the raw text of exactly those keys afterwards
/// ([`RAW_SQL`]).
pub(crate) fn line_keys_sql(distributed: bool) -> String {
    if distributed {
        line_keys_sql_distributed()
    } else {
        lines_sql(false)
    }
}

/// The Citus form of [`lines_sql`] without the raw text: every table has the person (the shard key), so each
/// branch is pruned to the chunk's persons' shards; the raw text is read afterwards from the
/// coordinator's staging ([`RAW_SQL`]), which no shard can join.
fn line_keys_sql_distributed() -> String {
    let per_table: String = patient_line_tables()
        .map(|t| {
            format!(
                "\nUNION ALL SELECT t.person_id, t.source_patient_id, 1, t.batch_id, t.line_no, t.source, t.change_no
                 FROM edw.{t} t WHERE t.person_id = ANY($1::bigint[])"
            )
        })
        .collect();
    format!(
        "SELECT sp.person_id, sp.id, 0, sp.batch_id, sp.line_no, sp.source, sp.change_no
         FROM edw.source_patient sp WHERE sp.person_id = ANY($1::bigint[]){per_table}"
    )
}

/// Raw lines by (batch, line) ($1, $2), on the coordinator.
pub(crate) const RAW_SQL: &str =
    "SELECT u.b, u.l, r.raw FROM unnest($1::bigint[], $2::bigint[]) AS u(b, l)
CROSS JOIN LATERAL (SELECT x.raw FROM staging.raw_line x
                    WHERE x.batch_id = u.b AND x.line_no = u.l OFFSET 0) r";

fn lines_sql(raw: bool) -> String {
    let per_table: String = patient_line_tables()
        .map(|t| {
            format!(
                "\n    UNION ALL SELECT 1, t.batch_id, t.line_no, t.change_no FROM edw.{t} t WHERE t.source_patient_id = sp.id"
            )
        })
        .collect();
    let (cols, raw_join) = if raw {
        (
            "x.batch_id, x.line_no, l.raw, sp.source",
            "\nCROSS JOIN LATERAL (SELECT r.raw FROM staging.raw_line r
                    WHERE r.batch_id = x.batch_id AND r.line_no = x.line_no OFFSET 0) l",
        )
    } else {
        ("x.batch_id, x.line_no, sp.source, x.change_no", "")
    };
    format!(
        "SELECT sp.person_id, sp.id, x.kind, {cols}
FROM unnest($1::bigint[]) AS p(id)
CROSS JOIN LATERAL (SELECT s.id, s.person_id, s.batch_id, s.line_no, s.source, s.change_no FROM edw.source_patient s
                    WHERE s.person_id = p.id OFFSET 0) sp
CROSS JOIN LATERAL (
    SELECT 0 AS kind, sp.batch_id, sp.line_no, sp.change_no{per_table}
    OFFSET 0) x{raw_join}"
    )
}

/// Persons with a source row changed after $1, and persons with results for the
/// period ($2) but no source record left (matched into another person).
/// Only encounter and observation have change_no indexes (the star ETL reads them);
/// the other tables are scanned: cheaper than an index maintained on every load.
/// On Citus every table has the person: no join to the record.
fn changed_sql(distributed: bool) -> String {
    let per_table: String = patient_line_tables()
        .map(|t| {
            if distributed {
                format!("\nUNION SELECT t.person_id FROM edw.{t} t WHERE t.change_no > $1 AND t.person_id <> 0")
            } else {
                format!(
                    "\nUNION SELECT sp.person_id FROM edw.{t} t JOIN edw.source_patient sp ON sp.id = t.source_patient_id WHERE t.change_no > $1"
                )
            }
        })
        .collect();
    format!(
        "SELECT person_id FROM edw.source_patient WHERE change_no > $1 AND person_id IS NOT NULL{per_table}
UNION SELECT r.person_id FROM edw.measure_result r WHERE r.period_start = $2::text::date AND r.count <> 0
      AND NOT EXISTS (SELECT 1 FROM edw.source_patient sp WHERE sp.person_id = r.person_id)"
    )
}

/// Resources about no patient, by (source, type, id): the lines of a chunk's shared
/// references. $1 sources, $2 types, $3 ids.
const SHARED_SQL: &str = "SELECT u.s, u.t, u.i, l.raw
FROM unnest($1::text[], $2::text[], $3::text[]) AS u(s, t, i)
CROSS JOIN LATERAL (SELECT r.batch_id, r.line_no FROM edw.resource r
                    WHERE r.source = u.s AND r.resource_type = u.t AND r.source_id = u.i
                      AND r.source_patient_id IS NULL OFFSET 0) r
CROSS JOIN LATERAL (SELECT x.raw FROM staging.raw_line x
                    WHERE x.batch_id = r.batch_id AND x.line_no = r.line_no OFFSET 0) l";

/// The Citus form of [`SHARED_SQL`]: the keys from person 0's shard (resources about no
/// patient), then the raw text by [`RAW_SQL`]. $1 sources, $2 types, $3 ids.
const SHARED_KEYS_SQL: &str = "SELECT r.source, r.resource_type, r.source_id, r.batch_id, r.line_no
FROM edw.resource r
WHERE r.person_id = 0 AND (r.source, r.resource_type, r.source_id) IN
      (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]))";

/// The `Type/id` references in a resource to one of `types` (relative, absolute or
/// versioned), as (type, id).
pub(crate) fn references_to(v: &Value, types: &[String], out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "reference" {
                    if let Some((ty, id)) = x.as_str().and_then(crate::validate::reference_parts) {
                        if types.iter().any(|t| t == ty) {
                            out.push((ty.to_string(), id.to_string()));
                        }
                    }
                } else {
                    references_to(x, types, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| references_to(x, types, out)),
        _ => {}
    }
}

pub(crate) fn rewrite_patient_refs(v: &mut Value, primary: &str) {
    for key in crate::validate::PATIENT_ELEMENTS {
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

/// One fetched row: (source record id, kind: 0 Patient / 1 the patient's / 2 shared,
/// batch, line, raw JSON).
pub(crate) type Line = (i64, i32, i64, i64, String);

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
fn person_record(lines: Vec<Line>) -> std::result::Result<PatientRecord, ()> {
    let (id, resources) = person_resources(lines.into_iter().map(|l| (l, ())).collect())?;
    Ok(PatientRecord {
        id,
        resources: resources.into_iter().map(|(_, v)| v).collect(),
    })
}

/// [`person_record`]'s rule, each resource with the tag its line came with (the bulk
/// export carries change numbers): (the primary Patient's source id, resources with
/// the primary Patient first).
pub(crate) fn person_resources<T>(
    mut lines: Vec<(Line, T)>,
) -> std::result::Result<(String, Vec<(T, Value)>), ()> {
    lines.sort_unstable_by_key(|(l, _)| (l.1, l.0, l.2, l.3));
    let mut resources = Vec::with_capacity(lines.len());
    let mut id = String::new();
    for (i, ((_, kind, _, _, raw), tag)) in lines.into_iter().enumerate() {
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
        resources.push((tag, v));
    }
    Ok((id, resources))
}

fn evaluate_person(
    measures: &[PreparedMeasure],
    lines: Option<Vec<Line>>,
    request: cql::EvalContext,
) -> Outcome {
    let Some(lines) = lines else {
        return Outcome::NoRecord;
    };
    let Ok(rec) = person_record(lines) else {
        return Outcome::Failed;
    };
    let opts = EvalOptions {
        stratifiers: true,
        supplemental_data: true,
        single_pass: false,
    };
    match ecqm::engine::evaluate_all_in(measures, &rec, opts, request) {
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
    detail: postgres::Statement,
    drop_detail: postgres::Statement,
    period_start: String,
    period_end: String,
    /// The period has ended at the time of the run: open gaps are open, not prospective.
    period_over: bool,
    /// No results exist for the period: nothing to zero or void.
    fresh: bool,
}

/// A new change number in an UPDATE. Citus cannot take one on a shard: the coordinator
/// takes one for the statement (the watermark readers compare with `>`, so rows sharing
/// a number are fine).
fn next_change_no(distributed: bool) -> &'static str {
    if distributed {
        "(SELECT nextval('edw.change_seq'))"
    } else {
        "nextval('edw.change_seq')"
    }
}

impl Writer {
    fn prepare(
        c: &mut postgres::Client,
        distributed: bool,
        period_start: String,
        period_end: String,
        fresh: bool,
    ) -> Result<Writer> {
        // An upsert's change number is the inserted row's default, taken where the row is
        // built: on Citus the coordinator builds it (the organisations come from a
        // materialized read of the persons, so nothing is pushed down to a shard).
        // On Citus each row carries its person's organisations for row-level security.
        let (orgs, org_col, org_val, org_join, org_set) = if distributed {
            (
                "WITH o AS MATERIALIZED (SELECT p.id, p.org_ids FROM edw.person p WHERE p.id = ANY($1::bigint[]))\n",
                ", org_ids",
                ", o.org_ids",
                " JOIN o ON o.id = u.p",
                ", org_ids = EXCLUDED.org_ids",
            )
        } else {
            ("", "", "", "", "")
        };
        let next = next_change_no(distributed);
        // The rows to change are found by index probes per person (LATERAL ... OFFSET 0,
        // see fetch_sql) and updated by primary key: never a scan of the whole table per
        // chunk, whatever the statistics say. On Citus the person (the shard key) is
        // the filter, each shard probing its index.
        let rows_to_change = |table: &str, changed: &str| {
            if distributed {
                format!(
                    "person_id = ANY($1::bigint[]) AND measure_id = $2 AND period_start = $3::text::date
                     AND group_id = $4 AND {changed}"
                )
            } else {
                format!(
                    "id = ANY(ARRAY(
                       SELECT m.id FROM unnest($1::bigint[]) AS u(p)
                       CROSS JOIN LATERAL (SELECT x.id FROM edw.{table} x
                         WHERE x.measure_id = $2 AND x.period_start = $3::text::date AND x.person_id = u.p
                           AND x.group_id = $4 AND x.{changed} OFFSET 0) m))"
                )
            }
        };
        Ok(Writer {
            up: c.prepare(&format!(
                "{orgs}INSERT INTO edw.measure_result (person_id, measure_id, period_start, period_end, population, count, group_id{org_col})
                 SELECT u.p, $2, $3::text::date, $4::text::date, u.pop, u.n, $7{org_val}
                 FROM unnest($1::bigint[], $5::text[], $6::int[]) AS u(p, pop, n){org_join}
                 ON CONFLICT (measure_id, period_start, person_id, group_id, population) DO UPDATE
                   SET count = EXCLUDED.count, computed_at = EXCLUDED.computed_at, change_no = EXCLUDED.change_no{org_set}
                 WHERE measure_result.count <> EXCLUDED.count"
            ))?,
            zero: c.prepare(&format!(
                "UPDATE edw.measure_result SET count = 0, computed_at = now(), change_no = {next}
                 WHERE {}",
                rows_to_change("measure_result", "count <> 0")
            ))?,
            gap: c.prepare(&format!(
                "{orgs}INSERT INTO edw.care_gap (person_id, measure_id, period_start, status, closed_at, group_id{org_col})
                 SELECT u.p, $2, $3::text::date, u.s, CASE WHEN u.s = 'closed' THEN now() END, $5{org_val}
                 FROM unnest($1::bigint[], $4::text[]) AS u(p, s){org_join}
                 ON CONFLICT (measure_id, period_start, person_id, group_id) DO UPDATE
                   SET status = EXCLUDED.status, closed_at = EXCLUDED.closed_at, change_no = EXCLUDED.change_no{org_set}
                 WHERE care_gap.status <> EXCLUDED.status"
            ))?,
            void_gap: c.prepare(&format!(
                "UPDATE edw.care_gap SET status = 'not-applicable', closed_at = NULL, change_no = {next}
                 WHERE {}",
                rows_to_change("care_gap", "status <> 'not-applicable'")
            ))?,
            detail: c.prepare(&format!(
                "{orgs}INSERT INTO edw.measure_detail (person_id, measure_id, period_start, strata, sde{org_col})
                 SELECT u.p, $2, $3::text::date, u.st::jsonb, u.sd::jsonb{org_val}
                 FROM unnest($1::bigint[], $4::text[], $5::text[]) AS u(p, st, sd){org_join}
                 ON CONFLICT (measure_id, period_start, person_id) DO UPDATE
                   SET strata = EXCLUDED.strata, sde = EXCLUDED.sde, change_no = EXCLUDED.change_no{org_set}
                 WHERE (measure_detail.strata, measure_detail.sde) IS DISTINCT FROM (EXCLUDED.strata, EXCLUDED.sde)"
            ))?,
            drop_detail: c.prepare(
                "DELETE FROM edw.measure_detail
                 WHERE measure_id = $2 AND period_start = $3::text::date AND person_id = ANY($1::bigint[])",
            )?,
            period_over: period_over(&period_end),
            period_start,
            period_end,
            fresh,
        })
    }
}

/// The care_gap status for a gap status (`None`: not applicable).
fn gap_column(s: GapStatus) -> Option<&'static str> {
    match s {
        GapStatus::Open => Some("open"),
        GapStatus::Closed => Some("closed"),
        GapStatus::Prospective => Some("prospective"),
        GapStatus::NotApplicable => None,
    }
}

/// One group's writes in a chunk.
#[derive(Default)]
struct GroupRows {
    persons: Vec<i64>,
    populations: Vec<&'static str>,
    counts: Vec<i32>,
    gap_persons: Vec<i64>,
    gap_status: Vec<&'static str>,
    /// Out of the initial population (rows set to 0) / out of the denominator (gap
    /// not applicable).
    out_ip: Vec<i64>,
    out_denom: Vec<i64>,
}

/// Writes one chunk's outcomes, measure by measure and group by group, in one
/// transaction (timed for the profile).
fn write_chunk(
    c: &mut postgres::Client,
    w: &Writer,
    measures: &[PreparedMeasure],
    ids: &[i64],
    outcomes: &[Outcome],
    rep: &mut Report,
    overrides: &ImprovementOverrides,
) -> Result<()> {
    let t = Instant::now();
    let mut tx = c.transaction()?;
    for (mi, m) in measures.iter().enumerate() {
        let mid = &m.def.name;
        let mut groups: Vec<GroupRows> =
            m.def.groups.iter().map(|_| GroupRows::default()).collect();
        let (mut dp, mut dstrata, mut dsde): (Vec<i64>, Vec<String>, Vec<String>) =
            Default::default();
        let mut out_detail: Vec<i64> = Vec::new();
        for (pid, outcome) in ids.iter().zip(outcomes) {
            let res = match outcome {
                Outcome::NoRecord => {
                    for g in &mut groups {
                        g.out_ip.push(*pid);
                        g.out_denom.push(*pid);
                    }
                    out_detail.push(*pid);
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
            let mut in_any_ip = false;
            let mut strata = serde_json::Map::new();
            for (gdef, rows) in m.def.groups.iter().zip(&mut groups) {
                let Some(g) = res.groups.iter().find(|g| g.id == gdef.id) else {
                    rows.out_ip.push(*pid);
                    rows.out_denom.push(*pid);
                    continue;
                };
                let p = &g.populations;
                if p.is(PopulationCode::InitialPopulation) {
                    in_any_ip = true;
                    for (code, member) in &p.0 {
                        rows.persons.push(*pid);
                        rows.populations.push(code.code());
                        rows.counts.push(*member as i32);
                        rep.results += 1;
                    }
                    if !g.strata.is_empty() {
                        strata.insert(
                            gdef.id.clone(),
                            serde_json::to_value(&g.strata).unwrap_or_default(),
                        );
                    }
                } else {
                    rows.out_ip.push(*pid);
                }
                let status = gap_status(p, overrides.notation(&m.def, gdef), w.period_over);
                match gap_column(status) {
                    Some(s) => {
                        rep.open_gaps += u64::from(s == "open" || s == "prospective");
                        rows.gap_persons.push(*pid);
                        rows.gap_status.push(s);
                    }
                    None => rows.out_denom.push(*pid),
                }
            }
            if in_any_ip {
                dp.push(*pid);
                dstrata.push(Value::Object(strata).to_string());
                let sde: serde_json::Map<String, Value> = res.sde.iter().cloned().collect();
                dsde.push(Value::Object(sde).to_string());
            } else {
                out_detail.push(*pid);
            }
        }
        for (gdef, g) in m.def.groups.iter().zip(&groups) {
            let gid = &gdef.id;
            if !g.persons.is_empty() {
                tx.execute(
                    &w.up,
                    &[
                        &g.persons,
                        mid,
                        &w.period_start,
                        &w.period_end,
                        &g.populations,
                        &g.counts,
                        gid,
                    ],
                )?;
            }
            if !w.fresh && !g.out_ip.is_empty() {
                tx.execute(&w.zero, &[&g.out_ip, mid, &w.period_start, gid])?;
            }
            if !g.gap_persons.is_empty() {
                tx.execute(
                    &w.gap,
                    &[&g.gap_persons, mid, &w.period_start, &g.gap_status, gid],
                )?;
            }
            if !w.fresh && !g.out_denom.is_empty() {
                tx.execute(&w.void_gap, &[&g.out_denom, mid, &w.period_start, gid])?;
            }
        }
        if !dp.is_empty() {
            tx.execute(&w.detail, &[&dp, mid, &w.period_start, &dstrata, &dsde])?;
        }
        if !w.fresh && !out_detail.is_empty() {
            tx.execute(&w.drop_detail, &[&out_detail, mid, &w.period_start])?;
        }
    }
    tx.commit()?;
    prof(2, t);
    Ok(())
}

/// Changes when what a run stores changes (results by group, details): a run after an
/// upgrade is then full.
const RESULTS_LAYOUT: &str =
    "results by group, strata and sde (migration 14); CMS SDE sex, race, ethnicity, payer";

/// sha256 over the package bytes (the files `MeasurePackage::load_all` reads), the
/// engine version, the results layout and the options that change results.
fn fingerprint(package: &Path, overrides: &ImprovementOverrides) -> Result<String> {
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
    h.update(RESULTS_LAYOUT.as_bytes());
    for f in files {
        h.update(f.file_name().map(|n| n.as_encoded_bytes()).unwrap_or(b""));
        let bytes = std::fs::read(&f)?;
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    }
    h.update(overrides.fingerprint().as_bytes());
    Ok(crate::migrate::hex(&h.finalize()))
}

pub fn run(c: &mut postgres::Client, package: &Path, year: i32) -> Result<Report> {
    run_in_chunks(
        c,
        package,
        year,
        CHUNK_PERSONS,
        &ImprovementOverrides::default(),
    )
}

/// Parses `MEASURE=increase|decrease[,...]` (see `ecqm::ImprovementOverrides`).
pub fn parse_improvement_overrides(s: &str) -> Result<ImprovementOverrides> {
    ImprovementOverrides::parse(s).map_err(|e| Error::msg(format!("--improvement-notation: {e}")))
}

/// As [`run`], evaluating `chunk` persons at a time (tests use small chunks to
/// cross chunk boundaries).
pub fn run_in_chunks(
    c: &mut postgres::Client,
    package: &Path,
    year: i32,
    chunk: usize,
    overrides: &ImprovementOverrides,
) -> Result<Report> {
    run_with(
        c,
        package,
        year,
        &Options {
            chunk,
            overrides: overrides.clone(),
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
    let distributed = crate::migrate::is_distributed(c)?;
    if !distributed {
        return run_on(c, false, package, year, opts);
    }
    // Each chunk's statements planned with its persons bound, so that Citus prunes them
    // to the chunk's shards (a prepared statement's generic plan reaches all 32).
    c.batch_execute("SET plan_cache_mode = force_custom_plan")?;
    let report = run_on(c, true, package, year, opts);
    c.batch_execute("RESET plan_cache_mode")?;
    report
}

fn run_on(
    c: &mut postgres::Client,
    distributed: bool,
    package: &Path,
    year: i32,
    opts: &Options,
) -> Result<Report> {
    let chunk = opts.chunk.max(1);
    let overrides = &opts.overrides;
    let t0 = Instant::now();
    let pkgs = MeasurePackage::load_all(package)
        .map_err(|e| Error::msg(format!("measure package: {e}")))?;
    let period = Period::new(&format!("{year}-01-01"), &format!("{year}-12-31"))
        .map_err(|e| Error::msg(format!("--period: {e}")))?;
    let mut prepared: Vec<_> = pkgs
        .iter()
        .map(|p| p.prepare(&period))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::msg(format!("measure package: {e}")))?;
    for m in &mut prepared {
        with_cms_sde(m);
    }
    check_retrieved_types(&prepared)?;
    let fp = fingerprint(package, overrides)?;
    let period_start = format!("{year}-01-01");
    let period_end = format!("{year}-12-31");
    store_definitions(c, &prepared, overrides)?;
    let shared = SharedTypes::find(c, &prepared)?;
    // One evaluation request for the whole run: Now() is the same for every person.
    let request = cql::EvalContext::from_clock();

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
    let mut persons: Vec<i64> = match since {
        Some(w) => c.query(&changed_sql(distributed), &[&w, &period_start])?,
        None => c.query("SELECT id FROM edw.person ORDER BY id", &[])?,
    }
    .iter()
    .map(|r| r.get(0))
    .collect();
    if let Some(w) = since {
        // Persons who lost a resource to another patient: none of their rows changed.
        // (Asked apart: on Citus the log is a coordinator table, the rest distributed.)
        persons.extend(
            c.query(
                "SELECT person_id FROM edw.resource_move WHERE change_no > $1",
                &[&w],
            )?
            .iter()
            .map(|r| r.get::<_, i64>(0)),
        );
    }
    persons.sort_unstable();
    persons.dedup();
    if distributed {
        persons = shard_order(c, &persons)?;
    }
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
    let writer = Writer::prepare(c, distributed, period_start, period_end, fresh)?;
    let fetch = LineFetch::prepare(c, distributed, shared.0)?;
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
                    .map(|l| evaluate_person(&prepared, l, request))
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
    if mode == "full" && !fresh {
        retire_stale_groups(c, &prepared, &writer.period_start, distributed)?;
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

/// Persons in the order of their shards (Citus's hash of the shard key, then id), so that
/// a chunk's reads and writes go to one or two of the 32 shards instead of all: every
/// shard a statement reaches probes its indexes for all the chunk's persons, its own or
/// not.
pub fn shard_order(c: &mut postgres::Client, persons: &[i64]) -> Result<Vec<i64>> {
    Ok(c.query(
        "SELECT u.p FROM unnest($1::bigint[]) AS u(p) ORDER BY worker_hash(u.p), u.p",
        &[&persons],
    )?
    .iter()
    .map(|r| r.get(0))
    .collect())
}

/// The prepared chunk queries: [`fetch_sql`] and [`SHARED_SQL`] on one node; on Citus
/// the keys from the shards ([`line_keys_sql_distributed`], [`SHARED_KEYS_SQL`]), then
/// the raw lines from the coordinator ([`RAW_SQL`]).
struct LineFetch {
    lines: postgres::Statement,
    shared: postgres::Statement,
    raw: Option<postgres::Statement>,
    /// Types the measures retrieve that may be about no patient (see [`SharedTypes`]).
    shared_types: Vec<String>,
}

/// A line of a chunk as fetched: (person, source record, kind, batch, line, raw, source).
type FetchedLine = (i64, i64, i32, i64, i64, String, String);

impl LineFetch {
    fn prepare(
        c: &mut postgres::Client,
        distributed: bool,
        shared_types: Vec<String>,
    ) -> Result<LineFetch> {
        Ok(if distributed {
            LineFetch {
                lines: c.prepare(&line_keys_sql_distributed())?,
                shared: c.prepare(SHARED_KEYS_SQL)?,
                raw: Some(c.prepare(RAW_SQL)?),
                shared_types,
            }
        } else {
            LineFetch {
                lines: c.prepare(&fetch_sql())?,
                shared: c.prepare(SHARED_SQL)?,
                raw: None,
                shared_types,
            }
        })
    }

    /// The raw text of lines by (batch, line), from the coordinator's staging.
    fn raw_text(
        c: &mut postgres::Client,
        raw: &postgres::Statement,
        keys: impl Iterator<Item = (i64, i64)>,
    ) -> Result<HashMap<(i64, i64), String>> {
        let (batches, lines): (Vec<i64>, Vec<i64>) = keys.unzip();
        Ok(c.query(raw, &[&batches, &lines])?
            .into_iter()
            .map(|r| ((r.get(0), r.get(1)), r.get(2)))
            .collect())
    }

    /// A chunk's lines, whichever form the warehouse has.
    fn chunk_lines(&self, c: &mut postgres::Client, ids: &[i64]) -> Result<Vec<FetchedLine>> {
        let rows = c.query(&self.lines, &[&ids])?;
        let Some(raw) = &self.raw else {
            return Ok(rows
                .iter()
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
                .collect());
        };
        let text = Self::raw_text(c, raw, rows.iter().map(|r| (r.get(3), r.get(4))))?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let key: (i64, i64) = (r.get(3), r.get(4));
            // A line every current row points at is kept in staging; one missing is
            // a broken warehouse, not a person without that resource.
            let raw = text.get(&key).cloned().ok_or_else(|| {
                Error::msg(format!(
                    "staging line {}:{} behind a current row is missing",
                    key.0, key.1
                ))
            })?;
            out.push((r.get(0), r.get(1), r.get(2), key.0, key.1, raw, r.get(5)));
        }
        Ok(out)
    }

    /// Shared resources by (source, type, id), as raw text.
    fn shared_lines(
        &self,
        c: &mut postgres::Client,
        sources: &[&str],
        types: &[&str],
        ids: &[&str],
    ) -> Result<HashMap<(String, String, String), String>> {
        let rows = c.query(&self.shared, &[&sources, &types, &ids])?;
        let Some(raw) = &self.raw else {
            return Ok(rows
                .iter()
                .map(|r| ((r.get(0), r.get(1), r.get(2)), r.get(3)))
                .collect());
        };
        let text = Self::raw_text(c, raw, rows.iter().map(|r| (r.get(3), r.get(4))))?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let raw = text.get(&(r.get(3), r.get(4)))?.clone();
                Some(((r.get(0), r.get(1), r.get(2)), raw))
            })
            .collect())
    }

    /// The lines of a chunk of persons, grouped by person, with the shared resources
    /// their lines reference.
    fn lines(&self, c: &mut postgres::Client, ids: &[i64]) -> Result<HashMap<i64, Vec<Line>>> {
        let t = Instant::now();
        let mut by_person: HashMap<i64, Vec<Line>> = HashMap::with_capacity(ids.len());
        // (person, source record, source, type, id) of shared references.
        let mut wanted: Vec<(i64, i64, String, String, String)> = Vec::new();
        for (person, record, kind, batch, line, raw, source) in self.chunk_lines(c, ids)? {
            if kind == 1
                && !self.shared_types.is_empty()
                && self
                    .shared_types
                    .iter()
                    .any(|t| raw.contains(&format!("{t}/")))
            {
                if let Ok(v) = serde_json::from_str::<Value>(&raw) {
                    let mut refs = Vec::new();
                    references_to(&v, &self.shared_types, &mut refs);
                    for (ty, id) in refs {
                        wanted.push((person, record, source.clone(), ty, id));
                    }
                }
            }
            by_person
                .entry(person)
                .or_default()
                .push((record, kind, batch, line, raw));
        }
        if !wanted.is_empty() {
            let keys: BTreeSet<(&str, &str, &str)> = wanted
                .iter()
                .map(|w| (w.2.as_str(), w.3.as_str(), w.4.as_str()))
                .collect();
            let (mut ss, mut ts, mut is) = (Vec::new(), Vec::new(), Vec::new());
            for (s, t, i) in &keys {
                ss.push(*s);
                ts.push(*t);
                is.push(*i);
            }
            let found = self.shared_lines(c, &ss, &ts, &is)?;
            let mut added: HashSet<(i64, String, String, String)> = HashSet::new();
            for (person, record, source, ty, id) in wanted {
                let key = (source, ty, id);
                if let Some(raw) = found.get(&key) {
                    if added.insert((person, key.0.clone(), key.1.clone(), key.2.clone())) {
                        by_person
                            .entry(person)
                            .or_default()
                            .push((record, 2, 0, 0, raw.clone()));
                    }
                }
            }
        }
        prof(0, t);
        Ok(by_person)
    }
}

/// The CMS supplemental data elements (sex, race, ethnicity, payer) as `phm-ecqm`
/// evaluates them for QRDA III (`ecqm::qrda3::ensure_cms_sde`): added to the measure's
/// definition when its main library defines them but the Measure does not list them,
/// so `edw.measure_detail` keeps them for `report --type qrda3`. Population results do
/// not change. A measure whose library lacks one keeps its own list unchanged (the
/// QRDA export then names the missing element).
fn with_cms_sde(m: &mut PreparedMeasure) {
    let own = m.def.supplemental_data.clone();
    if ecqm::qrda3::ensure_cms_sde(m).is_err() {
        m.def.supplemental_data = own;
    }
}

/// Types a measure retrieves and the EDW feeds to the engine: Patient, the typed
/// clinical types and every type kept whole in `edw.resource`. Organization,
/// Practitioner, PractitionerRole, CareTeam and Group are stored as reference data,
/// not with a patient's record.
fn check_retrieved_types(prepared: &[PreparedMeasure]) -> Result<()> {
    for m in prepared {
        for t in m.retrieved_types() {
            let fed = crate::validate::loadable(t)
                && !crate::validate::REFERENCE_DATA.contains(&t.as_str());
            if !fed {
                return Err(Error::msg(format!(
                    "measure {} retrieves {t} resources, which the EDW does not store with a patient's record",
                    m.def.name
                )));
            }
        }
    }
    Ok(())
}

/// Retrieved types with rows about no patient in `edw.resource` (Medication,
/// Location): the chunk fetch adds those a person's lines reference.
struct SharedTypes(Vec<String>);

impl SharedTypes {
    fn find(c: &mut postgres::Client, prepared: &[PreparedMeasure]) -> Result<Self> {
        let candidates: BTreeSet<&String> = prepared
            .iter()
            .flat_map(|m| m.retrieved_types())
            .filter(|t| !crate::validate::SUPPORTED.contains(&t.as_str()))
            .collect();
        let mut out = Vec::new();
        for t in candidates {
            let any: bool = c
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM edw.resource WHERE resource_type = $1 AND source_patient_id IS NULL)",
                    &[t],
                )?
                .get(0);
            if any {
                out.push(t.clone());
            }
        }
        Ok(SharedTypes(out))
    }
}

/// Whether the measurement period ending on `period_end` (YYYY-MM-DD) is over today
/// (UTC): before then an open gap is prospective.
fn period_over(period_end: &str) -> bool {
    ecqm::period::now_utc().as_str()[..10] > *period_end
}

/// Records each measure's groups and definition for `results` and `report`.
fn store_definitions(
    c: &mut postgres::Client,
    prepared: &[PreparedMeasure],
    overrides: &ImprovementOverrides,
) -> Result<()> {
    let mut tx = c.transaction()?;
    for m in prepared {
        let d = &m.def;
        let groups: Vec<Value> = d
            .groups
            .iter()
            .map(|g| {
                serde_json::json!({
                    "id": g.id,
                    "populations": g.populations.iter().map(|p| p.code.code()).collect::<Vec<_>>(),
                    "improvement_notation": overrides.notation(d, g).code(),
                })
            })
            .collect();
        let definition = serde_json::to_value(d).map_err(|e| Error::msg(e.to_string()))?;
        tx.execute(
            "INSERT INTO edw.measure_def (measure_id, url, version, cms_id, title, definition, groups)
             VALUES ($1, $2, $3, $4, $5, $6::text::jsonb, $7::text::jsonb)
             ON CONFLICT (measure_id) DO UPDATE SET url = EXCLUDED.url, version = EXCLUDED.version,
               cms_id = EXCLUDED.cms_id, title = EXCLUDED.title, definition = EXCLUDED.definition,
               groups = EXCLUDED.groups, loaded_at = EXCLUDED.loaded_at",
            &[
                &d.name,
                &d.url,
                &d.version,
                &d.cms_id,
                &d.title,
                &definition.to_string(),
                &Value::Array(groups).to_string(),
            ],
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// After a full run: rows of groups a measure no longer has (or rows from before
/// results were kept by group) are set to 0 / not applicable.
fn retire_stale_groups(
    c: &mut postgres::Client,
    prepared: &[PreparedMeasure],
    period_start: &str,
    distributed: bool,
) -> Result<()> {
    let next = next_change_no(distributed);
    for m in prepared {
        let ids: Vec<&str> = m.def.groups.iter().map(|g| g.id.as_str()).collect();
        c.execute(
            &format!("UPDATE edw.measure_result SET count = 0, computed_at = now(), change_no = {next}
             WHERE measure_id = $1 AND period_start = $2::text::date AND count <> 0 AND group_id <> ALL($3)"),
            &[&m.def.name, &period_start, &ids],
        )?;
        c.execute(
            &format!("UPDATE edw.care_gap SET status = 'not-applicable', closed_at = NULL, change_no = {next}
             WHERE measure_id = $1 AND period_start = $2::text::date AND status <> 'not-applicable'
               AND group_id <> ALL($3)"),
            &[&m.def.name, &period_start, &ids],
        )?;
    }
    Ok(())
}
