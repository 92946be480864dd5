//! Deterministic synthetic NDJSON for the cache's tests and benchmark.
//! All names are invented; no real people.

#![allow(dead_code)]

use std::fmt::Write as _;

pub struct GenPatient {
    pub id: String,
    pub family: String,
    pub given: String,
    pub birth_date: String,
    pub sex: &'static str,
    pub pcp_id: String,
    pub diabetic: bool,
    pub hypertensive: bool,
}

const FAMILIES: [&str; 16] = [
    "Quillfeather",
    "Brambleton",
    "Harrowgate",
    "Mistlewood",
    "Thornbury",
    "Cobblestone",
    "Fernsby",
    "Oakhurst",
    "Pemberly",
    "Wyndham",
    "Ashcombe",
    "Greywater",
    "Holloway",
    "Kestrelton",
    "Marchbank",
    "Stormont",
];
const GIVENS: [&str; 12] = [
    "Alinta",
    "Bartholo",
    "Corisande",
    "Dorwin",
    "Elspeth",
    "Fintan",
    "Giselda",
    "Hamish",
    "Isolde",
    "Jasper",
    "Kerensa",
    "Lorcan",
];

/// Simple deterministic PRNG (SplitMix64).
pub struct Rng(u64);
impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

pub const PRACTITIONERS: usize = 20;

pub fn practitioner_id(i: usize) -> String {
    format!("pr{i}")
}

/// Reference resources: one organization, practitioners, one Group per PCP.
pub fn reference_lines(patients: &[GenPatient]) -> Vec<String> {
    let mut out = vec![
        r#"{"resourceType":"Organization","id":"org1","name":"Riverbend Community Health"}"#
            .to_owned(),
    ];
    for i in 0..PRACTITIONERS {
        out.push(format!(
            r#"{{"resourceType":"Practitioner","id":"{}","name":[{{"family":"Doctor{i}","given":["Pat"]}}]}}"#,
            practitioner_id(i)
        ));
    }
    for i in 0..PRACTITIONERS {
        let pid = practitioner_id(i);
        let mut members = String::new();
        for p in patients.iter().filter(|p| p.pcp_id == pid) {
            if !members.is_empty() {
                members.push(',');
            }
            let _ = write!(
                members,
                r#"{{"entity":{{"reference":"Patient/{}"}}}}"#,
                p.id
            );
        }
        out.push(format!(
            r#"{{"resourceType":"Group","id":"g{i}","type":"person","actual":true,"name":"Panel of Doctor{i}","managingEntity":{{"reference":"Practitioner/{pid}"}},"member":[{members}]}}"#
        ));
    }
    out
}

pub fn patient(i: usize, rng: &mut Rng) -> GenPatient {
    let y = 1930 + rng.below(90);
    let m = 1 + rng.below(12);
    let d = 1 + rng.below(28);
    GenPatient {
        id: format!("p{i}"),
        family: format!("{}{}", FAMILIES[i % 16], i / 16),
        given: GIVENS[(i * 7 + 3) % 12].to_owned(),
        birth_date: format!("{y:04}-{m:02}-{d:02}"),
        sex: if rng.below(2) == 0 { "female" } else { "male" },
        pcp_id: practitioner_id(i % PRACTITIONERS),
        diabetic: rng.below(4) == 0,
        hypertensive: rng.below(3) == 0,
    }
}

/// Lines for one patient: the Patient and its clinical resources (~12).
pub fn patient_lines(p: &GenPatient, rng: &mut Rng, out: &mut Vec<String>) {
    let id = &p.id;
    out.push(format!(
        r#"{{"resourceType":"Patient","id":"{id}","active":true,"name":[{{"use":"official","family":"{}","given":["{}"]}}],"gender":"{}","birthDate":"{}","generalPractitioner":[{{"reference":"Practitioner/{}"}}],"managingOrganization":{{"reference":"Organization/org1"}}}}"#,
        p.family, p.given, p.sex, p.birth_date, p.pcp_id
    ));
    let subj = format!(r#""subject":{{"reference":"Patient/{id}"}}"#);
    for k in 0..2 {
        let date = format!(
            "20{:02}-{:02}-{:02}",
            20 + rng.below(5),
            1 + rng.below(12),
            1 + rng.below(28)
        );
        out.push(format!(
            r#"{{"resourceType":"Encounter","id":"{id}-e{k}","status":"finished","class":{{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"}},"type":[{{"coding":[{{"system":"http://snomed.info/sct","code":"185349003","display":"Encounter for check up"}}]}}],{subj},"period":{{"start":"{date}T09:00:00Z","end":"{date}T09:30:00Z"}}}}"#
        ));
    }
    if p.diabetic {
        out.push(format!(
            r#"{{"resourceType":"Condition","id":"{id}-c1","clinicalStatus":{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"active"}}]}},"code":{{"coding":[{{"system":"http://snomed.info/sct","code":"44054006","display":"Diabetes mellitus type 2"}}]}},{subj},"onsetDateTime":"2015-06-01"}}"#
        ));
        let v = 5.5 + (rng.below(40) as f64) / 10.0;
        out.push(format!(
            r#"{{"resourceType":"Observation","id":"{id}-a1c","status":"final","code":{{"coding":[{{"system":"http://loinc.org","code":"4548-4","display":"Hemoglobin A1c"}}]}},{subj},"effectiveDateTime":"2024-03-0{}T10:00:00Z","valueQuantity":{{"value":{v},"unit":"%","system":"http://unitsofmeasure.org","code":"%"}}}}"#,
            1 + rng.below(9)
        ));
    }
    if p.hypertensive {
        out.push(format!(
            r#"{{"resourceType":"Condition","id":"{id}-c2","clinicalStatus":{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"active"}}]}},"code":{{"coding":[{{"system":"http://snomed.info/sct","code":"38341003","display":"Hypertensive disorder"}}]}},{subj},"onsetDateTime":"2012-01-15"}}"#
        ));
    }
    out.push(format!(
        r#"{{"resourceType":"Condition","id":"{id}-c3","clinicalStatus":{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"resolved"}}]}},"code":{{"coding":[{{"system":"http://snomed.info/sct","code":"195662009","display":"Acute viral pharyngitis"}}]}},{subj},"onsetDateTime":"2019-02-01","abatementDateTime":"2019-02-10"}}"#
    ));
    let sys = 110 + rng.below(50);
    let dia = 65 + rng.below(30);
    out.push(format!(
        r#"{{"resourceType":"Observation","id":"{id}-bp","status":"final","category":[{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}}]}}],"code":{{"coding":[{{"system":"http://loinc.org","code":"85354-9","display":"Blood pressure panel"}}]}},{subj},"effectiveDateTime":"2024-05-10T10:00:00Z","component":[{{"code":{{"coding":[{{"system":"http://loinc.org","code":"8480-6"}}]}},"valueQuantity":{{"value":{sys},"unit":"mmHg"}}}},{{"code":{{"coding":[{{"system":"http://loinc.org","code":"8462-4"}}]}},"valueQuantity":{{"value":{dia},"unit":"mmHg"}}}}]}}"#
    ));
    let bmi = 19.0 + (rng.below(200) as f64) / 10.0;
    out.push(format!(
        r#"{{"resourceType":"Observation","id":"{id}-bmi","status":"final","code":{{"coding":[{{"system":"http://loinc.org","code":"39156-5","display":"Body mass index"}}]}},{subj},"effectiveDateTime":"2024-05-10T10:00:00Z","valueQuantity":{{"value":{bmi},"unit":"kg/m2"}}}}"#
    ));
    out.push(format!(
        r#"{{"resourceType":"Procedure","id":"{id}-pr","status":"completed","code":{{"coding":[{{"system":"http://snomed.info/sct","code":"73761001","display":"Colonoscopy"}}]}},{subj},"performedDateTime":"2021-09-09"}}"#
    ));
    out.push(format!(
        r#"{{"resourceType":"MedicationRequest","id":"{id}-mr","status":"active","intent":"order","medicationCodeableConcept":{{"coding":[{{"system":"http://www.nlm.nih.gov/research/umls/rxnorm","code":"860975","display":"metformin 500 MG"}}]}},{subj},"authoredOn":"2023-01-05"}}"#
    ));
    out.push(format!(
        r#"{{"resourceType":"Immunization","id":"{id}-im","status":"completed","vaccineCode":{{"coding":[{{"system":"http://hl7.org/fhir/sid/cvx","code":"140","display":"Influenza, seasonal"}}]}},"patient":{{"reference":"Patient/{id}"}},"occurrenceDateTime":"2023-10-01"}}"#
    ));
}

/// A whole panel: `(patients, ndjson lines)`; reference resources first.
pub fn panel(n: usize, seed: u64) -> (Vec<GenPatient>, Vec<String>) {
    let mut rng = Rng::new(seed);
    let patients: Vec<GenPatient> = (0..n).map(|i| patient(i, &mut rng)).collect();
    let mut lines = reference_lines(&patients);
    for p in &patients {
        patient_lines(p, &mut rng, &mut lines);
    }
    (patients, lines)
}

/// Writes lines as one NDJSON file.
pub fn write_ndjson(path: &std::path::Path, lines: &[String]) {
    let mut s = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
    for l in lines {
        s.push_str(l);
        s.push('\n');
    }
    std::fs::write(path, s).expect("write ndjson");
}
