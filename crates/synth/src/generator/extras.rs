//! The resource types added after the first ones: ServiceRequest,
//! DeviceRequest, AllergyIntolerance, AdverseEvent, MedicationDispense and
//! DiagnosticReport (raw JSON, [`Resource::Other`]: the `fhir` crate has no
//! structs for them).
//!
//! They are generated after all of a patient's other resources, from what those
//! resources say (visits, screenings, medications, labs) and from a random
//! stream of their own, so every resource generated before them is exactly what
//! it was before these types existed.

use super::*;
use crate::codes::COMMON_ALLERGENS as ALLERGENS;
use crate::rng::Rng;
use serde_json::Value;

/// A MedicationRequest of this patient.
struct Med {
    id: String,
    code: CodeableConcept,
    authored: Date,
    dosage: Option<String>,
    /// The ingredient (Statin Allergen code) when it is a statin.
    statin: Option<&'static Code>,
}

/// What the patient's other resources say, as the new types need it.
#[derive(Default)]
struct Facts {
    meds: Vec<Med>,
    /// A condition or LDL result for which the statin measure expects a statin.
    statin_indicated: bool,
    /// Day of a hospice care Procedure.
    hospice: Option<Date>,
    /// Positive depression screening: (encounter, day, adult instrument).
    positive_screen: Option<(String, Date, bool)>,
    /// First BMI in the measurement period: (encounter, day, kg/m2).
    bmi: Option<(String, Date, f64)>,
    /// Lab results a report is written for: (Observation id, LOINC, effective, issued).
    labs: Vec<(String, String, String, Option<String>)>,
}

const SNOMED_REFERRAL: (&str, &str) = ("3457005", "Patient referral (procedure)");
const SNOMED_COUNSELING: (&str, &str) = ("409063005", "Counseling (procedure)");

fn first_code(c: &Option<CodeableConcept>) -> Option<&str> {
    c.as_ref()?.coding.first()?.code.as_deref()
}

fn has_code(concepts: &[&Concept], code: &str) -> bool {
    concepts
        .iter()
        .any(|c| c.codes.iter().any(|x| x.code == code))
}

fn day_of(date_time: Option<&str>) -> Option<Date> {
    Some(fhir::parse_date_time(date_time?).ok()?.date())
}

/// The Statin Allergen ingredient of a statin product (its display starts with
/// the ingredient name, e.g. "atorvastatin 40 MG Oral Tablet").
fn statin_ingredient(product: &Coding) -> Option<&'static Code> {
    let code = product.code.as_deref()?;
    if !has_code(
        &[
            &codes::HIGH_INTENSITY_STATIN,
            &codes::MODERATE_INTENSITY_STATIN,
        ],
        code,
    ) {
        return None;
    }
    let display = product.display.as_deref()?;
    codes::STATIN_ALLERGEN
        .codes
        .iter()
        .find(|c| display.starts_with(c.display))
}

fn qicore_meta(name: &str) -> Value {
    json!({ "profile": [format!("{QICORE}{name}")] })
}

impl PatientBuilder<'_, '_> {
    pub(super) fn extras(&mut self) {
        self.rng = Rng::keyed(self.g.cfg.seed, STREAM_EXTRAS, self.index);
        let facts = self.facts();
        self.service_requests(&facts);
        self.device_requests();
        self.allergies(&facts);
        self.adverse_events(&facts);
        self.dispenses(&facts);
        self.lab_reports(&facts);
    }

    fn facts(&self) -> Facts {
        let (mp_start, mp_end) = self.g.measurement_period();
        let statin_conditions: &[&Concept] = &[
            &codes::CORONARY_ATHEROSCLEROSIS,
            &codes::MYOCARDIAL_INFARCTION,
            &codes::STROKE,
            &codes::DIABETES_TYPE_2,
            &codes::DIABETES_TYPE_1,
            &codes::HYPERLIPIDEMIA,
        ];
        let labs: &[&Concept] = &[
            &codes::HBA1C,
            &codes::EGFR,
            &codes::UACR,
            &codes::LDL_CHOLESTEROL,
        ];
        let mut f = Facts::default();
        for r in self.out.iter() {
            match r {
                Resource::MedicationRequest(m) => {
                    let (Some(id), Some(code), Some(authored)) = (
                        m.id.clone(),
                        m.medication_codeable_concept.clone(),
                        m.authored_on.as_deref().and_then(|d| d.parse().ok()),
                    ) else {
                        continue;
                    };
                    f.meds.push(Med {
                        id,
                        statin: code.coding.first().and_then(statin_ingredient),
                        code,
                        authored,
                        dosage: m.dosage_instruction.first().and_then(|d| d.text.clone()),
                    });
                }
                Resource::Condition(c) => {
                    let codes = c.code.iter().flat_map(|cc| &cc.coding);
                    for code in codes.filter_map(|c| c.code.as_deref()) {
                        f.statin_indicated |= has_code(statin_conditions, code);
                    }
                }
                Resource::Procedure(p)
                    if first_code(&p.code) == Some(codes::HOSPICE_CARE.codes[0].code) =>
                {
                    f.hospice = day_of(p.performed_date_time.as_deref());
                }
                Resource::Observation(o) => {
                    let Some(code) = first_code(&o.code) else {
                        continue;
                    };
                    let day = day_of(o.effective_date_time.as_deref());
                    let encounter = o
                        .encounter
                        .as_ref()
                        .and_then(|e| e.id_of("Encounter"))
                        .map(str::to_owned);
                    let adult = code == codes::ADULT_DEPRESSION_SCREENING.codes[0].code;
                    if adult || code == codes::ADOLESCENT_DEPRESSION_SCREENING.codes[0].code {
                        let positive = first_code(&o.value_codeable_concept)
                            == Some(codes::DEPRESSION_SCREEN_POSITIVE.codes[0].code);
                        if let (true, Some(e), Some(d)) = (positive, encounter, day) {
                            f.positive_screen = Some((e, d, adult));
                        }
                    } else if code == codes::BMI.codes[0].code {
                        let v = o.value_quantity.as_ref().and_then(|q| q.value);
                        if let (None, Some(e), Some(d), Some(v)) = (&f.bmi, encounter, day, v) {
                            if d >= mp_start && d <= mp_end {
                                f.bmi = Some((e, d, v));
                            }
                        }
                    } else if has_code(labs, code) {
                        let value = o.value_quantity.as_ref().and_then(|q| q.value);
                        if code == codes::LDL_CHOLESTEROL.codes[0].code
                            && value.is_some_and(|v| v >= 190.0)
                        {
                            f.statin_indicated = true;
                        }
                        if let (Some(id), Some(eff)) = (&o.id, &o.effective_date_time) {
                            f.labs
                                .push((id.clone(), code.into(), eff.clone(), o.issued.clone()));
                        }
                    }
                }
                _ => {}
            }
        }
        f
    }

    fn minute_of(&self, encounter: &str) -> u32 {
        self.visits
            .iter()
            .find(|v| v.id == encounter)
            .map_or(9 * 60, |v| v.minute)
    }

    /// A working-hours time on `d`.
    fn office_time(&mut self, d: Date) -> String {
        let minute = (8 * 60 + self.rng.below(36) * 15) as u32;
        date_time(d, minute)
    }

    fn push_other(&mut self, v: Value) {
        self.out.push(Resource::Other(v));
    }

    fn service_request(
        &mut self,
        code: &Code,
        category: (&str, &str),
        status: &str,
        authored: String,
        encounter: Option<&str>,
        reason: Option<CodeableConcept>,
    ) {
        let mut v = json!({
            "resourceType": "ServiceRequest",
            "id": self.id("sr"),
            "meta": qicore_meta("qicore-servicerequest"),
            "status": status,
            "intent": "order",
            "category": [cc_sys(codes::SNOMED, category.0, category.1)],
            "code": cc(code),
            "subject": self.subject,
            "authoredOn": authored,
            "requester": self.pcp_ref(),
        });
        if let Some(e) = encounter {
            v["encounter"] = json!(Reference::to("Encounter", e));
        }
        if let Some(r) = reason {
            v["reasonCode"] = json!([r]);
        }
        self.push_other(v);
    }

    /// Hospice and palliative care orders for a few % of older adults;
    /// referrals after a positive depression screening or an abnormal BMI.
    fn service_requests(&mut self, f: &Facts) {
        let (mp_start, _) = self.g.measurement_period();
        let as_of = self.as_of();
        let age = self.age;
        if age >= 66 {
            // Most hospice care in the record was ordered; some orders are new.
            let from_care = f.hospice.filter(|_| self.rng.chance(0.8));
            let new_only =
                age >= 80 && self.rng.chance(0.025) || age < 80 && self.rng.chance(0.012);
            let order = match from_care {
                Some(d) => Some((
                    d.add_days(-self.rng.range(0, 14)).max(mp_start),
                    "completed",
                )),
                None if new_only => Some((self.day_in_mp(), "active")),
                None => None,
            };
            if let Some((d, status)) = order {
                let when = self.office_time(d);
                let c = codes::HOSPICE_CARE.codes[0];
                self.service_request(&c, SNOMED_REFERRAL, status, when, None, None);
            }
        }
        let palliative = match age {
            80.. => 0.04,
            66..=79 => 0.02,
            18..=65 => 0.002,
            _ => 0.0,
        };
        if self.rng.chance(palliative) {
            let d = self.day_in_mp();
            let when = self.office_time(d);
            let c = *self.rng.pick(codes::PALLIATIVE_CARE_INTERVENTION.codes);
            let status = if self.rng.chance(0.75) {
                "active"
            } else {
                "completed"
            };
            self.service_request(&c, SNOMED_REFERRAL, status, when, None, None);
        }
        if let Some((enc, d, adult)) = &f.positive_screen {
            if self.rng.chance(0.35) {
                let set = if *adult {
                    &codes::REFERRAL_ADULT_DEPRESSION
                } else {
                    &codes::REFERRAL_ADOLESCENT_DEPRESSION
                };
                let c = *self.rng.pick(set.codes);
                let when = date_time(*d, self.minute_of(enc) + 30);
                let status = if *d < as_of.add_days(-60) {
                    "completed"
                } else {
                    "active"
                };
                let reason = cc(&codes::DEPRESSION_SCREEN_POSITIVE.codes[0]);
                self.service_request(&c, SNOMED_REFERRAL, status, when, Some(enc), Some(reason));
            }
        }
        if let Some((enc, d, bmi)) = &f.bmi {
            let (p, reason) = if *bmi >= 30.0 {
                (0.15, &codes::OBESITY)
            } else if *bmi >= 25.0 {
                (0.08, &codes::OVERWEIGHT)
            } else if *bmi < 18.5 {
                (0.5, &codes::UNDERWEIGHT)
            } else {
                (0.0, &codes::UNDERWEIGHT)
            };
            if self.rng.chance(p) {
                let orders = if *bmi < 18.5 {
                    &codes::BELOW_NORMAL_BMI_ORDER
                } else {
                    &codes::ABOVE_NORMAL_BMI_ORDER
                };
                let (c, category) = if self.rng.chance(0.6) {
                    (
                        *self.rng.pick(codes::WEIGHT_REFERRAL.codes),
                        SNOMED_REFERRAL,
                    )
                } else {
                    (*self.rng.pick(orders.codes), SNOMED_COUNSELING)
                };
                let when = date_time(*d, self.minute_of(enc) + 35);
                let status = if *d < as_of.add_days(-60) {
                    "completed"
                } else {
                    "active"
                };
                self.service_request(&c, category, status, when, Some(enc), Some(cc_all(reason)));
            }
        }
    }

    /// Frailty devices (walkers, canes, wheelchairs, hospital beds, ...) for
    /// some patients aged 66 and over, more often the older they are.
    fn device_requests(&mut self) {
        // Relative frequency of each FRAILTY_DEVICE code.
        const WEIGHTS: [u64; 8] = [30, 15, 15, 12, 8, 8, 6, 6];
        let p = match self.age {
            ..=65 => return,
            66..=74 => 0.05,
            75..=84 => 0.12,
            _ => 0.25,
        };
        if !self.rng.chance(p) {
            return;
        }
        let (mp_start, _) = self.g.measurement_period();
        let as_of = self.as_of();
        let devices = if self.rng.chance(0.15) { 2 } else { 1 };
        let mut last = None;
        for _ in 0..devices {
            let mut pick = self.rng.below(WEIGHTS.iter().sum());
            let mut i = 0;
            while pick >= WEIGHTS[i] {
                pick -= WEIGHTS[i];
                i += 1;
            }
            if last == Some(i) {
                i = (i + 1) % WEIGHTS.len();
            }
            last = Some(i);
            let d = if self.rng.chance(0.75) {
                self.day_in_mp()
            } else {
                self.day_between(mp_start.add_days(-365), mp_start.add_days(-1))
            };
            let status = if d < as_of.add_days(-30) {
                "completed"
            } else {
                "active"
            };
            let v = json!({
                "resourceType": "DeviceRequest",
                "id": self.id("devreq"),
                "meta": qicore_meta("qicore-devicerequest"),
                "status": status,
                "intent": "order",
                "codeCodeableConcept": cc(&codes::FRAILTY_DEVICE.codes[i]),
                "subject": self.subject,
                "authoredOn": self.office_time(d),
                "requester": self.pcp_ref(),
            });
            self.push_other(v);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn allergy(
        &mut self,
        code: &Code,
        kind: &str,
        category: &str,
        criticality: &str,
        onset: Date,
        manifestation: &Code,
        severity: &str,
    ) {
        let recorded = self.day_between(onset, self.as_of());
        let v = json!({
            "resourceType": "AllergyIntolerance",
            "id": self.id("allergy"),
            "meta": qicore_meta("qicore-allergyintolerance"),
            "clinicalStatus": cc_sys(
                "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                "active",
                "Active",
            ),
            "verificationStatus": cc_sys(
                "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
                "confirmed",
                "Confirmed",
            ),
            "type": kind,
            "category": [category],
            "criticality": criticality,
            "code": cc(code),
            "patient": self.subject,
            "onsetDateTime": onset.to_string(),
            "recordedDate": recorded.to_string(),
            "recorder": self.pcp_ref(),
            "reaction": [{
                "manifestation": [cc(manifestation)],
                "severity": severity,
            }],
        });
        self.push_other(v);
    }

    /// Common drug, food and environmental allergies; statin intolerance for
    /// some patients a statin is indicated for.
    fn allergies(&mut self, f: &Facts) {
        let m = &codes::ALLERGY_MANIFESTATIONS.codes;
        let (rash, hives, itching, anaphylaxis, nausea, sneezing, dyspnea) =
            (&m[0], &m[1], &m[2], &m[3], &m[4], &m[5], &m[6]);
        let child = self.age < 18;
        // (allergen, type, category, P child, P adult, manifestations)
        type Row<'a> = (usize, &'a str, &'a str, f64, f64, &'a [&'a Code]);
        #[rustfmt::skip]
        let table: [Row; 9] = [
            (0, "allergy", "medication", 0.04, 0.08, &[rash, rash, hives, anaphylaxis]),
            (1, "allergy", "medication", 0.01, 0.035, &[rash, hives]),
            (2, "intolerance", "medication", 0.0, 0.02, &[nausea]),
            (3, "allergy", "medication", 0.0, 0.012, &[hives, dyspnea]),
            (4, "allergy", "food", 0.025, 0.01, &[hives, hives, anaphylaxis]),
            (5, "allergy", "food", 0.015, 0.003, &[hives, rash]),
            (6, "allergy", "environment", 0.005, 0.01, &[itching, rash]),
            (7, "allergy", "environment", 0.04, 0.06, &[sneezing, itching]),
            (8, "allergy", "environment", 0.02, 0.03, &[sneezing, dyspnea]),
        ];
        let as_of = self.as_of();
        for (i, kind, category, p_child, p_adult, reactions) in table {
            let p = if child { p_child } else { p_adult };
            // Not in the first year of life.
            if !self.rng.chance(p) || self.birth.add_days(365) > as_of {
                continue;
            }
            let onset = if category == "food" {
                self.day_between(self.birth.add_days(180), self.birth.add_days(5 * 365))
            } else {
                self.day_between(self.birth.add_days(365), as_of.add_days(-30))
            }
            .min(as_of);
            let reaction = *self.rng.pick(reactions);
            let (criticality, severity) = if reaction == anaphylaxis {
                ("high", "severe")
            } else if self.rng.chance(0.7) {
                ("low", "mild")
            } else {
                ("low", "moderate")
            };
            let code = ALLERGENS.codes[i];
            self.allergy(
                &code,
                kind,
                category,
                criticality,
                onset,
                reaction,
                severity,
            );
        }
        // Statin intolerance: a statin the patient no longer takes.
        let current = f.meds.iter().find_map(|m| m.statin);
        let p = match current {
            Some(_) => 0.03,
            None if f.statin_indicated && self.age >= 21 => 0.08,
            None => 0.0,
        };
        if self.rng.chance(p) {
            let statins = &codes::STATIN_ALLERGEN.codes[..4];
            let mut c = self.rng.pick(statins);
            if Some(c) == current {
                c = &statins[(statins.iter().position(|s| s == c).unwrap_or(0) + 1) % 4];
            }
            let (mp_start, _) = self.g.measurement_period();
            let onset = if self.rng.chance(0.6) {
                self.day_in_mp()
            } else {
                self.day_between(
                    mp_start
                        .add_days(-5 * 365)
                        .max(self.birth.add_days(18 * 365)),
                    mp_start.add_days(-1),
                )
            };
            let myalgia = codes::STATIN_MUSCLE_SYMPTOMS.codes[0];
            self.allergy(
                c,
                "intolerance",
                "medication",
                "low",
                onset,
                &myalgia,
                "moderate",
            );
        }
    }

    /// Adverse reactions to a statin (what the statin measure's exception
    /// reads), recorded in the measurement period.
    fn adverse_events(&mut self, f: &Facts) {
        let current = f.meds.iter().find_map(|m| m.statin);
        let (p, substance) = match current {
            Some(c) => (0.04, Some(c)),
            None if f.statin_indicated && self.age >= 21 => (0.03, None),
            None => (0.0, None),
        };
        if !self.rng.chance(p) {
            return;
        }
        let substance = match substance {
            Some(c) => c,
            None => self.rng.pick(&codes::STATIN_ALLERGEN.codes[..4]),
        };
        let recorded = self.day_in_mp();
        let happened = self.day_between(recorded.add_days(-10), recorded);
        let (severity, severity_display) = if self.rng.chance(0.7) {
            ("mild", "Mild")
        } else {
            ("moderate", "Moderate")
        };
        let (outcome, outcome_display) = if recorded < self.as_of().add_days(-30) {
            ("resolved", "Resolved")
        } else {
            ("recovering", "Recovering")
        };
        let v = json!({
            "resourceType": "AdverseEvent",
            "id": self.id("ae"),
            "meta": qicore_meta("qicore-adverseevent"),
            "actuality": "actual",
            "event": cc(substance),
            "subject": self.subject,
            "date": self.office_time(happened),
            "recordedDate": self.office_time(recorded),
            "seriousness": cc_sys(
                "http://terminology.hl7.org/CodeSystem/adverse-event-seriousness",
                "non-serious",
                "Non-serious",
            ),
            "severity": cc_sys(
                "http://terminology.hl7.org/CodeSystem/adverse-event-severity",
                severity,
                severity_display,
            ),
            "outcome": cc_sys(
                "http://terminology.hl7.org/CodeSystem/adverse-event-outcome",
                outcome,
                outcome_display,
            ),
            "recorder": self.pcp_ref(),
        });
        self.push_other(v);
    }

    /// Pharmacy fills of most MedicationRequests: a first fill within days of
    /// the order, then 90-day refills (up to the three the order allows) until
    /// the as-of date, some patients stopping early.
    fn dispenses(&mut self, f: &Facts) {
        let as_of = self.as_of();
        for m in &f.meds {
            if !self.rng.chance(0.88) {
                continue;
            }
            let mut day = m.authored.add_days(self.rng.range(0, 3));
            for fill in 0..4 {
                if day > as_of || (fill > 0 && self.rng.chance(0.1)) {
                    break;
                }
                let minute = (9 * 60 + self.rng.below(32) * 15) as u32;
                let (kind, kind_display) = if fill == 0 {
                    ("FF", "First Fill")
                } else {
                    ("RF", "Refill")
                };
                let mut v = json!({
                    "resourceType": "MedicationDispense",
                    "id": self.id("disp"),
                    "meta": qicore_meta("qicore-medicationdispense"),
                    "status": "completed",
                    "type": cc_sys(ACT_CODE, kind, kind_display),
                    "medicationCodeableConcept": m.code,
                    "subject": self.subject,
                    "authorizingPrescription": [Reference::to("MedicationRequest", &m.id)],
                    "quantity": {"value": 90, "unit": "tablet", "system": codes::UCUM, "code": "{tbl}"},
                    "daysSupply": {"value": 90, "unit": "day", "system": codes::UCUM, "code": "d"},
                    "whenPrepared": date_time(day, minute),
                    "whenHandedOver": date_time(day, minute + 90),
                });
                if let Some(text) = &m.dosage {
                    v["dosageInstruction"] = json!([{ "text": text }]);
                }
                self.push_other(v);
                day = day.add_days(90 + self.rng.range(-5, 10));
            }
        }
    }

    /// A final lab report for almost every HbA1c, eGFR, urine albumin/creatinine
    /// and LDL result (LDL in a lipid panel, eGFR in a metabolic panel).
    fn lab_reports(&mut self, f: &Facts) {
        for (obs, code, effective, issued) in &f.labs {
            if !self.rng.chance(0.95) {
                continue;
            }
            let report = if code == codes::LDL_CHOLESTEROL.codes[0].code {
                codes::LAB_PANELS.codes[0]
            } else if code == codes::EGFR.codes[0].code {
                codes::LAB_PANELS.codes[1]
            } else if code == codes::HBA1C.codes[0].code {
                codes::HBA1C.codes[0]
            } else {
                codes::UACR.codes[0]
            };
            let mut v = json!({
                "resourceType": "DiagnosticReport",
                "id": self.id("dr"),
                "meta": qicore_meta("qicore-diagnosticreport-lab"),
                "status": "final",
                "category": [cc_sys("http://terminology.hl7.org/CodeSystem/v2-0074", "LAB", "Laboratory")],
                "code": cc(&report),
                "subject": self.subject,
                "effectiveDateTime": effective,
                "performer": [Reference::to("Organization", HOSPITAL_ID)],
                "result": [Reference::to("Observation", obs)],
            });
            if let Some(i) = issued {
                v["issued"] = json!(i);
            }
            self.push_other(v);
        }
    }
}
