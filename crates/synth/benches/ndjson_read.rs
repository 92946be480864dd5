//! `cargo bench -p synth --bench ndjson_read`: fhir::NdjsonReader throughput
//! on generated NDJSON (single thread, in memory).

use fhir::NdjsonReader;
use std::time::Instant;
use synth::{Generator, SynthConfig};

fn main() {
    let patients: u64 = std::env::var("SYNTH_BENCH_PATIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000);
    let g = Generator::new(SynthConfig::new(patients, 42)).expect("valid config");
    let mut data = Vec::new();
    for r in g.resources() {
        fhir::write_ndjson_line(&mut data, &r).expect("serialize");
    }
    let mb = data.len() as f64 / 1e6;
    println!("ndjson_read bench: {mb:.1} MB, {patients} patients, 1 thread");

    let t = Instant::now();
    let mut reader = NdjsonReader::new(&data[..]);
    let mut lines = 0u64;
    while let Some(rec) = reader.next_record() {
        rec.expect("valid line");
        lines += 1;
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "  lines only (UTF-8 checked): {:>7.0} MB/s  {:>9.0} lines/s",
        mb / s,
        lines as f64 / s
    );

    let t = Instant::now();
    let mut n = 0u64;
    for item in NdjsonReader::new(&data[..]).resources() {
        item.expect("valid resource");
        n += 1;
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "  typed Resource parse:       {:>7.0} MB/s  {:>9.0} resources/s",
        mb / s,
        n as f64 / s
    );

    let t = Instant::now();
    let mut reader = NdjsonReader::new(&data[..]);
    while let Some(rec) = reader.next_record() {
        let v: serde_json::Value = serde_json::from_str(rec.expect("line").text).expect("json");
        std::hint::black_box(v);
    }
    let s = t.elapsed().as_secs_f64();
    println!("  serde_json::Value (baseline): {:>5.0} MB/s", mb / s);
}
