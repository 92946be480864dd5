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

use clap::error::ErrorKind;
use clap::{ArgAction, CommandFactory, Parser, Subcommand, ValueEnum};
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
static GLOBAL: allocator::MiMalloc = allocator::MiMalloc;

/// Evaluate eCQMs (CMS measure packages, ELM JSON) over patients.
///
/// Exit status: 0 ok, 2 usage or input error, 3 when some patient evaluations failed
/// (their result lines are missing; the rest is written).
#[derive(Parser)]
#[command(
    name = "phm-ecqm",
    subcommand_required = true,
    disable_help_subcommand = true,
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Evaluate measures over patients: results JSONL, reports, or one QRDA III document.
    Eval(Box<EvalCli>),
    /// Write the measure bundles' compact, gzipped form (what the workstation ships).
    Compact(CompactCli),
}

#[derive(clap::Args)]
#[command(args_override_self = true)]
struct EvalCli {
    /// Measure bundle (JSON) or a directory of them.
    #[arg(long, value_name = "BUNDLE.json|DIR")]
    measure: PathBuf,
    /// Patients: a directory, one Bundle file, or NDJSON.
    #[arg(long, value_name = "DIR|FILE.ndjson|FILE.json")]
    patients: PathBuf,
    /// Measurement period start (with --period-end; default: each measure's own period).
    #[arg(long, value_name = "YYYY-MM-DD")]
    period_start: Option<String>,
    /// Measurement period end (with --period-start).
    #[arg(long, value_name = "YYYY-MM-DD")]
    period_end: Option<String>,
    /// Results JSONL (with --report qrda3 and no --report-out: the QRDA III file).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Report to write (to --report-out; qrda3 to --out unless --report-out is given).
    #[arg(long, value_name = "KIND")]
    report: Option<ReportKind>,
    /// Where the report goes.
    #[arg(long, value_name = "FILE")]
    report_out: Option<PathBuf>,
    /// Worker threads (default: all cores).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Evaluate supplemental data elements.
    #[arg(long)]
    sde: bool,
    /// Evaluate stratifiers.
    #[arg(long)]
    stratifiers: bool,
    /// Evaluate each patient in one pass over all measures' expressions.
    #[arg(long)]
    single_pass: bool,
    /// `increase`, `decrease` or `MEASURE=increase|decrease` (name, id or CMS id);
    /// repeatable, or comma-separated.
    #[arg(long, value_name = "[MEASURE=]increase|decrease", action = ArgAction::Append)]
    improvement_notation: Vec<String>,
    /// Date the gaps and worklist are computed for (default: today, UTC).
    #[arg(long, value_name = "YYYY-MM-DD")]
    as_of: Option<String>,
    /// Patients per batch.
    #[arg(long, value_name = "N", default_value_t = 256)]
    batch: usize,
    /// NDJSON grouping threshold and spill-bucket size in MB (default 1024).
    #[arg(long, value_name = "MB")]
    group_memory: Option<u64>,
    #[command(flatten)]
    submitter: ecqm::qrda3::SubmitterArgs,
    /// No progress or summary on stderr.
    #[arg(long)]
    quiet: bool,
}

#[derive(clap::Args)]
#[command(args_override_self = true)]
struct CompactCli {
    /// Directory of measure bundles (*.json).
    #[arg(long, value_name = "DIR")]
    measure: PathBuf,
    /// Output file.
    #[arg(long, value_name = "FILE.json.gz")]
    out: PathBuf,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
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

/// The checks clap cannot express (pairs of flags, the QRDA settings) and the options
/// each report implies.
fn eval_args(cli: EvalCli) -> Result<Args, String> {
    let EvalCli {
        measure,
        patients,
        period_start: ps,
        period_end: pe,
        out,
        report,
        report_out,
        threads,
        sde,
        stratifiers,
        single_pass,
        improvement_notation,
        as_of,
        batch,
        group_memory,
        submitter,
        quiet,
    } = cli;
    let mut improvement = ImprovementOverrides::default();
    for v in &improvement_notation {
        // `increase` or `MEASURE=increase` (name, id or CMS id); repeatable, or comma-separated
        improvement
            .push_arg(v)
            .map_err(|e| format!("--improvement-notation: {e}"))?;
    }
    let mut a = Args {
        measure,
        patients,
        period: None,
        out: None,
        report: None,
        qrda: None,
        threads,
        opts: EvalOptions {
            supplemental_data: sde,
            stratifiers,
            single_pass,
        },
        improvement,
        as_of,
        batch,
        group_memory: group_memory.map_or(ReadOptions::default().max_in_memory_bytes, |mb| {
            mb.max(1) << 20
        }),
        quiet,
    };
    a.period = match (ps, pe) {
        (Some(s), Some(e)) => Some((s, e)),
        (None, None) => None,
        _ => return Err("give both --period-start and --period-end, or neither".into()),
    };
    if report == Some(ReportKind::Qrda3) {
        a.qrda = Some(submitter.options("--report qrda3", None)?);
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
    if submitter.first_given().is_some() {
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
fn compact_command(CompactCli { measure, out }: CompactCli) -> Result<(), String> {
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
    allocator::tune();
    let eval = match Cli::parse().command {
        Command::Compact(c) => {
            return match compact_command(c) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("phm-ecqm: {e}");
                    ExitCode::from(2)
                }
            };
        }
        Command::Eval(e) => *e,
    };
    let args = match eval_args(eval) {
        Ok(a) => a,
        // clap's error style and exit code 2, with `phm-ecqm eval`'s usage
        Err(e) => {
            let mut cmd = Cli::command();
            cmd.build();
            let eval = cmd.find_subcommand_mut("eval").expect("eval subcommand");
            eval.error(ErrorKind::ArgumentConflict, e).exit()
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
    // One evaluation request for the whole run: Now() is the same for every patient.
    let request = cql::EvalContext::from_clock();

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
            let outcomes = evaluate_batch(&measures, &batch, opts, gaps, request);
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
