//! Dashboards and reports (issue 14) on a generated demo panel in a real SQLCipher cache,
//! evaluated once (every patient × the 12 shipped measures), then as the quality analyst with
//! a purpose of use: the dashboard summary of all measures, one measure's detail (CMS122, no
//! stratifier; CMS130, stratified: its strata are computed by the engine at dashboard time),
//! the population page, and the QRDA III export of every measure (program year 2025) to a
//! temporary file. Each is timed over several runs (median, p95) with the first call apart.
//!
//! `cargo run --release -p workstation --example dashboard_bench -- PATIENTS [RUNS]`
//! (`RUNS` default 10 for the dashboard and population, a third of that, at least 3, for the
//! export).

mod common;

use std::time::Instant;

use common::{median, p95, Bench};
use workstation::{demo_passphrase, DashboardQuery, ExportKind, ExportRequest};

#[global_allocator]
static GLOBAL: allocator::MiMalloc = allocator::MiMalloc;

/// Times `f` once (the first call), then `runs` more times; prints and returns
/// `(first, median, p95)` in ms.
fn timed<T>(what: &str, runs: usize, mut f: impl FnMut() -> T) -> (f64, f64, f64) {
    let t = Instant::now();
    std::hint::black_box(f());
    let first = t.elapsed().as_secs_f64() * 1000.0;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        std::hint::black_box(f());
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let (m, p) = (median(times.clone()), p95(times));
    println!("{what}: first {first:.1} ms, median {m:.1} ms, p95 {p:.1} ms ({runs} runs)");
    (first, m, p)
}

fn main() {
    allocator::tune();
    let bench = Bench::from_args(50_000);
    let runs: usize = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let ws = &bench.ws;
    let t = Instant::now();
    let s = ws.evaluate_panel(&|_| {}).unwrap();
    println!(
        "evaluation: {:.1} s, {} evaluated, {} failed, period {:?} to {:?}",
        t.elapsed().as_secs_f64(),
        s.evaluated,
        s.failed,
        s.period_start,
        s.period_end
    );
    println!(
        "result rows stored: {}",
        bench.open_cache().measure_results().unwrap().len()
    );

    ws.login("quality", &demo_passphrase("quality")).unwrap();
    ws.set_purpose("TREAT").unwrap();

    let summary = ws.dashboard(&DashboardQuery::default()).unwrap();
    println!(
        "summary: {} patients in scope, {} measure groups, {} open gaps, chart {} bytes",
        summary.patients_in_scope,
        summary.measures.len(),
        summary.total_open_gaps,
        summary.chart.svg.len()
    );
    timed("dashboard summary (all measures)", runs, || {
        ws.dashboard(&DashboardQuery::default()).unwrap()
    });
    for (m, note) in [("CMS122", "no stratifier"), ("CMS130", "stratified")] {
        let id = summary
            .measures
            .iter()
            .find(|r| r.short_name.starts_with(m))
            .unwrap_or_else(|| panic!("{m} on the dashboard"))
            .measure_id
            .clone();
        let q = DashboardQuery {
            measure: Some(id.clone()),
        };
        let d = ws.dashboard(&q).unwrap();
        let detail = d.detail.as_ref().unwrap();
        let svg: usize = detail
            .charts
            .iter()
            .chain(&detail.strata_charts)
            .map(|c| c.svg.len())
            .sum::<usize>()
            + d.chart.svg.len();
        println!(
            "{m} ({id}, {note}): {} groups, {} provider rows, {} care-team rows, {} strata, {} \
             charts, {svg} bytes of SVG",
            detail.groups.len(),
            detail.by_provider.len(),
            detail.by_care_team.len(),
            detail.strata.len(),
            1 + detail.charts.len() + detail.strata_charts.len()
        );
        timed(
            &format!("dashboard with {m}'s detail (summary + detail + SVG)"),
            runs,
            || ws.dashboard(&q).unwrap(),
        );
    }

    // Where the time goes: what the summary and a detail read from the cache (a second
    // connection, no role check or audit).
    let c = bench.open_cache();
    timed(
        "  cache: result_tallies (every row, summed by the database)",
        runs,
        || c.result_tallies(None).unwrap(),
    );
    let cms122 = summary
        .measures
        .iter()
        .find(|r| r.short_name.starts_with("CMS122"))
        .unwrap()
        .measure_id
        .clone();
    timed(
        "  cache: result_rows of CMS122 (one measure's rows)",
        runs,
        || c.result_rows(Some(&cms122)).unwrap(),
    );
    timed(
        "  cache: patient_providers + group_memberships (detail slices)",
        runs,
        || {
            (
                c.patient_providers().unwrap(),
                c.group_memberships().unwrap(),
            )
        },
    );
    timed(
        "  cache: result_tallies_on the last day of last month (the change column)",
        runs,
        || c.result_tallies_on("2026-11-30", None).unwrap(),
    );
    timed(
        "  cache: population_patients + visit_dates (population page)",
        runs,
        || (c.population_patients().unwrap(), c.visit_dates().unwrap()),
    );
    drop(c);

    let pop = ws.population().unwrap();
    println!(
        "population: {} patients, {} sections",
        pop.patients_in_scope,
        pop.sections.len()
    );
    timed("population page", runs, || ws.population().unwrap());

    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("qrda3-2025.xml");
    let req = ExportRequest {
        kind: ExportKind::Qrda3,
        program_year: Some(2025),
        path: path.display().to_string(),
        ..Default::default()
    };
    let export_runs = (runs / 3).max(3);
    let mut last = None;
    timed("QRDA III export, all measures, 2025", export_runs, || {
        last = Some(ws.export(&req).unwrap());
    });
    let r = last.unwrap();
    println!(
        "QRDA III: {} measures, {} patients, {} bytes, sha256 {}, evaluated now: {}",
        r.measures.len(),
        r.patients,
        r.bytes,
        r.sha256,
        r.evaluated_now
    );
}
