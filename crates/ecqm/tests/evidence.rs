//! Care-gap evidence derived from the ELM (`ecqm::evidence`), over the real measure packages and
//! official cases in `shared/ecqm` (`PHM_SHARED` overrides the location of `shared/`).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use ecqm::engine::{patient_data, MeasurePackage, PreparedMeasure};
use ecqm::patients::{PatientItem, PatientRecord};
use ecqm::{
    gap_status, EvalOptions, GapStatus, GroupEvidence, GroupResult, ImprovementOverrides, Period,
    PopulationCode,
};
use serde_json::Value as Json;

fn shared_dir() -> PathBuf {
    std::env::var_os("PHM_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
}

fn ecqm_dir() -> Option<PathBuf> {
    let d = shared_dir().join("ecqm");
    if d.join("measures").is_dir() {
        Some(d)
    } else {
        eprintln!("skipping: {} not found", d.display());
        None
    }
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.retain(|p| p.extension().and_then(|e| e.to_str()) == Some("json"));
    v.sort();
    v
}

fn load(dir: &Path, name: &str) -> (MeasurePackage, PreparedMeasure) {
    let pkg = MeasurePackage::load(&dir.join("measures").join(format!("{name}.json"))).unwrap();
    let m = pkg.prepare(&pkg.default_period().unwrap()).unwrap();
    (pkg, m)
}

/// The `text/cql` of the bundle's Library named `library`.
fn cql_text(dir: &Path, measure: &str, library: &str) -> String {
    use base64::Engine as _;
    let b: Json = serde_json::from_slice(
        &std::fs::read(dir.join("measures").join(format!("{measure}.json"))).unwrap(),
    )
    .unwrap();
    for e in b["entry"].as_array().unwrap() {
        let r = &e["resource"];
        if r["resourceType"] == "Library" && r["name"] == library {
            for c in r["content"].as_array().unwrap() {
                if c["contentType"] == "text/cql" {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(c["data"].as_str().unwrap())
                        .unwrap();
                    return String::from_utf8(bytes).unwrap();
                }
            }
        }
    }
    panic!("no CQL for {library}");
}

fn open_gap(m: &PreparedMeasure) -> impl Fn(&GroupResult) -> bool + '_ {
    move |g: &GroupResult| {
        let def = m.def.groups.iter().find(|d| d.id == g.id).unwrap();
        let n = ImprovementOverrides::default().notation(&m.def, def);
        gap_status(&g.populations, n, true) == GapStatus::Open
    }
}

fn evidence_for(
    m: &PreparedMeasure,
    rec: &PatientRecord,
    want: &dyn Fn(&GroupResult) -> bool,
) -> (ecqm::PatientResult, Vec<GroupEvidence>) {
    let data = patient_data(rec.resources.clone()).unwrap();
    let memo = cql::PatientMemo::new(&data);
    m.evaluate_with_evidence(&memo, &rec.id, EvalOptions::default(), want)
        .unwrap()
}

#[test]
fn breast_cancer_screening_mammography_window() {
    let Some(dir) = ecqm_dir() else { return };
    let name = "BreastCancerScreeningFHIR";
    // The window comes from the numerator's CQL:
    //   [Observation: "Mammography"] ... ends during day of
    //   Interval["October 1 Two Years Prior to the Measurement Period", end of "Measurement Period"]
    // with "October 1 Two Years Prior..." = DateTime((year from start of "Measurement Period" - 2), 10, 1, ...)
    let cql = cql_text(&dir, name, name);
    assert!(cql.contains("valueset \"Mammography\": 'http://cts.nlm.nih.gov/fhir/ValueSet/2.16.840.1.113883.3.464.1003.108.12.1018'"));
    assert!(cql.contains("[Observation: \"Mammography\"]"));
    assert!(cql.contains("ends during day of Interval[\"October 1 Two Years Prior to the Measurement Period\", end of \"Measurement Period\"]"));
    assert!(cql.contains(
        "DateTime((year from start of \"Measurement Period\" - 2), 10, 1, 0, 0, 0, 0, 0)"
    ));

    let (pkg, m) = load(&dir, name);
    let reqs = m.closing_requirements(0);
    let mammo = reqs
        .iter()
        .find(|r| r.value_set_name.as_deref() == Some("Mammography"))
        .unwrap_or_else(|| panic!("no Mammography requirement in {reqs:#?}"));
    assert_eq!(mammo.resource_type, "Observation");
    assert_eq!(
        mammo.value_set_url.as_deref(),
        Some("http://cts.nlm.nih.gov/fhir/ValueSet/2.16.840.1.113883.3.464.1003.108.12.1018")
    );
    assert_eq!(mammo.code_property.as_deref(), Some("code"));
    assert_eq!(mammo.code, None);
    // measurement period 2025-01-01..2025-12-31: October 1 of 2023 through the period's end
    assert_eq!(
        mammo.window,
        Some(("2023-10-01".to_string(), "2025-12-31".to_string()))
    );
    assert_eq!(mammo.text, "Mammography between 2023-10-01 and 2025-12-31");
    // evaluated from the prepared period, not fixed
    let m24 = pkg
        .prepare(&Period::new("2024-01-01", "2024-12-31").unwrap())
        .unwrap();
    let w24 = m24
        .closing_requirements(0)
        .iter()
        .find(|r| r.value_set_name.as_deref() == Some("Mammography"))
        .and_then(|r| r.window.clone());
    assert_eq!(
        w24,
        Some(("2022-10-01".to_string(), "2024-12-31".to_string()))
    );
    // out of range
    assert!(m.closing_requirements(7).is_empty());
}

#[test]
fn windows_relative_to_the_period_are_evaluated() {
    let Some(dir) = ecqm_dir() else { return };
    // ColonCancerScreening: `during day of Interval[start of "Measurement Period" - 9 years, end of "Measurement Period"]`
    let name = "ColonCancerScreeningFHIR";
    let cql = cql_text(&dir, name, name);
    assert!(cql.contains("[Procedure: \"Colonoscopy\"]"));
    assert!(cql.contains("ends during day of Interval[start of \"Measurement Period\" - 9 years, end of \"Measurement Period\"]"));
    let (_, m) = load(&dir, name);
    let colonoscopy = m
        .closing_requirements(0)
        .iter()
        .find(|r| r.value_set_name.as_deref() == Some("Colonoscopy"))
        .unwrap();
    assert_eq!(colonoscopy.resource_type, "Procedure");
    assert_eq!(
        colonoscopy.window,
        Some(("2016-01-01".to_string(), "2025-12-31".to_string()))
    );
    // ControllingHighBloodPressure: a retrieve by profile only (`["observation-bp"]`), restricted
    // `during day of "Measurement Period"`
    let (_, m) = load(&dir, "ControllingHighBloodPressureFHIR");
    let reqs = m.closing_requirements(0);
    assert!(
        reqs.iter().any(|r| r.resource_type == "Observation"
            && r.value_set_url.is_none()
            && r.window == Some(("2025-01-01".to_string(), "2025-12-31".to_string()))),
        "{reqs:#?}"
    );
}

#[test]
fn every_measure_has_closing_requirements() {
    let Some(dir) = ecqm_dir() else { return };
    let pkgs = MeasurePackage::load_all(&dir.join("measures")).unwrap();
    assert_eq!(pkgs.len(), 12);
    let mut groups = 0;
    for p in &pkgs {
        let m = p.prepare(&p.default_period().unwrap()).unwrap();
        for (gi, g) in m.def.groups.iter().enumerate() {
            if g.population(PopulationCode::Numerator).is_none() {
                continue;
            }
            groups += 1;
            let reqs = m.closing_requirements(gi);
            assert!(!reqs.is_empty(), "{} group {}", m.def.name, g.id);
            for r in reqs {
                assert!(!r.text.is_empty() && !r.resource_type.is_empty(), "{r:?}");
                assert_ne!(r.resource_type, "Patient");
                // a value set has its url; a named value set or code filters a property
                if r.value_set_name.is_some() {
                    assert!(r.value_set_url.is_some(), "{r:?}");
                }
                if r.value_set_url.is_some() || r.code.is_some() {
                    assert!(r.code_property.is_some(), "{r:?}");
                }
                if let Some((s, e)) = &r.window {
                    assert!(s.len() == 10 && e.len() == 10 && s <= e, "{r:?}");
                    assert!(r.text.contains(s.as_str()) && r.text.contains(e.as_str()));
                }
            }
            // patient-independent: the same on every call
            assert_eq!(reqs, m.closing_requirements(gi));
        }
    }
    assert_eq!(
        groups, 17,
        "10 one-group measures, CMS138 with 3 groups, CMS347 with 4"
    );
}

/// The most recent blood-pressure Observation of a case bundle: (systolic, diastolic, date).
fn latest_bp(rec: &PatientRecord) -> Option<(String, String, String)> {
    let mut best: Option<(String, String, String)> = None;
    for r in &rec.resources {
        if r["resourceType"] != "Observation" {
            continue;
        }
        let comps = r["component"].as_array()?;
        let val = |code: &str| {
            comps
                .iter()
                .find(|c| c["code"]["coding"][0]["code"] == code)
                .map(|c| c["valueQuantity"]["value"].to_string())
        };
        let (Some(s), Some(d)) = (val("8480-6"), val("8462-4")) else {
            continue;
        };
        let date = r["effectiveDateTime"].as_str()?.get(..10)?.to_string();
        if best.as_ref().is_none_or(|b| date > b.2) {
            best = Some((s, d, date));
        }
    }
    best
}

#[test]
fn controlling_blood_pressure_why_open_shows_the_most_recent_reading() {
    let Some(dir) = ecqm_dir() else { return };
    let name = "ControllingHighBloodPressureFHIR";
    let (_, m) = load(&dir, name);
    let want = open_gap(&m);
    let mut with_bp = 0;
    for f in files(&dir.join("cases").join(name)) {
        let rec = PatientItem::File(f).load().unwrap();
        let (res, ev) = evidence_for(&m, &rec, &want);
        if ev.is_empty() {
            continue;
        }
        // numerator false, in the denominator
        let pops = &res.groups[0].populations;
        assert!(pops.is(PopulationCode::Denominator) && !pops.is(PopulationCode::Numerator));
        let why = &ev[0].why_open;
        // population criteria themselves (plain booleans) are not listed
        for crit in ["Initial Population", "Denominator", "Numerator"] {
            assert!(why.iter().all(|w| w.name != crit), "{why:#?}");
        }
        for w in why {
            assert!(
                w.name.chars().count() + 2 + w.text.chars().count() <= 160,
                "{w:?}"
            );
        }
        let line = |n: &str| {
            why.iter()
                .find(|w| w.name == n)
                .map(|w| w.text.clone())
                .unwrap_or_default()
        };
        let Some((sys, dia, date)) = latest_bp(&rec) else {
            assert_eq!(line("Most Recent Blood Pressure Day"), "none");
            continue;
        };
        if line("Most Recent Blood Pressure Day") == "none" {
            continue; // not a qualifying reading (outside the period, or during an ED visit)
        }
        with_bp += 1;
        assert_eq!(line("Most Recent Blood Pressure Day"), date);
        let reading = format!("{sys}/{dia} mm[Hg] on {date}");
        assert!(
            why.iter().any(|w| w.text.contains(&reading)),
            "{}: no line with {reading:?} in {why:#?}",
            rec.id
        );
        if rec.id == "bff7264b-35fc-402b-8a15-22c78e227064" {
            // SBP 140 / DBP 89 on 2025-01-01: systolic not below 140
            assert_eq!(
                line("Lowest Systolic Reading on Most Recent Blood Pressure Day"),
                "140 mm[Hg]"
            );
            assert_eq!(line("Has Systolic Blood Pressure Less Than 140"), "no");
            assert_eq!(line("Has Diastolic Blood Pressure Less Than 90"), "yes");
        }
    }
    assert!(
        with_bp >= 1,
        "no open-gap case with a blood pressure reading"
    );
}

#[test]
fn which_data_ids_exist_in_the_case_bundle() {
    let Some(dir) = ecqm_dir() else { return };
    let pkgs = MeasurePackage::load_all(&dir.join("measures")).unwrap();
    let mut linked = 0;
    for p in &pkgs {
        let m = p.prepare(&p.default_period().unwrap()).unwrap();
        let want = open_gap(&m);
        for f in files(&dir.join("cases").join(&m.def.name)) {
            let rec = PatientItem::File(f).load().unwrap();
            let ids: HashSet<(String, String)> = rec
                .resources
                .iter()
                .filter_map(|r| {
                    Some((
                        r["resourceType"].as_str()?.to_string(),
                        r["id"].as_str()?.to_string(),
                    ))
                })
                .collect();
            let (res, ev) = evidence_for(&m, &rec, &want);
            for e in &ev {
                let g = res.groups.iter().find(|g| g.id == e.group_id).unwrap();
                let mut seen = HashSet::new();
                for d in &e.data {
                    assert!(
                        ids.contains(&(d.resource_type.clone(), d.id.clone())),
                        "{}/{}: {d:?} not in the bundle",
                        m.def.name,
                        rec.id
                    );
                    // only populations the patient is in, each resource once per population
                    assert!(g.populations.is(d.population), "{d:?}");
                    assert!(seen.insert((d.population, &d.resource_type, &d.id)));
                    assert_ne!(d.resource_type, "Patient");
                    linked += 1;
                }
                // an open gap's patient is not excluded: no evidence from the exclusions
                assert!(e
                    .data
                    .iter()
                    .all(|d| d.population != PopulationCode::DenominatorExclusion));
            }
        }
    }
    assert!(linked > 100, "{linked}");

    // one case in detail: the hypertension diagnosis and the qualifying encounters made the
    // initial population (and so the denominator) true
    let (_, m) = load(&dir, "ControllingHighBloodPressureFHIR");
    let rec =
        PatientItem::File(dir.join(
            "cases/ControllingHighBloodPressureFHIR/bff7264b-35fc-402b-8a15-22c78e227064.json",
        ))
        .load()
        .unwrap();
    let (_, ev) = evidence_for(&m, &rec, &open_gap(&m));
    let data: Vec<(PopulationCode, &str, &str)> = ev[0]
        .data
        .iter()
        .map(|d| (d.population, d.resource_type.as_str(), d.id.as_str()))
        .collect();
    for pop in [
        PopulationCode::InitialPopulation,
        PopulationCode::Denominator,
    ] {
        assert!(
            data.contains(&(pop, "Condition", "Condition-6")),
            "{data:?}"
        );
        assert!(
            data.contains(&(pop, "Encounter", "Encounter-6")),
            "{data:?}"
        );
    }
    assert!(!data.iter().any(|d| d.1 == "Observation"), "{data:?}");
    let j = serde_json::to_value(&ev[0].data[0]).unwrap();
    assert_eq!(j["population"], "initial-population");
}

#[test]
fn evidence_only_where_wanted_and_results_unchanged() {
    let Some(dir) = ecqm_dir() else { return };
    let pkgs = MeasurePackage::load_all(&dir.join("measures")).unwrap();
    for p in &pkgs {
        let m = p.prepare(&p.default_period().unwrap()).unwrap();
        for f in files(&dir.join("cases").join(&m.def.name)).iter().take(6) {
            let rec = PatientItem::File(f.clone()).load().unwrap();
            let data = patient_data(rec.resources.clone()).unwrap();
            let memo = cql::PatientMemo::new(&data);
            let plain = m
                .evaluate_memo(&memo, &rec.id, EvalOptions::default())
                .unwrap();
            let (none_res, none) = m
                .evaluate_with_evidence(&memo, &rec.id, EvalOptions::default(), &|_| false)
                .unwrap();
            assert!(none.is_empty());
            assert_eq!(none_res, plain);
            let memo2 = cql::PatientMemo::new(&data);
            let (all_res, all) = m
                .evaluate_with_evidence(&memo2, &rec.id, EvalOptions::default(), &|_| true)
                .unwrap();
            assert_eq!(all_res, plain);
            assert_eq!(
                all.iter().map(|e| e.group_id.as_str()).collect::<Vec<_>>(),
                m.def
                    .groups
                    .iter()
                    .map(|g| g.id.as_str())
                    .collect::<Vec<_>>()
            );
            // only the second group, when there is one
            if let Some(g2) = m.def.groups.get(1) {
                let (_, some) = m
                    .evaluate_with_evidence(&memo2, &rec.id, EvalOptions::default(), &|g| {
                        g.id == g2.id
                    })
                    .unwrap();
                assert_eq!(some.len(), 1);
                assert_eq!(some[0], all[1]);
            }
            // round trip
            let j = serde_json::to_string(&all).unwrap();
            let back: Vec<GroupEvidence> = serde_json::from_str(&j).unwrap();
            assert_eq!(back, all);
        }
    }
}
