//! The population model: who the patients are and what happens to them.

use crate::codes::{self, Code, Concept};
use crate::names;
use crate::rng::{mix64, Rng};
use fhir::{
    age_in_years, Address, CodeableConcept, Coding, ContactPoint, Coverage, Date, Dosage,
    Encounter, EncounterHospitalization, EncounterParticipant, Extension, Group, GroupMember,
    HumanName, Identifier, Immunization, MedicationRequest, Meta, Observation,
    ObservationComponent, ObservationReferenceRange, Organization, Patient, Period, Practitioner,
    PractitionerQualification, Procedure, Quantity, Reference, Resource,
};
use serde_json::json;

mod extras;

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynthConfig {
    pub patients: u64,
    pub seed: u64,
    /// Last day of data; the measurement period is this date's calendar year
    /// up to this date.
    pub as_of: Date,
    /// Primary-care providers; 0 means one per [`PATIENTS_PER_PROVIDER`].
    pub providers: u32,
}

/// Panel size used when `providers` is 0.
pub const PATIENTS_PER_PROVIDER: u64 = 1500;
/// Providers per clinic organization.
pub const PROVIDERS_PER_CLINIC: u32 = 5;

impl SynthConfig {
    /// `patients` patients, as of 2025-12-31, automatic provider count.
    pub fn new(patients: u64, seed: u64) -> SynthConfig {
        SynthConfig {
            patients,
            seed,
            as_of: Date {
                year: 2025,
                month: 12,
                day: 31,
            },
            providers: 0,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("as-of year must be between 1900 and 9000")]
    AsOfOutOfRange,
    #[error("more providers than patients × 10 is not a panel")]
    TooManyProviders,
}

/// Deterministic generator: the same config always yields the same resources,
/// and `patient(i)` depends only on (seed, i, config).
#[derive(Debug, Clone)]
pub struct Generator {
    cfg: SynthConfig,
    providers: u32,
    clinics: u32,
    mp_start: Date,
    mp_end: Date,
}

const STREAM_PCP: u64 = 1;
const STREAM_PATIENT: u64 = 2;
const STREAM_PRACTITIONER: u64 = 3;
const STREAM_CLINIC: u64 = 4;
/// The resource types added later ([`extras`]): a stream of their own, so the
/// resources generated before them do not change.
const STREAM_EXTRAS: u64 = 5;

pub const PAYERS: &[(&str, &str)] = &[
    ("org-payer-medicare", "Medicare (synthetic)"),
    ("org-payer-medicaid", "State Medicaid Program (synthetic)"),
    ("org-payer-1", "Northstar Health Plan (synthetic)"),
    ("org-payer-2", "Bluewater Mutual Insurance (synthetic)"),
    ("org-payer-3", "Keystone Benefit Co (synthetic)"),
];
pub const HOSPITAL_ID: &str = "org-hospital";
const MRN_SYSTEM: &str = "http://phm-workstation.example.org/fhir/sid/mrn";
const NPI_SYSTEM: &str = "http://hl7.org/fhir/sid/us-npi";
const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
const OBS_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";
const INTERPRETATION: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation";

impl Generator {
    pub fn new(cfg: SynthConfig) -> Result<Generator, ConfigError> {
        if !(1900..=9000).contains(&cfg.as_of.year) {
            return Err(ConfigError::AsOfOutOfRange);
        }
        let providers = if cfg.providers == 0 {
            cfg.patients.div_ceil(PATIENTS_PER_PROVIDER).max(1) as u32
        } else {
            cfg.providers
        };
        if u64::from(providers) > cfg.patients.saturating_mul(10).max(10) {
            return Err(ConfigError::TooManyProviders);
        }
        Ok(Generator {
            cfg,
            providers,
            clinics: providers.div_ceil(PROVIDERS_PER_CLINIC),
            mp_start: Date {
                year: cfg.as_of.year,
                month: 1,
                day: 1,
            },
            mp_end: cfg.as_of,
        })
    }

    pub fn config(&self) -> &SynthConfig {
        &self.cfg
    }

    /// Number of primary-care providers (Practitioners and Groups).
    pub fn providers(&self) -> u32 {
        self.providers
    }

    /// The measurement period: 1 January of the as-of year to the as-of date.
    pub fn measurement_period(&self) -> (Date, Date) {
        (self.mp_start, self.mp_end)
    }

    /// The Patient id of patient `index` (unique per index within a seed).
    pub fn patient_id(&self, index: u64) -> String {
        format!(
            "pt-{:016x}",
            mix64(index.wrapping_add(mix64(self.cfg.seed)))
        )
    }

    /// The primary-care provider (0-based) of patient `index`.
    pub fn pcp_of(&self, index: u64) -> u32 {
        Rng::keyed(self.cfg.seed, STREAM_PCP, index).below(u64::from(self.providers)) as u32
    }

    pub fn practitioner_id(&self, provider: u32) -> String {
        format!("pr-{provider}")
    }

    pub fn clinic_id(&self, clinic: u32) -> String {
        format!("org-clinic-{clinic}")
    }

    pub fn group_id(&self, provider: u32) -> String {
        format!("grp-pcp-{provider}")
    }

    fn clinic_of(&self, provider: u32) -> u32 {
        provider / PROVIDERS_PER_CLINIC
    }

    fn town(
        &self,
        clinic: u32,
    ) -> &'static (&'static str, &'static str, &'static str, &'static str) {
        &names::TOWNS[(clinic as usize) % names::TOWNS.len()]
    }

    /// Organizations (clinics, hospital, payers), Practitioners, and one Group
    /// per primary-care provider listing its patients. O(patients) for the
    /// Groups.
    pub fn reference_resources(&self) -> Vec<Resource> {
        let mut out = Vec::new();
        self.for_each_reference_resource(|r| out.push(r));
        out
    }

    /// Like [`Generator::reference_resources`], one resource at a time (a
    /// large population's Groups need not all be in memory at once).
    pub fn for_each_reference_resource(&self, mut emit: impl FnMut(Resource)) {
        for c in 0..self.clinics {
            let mut rng = Rng::keyed(self.cfg.seed, STREAM_CLINIC, u64::from(c));
            let town = self.town(c);
            emit(
                Organization {
                    id: Some(self.clinic_id(c)),
                    meta: qicore("qicore-organization"),
                    identifier: vec![Identifier {
                        system: Some(NPI_SYSTEM.into()),
                        value: Some(npi(2_000_000 + c)),
                        ..Default::default()
                    }],
                    active: Some(true),
                    r#type: vec![org_type("prov", "Healthcare Provider")],
                    name: Some(format!("{} {}", town.0, rng.pick(names::CLINIC_SUFFIXES))),
                    telecom: vec![phone(&mut rng, town.3, "work")],
                    address: vec![address(&mut rng, town, "work")],
                    ..Default::default()
                }
                .into(),
            );
        }
        emit(
            Organization {
                id: Some(HOSPITAL_ID.into()),
                meta: qicore("qicore-organization"),
                active: Some(true),
                r#type: vec![org_type("prov", "Healthcare Provider")],
                name: Some("Regional Medical Center (synthetic)".into()),
                ..Default::default()
            }
            .into(),
        );
        for (id, name) in PAYERS {
            emit(
                Organization {
                    id: Some((*id).into()),
                    meta: qicore("qicore-organization"),
                    active: Some(true),
                    r#type: vec![org_type("pay", "Payer")],
                    name: Some((*name).into()),
                    ..Default::default()
                }
                .into(),
            );
        }
        let mut members: Vec<Vec<u64>> = vec![Vec::new(); self.providers as usize];
        for i in 0..self.cfg.patients {
            members[self.pcp_of(i) as usize].push(i);
        }
        for p in 0..self.providers {
            let mut rng = Rng::keyed(self.cfg.seed, STREAM_PRACTITIONER, u64::from(p));
            let female = rng.chance(0.5);
            let given = if female {
                rng.pick(names::FEMALE_GIVEN)
            } else {
                rng.pick(names::MALE_GIVEN)
            };
            let family = rng.pick(names::FAMILY);
            let town = self.town(self.clinic_of(p));
            emit(
                Practitioner {
                    id: Some(self.practitioner_id(p)),
                    meta: qicore("qicore-practitioner"),
                    identifier: vec![Identifier {
                        system: Some(NPI_SYSTEM.into()),
                        value: Some(npi(1_000_000 + p)),
                        ..Default::default()
                    }],
                    active: Some(true),
                    name: vec![HumanName {
                        family: Some((*family).into()),
                        given: vec![(*given).into()],
                        prefix: vec!["Dr.".into()],
                        suffix: vec!["MD".into()],
                        ..Default::default()
                    }],
                    telecom: vec![phone(&mut rng, town.3, "work")],
                    gender: Some(if female { "female" } else { "male" }.into()),
                    qualification: vec![PractitionerQualification {
                        code: Some(CodeableConcept::from_coding(Coding::new(
                            "http://terminology.hl7.org/CodeSystem/v2-0360",
                            "MD",
                            "Doctor of Medicine",
                        ))),
                        ..Default::default()
                    }],
                    ..Default::default()
                }
                .into(),
            );
        }
        for (p, list) in members.iter().enumerate() {
            let p = p as u32;
            emit(
                Group {
                    id: Some(self.group_id(p)),
                    r#type: Some("person".into()),
                    actual: Some(true),
                    name: Some(format!("Primary care panel of {}", self.practitioner_id(p))),
                    quantity: Some(list.len() as u64),
                    managing_entity: Some(Reference::to("Practitioner", &self.practitioner_id(p))),
                    member: list
                        .iter()
                        .map(|&i| GroupMember {
                            entity: Some(Reference::to("Patient", &self.patient_id(i))),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }
                .into(),
            );
        }
    }

    /// All resources of patient `index` (Patient first). Deterministic per
    /// (config, index); independent of other patients.
    pub fn patient(&self, index: u64) -> Vec<Resource> {
        let mut out = Vec::with_capacity(48);
        PatientBuilder::new(self, index, &mut out).build();
        out
    }

    /// Every resource: reference resources, then each patient's.
    pub fn resources(&self) -> Resources<'_> {
        Resources {
            generator: self,
            pending: self.reference_resources().into_iter(),
            next_patient: 0,
        }
    }
}

/// Iterator over all resources; see [`Generator::resources`].
pub struct Resources<'g> {
    generator: &'g Generator,
    pending: std::vec::IntoIter<Resource>,
    next_patient: u64,
}

impl Resources<'_> {
    /// Patients fully yielded or in progress so far (for progress reports).
    pub fn patients_started(&self) -> u64 {
        self.next_patient
    }
}

impl Iterator for Resources<'_> {
    type Item = Resource;
    fn next(&mut self) -> Option<Resource> {
        loop {
            if let Some(r) = self.pending.next() {
                return Some(r);
            }
            if self.next_patient >= self.generator.cfg.patients {
                return None;
            }
            self.pending = self.generator.patient(self.next_patient).into_iter();
            self.next_patient += 1;
        }
    }
}

// ---------------------------------------------------------------- helpers

/// A 10-digit NPI with a valid Luhn check digit (prefix 80840).
fn npi(n: u32) -> String {
    let base = format!("{:09}", 100_000_000 + n % 800_000_000);
    let digits: Vec<u32> = format!("80840{base}")
        .bytes()
        .map(|b| u32::from(b - b'0'))
        .collect();
    let mut sum = 0;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = *d;
        if i % 2 == 0 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    format!("{base}{}", (10 - sum % 10) % 10)
}

const QICORE: &str = "http://hl7.org/fhir/us/qicore/StructureDefinition/";

/// Declared profile: the measures' retrieves select resources by it.
fn qicore(name: &str) -> Option<Meta> {
    profile(format!("{QICORE}{name}"))
}

/// FHIR core vital-signs profiles (what QI-Core's BP and BMI retrieves use).
fn vital_profile(name: &str) -> Option<Meta> {
    profile(format!("http://hl7.org/fhir/StructureDefinition/{name}"))
}

fn profile(url: String) -> Option<Meta> {
    Some(Meta {
        profile: vec![url],
        ..Default::default()
    })
}

fn coding(c: &Code) -> Coding {
    Coding::new(c.system, c.code, c.display)
}

fn cc(c: &Code) -> CodeableConcept {
    CodeableConcept::from_coding(coding(c))
}

/// All codings of a concept (e.g. ICD-10-CM and SNOMED for a diagnosis).
fn cc_all(concept: &Concept) -> CodeableConcept {
    CodeableConcept {
        coding: concept.codes.iter().map(coding).collect(),
        text: None,
    }
}

fn cc_sys(system: &str, code: &str, display: &str) -> CodeableConcept {
    CodeableConcept::from_coding(Coding::new(system, code, display))
}

fn org_type(code: &str, display: &str) -> CodeableConcept {
    cc_sys(
        "http://terminology.hl7.org/CodeSystem/organization-type",
        code,
        display,
    )
}

fn obs_category(code: &str) -> CodeableConcept {
    let display = match code {
        "vital-signs" => "Vital Signs",
        "laboratory" => "Laboratory",
        "social-history" => "Social History",
        "survey" => "Survey",
        "exam" => "Exam",
        "imaging" => "Imaging",
        _ => code,
    };
    cc_sys(OBS_CATEGORY, code, display)
}

fn ucum(value: f64, unit: &str) -> Quantity {
    Quantity {
        value: Some(value),
        unit: Some(unit.into()),
        system: Some(codes::UCUM.into()),
        code: Some(unit.into()),
        ..Default::default()
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn phone(rng: &mut Rng, area: &str, use_: &str) -> ContactPoint {
    ContactPoint {
        system: Some("phone".into()),
        value: Some(format!("({area}) 555-{:04}", rng.range(100, 199))),
        r#use: Some(use_.into()),
        ..Default::default()
    }
}

fn address(rng: &mut Rng, town: &(&str, &str, &str, &str), use_: &str) -> Address {
    Address {
        r#use: Some(use_.into()),
        line: vec![format!(
            "{} {}",
            rng.range(1, 9899),
            rng.pick(names::STREETS)
        )],
        city: Some(town.0.into()),
        state: Some(town.1.into()),
        postal_code: Some(town.2.into()),
        country: Some("US".into()),
        ..Default::default()
    }
}

/// `YYYY-MM-DDThh:mm:00-05:00` for `minute` minutes after midnight.
fn date_time(d: Date, minute: u32) -> String {
    format!("{d}T{:02}:{:02}:00-05:00", (minute / 60) % 24, minute % 60)
}

fn interp(code: &str, display: &str) -> CodeableConcept {
    cc_sys(INTERPRETATION, code, display)
}

// ---------------------------------------------------------------- patients

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VisitKind {
    Office,
    Preventive,
    Telephone,
    Virtual,
    Emergency,
    Inpatient,
}

impl VisitKind {
    fn in_person_primary_care(self) -> bool {
        matches!(self, VisitKind::Office | VisitKind::Preventive)
    }
}

struct Visit {
    date: Date,
    minute: u32,
    kind: VisitKind,
    id: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tobacco {
    Never,
    Former,
    Current,
}

struct PatientBuilder<'g, 'o> {
    g: &'g Generator,
    rng: Rng,
    index: u64,
    pid: String,
    subject: Reference,
    pcp: u32,
    out: &'o mut Vec<Resource>,
    seq: u32,
    female: bool,
    birth: Date,
    age: i32,
    visits: Vec<Visit>,
    /// An LDL ≥ 190 mg/dL was recorded (statin-eligible).
    high_ldl: bool,
    /// A 10-year ASCVD risk ≥ 20 % was recorded (statin-eligible).
    high_cvd_risk: bool,
}

impl<'g, 'o> PatientBuilder<'g, 'o> {
    fn new(g: &'g Generator, index: u64, out: &'o mut Vec<Resource>) -> Self {
        let pid = g.patient_id(index);
        PatientBuilder {
            g,
            rng: Rng::keyed(g.cfg.seed, STREAM_PATIENT, index),
            index,
            subject: Reference::to("Patient", &pid),
            pid,
            pcp: g.pcp_of(index),
            out,
            seq: 0,
            female: false,
            birth: g.cfg.as_of,
            age: 0,
            visits: Vec::new(),
            high_ldl: false,
            high_cvd_risk: false,
        }
    }

    fn id(&mut self, kind: &str) -> String {
        self.seq += 1;
        format!("{}-{kind}{}", self.pid, self.seq)
    }

    fn subject(&self) -> Option<Reference> {
        Some(self.subject.clone())
    }

    fn pcp_ref(&self) -> Reference {
        Reference::to("Practitioner", &self.g.practitioner_id(self.pcp))
    }

    fn as_of(&self) -> Date {
        self.g.cfg.as_of
    }

    fn age_on(&self, d: Date) -> i32 {
        age_in_years(self.birth, d)
    }

    /// A random day in `[from, to]` (clamped to not before birth).
    fn day_between(&mut self, from: Date, to: Date) -> Date {
        let lo = from.to_days().max(self.birth.to_days());
        let hi = to.to_days().max(lo);
        Date::from_days(self.rng.range(lo, hi))
    }

    /// A day in the measurement period.
    fn day_in_mp(&mut self) -> Date {
        let (s, e) = self.g.measurement_period();
        self.day_between(s, e)
    }

    fn build(mut self) {
        // Age mix of a US primary-care panel, with some children.
        const AGE_BANDS: &[(i32, i32, u32)] = &[
            (0, 4, 5),
            (5, 11, 7),
            (12, 17, 7),
            (18, 29, 14),
            (30, 39, 13),
            (40, 49, 12),
            (50, 64, 21),
            (65, 74, 12),
            (75, 84, 7),
            (85, 95, 2),
        ];
        let total: u32 = AGE_BANDS.iter().map(|b| b.2).sum();
        let mut pick = self.rng.below(u64::from(total)) as u32;
        let mut band = AGE_BANDS[0];
        for b in AGE_BANDS {
            if pick < b.2 {
                band = *b;
                break;
            }
            pick -= b.2;
        }
        let target_age = self.rng.range(i64::from(band.0), i64::from(band.1));
        let days = (target_age * 36525) / 100 + self.rng.range(1, 364);
        self.birth = self.as_of().add_days(-days);
        self.age = self.age_on(self.as_of());
        self.female = self.rng.chance(0.51);
        self.patient_resource();

        let age = self.age;
        let adult = age >= 18;
        let r = &mut self.rng;
        let by_age = |young: f64, mid: f64, old: f64| -> f64 {
            if age < 18 {
                0.0
            } else if age < 40 {
                young
            } else if age < 60 {
                mid
            } else {
                old
            }
        };
        let dm2 = r.chance(by_age(0.03, 0.11, 0.20));
        let dm1 = !dm2 && r.chance(if age >= 5 { 0.004 } else { 0.0 });
        let diabetic = dm2 || dm1;
        let htn = r.chance((by_age(0.07, 0.27, 0.50) * if diabetic { 1.5 } else { 1.0 }).min(0.9));
        let hld = r.chance(by_age(0.05, 0.25, 0.40));
        let ascvd = r.chance(by_age(0.0, 0.04, 0.15) * if diabetic { 1.6 } else { 1.0 });
        let ckd3 = r.chance(by_age(0.005, 0.03, 0.12) + if diabetic { 0.08 } else { 0.0 });
        let depression = r.chance(if age >= 12 { 0.08 } else { 0.0 });
        let tobacco = if age < 12 {
            Tobacco::Never
        } else {
            let p = r.f64();
            let current = if adult { 0.13 } else { 0.03 };
            if p < current {
                Tobacco::Current
            } else if adult && p < current + 0.20 {
                Tobacco::Former
            } else {
                Tobacco::Never
            }
        };
        let bmi = if adult {
            r.normal(29.0, 5.5).clamp(16.5, 55.0)
        } else {
            r.normal(18.5, 3.0).clamp(13.0, 35.0)
        };
        let engaged = r.chance(0.93);

        self.visits(
            engaged,
            diabetic as u32 + htn as u32 + ascvd as u32 + ckd3 as u32,
        );
        let onset_floor = self.birth.add_days(18 * 365);
        if htn {
            self.condition(&codes::ESSENTIAL_HYPERTENSION, onset_floor, false);
        }
        if dm2 {
            self.condition(&codes::DIABETES_TYPE_2, onset_floor, false);
        }
        if dm1 {
            let f = self.birth.add_days(3 * 365);
            self.condition(&codes::DIABETES_TYPE_1, f, false);
        }
        if hld {
            self.condition(&codes::HYPERLIPIDEMIA, onset_floor, false);
        }
        if ascvd {
            let c = match self.rng.below(3) {
                0 => &codes::CORONARY_ATHEROSCLEROSIS,
                1 => &codes::MYOCARDIAL_INFARCTION,
                _ => &codes::STROKE,
            };
            self.condition(c, onset_floor, false);
        }
        if ckd3 {
            self.condition(&codes::CKD_STAGE_3, onset_floor, false);
        }
        if depression {
            let f = self.birth.add_days(12 * 365);
            self.condition(&codes::DEPRESSION, f, true);
        }
        if adult && bmi >= 30.0 && self.rng.chance(0.5) {
            self.condition(&codes::OBESITY, onset_floor, false);
        }

        self.vitals(htn, bmi);
        self.labs(diabetic, htn, ascvd, ckd3);
        self.cvd_risk(htn, tobacco == Tobacco::Current, diabetic || ascvd);
        self.screenings(diabetic, tobacco, depression, bmi);
        self.medications(htn, dm2, diabetic, hld, ascvd, depression);
        self.immunizations();
        self.coverage();
        self.extras();
    }

    fn patient_resource(&mut self) {
        let r = &mut self.rng;
        let given = if self.female {
            r.pick(names::FEMALE_GIVEN)
        } else {
            r.pick(names::MALE_GIVEN)
        };
        let middle = if self.female {
            r.pick(names::FEMALE_GIVEN)
        } else {
            r.pick(names::MALE_GIVEN)
        };
        let family = r.pick(names::FAMILY);
        let clinic = self.g.clinic_of(self.pcp);
        let town = self.g.town(clinic);
        // US census-like race/ethnicity mix.
        let race = {
            let p = r.below(100);
            let i = match p {
                0..=61 => 0,  // White
                62..=74 => 1, // Black or African American
                75..=80 => 2, // Asian
                81..=81 => 3, // American Indian or Alaska Native
                82..=82 => 4, // Native Hawaiian or Other Pacific Islander
                _ => 5,       // Other Race
            };
            &codes::RACE.codes[i]
        };
        let ethnicity = &codes::ETHNICITY.codes[if r.chance(0.19) { 0 } else { 1 }];
        let omb = |url: &str, c: &Code| Extension {
            url: Some(url.into()),
            extension: vec![
                Extension {
                    url: Some("ombCategory".into()),
                    value_coding: Some(coding(c)),
                    ..Default::default()
                },
                Extension {
                    url: Some("text".into()),
                    value_string: Some(c.display.into()),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let telecom = vec![phone(r, town.3, "home")];
        let addr = address(r, town, "home");
        let patient = Patient {
            id: Some(self.pid.clone()),
            meta: qicore("qicore-patient"),
            extension: vec![
                omb(
                    "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race",
                    race,
                ),
                omb(
                    "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity",
                    ethnicity,
                ),
            ],
            identifier: vec![Identifier {
                r#use: Some("usual".into()),
                r#type: Some(cc_sys(
                    "http://terminology.hl7.org/CodeSystem/v2-0203",
                    "MR",
                    "Medical Record Number",
                )),
                system: Some(MRN_SYSTEM.into()),
                value: Some(format!("M{:09}", self.index + 1)),
                ..Default::default()
            }],
            active: Some(true),
            name: vec![HumanName {
                r#use: Some("official".into()),
                family: Some((*family).into()),
                given: vec![(*given).into(), (*middle).into()],
                ..Default::default()
            }],
            telecom,
            gender: Some(if self.female { "female" } else { "male" }.into()),
            birth_date: Some(self.birth.to_string()),
            address: vec![addr],
            general_practitioner: vec![self.pcp_ref()],
            managing_organization: Some(Reference::to("Organization", &self.g.clinic_id(clinic))),
            ..Default::default()
        };
        self.out.push(patient.into());
    }

    /// Encounters over the three years before as-of.
    fn visits(&mut self, engaged: bool, chronic: u32) {
        let as_of = self.as_of();
        let (mp_start, _) = self.g.measurement_period();
        let mut planned = Vec::new();
        for year_back in (0..3).rev() {
            let start = Date {
                year: mp_start.year - year_back,
                month: 1,
                day: 1,
            };
            let end = if year_back == 0 {
                as_of
            } else {
                Date {
                    year: start.year,
                    month: 12,
                    day: 31,
                }
            };
            if end < self.birth {
                continue;
            }
            let base = if self.age < 18 {
                1.2
            } else {
                1.4 + 0.8 * f64::from(chronic) + if self.age >= 65 { 0.8 } else { 0.0 }
            };
            let mut n = base.floor() as u32 + u32::from(self.rng.chance(base.fract()));
            if year_back == 0 {
                n = if engaged { n.max(1) } else { 0 };
            }
            let mut preventive_done = false;
            for _ in 0..n {
                let date = self.day_between(start, end);
                let kind =
                    if !preventive_done && self.rng.chance(if self.age < 18 { 0.7 } else { 0.5 }) {
                        preventive_done = true;
                        VisitKind::Preventive
                    } else {
                        match self.rng.below(100) {
                            0..=79 => VisitKind::Office,
                            80..=89 => VisitKind::Telephone,
                            _ => VisitKind::Virtual,
                        }
                    };
                planned.push((date, kind));
            }
            if engaged && self.rng.chance(if self.age >= 65 { 0.14 } else { 0.09 }) {
                let d = self.day_between(start, end);
                planned.push((d, VisitKind::Emergency));
            }
            if self.age >= 18 && self.rng.chance(if self.age >= 65 { 0.07 } else { 0.025 }) {
                let d = self.day_between(start, end);
                planned.push((d, VisitKind::Inpatient));
            }
        }
        // Create in date order so encounter ids follow the timeline.
        planned.sort_by_key(|v| v.0);
        for (date, kind) in planned {
            self.encounter(date, kind);
        }
        self.visits.sort_by_key(|v| (v.date, v.minute));
    }

    fn encounter(&mut self, date: Date, kind: VisitKind) {
        let id = self.id("enc");
        let age = self.age_on(date);
        let minute = (8 * 60 + self.rng.below(9 * 4) * 15) as u32;
        let (code, class, length_min) = match kind {
            VisitKind::Office => (
                self.rng.pick(codes::OFFICE_VISIT.codes),
                ("AMB", "ambulatory"),
                20,
            ),
            VisitKind::Preventive if age < 18 => {
                let i = match age {
                    0 => 0,
                    1..=4 => 1,
                    5..=11 => 2,
                    _ => 3,
                };
                (&codes::PREVENTIVE_CHILD.codes[i], ("AMB", "ambulatory"), 30)
            }
            VisitKind::Preventive if age >= 65 => {
                (&codes::ANNUAL_WELLNESS.codes[1], ("AMB", "ambulatory"), 40)
            }
            VisitKind::Preventive => (
                &codes::PREVENTIVE_ADULT.codes[if age < 40 { 0 } else { 1 }],
                ("AMB", "ambulatory"),
                40,
            ),
            VisitKind::Telephone => (
                self.rng.pick(codes::TELEPHONE_VISIT.codes),
                ("VR", "virtual"),
                15,
            ),
            VisitKind::Virtual => (
                self.rng.pick(codes::VIRTUAL_VISIT.codes),
                ("VR", "virtual"),
                15,
            ),
            VisitKind::Emergency => (
                self.rng.pick(codes::ED_VISIT.codes),
                ("EMER", "emergency"),
                240,
            ),
            VisitKind::Inpatient => (
                self.rng.pick(codes::INPATIENT_ADMISSION.codes),
                ("IMP", "inpatient encounter"),
                0,
            ),
        };
        let (start, end) = if kind == VisitKind::Inpatient {
            let days = self.rng.range(1, 6);
            let end = date.add_days(days).min(self.as_of());
            // Discharged at 11:00, or an hour after admission when admitted on the
            // last day of data (an end before the start is invalid FHIR).
            let end_minute = if end == date { minute + 60 } else { 11 * 60 };
            (date_time(date, minute), date_time(end, end_minute))
        } else {
            (
                date_time(date, minute),
                date_time(date, minute + length_min),
            )
        };
        let primary_care = !matches!(kind, VisitKind::Emergency | VisitKind::Inpatient);
        let enc = Encounter {
            id: Some(id.clone()),
            meta: qicore("qicore-encounter"),
            status: Some("finished".into()),
            class: Some(Coding::new(ACT_CODE, class.0, class.1)),
            r#type: vec![cc(code)],
            subject: self.subject(),
            participant: if primary_care {
                vec![EncounterParticipant {
                    individual: Some(self.pcp_ref()),
                    ..Default::default()
                }]
            } else {
                Vec::new()
            },
            period: Some(Period {
                start: Some(start),
                end: Some(end),
            }),
            hospitalization: (kind == VisitKind::Inpatient).then(|| EncounterHospitalization {
                discharge_disposition: Some(cc_sys(
                    codes::SNOMED,
                    "306689006",
                    "Discharge to home (procedure)",
                )),
                ..Default::default()
            }),
            service_provider: Some(Reference::to(
                "Organization",
                &if primary_care {
                    self.g.clinic_id(self.g.clinic_of(self.pcp))
                } else {
                    HOSPITAL_ID.to_string()
                },
            )),
            ..Default::default()
        };
        self.out.push(enc.into());
        self.visits.push(Visit {
            date,
            minute,
            kind,
            id,
        });
    }

    fn condition(&mut self, concept: &Concept, earliest: Date, may_resolve: bool) {
        let as_of = self.as_of();
        // Mostly long-standing; ~8% diagnosed within the last year.
        let onset = if self.rng.chance(0.08) {
            self.day_between(as_of.add_days(-365), as_of.add_days(-30))
        } else {
            self.day_between(
                earliest.max(as_of.add_days(-20 * 365)),
                as_of.add_days(-365),
            )
        };
        let resolved = may_resolve && self.rng.chance(0.3);
        let abatement = resolved.then(|| self.day_between(onset.add_days(90), as_of).to_string());
        let id = self.id("cond");
        let c = fhir::Condition {
            id: Some(id),
            meta: qicore("qicore-condition"),
            clinical_status: Some(cc_sys(
                "http://terminology.hl7.org/CodeSystem/condition-clinical",
                if resolved { "resolved" } else { "active" },
                if resolved { "Resolved" } else { "Active" },
            )),
            verification_status: Some(cc_sys(
                "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                "confirmed",
                "Confirmed",
            )),
            category: vec![cc_sys(
                "http://terminology.hl7.org/CodeSystem/condition-category",
                "problem-list-item",
                "Problem List Item",
            )],
            code: Some(cc_all(concept)),
            subject: self.subject(),
            onset_date_time: Some(onset.to_string()),
            abatement_date_time: abatement,
            recorded_date: Some(onset.to_string()),
            recorder: Some(self.pcp_ref()),
            ..Default::default()
        };
        self.out.push(c.into());
    }

    fn observation(
        &mut self,
        code: CodeableConcept,
        category: &str,
        effective: String,
        encounter: Option<&str>,
    ) -> Observation {
        Observation {
            id: Some(self.id("obs")),
            meta: qicore("qicore-observation"),
            status: Some("final".into()),
            category: vec![obs_category(category)],
            code: Some(code),
            subject: self.subject(),
            encounter: encounter.map(|e| Reference::to("Encounter", e)),
            effective_date_time: Some(effective),
            ..Default::default()
        }
    }

    /// Blood pressure, weight, height and BMI at in-person primary-care visits.
    fn vitals(&mut self, htn: bool, bmi: f64) {
        let controlled = self.rng.chance(0.62);
        let base_sys = if htn {
            if controlled {
                self.rng.normal(128.0, 5.0).min(138.0)
            } else {
                self.rng.normal(150.0, 7.0).max(141.0)
            }
        } else {
            self.rng.normal(117.0, 8.0).clamp(95.0, 136.0)
        };
        let height_cm = if self.female {
            self.rng.normal(162.0, 6.5)
        } else {
            self.rng.normal(176.0, 7.0)
        };
        let n = self.visits.len();
        let mut height_year = 0;
        for i in 0..n {
            if !self.visits[i].kind.in_person_primary_care() {
                continue;
            }
            let (date, minute, enc) = (
                self.visits[i].date,
                self.visits[i].minute,
                self.visits[i].id.clone(),
            );
            let age = self.age_on(date);
            let when = date_time(date, minute + 5);
            if age >= 3 && self.rng.chance(0.92) {
                let sys = (base_sys + self.rng.normal(0.0, 5.0)).round();
                let dia = (sys * 0.55 + self.rng.normal(8.0, 4.0))
                    .round()
                    .clamp(50.0, 110.0);
                let mmhg = |v: f64, c: &Code| ObservationComponent {
                    code: Some(cc(c)),
                    value_quantity: Some(ucum(v, "mm[Hg]")),
                    ..Default::default()
                };
                let mut o = self.observation(
                    cc(&codes::BP_PANEL.codes[0]),
                    "vital-signs",
                    when.clone(),
                    Some(&enc),
                );
                o.meta = vital_profile("bp");
                o.component = vec![
                    mmhg(sys, &codes::SYSTOLIC_BP.codes[0]),
                    mmhg(dia, &codes::DIASTOLIC_BP.codes[0]),
                ];
                if sys >= 140.0 || dia >= 90.0 {
                    o.interpretation = vec![interp("H", "High")];
                }
                self.out.push(o.into());
            }
            if self.rng.chance(0.88) {
                let (h, b) = if age >= 18 {
                    (height_cm, bmi + self.rng.normal(0.0, 0.4))
                } else {
                    let h =
                        (52.0 + 6.2 * f64::from(age) + self.rng.normal(0.0, 3.0)).min(height_cm);
                    (h, bmi)
                };
                let w = b * (h / 100.0) * (h / 100.0);
                // Height once a year for adults; at every weighing for children.
                if age < 18 || height_year != date.year {
                    height_year = date.year;
                    let mut o = self.observation(
                        cc(&codes::BODY_HEIGHT.codes[0]),
                        "vital-signs",
                        when.clone(),
                        Some(&enc),
                    );
                    o.meta = vital_profile("bodyheight");
                    o.value_quantity = Some(ucum(round1(h), "cm"));
                    self.out.push(o.into());
                }
                let mut o = self.observation(
                    cc(&codes::BODY_WEIGHT.codes[0]),
                    "vital-signs",
                    when.clone(),
                    Some(&enc),
                );
                o.meta = vital_profile("bodyweight");
                o.value_quantity = Some(ucum(round1(w), "kg"));
                self.out.push(o.into());
                if age >= 18 {
                    let mut o =
                        self.observation(cc(&codes::BMI.codes[0]), "vital-signs", when, Some(&enc));
                    o.meta = vital_profile("bmi");
                    o.value_quantity = Some(ucum(round1(b), "kg/m2"));
                    self.out.push(o.into());
                }
            }
        }
    }

    fn lab(
        &mut self,
        concept: &Concept,
        date: Date,
        value: f64,
        unit: &str,
        high_above: Option<f64>,
        low_below: Option<f64>,
    ) {
        let when = date_time(date, 7 * 60 + 30);
        let mut o = self.observation(cc(&concept.codes[0]), "laboratory", when.clone(), None);
        o.issued = Some(format!("{}T12:00:00-05:00", date));
        o.value_quantity = Some(ucum(value, unit));
        if let Some(h) = high_above {
            o.interpretation = vec![if value > h {
                interp("H", "High")
            } else if low_below.is_some_and(|l| value < l) {
                interp("L", "Low")
            } else {
                interp("N", "Normal")
            }];
            o.reference_range = vec![ObservationReferenceRange {
                low: low_below.map(|l| ucum(l, unit)),
                high: Some(ucum(h, unit)),
                ..Default::default()
            }];
        }
        self.out.push(o.into());
    }

    fn labs(&mut self, diabetic: bool, htn: bool, ascvd: bool, ckd3: bool) {
        let age = self.age;
        if age < 18 {
            return;
        }
        let prior_year = |d: Date| d.add_days(-365);
        // HbA1c: diabetics mostly tested in the period; ~15% poorly controlled.
        if diabetic {
            let level = self.rng.f64();
            let center = if level < 0.15 {
                10.2
            } else if level < 0.45 {
                8.4
            } else {
                6.9
            };
            let tests = if self.rng.chance(0.88) {
                self.rng.range(1, 3)
            } else {
                0
            };
            for _ in 0..tests {
                let d = self.day_in_mp();
                let v = round1(self.rng.normal(center, 0.5).clamp(5.5, 14.0));
                self.lab(&codes::HBA1C, d, v, "%", Some(5.6), None);
            }
            let d = self.day_in_mp();
            let d = prior_year(d);
            let v = round1(self.rng.normal(center, 0.6).clamp(5.5, 14.0));
            self.lab(&codes::HBA1C, d, v, "%", Some(5.6), None);
        } else if age >= 40 && self.rng.chance(0.2) {
            let d = self.day_in_mp();
            let v = round1(self.rng.normal(5.5, 0.3).clamp(4.5, 6.4));
            self.lab(&codes::HBA1C, d, v, "%", Some(5.6), None);
        }
        // Kidney health: eGFR and urine albumin-creatinine ratio.
        let egfr_p = if diabetic {
            0.85
        } else if htn || ckd3 {
            0.6
        } else if age >= 50 {
            0.3
        } else {
            0.1
        };
        if self.rng.chance(egfr_p) {
            let d = self.day_in_mp();
            let v = if ckd3 {
                self.rng.range(30, 59) as f64
            } else {
                (self.rng.normal(112.0 - 0.6 * f64::from(age), 10.0))
                    .clamp(60.0, 130.0)
                    .round()
            };
            self.lab(&codes::EGFR, d, v, "mL/min/{1.73_m2}", None, None);
        }
        if self.rng.chance(if diabetic {
            0.5
        } else if ckd3 {
            0.4
        } else {
            0.03
        }) {
            let d = self.day_in_mp();
            let v = if ckd3 || self.rng.chance(0.2) {
                self.rng.range(30, 300)
            } else {
                self.rng.range(3, 29)
            } as f64;
            self.lab(&codes::UACR, d, v, "mg/g", Some(30.0), None);
        }
        // LDL cholesterol; ~1% at or above 190 mg/dL.
        if age >= 20
            && self.rng.chance(if ascvd || diabetic {
                0.75
            } else if age >= 40 {
                0.5
            } else {
                0.2
            })
        {
            let d = self.day_in_mp();
            let v = if self.rng.chance(0.012) {
                self.rng.range(190, 260) as f64
            } else {
                self.rng.normal(112.0, 28.0).clamp(40.0, 189.0).round()
            };
            self.high_ldl = v >= 190.0;
            self.lab(&codes::LDL_CHOLESTEROL, d, v, "mg/dL", Some(129.0), None);
        }
    }

    /// Pooled-cohort 10-year ASCVD risk for some 40–75-year-olds without
    /// established disease (the statin measure's fourth population).
    fn cvd_risk(&mut self, htn: bool, smoker: bool, established: bool) {
        if !(40..=75).contains(&self.age) || established || self.high_ldl || !self.rng.chance(0.3) {
            return;
        }
        let mut risk = f64::from(self.age - 40) * 0.55 + if self.female { 0.0 } else { 4.0 };
        risk += if htn { 6.0 } else { 0.0 } + if smoker { 7.0 } else { 0.0 };
        let risk = round1((risk + self.rng.normal(0.0, 3.0)).clamp(0.5, 60.0));
        self.high_cvd_risk = risk >= 20.0;
        let d = self.day_in_mp();
        let mut o = self.observation(
            cc(&codes::CVD_10Y_RISK.codes[0]),
            "survey",
            date_time(d, 10 * 60),
            None,
        );
        o.value_quantity = Some(ucum(risk, "%"));
        self.out.push(o.into());
    }

    /// The first in-person primary-care visit in the measurement period.
    fn mp_visit(&self) -> Option<(Date, u32, String)> {
        let (s, e) = self.g.measurement_period();
        self.visits
            .iter()
            .find(|v| v.kind.in_person_primary_care() && v.date >= s && v.date <= e)
            .map(|v| (v.date, v.minute, v.id.clone()))
    }

    fn procedure(&mut self, code: &Code, date: Date, encounter: Option<&str>) {
        let p = Procedure {
            id: Some(self.id("proc")),
            meta: qicore("qicore-procedure"),
            status: Some("completed".into()),
            code: Some(cc(code)),
            subject: self.subject(),
            encounter: encounter.map(|e| Reference::to("Encounter", e)),
            performed_date_time: Some(date_time(date, 10 * 60)),
            ..Default::default()
        };
        self.out.push(p.into());
    }

    fn screenings(&mut self, diabetic: bool, tobacco: Tobacco, depression: bool, bmi: f64) {
        let as_of = self.as_of();
        let age = self.age;
        let visit = self.mp_visit();
        // Screening and follow-up at a visit in the measurement period.
        if let Some((date, minute, enc)) = visit.clone() {
            let when = date_time(date, minute + 10);
            if age >= 12 && self.rng.chance(0.88) {
                let value = match tobacco {
                    Tobacco::Current => self.rng.pick(codes::TOBACCO_USER.codes),
                    Tobacco::Former => &codes::TOBACCO_NON_USER.codes[1],
                    Tobacco::Never => &codes::TOBACCO_NON_USER.codes[0],
                };
                let mut o = self.observation(
                    cc(&codes::TOBACCO_SCREENING.codes[0]),
                    "social-history",
                    when.clone(),
                    Some(&enc),
                );
                o.value_codeable_concept = Some(cc(value));
                // US Core files smoking status under social-history; the
                // tobacco measure retrieves it as an assessment (survey).
                o.category.push(obs_category("survey"));
                self.out.push(o.into());
                if tobacco == Tobacco::Current && self.rng.chance(0.6) {
                    let c = self.rng.pick(codes::TOBACCO_CESSATION_COUNSELING.codes);
                    self.procedure(c, date, Some(&enc));
                }
            }
            if age >= 12 && self.rng.chance(0.78) {
                let positive = self.rng.chance(if depression { 0.45 } else { 0.08 });
                let screen = if age >= 18 {
                    &codes::ADULT_DEPRESSION_SCREENING
                } else {
                    &codes::ADOLESCENT_DEPRESSION_SCREENING
                };
                let result = if positive {
                    &codes::DEPRESSION_SCREEN_POSITIVE
                } else {
                    &codes::DEPRESSION_SCREEN_NEGATIVE
                };
                let mut o =
                    self.observation(cc(&screen.codes[0]), "survey", when.clone(), Some(&enc));
                o.value_codeable_concept = Some(cc(&result.codes[0]));
                self.out.push(o.into());
                let score = if positive {
                    self.rng.range(10, 24)
                } else {
                    self.rng.range(0, 9)
                };
                let mut o = self.observation(
                    cc(&codes::PHQ9_TOTAL.codes[0]),
                    "survey",
                    when.clone(),
                    Some(&enc),
                );
                o.value_integer = Some(score);
                self.out.push(o.into());
                if positive && self.rng.chance(0.8) {
                    self.procedure(&codes::DEPRESSION_FOLLOW_UP.codes[0], date, Some(&enc));
                }
            }
            if age >= 18 && bmi >= 25.0 && self.rng.chance(0.55) {
                // The BMI measure counts follow-up only with an overweight/obesity reason.
                let reason = if bmi >= 30.0 {
                    &codes::OBESITY
                } else {
                    &codes::OVERWEIGHT
                };
                let c = *self.rng.pick(codes::BMI_FOLLOW_UP.codes);
                self.procedure(&c, date, Some(&enc));
                if let Some(Resource::Procedure(p)) = self.out.last_mut() {
                    p.reason_code = vec![cc_all(reason)];
                }
            }
            if age >= 65 && self.rng.chance(0.55) {
                let o = self.observation(
                    cc(&codes::FALLS_SCREENING.codes[0]),
                    "survey",
                    when,
                    Some(&enc),
                );
                self.out.push(o.into());
            }
        }
        if age >= 66 && self.rng.chance(0.015) {
            let d = self.day_in_mp();
            self.procedure(&codes::HOSPICE_CARE.codes[0], d, None);
        }
        // Cancer screenings (results recorded as Observations, as QI-Core measures expect).
        if self.female && age >= 40 {
            if age >= 50 && self.rng.chance(0.005) {
                let d = self.day_between(as_of.add_days(-15 * 365), as_of.add_days(-3 * 365));
                self.procedure(&codes::BILATERAL_MASTECTOMY.codes[0], d, None);
            } else if self
                .rng
                .chance(if (52..=74).contains(&age) { 0.72 } else { 0.4 })
            {
                let d = self.day_between(as_of.add_days(-820), as_of);
                self.imaging(d);
            } else if self.rng.chance(0.5) {
                let d = self.day_between(as_of.add_days(-5 * 365), as_of.add_days(-900));
                self.imaging(d);
            }
        }
        if self.female && (21..=64).contains(&age) {
            if age >= 35 && self.rng.chance(0.04) {
                let d = self.day_between(as_of.add_days(-20 * 365), as_of.add_days(-365));
                self.procedure(&codes::HYSTERECTOMY_NO_CERVIX.codes[0], d, None);
            } else {
                if self.rng.chance(0.65) {
                    let d = self.day_between(as_of.add_days(-3 * 365 + 30), as_of);
                    let c = *self.rng.pick(codes::PAP_TEST.codes);
                    let mut o = self.observation(cc(&c), "laboratory", date_time(d, 9 * 60), None);
                    // The cervical screening measure counts only results with a value.
                    o.value_string =
                        Some("Negative for intraepithelial lesion or malignancy".into());
                    self.out.push(o.into());
                }
                if age >= 30 && self.rng.chance(0.35) {
                    let d = self.day_between(as_of.add_days(-5 * 365 + 30), as_of);
                    let c = *self.rng.pick(codes::HPV_TEST.codes);
                    let mut o = self.observation(cc(&c), "laboratory", date_time(d, 9 * 60), None);
                    o.value_codeable_concept = Some(cc_sys(
                        codes::SNOMED,
                        "260385009",
                        "Negative (qualifier value)",
                    ));
                    self.out.push(o.into());
                }
            }
        }
        if (45..=75).contains(&age) {
            let p = self.rng.f64();
            if p < 0.55 {
                let d = self.day_between(as_of.add_days(-9 * 365), as_of);
                let c = *self.rng.pick(codes::COLONOSCOPY.codes);
                self.procedure(&c, d, None);
            } else if p < 0.67 {
                let d = self.day_in_mp();
                let mut o = self.observation(
                    cc(&codes::FOBT.codes[0]),
                    "laboratory",
                    date_time(d, 9 * 60),
                    None,
                );
                o.value_codeable_concept = Some(cc_sys(
                    codes::SNOMED,
                    "260385009",
                    "Negative (qualifier value)",
                ));
                self.out.push(o.into());
            } else if p < 0.75 {
                let d = self.day_between(as_of.add_days(-2 * 365), as_of);
                let mut o = self.observation(
                    cc(&codes::SDNA_FIT.codes[0]),
                    "laboratory",
                    date_time(d, 9 * 60),
                    None,
                );
                o.value_codeable_concept = Some(cc_sys(
                    codes::SNOMED,
                    "260385009",
                    "Negative (qualifier value)",
                ));
                self.out.push(o.into());
            }
        }
        if diabetic && age >= 18 && self.rng.chance(0.58) {
            let d = self.day_in_mp();
            let c = *self.rng.pick(codes::RETINAL_EYE_EXAM.codes);
            let o = self.observation(cc(&c), "exam", date_time(d, 14 * 60), None);
            self.out.push(o.into());
        }
    }

    fn imaging(&mut self, d: Date) {
        let c = *self.rng.pick(codes::MAMMOGRAPHY.codes);
        let o = self.observation(cc(&c), "imaging", date_time(d, 11 * 60), None);
        self.out.push(o.into());
    }

    fn med(&mut self, code: &Code) {
        let as_of = self.as_of();
        let authored = self.day_between(as_of.add_days(-300), as_of.add_days(-1));
        let m = MedicationRequest {
            id: Some(self.id("med")),
            meta: qicore("qicore-medicationrequest"),
            status: Some("active".into()),
            intent: Some("order".into()),
            category: vec![cc_sys(
                "http://terminology.hl7.org/CodeSystem/medicationrequest-category",
                "community",
                "Community",
            )],
            medication_codeable_concept: Some(cc(code)),
            subject: self.subject(),
            authored_on: Some(authored.to_string()),
            requester: Some(self.pcp_ref()),
            dosage_instruction: vec![Dosage {
                sequence: Some(1),
                text: Some("Take 1 tablet by mouth once daily".into()),
                timing: Some(json!({"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}})),
                ..Default::default()
            }],
            dispense_request: Some(json!({
                "numberOfRepeatsAllowed": 3,
                "quantity": {"value": 90, "unit": "tablet"},
                "expectedSupplyDuration": {"value": 90, "unit": "days", "system": codes::UCUM, "code": "d"}
            })),
            ..Default::default()
        };
        self.out.push(m.into());
    }

    fn medications(
        &mut self,
        htn: bool,
        dm2: bool,
        diabetic: bool,
        hld: bool,
        ascvd: bool,
        depression: bool,
    ) {
        if htn && self.rng.chance(0.8) {
            let first = self.rng.below(codes::ANTIHYPERTENSIVE.codes.len() as u64) as usize;
            self.med(&codes::ANTIHYPERTENSIVE.codes[first]);
            if self.rng.chance(0.35) {
                let second =
                    (first + 1 + self.rng.below(3) as usize) % codes::ANTIHYPERTENSIVE.codes.len();
                self.med(&codes::ANTIHYPERTENSIVE.codes[second]);
            }
        }
        if dm2 && self.rng.chance(0.75) {
            self.med(&codes::METFORMIN.codes[0]);
        }
        let statin_p = if ascvd {
            0.78
        } else if self.high_ldl {
            0.7
        } else if self.high_cvd_risk {
            0.55
        } else if diabetic && (40..=75).contains(&self.age) {
            0.65
        } else if hld {
            0.45
        } else {
            0.0
        };
        if self.rng.chance(statin_p) {
            let high = ascvd && self.rng.chance(0.6);
            let set = if high {
                &codes::HIGH_INTENSITY_STATIN
            } else {
                &codes::MODERATE_INTENSITY_STATIN
            };
            let c = *self.rng.pick(set.codes);
            self.med(&c);
        }
        if depression && self.age >= 18 && self.rng.chance(0.6) {
            let c = *self.rng.pick(codes::DEPRESSION_MEDICATION.codes);
            self.med(&c);
        }
    }

    fn immunization(&mut self, code: &Code, date: Date) {
        if date < self.birth || date > self.as_of() {
            return;
        }
        let im = Immunization {
            id: Some(self.id("imm")),
            meta: qicore("qicore-immunization"),
            status: Some("completed".into()),
            vaccine_code: Some(cc(code)),
            patient: self.subject(),
            occurrence_date_time: Some(date.to_string()),
            primary_source: Some(true),
            ..Default::default()
        };
        self.out.push(im.into());
    }

    fn immunizations(&mut self) {
        let as_of = self.as_of();
        let age = self.age;
        // Influenza, each of the last three seasons (September to December).
        for back in 0..3 {
            let year = as_of.year - back;
            let p = if age >= 65 {
                0.65
            } else if age < 18 {
                0.5
            } else {
                0.4
            };
            if self.rng.chance(p) {
                let d = self.day_between(
                    Date {
                        year,
                        month: 9,
                        day: 1,
                    },
                    Date {
                        year,
                        month: 12,
                        day: 15,
                    },
                );
                let code = if self.age_on(d) >= 65 {
                    codes::CVX_FLU_HIGH_DOSE
                } else {
                    codes::CVX_FLU_QUADRIVALENT
                };
                // Influenza vaccine is given from six months of age.
                if d >= self.birth.add_days(183) {
                    self.immunization(&code, d);
                }
            }
        }
        if age >= 19 && self.rng.chance(0.55) {
            let d = self.day_between(as_of.add_days(-10 * 365), as_of);
            self.immunization(&codes::CVX_TDAP, d);
        }
        if age >= 65 && self.rng.chance(0.6) {
            let d = self.day_between(self.birth.add_days(65 * 365 + 20), as_of);
            self.immunization(&codes::CVX_PCV20, d);
        }
        if age >= 50 && self.rng.chance(0.35) {
            let d = self.day_between(as_of.add_days(-6 * 365), as_of);
            self.immunization(&codes::CVX_ZOSTER, d);
        }
        if age < 18 && self.rng.chance(0.9) {
            let d = self.birth.add_days(self.rng.range(365, 450));
            self.immunization(&codes::CVX_MMR, d);
            let d = self.birth.add_days(self.rng.range(60, 75));
            self.immunization(&codes::CVX_DTAP, d);
        }
    }

    fn coverage(&mut self) {
        let age = self.age;
        let p = self.rng.f64();
        let (payer, code) = if age >= 65 {
            if p < 0.92 {
                (0, &codes::PAYER_MEDICARE.codes[0])
            } else {
                (2, &codes::PAYER_PRIVATE.codes[0])
            }
        } else if p < if age < 18 { 0.4 } else { 0.2 } {
            (1, &codes::PAYER_MEDICAID.codes[0])
        } else if p < 0.92 {
            let which = 2 + self.rng.below(3) as usize;
            (
                which,
                &codes::PAYER_PRIVATE.codes[if which == 3 { 1 } else { 0 }],
            )
        } else {
            return; // uninsured
        };
        let as_of = self.as_of();
        let start = self.day_between(as_of.add_days(-8 * 365), as_of.add_days(-400));
        let rel = if age < 18 {
            ("child", "Child")
        } else {
            ("self", "Self")
        };
        let c = Coverage {
            id: Some(self.id("cov")),
            meta: qicore("qicore-coverage"),
            status: Some("active".into()),
            r#type: Some(cc(code)),
            subscriber_id: Some(format!(
                "S{:010}",
                mix64(self.index ^ 0x5eed) % 10_000_000_000
            )),
            beneficiary: self.subject(),
            relationship: Some(cc_sys(
                "http://terminology.hl7.org/CodeSystem/subscriber-relationship",
                rel.0,
                rel.1,
            )),
            period: Some(Period {
                start: Some(start.to_string()),
                end: None,
            }),
            payor: vec![Reference::to("Organization", PAYERS[payer].0)],
            order: Some(1),
            ..Default::default()
        };
        self.out.push(c.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npi_has_valid_luhn_check_digit() {
        // Known valid NPI from the CMS check-digit documentation.
        let digits = |s: &str| -> bool {
            let all: Vec<u32> = format!("80840{s}")
                .bytes()
                .map(|b| u32::from(b - b'0'))
                .collect();
            let sum: u32 = all
                .iter()
                .rev()
                .enumerate()
                .map(|(i, &d)| {
                    if i % 2 == 1 {
                        let v = d * 2;
                        if v > 9 {
                            v - 9
                        } else {
                            v
                        }
                    } else {
                        d
                    }
                })
                .sum();
            sum.is_multiple_of(10)
        };
        assert!(digits("1234567893"));
        for n in [0, 1, 77, 123_456] {
            let v = npi(n);
            assert_eq!(v.len(), 10);
            assert!(digits(&v), "{v}");
        }
    }
}
