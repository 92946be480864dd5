//! Public API behaviour on a real measure package.

use cql::{datetime::parse_datetime, LibrarySet, Parameters, PatientData, Value};
use std::path::PathBuf;

fn shared() -> PathBuf {
    std::env::var("PHM_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
}

fn load(m: &str) -> (LibrarySet, Vec<PatientData>) {
    let dir = shared().join("ecqm");
    let bundle: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(format!("measures/{m}.json"))).unwrap())
            .unwrap();
    let mut cases: Vec<_> = std::fs::read_dir(dir.join("cases").join(m))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    let patients = cases
        .iter()
        .take(8)
        .map(|c| {
            PatientData::from_bundle(&serde_json::from_slice(&std::fs::read(c).unwrap()).unwrap())
                .unwrap()
        })
        .collect();
    (LibrarySet::from_measure_bundle(&bundle).unwrap(), patients)
}

#[test]
fn default_parameter_session_and_threads() {
    let m = "ControllingHighBloodPressureFHIR";
    let (set, patients) = load(m);
    let url = format!("https://madie.cms.gov/Library/{m}");
    let mp = Value::interval(
        Value::DateTime(parse_datetime("2025-01-01T00:00:00.000Z", 0).unwrap()),
        Value::DateTime(parse_datetime("2025-12-31T23:59:59.999Z", 0).unwrap()),
        true,
        true,
    );
    let explicit = set
        .prepare(&url, Parameters::new().with("Measurement Period", mp))
        .unwrap();
    // the ELM default of the parameter is the same period
    let default = set.prepare(m, Parameters::new()).unwrap();
    let exprs = [
        "Initial Population",
        "Denominator",
        "Denominator Exclusions",
        "Numerator",
        "SDE Sex",
    ];
    for p in &patients {
        let a = explicit.evaluate(p, &exprs).unwrap();
        let b = default.evaluate(p, &exprs).unwrap();
        let s = explicit.session(p);
        let c1 = s.evaluate(&exprs[..2]).unwrap();
        let c2 = s.evaluate(&exprs[2..]).unwrap();
        for (i, v) in a.iter().enumerate() {
            assert_eq!(
                v.to_json(),
                b[i].to_json(),
                "{} default vs explicit; MP default = {:?}",
                exprs[i],
                default.parameter("Measurement Period").map(|v| v.to_json())
            );
            let c = if i < 2 { &c1[i] } else { &c2[i - 2] };
            assert_eq!(v.to_json(), c.to_json());
        }
    }
    // Prepared is shared across threads
    let base: Vec<_> = patients
        .iter()
        .map(|p| {
            explicit
                .evaluate(p, &exprs)
                .unwrap()
                .iter()
                .map(|v| v.to_json())
                .collect::<Vec<_>>()
        })
        .collect();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for (p, want) in patients.iter().zip(&base) {
                    let got: Vec<_> = explicit
                        .evaluate(p, &exprs)
                        .unwrap()
                        .iter()
                        .map(|v| v.to_json())
                        .collect();
                    assert_eq!(&got, want);
                }
            });
        }
    });
    assert!(explicit
        .evaluate(&patients[0], &["No Such Expression"])
        .is_err());
    assert!(set.prepare("NoSuchLibrary", Parameters::new()).is_err());
}

/// Every ELM node of every measure package compiles to something the engine can evaluate.
#[test]
fn measures_have_no_unsupported_nodes() {
    let dir = shared().join("ecqm/measures");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for path in names {
        let bundle: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let set = LibrarySet::from_measure_bundle(&bundle).unwrap();
        let m = path.file_stem().unwrap().to_string_lossy().to_string();
        let p = set.prepare(&m, Parameters::new()).unwrap();
        assert_eq!(p.unsupported_nodes(), Vec::<String>::new(), "{m}");
    }
}

/// Evaluation fits comfortably in a small thread stack (worker pools often use 2 MiB or less).
#[test]
fn evaluation_fits_in_a_small_stack() {
    let (set, patients) =
        load("StatinTherapyforthePreventionandTreatmentofCardiovascularDiseaseFHIR");
    let p = set
        .prepare(
            "StatinTherapyforthePreventionandTreatmentofCardiovascularDiseaseFHIR",
            Parameters::new(),
        )
        .unwrap();
    let names = p.expression_names();
    let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .stack_size(512 * 1024)
            .spawn_scoped(s, || {
                for pd in &patients {
                    p.evaluate(pd, &refs).unwrap();
                }
            })
            .unwrap()
            .join()
            .unwrap();
    });
}

/// Terminology operators on a hand-written ELM library with a value set supplied as a FHIR ValueSet.
#[test]
fn terminology_operators() {
    let lit = |v: &str| serde_json::json!({"type": "Literal", "valueType": "{urn:hl7-org:elm-types:r1}String", "value": v});
    let lib = serde_json::json!({"library": {
    "identifier": {"id": "Term", "version": "1"},
    "codeSystems": {"def": [{"name": "LOINC", "id": "http://loinc.org"}]},
    "valueSets": {"def": [{"name": "VS", "id": "http://example.org/vs"}]},
    "codes": {"def": [{"name": "SBP", "id": "8480-6", "codeSystem": {"name": "LOINC"}}]},
    "statements": {"def": [
        {"name": "InVS", "context": "Unfiltered", "expression": {"type": "InValueSet", "code": {"type": "CodeRef", "name": "SBP"}, "valueset": {"name": "VS"}}},
        {"name": "InCS", "context": "Unfiltered", "expression": {"type": "InCodeSystem", "code": {"type": "CodeRef", "name": "SBP"}, "codesystem": {"name": "LOINC"}}},
        {"name": "Expand", "context": "Unfiltered", "expression": {"type": "ExpandValueSet", "operand": {"type": "ValueSetRef", "name": "VS"}}},
        {"name": "StrInVS", "context": "Unfiltered", "expression": {"type": "InValueSet", "code": lit("nope"), "valueset": {"name": "VS"}}}
    ]}}});
    let mut set = LibrarySet::from_elm_json(&[lib]).unwrap();
    set.add_valuesets(&[serde_json::json!({"resourceType": "ValueSet", "url": "http://example.org/vs",
        "expansion": {"contains": [{"system": "http://loinc.org", "code": "8480-6"}, {"system": "http://loinc.org", "code": "8462-4"}]}})]);
    let p = set.prepare("Term", Parameters::new()).unwrap();
    assert!(p.evaluate_unfiltered("InVS").unwrap().is_true());
    assert!(p.evaluate_unfiltered("InCS").unwrap().is_true());
    assert_eq!(
        p.evaluate_unfiltered("Expand")
            .unwrap()
            .to_json()
            .as_array()
            .map(|a| a.len()),
        Some(2)
    );
    assert_eq!(
        p.evaluate_unfiltered("StrInVS").unwrap().to_json(),
        serde_json::json!(false)
    );
}

/// `LibrarySet::retrieved_types`: every Retrieve's FHIR type in the main library and the libraries
/// it includes (transitively, once each), including retrieves the engine does not support; not
/// those of libraries that are not included.
#[test]
fn retrieved_types_follow_includes() {
    use serde_json::json;
    let retrieve =
        |t: &str| json!({"type": "Retrieve", "dataType": format!("{{http://hl7.org/fhir}}{t}")});
    let main = json!({"library": {
    "identifier": {"id": "Main", "version": "1"},
    "includes": {"def": [
        {"localIdentifier": "C", "path": "Common", "version": "2"},
        {"localIdentifier": "S", "path": "Status"}
    ]},
    "statements": {"def": [
        {"name": "Enc", "context": "Patient", "expression": {"type": "Query",
            "source": [{"alias": "E", "expression": retrieve("Encounter")}],
            "relationship": [{"type": "With", "alias": "S",
                "expression": retrieve("ServiceRequest"), "suchThat": {"type": "Literal", "valueType": "{urn:hl7-org:elm-types:r1}Boolean", "value": "true"}}]}},
        {"name": "Filtered", "context": "Patient", "expression": {"type": "Retrieve",
            "dataType": "{http://hl7.org/fhir}Observation", "dateFilter": [{"type": "Null"}]}}
    ]}}});
    let common = json!({"library": {
        "identifier": {"id": "Common", "version": "2"},
        "includes": {"def": [{"localIdentifier": "S", "path": "Status"}]},
        "statements": {"def": [{"name": "Pt", "context": "Patient", "expression": retrieve("Patient")}]}}});
    let status = json!({"library": {
        "identifier": {"id": "Status", "version": "1"},
        "includes": {"def": [{"localIdentifier": "M", "path": "Main"}]},
        "statements": {"def": [{"name": "Cond", "context": "Patient", "expression": retrieve("Condition")}]}}});
    let unused = json!({"library": {
        "identifier": {"id": "Unused", "version": "1"},
        "statements": {"def": [{"name": "Loc", "context": "Patient", "expression": retrieve("Location")}]}}});
    let set = LibrarySet::from_elm_json(&[main, common, status, unused]).unwrap();
    let types: Vec<String> = set.retrieved_types("Main").unwrap().into_iter().collect();
    assert_eq!(
        types,
        [
            "Condition",
            "Encounter",
            "Observation",
            "Patient",
            "ServiceRequest"
        ]
    );
    let types: Vec<String> = set.retrieved_types("Unused").unwrap().into_iter().collect();
    assert_eq!(types, ["Location"]);
    assert!(set.retrieved_types("Nope").is_err());
    let lone = json!({"library": {"identifier": {"id": "Lone"},
        "includes": {"def": [{"localIdentifier": "X", "path": "Missing"}]}}});
    let e = LibrarySet::from_elm_json(&[lone])
        .unwrap()
        .retrieved_types("Lone")
        .unwrap_err();
    assert!(e.msg.contains("Missing"), "{}", e.msg);
}

/// `Now()`, `Today()` and `TimeOfDay()` are the evaluation request's timestamp (CQL specification, Now): the same
/// value however often they are evaluated within one request, and the explicitly set one when a
/// context is given.
#[test]
fn now_is_fixed_for_one_evaluation_request() {
    use cql::datetime::{parse_date, parse_time};
    use cql::EvalContext;
    let op = |t: &str| serde_json::json!({"type": t});
    let lib = serde_json::json!({"library": {
    "identifier": {"id": "Clock", "version": "1"},
    "statements": {"def": [
        {"name": "A", "context": "Unfiltered", "expression": op("Now")},
        {"name": "B", "context": "Unfiltered", "expression": op("Now")},
        {"name": "Same", "context": "Unfiltered", "expression": {"type": "Equal", "operand": [op("Now"), op("Now")]}},
        {"name": "Today", "context": "Unfiltered", "expression": op("Today")},
        {"name": "Time", "context": "Unfiltered", "expression": op("TimeOfDay")}
    ]}}});
    let set = LibrarySet::from_elm_json(&[lib]).unwrap();
    let p = set.prepare("Clock", Parameters::new()).unwrap();
    let patient = PatientData::from_resources(Vec::new()).unwrap();
    let pause = || std::thread::sleep(std::time::Duration::from_millis(5));

    // within one request: one value, though the clock moves between evaluations
    assert!(p.evaluate_unfiltered("Same").unwrap().is_true());
    let s = p.session(&patient);
    let a = s.evaluate(&["A"]).unwrap();
    pause();
    let b = s.evaluate(&["B"]).unwrap();
    assert_eq!(a[0].to_json(), b[0].to_json());
    assert_eq!(a[0].to_json(), Value::DateTime(s.context().now()).to_json());
    // sessions sharing a memo are one request
    let memo = cql::PatientMemo::new(&patient);
    let first = p.session_shared(&memo).evaluate(&["A"]).unwrap();
    pause();
    let other = set.prepare("Clock", Parameters::new()).unwrap();
    let second = other.session_shared(&memo).evaluate(&["B"]).unwrap();
    assert_eq!(first[0].to_json(), second[0].to_json());
    assert_eq!(
        first[0].to_json(),
        Value::DateTime(memo.context().now()).to_json()
    );
    // a new request reads the clock again
    pause();
    let later = p.evaluate(&patient, &["A"]).unwrap();
    assert_ne!(later[0].to_json(), a[0].to_json());

    // an explicit timestamp, with its timezone offset, is what the operators return
    let at = parse_datetime("2024-02-29T23:59:58.123+05:00", 0).unwrap();
    let cx = EvalContext::at(at);
    let names = ["A", "B", "Today", "Time"];
    let want = [
        Value::DateTime(at).to_json(),
        Value::DateTime(at).to_json(),
        Value::Date(parse_date("2024-02-29").unwrap()).to_json(),
        Value::Time(parse_time("T23:59:58.123").unwrap()).to_json(),
    ];
    let got = p.evaluate_in(&patient, &names, cx).unwrap();
    assert_eq!(got.iter().map(Value::to_json).collect::<Vec<_>>(), want);
    pause();
    let got = p.session_in(&patient, cx).evaluate(&names).unwrap();
    assert_eq!(got.iter().map(Value::to_json).collect::<Vec<_>>(), want);
    let memo = cql::PatientMemo::new_in(&patient, cx);
    let got = p.session_shared(&memo).evaluate(&names).unwrap();
    assert_eq!(got.iter().map(Value::to_json).collect::<Vec<_>>(), want);
    for (n, w) in names.iter().zip(&want) {
        assert_eq!(&p.evaluate_unfiltered_in(n, cx).unwrap().to_json(), w);
    }
    // a timestamp below millisecond precision is filled with minimums
    let day = EvalContext::at(parse_datetime("2024-03-01", 0).unwrap());
    assert_eq!(
        p.evaluate_unfiltered_in("A", day).unwrap().to_json(),
        Value::DateTime(parse_datetime("2024-03-01T00:00:00.000Z", 0).unwrap()).to_json()
    );
    assert_eq!(
        p.evaluate_unfiltered_in("Time", day).unwrap().to_json(),
        Value::Time(parse_time("T00:00:00.000").unwrap()).to_json()
    );
}
