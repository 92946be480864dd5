//! `cargo bench -p synth`: single-thread generation + serialization speed.

use std::time::Instant;
use synth::{Generator, SynthConfig};

fn main() {
    let patients: u64 = std::env::var("SYNTH_BENCH_PATIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let g = Generator::new(SynthConfig::new(patients, 42)).expect("valid config");

    // Generation only (typed resources).
    let t = Instant::now();
    let mut resources = 0u64;
    for i in 0..patients {
        resources += g.patient(i).len() as u64;
    }
    let gen_s = t.elapsed().as_secs_f64();

    // Generation + NDJSON serialization into memory.
    let t = Instant::now();
    let mut bytes = 0u64;
    let mut buf = Vec::with_capacity(1 << 20);
    for i in 0..patients {
        for r in g.patient(i) {
            fhir::write_ndjson_line(&mut buf, &r).expect("serialize");
        }
        bytes += buf.len() as u64;
        buf.clear();
    }
    let ser_s = t.elapsed().as_secs_f64();

    println!(
        "synth bench: {patients} patients, {resources} resources, {:.1} MB NDJSON, 1 thread",
        bytes as f64 / 1e6
    );
    println!(
        "  generate only:        {:>8.0} patients/s  {:>9.0} resources/s",
        patients as f64 / gen_s,
        resources as f64 / gen_s
    );
    println!(
        "  generate + serialize: {:>8.0} patients/s  {:>9.0} resources/s  {:.0} MB/s  ({:.0} patients/min)",
        patients as f64 / ser_s,
        resources as f64 / ser_s,
        bytes as f64 / 1e6 / ser_s,
        patients as f64 / ser_s * 60.0
    );
}
