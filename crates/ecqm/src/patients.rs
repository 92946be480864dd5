//! Reading patients: FHIR Bundle files (one patient per file, the shared
//! test-case layout) or NDJSON (the `phm-synth` layout: one file per resource
//! type, resources reference `Patient/<id>`).
//!
//! Memory: bundle files are read one at a time, per batch. NDJSON is grouped
//! by patient: when the NDJSON files add up to at most
//! [`ReadOptions::max_in_memory_bytes`] the raw lines are grouped in memory
//! (about the input size, as strings); above it the lines are first spilled
//! to hash buckets in a temporary directory (each bucket at most about that
//! size) and grouped one bucket at a time, so memory stays bounded by the
//! bucket size whatever the input size.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value as Json;

use crate::error::{EcqmError, Result};

/// One patient's resources, the Patient first.
#[derive(Debug, Clone)]
pub struct PatientRecord {
    pub id: String,
    pub resources: Vec<Json>,
}

/// Where a patient comes from, loaded on demand (in parallel by the caller).
#[derive(Debug, Clone)]
pub enum PatientItem {
    /// A Bundle file holding exactly one Patient.
    File(PathBuf),
    /// NDJSON lines already grouped for this patient.
    Lines { id: String, lines: Vec<String> },
}

impl PatientItem {
    /// A label that is safe to log (file name or patient id, no content).
    pub fn label(&self) -> String {
        match self {
            PatientItem::File(p) => p.display().to_string(),
            PatientItem::Lines { id, .. } => format!("Patient/{id}"),
        }
    }

    pub fn load(&self) -> Result<PatientRecord> {
        match self {
            PatientItem::File(p) => {
                let text = std::fs::read(p).map_err(|e| EcqmError::io(p, e))?;
                let json: Json = serde_json::from_slice(&text).map_err(|e| {
                    EcqmError::Patients(format!("{}: not valid JSON ({e})", p.display()))
                })?;
                patient_from_bundle(&json)
                    .map_err(|e| EcqmError::Patients(format!("{}: {e}", p.display())))
            }
            PatientItem::Lines { id, lines } => {
                let mut resources = Vec::with_capacity(lines.len());
                for (i, l) in lines.iter().enumerate() {
                    let v: Json = serde_json::from_str(l).map_err(|e| {
                        EcqmError::Patients(format!(
                            "Patient/{id}: resource line {} is not valid JSON ({e})",
                            i + 1
                        ))
                    })?;
                    resources.push(v);
                }
                // Patient first.
                if let Some(pos) = resources.iter().position(is_patient) {
                    resources.swap(0, pos);
                } else {
                    return Err(EcqmError::Patients(format!(
                        "Patient/{id} is referenced but not present in Patient.ndjson"
                    )));
                }
                Ok(PatientRecord {
                    id: id.clone(),
                    resources,
                })
            }
        }
    }
}

impl PatientItem {
    /// Reads the patient straight into engine resources (`cql::fhir::J`): NDJSON lines are parsed
    /// without an intermediate `serde_json::Value`. Same resources, order and errors as
    /// [`PatientItem::load`]; the Patient resource first.
    pub fn load_nodes(&self) -> Result<(String, Vec<cql::fhir::J>)> {
        match self {
            PatientItem::File(_) => {
                let r = self.load()?;
                let nodes = r.resources.iter().map(cql::fhir::J::from_json).collect();
                Ok((r.id, nodes))
            }
            PatientItem::Lines { id, lines } => {
                let mut resources = Vec::with_capacity(lines.len());
                for (i, l) in lines.iter().enumerate() {
                    let v: cql::fhir::J = serde_json::from_str(l).map_err(|e| {
                        EcqmError::Patients(format!(
                            "Patient/{id}: resource line {} is not valid JSON ({e})",
                            i + 1
                        ))
                    })?;
                    resources.push(v);
                }
                let is_patient = |v: &cql::fhir::J| {
                    v.get("resourceType").and_then(|t| t.str()) == Some("Patient")
                };
                if let Some(pos) = resources.iter().position(is_patient) {
                    resources.swap(0, pos);
                } else {
                    return Err(EcqmError::Patients(format!(
                        "Patient/{id} is referenced but not present in Patient.ndjson"
                    )));
                }
                Ok((id.clone(), resources))
            }
        }
    }
}

fn is_patient(v: &Json) -> bool {
    v.get("resourceType").and_then(Json::as_str) == Some("Patient")
}

/// Extracts the single patient of a collection Bundle (all its resources
/// belong to that patient, whatever their references say).
pub fn patient_from_bundle(bundle: &Json) -> Result<PatientRecord> {
    if bundle.get("resourceType").and_then(Json::as_str) != Some("Bundle") {
        return Err(EcqmError::Patients("not a FHIR Bundle".into()));
    }
    let entries = match bundle.get("entry") {
        Some(Json::Array(a)) => a,
        None => return Err(EcqmError::Patients("the Bundle has no entries".into())),
        Some(_) => return Err(EcqmError::Patients("Bundle.entry is not an array".into())),
    };
    let mut resources: Vec<Json> = Vec::with_capacity(entries.len());
    for e in entries {
        match e.get("resource") {
            Some(r @ Json::Object(_)) => {
                if r.get("resourceType").and_then(Json::as_str).is_none() {
                    return Err(EcqmError::Patients(
                        "a Bundle entry's resource has no resourceType".into(),
                    ));
                }
                resources.push(r.clone())
            }
            Some(_) => {
                return Err(EcqmError::Patients(
                    "a Bundle entry's resource is not an object".into(),
                ))
            }
            None => {}
        }
    }
    let patients: Vec<usize> = resources
        .iter()
        .enumerate()
        .filter(|(_, r)| is_patient(r))
        .map(|(i, _)| i)
        .collect();
    let pos = match patients.as_slice() {
        [p] => *p,
        [] => return Err(EcqmError::Patients("the Bundle holds no Patient".into())),
        _ => {
            return Err(EcqmError::Patients(format!(
                "the Bundle holds {} Patients; one per Bundle is expected",
                patients.len()
            )))
        }
    };
    resources.swap(0, pos);
    let id = resources[0]
        .get("id")
        .and_then(Json::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| EcqmError::Patients("the Patient has no id".into()))?
        .to_string();
    Ok(PatientRecord { id, resources })
}

/// The patient id a resource belongs to: its own id for a Patient, else the
/// `Patient/<id>` reference in `subject`, `patient` or `beneficiary`.
pub fn owner_patient_id(resource: &Json) -> Option<String> {
    owner_of(
        resource.get("resourceType").and_then(Json::as_str),
        resource.get("id").and_then(Json::as_str),
        [
            resource.get("subject"),
            resource.get("patient"),
            resource.get("beneficiary"),
        ],
    )
}

fn owner_of(rt: Option<&str>, id: Option<&str>, refs: [Option<&Json>; 3]) -> Option<String> {
    if rt == Some("Patient") {
        return id.filter(|s| !s.is_empty()).map(str::to_string);
    }
    refs.into_iter()
        .flatten()
        .filter_map(|r| r.get("reference").and_then(Json::as_str))
        .find_map(patient_ref_id)
}

/// `Patient/abc`, `https://host/fhir/Patient/abc/_history/2` -> `abc`.
pub fn patient_ref_id(reference: &str) -> Option<String> {
    let i = reference.rfind("Patient/")?;
    if i > 0 && !reference[..i].ends_with('/') {
        return None;
    }
    let id = reference[i + "Patient/".len()..].split('/').next()?;
    (!id.is_empty()).then(|| id.to_string())
}

#[derive(Deserialize)]
struct Probe {
    #[serde(rename = "resourceType")]
    resource_type: Option<String>,
    id: Option<String>,
    subject: Option<Json>,
    patient: Option<Json>,
    beneficiary: Option<Json>,
}

fn probe_owner(line: &str) -> std::result::Result<Option<String>, String> {
    let p: Probe = serde_json::from_str(line).map_err(|e| e.to_string())?;
    Ok(owner_of(
        p.resource_type.as_deref(),
        p.id.as_deref(),
        [
            p.subject.as_ref(),
            p.patient.as_ref(),
            p.beneficiary.as_ref(),
        ],
    ))
}

/// Options for reading patients.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// Patients per batch handed to the evaluator.
    pub batch_size: usize,
    /// NDJSON inputs larger than this are grouped through on-disk buckets.
    pub max_in_memory_bytes: u64,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            batch_size: 256,
            max_in_memory_bytes: 1 << 30,
        }
    }
}

/// Counters from reading NDJSON (for progress / diagnostics).
#[derive(Debug, Clone, Default)]
pub struct ReadStats {
    pub lines: u64,
    /// Resources that reference no patient (Practitioner, Organization ...): skipped.
    pub unattached: u64,
    /// Lines that are not JSON objects: skipped with a count.
    pub malformed: u64,
}

/// A patient input: a Bundle file, a directory of Bundle files, an NDJSON
/// file, or a directory of NDJSON files.
#[derive(Debug, Clone)]
pub enum PatientSource {
    Bundles(Vec<PathBuf>),
    Ndjson(Vec<PathBuf>),
}

fn has_ext(p: &Path, ext: &str) -> bool {
    p.extension().and_then(|e| e.to_str()) == Some(ext)
}

impl PatientSource {
    pub fn open(path: &Path) -> Result<Self> {
        let meta = std::fs::metadata(path).map_err(|e| EcqmError::io(path, e))?;
        if meta.is_file() {
            return Ok(if has_ext(path, "ndjson") {
                PatientSource::Ndjson(vec![path.to_path_buf()])
            } else {
                PatientSource::Bundles(vec![path.to_path_buf()])
            });
        }
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| EcqmError::io(path, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        let nd: Vec<PathBuf> = files
            .iter()
            .filter(|p| has_ext(p, "ndjson"))
            .cloned()
            .collect();
        if !nd.is_empty() {
            return Ok(PatientSource::Ndjson(nd));
        }
        let js: Vec<PathBuf> = files.into_iter().filter(|p| has_ext(p, "json")).collect();
        if js.is_empty() {
            return Err(EcqmError::Patients(format!(
                "{}: no .json Bundle files and no .ndjson files",
                path.display()
            )));
        }
        Ok(PatientSource::Bundles(js))
    }

    /// Streams batches of patients to `f`, in order for bundle files and in
    /// patient-id order (per bucket) for NDJSON. Stops at the first error
    /// returned by `f`.
    pub fn for_each_batch(
        &self,
        opts: &ReadOptions,
        mut f: impl FnMut(Vec<PatientItem>) -> Result<()>,
    ) -> Result<ReadStats> {
        let batch = opts.batch_size.max(1);
        match self {
            PatientSource::Bundles(files) => {
                for chunk in files.chunks(batch) {
                    f(chunk.iter().cloned().map(PatientItem::File).collect())?;
                }
                Ok(ReadStats::default())
            }
            PatientSource::Ndjson(files) => {
                let total: u64 = files
                    .iter()
                    .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
                    .sum();
                let mut stats = ReadStats::default();
                if total <= opts.max_in_memory_bytes {
                    let mut groups: HashMap<String, Vec<String>> = HashMap::new();
                    for p in files {
                        for_each_line(p, &mut stats, |id, line| {
                            groups.entry(id).or_default().push(line);
                            Ok(())
                        })?;
                    }
                    emit_groups(groups, batch, &mut f)?;
                } else {
                    let n = total.div_ceil(opts.max_in_memory_bytes.max(1)) as usize + 1;
                    let dir = TempDir::new()?;
                    let mut writers = Vec::with_capacity(n);
                    for i in 0..n {
                        let path = dir.0.join(format!("bucket-{i}.tsv"));
                        let file = File::create(&path).map_err(|e| EcqmError::io(&path, e))?;
                        writers.push(BufWriter::new(file));
                    }
                    for p in files {
                        for_each_line(p, &mut stats, |id, line| {
                            let w = &mut writers[bucket_of(&id, n)];
                            // id \t line: ids and minified JSON lines hold no raw tab/newline
                            writeln!(w, "{id}\t{line}").map_err(|e| EcqmError::io(&dir.0, e))
                        })?;
                    }
                    for w in &mut writers {
                        w.flush().map_err(|e| EcqmError::io(&dir.0, e))?;
                    }
                    drop(writers);
                    for i in 0..n {
                        let path = dir.0.join(format!("bucket-{i}.tsv"));
                        let file = File::open(&path).map_err(|e| EcqmError::io(&path, e))?;
                        let mut groups: HashMap<String, Vec<String>> = HashMap::new();
                        for l in BufReader::new(file).lines() {
                            let l = l.map_err(|e| EcqmError::io(&path, e))?;
                            if let Some((id, line)) = l.split_once('\t') {
                                groups
                                    .entry(id.to_string())
                                    .or_default()
                                    .push(line.to_string());
                            }
                        }
                        let _ = std::fs::remove_file(&path);
                        emit_groups(groups, batch, &mut f)?;
                    }
                }
                Ok(stats)
            }
        }
    }
}

/// Groups in-memory NDJSON lines by patient (small inputs, tests, fuzzing).
pub fn group_ndjson_lines<'a>(
    lines: impl Iterator<Item = &'a str>,
) -> (Vec<PatientItem>, ReadStats) {
    let mut stats = ReadStats::default();
    let mut groups: HashMap<String, Vec<String>> = HashMap::new();
    for l in lines {
        let t = l.trim();
        if t.is_empty() {
            continue;
        }
        stats.lines += 1;
        match probe_owner(t) {
            Ok(Some(id)) => groups.entry(id).or_default().push(t.to_string()),
            Ok(None) => stats.unattached += 1,
            Err(_) => stats.malformed += 1,
        }
    }
    let mut items = Vec::new();
    let _ = emit_groups(groups, usize::MAX, &mut |mut b: Vec<PatientItem>| {
        items.append(&mut b);
        Ok(())
    });
    (items, stats)
}

fn bucket_of(id: &str, n: usize) -> usize {
    // FNV-1a: stable across runs.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    (h % n as u64) as usize
}

fn emit_groups(
    groups: HashMap<String, Vec<String>>,
    batch: usize,
    f: &mut impl FnMut(Vec<PatientItem>) -> Result<()>,
) -> Result<()> {
    let mut items: Vec<PatientItem> = groups
        .into_iter()
        .map(|(id, lines)| PatientItem::Lines { id, lines })
        .collect();
    items.sort_by(|a, b| match (a, b) {
        (PatientItem::Lines { id: x, .. }, PatientItem::Lines { id: y, .. }) => x.cmp(y),
        _ => std::cmp::Ordering::Equal,
    });
    let mut it = items.into_iter().peekable();
    while it.peek().is_some() {
        let chunk: Vec<PatientItem> = it.by_ref().take(batch).collect();
        f(chunk)?;
    }
    Ok(())
}

fn for_each_line(
    path: &Path,
    stats: &mut ReadStats,
    mut f: impl FnMut(String, String) -> Result<()>,
) -> Result<()> {
    let file = File::open(path).map_err(|e| EcqmError::io(path, e))?;
    for line in BufReader::with_capacity(1 << 20, file).lines() {
        let line = line.map_err(|e| EcqmError::io(path, e))?;
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        stats.lines += 1;
        match probe_owner(t) {
            Ok(Some(id)) if !id.contains(['\t', '\n']) => {
                let t = if t.len() == line.len() {
                    line
                } else {
                    t.to_string()
                };
                f(id, t)?
            }
            Ok(_) => stats.unattached += 1,
            Err(_) => stats.malformed += 1,
        }
    }
    Ok(())
}

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let p = std::env::temp_dir().join(format!("phm-ecqm-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).map_err(|e| EcqmError::io(&p, e))?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reference_parsing() {
        assert_eq!(patient_ref_id("Patient/abc").as_deref(), Some("abc"));
        assert_eq!(
            patient_ref_id("https://h/fhir/Patient/abc/_history/1").as_deref(),
            Some("abc")
        );
        assert_eq!(patient_ref_id("Group/1"), None);
        assert_eq!(patient_ref_id("RelatedPatient/x"), None);
        assert_eq!(patient_ref_id("Patient/"), None);
        let enc = json!({"resourceType":"Encounter","subject":{"reference":"Patient/p1"}});
        assert_eq!(owner_patient_id(&enc).as_deref(), Some("p1"));
        let cov = json!({"resourceType":"Coverage","beneficiary":{"reference":"Patient/p2"}});
        assert_eq!(owner_patient_id(&cov).as_deref(), Some("p2"));
        let pr = json!({"resourceType":"Practitioner","id":"x"});
        assert_eq!(owner_patient_id(&pr), None);
    }

    #[test]
    fn bundle_patient() {
        let b = json!({"resourceType":"Bundle","type":"collection","entry":[
            {"resource":{"resourceType":"Encounter","id":"e"}},
            {"resource":{"resourceType":"Patient","id":"p1"}}]});
        let p = patient_from_bundle(&b).unwrap();
        assert_eq!(p.id, "p1");
        assert!(is_patient(&p.resources[0]));
        assert_eq!(p.resources.len(), 2);
        for bad in [
            json!({"resourceType":"Bundle"}),
            json!({"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Encounter"}}]}),
            json!({"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient"}}]}),
            json!({"resourceType":"Bundle","entry":[{"resource":1}]}),
            json!({"resourceType":"Bundle","entry":[{"resource":{"id":"x"}}]}),
            json!([]),
        ] {
            assert!(patient_from_bundle(&bad).is_err(), "{bad}");
        }
    }

    fn write_ndjson(dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(
            dir.join("Patient.ndjson"),
            "{\"resourceType\":\"Patient\",\"id\":\"b\"}\n{\"resourceType\":\"Patient\",\"id\":\"a\"}\n\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("Encounter.ndjson"),
            concat!(
                "{\"resourceType\":\"Encounter\",\"id\":\"e1\",\"subject\":{\"reference\":\"Patient/a\"}}\n",
                "{\"resourceType\":\"Encounter\",\"id\":\"e2\",\"subject\":{\"reference\":\"Patient/b\"}}\n",
                "{\"resourceType\":\"Encounter\",\"id\":\"e3\",\"subject\":{\"reference\":\"Patient/a\"}}\n",
                "{\"resourceType\":\"Practitioner\",\"id\":\"x\"}\n",
                "not json\n"
            ),
        )
        .unwrap();
    }

    fn collect(src: &PatientSource, opts: &ReadOptions) -> (Vec<(String, usize)>, ReadStats) {
        let mut out = Vec::new();
        let stats = src
            .for_each_batch(opts, |items| {
                for it in items {
                    let r = it.load().unwrap();
                    assert!(is_patient(&r.resources[0]));
                    out.push((r.id, r.resources.len()));
                }
                Ok(())
            })
            .unwrap();
        out.sort();
        (out, stats)
    }

    #[test]
    fn ndjson_grouping_in_memory_and_spilled() {
        let dir = std::env::temp_dir().join(format!("ecqm-nd-test-{}", std::process::id()));
        write_ndjson(&dir);
        let src = PatientSource::open(&dir).unwrap();
        assert!(matches!(src, PatientSource::Ndjson(_)));
        let want = vec![("a".to_string(), 3), ("b".to_string(), 2)];
        let (got, stats) = collect(&src, &ReadOptions::default());
        assert_eq!(got, want);
        assert_eq!(stats.unattached, 1);
        assert_eq!(stats.malformed, 1);
        let spill = ReadOptions {
            batch_size: 1,
            max_in_memory_bytes: 64,
        };
        let (got, _) = collect(&src, &spill);
        assert_eq!(got, want);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn referenced_patient_missing_is_an_error() {
        let it = PatientItem::Lines {
            id: "z".into(),
            lines: vec!["{\"resourceType\":\"Encounter\"}".into()],
        };
        assert!(it.load().is_err());
    }
}
