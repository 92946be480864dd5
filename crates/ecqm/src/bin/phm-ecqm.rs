//! phm-ecqm: evaluate eCQMs over patients.
//!
//! ```text
//! phm-ecqm eval --measure BUNDLE.json|DIR --patients DIR|FILE.ndjson|FILE.json
//!     [--period-start D --period-end D] --out results.jsonl
//!     [--report summary|subject-list|individual|gaps|worklist --report-out FILE]
//!     [--threads N] [--sde] [--stratifiers] [--improvement-notation [MEASURE=]increase|decrease ...]
//!     [--as-of YYYY-MM-DD] [--batch N] [--group-memory MB] [--quiet]
//! phm-ecqm eval --measure DIR --patients DIR --report qrda3 --program-year 2025|2026 --out FILE.xml
//!     [--period-start D --period-end D] [--cms-program NAME] [--tin N] [--npi N]
//!     [--org-name TEXT] [--cehrt-id ID]
//! phm-ecqm compact --measure DIR --out FILE.json.gz
//! ```
//! `compact` writes the packages' compact form (see `ecqm::compact`), which the workstation
//! ships. `--report qrda3` writes one QRDA Category III document covering every measure
//! (see `ecqm::qrda3`), atomically; with `--report-out FILE` the QRDA goes there and `--out`
//! keeps the results JSONL, otherwise `--out` is the QRDA file. Exit status: 0 ok, 2 usage or input error, 3 when some patient
//! evaluations failed (their result lines are missing; the rest is written).

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ecqm::engine::{evaluate_batch, MeasurePackage, PreparedMeasure};
use ecqm::patients::{PatientItem, PatientSource, ReadOptions};
use ecqm::period::{now_utc, Period};
use ecqm::report::{gap_rows, gaps_bundle, individual_report, safe_id, ReportContext, Summary};
use ecqm::{EcqmError, EvalOptions, ImprovementOverrides};
use serde_json::{json, Value as Json};

// The engine allocates many small values; mimalloc is markedly faster than
// glibc malloc here, and scales across threads.
#[global_allocator]
static GLOBAL: ecqm::allocator::MiMalloc = ecqm::allocator::MiMalloc;

const USAGE: &str = "usage: phm-ecqm eval --measure BUNDLE.json|DIR --patients DIR|FILE \
[--period-start YYYY-MM-DD --period-end YYYY-MM-DD] --out results.jsonl \
[--report summary|subject-list|individual|gaps|worklist --report-out FILE] [--threads N] [--sde] \
[--report qrda3 --program-year 2025|2026 [--report-out FILE] [--cms-program NAME] [--tin N] [--npi N] \
[--org-name TEXT] [--cehrt-id ID]] [--stratifiers] [--improvement-notation [MEASURE=]increase|decrease ...] [--as-of YYYY-MM-DD] [--batch N] [--group-memory MB] [--single-pass] [--quiet]";

#[derive(Clone, Copy, PartialEq, Eq)]
enum ReportKind {
    Summary,
    SubjectList,
    Individual,
    Gaps,
    Worklist,
    Qrda3,
}

struct Args {
    measure: PathBuf,
    patients: PathBuf,
    period: Option<(String, String)>,
    /// the results JSONL (`None` when `--out` is the QRDA file)
    out: Option<PathBuf>,
    report: Option<(ReportKind, PathBuf)>,
    qrda: Option<ecqm::qrda3::Qrda3Options>,
    threads: Option<usize>,
    opts: EvalOptions,
    improvement: ImprovementOverrides,
    as_of: Option<String>,
    batch: usize,
    /// NDJSON larger than this is grouped through on-disk buckets of about this size
    group_memory: u64,
    quiet: bool,
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    match it.next().as_deref() {
        Some("eval") => {}
        Some("-h") | Some("--help") | None => return Err(String::new()),
        Some(other) => return Err(format!("unknown command {other:?}")),
    }
    let (mut measure, mut patients, mut out) = (None, None, None);
    let (mut ps, mut pe, mut report, mut report_out) = (None, None, None, None);
    let mut program_year: Option<String> = None;
    let mut qrda_settings: Vec<(&str, String)> = Vec::new();
    let mut a = Args {
        measure: PathBuf::new(),
        patients: PathBuf::new(),
        period: None,
        out: None,
        report: None,
        qrda: None,
        threads: None,
        opts: EvalOptions::default(),
        improvement: ImprovementOverrides::default(),
        as_of: None,
        batch: 256,
        group_memory: ReadOptions::default().max_in_memory_bytes,
        quiet: false,
    };
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--measure" => measure = Some(PathBuf::from(val()?)),
            "--patients" => patients = Some(PathBuf::from(val()?)),
            "--out" => out = Some(PathBuf::from(val()?)),
            "--period-start" => ps = Some(val()?),
            "--period-end" => pe = Some(val()?),
            "--report" => {
                report = Some(match val()?.as_str() {
                    "summary" => ReportKind::Summary,
                    "subject-list" => ReportKind::SubjectList,
                    "individual" => ReportKind::Individual,
                    "gaps" => ReportKind::Gaps,
                    "worklist" => ReportKind::Worklist,
                    "qrda3" => ReportKind::Qrda3,
                    o => return Err(format!("unknown report kind {o:?}")),
                })
            }
            "--report-out" => report_out = Some(PathBuf::from(val()?)),
            "--threads" => {
                a.threads = Some(val()?.parse().map_err(|_| "--threads needs a number")?)
            }
            "--batch" => a.batch = val()?.parse().map_err(|_| "--batch needs a number")?,
            "--group-memory" => {
                let mb: u64 = val()?
                    .parse()
                    .map_err(|_| "--group-memory needs a number of MB")?;
                a.group_memory = mb.max(1) << 20;
            }
            "--sde" => a.opts.supplemental_data = true,
            "--stratifiers" => a.opts.stratifiers = true,
            "--single-pass" => a.opts.single_pass = true,
            "--improvement-notation" => {
                // `increase` or `MEASURE=increase` (name, id or CMS id); repeatable, or comma-separated
                let v = val()?;
                a.improvement
                    .push_arg(&v)
                    .map_err(|e| format!("--improvement-notation: {e}"))?;
            }
            "--as-of" => a.as_of = Some(val()?),
            "--program-year" => program_year = Some(val()?),
            "--cms-program" => qrda_settings.push(("program", val()?)),
            "--tin" => qrda_settings.push(("tin", val()?)),
            "--npi" => qrda_settings.push(("npi", val()?)),
            "--org-name" => qrda_settings.push(("org", val()?)),
            "--cehrt-id" => qrda_settings.push(("cehrt", val()?)),
            "--quiet" => a.quiet = true,
            o => return Err(format!("unknown option {o:?}")),
        }
    }
    a.measure = measure.ok_or("--measure is required")?;
    a.patients = patients.ok_or("--patients is required")?;
    let out: PathBuf = out.ok_or("--out is required")?;
    a.period = match (ps, pe) {
        (Some(s), Some(e)) => Some((s, e)),
        (None, None) => None,
        _ => return Err("give both --period-start and --period-end, or neither".into()),
    };
    if report == Some(ReportKind::Qrda3) {
        let year = program_year
            .ok_or("--report qrda3 needs --program-year 2025|2026")
            .and_then(|y| {
                ecqm::qrda3::ProgramYear::parse(&y).map_err(|_| "--program-year: 2025 or 2026")
            })?;
        let mut o = ecqm::qrda3::Qrda3Options::new(year);
        for (k, v) in qrda_settings {
            match k {
                "program" => o.program = v,
                "tin" => o.tin = v,
                "npi" => o.npi = v,
                "org" => o.organization_name = v,
                _ => o.cehrt_id = v,
            }
        }
        o.validate().map_err(|e| e.to_string())?;
        a.qrda = Some(o);
        // `--out` is the QRDA file unless `--report-out` names it
        match report_out {
            Some(p) => {
                a.out = Some(out);
                a.report = Some((ReportKind::Qrda3, p));
            }
            None => a.report = Some((ReportKind::Qrda3, out)),
        }
        a.opts.stratifiers = true;
        a.opts.supplemental_data = true;
        return Ok(a);
    }
    if program_year.is_some() || !qrda_settings.is_empty() {
        return Err("--program-year, --cms-program, --tin, --npi, --org-name and --cehrt-id go with --report qrda3".into());
    }
    a.out = Some(out);
    a.report = match (report, report_out) {
        (Some(k), Some(p)) => Some((k, p)),
        (None, None) => None,
        _ => return Err("--report and --report-out go together".into()),
    };
    if matches!(
        a.report,
        Some((ReportKind::Individual | ReportKind::Gaps, _))
    ) {
        // individual reports and gaps show stratifiers and SDEs too
        a.opts.stratifiers = true;
        a.opts.supplemental_data = true;
    }
    if matches!(
        a.report,
        Some((ReportKind::Summary | ReportKind::SubjectList, _))
    ) {
        a.opts.stratifiers = true;
    }
    Ok(a)
}

/// `phm-ecqm compact --measure DIR --out FILE`: the bundles' compact, gzipped form.
fn compact_command(mut it: impl Iterator<Item = String>) -> Result<(), String> {
    let (mut measure, mut out) = (None, None);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--measure" => measure = Some(PathBuf::from(value()?)),
            "--out" => out = Some(PathBuf::from(value()?)),
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    let (Some(measure), Some(out)) = (measure, out) else {
        return Err("usage: phm-ecqm compact --measure DIR --out FILE.json.gz".into());
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&measure)
        .map_err(|e| format!("{}: {e}", measure.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("json"))
        .collect();
    files.sort();
    let bundles = files
        .iter()
        .map(|f| {
            let bytes = std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?;
            serde_json::from_slice(&bytes).map_err(|e| format!("{}: not JSON ({e})", f.display()))
        })
        .collect::<Result<Vec<Json>, String>>()?;
    let gz = ecqm::compact::compact(&bundles)
        .and_then(|c| ecqm::compact::to_gzip(&c))
        .map_err(|e| e.to_string())?;
    std::fs::write(&out, &gz).map_err(|e| format!("{}: {e}", out.display()))?;
    eprintln!(
        "phm-ecqm: {} measures, {} bytes -> {}",
        bundles.len(),
        gz.len(),
        out.display()
    );
    Ok(())
}

fn main() -> ExitCode {
    ecqm::allocator::tune();
    if std::env::args().nth(1).as_deref() == Some("compact") {
        return match compact_command(std::env::args().skip(2)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("phm-ecqm: {e}");
                ExitCode::from(2)
            }
        };
    }
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("phm-ecqm: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(3),
        Err(e) => {
            eprintln!("phm-ecqm: {e}");
            ExitCode::from(2)
        }
    }
}

fn create(path: &std::path::Path) -> Result<BufWriter<std::fs::File>, EcqmError> {
    std::fs::File::create(path)
        .map(|f| BufWriter::with_capacity(1 << 20, f))
        .map_err(|e| EcqmError::Io {
            path: path.display().to_string(),
            source: e,
        })
}

fn io_err(path: &std::path::Path) -> impl Fn(std::io::Error) -> EcqmError + '_ {
    move |e| EcqmError::Io {
        path: path.display().to_string(),
        source: e,
    }
}

/// Returns the number of failed patient evaluations.
fn run(a: &Args) -> Result<u64, EcqmError> {
    if let Some(n) = a.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build_global()
            .map_err(|e| EcqmError::Argument(format!("--threads: {e}")))?;
    }
    let t0 = Instant::now();
    let packages = MeasurePackage::load_all(&a.measure)?;
    let mut measures: Vec<PreparedMeasure> = Vec::with_capacity(packages.len());
    for p in &packages {
        let d = &p.def;
        let overridden = a.improvement.override_for(d).is_some();
        let shown: Vec<&String> = d
            .warnings
            .iter()
            .filter(|w| !(overridden && w.contains("improvementNotation")))
            .collect();
        if let Some(first) = shown.first() {
            let more = if shown.len() > 1 {
                format!(" (and {} similar)", shown.len() - 1)
            } else {
                String::new()
            };
            eprintln!("phm-ecqm: warning: {first}{more}");
        }
        let period = match &a.period {
            Some((s, e)) => Period::new(s, e)?,
            None => p.default_period()?,
        };
        measures.push(p.prepare(&period)?);
    }
    drop(packages);
    // QRDA III: the CMS supplemental data, one aggregate per measure, one period for the
    // document, and a writable destination, all checked before any patient is read.
    let mut aggregates: Vec<ecqm::qrda3::MeasureAggregate> = Vec::new();
    if let (Some(o), Some((_, path))) = (&a.qrda, &a.report) {
        for m in measures.iter_mut() {
            ecqm::qrda3::ensure_cms_sde(m)?;
            aggregates.push(ecqm::qrda3::MeasureAggregate::new(&m.def, o.year)?);
        }
        if let Some(m) = measures.iter().find(|m| m.period != measures[0].period) {
            return Err(EcqmError::Argument(format!(
                "measures {} and {} have different measurement periods; one QRDA III document \
                 reports one period (give --period-start and --period-end)",
                measures[0].def.name, m.def.name
            )));
        }
        let year = measures[0].period.start_date()[..4].to_string();
        if year != o.year.to_string() && !a.quiet {
            eprintln!(
                "phm-ecqm: warning: the measurement period starts in {year} but the QRDA III \
                 follows the CMS {} program year",
                o.year
            );
        }
        ecqm::qrda3::check_writable(path)?;
    }
    if !a.quiet {
        eprintln!(
            "phm-ecqm: {} measure(s) loaded and prepared in {:.1}s",
            measures.len(),
            t0.elapsed().as_secs_f64()
        );
    }
    let ctx_for = |m: &PreparedMeasure| {
        let mut c = ReportContext::new(m.period.clone(), now_utc());
        c.improvement = a.improvement.clone();
        c
    };
    let as_of = a
        .as_of
        .clone()
        .unwrap_or_else(|| now_utc()[..10].to_string());

    let source = PatientSource::open(&a.patients)?;
    let mut out = match &a.out {
        Some(p) => Some(create(p)?),
        None => None,
    };
    let mut report_out = match &a.report {
        Some((ReportKind::Qrda3, _)) | None => None,
        Some((_, p)) => Some(create(p)?),
    };
    let keep_subjects = matches!(a.report, Some((ReportKind::SubjectList, _)));
    let mut summaries: Vec<Summary> = measures
        .iter()
        .map(|m| Summary::new(&m.def, keep_subjects))
        .collect();

    let failed = AtomicU64::new(0);
    let mut patients = 0u64;
    let mut evaluations = 0u64;
    let t1 = Instant::now();
    let mut last = Instant::now();
    let mut first_batch = true;
    let opts = a.opts;
    let gaps = matches!(a.report, Some((ReportKind::Gaps, _)));

    let stats = source.for_each_batch(
        &ReadOptions {
            batch_size: a.batch,
            max_in_memory_bytes: a.group_memory,
        },
        |batch: Vec<PatientItem>| {
            if first_batch && !a.quiet && matches!(source, PatientSource::Ndjson(_)) {
                first_batch = false;
                eprintln!(
                    "phm-ecqm: NDJSON grouped by patient; first batch ready after {:.1}s",
                    t1.elapsed().as_secs_f64()
                );
            }
            // Per patient: load once, evaluate every measure.
            let outcomes = evaluate_batch(&measures, &batch, opts, gaps);
            let mut per_patient = Vec::with_capacity(outcomes.len());
            for o in outcomes {
                match o.results {
                    Err(e) => {
                        failed.fetch_add(measures.len() as u64, Ordering::Relaxed);
                        eprintln!("phm-ecqm: {}: {e}", o.label);
                    }
                    Ok(rs) => {
                        let mut results = Vec::with_capacity(rs.len());
                        for (r, m) in rs.into_iter().zip(&measures) {
                            match r {
                                Ok(r) => results.push(r),
                                Err(e) => {
                                    failed.fetch_add(1, Ordering::Relaxed);
                                    eprintln!("phm-ecqm: {} / {}: {e}", o.label, m.def.name);
                                }
                            }
                        }
                        per_patient.push((o.patient, results));
                    }
                }
            }
            for (patient, results) in per_patient {
                patients += 1;
                for r in &results {
                    evaluations += 1;
                    if let (Some(out), Some(path)) = (out.as_mut(), a.out.as_ref()) {
                        serde_json::to_writer(&mut *out, r)
                            .map_err(|e| EcqmError::Patients(format!("writing results: {e}")))?;
                        out.write_all(b"\n").map_err(io_err(path))?;
                    }
                    if let Some(mi) = measures.iter().position(|m| m.def.name == r.measure) {
                        summaries[mi].add(r);
                        if let Some(agg) = aggregates.get_mut(mi) {
                            agg.add(r);
                        }
                        if let (Some(ReportKind::Worklist), Some(w)) =
                            (a.report.as_ref().map(|r| r.0), report_out.as_mut())
                        {
                            for row in gap_rows(&measures[mi].def, r, &ctx_for(&measures[mi]), &as_of) {
                                write_line(w, &row, a)?;
                            }
                        }
                        if let (Some(ReportKind::Individual), Some(w)) =
                            (a.report.as_ref().map(|r| r.0), report_out.as_mut())
                        {
                            let rep = individual_report(&measures[mi].def, r, &ctx_for(&measures[mi]));
                            write_line(w, &rep, a)?;
                        }
                    }
                }
                if gaps {
                    if let (Some(w), Some(first)) = (report_out.as_mut(), results.first()) {
                        let pairs: Vec<_> = results
                            .iter()
                            .filter_map(|r| {
                                let m = measures.iter().find(|m| m.def.name == r.measure)?;
                                Some((&m.def, r))
                            })
                            .collect();
                        let in_any_ip = results.iter().any(|r| {
                            r.groups.iter().any(|g| g.populations.is(ecqm::PopulationCode::InitialPopulation))
                        });
                        if in_any_ip {
                            let b = gaps_bundle(
                                &first.patient_id,
                                patient.as_ref(),
                                &pairs,
                                &ctx_for(&measures[0]),
                                &as_of,
                            );
                            write_line(w, &b, a)?;
                        }
                    }
                }
            }
            if !a.quiet && last.elapsed() >= Duration::from_secs(2) {
                last = Instant::now();
                let secs = t1.elapsed().as_secs_f64();
                eprintln!(
                    "phm-ecqm: {patients} patients, {evaluations} patient-measure evaluations, {:.0}/s, {} failed",
                    evaluations as f64 / secs.max(1e-9),
                    failed.load(Ordering::Relaxed)
                );
            }
            Ok(())
        },
    )?;
    if let (Some(out), Some(path)) = (out.as_mut(), a.out.as_ref()) {
        out.flush().map_err(io_err(path))?;
    }
    if let (Some(o), Some((_, path))) = (&a.qrda, &a.report) {
        let failed = failed.load(Ordering::Relaxed);
        if failed > 0 {
            return Err(EcqmError::Patients(format!(
                "{failed} patient evaluation(s) failed; the counts would be incomplete, so no QRDA III file was written"
            )));
        }
        if patients == 0 {
            return Err(EcqmError::Patients(format!(
                "{}: no patients; no QRDA III file was written",
                a.patients.display()
            )));
        }
        let bytes = ecqm::qrda3::write_qrda3_file(path, &aggregates, &measures[0].period, o)?;
        if !a.quiet {
            eprintln!(
                "phm-ecqm: QRDA III ({} program year, {} measure(s)) -> {} ({bytes} bytes)",
                o.year,
                aggregates.len(),
                path.display()
            );
        }
    }

    if let (Some((kind, path)), Some(w)) = (&a.report, report_out.as_mut()) {
        if matches!(kind, ReportKind::Summary | ReportKind::SubjectList) {
            let reports: Vec<Json> = measures
                .iter()
                .zip(&summaries)
                .map(|(m, s)| json!({"resource": s.report(&m.def, &ctx_for(m))}))
                .collect();
            let bundle = json!({
                "resourceType": "Bundle",
                "id": safe_id(&["reports", &now_utc()]),
                "type": "collection",
                "timestamp": now_utc(),
                "entry": reports,
            });
            serde_json::to_writer_pretty(&mut *w, &bundle)
                .map_err(|e| EcqmError::Patients(format!("writing report: {e}")))?;
            w.write_all(b"\n").map_err(io_err(path))?;
        }
        w.flush().map_err(io_err(path))?;
    }

    let secs = t1.elapsed().as_secs_f64();
    let failed = failed.load(Ordering::Relaxed);
    if !a.quiet {
        eprintln!(
            "phm-ecqm: done: {patients} patients, {evaluations} patient-measure evaluations in {secs:.2}s ({:.0}/s), {failed} failed; {} NDJSON lines, {} unattached resources skipped, {} malformed lines skipped",
            evaluations as f64 / secs.max(1e-9),
            stats.lines,
            stats.unattached,
            stats.malformed
        );
        for (m, s) in measures.iter().zip(&summaries) {
            let g = &m.def.groups[0];
            if let Some(c) = s.counts(&g.id) {
                let counts: Vec<String> =
                    c.0.iter()
                        .map(|(code, n)| format!("{}={n}", code.code()))
                        .collect();
                eprintln!(
                    "phm-ecqm:   {} [{}]: {}",
                    m.def.name,
                    g.id,
                    counts.join(" ")
                );
            }
        }
    }
    Ok(failed)
}

fn write_line(w: &mut impl Write, v: &Json, a: &Args) -> Result<(), EcqmError> {
    let path = a.report.as_ref().map(|r| r.1.clone()).unwrap_or_default();
    serde_json::to_writer(&mut *w, v)
        .map_err(|e| EcqmError::Patients(format!("writing report: {e}")))?;
    w.write_all(b"\n").map_err(io_err(&path))
}
