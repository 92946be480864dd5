//! `phm-edw measure`: run eCQM packages (the `ecqm` crate) over every person in the
//! EDW for one calendar year; writes `edw.measure_result` (one row per population
//! membership) and `edw.care_gap` (proportion measures: open when in the denominator,
//! not excluded/excepted and not meeting the measure's goal).
//!
//! A person's resources are the exact source JSON lines (staging.raw_line) behind
//! the current 3NF rows of all their source records; references to the patient are
//! rewritten to the person's primary record so the engine sees one patient.

use crate::{Error, Result};
use ecqm::engine::MeasurePackage;
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

pub fn run(c: &mut postgres::Client, package: &Path, year: i32) -> Result<Report> {
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
    // Group rows per person (the query is ordered by person).
    let rows = c.query(SQL, &[])?;
    let mut people: Vec<(i64, PatientRecord)> = Vec::new();
    for row in &rows {
        let pid: i64 = row.get(0);
        let kind: i32 = row.get(2);
        let mut v: Value = serde_json::from_str(row.get(3))
            .map_err(|e| Error::msg(format!("stored resource is not JSON: {e}")))?;
        if people.last().map(|p| p.0) != Some(pid) {
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
    rep.persons = people.len();
    let period_start = format!("{year}-01-01");
    let mut tx = c.transaction()?;
    // Writes are batched per measure (one statement per array batch, not one round
    // trip per row): at 12 measures x 50 populations per person the round trips were
    // most of the run.
    let up = tx.prepare(
        "INSERT INTO edw.measure_result (person_id, measure_id, period_start, period_end, population, count)
         SELECT u.p, $2, $3::text::date, $4::text::date, u.pop, u.n
         FROM unnest($1::bigint[], $5::text[], $6::int[]) AS u(p, pop, n)
         ON CONFLICT (measure_id, period_start, person_id, population) DO UPDATE
           SET count = EXCLUDED.count, computed_at = now(), change_no = nextval('edw.change_seq')
         WHERE measure_result.count <> EXCLUDED.count",
    )?;
    let gap = tx.prepare(
        "INSERT INTO edw.care_gap (person_id, measure_id, period_start, status, closed_at)
         SELECT u.p, $2, $3::text::date, u.s, CASE WHEN u.s = 'closed' THEN now() END
         FROM unnest($1::bigint[], $4::text[]) AS u(p, s)
         ON CONFLICT (measure_id, period_start, person_id) DO UPDATE
           SET status = EXCLUDED.status, closed_at = EXCLUDED.closed_at, change_no = nextval('edw.change_seq')
         WHERE care_gap.status <> EXCLUDED.status",
    )?;
    let period_end = format!("{year}-12-31");
    const BATCH: usize = 20_000;
    for m in &prepared {
        let improvement = m.def.groups.first().and_then(|g| g.improvement_notation);
        let mut mid = String::new();
        let (mut rp, mut rpop, mut rn): (Vec<i64>, Vec<&'static str>, Vec<i32>) =
            Default::default();
        let (mut gp, mut gs): (Vec<i64>, Vec<&'static str>) = Default::default();
        for (i, (pid, rec)) in people.iter().enumerate() {
            match m.evaluate(rec, EvalOptions::default()) {
                Err(_) => rep.errors += 1,
                Ok(res) => {
                    if let Some(g) = res.groups.first() {
                        mid = res.measure.clone();
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
                }
            }
            if rp.len() >= BATCH || gp.len() >= BATCH || i + 1 == people.len() {
                if !rp.is_empty() {
                    tx.execute(&up, &[&rp, &mid, &period_start, &period_end, &rpop, &rn])?;
                }
                if !gp.is_empty() {
                    tx.execute(&gap, &[&gp, &mid, &period_start, &gs])?;
                }
                rp.clear();
                rpop.clear();
                rn.clear();
                gp.clear();
                gs.clear();
            }
        }
    }
    tx.commit()?;
    Ok(rep)
}
