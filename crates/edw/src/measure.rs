//! `phm-edw measure`: run eCQM packages (the `ecqm` crate) over every person in the
//! EDW for one calendar year; writes `edw.measure_result` (one row per population
//! membership) and `edw.care_gap` (proportion measures: open when in the denominator,
//! not excluded/excepted and not meeting the measure's goal).
//!
//! A person's resources are the exact source JSON lines (staging.raw_line) behind
//! the current 3NF rows of all their source records; references to the patient are
//! rewritten to the person's primary record so the engine sees one patient.

use crate::{Error, Result};
use ecqm::engine::{MeasurePackage, PreparedMeasure};
use ecqm::{EvalOptions, ImprovementNotation, PatientRecord, Period, PopulationCode};
use serde_json::Value;
use std::path::Path;

#[derive(Debug, Default, Clone)]
pub struct Report {
    pub measures: usize,
    pub persons: usize,
    pub results: u64,
    pub open_gaps: u64,
    pub errors: u64,
}

const SQL: &str = "
WITH rows AS (
    SELECT sp.person_id, sp.id AS spid, 0 AS kind, sp.batch_id, sp.line_no FROM edw.source_patient sp
    UNION ALL SELECT sp.person_id, sp.id, 1, t.batch_id, t.line_no FROM edw.encounter t JOIN edw.source_patient sp ON sp.id = t.source_patient_id
    UNION ALL SELECT sp.person_id, sp.id, 1, t.batch_id, t.line_no FROM edw.condition t JOIN edw.source_patient sp ON sp.id = t.source_patient_id
    UNION ALL SELECT sp.person_id, sp.id, 1, t.batch_id, t.line_no FROM edw.observation t JOIN edw.source_patient sp ON sp.id = t.source_patient_id
    UNION ALL SELECT sp.person_id, sp.id, 1, t.batch_id, t.line_no FROM edw.procedure t JOIN edw.source_patient sp ON sp.id = t.source_patient_id
    UNION ALL SELECT sp.person_id, sp.id, 1, t.batch_id, t.line_no FROM edw.medication_request t JOIN edw.source_patient sp ON sp.id = t.source_patient_id
    UNION ALL SELECT sp.person_id, sp.id, 1, t.batch_id, t.line_no FROM edw.immunization t JOIN edw.source_patient sp ON sp.id = t.source_patient_id
    UNION ALL SELECT sp.person_id, sp.id, 1, t.batch_id, t.line_no FROM edw.coverage t JOIN edw.source_patient sp ON sp.id = t.source_patient_id
)
SELECT r.person_id, r.spid, r.kind, l.raw
FROM rows r JOIN staging.raw_line l ON l.batch_id = r.batch_id AND l.line_no = r.line_no
WHERE r.person_id IS NOT NULL
ORDER BY r.person_id, r.kind, r.spid";

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

/// Rows fetched from the cursor per round trip.
const FETCH_ROWS: i32 = 20_000;
/// Persons evaluated (in parallel) and written per batch.
pub const CHUNK_PERSONS: usize = 4_000;

struct Writer {
    up: postgres::Statement,
    gap: postgres::Statement,
    period_start: String,
    period_end: String,
}

/// Evaluates every measure for a chunk of persons in parallel, then writes the
/// results measure by measure.
fn evaluate_chunk(
    tx: &mut postgres::Transaction<'_>,
    w: &Writer,
    measures: &[PreparedMeasure],
    people: &[(i64, PatientRecord)],
    rep: &mut Report,
    overrides: &[(String, ImprovementNotation)],
) -> Result<()> {
    use rayon::prelude::*;
    if people.is_empty() {
        return Ok(());
    }
    let outcomes: Vec<_> = people
        .par_iter()
        .map(|(_, rec)| ecqm::engine::evaluate_all(measures, rec, EvalOptions::default()))
        .collect();
    rep.persons += people.len();
    for (mi, m) in measures.iter().enumerate() {
        let improvement = improvement_for(m, overrides);
        let mut mid = String::new();
        let (mut rp, mut rpop, mut rn): (Vec<i64>, Vec<&'static str>, Vec<i32>) =
            Default::default();
        let (mut gp, mut gs): (Vec<i64>, Vec<&'static str>) = Default::default();
        for ((pid, _), outcome) in people.iter().zip(&outcomes) {
            let res = match outcome {
                Ok(per_measure) => match &per_measure[mi] {
                    Ok(res) => res,
                    Err(_) => {
                        rep.errors += 1;
                        continue;
                    }
                },
                Err(_) => {
                    rep.errors += 1;
                    continue;
                }
            };
            let Some(g) = res.groups.first() else {
                continue;
            };
            mid.clone_from(&res.measure);
            for (code, member) in &g.populations.0 {
                rp.push(*pid);
                rpop.push(code.code());
                rn.push(*member as i32);
                rep.results += 1;
            }
            let p = &g.populations;
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
            }
        }
        if !rp.is_empty() {
            tx.execute(
                &w.up,
                &[&rp, &mid, &w.period_start, &w.period_end, &rpop, &rn],
            )?;
        }
        if !gp.is_empty() {
            tx.execute(&w.gap, &[&gp, &mid, &w.period_start, &gs])?;
        }
    }
    Ok(())
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
    let chunk = chunk.max(1);
    let pkgs = MeasurePackage::load_all(package)
        .map_err(|e| Error::msg(format!("measure package: {e}")))?;
    let period = Period::new(&format!("{year}-01-01"), &format!("{year}-12-31"))
        .map_err(|e| Error::msg(format!("--period: {e}")))?;
    let prepared: Vec<_> = pkgs
        .iter()
        .map(|p| p.prepare(&period))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::msg(format!("measure package: {e}")))?;
    let mut rep = Report {
        measures: prepared.len(),
        ..Default::default()
    };
    let period_start = format!("{year}-01-01");
    let period_end = format!("{year}-12-31");
    let mut tx = c.transaction()?;
    // Writes are batched per measure (one statement per array batch, not one round
    // trip per row): at 12 measures x 50 populations per person the round trips were
    // most of the run.
    let writer = Writer {
        up: tx.prepare(
            "INSERT INTO edw.measure_result (person_id, measure_id, period_start, period_end, population, count)
             SELECT u.p, $2, $3::text::date, $4::text::date, u.pop, u.n
             FROM unnest($1::bigint[], $5::text[], $6::int[]) AS u(p, pop, n)
             ON CONFLICT (measure_id, period_start, person_id, population) DO UPDATE
               SET count = EXCLUDED.count, computed_at = now(), change_no = nextval('edw.change_seq')
             WHERE measure_result.count <> EXCLUDED.count",
        )?,
        gap: tx.prepare(
            "INSERT INTO edw.care_gap (person_id, measure_id, period_start, status, closed_at)
             SELECT u.p, $2, $3::text::date, u.s, CASE WHEN u.s = 'closed' THEN now() END
             FROM unnest($1::bigint[], $4::text[]) AS u(p, s)
             ON CONFLICT (measure_id, period_start, person_id) DO UPDATE
               SET status = EXCLUDED.status, closed_at = EXCLUDED.closed_at, change_no = nextval('edw.change_seq')
             WHERE care_gap.status <> EXCLUDED.status",
        )?,
        period_start,
        period_end,
    };
    // Stream persons through a cursor (the query is ordered by person) so memory
    // holds one chunk, not the warehouse; each chunk is evaluated in parallel, every
    // measure of a person sharing one memo (FHIRHelpers etc. computed once).
    let portal = tx.bind(SQL, &[])?;
    let mut people: Vec<(i64, PatientRecord)> = Vec::new();
    loop {
        let rows = tx.query_portal(&portal, FETCH_ROWS)?;
        let done = rows.is_empty();
        for row in &rows {
            let pid: i64 = row.get(0);
            let kind: i32 = row.get(2);
            let mut v: Value = serde_json::from_str(row.get(3))
                .map_err(|e| Error::msg(format!("stored resource is not JSON: {e}")))?;
            if people.last().map(|p| p.0) != Some(pid) {
                if people.len() >= chunk {
                    // A new person starts: everyone gathered so far is complete.
                    evaluate_chunk(&mut tx, &writer, &prepared, &people, &mut rep, overrides)?;
                    people.clear();
                }
                // First row of a person is its primary Patient (kind 0, lowest record id).
                let id = v
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                people.push((
                    pid,
                    PatientRecord {
                        id,
                        resources: Vec::new(),
                    },
                ));
            }
            let rec = &mut people.last_mut().expect("pushed above").1;
            if kind == 0 && v.get("id").and_then(Value::as_str) != Some(rec.id.as_str()) {
                continue; // other source records' Patient resources: demographics come from the primary
            }
            rewrite_patient_refs(&mut v, &rec.id.clone());
            rec.resources.push(v);
        }
        if done {
            break;
        }
    }
    evaluate_chunk(&mut tx, &writer, &prepared, &people, &mut rep, overrides)?;
    tx.commit()?;
    Ok(rep)
}
