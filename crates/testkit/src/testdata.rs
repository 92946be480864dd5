//! Small hand-shaped FHIR NDJSON datasets for the EDW tests (no real patients), on the
//! synthetic generator's RNG and names: fixed ids (`p{n}`, `org1`, `pr1`…) the tests refer to,
//! and people with known truth for the record-linkage tests. Realistic panels come from `synth`.

use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;

// The synthetic generator's RNG and name lists, so test people look like generated ones.
pub use synth::names::{FAMILY, FEMALE_GIVEN as GIVEN_F, MALE_GIVEN as GIVEN_M};
pub use synth::rng::Rng;

const STREETS: &[&str] = &[
    "Main St", "Oak Ave", "Pine Rd", "Maple Dr", "Cedar Ln", "Elm St", "Lake Rd", "Hill Ct",
];
const CITIES: &[(&str, &str, &str)] = &[
    ("Springfield", "IL", "62701"),
    ("Madison", "WI", "53703"),
    ("Columbus", "OH", "43215"),
    ("Salem", "OR", "97301"),
    ("Dover", "DE", "19901"),
    ("Austin", "TX", "78701"),
];

/// A synthetic person's demographics (the "truth" behind source records).
#[derive(Clone, Debug, PartialEq)]
pub struct Person {
    pub family: String,
    pub given: String,
    pub sex: &'static str,
    pub birth_date: String,
    pub line: String,
    pub city: String,
    pub state: String,
    pub postal: String,
    pub phone: String,
    /// A shared identifier (e.g. a payer member id) known to some sources.
    pub member_id: String,
}

pub fn random_person(rng: &mut Rng, n: u64) -> Person {
    let female = rng.chance(0.5);
    let given = if female {
        rng.pick(GIVEN_F)
    } else {
        rng.pick(GIVEN_M)
    };
    let (city, state, postal) = *rng.pick(CITIES);
    Person {
        family: rng.pick(FAMILY).to_string(),
        given: given.to_string(),
        sex: if female { "female" } else { "male" },
        birth_date: format!(
            "{}-{:02}-{:02}",
            1935 + rng.below(85),
            1 + rng.below(12),
            1 + rng.below(28)
        ),
        line: format!("{} {}", 1 + rng.below(9999), rng.pick(STREETS)),
        city: city.into(),
        state: state.into(),
        postal: postal.into(),
        phone: format!("555-{:03}-{:04}", rng.below(1000), rng.below(10000)),
        member_id: format!("M{:09}", n),
    }
}

pub fn patient_json(
    p: &Person,
    id: &str,
    org_id: Option<&str>,
    mrn_system: &str,
    with_member_id: bool,
) -> Value {
    let mut ids = vec![json!({"system": mrn_system, "value": format!("MRN-{id}"),
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}})];
    if with_member_id {
        ids.push(json!({"system": "https://payer.example.org/member-id", "value": p.member_id}));
    }
    let mut v = json!({
        "resourceType": "Patient", "id": id, "identifier": ids,
        "name": [{"use": "official", "family": p.family, "given": [p.given]}],
        "gender": p.sex, "birthDate": p.birth_date,
        "address": [{"line": [p.line], "city": p.city, "state": p.state, "postalCode": p.postal}],
        "telecom": [{"system": "phone", "value": p.phone}],
    });
    if let Some(o) = org_id {
        v["managingOrganization"] = json!({"reference": format!("Organization/{o}")});
    }
    v
}

/// Counts of lines written per resource type.
#[derive(Debug, Default, Clone)]
pub struct Written {
    pub per_type: Vec<(String, usize)>,
    pub total: usize,
}

fn write_lines(dir: &Path, name: &str, lines: &[Value], w: &mut Written) -> std::io::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(dir.join(format!("{name}.ndjson")))?);
    for l in lines {
        serde_json::to_writer(&mut f, l)?;
        f.write_all(b"\n")?;
    }
    f.flush()?;
    w.per_type.push((name.to_string(), lines.len()));
    w.total += lines.len();
    Ok(())
}

pub const PCP_TYPE: &str = "185349003"; // SNOMED "Encounter for check up" (primary-care visit)

/// Write a Bulk-Data style directory: one NDJSON file per resource type.
/// Patients get ids `p{n}`, 2 orgs (`org1`, `org2`), 6 practitioners, 2 care teams.
pub fn write_dataset(dir: &Path, patients: usize, seed: u64) -> std::io::Result<Written> {
    std::fs::create_dir_all(dir)?;
    let mut rng = Rng::seeded(seed);
    let mut w = Written::default();
    let orgs: Vec<Value> = (1..=2)
        .map(|i| json!({"resourceType": "Organization", "id": format!("org{i}"), "name": format!("Clinic {i}"),
            "active": true, "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": format!("10000000{i:02}")}]}))
        .collect();
    let pracs: Vec<Value> = (1..=6)
        .map(|i| json!({"resourceType": "Practitioner", "id": format!("pr{i}"),
            "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": format!("19000000{i:02}")}],
            "name": [{"family": format!("Doctor{i}"), "given": ["Alex"]}],
            "qualification": [{"code": {"coding": [{"system": "http://nucc.org/provider-taxonomy",
                "code": if i % 2 == 0 {"207Q00000X"} else {"207R00000X"}, "display": "Family/Internal Medicine"}]}}]}))
        .collect();
    let teams: Vec<Value> = (1..=2)
        .map(|i| {
            json!({"resourceType": "CareTeam", "id": format!("ct{i}"), "name": format!("Team {i}"),
            "managingOrganization": [{"reference": format!("Organization/org{i}")}],
            "participant": [{"member": {"reference": format!("Practitioner/pr{}", 2 * i - 1)}},
                            {"member": {"reference": format!("Practitioner/pr{}", 2 * i)}}]})
        })
        .collect();
    let mut pats = Vec::new();
    let mut encs = Vec::new();
    let mut conds = Vec::new();
    let mut obs = Vec::new();
    let mut procs = Vec::new();
    let mut meds = Vec::new();
    let mut imms = Vec::new();
    let mut covs = Vec::new();
    for n in 0..patients {
        let pid = format!("p{n}");
        let person = random_person(&mut rng, n as u64);
        let org = if n % 2 == 0 { "org1" } else { "org2" };
        pats.push(patient_json(
            &person,
            &pid,
            Some(org),
            "https://ehr.example.org/mrn",
            true,
        ));
        let subj = json!({"reference": format!("Patient/{pid}")});
        covs.push(
            json!({"resourceType": "Coverage", "id": format!("cov{n}"), "status": "active",
            "beneficiary": subj, "payor": [{"display": "Example Health Plan"}],
            "period": {"start": "2024-01-01"}}),
        );
        let home = 1 + (n % 6);
        for k in 0..(2 + rng.below(5)) {
            let prac = if rng.chance(0.7) {
                home as u64
            } else {
                1 + rng.below(6)
            };
            let (y, m, d) = (2024 + rng.below(2), 1 + rng.below(12), 1 + rng.below(28));
            let pcp = rng.chance(0.8);
            let eid = format!("e{n}-{k}");
            encs.push(json!({"resourceType": "Encounter", "id": eid, "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                "type": [{"coding": [{"system": "http://snomed.info/sct",
                    "code": if pcp {PCP_TYPE} else {"50849002"},
                    "display": if pcp {"Encounter for check up"} else {"Emergency room admission"}}]}],
                "subject": subj,
                "participant": [{"individual": {"reference": format!("Practitioner/pr{prac}")}}],
                "serviceProvider": {"reference": format!("Organization/{org}")},
                "period": {"start": format!("{y}-{m:02}-{d:02}T09:00:00Z"), "end": format!("{y}-{m:02}-{d:02}T09:30:00Z")}}));
            obs.push(json!({"resourceType": "Observation", "id": format!("o{n}-{k}"), "status": "final",
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
                "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6", "display": "Systolic blood pressure"}]},
                "subject": subj, "encounter": {"reference": format!("Encounter/{eid}")},
                "effectiveDateTime": format!("{y}-{m:02}-{d:02}T09:10:00Z"),
                "valueQuantity": {"value": 100 + rng.below(60), "unit": "mm[Hg]", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"},
                "referenceRange": [{"low": {"value": 90}, "high": {"value": 120}}],
                "interpretation": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": "N"}]}]}));
        }
        if rng.chance(0.5) {
            conds.push(json!({"resourceType": "Condition", "id": format!("c{n}"),
                "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
                "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006", "display": "Diabetes mellitus type 2"}]},
                "subject": subj, "onsetDateTime": "2019-05-01"}));
            obs.push(json!({"resourceType": "Observation", "id": format!("a1c{n}"), "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4", "display": "Hemoglobin A1c"}]},
                "subject": subj, "effectiveDateTime": "2025-03-01",
                "valueQuantity": {"value": 6.0 + (rng.below(40) as f64) / 10.0, "unit": "%"}}));
        }
        if rng.chance(0.3) {
            procs.push(json!({"resourceType": "Procedure", "id": format!("pc{n}"), "status": "completed",
                "code": {"coding": [{"system": "http://snomed.info/sct", "code": "73761001", "display": "Colonoscopy"}]},
                "subject": subj, "performedDateTime": "2022-06-15"}));
        }
        if rng.chance(0.4) {
            meds.push(json!({"resourceType": "MedicationRequest", "id": format!("m{n}"), "status": "active", "intent": "order",
                "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "860975", "display": "metformin"}]},
                "subject": subj, "authoredOn": "2025-01-10"}));
        }
        if rng.chance(0.6) {
            imms.push(json!({"resourceType": "Immunization", "id": format!("i{n}"), "status": "completed",
                "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "140", "display": "Influenza"}]},
                "patient": subj, "occurrenceDateTime": "2025-10-01"}));
        }
    }
    write_lines(dir, "Organization", &orgs, &mut w)?;
    write_lines(dir, "Practitioner", &pracs, &mut w)?;
    write_lines(dir, "CareTeam", &teams, &mut w)?;
    write_lines(dir, "Patient", &pats, &mut w)?;
    write_lines(dir, "Coverage", &covs, &mut w)?;
    write_lines(dir, "Encounter", &encs, &mut w)?;
    write_lines(dir, "Condition", &conds, &mut w)?;
    write_lines(dir, "Observation", &obs, &mut w)?;
    write_lines(dir, "Procedure", &procs, &mut w)?;
    write_lines(dir, "MedicationRequest", &meds, &mut w)?;
    write_lines(dir, "Immunization", &imms, &mut w)?;
    Ok(w)
}
