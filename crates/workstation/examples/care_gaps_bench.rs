//! Care-gap benchmark on a generated demo panel in a real SQLCipher cache:
//! first local evaluation (every patient × the 12 shipped measures, with evidence), a second run
//! with nothing changed, worklist queries (filter + sort + page) and one patient's re-evaluation
//! after closure evidence.
//!
//! `cargo run --release -p workstation --example care_gaps_bench -- PATIENTS`
//! (`PHM_BENCH_PERIOD=current`: the current year's period, where open gaps are prospective;
//! `PHM_EVAL_TIMING=1`: the evaluation's read / evaluate / write phases).

mod common;

use std::time::Instant;

use common::{p95, Bench};
use workstation::{demo_passphrase, WorklistQuery, WorklistSortKey};

#[global_allocator]
static GLOBAL: allocator::MiMalloc = allocator::MiMalloc;

fn main() {
    allocator::tune();
    let bench = Bench::from_args(5_000);
    let (patients, config, ws) = (bench.patients, &bench.config, &bench.ws);

    // PHM_BENCH_PERIOD=current: this calendar year, where open gaps are prospective.
    if let Ok(choice) = std::env::var("PHM_BENCH_PERIOD") {
        ws.login("caremanager", &demo_passphrase("caremanager"))
            .unwrap();
        ws.set_purpose("TREAT").unwrap();
        ws.set_measurement_period(&choice).unwrap();
        ws.logout();
    }
    let t = Instant::now();
    let s = ws.evaluate_panel(&|_| {}).unwrap();
    let first = t.elapsed().as_secs_f64();
    println!(
        "first evaluation: {first:.1} s ({:.0} patients/s), {} evaluated, {} failed",
        patients as f64 / first,
        s.evaluated,
        s.failed
    );
    println!(
        "period {:?} to {:?}, over: {}",
        s.period_start, s.period_end, s.period_over
    );
    let t = Instant::now();
    let s = ws.evaluate_panel(&|_| {}).unwrap();
    println!(
        "nothing changed: {:.2} s, {} evaluated",
        t.elapsed().as_secs_f64(),
        s.evaluated
    );

    ws.login("caremanager", &demo_passphrase("caremanager"))
        .unwrap();
    ws.set_purpose("TREAT").unwrap();
    let own = ws.worklist(&WorklistQuery::default()).unwrap().total;
    println!("the demo care manager's own panels: {own} open gaps");
    ws.logout();
    // A care manager over every panel: the whole worklist.
    let second = bench.open_cache();
    let groups: Vec<String> = second.groups().unwrap().into_iter().map(|g| g.id).collect();
    second
        .set_account_links("caremanager", None, &groups)
        .unwrap();
    drop(second);
    ws.login("caremanager", &demo_passphrase("caremanager"))
        .unwrap();
    ws.set_purpose("TREAT").unwrap();
    let facets = ws.worklist_facets().unwrap();
    let total = ws.worklist(&WorklistQuery::default()).unwrap().total;
    let stored: u64 = bench
        .open_cache()
        .gap_counts()
        .unwrap()
        .iter()
        .filter(|g| g.2 != "closed")
        .map(|g| g.3)
        .sum();
    println!("open gaps stored: {stored}");
    let results = bench.open_cache().measure_results().unwrap().len();
    println!("result rows stored: {results}");
    println!("care manager's open gaps: {total}");
    let sorts = [
        WorklistSortKey::Priority,
        WorklistSortKey::Patient,
        WorklistSortKey::Measure,
        WorklistSortKey::LastOutreach,
    ];
    let mut times = Vec::new();
    for i in 0..200 {
        let q = WorklistQuery {
            measure: (i % 3 == 0).then(|| facets.measures[i % facets.measures.len()].id.clone()),
            sort: sorts[i % sorts.len()],
            descending: i % 2 == 0,
            offset: ((i * 37) % 5) as u32 * 100,
            ..Default::default()
        };
        let t = Instant::now();
        ws.worklist(&q).unwrap();
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    println!(
        "worklist query (command: role, panel, audit) p95: {:.1} ms over {} gaps",
        p95(times),
        total
    );
    // The same queries on the cache alone (no role check, no audit record).
    let direct = bench.open_cache();
    let t = Instant::now();
    direct
        .worklist(&cache::WorklistQuery::default(), None)
        .unwrap();
    println!(
        "first worklist query on a newly opened cache (loads the worklist into memory): {:.0} ms",
        t.elapsed().as_secs_f64() * 1000.0
    );
    let mut times = Vec::new();
    for i in 0..200 {
        let q = cache::WorklistQuery {
            measure: (i % 3 == 0).then(|| facets.measures[i % facets.measures.len()].id.clone()),
            offset: ((i * 37) % 5) as u32 * 100,
            ..Default::default()
        };
        let t = Instant::now();
        direct.worklist(&q, None).unwrap();
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    println!("worklist query (cache only) p95: {:.1} ms", p95(times));
    drop(direct);

    // One patient's re-evaluation on its own: read the patient's resources from the cache,
    // run every measure with evidence, store results and gaps (one transaction).
    let year: i32 = s
        .period_start
        .as_deref()
        .and_then(|d| d.get(..4))
        .and_then(|y| y.parse().ok())
        .unwrap();
    let t = Instant::now();
    let packages = workstation::evaluation::shipped_packages().unwrap();
    let today = access::time::rfc3339_from_unix_ms(access::time::now_unix_ms());
    let set = workstation::evaluation::MeasureSet::prepare(
        &packages,
        year,
        &today[..10],
        &config.improvement,
    )
    .unwrap();
    println!(
        "measure packages loaded and prepared: {:.0} ms",
        t.elapsed().as_secs_f64() * 1000.0
    );
    let direct = bench.open_cache();
    let ids = direct.patient_ids().unwrap();
    let shared: std::collections::HashMap<String, cql::fhir::J> = direct
        .shared_resources()
        .unwrap()
        .into_iter()
        .map(|(t, id, raw)| (format!("{t}/{id}"), serde_json::from_str(&raw).unwrap()))
        .collect();
    let (mut read, mut eval, mut write, mut whole) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for id in ids.iter().step_by((ids.len() / 200).max(1)).take(200) {
        let t = Instant::now();
        let p = direct.patient_resources(std::slice::from_ref(id)).unwrap();
        let t_read = t.elapsed();
        let e = set.evaluate(&p[0], &shared).unwrap();
        let t_eval = t.elapsed();
        direct.store_evaluations(&[e], &set.setup, &today).unwrap();
        let t_all = t.elapsed();
        read.push(t_read.as_secs_f64() * 1000.0);
        eval.push((t_eval - t_read).as_secs_f64() * 1000.0);
        write.push((t_all - t_eval).as_secs_f64() * 1000.0);
        whole.push(t_all.as_secs_f64() * 1000.0);
    }
    println!(
        "re-evaluation of one patient p95: {:.1} ms (read {:.1}, evaluate {:.1}, store {:.1}; {} patients)",
        p95(whole.clone()),
        p95(read),
        p95(eval),
        p95(write),
        whole.len()
    );
    drop(direct);

    // Closure evidence: the action stored, the patient re-evaluated at once, the list updated.
    let rows = ws
        .worklist(&WorklistQuery {
            measure: Some("BreastCancerScreeningFHIR".into()),
            limit: 50,
            ..Default::default()
        })
        .unwrap()
        .rows;
    let mut times = Vec::new();
    for r in &rows {
        let t = Instant::now();
        ws.worklist_action(&workstation::ActionRequest {
            targets: vec![workstation::GapRef {
                patient_id: r.patient_id.clone(),
                measure_id: r.measure_id.clone(),
                group_id: r.group_id.clone(),
            }],
            action: workstation::WorklistAction::Closure {
                evidence: workstation::ClosureEvidence {
                    requirement: 0,
                    system: "http://loinc.org".into(),
                    code: "00000-0".into(),
                    display: None,
                    date: "2025-06-01".into(),
                    value: None,
                    unit: None,
                    source: "outside-record".into(),
                    category: None,
                },
            },
        })
        .unwrap();
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    println!(
        "closure evidence with re-evaluation, per action p95: {:.1} ms ({} actions)",
        p95(times.clone()),
        times.len()
    );
    let t = Instant::now();
    ws.worklist(&WorklistQuery::default()).unwrap();
    println!(
        "first worklist page after those actions: {:.1} ms",
        t.elapsed().as_secs_f64() * 1000.0
    );
}
