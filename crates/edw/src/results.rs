//! Stored measure results back out: `phm-edw results` (one JSON line per person and
//! measure, in the shape of `phm-ecqm eval`'s results file, so the official scorer
//! scores the EDW as it scores the engine) and `phm-edw report` (FHIR MeasureReports:
//! summary, subject-list, individual; and QRDA Category III with `ecqm::qrda3`'s
//! writer). All read `edw.measure_def` for the groups, so none needs the measure
//! package.

use crate::{Error, Result};
use ecqm::populations::{GroupResult, Memberships, PatientResult, StratumValue};
use ecqm::{MeasureDef, Period, PopulationCode};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write;

/// A measure as last run: its parsed definition.
pub struct StoredMeasure {
    pub def: MeasureDef,
}

/// Measures with stored definitions (all, or the one named by name, id or CMS id).
pub fn measures(c: &mut postgres::Client, only: Option<&str>) -> Result<Vec<StoredMeasure>> {
    let mut out = Vec::new();
    for row in c.query(
        "SELECT definition::text FROM edw.measure_def ORDER BY measure_id",
        &[],
    )? {
        let text: String = row.get(0);
        let def: MeasureDef = serde_json::from_str(&text)
            .map_err(|e| Error::msg(format!("stored measure definition unreadable: {e}")))?;
        let wanted =
            only.is_none_or(|k| k == def.name || k == def.id || def.cms_id.as_deref() == Some(k));
        if wanted {
            out.push(StoredMeasure { def });
        }
    }
    if out.is_empty() {
        return Err(Error::msg(match only {
            Some(k) => format!(
                "no stored results for measure {k:?}: run `phm-edw measure` with its package first"
            ),
            None => "no stored results: run `phm-edw measure` first".into(),
        }));
    }
    Ok(out)
}

/// Each person's stored result for one measure and period, in person order, with the
/// person's primary source Patient id (the lowest source record, as `measure` uses).
/// Persons without a row are in no initial population: every population 0.
pub fn for_each_result(
    c: &mut postgres::Client,
    def: &MeasureDef,
    year: i32,
    mut f: impl FnMut(i64, PatientResult) -> Result<()>,
) -> Result<usize> {
    let period_start = format!("{year}-01-01");
    let sql = "SELECT p.person_id, p.case_id, r.group_id, r.population, r.count, d.strata::text, d.sde::text
        FROM (SELECT DISTINCT ON (person_id) person_id, source_id AS case_id FROM edw.source_patient
              WHERE person_id IS NOT NULL ORDER BY person_id, id) p
        LEFT JOIN edw.measure_result r ON r.person_id = p.person_id AND r.measure_id = $1
             AND r.period_start = $2::text::date
        LEFT JOIN edw.measure_detail d ON d.person_id = p.person_id AND d.measure_id = $1
             AND d.period_start = $2::text::date
        ORDER BY p.person_id, r.group_id, r.population";
    let params: [&(dyn postgres::types::ToSql + Sync); 2] = [&def.name, &period_start];
    let mut rows = c.query_raw(sql, params)?;
    let mut current: Option<(i64, String, Option<String>, Option<String>)> = None;
    let mut counts: BTreeMap<(String, String), i32> = BTreeMap::new();
    let mut n = 0usize;
    let mut flush = |cur: (i64, String, Option<String>, Option<String>),
                     counts: &mut BTreeMap<(String, String), i32>|
     -> Result<()> {
        let (person, case, strata, sde) = cur;
        let strata: Value = strata
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or(Value::Null);
        let groups = def
            .groups
            .iter()
            .map(|g| GroupResult {
                id: g.id.clone(),
                populations: Memberships(
                    g.populations
                        .iter()
                        .map(|p| {
                            let k = (g.id.clone(), p.code.code().to_string());
                            (p.code, counts.get(&k).copied().unwrap_or(0) != 0)
                        })
                        .collect(),
                ),
                strata: strata
                    .get(&g.id)
                    .and_then(|v| serde_json::from_value::<Vec<StratumJson>>(v.clone()).ok())
                    .unwrap_or_default()
                    .into_iter()
                    .map(|s| StratumValue {
                        stratifier: s.stratifier,
                        value: s.value,
                    })
                    .collect(),
            })
            .collect();
        let sde = sde
            .and_then(|s| serde_json::from_str::<serde_json::Map<String, Value>>(&s).ok())
            .map(|m| m.into_iter().collect())
            .unwrap_or_default();
        counts.clear();
        f(
            person,
            PatientResult {
                measure: def.name.clone(),
                patient_id: case,
                groups,
                sde,
            },
        )
    };
    use fallible_iterator::FallibleIterator;
    while let Some(row) = rows.next()? {
        let person: i64 = row.get(0);
        if current.as_ref().is_some_and(|c| c.0 != person) {
            flush(current.take().expect("current"), &mut counts)?;
            n += 1;
        }
        if current.is_none() {
            current = Some((person, row.get(1), row.get(5), row.get(6)));
        }
        let group: Option<String> = row.get(2);
        if let Some(g) = group {
            counts.insert((g, row.get(3)), row.get(4));
        }
    }
    if let Some(cur) = current.take() {
        flush(cur, &mut counts)?;
        n += 1;
    }
    Ok(n)
}

#[derive(serde::Deserialize)]
struct StratumJson {
    stratifier: String,
    value: Value,
}

/// `phm-edw results`: one line per person and measure. Returns the lines written.
pub fn write_results(
    c: &mut postgres::Client,
    year: i32,
    measure: Option<&str>,
    out: &mut dyn Write,
) -> Result<usize> {
    let mut n = 0;
    for m in measures(c, measure)? {
        n += for_each_result(c, &m.def, year, |_, r| {
            let line = json!({"measure": r.measure, "case": r.patient_id, "groups": r.groups});
            writeln!(out, "{line}")?;
            Ok(())
        })?;
    }
    Ok(n)
}

/// Which MeasureReport `report` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportType {
    Summary,
    SubjectList,
    /// One individual MeasureReport per person in the initial population, as NDJSON.
    Individual,
}

impl ReportType {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "summary" => Some(Self::Summary),
            "subject-list" => Some(Self::SubjectList),
            "individual" => Some(Self::Individual),
            _ => None,
        }
    }
}

/// `phm-edw report`: MeasureReports from the stored results of one measure.
pub fn write_report(
    c: &mut postgres::Client,
    year: i32,
    measure: &str,
    kind: ReportType,
    out: &mut dyn Write,
) -> Result<usize> {
    let mut ms = measures(c, Some(measure))?;
    if ms.len() != 1 {
        return Err(Error::msg(format!(
            "{measure:?} names more than one measure"
        )));
    }
    let m = ms.remove(0);
    let period = Period::new(&format!("{year}-01-01"), &format!("{year}-12-31"))
        .map_err(|e| Error::msg(format!("--period: {e}")))?;
    let ctx = ecqm::ReportContext::new(period, ecqm::period::now_utc());
    let mut summary = ecqm::Summary::new(&m.def, kind == ReportType::SubjectList);
    let mut written = 0usize;
    for_each_result(c, &m.def, year, |_, r| {
        let in_ip = r
            .groups
            .iter()
            .any(|g| g.populations.is(PopulationCode::InitialPopulation));
        match kind {
            ReportType::Individual if in_ip => {
                let rep = ecqm::individual_report(&m.def, &r, &ctx);
                writeln!(out, "{rep}")?;
                written += 1;
            }
            ReportType::Individual => {}
            _ => summary.add(&r),
        }
        Ok(())
    })?;
    if kind != ReportType::Individual {
        let rep = summary.report(&m.def, &ctx);
        writeln!(out, "{rep}")?;
        written = 1;
    }
    Ok(written)
}

/// What [`write_qrda3`] wrote.
#[derive(Debug, Clone)]
pub struct Qrda3Written {
    /// The measures in the document (`edw.measure_def.measure_id`).
    pub measures: Vec<String>,
    /// Persons read (every person of the EDW, once per measure).
    pub persons: u64,
    pub bytes: u64,
}

/// Whether `measure` has stored results for the period starting `period_start`.
fn has_results(c: &mut postgres::Client, measure: &str, period_start: &str) -> Result<bool> {
    Ok(c.query_one(
        "SELECT EXISTS (SELECT 1 FROM edw.measure_result
                        WHERE measure_id = $1 AND period_start = $2::text::date)",
        &[&measure, &period_start],
    )?
    .get(0))
}

/// `phm-edw report --type qrda3`: one QRDA Category III document (`ecqm::qrda3`) for the
/// stored results of the period's calendar year, covering the measure named (name, id
/// or CMS id) or every measure with results for the period, written atomically to
/// `path`. Fails, leaving no file, on bad options, an unwritable path, an unknown
/// measure, a period without results, or a stored definition without what QRDA III
/// needs (version-specific id, the four supplemental data elements: stored by
/// `phm-edw measure`).
pub fn write_qrda3(
    c: &mut postgres::Client,
    year: i32,
    measure: Option<&str>,
    opts: &ecqm::qrda3::Qrda3Options,
    path: &std::path::Path,
) -> Result<Qrda3Written> {
    let qerr = |e: ecqm::EcqmError| Error::msg(e.to_string());
    opts.validate().map_err(qerr)?;
    ecqm::qrda3::check_writable(path).map_err(qerr)?;
    let period_start = format!("{year}-01-01");
    let period = Period::new(&period_start, &format!("{year}-12-31"))
        .map_err(|e| Error::msg(format!("--period: {e}")))?;
    let mut stored = Vec::new();
    for m in measures(c, measure)? {
        if has_results(c, &m.def.name, &period_start)? {
            stored.push(m);
        } else if measure.is_some() {
            return Err(Error::msg(format!(
                "no stored results for measure {} in period {year}: run `phm-edw measure --period {year}` with its package first",
                m.def.name
            )));
        }
    }
    if stored.is_empty() {
        return Err(Error::msg(format!(
            "no stored results for period {year}: run `phm-edw measure --period {year}` first"
        )));
    }
    let mut aggregates = Vec::with_capacity(stored.len());
    for m in &stored {
        let agg = ecqm::qrda3::MeasureAggregate::new(&m.def, opts.year).map_err(|e| {
            Error::msg(format!(
                "{e} (the stored definition of {} lacks it: run `phm-edw measure --full --period {year}` \
                 with the current measure package to store it)",
                m.def.name
            ))
        })?;
        aggregates.push(agg);
    }
    let mut persons = 0u64;
    for (m, agg) in stored.iter().zip(&mut aggregates) {
        persons += for_each_result(c, &m.def, year, |_, r| {
            agg.add(&r);
            Ok(())
        })? as u64;
    }
    let bytes = ecqm::qrda3::write_qrda3_file(path, &aggregates, &period, opts).map_err(qerr)?;
    Ok(Qrda3Written {
        measures: stored.into_iter().map(|m| m.def.name).collect(),
        persons,
        bytes,
    })
}

/// Writes a file through a temporary file in the same directory, renamed into place
/// only when everything was written: never a half file under the final name.
pub fn write_file_atomically<T>(
    path: &std::path::Path,
    f: impl FnOnce(&mut dyn Write) -> Result<T>,
) -> Result<T> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| Error::msg(format!("{}: not a file name", path.display())))?;
    let tmp = dir.join(format!(".{}.partial", name.to_string_lossy()));
    let file = std::fs::File::create(&tmp)
        .map_err(|e| Error::msg(format!("cannot write {}: {e}", path.display())))?;
    let mut w = std::io::BufWriter::new(file);
    let result = f(&mut w).and_then(|v| {
        w.flush()?;
        w.get_ref().sync_all()?;
        Ok(v)
    });
    match result {
        Ok(v) => {
            drop(w);
            std::fs::rename(&tmp, path)?;
            Ok(v)
        }
        Err(e) => {
            drop(w);
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_leaves_no_file_on_error_or_bad_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("results.jsonl");
        let r: Result<()> = write_file_atomically(&path, |w| {
            writeln!(w, "half")?;
            Err(Error::msg("database went away"))
        });
        assert!(r.is_err());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "no file, no partial"
        );
        let n = write_file_atomically(&path, |w| {
            writeln!(w, "{{}}")?;
            Ok(1)
        })
        .unwrap();
        assert_eq!(
            (n, std::fs::read_to_string(&path).unwrap()),
            (1, "{}\n".to_string())
        );
        let e = write_file_atomically(&dir.path().join("missing/x.jsonl"), |_| Ok(())).unwrap_err();
        assert!(e.0.contains("cannot write"), "{e}");
    }
}
