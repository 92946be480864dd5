//! Exports for quality staff: QRDA Category III, FHIR MeasureReports (summary, subject-list)
//! and CSV (measure results, a worklist view).
//!
//! - **Role**: only [`Action::ExportReports`] (the quality analyst); a refusal is audited by
//!   the session gate.
//! - **Data**: the session's patients' stored results (with their strata and supplemental
//!   data, [`crate::evaluation::StoredResults`]) when every stored result is current and is
//!   for the measurement year asked (default the app's measurement year); otherwise the
//!   patients are evaluated now by the same engine, packages and rules
//!   ([`MeasureSet::prepare`], [`MeasureSet::evaluate_results`]). Both give the same file. The QRDA program year chooses the CMS implementation guide (2025:
//!   `2024-12-01`, 2026: `2025-05-01`); the organisation identifiers are the synthetic ones of
//!   [`ecqm::qrda3::Qrda3Options::new`].
//! - **FHIR**: one Bundle (`collection`) per file, one MeasureReport per measure.
//! - **CSV**: a header row of stable snake_case names, dates ISO 8601, population flags
//!   `1`/`0`, and every cell that a spreadsheet would read as a formula (starting with `=`,
//!   `+`, `-`, `@`, tab or carriage return) prefixed with `'`. Measure results list the
//!   patients in each group's initial population (outside it every flag is 0).
//! - **Files**: written to a temporary file in the destination folder, synced and renamed
//!   into place, so there is never a half file; on any error (unwritable path, unknown
//!   measure, empty panel, a period with no data) nothing is left behind.
//! - **Audit**: one record per export, as an export: who, when, the kind, measures, period,
//!   the patients (patient-level exports) or their number, and the file's SHA-256.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use access::{Action, AuditEntry, Outcome};
use ecqm::engine::{MeasurePackage, PreparedMeasure};
use ecqm::qrda3::{MeasureAggregate, ProgramYear, Qrda3Options};
use ecqm::report::{ReportContext, Summary};
use ecqm::{EvalOptions, GapStatus, PatientResult, PopulationCode};
use serde_json::{json, Value as Json};
use sha2::{Digest, Sha256};

use crate::evaluation::{MeasureSet, BATCH};
use crate::{
    Choice, ExportKind, ExportOptions, ExportRequest, ExportResult, Session, Workstation, WsError,
};

/// The columns of `csv_measure_results`, in order.
pub const MEASURE_RESULT_COLUMNS: [&str; 17] = [
    "patient_id",
    "patient_name",
    "birth_date",
    "sex",
    "measure_id",
    "measure",
    "measure_version",
    "group_id",
    "period_start",
    "period_end",
    "initial_population",
    "denominator",
    "denominator_exclusion",
    "denominator_exception",
    "numerator",
    "numerator_exclusion",
    "gap_status",
];

/// The columns of `csv_worklist`, in order.
pub const WORKLIST_COLUMNS: [&str; 20] = [
    "patient_id",
    "patient_name",
    "birth_date",
    "sex",
    "provider",
    "measure_id",
    "measure",
    "group_id",
    "status",
    "why_open",
    "closes_with",
    "due_date",
    "overdue",
    "open_gaps",
    "state",
    "assignee",
    "last_outreach",
    "last_outreach_at",
    "snoozed_until",
    "visit_date",
];

/// A CSV cell as a spreadsheet should read it: a value starting with `=`, `+`, `-`, `@`, tab
/// or carriage return would be taken for a formula, so it gets a leading `'`.
pub fn neutralize_cell(value: &str) -> std::borrow::Cow<'_, str> {
    match value.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => format!("'{value}").into(),
        _ => value.into(),
    }
}

fn io_error(path: &Path, e: &std::io::Error) -> WsError {
    WsError::new(
        "export_io",
        format!(
            "The file {} could not be written ({}); nothing was saved.",
            path.display(),
            e.kind()
        ),
    )
}

/// A file being written: a temporary file beside the destination, hashed as it is written;
/// removed on drop unless [`Staged::commit`] renamed it into place.
struct Staged {
    path: PathBuf,
    tmp: PathBuf,
    out: Option<HashingWriter<std::io::BufWriter<std::fs::File>>>,
}

struct HashingWriter<W: Write> {
    inner: W,
    hash: Sha256,
    bytes: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Checks the destination: an absolute path to a file (not a folder) in an existing folder.
fn destination(raw: &str) -> Result<PathBuf, WsError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(WsError::invalid("Give the path of the file to write."));
    }
    let path = PathBuf::from(raw);
    if !path.is_absolute() {
        return Err(WsError::invalid(
            "Give the full path of the file to write (starting at the drive or the root folder).",
        ));
    }
    if path.is_dir() {
        return Err(WsError::invalid(format!(
            "{} is a folder; give a file name in it.",
            path.display()
        )));
    }
    let parent_ok = path.parent().is_some_and(Path::is_dir) && path.file_name().is_some();
    if !parent_ok {
        return Err(WsError::new(
            "export_io",
            format!(
                "The folder of {} does not exist; nothing was saved.",
                path.display()
            ),
        ));
    }
    Ok(path)
}

impl Staged {
    fn create(path: PathBuf) -> Result<Staged, WsError> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| io_error(&path, &e))?;
        Ok(Staged {
            out: Some(HashingWriter {
                inner: std::io::BufWriter::with_capacity(1 << 20, file),
                hash: Sha256::new(),
                bytes: 0,
            }),
            path,
            tmp,
        })
    }

    fn writer(&mut self) -> &mut HashingWriter<std::io::BufWriter<std::fs::File>> {
        self.out.as_mut().expect("the file is open until commit")
    }

    fn write_error(&self, e: &std::io::Error) -> WsError {
        io_error(&self.path, e)
    }

    /// Flushes, syncs and renames into place: `(bytes, sha256 hex)`.
    fn commit(mut self) -> Result<(u64, String), WsError> {
        let out = self.out.take().expect("committed once");
        let HashingWriter { inner, hash, bytes } = out;
        let file = inner
            .into_inner()
            .map_err(|e| io_error(&self.path, e.error()))?;
        file.sync_all().map_err(|e| io_error(&self.path, &e))?;
        drop(file);
        std::fs::rename(&self.tmp, &self.path).map_err(|e| io_error(&self.path, &e))?;
        // The rename itself is durable once the folder is synced (not possible everywhere).
        if let Some(dir) = self.path.parent() {
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        self.tmp = PathBuf::new();
        let hex: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
        Ok((bytes, hex))
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        self.out = None;
        if !self.tmp.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// What one export produced, before auditing.
struct Written {
    result: ExportResult,
    /// Patient-level exports: the patients in the file.
    patient_ids: Vec<String>,
}

/// The measures asked for, by id or CMS short name (`CMS122`, case-insensitive); all when
/// none is given.
fn choose_measures(
    packages: Vec<MeasurePackage>,
    wanted: &[String],
) -> Result<Vec<MeasurePackage>, WsError> {
    let wanted: Vec<&str> = wanted
        .iter()
        .map(|w| w.trim())
        .filter(|w| !w.is_empty())
        .collect();
    if wanted.is_empty() {
        return Ok(packages);
    }
    // `CMS122FHIR` and `CMS122` both name the measure whose CMS id is `122FHIR`.
    let matches = |p: &MeasurePackage, w: &str| {
        p.def.name == w
            || p.def.cms_id.as_ref().is_some_and(|c| {
                let w = w.to_ascii_uppercase();
                let c = c.to_ascii_uppercase();
                w == format!("CMS{c}")
                    || c.strip_suffix("FHIR")
                        .is_some_and(|n| w == format!("CMS{n}"))
            })
    };
    if let Some(unknown) = wanted
        .iter()
        .find(|w| !packages.iter().any(|p| matches(p, w)))
    {
        return Err(WsError::new(
            "unknown_measure",
            format!(
                "There is no measure {unknown:?} among the app's measures; nothing was exported."
            ),
        ));
    }
    Ok(packages
        .into_iter()
        .filter(|p| wanted.iter().any(|w| matches(p, w)))
        .collect())
}

fn csv_error(path: &Path, e: csv::Error) -> WsError {
    match e.into_kind() {
        csv::ErrorKind::Io(io) => io_error(path, &io),
        other => WsError::new(
            "export_io",
            format!("The CSV could not be written ({other:?}); nothing was saved."),
        ),
    }
}

fn write_csv_row<W: Write>(
    w: &mut csv::Writer<W>,
    path: &Path,
    cells: &[&str],
) -> Result<(), WsError> {
    w.write_record(cells.iter().map(|c| neutralize_cell(c).into_owned()))
        .map_err(|e| csv_error(path, e))
}

fn flag(b: bool) -> &'static str {
    if b {
        "1"
    } else {
        "0"
    }
}

impl Workstation {
    /// What the export screen offers: the shipped measures, the program years, the app's
    /// measurement year and the user's saved worklist views.
    pub fn export_options(&self) -> Result<ExportOptions, WsError> {
        self.audited(
            Action::ExportReports,
            Some("export options".into()),
            |c, s| {
                let packages = crate::evaluation::shipped_packages()?;
                let measures = packages
                    .iter()
                    .map(|p| Choice {
                        id: p.def.name.clone(),
                        label: format!(
                            "{} {}",
                            p.def
                                .cms_id
                                .as_ref()
                                .map(|c| format!("CMS{c}"))
                                .unwrap_or_else(|| p.def.name.clone()),
                            p.def.title.clone().unwrap_or_default().trim()
                        ),
                    })
                    .collect();
                let saved_views = c
                    .saved_views(&s.username)?
                    .into_iter()
                    .map(|(n, _)| n)
                    .collect();
                Ok((measures, saved_views))
            },
            |_| Vec::new(),
        )
        .and_then(|(measures, saved_views)| {
            Ok(ExportOptions {
                measures,
                program_years: ProgramYear::ALL.iter().map(|y| y.year()).collect(),
                measurement_year: self.measurement_year()?,
                saved_views,
            })
        })
    }

    /// Writes one export (see the module documentation) and audits it as an export with
    /// the file's SHA-256. Only the quality analyst may export.
    pub fn export(&self, req: &ExportRequest) -> Result<ExportResult, WsError> {
        let s = self.authorize(Action::ExportReports)?;
        let asked = json!({
            "export": req.kind,
            "programYear": req.program_year,
            "measurementYear": req.measurement_year,
            "measures": req.measures,
            "savedView": req.saved_view,
            "worklist": req.worklist,
            "path": req.path,
        });
        let entry = |outcome| {
            AuditEntry::now(
                &s.username,
                Some(s.role),
                s.purpose,
                Action::ExportReports,
                outcome,
            )
        };
        match self.export_inner(&s, req) {
            Ok(w) => {
                let r = &w.result;
                let query = json!({
                    "export": r.kind,
                    "path": r.path,
                    "sha256": r.sha256,
                    "bytes": r.bytes,
                    "measures": r.measures,
                    "patients": r.patients,
                    "rows": r.rows,
                    "periodStart": r.period_start,
                    "periodEnd": r.period_end,
                    "programYear": req.program_year,
                    "savedView": req.saved_view,
                    "worklist": req.worklist,
                });
                self.audit(
                    entry(Outcome::Allowed)
                        .with_query(query.to_string())
                        .with_patients(w.patient_ids)
                        .with_detail(format!("export sha256 {}", r.sha256)),
                )?;
                tracing::info!(kind = ?r.kind, bytes = r.bytes, "export written");
                Ok(w.result)
            }
            Err(e) => {
                self.audit(
                    entry(Outcome::Error)
                        .with_query(asked.to_string())
                        .with_detail(e.code),
                )?;
                Err(e)
            }
        }
    }

    fn export_inner(&self, s: &Session, req: &ExportRequest) -> Result<Written, WsError> {
        let program_year = match (req.kind, req.program_year) {
            (ExportKind::Qrda3, None) => {
                return Err(WsError::invalid(
                    "Choose the CMS program year of the QRDA III file (2025 or 2026).",
                ))
            }
            (ExportKind::Qrda3, Some(y)) => {
                Some(ProgramYear::parse(&y.to_string()).map_err(|_| {
                    WsError::invalid("QRDA III is written for the CMS program year 2025 or 2026.")
                })?)
            }
            _ => None,
        };
        let path = destination(&req.path)?;
        if req.kind == ExportKind::CsvWorklist {
            let staged = Staged::create(path)?;
            return self.export_worklist(s, req, staged);
        }
        let year = match req.measurement_year {
            Some(y) if !(1900..=2200).contains(&y) => {
                return Err(WsError::invalid(
                    "The measurement year must be a year such as 2025.",
                ))
            }
            Some(y) => y,
            None => self.measurement_year()?,
        };
        let chosen: Vec<String> =
            choose_measures(crate::evaluation::shipped_packages()?, &req.measures)?
                .into_iter()
                .map(|p| p.def.name)
                .collect();
        let ids: Vec<String> = {
            let all = self.cache().patient_ids()?;
            match &s.scope {
                None => all,
                Some(scope) => all.into_iter().filter(|i| scope.contains(i)).collect(),
            }
        };
        if ids.is_empty() {
            return Err(WsError::new(
                "empty_panel",
                "There are no patients in your panel to export; nothing was written.",
            ));
        }
        // The destination is claimed (and proven writable) before any work.
        let mut staged = Staged::create(path)?;
        // The stored results when they are current for that year (the usual case: they carry
        // strata and supplemental data); otherwise the patients are evaluated now.
        let (set, stored) = match self.current_results(year)? {
            Some(set) => (set, true),
            None => {
                let packages: Vec<MeasurePackage> = crate::evaluation::shipped_packages()?
                    .into_iter()
                    .filter(|p| chosen.contains(&p.def.name))
                    .collect();
                let today = now_rfc3339()[..10].to_string();
                let set = MeasureSet::prepare(&packages, year, &today, &self.improvement)?;
                (std::sync::Arc::new(set), false)
            }
        };
        let measures: Vec<&PreparedMeasure> = set
            .measures
            .iter()
            .filter(|m| chosen.contains(&m.def.name))
            .collect();
        let mut warnings = Vec::new();
        let mut aggregates = Vec::new();
        if let Some(py) = program_year {
            if let Some((_, why)) = set
                .sde_missing
                .iter()
                .find(|(name, _)| chosen.contains(name))
            {
                return Err(WsError::new("qrda", why.clone()));
            }
            for m in &measures {
                aggregates.push(MeasureAggregate::new(&m.def, py).map_err(qrda_error)?);
            }
            if py.year() as i32 != year {
                warnings.push(format!(
                    "The measurement period is {year} but the file follows the CMS {py} program \
                     year's implementation guide."
                ));
            }
        }
        let keep_subjects = req.kind == ExportKind::MeasureReportSubjectList;
        let mut summaries: Vec<Summary> = measures
            .iter()
            .map(|m| Summary::new(&m.def, keep_subjects))
            .collect();
        let period_start = set.period.start_date().to_string();
        let period_end = set.period.end_date().to_string();
        let csv_rows = req.kind == ExportKind::CsvMeasureResults;
        let demographics = if csv_rows {
            self.cache().patient_demographics()?
        } else {
            HashMap::new()
        };
        let dest = staged.path.clone();
        let mut csv = csv_rows.then(|| csv::Writer::from_writer(staged.writer()));
        if let Some(w) = csv.as_mut() {
            write_csv_row(w, &dest, &MEASURE_RESULT_COLUMNS)?;
        }
        let mut rows = 0u64;
        let mut in_any_ip: Vec<String> = Vec::new();
        // One patient's results (one per measure in `measures`, in order) into every output.
        let mut add_patient = |patient_id: &str, results: &[PatientResult]| {
            let mut in_ip = false;
            for (mi, r) in results.iter().enumerate() {
                let m = measures[mi];
                summaries[mi].add(r);
                if let Some(a) = aggregates.get_mut(mi) {
                    a.add(r);
                }
                for g in &r.groups {
                    if !g.populations.is(PopulationCode::InitialPopulation) {
                        continue;
                    }
                    in_ip = true;
                    let Some(w) = csv.as_mut() else { continue };
                    let is = |c| flag(g.populations.is(c));
                    let status = match set.status(m, g) {
                        GapStatus::Open => "open",
                        GapStatus::Closed => "closed",
                        GapStatus::Prospective => "prospective",
                        GapStatus::NotApplicable => "not_applicable",
                    };
                    let short = m
                        .def
                        .cms_id
                        .as_ref()
                        .map(|c| format!("CMS{c}"))
                        .unwrap_or_else(|| m.def.name.clone());
                    let (name, birth, sex) = demographics
                        .get(patient_id)
                        .map(|(n, b, x)| (n.as_str(), b.as_str(), x.as_str()))
                        .unwrap_or_default();
                    write_csv_row(
                        w,
                        &dest,
                        &[
                            patient_id,
                            name,
                            birth,
                            sex,
                            &m.def.name,
                            &short,
                            m.def.version.as_deref().unwrap_or(""),
                            &g.id,
                            &period_start,
                            &period_end,
                            is(PopulationCode::InitialPopulation),
                            is(PopulationCode::Denominator),
                            is(PopulationCode::DenominatorExclusion),
                            is(PopulationCode::DenominatorException),
                            is(PopulationCode::Numerator),
                            is(PopulationCode::NumeratorExclusion),
                            status,
                        ],
                    )?;
                    rows += 1;
                }
            }
            if in_ip {
                in_any_ip.push(patient_id.to_string());
            }
            Ok::<(), WsError>(())
        };
        if stored {
            let results = crate::evaluation::StoredResults::read(&self.cache(), &measures)?;
            for id in &ids {
                add_patient(id, &results.patient(id))?;
            }
        } else {
            let shared: HashMap<String, cql::fhir::J> = self
                .cache()
                .shared_resources()?
                .into_iter()
                .filter_map(|(t, id, raw)| {
                    Some((format!("{t}/{id}"), serde_json::from_str(&raw).ok()?))
                })
                .collect();
            let opts = EvalOptions {
                stratifiers: true,
                supplemental_data: program_year.is_some(),
                single_pass: false,
            };
            for chunk in ids.chunks(BATCH) {
                use rayon::prelude::*;
                let patients = self.cache().patient_resources(chunk)?;
                let evaluated: Vec<Result<Vec<PatientResult>, WsError>> = patients
                    .par_iter()
                    .map(|p| set.evaluate_results(p, &shared, opts))
                    .collect();
                for (p, outcome) in patients.iter().zip(evaluated) {
                    let results = outcome.map_err(|e| {
                        WsError::new(
                            e.code,
                            format!(
                                "{} The counts would be incomplete, so nothing was written.",
                                e.message
                            ),
                        )
                    })?;
                    add_patient(&p.patient_id, &results)?;
                }
            }
        }
        if let Some(w) = csv.as_mut() {
            w.flush().map_err(|e| io_error(&dest, &e))?;
        }
        drop(csv);
        if in_any_ip.is_empty() {
            return Err(WsError::new(
                "no_data",
                format!(
                    "None of the {} patients is in the initial population of the chosen \
                     measure(s) for {year}: there is no data for that period, so nothing was \
                     written.",
                    ids.len()
                ),
            ));
        }
        let measure_names: Vec<String> = measures.iter().map(|m| m.def.name.clone()).collect();
        let mut ctx = ReportContext::new(set.period.clone(), now_rfc3339());
        ctx.improvement = self.improvement.clone();
        let mut patient_ids = Vec::new();
        match req.kind {
            ExportKind::Qrda3 => {
                let mut o = Qrda3Options::new(program_year.expect("checked above"));
                o.software_name = format!("PHM Workstation (ecqm {})", ecqm::VERSION);
                let w = staged.writer();
                ecqm::qrda3::write_qrda3(&mut *w, &aggregates, &set.period, &o)
                    .map_err(qrda_error)?;
                rows = aggregates.len() as u64;
            }
            ExportKind::MeasureReportSummary | ExportKind::MeasureReportSubjectList => {
                let entries: Vec<Json> = measures
                    .iter()
                    .zip(&summaries)
                    .map(|(m, sm)| {
                        let rep = sm.report(&m.def, &ctx);
                        json!({
                            "fullUrl": format!("urn:uuid:{}", uuid::Uuid::new_v4()),
                            "resource": rep,
                        })
                    })
                    .collect();
                rows = entries.len() as u64;
                let bundle = json!({
                    "resourceType": "Bundle",
                    "id": uuid::Uuid::new_v4().to_string(),
                    "type": "collection",
                    "timestamp": ctx.date,
                    "entry": entries,
                });
                let w = staged.writer();
                serde_json::to_writer_pretty(&mut *w, &bundle)
                    .map_err(|e| staged.write_error(&std::io::Error::other(e)))?;
                if keep_subjects {
                    patient_ids = in_any_ip.clone();
                }
            }
            ExportKind::CsvMeasureResults => {
                patient_ids = in_any_ip.clone();
            }
            ExportKind::CsvWorklist => unreachable!("handled above"),
        }
        let path = staged.path.display().to_string();
        let (bytes, sha256) = staged.commit()?;
        Ok(Written {
            result: ExportResult {
                kind: req.kind,
                path,
                bytes,
                sha256,
                measures: measure_names,
                patients: ids.len() as u64,
                rows,
                period_start: Some(period_start),
                period_end: Some(period_end),
                warnings,
                evaluated_now: !stored,
            },
            patient_ids,
        })
    }

    fn export_worklist(
        &self,
        s: &Session,
        req: &ExportRequest,
        mut staged: Staged,
    ) -> Result<Written, WsError> {
        let query = match req.saved_view.as_deref().map(str::trim) {
            Some(name) if !name.is_empty() => {
                let views = self.cache().saved_views(&s.username)?;
                let (_, q) = views.into_iter().find(|(n, _)| n == name).ok_or_else(|| {
                    WsError::new(
                        "not_found",
                        format!("You have no saved worklist view named {name:?}."),
                    )
                })?;
                serde_json::from_str::<crate::WorklistQuery>(&q)
                    .map_err(|_| WsError::invalid("The saved view could not be read."))?
            }
            _ => req.worklist.clone().unwrap_or_default(),
        };
        let mut q = crate::worklist::map_query(&query)?;
        q.offset = 0;
        q.limit = 1000;
        let dest = staged.path.clone();
        let mut w = csv::Writer::from_writer(staged.writer());
        write_csv_row(&mut w, &dest, &WORKLIST_COLUMNS)?;
        let mut rows = 0u64;
        let mut ids: Vec<String> = Vec::new();
        loop {
            let page = self.cache().worklist(&q, s.scope.as_deref())?;
            let n = page.rows.len() as u32;
            for r in page.rows {
                let opt = |o: &Option<String>| o.clone().unwrap_or_default();
                write_csv_row(
                    &mut w,
                    &dest,
                    &[
                        &r.patient_id,
                        &r.patient_name,
                        &opt(&r.birth_date),
                        &opt(&r.sex),
                        &opt(&r.provider_name),
                        &r.measure_id,
                        &r.measure,
                        &r.group_id,
                        &r.status,
                        &r.why_open,
                        &r.closes_with,
                        &r.due_date,
                        if r.overdue { "true" } else { "false" },
                        &r.open_gaps.to_string(),
                        &r.state,
                        &opt(&r.assignee),
                        &opt(&r.last_outreach),
                        &opt(&r.last_outreach_at),
                        &opt(&r.snoozed_until),
                        &opt(&r.visit_date),
                    ],
                )?;
                ids.push(r.patient_id);
                rows += 1;
            }
            q.offset += n;
            if n == 0 || u64::from(q.offset) >= page.total {
                break;
            }
        }
        w.flush().map_err(|e| io_error(&dest, &e))?;
        drop(w);
        if rows == 0 {
            return Err(WsError::new(
                "no_data",
                "The worklist view has no rows, so nothing was written.",
            ));
        }
        ids.sort();
        ids.dedup();
        let path = staged.path.display().to_string();
        let (bytes, sha256) = staged.commit()?;
        Ok(Written {
            result: ExportResult {
                kind: req.kind,
                path,
                bytes,
                sha256,
                measures: Vec::new(),
                patients: ids.len() as u64,
                rows,
                period_start: None,
                period_end: None,
                warnings: Vec::new(),
                evaluated_now: false,
            },
            patient_ids: ids,
        })
    }
}

fn qrda_error(e: ecqm::EcqmError) -> WsError {
    WsError::new(
        "export_qrda",
        format!("The QRDA III file could not be made: {e}. Nothing was written."),
    )
}

fn now_rfc3339() -> String {
    access::time::rfc3339_from_unix_ms(access::time::now_unix_ms())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_neutralized() {
        for bad in ["=1+1", "+1", "-2", "@SUM(A1)", "\tx", "\rx"] {
            assert_eq!(neutralize_cell(bad), format!("'{bad}"));
        }
        for ok in ["", "Smith, Ann", "2025-01-01", "1", "a=b"] {
            assert_eq!(neutralize_cell(ok), ok);
        }
    }

    #[test]
    fn destinations_are_checked() {
        assert_eq!(destination("").unwrap_err().code, "invalid");
        assert_eq!(destination("relative.csv").unwrap_err().code, "invalid");
        let dir = std::env::temp_dir();
        assert_eq!(
            destination(dir.to_str().unwrap()).unwrap_err().code,
            "invalid"
        );
        let missing = dir.join("no-such-folder-phm").join("x.csv");
        assert_eq!(
            destination(missing.to_str().unwrap()).unwrap_err().code,
            "export_io"
        );
    }
}
