//! Cost of care-gap evidence (`ecqm::evidence`): a population against every measure, one shared
//! `cql::PatientMemo` per patient, with and without the evidence of open gaps.
//!
//! ```text
//! cargo run -p ecqm --release --example evidence_rate -- [../shared/ecqm] [--ndjson DIR] [--replicas N] [--threads T]
//! ```
//! The population is phm-synth NDJSON (`--ndjson`), else the official cases replicated N times
//! (default 20) with fresh ids. Each pass converts every patient (loaded node trees to engine
//! data) and evaluates it against all measures: first populations only (`evaluate_memo`), then
//! populations plus evidence for every open or prospective gap (`evaluate_with_evidence`).
//! Prints patients/s for both and the time 50,000 patients would take at that rate.

use std::path::{Path, PathBuf};
use std::time::Instant;

use ecqm::engine::{MeasurePackage, PreparedMeasure};
use ecqm::patients::{PatientItem, PatientSource, ReadOptions};
use ecqm::{gap_status, EvalOptions, GapStatus, GroupResult, ImprovementOverrides};
use rayon::prelude::*;

// as in phm-ecqm
#[global_allocator]
static GLOBAL: allocator::MiMalloc = allocator::MiMalloc;

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.retain(|p| p.extension().and_then(|e| e.to_str()) == Some("json"));
    v.sort();
    v
}

#[derive(Default, Clone, Copy)]
struct Tally {
    evaluations: u64,
    failed: u64,
    gaps: u64,
    lines: u64,
    links: u64,
}

impl Tally {
    fn add(self, o: Tally) -> Tally {
        Tally {
            evaluations: self.evaluations + o.evaluations,
            failed: self.failed + o.failed,
            gaps: self.gaps + o.gaps,
            lines: self.lines + o.lines,
            links: self.links + o.links,
        }
    }
}

fn run(
    measures: &[PreparedMeasure],
    population: &[(String, Vec<cql::fhir::J>)],
    evidence: bool,
) -> Tally {
    let overrides = ImprovementOverrides::default();
    population
        .par_iter()
        .map(|(id, nodes)| {
            let mut t = Tally::default();
            let Ok(data) = cql::PatientData::from_nodes(nodes.clone()) else {
                t.failed += measures.len() as u64;
                return t;
            };
            let memo = cql::PatientMemo::new(&data);
            for m in measures {
                t.evaluations += 1;
                if evidence {
                    let want = |g: &GroupResult| {
                        let def = m.def.groups.iter().find(|d| d.id == g.id);
                        def.is_some_and(|d| {
                            matches!(
                                gap_status(&g.populations, overrides.notation(&m.def, d), true),
                                GapStatus::Open | GapStatus::Prospective
                            )
                        })
                    };
                    match m.evaluate_with_evidence(&memo, id, EvalOptions::default(), &want) {
                        Ok((_, ev)) => {
                            t.gaps += ev.len() as u64;
                            for e in &ev {
                                t.lines += e.why_open.len() as u64;
                                t.links += e.data.len() as u64;
                            }
                        }
                        Err(_) => t.failed += 1,
                    }
                } else if m.evaluate_memo(&memo, id, EvalOptions::default()).is_err() {
                    t.failed += 1;
                }
            }
            t
        })
        .reduce(Tally::default, Tally::add)
}

/// User + system CPU seconds of this process (Linux; 0 elsewhere): steadier than wall time on
/// a shared machine.
fn cpu_secs() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit(')').next()?.to_string();
            let f: Vec<&str> = rest.split_whitespace().collect();
            // fields 14 and 15 of stat (utime, stime), counted after the `)` of the command
            let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
            Some(ticks / 100.0)
        })
        .unwrap_or(0.0)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut dir = PathBuf::from("../shared/ecqm");
    let (mut ndjson, mut replicas, mut threads) = (None::<PathBuf>, 20usize, 2usize);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--ndjson" => ndjson = args.next().map(PathBuf::from),
            "--replicas" => replicas = args.next().and_then(|s| s.parse().ok()).unwrap_or(20),
            "--threads" => threads = args.next().and_then(|s| s.parse().ok()).unwrap_or(2),
            "--bench" => {}
            other => dir = PathBuf::from(other),
        }
    }
    let t = Instant::now();
    let measures: Vec<PreparedMeasure> = files(&dir.join("measures"))
        .iter()
        .map(|f| {
            let p = MeasurePackage::load(f).expect("measure package");
            p.prepare(&p.default_period().expect("period"))
                .expect("prepare")
        })
        .collect();
    println!(
        "{} measures loaded and prepared (closing requirements included) in {:.2}s",
        measures.len(),
        t.elapsed().as_secs_f64()
    );

    let population: Vec<(String, Vec<cql::fhir::J>)> = match &ndjson {
        Some(d) => {
            let src = PatientSource::open(d).expect("--ndjson");
            let mut v = Vec::new();
            src.for_each_batch(&ReadOptions::default(), |batch| {
                v.extend(batch.iter().filter_map(|i| i.load_nodes().ok()));
                Ok(())
            })
            .expect("reading NDJSON");
            println!("population: {} phm-synth patients", v.len());
            v
        }
        None => {
            let mut cases = Vec::new();
            for m in &measures {
                for f in files(&dir.join("cases").join(&m.def.name)) {
                    cases.push(PatientItem::File(f).load().expect("case"));
                }
            }
            let mut v = Vec::new();
            for k in 0..replicas {
                for r in &cases {
                    let id = format!("{}-r{k}", r.id);
                    let mut nodes: Vec<serde_json::Value> = r.resources.clone();
                    if let Some(serde_json::Value::Object(p)) = nodes.first_mut() {
                        p.insert("id".into(), serde_json::Value::String(id.clone()));
                    }
                    v.push((id, nodes.iter().map(cql::fhir::J::from_json).collect()));
                }
            }
            println!(
                "population: the {} official cases x {replicas} = {} patients",
                cases.len(),
                v.len()
            );
            v
        }
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool");
    let n = population.len() as f64;
    for evidence in [false, true, false, true] {
        let t = Instant::now();
        let c = cpu_secs();
        let tally = pool.install(|| run(&measures, &population, evidence));
        let s = t.elapsed().as_secs_f64();
        let cpu = cpu_secs() - c;
        println!(
            "{threads} thread(s), {:<24} {:>6.0} patients/s ({:.2}s, {cpu:.2} CPU-s; 50,000 patients: {:>5.1}s); {} evaluations, {} failed, {} gaps with evidence, {} why-open lines, {} data links",
            if evidence { "populations + evidence:" } else { "populations only:" },
            n / s,
            s,
            50_000.0 / (n / s),
            tally.evaluations,
            tally.failed,
            tally.gaps,
            tally.lines,
            tally.links
        );
    }
}
