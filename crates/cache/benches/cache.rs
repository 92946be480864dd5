//! Import and query benchmark: SQLCipher vs plain SQLite (same schema, same
//! bundled library opened without a key), then panel and timeline latency.
//!
//! `cargo bench -p cache` (50 000 patients); `PHM_BENCH_PATIENTS=5000` to change N;
//! `PHM_BENCH_SOURCE=synth` to use the project's generator (crates/synth,
//! ~45 resources per patient) instead of the compact one in tests/common/gen.rs.

#[path = "../tests/common/gen.rs"]
mod gen;

use cache::{Cache, CacheKey, EventKind, PanelQuery, PanelSort, SortDir};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

fn write_panel(path: &Path, n: usize) -> u64 {
    let mut rng = gen::Rng::new(2026);
    let patients: Vec<gen::GenPatient> = (0..n).map(|i| gen::patient(i, &mut rng)).collect();
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut count = 0u64;
    for l in gen::reference_lines(&patients) {
        writeln!(out, "{l}").unwrap();
        count += 1;
    }
    let mut buf = Vec::new();
    for p in &patients {
        buf.clear();
        gen::patient_lines(p, &mut rng, &mut buf);
        for l in &buf {
            writeln!(out, "{l}").unwrap();
            count += 1;
        }
    }
    out.flush().unwrap();
    count
}

fn write_synth(path: &Path, n: usize) -> u64 {
    let g = synth::Generator::new(synth::SynthConfig::new(n as u64, 2026)).unwrap();
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut count = 0u64;
    for r in g.resources() {
        fhir::write_ndjson_line(&mut out, &r).unwrap();
        count += 1;
    }
    out.flush().unwrap();
    count
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn import(c: &mut Cache, file: &Path, resources: u64, label: &str) -> f64 {
    let t = Instant::now();
    let s = c.import_ndjson(file, |_| {}).unwrap();
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(s.resources, resources);
    let rate = resources as f64 / secs;
    println!("import {label:<9} {resources} resources in {secs:7.2} s = {rate:9.0} resources/s");
    rate
}

fn queries(n_patients: usize, pcp: &str) -> Vec<(&'static str, PanelQuery)> {
    let base = PanelQuery {
        limit: 50,
        as_of: Some("2026-11-23".into()),
        ..Default::default()
    };
    vec![
        (
            "name substring, sort age desc",
            PanelQuery {
                name: Some("ham".into()),
                sort: PanelSort::Age,
                dir: SortDir::Desc,
                ..base.clone()
            },
        ),
        (
            "condition, sort last visit",
            PanelQuery {
                condition: Some("44054006".into()),
                sort: PanelSort::LastVisit,
                dir: SortDir::Desc,
                ..base.clone()
            },
        ),
        (
            "age 40-65 + female, sort name",
            PanelQuery {
                min_age: Some(40),
                max_age: Some(65),
                sex: Some("female".into()),
                ..base.clone()
            },
        ),
        (
            "provider + condition text, sort conditions",
            PanelQuery {
                pcp_id: Some(pcp.into()),
                condition: Some("hypertens".into()),
                sort: PanelSort::Conditions,
                ..base.clone()
            },
        ),
        (
            "no filter, sort name, deep page",
            PanelQuery {
                offset: (n_patients / 2) as u32,
                ..base.clone()
            },
        ),
        (
            "no filter, sort birth date",
            PanelQuery {
                sort: PanelSort::BirthDate,
                ..base.clone()
            },
        ),
        (
            "name 2 words + age, sort pcp",
            PanelQuery {
                name: Some("or al".into()),
                min_age: Some(30),
                sort: PanelSort::Pcp,
                ..base
            },
        ),
    ]
}

fn bench_queries(c: &Cache, n_patients: usize, label: &str) {
    let t = Instant::now();
    c.panel(&PanelQuery {
        name: Some("ham".into()),
        ..Default::default()
    })
    .unwrap();
    println!(
        "first panel query after open ({label}, loads the in-memory panel): {:.1} ms",
        t.elapsed().as_secs_f64() * 1000.0
    );
    let providers = c.panel_providers().unwrap();
    let pcp = providers[7 % providers.len()].0.clone();
    let mut ids = Vec::new();
    for off in (0..n_patients).step_by(1000) {
        let page = c
            .panel(&PanelQuery {
                sort: PanelSort::Id,
                offset: off as u32,
                limit: 1000,
                ..Default::default()
            })
            .unwrap();
        ids.extend(page.rows.into_iter().map(|r| r.patient_id));
    }
    let qs = queries(n_patients, &pcp);
    for (_, q) in &qs {
        c.panel(q).unwrap(); // build each sort order once
    }
    let rounds = 40;
    let mut all = Vec::new();
    println!("panel query ({label}), {rounds} runs each, ms:");
    for (name, q) in &qs {
        let mut v = Vec::new();
        let mut total = 0;
        for _ in 0..rounds {
            let t = Instant::now();
            let page = c.panel(q).unwrap();
            v.push(t.elapsed());
            total = page.total;
        }
        v.sort();
        println!(
            "  {name:<45} total {total:>6}  p50 {:6.2}  p95 {:6.2}",
            pct(&v, 0.5),
            pct(&v, 0.95)
        );
        all.extend(v);
    }
    all.sort();
    println!(
        "  ALL panel queries ({label}): p50 {:.2} ms  p95 {:.2} ms  max {:.2} ms",
        pct(&all, 0.5),
        pct(&all, 0.95),
        pct(&all, 1.0)
    );
    let mut rng = gen::Rng::new(7);
    let mut t = Vec::new();
    for _ in 0..500 {
        let id = &ids[rng.below(ids.len() as u64) as usize];
        let s = Instant::now();
        c.timeline(id, &[]).unwrap().unwrap();
        t.push(s.elapsed());
    }
    t.sort();
    println!(
        "  timeline ({label}), 500 random patients: p50 {:.3} ms  p95 {:.3} ms",
        pct(&t, 0.5),
        pct(&t, 0.95)
    );
    let mut k = Vec::new();
    for _ in 0..500 {
        let id = &ids[rng.below(ids.len() as u64) as usize];
        let s = Instant::now();
        c.timeline(id, &[EventKind::Observation]).unwrap().unwrap();
        c.patient_summary(id).unwrap().unwrap();
        k.push(s.elapsed());
    }
    k.sort();
    println!(
        "  observations timeline + summary ({label}): p50 {:.3} ms  p95 {:.3} ms",
        pct(&k, 0.5),
        pct(&k, 0.95)
    );
}

fn main() {
    // `cargo bench` passes --bench; ignore arguments.
    let n: usize = std::env::var("PHM_BENCH_PATIENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50_000);
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("panel.ndjson");
    let t = Instant::now();
    let source = std::env::var("PHM_BENCH_SOURCE").unwrap_or_default();
    let resources = if source == "synth" {
        write_synth(&file, n)
    } else {
        write_panel(&file, n)
    };
    println!(
        "generated ({}) {n} patients, {resources} resources ({:.0} MB NDJSON) in {:.1} s",
        if source == "synth" {
            "crates/synth"
        } else {
            "tests/common/gen.rs"
        },
        std::fs::metadata(&file).unwrap().len() as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    println!("SQLCipher: {}", {
        let d = tempfile::tempdir().unwrap();
        Cache::open(d.path().join("v.db"), &CacheKey::generate().unwrap())
            .unwrap()
            .cipher_version()
            .unwrap()
            .unwrap_or_default()
    });

    let plain_dir = tempfile::tempdir().unwrap();
    let enc_dir = tempfile::tempdir().unwrap();
    let key = CacheKey::generate().unwrap();
    let mut plain = Cache::open_plaintext_for_benchmark(plain_dir.path().join("cache.db")).unwrap();
    let mut enc = Cache::open(enc_dir.path().join("cache.db"), &key).unwrap();

    // Alternate the order (ABBA...) and keep each side's best run, so that
    // load from other processes on the machine penalizes neither side.
    let rounds: usize = std::env::var("PHM_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let (mut p, mut e) = (0f64, 0f64);
    for r in 0..rounds {
        if r % 2 == 0 {
            p = p.max(import(&mut plain, &file, resources, "plain"));
            e = e.max(import(&mut enc, &file, resources, "sqlcipher"));
        } else {
            e = e.max(import(&mut enc, &file, resources, "sqlcipher"));
            p = p.max(import(&mut plain, &file, resources, "plain"));
        }
    }
    println!(
        "best of {rounds}: plain {p:.0} resources/s, sqlcipher {e:.0} resources/s, SQLCipher time / plain time = {:.2}x (goal <= 1.3x)",
        p / e
    );
    enc.checkpoint().unwrap();
    plain.checkpoint().unwrap();
    println!(
        "on disk: sqlcipher {:.0} MB, plain {:.0} MB",
        dir_size(enc_dir.path()) as f64 / 1e6,
        dir_size(plain_dir.path()) as f64 / 1e6
    );
    drop(enc);
    drop(plain);
    // Cold start to the first panel page: open (key check, migrations) plus
    // the first panel query (loads the in-memory panel), 5 reopens each.
    for (label, dir) in [("sqlcipher", enc_dir.path()), ("plain", plain_dir.path())] {
        let mut v = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let c = if label == "plain" {
                Cache::open_plaintext_for_benchmark(dir.join("cache.db")).unwrap()
            } else {
                Cache::open(dir.join("cache.db"), &key).unwrap()
            };
            let page = c
                .panel(&PanelQuery {
                    limit: 50,
                    ..Default::default()
                })
                .unwrap();
            v.push(t.elapsed());
            assert_eq!(page.total as usize, n);
        }
        v.sort();
        println!(
            "open + first panel page ({label}), 5 reopens: min {:.1} ms  median {:.1} ms  max {:.1} ms",
            pct(&v, 0.0),
            pct(&v, 0.5),
            pct(&v, 1.0)
        );
    }
    // Reopen (cold page cache in SQLite, warm OS cache) and query.
    let enc = Cache::open(enc_dir.path().join("cache.db"), &key).unwrap();
    bench_queries(&enc, n, "sqlcipher");
    let plain = Cache::open_plaintext_for_benchmark(plain_dir.path().join("cache.db")).unwrap();
    bench_queries(&plain, n, "plain");
}
