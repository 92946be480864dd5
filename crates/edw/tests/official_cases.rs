//! The 515 official eCQM test cases of `shared/ecqm` through the EDW: written out as
//! Bulk Data NDJSON (each case's resource ids and patient identifier values made
//! unique, as cases reuse them), then `ingest`, `match`, `measure` and `results`,
//! scored by the official scorer. The EDW must pass every case the engine passes
//! on the case bundles directly, except cases it cannot load as the bundle shows them:
//! a resource whose subject names a patient that is not in the load (quarantined), or
//! one naming another case's patient (it then belongs to that patient). Those cases
//! are listed with their reason.

use ecqm::engine::MeasurePackage;
use ecqm::patients::PatientItem;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

fn ecqm_dir() -> PathBuf {
    std::env::var_os("PHM_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
        .join("ecqm")
}

fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("json"))
        .collect();
    v.sort();
    v
}

/// (type, id) of a reference string: relative, absolute or versioned.
fn parse_ref(r: &str) -> Option<(&str, &str)> {
    let r = r.split("/_history/").next().unwrap_or(r);
    let (ty, id) = r.rsplit_once('/')?;
    Some((ty.rsplit('/').next().unwrap_or(ty), id))
}

fn rewrite_refs(v: &mut Value, ids: &HashMap<(String, String), String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if k == "reference" {
                    if let Some(s) = x.as_str() {
                        if let Some((t, id)) = parse_ref(s) {
                            if let Some(new) = ids.get(&(t.to_string(), id.to_string())) {
                                *x = Value::String(format!("{t}/{new}"));
                            }
                        }
                    }
                } else {
                    rewrite_refs(x, ids);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| rewrite_refs(x, ids)),
        _ => {}
    }
}

struct Case {
    measure: String,
    id: String,
    /// Patients named by a resource's subject/patient that are not the case's own.
    foreign_subjects: Vec<String>,
}

/// Writes every case (of `only` measure, or all) as NDJSON, one file per type, under `out`.
fn write_cases(ecqm: &Path, out: &Path, only: Option<&str>) -> Vec<Case> {
    std::fs::create_dir_all(out).unwrap();
    let mut files: BTreeMap<String, std::io::BufWriter<std::fs::File>> = BTreeMap::new();
    let mut cases = Vec::new();
    let mut n = 0usize;
    for mdir in json_files(&ecqm.join("measures")) {
        let measure = mdir.file_stem().unwrap().to_string_lossy().to_string();
        if only.is_some_and(|m| m != measure) {
            continue;
        }
        for case in json_files(&ecqm.join("cases").join(&measure)) {
            n += 1;
            let bundle: Value = serde_json::from_slice(&std::fs::read(&case).unwrap()).unwrap();
            let mut resources: Vec<Value> = bundle["entry"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|e| e.get("resource").cloned())
                .collect();
            let patient_id = resources
                .iter()
                .find(|r| r["resourceType"] == "Patient")
                .and_then(|r| r["id"].as_str())
                .unwrap()
                .to_string();
            let mut ids = HashMap::new();
            for (i, r) in resources.iter().enumerate() {
                let (t, id) = (
                    r["resourceType"].as_str().unwrap(),
                    r["id"].as_str().unwrap(),
                );
                if t != "Patient" {
                    // Ids can be 64 characters already: case and position, not a prefix.
                    ids.insert((t.to_string(), id.to_string()), format!("c{n}-r{i}"));
                }
            }
            let mut foreign = Vec::new();
            for r in &mut resources {
                let t = r["resourceType"].as_str().unwrap().to_string();
                if let Some(new) = ids.get(&(t.clone(), r["id"].as_str().unwrap().to_string())) {
                    r["id"] = Value::String(new.clone());
                }
                rewrite_refs(r, &ids);
                if t == "Patient" {
                    if let Some(idents) = r.get_mut("identifier").and_then(Value::as_array_mut) {
                        for i in idents {
                            if let Some(v) = i.get("value").and_then(Value::as_str) {
                                i["value"] = Value::String(format!("c{n}-{v}"));
                            }
                        }
                    }
                }
                for e in ["subject", "patient", "beneficiary"] {
                    if let Some(s) = r
                        .get(e)
                        .and_then(|x| x.get("reference"))
                        .and_then(Value::as_str)
                    {
                        if let Some(("Patient", pid)) = parse_ref(s) {
                            if pid != patient_id {
                                foreign.push(pid.to_string());
                            }
                        }
                    }
                }
                let w = files.entry(t.clone()).or_insert_with(|| {
                    std::io::BufWriter::new(
                        std::fs::File::create(out.join(format!("{t}.ndjson"))).unwrap(),
                    )
                });
                writeln!(w, "{r}").unwrap();
            }
            cases.push(Case {
                measure: measure.clone(),
                id: patient_id,
                foreign_subjects: foreign,
            });
        }
    }
    for (_, mut w) in files {
        w.flush().unwrap();
    }
    cases
}

/// A new EDW with the NDJSON in `nd` ingested, matched and measured for 2025.
fn measured_edw(nd: &Path, package: &Path) -> (testkit::pgharness::PgHarness, postgres::Client) {
    let pg = testkit::pgharness::PgHarness::start().unwrap();
    let url = pg.create_db("official").unwrap();
    let mut c = edw::connect(&url).unwrap();
    edw::migrate::migrate(&mut c).unwrap();
    measure_into(&mut c, nd, package);
    (pg, c)
}

fn measure_into(c: &mut postgres::Client, nd: &Path, package: &Path) {
    let opts = edw::ingest::Options::new("madie");
    edw::ingest::ingest(c, &[nd.to_path_buf()], &opts).unwrap();
    edw::matching::run(c, &edw::matching::Params::default()).unwrap();
    let rep = edw::measure::run(c, package, 2025).unwrap();
    assert_eq!(rep.errors, 0, "persons whose evaluation failed");
}

/// `results` lines, sorted (the order is by person, whose ids depend on the load).
fn sorted_results(c: &mut postgres::Client) -> Vec<String> {
    let mut out = Vec::new();
    edw::results::write_results(c, 2025, None, &mut out).unwrap();
    let mut lines: Vec<String> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

/// The scorer's rule: every expected population of every expected group equal.
fn passes(expected: &Value, got: Option<&Value>) -> bool {
    let Some(got) = got else { return false };
    let gg = got["groups"].as_array().cloned().unwrap_or_default();
    expected["groups"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .all(|(i, eg)| {
            let g = gg
                .iter()
                .find(|g| g["id"] == eg["id"])
                .or_else(|| gg.get(i));
            let Some(g) = g else { return false };
            eg["populations"]
                .as_object()
                .unwrap()
                .iter()
                .all(|(code, n)| g["populations"].get(code).and_then(Value::as_i64) == n.as_i64())
        })
}

#[test]
fn official_cases_through_the_edw_score_as_the_engine() {
    let ecqm = ecqm_dir();
    assert!(
        ecqm.join("score").exists(),
        "shared/ecqm missing: {}",
        ecqm.display()
    );
    let tmp = tempfile::tempdir().unwrap();
    let nd = tmp.path().join("ndjson");
    let cases = write_cases(&ecqm, &nd, None);
    assert_eq!(cases.len(), 515);

    let expected: HashMap<(String, String), Value> = cases
        .iter()
        .map(|c| {
            let p = ecqm
                .join("expected")
                .join(&c.measure)
                .join(format!("{}.json", c.id));
            let v: Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
            ((c.measure.clone(), c.id.clone()), v)
        })
        .collect();

    // The engine on each case bundle directly: the reference.
    let mut engine_pass: BTreeSet<(String, String)> = BTreeSet::new();
    for mpath in json_files(&ecqm.join("measures")) {
        let measure = mpath.file_stem().unwrap().to_string_lossy().to_string();
        let pkg = MeasurePackage::load(&mpath).unwrap();
        let prepared = pkg.prepare(&pkg.default_period().unwrap()).unwrap();
        for case in json_files(&ecqm.join("cases").join(&measure)) {
            let rec = PatientItem::File(case).load().unwrap();
            let Ok(r) = prepared.evaluate(&rec, ecqm::EvalOptions::default()) else {
                continue;
            };
            let got = serde_json::to_value(&r).unwrap();
            if passes(&expected[&(measure.clone(), rec.id.clone())], Some(&got)) {
                engine_pass.insert((measure.clone(), rec.id));
            }
        }
    }
    assert!(
        engine_pass.len() >= 513,
        "engine passes {}",
        engine_pass.len()
    );

    // Through the EDW.
    let (_pg, mut c) = measured_edw(&nd, &ecqm.join("measures"));
    let results = tmp.path().join("results.jsonl");
    edw::results::write_file_atomically(&results, |w| {
        edw::results::write_results(&mut c, 2025, None, w)
    })
    .unwrap();
    let lines: HashMap<(String, String), Value> = std::fs::read_to_string(&results)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                (
                    v["measure"].as_str().unwrap().into(),
                    v["case"].as_str().unwrap().into(),
                ),
                v,
            )
        })
        .collect();

    // Cases the EDW cannot see as their bundle shows them.
    let loaded: BTreeSet<&str> = cases.iter().map(|c| c.id.as_str()).collect();
    let mut not_as_bundled: BTreeMap<(String, String), String> = BTreeMap::new();
    for case in &cases {
        for f in &case.foreign_subjects {
            let key = (case.measure.clone(), case.id.clone());
            if loaded.contains(f.as_str()) {
                not_as_bundled.insert(
                    key,
                    "a resource names another case's patient as its subject".into(),
                );
                for other in cases.iter().filter(|o| o.id == *f) {
                    not_as_bundled.insert(
                        (other.measure.clone(), other.id.clone()),
                        "receives a resource of another case that names this patient".into(),
                    );
                }
            } else {
                not_as_bundled.insert(
                    key,
                    "a resource names a patient not in the load (quarantined)".into(),
                );
            }
        }
    }
    let quarantined_subjects: i64 = c
        .query_one(
            "SELECT count(*) FROM edw.quarantine WHERE reason ~ '^(unresolved reference )?(subject|patient|beneficiary)'",
            &[],
        )
        .unwrap()
        .get(0);
    let other_quarantine: Vec<(String, String)> = c
        .query(
            "SELECT resource_type, reason FROM edw.quarantine
             WHERE reason !~ '^(unresolved reference )?(subject|patient|beneficiary)'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(
        other_quarantine.is_empty(),
        "quarantined for other reasons: {other_quarantine:?}"
    );

    let mut edw_pass = 0usize;
    let mut regressions = Vec::new();
    for case in &cases {
        let key = (case.measure.clone(), case.id.clone());
        let ok = passes(&expected[&key], lines.get(&key));
        edw_pass += ok as usize;
        if engine_pass.contains(&key) && !ok && !not_as_bundled.contains_key(&key) {
            regressions.push(format!("{} {}", key.0, key.1));
        }
    }
    println!(
        "official cases: engine {} / 515, EDW {edw_pass} / 515; {quarantined_subjects} resources quarantined for an unknown subject",
        engine_pass.len()
    );
    for ((m, id), why) in &not_as_bundled {
        let ok = passes(
            &expected[&(m.clone(), id.clone())],
            lines.get(&(m.clone(), id.clone())),
        );
        println!(
            "  not as bundled: {m} {id}: {why} ({})",
            if ok { "passes anyway" } else { "fails" }
        );
    }
    assert!(
        regressions.is_empty(),
        "the EDW fails cases the engine passes: {regressions:#?}"
    );

    // The same load on Citus (a coordinator and two workers, distributed before the first
    // ingest) stores the same results.
    if testkit::citus::citus_installed() || std::env::var_os("CI").is_some() {
        let mut cluster = testkit::citus::CitusCluster::start(2).unwrap();
        let url = cluster.create_db("official").unwrap();
        let mut cc = edw::connect(&url).unwrap();
        edw::migrate::migrate_citus(&mut cc).unwrap();
        measure_into(&mut cc, &nd, &ecqm.join("measures"));
        let on_cluster = sorted_results(&mut cc);
        let one_node = sorted_results(&mut c);
        assert_eq!(one_node.len(), lines.len());
        let only = |a: &[String], b: &[String]| -> Vec<String> {
            a.iter()
                .filter(|l| b.binary_search(l).is_err())
                .take(5)
                .cloned()
                .collect()
        };
        assert_eq!(
            (only(&on_cluster, &one_node), only(&one_node, &on_cluster)),
            (vec![], vec![]),
            "results only on the cluster, only on one node"
        );
        println!(
            "official cases on Citus (coordinator + 2 workers): {} result lines, the same as one node's",
            on_cluster.len()
        );
    } else {
        eprintln!("Citus not installed: the cluster half is skipped (../shared/citus/install)");
    }

    // The official scorer agrees with the count above.
    let out = std::process::Command::new("python3")
        .arg(ecqm.join("score"))
        .arg(&results)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text
        .lines()
        .rev()
        .find(|l| l.contains("passed"))
        .unwrap_or("");
    assert_eq!(
        last.trim(),
        format!("{edw_pass} passed, {} failed", 515 - edw_pass),
        "{text}"
    );
}

/// A multi-group measure with a numerator exclusion: the gap status of every patient
/// and group is the same through the engine's worklist report (what `phm-ecqm eval
/// --report worklist` writes) and through the EDW. The statin measure (four groups,
/// with exceptions) gets a numerator exclusion on its first group, so that some
/// patients meet the numerator and are excluded from it.
#[test]
fn gap_status_per_group_with_numerator_exclusion_equals_the_engine() {
    let ecqm = ecqm_dir();
    let name = "StatinTherapyforthePreventionandTreatmentofCardiovascularDiseaseFHIR";
    let tmp = tempfile::tempdir().unwrap();
    let nd = tmp.path().join("ndjson");
    let cases = write_cases(&ecqm, &nd, Some(name));

    let mut bundle: Value = serde_json::from_slice(
        &std::fs::read(ecqm.join("measures").join(format!("{name}.json"))).unwrap(),
    )
    .unwrap();
    let measure = bundle["entry"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .map(|e| &mut e["resource"])
        .find(|r| r["resourceType"] == "Measure")
        .unwrap();
    let groups = measure["group"].as_array_mut().unwrap();
    assert_eq!(groups.len(), 4);
    // Numerator exclusion of group 1 with the numerator's own criteria: every patient
    // meeting the numerator is excluded from it, so their gap is open, not closed.
    let pops = groups[0]["population"].as_array_mut().unwrap();
    let numer = pops
        .iter()
        .find(|p| p["code"]["coding"][0]["code"] == "numerator")
        .map(|p| p["criteria"].clone())
        .unwrap();
    pops.push(serde_json::json!({
        "id": "numex-1",
        "code": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/measure-population",
                             "code": "numerator-exclusion"}]},
        "criteria": numer,
    }));
    let pkg_dir = tmp.path().join("pkg");
    std::fs::create_dir_all(&pkg_dir).unwrap();
    let pkg = pkg_dir.join(format!("{name}.json"));
    std::fs::write(&pkg, bundle.to_string()).unwrap();

    // The engine on each case bundle, as phm-ecqm's worklist report: one row per
    // patient and group with a gap status.
    let package = MeasurePackage::load(&pkg).unwrap();
    let period = ecqm::Period::new("2025-01-01", "2025-12-31").unwrap();
    let prepared = package.prepare(&period).unwrap();
    let ctx = ecqm::ReportContext::new(period.clone(), ecqm::period::now_utc());
    let as_of = ecqm::period::now_utc()[..10].to_string();
    let mut engine: BTreeMap<(String, String), String> = BTreeMap::new();
    for case in json_files(&ecqm.join("cases").join(name)) {
        let rec = PatientItem::File(case).load().unwrap();
        let r = prepared
            .evaluate(&rec, ecqm::EvalOptions::default())
            .unwrap();
        for row in ecqm::report::gap_rows(&prepared.def, &r, &ctx, &as_of) {
            let status = match row["status"].as_str().unwrap() {
                "open-gap" => "open",
                "closed-gap" => "closed",
                "prospective-gap" => "prospective",
                other => panic!("status {other}"),
            };
            engine.insert(
                (rec.id.clone(), row["group"].as_str().unwrap().to_string()),
                status.to_string(),
            );
        }
    }

    let (_pg, mut c) = measured_edw(&nd, &pkg);
    let via_edw: BTreeMap<(String, String), String> = c
        .query(
            "SELECT DISTINCT ON (g.id) sp.source_id, g.group_id, g.status FROM edw.care_gap g
             JOIN edw.source_patient sp ON sp.person_id = g.person_id
             WHERE g.status <> 'not-applicable' ORDER BY g.id, sp.id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| ((r.get(0), r.get(1)), r.get(2)))
        .collect();

    // Persons whose load differs from their bundle (see the test above) are left out
    // on both sides.
    let loaded: BTreeSet<&str> = cases.iter().map(|c| c.id.as_str()).collect();
    let mut differ: BTreeSet<String> = BTreeSet::new();
    for case in &cases {
        for f in &case.foreign_subjects {
            differ.insert(case.id.clone());
            if loaded.contains(f.as_str()) {
                differ.insert(f.clone());
            }
        }
    }
    let keep = |m: &BTreeMap<(String, String), String>| -> BTreeMap<(String, String), String> {
        m.iter()
            .filter(|((p, _), _)| !differ.contains(p))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    let (engine, via_edw) = (keep(&engine), keep(&via_edw));
    let groups: BTreeSet<&str> = engine.keys().map(|k| k.1.as_str()).collect();
    assert_eq!(groups.len(), 4, "gaps in every group: {groups:?}");
    assert!(engine.values().any(|s| s == "closed") && engine.values().any(|s| s == "open"));
    assert_eq!(via_edw, engine);
    // The exclusion mattered: patients in group 1's numerator and its exclusion have
    // an open gap.
    let g1: String = prepared.def.groups[0].id.clone();
    let excluded: i64 = c
        .query_one(
            "SELECT count(*) FROM edw.measure_result r JOIN edw.care_gap g
               ON g.person_id = r.person_id AND g.measure_id = r.measure_id AND g.group_id = r.group_id
             WHERE r.group_id = $1 AND r.population = 'numerator-exclusion' AND r.count = 1 AND g.status = 'open'",
            &[&g1],
        )
        .unwrap()
        .get(0);
    assert!(excluded > 0, "no patient met group 1's numerator");
}
