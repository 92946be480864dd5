//! Minimal structural validation for ingest (EDW staging).
//!
//! Issues name the element path and a category, never the element's value.

use crate::datatypes::*;
use crate::date::parse_date_time;
use crate::resource::Resource;
use std::fmt;

/// What is wrong with an element.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IssueKind {
    /// A required element is absent.
    Missing,
    /// A Coding lacks `system` or `code`.
    IncompleteCoding,
    /// A date/dateTime is not well-formed.
    InvalidDate,
    /// A reference is not of the form `Type/id`.
    InvalidReference,
    /// A reference points at the wrong resource type.
    WrongReferenceType,
    /// An id does not match `[A-Za-z0-9\-\.]{1,64}`.
    InvalidId,
}

/// One validation finding, e.g. `Observation.subject: missing`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ValidationIssue {
    /// FHIRPath-like element path, e.g. `Observation.code.coding[0]`.
    pub path: String,
    pub kind: IssueKind,
}

impl fmt::Display for ValidationIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            IssueKind::Missing => "required element missing",
            IssueKind::IncompleteCoding => "coding needs both system and code",
            IssueKind::InvalidDate => "not a valid FHIR date/dateTime",
            IssueKind::InvalidReference => "reference is not of the form Type/id",
            IssueKind::WrongReferenceType => "reference points at the wrong resource type",
            IssueKind::InvalidId => "invalid resource id",
        };
        write!(f, "{}: {what}", self.path)
    }
}

struct Checker {
    root: &'static str,
    issues: Vec<ValidationIssue>,
}

impl Checker {
    fn push(&mut self, path: impl fmt::Display, kind: IssueKind) {
        self.issues.push(ValidationIssue {
            path: format!("{}.{path}", self.root),
            kind,
        });
    }

    fn id(&mut self, id: &Option<String>, required: bool) {
        match id {
            Some(id) if !crate::is_valid_id(id) => self.push("id", IssueKind::InvalidId),
            None if required => self.push("id", IssueKind::Missing),
            _ => {}
        }
    }

    fn date(&mut self, path: &str, v: &Option<String>) {
        if let Some(s) = v {
            if parse_date_time(s).is_err() {
                self.push(path, IssueKind::InvalidDate);
            }
        }
    }

    fn period(&mut self, path: &str, p: &Option<Period>) {
        if let Some(p) = p {
            self.date(&format!("{path}.start"), &p.start);
            self.date(&format!("{path}.end"), &p.end);
        }
    }

    fn cc(&mut self, path: &str, c: &Option<CodeableConcept>) {
        if let Some(c) = c {
            self.cc_ref(path, c);
        }
    }

    fn cc_ref(&mut self, path: &str, c: &CodeableConcept) {
        for (i, coding) in c.coding.iter().enumerate() {
            self.coding(&format!("{path}.coding[{i}]"), coding);
        }
    }

    fn coding(&mut self, path: &str, c: &Coding) {
        if c.system.is_none() || c.code.is_none() {
            self.push(path, IssueKind::IncompleteCoding);
        }
    }

    fn ccs(&mut self, path: &str, cs: &[CodeableConcept]) {
        for (i, c) in cs.iter().enumerate() {
            self.cc_ref(&format!("{path}[{i}]"), c);
        }
    }

    fn required_cc(&mut self, path: &str, c: &Option<CodeableConcept>) {
        match c {
            None => self.push(path, IssueKind::Missing),
            Some(c) => self.cc_ref(path, c),
        }
    }

    /// A literal reference, optionally restricted to some target types.
    /// References with only an identifier or display are accepted.
    fn reference(&mut self, path: &str, r: &Option<Reference>, targets: &[&str]) {
        let Some(r) = r else { return };
        let Some(literal) = r.reference.as_deref() else {
            return;
        };
        match crate::parse_reference(literal) {
            None if literal.starts_with('#') || literal.starts_with("urn:") => {}
            None => self.push(path, IssueKind::InvalidReference),
            Some((ty, _)) if !targets.is_empty() && !targets.contains(&ty) => {
                self.push(path, IssueKind::WrongReferenceType)
            }
            Some(_) => {}
        }
    }

    fn references(&mut self, path: &str, rs: &[Reference], targets: &[&str]) {
        for (i, r) in rs.iter().enumerate() {
            self.reference(&format!("{path}[{i}]"), &Some(r.clone()), targets);
        }
    }

    fn required_patient(&mut self, path: &str, r: &Option<Reference>) {
        match r.as_ref().and_then(|r| r.reference.as_ref()) {
            None => self.push(path, IssueKind::Missing),
            Some(_) => self.reference(path, r, &["Patient"]),
        }
    }

    fn required_subject(&mut self, path: &str, r: &Option<Reference>) {
        match r.as_ref().and_then(|r| r.reference.as_ref()) {
            None => self.push(path, IssueKind::Missing),
            Some(_) => self.reference(path, r, &["Patient", "Group"]),
        }
    }
}

/// Checks the elements the product relies on: ids, required patient
/// references, Coding system+code, date formats and reference syntax.
pub fn validate(resource: &Resource) -> Vec<ValidationIssue> {
    const PRACTITIONER_OR_ORG: &[&str] = &["Practitioner", "PractitionerRole", "Organization"];
    let root: &'static str = match resource {
        Resource::Patient(_) => "Patient",
        Resource::Practitioner(_) => "Practitioner",
        Resource::Organization(_) => "Organization",
        Resource::Group(_) => "Group",
        Resource::Encounter(_) => "Encounter",
        Resource::Condition(_) => "Condition",
        Resource::Observation(_) => "Observation",
        Resource::Procedure(_) => "Procedure",
        Resource::MedicationRequest(_) => "MedicationRequest",
        Resource::Immunization(_) => "Immunization",
        Resource::Coverage(_) => "Coverage",
        Resource::Other(_) => "Resource",
    };
    let mut c = Checker {
        root,
        issues: Vec::new(),
    };
    match resource {
        Resource::Patient(p) => {
            c.id(&p.id, true);
            c.date("birthDate", &p.birth_date);
            c.date("deceasedDateTime", &p.deceased_date_time);
            c.references(
                "generalPractitioner",
                &p.general_practitioner,
                PRACTITIONER_OR_ORG,
            );
            c.reference(
                "managingOrganization",
                &p.managing_organization,
                &["Organization"],
            );
        }
        Resource::Practitioner(p) => {
            c.id(&p.id, true);
            c.date("birthDate", &p.birth_date);
        }
        Resource::Organization(o) => {
            c.id(&o.id, true);
            c.ccs("type", &o.r#type);
            c.reference("partOf", &o.part_of, &["Organization"]);
        }
        Resource::Group(g) => {
            c.id(&g.id, true);
            if g.r#type.is_none() {
                c.push("type", IssueKind::Missing);
            }
            c.reference("managingEntity", &g.managing_entity, &[]);
            for (i, m) in g.member.iter().enumerate() {
                let path = format!("member[{i}].entity");
                match &m.entity {
                    None => c.push(path, IssueKind::Missing),
                    e => c.reference(&path, e, &[]),
                }
            }
        }
        Resource::Encounter(e) => {
            c.id(&e.id, true);
            if e.status.is_none() {
                c.push("status", IssueKind::Missing);
            }
            if let Some(class) = &e.class {
                c.coding("class", class);
            }
            c.ccs("type", &e.r#type);
            c.required_subject("subject", &e.subject);
            c.period("period", &e.period);
            c.ccs("reasonCode", &e.reason_code);
            for (i, p) in e.participant.iter().enumerate() {
                c.reference(&format!("participant[{i}].individual"), &p.individual, &[]);
            }
            c.reference("serviceProvider", &e.service_provider, &["Organization"]);
        }
        Resource::Condition(x) => {
            c.id(&x.id, true);
            c.cc("clinicalStatus", &x.clinical_status);
            c.cc("verificationStatus", &x.verification_status);
            c.ccs("category", &x.category);
            c.required_cc("code", &x.code);
            c.required_subject("subject", &x.subject);
            c.reference("encounter", &x.encounter, &["Encounter"]);
            c.date("onsetDateTime", &x.onset_date_time);
            c.period("onsetPeriod", &x.onset_period);
            c.date("abatementDateTime", &x.abatement_date_time);
            c.period("abatementPeriod", &x.abatement_period);
            c.date("recordedDate", &x.recorded_date);
        }
        Resource::Observation(o) => {
            c.id(&o.id, true);
            if o.status.is_none() {
                c.push("status", IssueKind::Missing);
            }
            c.ccs("category", &o.category);
            c.required_cc("code", &o.code);
            c.required_subject("subject", &o.subject);
            c.reference("encounter", &o.encounter, &["Encounter"]);
            c.date("effectiveDateTime", &o.effective_date_time);
            c.period("effectivePeriod", &o.effective_period);
            c.date("effectiveInstant", &o.effective_instant);
            c.date("issued", &o.issued);
            c.cc("valueCodeableConcept", &o.value_codeable_concept);
            c.ccs("interpretation", &o.interpretation);
            for (i, comp) in o.component.iter().enumerate() {
                c.required_cc(&format!("component[{i}].code"), &comp.code);
                c.cc(
                    &format!("component[{i}].valueCodeableConcept"),
                    &comp.value_codeable_concept,
                );
            }
        }
        Resource::Procedure(p) => {
            c.id(&p.id, true);
            if p.status.is_none() {
                c.push("status", IssueKind::Missing);
            }
            c.required_cc("code", &p.code);
            c.required_subject("subject", &p.subject);
            c.reference("encounter", &p.encounter, &["Encounter"]);
            c.date("performedDateTime", &p.performed_date_time);
            c.period("performedPeriod", &p.performed_period);
            c.ccs("reasonCode", &p.reason_code);
        }
        Resource::MedicationRequest(m) => {
            c.id(&m.id, true);
            if m.status.is_none() {
                c.push("status", IssueKind::Missing);
            }
            if m.intent.is_none() {
                c.push("intent", IssueKind::Missing);
            }
            if m.medication_codeable_concept.is_none() && m.medication_reference.is_none() {
                c.push("medication[x]", IssueKind::Missing);
            }
            c.cc("medicationCodeableConcept", &m.medication_codeable_concept);
            c.reference(
                "medicationReference",
                &m.medication_reference,
                &["Medication"],
            );
            c.required_subject("subject", &m.subject);
            c.reference("encounter", &m.encounter, &["Encounter"]);
            c.date("authoredOn", &m.authored_on);
            c.reference("requester", &m.requester, &[]);
            c.ccs("reasonCode", &m.reason_code);
        }
        Resource::Immunization(im) => {
            c.id(&im.id, true);
            if im.status.is_none() {
                c.push("status", IssueKind::Missing);
            }
            c.required_cc("vaccineCode", &im.vaccine_code);
            c.required_patient("patient", &im.patient);
            c.reference("encounter", &im.encounter, &["Encounter"]);
            c.date("occurrenceDateTime", &im.occurrence_date_time);
            c.date("recorded", &im.recorded);
        }
        Resource::Coverage(cv) => {
            c.id(&cv.id, true);
            if cv.status.is_none() {
                c.push("status", IssueKind::Missing);
            }
            c.cc("type", &cv.r#type);
            c.required_patient("beneficiary", &cv.beneficiary);
            c.reference("subscriber", &cv.subscriber, &["Patient", "RelatedPerson"]);
            c.period("period", &cv.period);
            c.references(
                "payor",
                &cv.payor,
                &["Organization", "Patient", "RelatedPerson"],
            );
        }
        Resource::Other(v) => {
            let id = v.get("id").map(|i| i.as_str().map(str::to_owned));
            match id {
                Some(None) => c.push("id", IssueKind::InvalidId),
                Some(id) => c.id(&id, false),
                None => {}
            }
        }
    }
    c.issues
}
