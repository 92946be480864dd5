//! `cql::analysis` on a small hand-written ELM library: the define graph, data requirements with
//! their date windows, and evaluation of a definition by id in a session.

use cql::{datetime::parse_datetime, DateWindow, LibrarySet, Parameters, PatientData, Value};
use serde_json::{json, Value as Json};

fn lit(n: i32) -> Json {
    json!({"type": "Literal", "valueType": "{urn:hl7-org:elm-types:r1}Integer", "value": n.to_string()})
}

fn mp() -> Json {
    json!({"type": "ParameterRef", "name": "Measurement Period"})
}

fn prop(path: &str, scope: &str) -> Json {
    json!({"type": "Property", "path": path, "scope": scope})
}

fn retrieve(ty: &str, codes: Option<Json>) -> Json {
    let mut r = json!({"type": "Retrieve", "dataType": format!("{{http://hl7.org/fhir}}{ty}")});
    if let Some(c) = codes {
        r["codes"] = c;
        r["codeProperty"] = json!("code");
    }
    r
}

fn vs(name: &str) -> Json {
    json!({"type": "ValueSetRef", "name": name})
}

fn eref(name: &str) -> Json {
    json!({"type": "ExpressionRef", "name": name})
}

fn exists(x: Json) -> Json {
    json!({"type": "Exists", "operand": x})
}

fn query(alias: &str, source: Json, where_: Json) -> Json {
    json!({"type": "Query", "source": [{"alias": alias, "expression": source}], "where": where_})
}

fn def(name: &str, e: Json) -> Json {
    json!({"name": name, "context": "Patient", "expression": e})
}

fn library() -> Json {
    let window_start = json!({"type": "DateTime",
        "year": {"type": "Subtract", "operand": [
            {"type": "DateTimeComponentFrom", "precision": "Year", "operand": {"type": "Start", "operand": mp()}},
            lit(2)]},
        "month": lit(10), "day": lit(1)});
    let exams = query(
        "E",
        retrieve("Observation", Some(vs("Exams"))),
        json!({"type": "And", "operand": [
            {"type": "Not", "operand": {"type": "IsNull", "operand": prop("status", "E")}},
            {"type": "In", "precision": "Day", "operand": [
                {"type": "End", "operand": prop("effective", "E")},
                {"type": "Interval", "lowClosed": true, "highClosed": true,
                 "low": eref("Window Start"), "high": {"type": "End", "operand": mp()}}]}]}),
    );
    let bp = query(
        "B",
        retrieve(
            "Observation",
            Some(json!({"type": "ToList", "operand": {"type": "CodeRef", "name": "BP code"}})),
        ),
        json!({"type": "Overlaps", "operand": [prop("effective", "B"), mp()]}),
    );
    // the QI-Core shape of `[MedicationRequest: "Orders VS"]`: coded retrieve, or by reference
    let orders = json!({"type": "Union", "operand": [
        retrieve("MedicationRequest", Some(vs("Orders VS"))),
        {"type": "Query",
         "source": [{"alias": "MR", "expression": retrieve("MedicationRequest", None)}],
         "relationship": [{"type": "With", "alias": "M", "expression": retrieve("Medication", None),
            "suchThat": {"type": "Equal", "operand": [prop("id", "M"), prop("medication", "MR")]}}]}]});
    let numerator = json!({"type": "And", "operand": [
        exists(eref("Exams")),
        {"type": "Or", "operand": [exists(eref("BP")), exists(eref("Orders"))]}]});
    // a retrieve in a condition filters rows; another alias's date is no window
    let filtered = json!({"type": "Query",
        "source": [{"alias": "Enc", "expression": retrieve("Encounter", Some(vs("Exams")))}],
        "relationship": [{"type": "With", "alias": "X", "expression": eref("Exams"),
            "suchThat": {"type": "In", "operand": [prop("period", "Enc"), prop("effective", "X")]}}],
        "where": exists(retrieve("Condition", Some(vs("Orders VS"))))});
    json!({"library": {
        "identifier": {"id": "Lib", "version": "1"},
        "parameters": {"def": [{"name": "Measurement Period"}]},
        "codeSystems": {"def": [{"name": "LOINC", "id": "http://loinc.org"}]},
        "valueSets": {"def": [{"name": "Exams", "id": "http://vs/exams"},
                              {"name": "Orders VS", "id": "http://vs/orders"}]},
        "codes": {"def": [{"name": "BP code", "id": "85354-9", "display": "BP panel",
                           "codeSystem": {"name": "LOINC"}}]},
        "statements": {"def": [
            def("Patient", json!({"type": "SingletonFrom", "operand": retrieve("Patient", None)})),
            def("Window Start", window_start),
            def("Exams", exams),
            def("BP", bp),
            def("Orders", orders),
            def("Numerator", numerator),
            def("Constant", json!({"type": "Add", "operand": [lit(1), lit(2)]})),
            def("Uses Constant", json!({"type": "And", "operand": [
                exists(eref("Exams")),
                {"type": "Greater", "operand": [eref("Constant"), lit(0)]}]})),
            def("Filtered", filtered),
        ]}
    }})
}

fn prepared() -> cql::Prepared {
    let period = Value::interval(
        Value::DateTime(parse_datetime("2025-01-01T00:00:00.000Z", 0).unwrap()),
        Value::DateTime(parse_datetime("2025-12-31T23:59:59.999Z", 0).unwrap()),
        true,
        true,
    );
    LibrarySet::from_elm_json(&[library()])
        .unwrap()
        .prepare("Lib", Parameters::new().with("Measurement Period", period))
        .unwrap()
}

fn date(v: &Value) -> String {
    cql::render::iso_date(v).unwrap()
}

#[test]
fn define_graph() {
    let p = prepared();
    let g = p.define_graph();
    let id = |n: &str| p.def_id(n).unwrap();
    assert_eq!(p.def_name(id("Numerator")), "Numerator");
    assert!(p.is_main(id("Numerator")));
    assert!(p.def_id("No such").is_none());
    assert_eq!(
        g.references(id("Numerator")),
        &[id("Exams"), id("BP"), id("Orders")]
    );
    assert_eq!(
        g.dependencies_within_library(id("Uses Constant")),
        vec![id("Exams"), id("Window Start"), id("Constant")]
    );
    assert!(g.reaches_retrieve(id("Exams")));
    assert!(g.reaches_retrieve(id("Uses Constant")));
    assert!(!g.reaches_retrieve(id("Constant")));
    assert!(!g.reaches_retrieve(id("Window Start")));
    assert!(g.is_context_define(id("Patient")));
    assert!(!g.is_context_define(id("Exams")));
}

#[test]
fn data_requirements_and_windows() {
    let p = prepared();
    let g = p.define_graph();
    let reqs = p.data_requirements(&g, p.def_id("Numerator").unwrap());
    assert_eq!(reqs.len(), 3, "{reqs:#?}");

    let exams = &reqs[0];
    assert_eq!(exams.data_type, "Observation");
    assert_eq!(exams.code_property.as_deref(), Some("code"));
    let v = exams.value_set.as_ref().unwrap();
    assert_eq!(
        (v.name.as_deref(), v.url.as_str()),
        (Some("Exams"), "http://vs/exams")
    );
    match &exams.window {
        Some(DateWindow::Dates {
            low,
            high,
            overlaps: false,
        }) => assert_eq!(
            (date(low), date(high)),
            ("2023-10-01".into(), "2025-12-31".into())
        ),
        w => panic!("{w:?}"),
    }

    let bp = &reqs[1];
    assert!(bp.value_set.is_none());
    assert_eq!(bp.codes.len(), 1);
    assert_eq!(bp.codes[0].name.as_deref(), Some("BP code"));
    assert_eq!(&*bp.codes[0].code.code, "85354-9");
    assert_eq!(bp.codes[0].code.system.as_deref(), Some("http://loinc.org"));
    match &bp.window {
        Some(DateWindow::Dates {
            low,
            high,
            overlaps: true,
        }) => assert_eq!(
            (date(low), date(high)),
            ("2025-01-01".into(), "2025-12-31".into())
        ),
        w => panic!("{w:?}"),
    }

    // the reference-resolving branch adds neither an uncoded MedicationRequest nor a Medication
    let orders = &reqs[2];
    assert_eq!(orders.data_type, "MedicationRequest");
    assert_eq!(orders.value_set.as_ref().unwrap().url, "http://vs/orders");
    assert!(orders.window.is_none());

    // retrieves in conditions are not requirements; a window needs a patient-independent interval
    let reqs = p.data_requirements(&g, p.def_id("Filtered").unwrap());
    let types: Vec<(&str, bool)> = reqs
        .iter()
        .map(|r| (r.data_type.as_str(), r.window.is_some()))
        .collect();
    assert_eq!(types, [("Encounter", false), ("Observation", true)]);
    // the patient context is no requirement
    assert!(p
        .data_requirements(&g, p.def_id("Patient").unwrap())
        .is_empty());
}

#[test]
fn evaluate_def_in_a_session() {
    let p = prepared();
    let patient =
        PatientData::from_resources(vec![json!({"resourceType": "Patient", "id": "p"})]).unwrap();
    let s = p.session(&patient);
    let v = s.evaluate_def(p.def_id("Window Start").unwrap()).unwrap();
    assert_eq!(date(&v), "2023-10-01");
    let v = s.evaluate_def(p.def_id("Exams").unwrap()).unwrap();
    assert_eq!(cql::render::short(&v, 80), "none");
    let v = s.evaluate_def(p.def_id("Constant").unwrap()).unwrap();
    assert_eq!(cql::render::short(&v, 80), "3");
}
