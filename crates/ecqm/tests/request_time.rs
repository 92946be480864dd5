//! A batch is one evaluation request: `Now()` is one timestamp for every patient of a run.
//! An official measure's main library gets one more definition, `Evaluated At: Now()`, read back
//! as a supplemental data element of every patient.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use ecqm::engine::{evaluate_batch, MeasurePackage, PreparedMeasure};
use ecqm::package::SdeDef;
use ecqm::patients::PatientItem;
use ecqm::EvalOptions;
use serde_json::{json, Value as Json};

fn shared_dir() -> PathBuf {
    std::env::var_os("PHM_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
}

/// BreastCancerScreeningFHIR with `define "Evaluated At": Now()` and that definition as a
/// supplemental data element.
fn measure_reading_now(bundle: &Path) -> PreparedMeasure {
    let mut bundle: Json = serde_json::from_slice(&std::fs::read(bundle).unwrap()).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let main_url = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["resource"]["resourceType"] == "Measure")
        .map(|e| e["resource"]["library"][0].as_str().unwrap().to_string())
        .unwrap();
    let library = bundle["entry"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .map(|e| &mut e["resource"])
        .find(|r| r["resourceType"] == "Library" && r["url"] == main_url.as_str())
        .unwrap();
    let content = library["content"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|c| c["contentType"] == "application/elm+json")
        .unwrap();
    let mut elm: Json =
        serde_json::from_slice(&b64.decode(content["data"].as_str().unwrap()).unwrap()).unwrap();
    elm["library"]["statements"]["def"]
        .as_array_mut()
        .unwrap()
        .push(
            json!({"name": "Evaluated At", "context": "Patient", "accessLevel": "Public",
                     "expression": {"type": "Now"}}),
        );
    content["data"] = Json::String(b64.encode(serde_json::to_vec(&elm).unwrap()));

    let package = MeasurePackage::from_json(&bundle).unwrap();
    let mut measure = package.prepare(&package.default_period().unwrap()).unwrap();
    measure.def.supplemental_data.push(SdeDef {
        id: "evaluated-at".into(),
        expression: "Evaluated At".into(),
    });
    measure
}

/// The `Now()` each patient of one batch saw, in patient order.
fn nows(measure: &PreparedMeasure, items: &[PatientItem], cx: cql::EvalContext) -> Vec<Json> {
    let opts = EvalOptions {
        supplemental_data: true,
        ..EvalOptions::default()
    };
    evaluate_batch(std::slice::from_ref(measure), items, opts, false, cx)
        .into_iter()
        .map(|o| {
            let result = o.results.unwrap().remove(0).unwrap();
            let (_, now) = result
                .sde
                .into_iter()
                .find(|(id, _)| id == "evaluated-at")
                .unwrap();
            now
        })
        .collect()
}

#[test]
fn now_is_one_timestamp_for_every_patient_of_a_batch() {
    let shared = shared_dir().join("ecqm");
    let bundle = shared.join("measures/BreastCancerScreeningFHIR.json");
    if !bundle.is_file() {
        eprintln!("skipping: {} not found", bundle.display());
        return;
    }
    let measure = measure_reading_now(&bundle);
    let mut cases: Vec<PathBuf> = std::fs::read_dir(shared.join("cases/BreastCancerScreeningFHIR"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    cases.sort();
    assert!(cases.len() > 10, "{} cases", cases.len());
    let items: Vec<PatientItem> = cases.into_iter().map(PatientItem::File).collect();

    // A pinned request: every patient sees exactly that timestamp.
    let pinned = cql::datetime::parse_datetime("2026-03-04T05:06:07.089Z", 0).unwrap();
    let seen = nows(&measure, &items, cql::EvalContext::at(pinned));
    assert_eq!(seen.len(), items.len());
    let expected = json!("2026-03-04T05:06:07.089Z");
    for now in &seen {
        assert_eq!(now, &expected);
    }

    // A request read from the clock: one value for the whole run, however long it takes and
    // however many batches it has.
    let run = cql::EvalContext::from_clock();
    let first = nows(&measure, &items[..items.len() / 2], run);
    std::thread::sleep(Duration::from_millis(20));
    let second = nows(&measure, &items[items.len() / 2..], run);
    let all: Vec<&Json> = first.iter().chain(&second).collect();
    assert!(all.iter().all(|n| *n == all[0]), "{all:?}");
    assert_ne!(all[0], &expected);
    // A new request is a new timestamp.
    std::thread::sleep(Duration::from_millis(20));
    let later = nows(&measure, &items[..1], cql::EvalContext::from_clock());
    assert_ne!(&later[0], all[0]);
}
