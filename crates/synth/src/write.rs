//! Bulk Data NDJSON output: one `<Type>.ndjson` per resource type, written in
//! patient order whatever the thread count (so output is byte-identical).

use crate::generator::Generator;
use fhir::Resource;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

/// Types generated as raw JSON ([`fhir::Resource::Other`]): the `fhir` crate has no
/// struct for them.
pub const RAW_TYPES: [&str; 6] = [
    "ServiceRequest",
    "DeviceRequest",
    "AllergyIntolerance",
    "AdverseEvent",
    "MedicationDispense",
    "DiagnosticReport",
];

/// Number of [`OUTPUT_TYPES`].
const TYPES: usize = fhir::KNOWN_RESOURCE_TYPES.len() + RAW_TYPES.len();

/// The files written, in this order (`<Type>.ndjson`): the types the `fhir` crate
/// parses into structs ([`fhir::KNOWN_RESOURCE_TYPES`], same order), then
/// [`RAW_TYPES`].
pub const OUTPUT_TYPES: [&str; TYPES] = {
    let mut out = [""; TYPES];
    let mut i = 0;
    while i < fhir::KNOWN_RESOURCE_TYPES.len() {
        out[i] = fhir::KNOWN_RESOURCE_TYPES[i];
        i += 1;
    }
    let mut j = 0;
    while j < RAW_TYPES.len() {
        out[i + j] = RAW_TYPES[j];
        j += 1;
    }
    out
};

/// Patients per unit of work.
const CHUNK_PATIENTS: u64 = 256;

/// What was written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteStats {
    pub patients: u64,
    /// Resources per type, indexed like [`OUTPUT_TYPES`].
    pub resources: [u64; TYPES],
    pub bytes: u64,
}

impl WriteStats {
    pub fn total_resources(&self) -> u64 {
        self.resources.iter().sum()
    }
}

fn type_index(r: &Resource) -> usize {
    let t = r.resource_type();
    let i = OUTPUT_TYPES.iter().position(|x| *x == t);
    debug_assert!(i.is_some(), "generated a {t}, which has no output file");
    i.unwrap_or(0)
}

struct Rendered {
    bufs: Vec<Vec<u8>>,
    counts: [u64; TYPES],
}

impl Rendered {
    fn new() -> Self {
        Rendered {
            bufs: vec![Vec::new(); OUTPUT_TYPES.len()],
            counts: [0; TYPES],
        }
    }

    fn push(&mut self, r: &Resource) -> io::Result<()> {
        let t = type_index(r);
        fhir::write_ndjson_line(&mut self.bufs[t], r)?;
        self.counts[t] += 1;
        Ok(())
    }
}

fn render_chunk(g: &Generator, range: &Range<u64>, chunk: u64) -> io::Result<Rendered> {
    let mut out = Rendered::new();
    let start = range.start + chunk * CHUNK_PATIENTS;
    let end = (start + CHUNK_PATIENTS).min(range.end);
    for i in start..end {
        for r in g.patient(i) {
            out.push(&r)?;
        }
    }
    Ok(out)
}

/// Writes the whole population under `dir` (created if missing) using
/// `threads` worker threads (1 = on the calling thread). `progress` is called
/// with the number of patients written so far after each chunk.
pub fn write_ndjson_dir(
    g: &Generator,
    dir: &Path,
    threads: usize,
    progress: &mut dyn FnMut(u64),
) -> io::Result<WriteStats> {
    write_ndjson_part(g, dir, 0..g.config().patients, &|_| true, threads, progress)
}

/// Part of the population: the patients with indexes in `patients` and the
/// reference resources `reference` keeps (the same bytes as in a whole output).
/// Loads in slices (e.g. 1 M patients without 24 GB of files at once) write the
/// Organizations and Practitioners first and the Groups, which list patients, last.
pub fn write_ndjson_part(
    g: &Generator,
    dir: &Path,
    patients: Range<u64>,
    reference: &dyn Fn(&Resource) -> bool,
    threads: usize,
    progress: &mut dyn FnMut(u64),
) -> io::Result<WriteStats> {
    let range = patients.start..patients.end.min(g.config().patients);
    std::fs::create_dir_all(dir)?;
    let mut files = Vec::with_capacity(OUTPUT_TYPES.len());
    for t in OUTPUT_TYPES {
        files.push(BufWriter::with_capacity(
            1 << 20,
            File::create(dir.join(format!("{t}.ndjson")))?,
        ));
    }
    let mut stats = WriteStats::default();
    let mut sink = |r: Rendered, stats: &mut WriteStats| -> io::Result<()> {
        for (t, buf) in r.bufs.iter().enumerate() {
            files[t].write_all(buf)?;
            stats.bytes += buf.len() as u64;
            stats.resources[t] += r.counts[t];
        }
        Ok(())
    };
    // One at a time: a large population's Groups are big.
    let mut failed = None;
    g.for_each_reference_resource(|r| {
        if failed.is_none() && reference(&r) {
            let mut one = Rendered::new();
            if let Err(e) = one.push(&r).and_then(|()| sink(one, &mut stats)) {
                failed = Some(e);
            }
        }
    });
    if let Some(e) = failed {
        return Err(e);
    }

    let patients = range.end.saturating_sub(range.start);
    let chunks = patients.div_ceil(CHUNK_PATIENTS);
    let done = |c: u64| ((c + 1) * CHUNK_PATIENTS).min(patients);
    if threads <= 1 {
        for c in 0..chunks {
            sink(render_chunk(g, &range, c)?, &mut stats)?;
            progress(done(c));
        }
    } else {
        let next = AtomicU64::new(0);
        std::thread::scope(|scope| -> io::Result<()> {
            let (tx, rx) = mpsc::sync_channel::<(u64, io::Result<Rendered>)>(threads * 2);
            for _ in 0..threads {
                let tx = tx.clone();
                let next = &next;
                let range = &range;
                scope.spawn(move || loop {
                    let c = next.fetch_add(1, Ordering::Relaxed);
                    if c >= chunks {
                        break;
                    }
                    if tx.send((c, render_chunk(g, range, c))).is_err() {
                        break;
                    }
                });
            }
            drop(tx);
            // Reorder so output does not depend on thread scheduling.
            let mut waiting = BTreeMap::new();
            let mut want = 0;
            for (c, rendered) in rx {
                waiting.insert(c, rendered);
                while let Some(r) = waiting.remove(&want) {
                    // On error, stop workers by dropping the receiver (scope end).
                    sink(r?, &mut stats)?;
                    progress(done(want));
                    want += 1;
                }
            }
            Ok(())
        })?;
    }
    for f in &mut files {
        f.flush()?;
    }
    stats.patients = patients;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_types_start_with_the_typed_ones_and_are_unique() {
        assert_eq!(OUTPUT_TYPES[..11], fhir::KNOWN_RESOURCE_TYPES);
        let mut seen = std::collections::HashSet::new();
        assert!(OUTPUT_TYPES.iter().all(|t| seen.insert(*t)));
    }
}
