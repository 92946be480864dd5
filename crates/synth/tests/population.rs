use fhir::{NdjsonReader, Resource};
use std::collections::{HashMap, HashSet};
use std::io::BufReader;
use std::path::Path;
use synth::{write_ndjson_dir, Generator, SynthConfig, OUTPUT_TYPES};

fn write(cfg: SynthConfig, dir: &Path, threads: usize) -> synth::WriteStats {
    let g = Generator::new(cfg).unwrap();
    write_ndjson_dir(&g, dir, threads, &mut |_| {}).unwrap()
}

fn read_all(dir: &Path) -> Vec<Resource> {
    let mut all = Vec::new();
    for t in OUTPUT_TYPES {
        let f = std::fs::File::open(dir.join(format!("{t}.ndjson"))).unwrap();
        for item in NdjsonReader::new(BufReader::new(f)).resources() {
            let (line, r) = item.unwrap_or_else(|e| panic!("{t}.ndjson: {e}"));
            assert_eq!(r.resource_type(), t, "{t}.ndjson line {line}");
            all.push(r);
        }
    }
    all
}

#[test]
fn same_seed_same_bytes_any_thread_count() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let c = tempfile::tempdir().unwrap();
    let cfg = SynthConfig::new(700, 11);
    let sa = write(cfg, a.path(), 1);
    let sb = write(cfg, b.path(), 1);
    let sc = write(cfg, c.path(), 3);
    assert_eq!(sa, sb);
    assert_eq!(sa, sc);
    for t in OUTPUT_TYPES {
        let name = format!("{t}.ndjson");
        let fa = std::fs::read(a.path().join(&name)).unwrap();
        assert!(!fa.is_empty(), "{name} empty");
        assert_eq!(
            fa,
            std::fs::read(b.path().join(&name)).unwrap(),
            "{name} differs between runs"
        );
        assert_eq!(
            fa,
            std::fs::read(c.path().join(&name)).unwrap(),
            "{name} differs with 3 threads"
        );
    }
    let d = tempfile::tempdir().unwrap();
    write(SynthConfig::new(700, 12), d.path(), 1);
    assert_ne!(
        std::fs::read(a.path().join("Patient.ndjson")).unwrap(),
        std::fs::read(d.path().join("Patient.ndjson")).unwrap()
    );
}

#[test]
fn output_parses_validates_and_references_resolve() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SynthConfig {
        providers: 4,
        ..SynthConfig::new(600, 5)
    };
    let stats = write(cfg, dir.path(), 2);
    let all = read_all(dir.path());
    assert_eq!(all.len() as u64, stats.total_resources());

    let ids = |ty: &str| -> HashSet<String> {
        all.iter()
            .filter(|r| r.resource_type() == ty)
            .map(|r| r.id().unwrap().to_string())
            .collect()
    };
    let patients = ids("Patient");
    let practitioners = ids("Practitioner");
    let organizations = ids("Organization");
    let encounters = ids("Encounter");
    assert_eq!(patients.len(), 600);
    assert_eq!(practitioners.len(), 4);
    assert_eq!(ids("Group").len(), 4);

    let mut unique = HashSet::new();
    for r in &all {
        assert!(
            unique.insert((r.resource_type().to_string(), r.id().unwrap().to_string())),
            "duplicate id"
        );
        let issues = fhir::validate(r);
        assert!(issues.is_empty(), "{} {:?}", r.resource_type(), issues);
        let check = |reference: &Option<fhir::Reference>, ty: &str, set: &HashSet<String>| {
            if let Some(id) = reference.as_ref().and_then(|x| x.id_of(ty)) {
                assert!(set.contains(id), "dangling {ty}/{id}");
            } else {
                assert!(reference.is_none(), "reference is not {ty}/<id>");
            }
        };
        match r {
            Resource::Patient(p) => {
                assert_eq!(p.general_practitioner.len(), 1);
                check(
                    &p.general_practitioner.first().cloned(),
                    "Practitioner",
                    &practitioners,
                );
                check(&p.managing_organization, "Organization", &organizations);
            }
            Resource::Group(g) => check(&g.managing_entity, "Practitioner", &practitioners),
            Resource::Coverage(c) => {
                check(&c.payor.first().cloned(), "Organization", &organizations)
            }
            Resource::Encounter(e) => check(&e.service_provider, "Organization", &organizations),
            Resource::Observation(o) => check(&o.encounter, "Encounter", &encounters),
            Resource::Procedure(p) => check(&p.encounter, "Encounter", &encounters),
            // The types generated as raw JSON: tests/new_types.rs checks them in depth.
            Resource::Other(v) => {
                for (key, ty) in [("encounter", "Encounter"), ("requester", "Practitioner")] {
                    if let Some(x) = v.get(key) {
                        let x: fhir::Reference = serde_json::from_value(x.clone()).unwrap();
                        check(
                            &Some(x),
                            ty,
                            if ty == "Encounter" {
                                &encounters
                            } else {
                                &practitioners
                            },
                        );
                    }
                }
            }
            _ => {}
        }
        if !matches!(
            r,
            Resource::Practitioner(_) | Resource::Organization(_) | Resource::Group(_)
        ) {
            let pid = r
                .subject_patient_id()
                .unwrap_or_else(|| panic!("{} without patient", r.resource_type()));
            assert!(patients.contains(pid), "dangling patient");
        }
    }
}

#[test]
fn group_membership_equals_patients_with_that_pcp() {
    let g = Generator::new(SynthConfig {
        providers: 5,
        ..SynthConfig::new(900, 3)
    })
    .unwrap();
    let mut by_pcp: HashMap<String, HashSet<String>> = HashMap::new();
    for i in 0..900 {
        let Resource::Patient(p) = &g.patient(i)[0] else {
            panic!("Patient first")
        };
        let pcp = p.general_practitioner[0]
            .id_of("Practitioner")
            .unwrap()
            .to_string();
        by_pcp.entry(pcp).or_default().insert(p.id.clone().unwrap());
    }
    let mut groups = 0;
    for r in g.reference_resources() {
        if let Resource::Group(grp) = r {
            groups += 1;
            let pcp = grp
                .managing_entity
                .as_ref()
                .unwrap()
                .id_of("Practitioner")
                .unwrap()
                .to_string();
            let members: HashSet<String> = grp
                .member
                .iter()
                .map(|m| {
                    m.entity
                        .as_ref()
                        .unwrap()
                        .id_of("Patient")
                        .unwrap()
                        .to_string()
                })
                .collect();
            assert_eq!(members.len(), grp.member.len());
            assert_eq!(grp.quantity, Some(members.len() as u64));
            assert_eq!(
                members,
                by_pcp.remove(&pcp).unwrap_or_default(),
                "panel of {pcp}"
            );
        }
    }
    assert_eq!(groups, 5);
    assert!(by_pcp.is_empty());
}

#[test]
fn patient_depends_only_on_seed_and_index() {
    let small = Generator::new(SynthConfig {
        providers: 3,
        ..SynthConfig::new(20, 9)
    })
    .unwrap();
    let large = Generator::new(SynthConfig {
        providers: 3,
        ..SynthConfig::new(5000, 9)
    })
    .unwrap();
    assert_eq!(small.patient(7), large.patient(7));
    assert_ne!(small.patient(7), small.patient(8));
    let n: usize =
        (0..20).map(|i| small.patient(i).len()).sum::<usize>() + small.reference_resources().len();
    assert_eq!(small.resources().count(), n);
}

#[test]
fn rejects_bad_config() {
    let mut cfg = SynthConfig::new(10, 1);
    cfg.providers = 1000;
    assert_eq!(
        Generator::new(cfg).unwrap_err(),
        synth::ConfigError::TooManyProviders
    );
    let mut cfg = SynthConfig::new(10, 1);
    cfg.as_of.year = 10_000;
    assert!(Generator::new(cfg).is_err());
    // Zero patients is a valid (empty) population.
    let g = Generator::new(SynthConfig::new(0, 1)).unwrap();
    assert_eq!(
        g.resources()
            .filter(|r| r.resource_type() == "Patient")
            .count(),
        0
    );
}

#[test]
fn cli_writes_layout_and_rejects_bad_arguments() {
    let exe = env!("CARGO_BIN_EXE_phm-synth");
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(exe)
        .args([
            "--patients",
            "50",
            "--seed",
            "4",
            "--providers",
            "2",
            "--as-of",
            "2024-06-30",
            "--quiet",
            "--out",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for t in OUTPUT_TYPES {
        assert!(dir.path().join(format!("{t}.ndjson")).exists(), "{t}");
    }
    let patients = std::fs::read_to_string(dir.path().join("Patient.ndjson")).unwrap();
    assert_eq!(patients.lines().count(), 50);
    for bad in [
        vec!["--patients", "x", "--seed", "1", "--out", "/tmp/x"],
        vec!["--seed", "1", "--out", "/tmp/x"],
        vec![
            "--patients",
            "1",
            "--seed",
            "1",
            "--out",
            "/tmp/x",
            "--as-of",
            "2024-02-30",
        ],
        vec![
            "--patients",
            "1",
            "--seed",
            "1",
            "--out",
            "/tmp/x",
            "--bogus",
        ],
    ] {
        let out = std::process::Command::new(exe).args(&bad).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
    }
}

/// Properties the QI-Core measures filter on (Status library fluent functions
/// and `value is not null` checks).
#[test]
fn resources_carry_what_the_measures_filter_on() {
    use synth::codes;
    let g = Generator::new(SynthConfig::new(1500, 77)).unwrap();
    let in_concept = |cc: &Option<fhir::CodeableConcept>, concepts: &[&codes::Concept]| {
        cc.as_ref().is_some_and(|cc| {
            concepts
                .iter()
                .any(|k| k.codes.iter().any(|c| cc.has_code(c.system, c.code)))
        })
    };
    let has_category = |o: &fhir::Observation, code: &str| {
        o.category.iter().any(|c| {
            c.has_code(
                "http://terminology.hl7.org/CodeSystem/observation-category",
                code,
            )
        })
    };
    let labs = [
        &codes::PAP_TEST,
        &codes::HPV_TEST,
        &codes::FOBT,
        &codes::SDNA_FIT,
        &codes::EGFR,
        &codes::UACR,
        &codes::HBA1C,
        &codes::LDL_CHOLESTEROL,
    ];
    let assessments = [&codes::TOBACCO_SCREENING, &codes::FALLS_SCREENING];
    let mut seen = [0usize; 4];
    let encounter_classes: std::collections::HashMap<String, String> = (0..1500)
        .flat_map(|i| g.patient(i))
        .filter_map(|r| match r {
            Resource::Encounter(e) => Some((e.id.clone().unwrap(), e.class.unwrap().code.unwrap())),
            _ => None,
        })
        .collect();
    for i in 0..1500 {
        for r in g.patient(i) {
            match &r {
                Resource::Observation(o) => {
                    assert_eq!(o.status.as_deref(), Some("final"));
                    if in_concept(&o.code, &labs) {
                        seen[0] += 1;
                        assert!(has_category(o, "laboratory"));
                        assert!(
                            o.value_quantity.is_some()
                                || o.value_codeable_concept.is_some()
                                || o.value_string.is_some()
                        );
                    }
                    if in_concept(&o.code, &assessments) {
                        seen[1] += 1;
                        assert!(has_category(o, "survey"));
                    }
                    if in_concept(
                        &o.code,
                        &[
                            &codes::ADULT_DEPRESSION_SCREENING,
                            &codes::ADOLESCENT_DEPRESSION_SCREENING,
                        ],
                    ) {
                        seen[2] += 1;
                        assert!(o.value_codeable_concept.is_some());
                    }
                    if in_concept(&o.code, &[&codes::RETINAL_EYE_EXAM]) {
                        assert!(has_category(o, "exam"));
                    }
                    let declared = o
                        .meta
                        .as_ref()
                        .map(|m| m.profile.clone())
                        .unwrap_or_default();
                    let expected = if in_concept(&o.code, &[&codes::BP_PANEL]) {
                        "http://hl7.org/fhir/StructureDefinition/bp"
                    } else if in_concept(&o.code, &[&codes::BMI]) {
                        "http://hl7.org/fhir/StructureDefinition/bmi"
                    } else if in_concept(&o.code, &[&codes::BODY_WEIGHT]) {
                        "http://hl7.org/fhir/StructureDefinition/bodyweight"
                    } else if in_concept(&o.code, &[&codes::BODY_HEIGHT]) {
                        "http://hl7.org/fhir/StructureDefinition/bodyheight"
                    } else {
                        "http://hl7.org/fhir/us/qicore/StructureDefinition/qicore-observation"
                    };
                    // Profile-based retrieves (["observation-bp"], ["observation-bmi"]) select by it.
                    assert_eq!(declared, [expected]);
                    if in_concept(&o.code, &[&codes::BP_PANEL]) {
                        seen[3] += 1;
                        assert!(has_category(o, "vital-signs"));
                        assert_eq!(o.component.len(), 2);
                        let enc = o.encounter.as_ref().unwrap().id_of("Encounter").unwrap();
                        // Blood pressures are taken at ambulatory visits, never ED/inpatient.
                        assert_eq!(encounter_classes[enc], "AMB");
                    }
                }
                Resource::Procedure(p) => {
                    assert_eq!(p.status.as_deref(), Some("completed"));
                    if in_concept(&p.code, &[&codes::BMI_FOLLOW_UP]) {
                        // Counted only with an overweight/obesity reason.
                        assert!(in_concept(
                            &p.reason_code.first().cloned(),
                            &[&codes::OBESITY, &codes::OVERWEIGHT]
                        ));
                    }
                }
                Resource::MedicationRequest(m) => {
                    assert_eq!(
                        (m.status.as_deref(), m.intent.as_deref()),
                        (Some("active"), Some("order"))
                    );
                }
                Resource::Encounter(e) => assert_eq!(e.status.as_deref(), Some("finished")),
                Resource::Condition(c) => {
                    let status = &c.clinical_status.as_ref().unwrap().coding[0];
                    assert_eq!(
                        status.system.as_deref(),
                        Some("http://terminology.hl7.org/CodeSystem/condition-clinical")
                    );
                    assert_eq!(
                        c.abatement_date_time.is_some(),
                        status.code.as_deref() == Some("resolved")
                    );
                }
                _ => {}
            }
        }
    }
    assert!(seen.iter().all(|&n| n > 100), "{seen:?}");
}

/// [`Resource::clinical_date_time`], and for the types generated as raw JSON
/// their main date (order, onset, record, hand-over, effective).
fn clinical_date(r: &Resource) -> Option<fhir::DateTime> {
    let Resource::Other(v) = r else {
        return r.clinical_date_time();
    };
    let key = match r.resource_type() {
        "ServiceRequest" | "DeviceRequest" => "authoredOn",
        "AllergyIntolerance" => "onsetDateTime",
        "AdverseEvent" => "recordedDate",
        "MedicationDispense" => "whenHandedOver",
        "DiagnosticReport" => "effectiveDateTime",
        _ => return None,
    };
    fhir::parse_date_time(v.get(key)?.as_str()?).ok()
}

/// Nothing happens before a patient's birth or after the as-of date.
#[test]
fn events_fall_between_birth_and_as_of() {
    let g = Generator::new(SynthConfig::new(3000, 8)).unwrap();
    let as_of = g.config().as_of;
    let mut checked = 0;
    for i in 0..3000 {
        let rs = g.patient(i);
        let Resource::Patient(p) = &rs[0] else {
            panic!("Patient first")
        };
        let birth = p.birth_date_value().unwrap();
        assert!(birth <= as_of);
        for r in &rs[1..] {
            let d = clinical_date(r)
                .unwrap_or_else(|| panic!("{} without a date", r.resource_type()))
                .date();
            assert!(
                d >= birth && d <= as_of,
                "{} on {d}, born {birth}",
                r.resource_type()
            );
            checked += 1;
        }
    }
    assert!(checked > 50_000, "{checked}");
}

#[test]
fn no_influenza_vaccine_before_six_months() {
    let g = Generator::new(SynthConfig::new(4000, 21)).unwrap();
    let mut infants_checked = 0;
    for i in 0..4000 {
        let rs = g.patient(i);
        let Resource::Patient(p) = &rs[0] else {
            panic!()
        };
        let birth = p.birth_date_value().unwrap();
        for r in &rs {
            if let Resource::Immunization(im) = r {
                let code = im.vaccine_code.as_ref().unwrap().coding[0]
                    .code
                    .as_deref()
                    .unwrap();
                if code == "150" || code == "197" {
                    let d = r.clinical_date_time().unwrap().date();
                    assert!(
                        d.to_days() - birth.to_days() >= 183,
                        "flu vaccine at {} days",
                        d.to_days() - birth.to_days()
                    );
                    if d.to_days() - birth.to_days() < 730 {
                        infants_checked += 1;
                    }
                }
            }
        }
    }
    assert!(infants_checked > 10, "{infants_checked}");
}
