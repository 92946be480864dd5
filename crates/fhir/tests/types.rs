use fhir::*;
use serde_json::{json, Value};
use std::path::PathBuf;

fn shared_dir() -> PathBuf {
    match std::env::var_os("PHM_SHARED") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    }
}

fn round_trip(r: Resource, expect_keys: &[&str]) {
    let text = r.to_json_string();
    assert!(
        text.starts_with(&format!("{{\"resourceType\":\"{}\"", r.resource_type())),
        "{text}"
    );
    let v: Value = serde_json::from_str(&text).unwrap();
    for k in expect_keys {
        assert!(
            v.get(k).is_some(),
            "{} lacks {k}: {text}",
            r.resource_type()
        );
    }
    let back = Resource::from_json_str(&text).unwrap();
    assert_eq!(back, r);
    let via_serde: Resource = serde_json::from_str(&text).unwrap();
    assert_eq!(via_serde, r);
}

fn cc(system: &str, code: &str) -> CodeableConcept {
    CodeableConcept::from_coding(Coding::new(system, code, "x"))
}

fn pref() -> Option<Reference> {
    Some(Reference::to("Patient", "p1"))
}

#[test]
fn round_trip_each_type() {
    let name = HumanName {
        family: Some("Test".into()),
        given: vec!["A".into(), "B".into()],
        r#use: Some("official".into()),
        ..Default::default()
    };
    round_trip(
        Patient {
            id: Some("p1".into()),
            meta: Some(Meta {
                profile: vec!["http://x/p".into()],
                ..Default::default()
            }),
            extension: vec![Extension {
                url: Some("http://x/race".into()),
                extension: vec![Extension {
                    url: Some("ombCategory".into()),
                    value_coding: Some(Coding::new(
                        "urn:oid:2.16.840.1.113883.6.238",
                        "2106-3",
                        "White",
                    )),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            identifier: vec![Identifier {
                system: Some("urn:mrn".into()),
                value: Some("123".into()),
                r#type: Some(cc("http://terminology.hl7.org/CodeSystem/v2-0203", "MR")),
                ..Default::default()
            }],
            name: vec![name.clone()],
            telecom: vec![ContactPoint {
                system: Some("phone".into()),
                value: Some("555-0100".into()),
                rank: Some(1),
                ..Default::default()
            }],
            gender: Some("female".into()),
            birth_date: Some("1960-02-29".into()),
            deceased_boolean: Some(false),
            address: vec![Address {
                line: vec!["1 Main St".into()],
                city: Some("Springfield".into()),
                postal_code: Some("00001".into()),
                ..Default::default()
            }],
            general_practitioner: vec![Reference::to("Practitioner", "pr1")],
            managing_organization: Some(Reference::to("Organization", "o1")),
            ..Default::default()
        }
        .into(),
        &[
            "birthDate",
            "generalPractitioner",
            "managingOrganization",
            "deceasedBoolean",
        ],
    );
    round_trip(
        Practitioner {
            id: Some("pr1".into()),
            name: vec![name.clone()],
            qualification: vec![PractitionerQualification {
                code: Some(cc("http://x", "MD")),
                ..Default::default()
            }],
            ..Default::default()
        }
        .into(),
        &["qualification"],
    );
    round_trip(
        Organization {
            id: Some("o1".into()),
            name: Some("Clinic".into()),
            r#type: vec![cc(
                "http://terminology.hl7.org/CodeSystem/organization-type",
                "prov",
            )],
            part_of: Some(Reference::to("Organization", "o0")),
            ..Default::default()
        }
        .into(),
        &["type", "partOf"],
    );
    round_trip(
        Group {
            id: Some("g1".into()),
            r#type: Some("person".into()),
            actual: Some(true),
            quantity: Some(1),
            managing_entity: Some(Reference::to("Practitioner", "pr1")),
            member: vec![GroupMember {
                entity: pref(),
                ..Default::default()
            }],
            ..Default::default()
        }
        .into(),
        &["type", "managingEntity", "member"],
    );
    round_trip(
        Encounter {
            id: Some("e1".into()),
            status: Some("finished".into()),
            class: Some(Coding::new(
                "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                "AMB",
                "ambulatory",
            )),
            r#type: vec![cc("http://www.ama-assn.org/go/cpt", "99213")],
            subject: pref(),
            participant: vec![EncounterParticipant {
                individual: Some(Reference::to("Practitioner", "pr1")),
                ..Default::default()
            }],
            period: Some(Period {
                start: Some("2025-01-01T09:00:00Z".into()),
                end: Some("2025-01-01T09:30:00Z".into()),
            }),
            diagnosis: vec![EncounterDiagnosis {
                condition: Some(Reference::to("Condition", "c1")),
                rank: Some(1),
                ..Default::default()
            }],
            hospitalization: Some(EncounterHospitalization {
                discharge_disposition: Some(cc("http://snomed.info/sct", "306701001")),
                ..Default::default()
            }),
            service_provider: Some(Reference::to("Organization", "o1")),
            ..Default::default()
        }
        .into(),
        &["class", "period", "hospitalization", "serviceProvider"],
    );
    round_trip(
        Condition {
            id: Some("c1".into()),
            clinical_status: Some(cc(
                "http://terminology.hl7.org/CodeSystem/condition-clinical",
                "active",
            )),
            verification_status: Some(cc(
                "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                "confirmed",
            )),
            category: vec![cc(
                "http://terminology.hl7.org/CodeSystem/condition-category",
                "problem-list-item",
            )],
            code: Some(cc("http://snomed.info/sct", "59621000")),
            subject: pref(),
            onset_date_time: Some("2020-05".into()),
            abatement_period: Some(Period {
                start: Some("2021".into()),
                end: None,
            }),
            recorded_date: Some("2020-05-02".into()),
            ..Default::default()
        }
        .into(),
        &["clinicalStatus", "onsetDateTime", "abatementPeriod"],
    );
    let mmhg = |v: f64| Quantity {
        value: Some(v),
        unit: Some("mm[Hg]".into()),
        system: Some("http://unitsofmeasure.org".into()),
        code: Some("mm[Hg]".into()),
        ..Default::default()
    };
    round_trip(
        Observation {
            id: Some("o1".into()),
            status: Some("final".into()),
            category: vec![cc(
                "http://terminology.hl7.org/CodeSystem/observation-category",
                "vital-signs",
            )],
            code: Some(cc("http://loinc.org", "85354-9")),
            subject: pref(),
            effective_date_time: Some("2025-03-04T10:00:00-05:00".into()),
            component: vec![
                ObservationComponent {
                    code: Some(cc("http://loinc.org", "8480-6")),
                    value_quantity: Some(mmhg(128.0)),
                    interpretation: vec![cc("http://x", "N")],
                    ..Default::default()
                },
                ObservationComponent {
                    code: Some(cc("http://loinc.org", "8462-4")),
                    value_quantity: Some(mmhg(82.5)),
                    ..Default::default()
                },
            ],
            reference_range: vec![ObservationReferenceRange {
                low: Some(mmhg(90.0)),
                high: Some(mmhg(120.0)),
                ..Default::default()
            }],
            ..Default::default()
        }
        .into(),
        &["component", "effectiveDateTime", "referenceRange"],
    );
    round_trip(
        Observation {
            id: Some("o2".into()),
            status: Some("final".into()),
            code: Some(cc("http://loinc.org", "72166-2")),
            subject: pref(),
            effective_period: Some(Period {
                start: Some("2025".into()),
                end: None,
            }),
            value_codeable_concept: Some(cc("http://snomed.info/sct", "266919005")),
            interpretation: vec![cc("http://x", "N")],
            ..Default::default()
        }
        .into(),
        &["valueCodeableConcept", "effectivePeriod", "interpretation"],
    );
    round_trip(
        Observation {
            id: Some("o3".into()),
            status: Some("final".into()),
            code: Some(cc("http://loinc.org", "x")),
            subject: pref(),
            value_string: Some("text".into()),
            ..Default::default()
        }
        .into(),
        &["valueString"],
    );
    round_trip(
        Procedure {
            id: Some("pr".into()),
            status: Some("completed".into()),
            code: Some(cc("http://www.ama-assn.org/go/cpt", "77067")),
            subject: pref(),
            performed_period: Some(Period {
                start: Some("2025-01-01".into()),
                end: Some("2025-01-01".into()),
            }),
            performer: vec![ProcedurePerformer {
                actor: Some(Reference::to("Practitioner", "pr1")),
                ..Default::default()
            }],
            ..Default::default()
        }
        .into(),
        &["performedPeriod", "performer"],
    );
    round_trip(
        MedicationRequest {
            id: Some("m1".into()),
            status: Some("active".into()),
            intent: Some("order".into()),
            medication_codeable_concept: Some(cc(
                "http://www.nlm.nih.gov/research/umls/rxnorm",
                "197361",
            )),
            subject: pref(),
            authored_on: Some("2025-02-02".into()),
            dosage_instruction: vec![Dosage {
                text: Some("once daily".into()),
                timing: Some(json!({"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}})),
                ..Default::default()
            }],
            dispense_request: Some(json!({"numberOfRepeatsAllowed": 3})),
            ..Default::default()
        }
        .into(),
        &[
            "medicationCodeableConcept",
            "authoredOn",
            "dosageInstruction",
            "dispenseRequest",
        ],
    );
    round_trip(
        Immunization {
            id: Some("i1".into()),
            status: Some("completed".into()),
            vaccine_code: Some(cc("http://hl7.org/fhir/sid/cvx", "140")),
            patient: pref(),
            occurrence_date_time: Some("2024-10-01".into()),
            primary_source: Some(true),
            ..Default::default()
        }
        .into(),
        &["vaccineCode", "occurrenceDateTime", "primarySource"],
    );
    round_trip(
        Coverage {
            id: Some("cv".into()),
            status: Some("active".into()),
            r#type: Some(cc("urn:oid:2.16.840.1.113883.3.221.5", "1")),
            beneficiary: pref(),
            payor: vec![Reference::to("Organization", "payer")],
            class: vec![CoverageClass {
                r#type: Some(cc("http://x", "plan")),
                value: Some("A".into()),
                ..Default::default()
            }],
            period: Some(Period {
                start: Some("2024-01-01".into()),
                end: None,
            }),
            order: Some(1),
            ..Default::default()
        }
        .into(),
        &["beneficiary", "payor", "class"],
    );
}

#[test]
fn subject_patient_id_for_each_kind() {
    let cases = [
        (r#"{"resourceType":"Patient","id":"p9"}"#, Some("p9")),
        (
            r#"{"resourceType":"Encounter","subject":{"reference":"Patient/p1"}}"#,
            Some("p1"),
        ),
        (
            r#"{"resourceType":"Immunization","patient":{"reference":"http://h/fhir/Patient/p2/_history/3"}}"#,
            Some("p2"),
        ),
        (
            r#"{"resourceType":"Coverage","beneficiary":{"reference":"Patient/p3"}}"#,
            Some("p3"),
        ),
        (
            r#"{"resourceType":"ServiceRequest","subject":{"reference":"Patient/p4"}}"#,
            Some("p4"),
        ),
        (
            r#"{"resourceType":"Observation","subject":{"reference":"Group/g1"}}"#,
            None,
        ),
        (
            r#"{"resourceType":"Condition","subject":{"display":"someone"}}"#,
            None,
        ),
        (r#"{"resourceType":"Practitioner","id":"x"}"#, None),
    ];
    for (json, want) in cases {
        assert_eq!(
            Resource::from_json_str(json).unwrap().subject_patient_id(),
            want,
            "{json}"
        );
    }
}

/// Every key/value the typed model emits must be present, unchanged, in the source.
fn assert_subset(out: &Value, src: &Value, path: &str) {
    match (out, src) {
        (Value::Object(o), Value::Object(s)) => {
            for (k, v) in o {
                let sv = s.get(k).unwrap_or_else(|| panic!("{path}.{k} invented"));
                assert_subset(v, sv, &format!("{path}.{k}"));
            }
        }
        (Value::Array(o), Value::Array(s)) => {
            assert_eq!(o.len(), s.len(), "{path} length");
            for (i, (a, b)) in o.iter().zip(s).enumerate() {
                assert_subset(a, b, &format!("{path}[{i}]"));
            }
        }
        (Value::Number(a), Value::Number(b)) => assert_eq!(a.as_f64(), b.as_f64(), "{path}"),
        (a, b) => assert_eq!(a, b, "{path}"),
    }
}

#[test]
fn shared_ecqm_case_bundles_deserialize() {
    let cases = shared_dir().join("ecqm/cases");
    let mut files = 0;
    let mut typed = 0;
    let mut other = 0;
    for measure in std::fs::read_dir(&cases).expect("shared ecqm cases present") {
        for file in std::fs::read_dir(measure.unwrap().path()).unwrap() {
            let path = file.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            files += 1;
            let text = std::fs::read_to_string(&path).unwrap();
            let via_helper =
                bundle_resources(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let bundle: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(
                via_helper.len(),
                bundle["entry"].as_array().map_or(0, Vec::len)
            );
            for entry in bundle["entry"].as_array().into_iter().flatten() {
                let src = &entry["resource"];
                let text = serde_json::to_string(src).unwrap();
                let r = Resource::from_json_str(&text)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert_eq!(r.resource_type(), src["resourceType"].as_str().unwrap());
                if KNOWN_RESOURCE_TYPES.contains(&r.resource_type()) {
                    assert!(!matches!(r, Resource::Other(_)));
                    typed += 1;
                    let out: Value = serde_json::from_str(&r.to_json_string()).unwrap();
                    assert_subset(&out, src, r.resource_type());
                    assert_eq!(Resource::from_json_str(&r.to_json_string()).unwrap(), r);
                    // The same through the generic serde path.
                    assert_eq!(Resource::from_value(src.clone()).unwrap(), r);
                } else {
                    other += 1;
                }
            }
        }
    }
    assert!(files > 500, "only {files} case files");
    assert!(typed > 2000 && other > 0, "typed {typed}, other {other}");
}

#[test]
fn validation_flags_paths_not_values() {
    let bad = Resource::from_json_str(
        r#"{"resourceType":"Observation","id":"o 1","status":"final",
            "code":{"coding":[{"code":"4548-4"}]},
            "effectiveDateTime":"2025-13-01",
            "encounter":{"reference":"Encounter"},
            "component":[{"valueString":"SecretValue"}]}"#,
    )
    .unwrap();
    let issues = validate(&bad);
    let got: Vec<(String, IssueKind)> = issues.iter().map(|i| (i.path.clone(), i.kind)).collect();
    assert_eq!(
        got,
        [
            ("Observation.id".to_string(), IssueKind::InvalidId),
            (
                "Observation.code.coding[0]".into(),
                IssueKind::IncompleteCoding
            ),
            ("Observation.subject".into(), IssueKind::Missing),
            ("Observation.encounter".into(), IssueKind::InvalidReference),
            (
                "Observation.effectiveDateTime".into(),
                IssueKind::InvalidDate
            ),
            ("Observation.component[0].code".into(), IssueKind::Missing),
        ]
    );
    for i in &issues {
        let s = i.to_string();
        assert!(
            !s.contains("2025-13") && !s.contains("o 1") && !s.contains("Secret"),
            "{s}"
        );
    }
    assert_eq!(
        validate(&Resource::from_json_str(r#"{"resourceType":"Patient"}"#).unwrap())[0].path,
        "Patient.id"
    );
    let wrong = Resource::from_json_str(
        r#"{"resourceType":"Immunization","id":"i","status":"completed","vaccineCode":{"coding":[{"system":"http://hl7.org/fhir/sid/cvx","code":"140"}]},"patient":{"reference":"Practitioner/1"}}"#,
    )
    .unwrap();
    assert_eq!(validate(&wrong)[0].kind, IssueKind::WrongReferenceType);
}

#[test]
fn shared_case_resources_mostly_validate() {
    // The official cases are well-formed: no reference-syntax or date problems.
    let dir = shared_dir().join("ecqm/cases/ControllingHighBloodPressureFHIR");
    let mut checked = 0;
    for file in std::fs::read_dir(dir).unwrap() {
        let bundle: Value =
            serde_json::from_slice(&std::fs::read(file.unwrap().path()).unwrap()).unwrap();
        for entry in bundle["entry"].as_array().into_iter().flatten() {
            let r = Resource::from_value(entry["resource"].clone()).unwrap();
            for issue in validate(&r) {
                assert!(
                    !matches!(
                        issue.kind,
                        IssueKind::InvalidDate | IssueKind::InvalidReference
                    ),
                    "{issue}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 100);
}

#[test]
fn clinical_dates_and_ages() {
    let cases = [
        (
            r#"{"resourceType":"Encounter","period":{"start":"2025-03-04T09:00:00Z"}}"#,
            Some("2025-03-04T09:00:00Z"),
        ),
        (
            r#"{"resourceType":"Condition","onsetPeriod":{"start":"2019"},"recordedDate":"2020-01-01"}"#,
            Some("2019"),
        ),
        (
            r#"{"resourceType":"Condition","recordedDate":"2020-01-01"}"#,
            Some("2020-01-01"),
        ),
        (
            r#"{"resourceType":"Observation","issued":"2025-01-02T00:00:00Z","effectivePeriod":{"start":"2025-01-01"}}"#,
            Some("2025-01-01"),
        ),
        (
            r#"{"resourceType":"Procedure","performedDateTime":"2024-05"}"#,
            Some("2024-05"),
        ),
        (
            r#"{"resourceType":"MedicationRequest","authoredOn":"2024-06-01"}"#,
            Some("2024-06-01"),
        ),
        (
            r#"{"resourceType":"Immunization","occurrenceDateTime":"2023-10-01"}"#,
            Some("2023-10-01"),
        ),
        (
            r#"{"resourceType":"Coverage","period":{"start":"2020-01-01"}}"#,
            Some("2020-01-01"),
        ),
        (r#"{"resourceType":"Practitioner"}"#, None),
    ];
    for (json, want) in cases {
        let r = Resource::from_json_str(json).unwrap();
        assert_eq!(r.clinical_date(), want, "{json}");
        assert_eq!(r.clinical_date_time().is_some(), want.is_some());
    }
    // Sorting by instant works across precisions and offsets.
    let mut dates: Vec<DateTime> = ["2025-01-01T00:30:00+01:00", "2024-12-31", "2025"]
        .iter()
        .map(|s| parse_date_time(s).unwrap())
        .collect();
    dates.sort_by_key(DateTime::to_unix_millis);
    assert_eq!(dates[0].precision, Precision::Day);
    assert_eq!(dates[1].offset_minutes, Some(60));
    let p = Patient {
        birth_date: Some("1960-06-15".into()),
        ..Default::default()
    };
    assert_eq!(p.age_on(Date::new(2025, 6, 14).unwrap()), Some(64));
    let partial = Patient {
        birth_date: Some("1960".into()),
        ..Default::default()
    };
    assert_eq!(partial.age_on(Date::new(2025, 6, 14).unwrap()), None);
}

#[test]
fn bundle_resources_rejects_non_bundles() {
    assert_eq!(
        bundle_resources(r#"{"resourceType":"Patient"}"#)
            .unwrap_err()
            .kind,
        ParseErrorKind::UnsupportedResourceType
    );
    assert_eq!(
        bundle_resources("[]").unwrap_err().kind,
        ParseErrorKind::NotAnObject
    );
    assert!(matches!(
        bundle_resources(r#"{"resourceType":"Bundle","entry":["#)
            .unwrap_err()
            .kind,
        ParseErrorKind::Truncated
    ));
    let two = bundle_resources(
        r#"{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient","id":"a"}},{"fullUrl":"x"},{"resource":{"resourceType":"Basic","id":"b"}}]}"#,
    )
    .unwrap();
    assert_eq!(
        two.iter().map(|r| r.id().unwrap()).collect::<Vec<_>>(),
        ["a", "b"]
    );
}
