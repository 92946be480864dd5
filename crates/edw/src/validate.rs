//! Line-level validation of FHIR R4 resources before they enter the 3NF schema.
//!
//! Reasons are PHI-free: they name elements, resource types and ids, never values
//! (except code system URIs and status codes, which are not patient data).

use serde_json::Value;

/// Resource types the EDW loads, in merge priority (referenced types first).
pub const SUPPORTED: &[&str] = &[
    "Organization",
    "Practitioner",
    "PractitionerRole",
    "CareTeam",
    "Patient",
    "Group",
    "Coverage",
    "Encounter",
    "Condition",
    "Observation",
    "Procedure",
    "MedicationRequest",
    "Immunization",
];

pub fn type_rank(t: &str) -> usize {
    SUPPORTED
        .iter()
        .position(|s| *s == t)
        .unwrap_or(SUPPORTED.len())
}

#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub reason: String,
}

#[derive(Debug)]
pub struct Valid {
    pub resource_type: String,
    pub id: String,
    /// The parsed line (the merge extracts columns from it).
    pub body: Value,
}

fn digits(s: &str) -> Option<u32> {
    calendar::parse_digits(s)
}

/// FHIR `date`: YYYY, YYYY-MM or YYYY-MM-DD with a real calendar date.
pub fn check_date(s: &str) -> Result<(u32, u32, u32), String> {
    let parts: Vec<&str> = s.split('-').collect();
    let bad = || format!("not a FHIR date (YYYY[-MM[-DD]]): {:?}", redact_date(s));
    if parts.is_empty() || parts.len() > 3 || parts[0].len() != 4 {
        return Err(bad());
    }
    let y = digits(parts[0]).ok_or_else(bad)?;
    if !(1800..=2200).contains(&y) {
        return Err(bad());
    }
    let mut m = 1;
    let mut d = 1;
    if parts.len() >= 2 {
        if parts[1].len() != 2 {
            return Err(bad());
        }
        m = digits(parts[1]).ok_or_else(bad)?;
        if !(1..=12).contains(&m) {
            return Err(bad());
        }
    }
    if parts.len() == 3 {
        if parts[2].len() != 2 {
            return Err(bad());
        }
        d = digits(parts[2]).ok_or_else(bad)?;
        if !calendar::is_valid_date(y.into(), m, d) {
            return Err(bad());
        }
    }
    Ok((y, m, d))
}

/// Shape of a bad date without its digits (dates can be PHI, e.g. birth dates).
fn redact_date(s: &str) -> String {
    s.chars()
        .take(40)
        .map(|c| if c.is_ascii_digit() { '9' } else { c })
        .collect()
}

/// FHIR `dateTime`: a date, or a full date + time with a zone (Z or ±hh:mm).
pub fn check_datetime(s: &str) -> Result<(), String> {
    let Some((date, time)) = s.split_once('T') else {
        return check_date(s).map(|_| ());
    };
    let bad = || format!("not a FHIR dateTime: {:?}", redact_date(s));
    if date.len() != 10 {
        return Err(bad());
    }
    check_date(date)?;
    let (clock, zone) = if let Some(c) = time.strip_suffix('Z') {
        (c, "Z")
    } else if time.len() > 6
        && (time.as_bytes()[time.len() - 6] == b'+' || time.as_bytes()[time.len() - 6] == b'-')
    {
        time.split_at(time.len() - 6)
    } else {
        return Err(format!("{} (time without a time zone)", bad()));
    };
    if zone != "Z" {
        let z = &zone[1..];
        let (zh, zm) = z.split_once(':').ok_or_else(bad)?;
        let (zh, zm) = (digits(zh).ok_or_else(bad)?, digits(zm).ok_or_else(bad)?);
        if zh > 14 || zm > 59 {
            return Err(bad());
        }
    }
    let (hms, frac) = match clock.split_once('.') {
        Some((a, f)) => (a, Some(f)),
        None => (clock, None),
    };
    if let Some(f) = frac {
        if digits(f).is_none() || f.len() > 9 {
            return Err(bad());
        }
    }
    let p: Vec<&str> = hms.split(':').collect();
    if p.len() != 3 || p.iter().any(|x| x.len() != 2) {
        return Err(bad());
    }
    let (h, mi, se) = (
        digits(p[0]).ok_or_else(bad)?,
        digits(p[1]).ok_or_else(bad)?,
        digits(p[2]).ok_or_else(bad)?,
    );
    if h > 23 || mi > 59 || se > 60 {
        return Err(bad());
    }
    Ok(())
}

fn is_fhir_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

fn is_uri(s: &str) -> bool {
    (s.starts_with("http://")
        || s.starts_with("https://")
        || s.starts_with("urn:oid:")
        || s.starts_with("urn:uuid:"))
        && !s.contains(char::is_whitespace)
}

/// Every FHIR R4 resource type. A valid resource of a type without a typed table is
/// kept whole in `edw.resource`, so a measure that starts reading it needs no re-load.
pub const R4_TYPES: &[&str] = &[
    "Account",
    "ActivityDefinition",
    "AdverseEvent",
    "AllergyIntolerance",
    "Appointment",
    "AppointmentResponse",
    "AuditEvent",
    "Basic",
    "Binary",
    "BiologicallyDerivedProduct",
    "BodyStructure",
    "Bundle",
    "CapabilityStatement",
    "CarePlan",
    "CareTeam",
    "CatalogEntry",
    "ChargeItem",
    "ChargeItemDefinition",
    "Claim",
    "ClaimResponse",
    "ClinicalImpression",
    "CodeSystem",
    "Communication",
    "CommunicationRequest",
    "CompartmentDefinition",
    "Composition",
    "ConceptMap",
    "Condition",
    "Consent",
    "Contract",
    "Coverage",
    "CoverageEligibilityRequest",
    "CoverageEligibilityResponse",
    "DetectedIssue",
    "Device",
    "DeviceDefinition",
    "DeviceMetric",
    "DeviceRequest",
    "DeviceUseStatement",
    "DiagnosticReport",
    "DocumentManifest",
    "DocumentReference",
    "EffectEvidenceSynthesis",
    "Encounter",
    "Endpoint",
    "EnrollmentRequest",
    "EnrollmentResponse",
    "EpisodeOfCare",
    "EventDefinition",
    "Evidence",
    "EvidenceVariable",
    "ExampleScenario",
    "ExplanationOfBenefit",
    "FamilyMemberHistory",
    "Flag",
    "Goal",
    "GraphDefinition",
    "Group",
    "GuidanceResponse",
    "HealthcareService",
    "ImagingStudy",
    "Immunization",
    "ImmunizationEvaluation",
    "ImmunizationRecommendation",
    "ImplementationGuide",
    "InsurancePlan",
    "Invoice",
    "Library",
    "Linkage",
    "List",
    "Location",
    "Measure",
    "MeasureReport",
    "Media",
    "Medication",
    "MedicationAdministration",
    "MedicationDispense",
    "MedicationKnowledge",
    "MedicationRequest",
    "MedicationStatement",
    "MedicinalProduct",
    "MedicinalProductAuthorization",
    "MedicinalProductContraindication",
    "MedicinalProductIndication",
    "MedicinalProductIngredient",
    "MedicinalProductInteraction",
    "MedicinalProductManufactured",
    "MedicinalProductPackaged",
    "MedicinalProductPharmaceutical",
    "MedicinalProductUndesirableEffect",
    "MessageDefinition",
    "MessageHeader",
    "MolecularSequence",
    "NamingSystem",
    "NutritionOrder",
    "Observation",
    "ObservationDefinition",
    "OperationDefinition",
    "OperationOutcome",
    "Organization",
    "OrganizationAffiliation",
    "Parameters",
    "Patient",
    "PaymentNotice",
    "PaymentReconciliation",
    "Person",
    "PlanDefinition",
    "Practitioner",
    "PractitionerRole",
    "Procedure",
    "Provenance",
    "Questionnaire",
    "QuestionnaireResponse",
    "RelatedPerson",
    "RequestGroup",
    "ResearchDefinition",
    "ResearchElementDefinition",
    "ResearchStudy",
    "ResearchSubject",
    "RiskAssessment",
    "RiskEvidenceSynthesis",
    "Schedule",
    "SearchParameter",
    "ServiceRequest",
    "Slot",
    "Specimen",
    "SpecimenDefinition",
    "StructureDefinition",
    "StructureMap",
    "Subscription",
    "Substance",
    "SubstanceNucleicAcid",
    "SubstancePolymer",
    "SubstanceProtein",
    "SubstanceReferenceInformation",
    "SubstanceSourceMaterial",
    "SubstanceSpecification",
    "SupplyDelivery",
    "SupplyRequest",
    "Task",
    "TerminologyCapabilities",
    "TestReport",
    "TestScript",
    "ValueSet",
    "VerificationResult",
    "VisionPrescription",
];

/// R4 types that are containers or transport, not data about care: a Bulk Data file
/// never carries them as resources to keep.
const NOT_LOADED: &[&str] = &["Bundle", "Binary", "Parameters", "OperationOutcome"];

/// Types stored as reference data (their own tables), not with a patient's record.
pub const REFERENCE_DATA: &[&str] = &[
    "Organization",
    "Practitioner",
    "PractitionerRole",
    "CareTeam",
    "Group",
];

/// Whether lines of this R4 type are loaded at all.
pub fn loadable(rtype: &str) -> bool {
    R4_TYPES.contains(&rtype) && !NOT_LOADED.contains(&rtype)
}

/// Elements that name the patient a resource is about, in the order they are tried.
pub const PATIENT_ELEMENTS: &[&str] = &["subject", "patient", "beneficiary", "for"];

/// The type and id of a `Type/id` reference, relative, absolute or versioned
/// (`https://x/fhir/Patient/1/_history/2` → `("Patient", "1")`).
pub fn reference_parts(r: &str) -> Option<(&str, &str)> {
    let r = r.split("/_history/").next().unwrap_or(r);
    let (ty, id) = r.rsplit_once('/')?;
    Some((ty.rsplit('/').next().unwrap_or(ty), id))
}

/// The patient a resource is about: the first of [`PATIENT_ELEMENTS`] holding a
/// reference to a Patient, as (element, Patient id). `None` for resources about no
/// one patient (Medication, Location, a Device without `patient`).
pub fn patient_of(body: &Value) -> Option<(&'static str, String)> {
    PATIENT_ELEMENTS.iter().find_map(|e| {
        let r = body.get(*e)?.get("reference")?.as_str()?;
        let (ty, id) = reference_parts(r)?;
        (ty == "Patient").then(|| (*e, id.to_string()))
    })
}

/// Top-level date elements of the types without a typed table (names shared by the
/// QI-Core request and event resources).
const GENERIC_DATETIMES: &[&str] = &[
    "authoredOn",
    "recordedDate",
    "recorded",
    "issued",
    "date",
    "occurrenceDateTime",
    "effectiveDateTime",
    "onsetDateTime",
    "abatementDateTime",
    "performedDateTime",
    "whenHandedOver",
    "whenPrepared",
    "sent",
    "received",
    "started",
    "detected",
    "lastOccurrence",
    "timingDateTime",
    "startDate",
];
const GENERIC_PERIODS: &[&str] = &[
    "occurrencePeriod",
    "effectivePeriod",
    "performedPeriod",
    "period",
    "onsetPeriod",
    "timingPeriod",
    "executionPeriod",
];

struct Ctx<'a> {
    body: &'a Value,
    errs: Vec<String>,
}

impl<'a> Ctx<'a> {
    fn get(&self, path: &str) -> Option<&'a Value> {
        let mut v = self.body;
        for p in path.split('.') {
            v = v.get(p)?;
        }
        Some(v)
    }
    /// Checks for a type kept whole: the patient reference well formed where one of
    /// [`PATIENT_ELEMENTS`] is a reference, status a code, the usual dates real dates.
    fn generic(&mut self) {
        for e in PATIENT_ELEMENTS {
            if let Some(v) = self.get(e) {
                if let Some(r) = v.get("reference") {
                    match r.as_str() {
                        Some(s) if !s.trim().is_empty() => {
                            let id = s.split("/_history/").next().unwrap_or(s);
                            let id = id.rsplit('/').next().unwrap_or("");
                            if s.contains("Patient/") && !is_fhir_id(id) {
                                self.errs
                                    .push(format!("{e}.reference is not a reference to a Patient"));
                            }
                        }
                        _ => self
                            .errs
                            .push(format!("{e}.reference must be a non-empty string")),
                    }
                }
            }
        }
        if let Some(v) = self.get("status") {
            if !v
                .as_str()
                .is_some_and(|s| !s.is_empty() && !s.contains(char::is_whitespace))
            {
                self.errs.push("status must be a code".into());
            }
        }
        for d in GENERIC_DATETIMES {
            self.date(d, true);
        }
        for p in GENERIC_PERIODS {
            self.period(p);
        }
    }
    fn require(&mut self, path: &str) -> Option<&'a Value> {
        match self.get(path) {
            Some(v) if !v.is_null() => Some(v),
            _ => {
                self.errs.push(format!("missing required element {path}"));
                None
            }
        }
    }
    fn require_str(&mut self, path: &str) -> Option<&'a str> {
        let v = self.require(path)?;
        match v.as_str() {
            Some(s) if !s.trim().is_empty() => Some(s),
            _ => {
                self.errs.push(format!("{path} must be a non-empty string"));
                None
            }
        }
    }
    fn code_in(&mut self, path: &str, allowed: &[&str], required: bool) {
        let s = if required {
            self.require_str(path)
        } else {
            self.get(path).and_then(Value::as_str)
        };
        if let Some(s) = s {
            if !allowed.contains(&s) {
                self.errs
                    .push(format!("{path}: code {s:?} not in the required value set"));
            }
        } else if !required {
            if let Some(v) = self.get(path) {
                if !v.is_string() {
                    self.errs.push(format!("{path} must be a string"));
                }
            }
        }
    }
    fn date(&mut self, path: &str, datetime: bool) {
        if let Some(v) = self.get(path) {
            match v.as_str() {
                Some(s) => {
                    let r = if datetime {
                        check_datetime(s)
                    } else {
                        check_date(s).map(|_| ())
                    };
                    if let Err(e) = r {
                        self.errs.push(format!("{path}: {e}"));
                    }
                }
                None => self.errs.push(format!("{path} must be a string")),
            }
        }
    }
    fn period(&mut self, path: &str) {
        self.date(&format!("{path}.start"), true);
        self.date(&format!("{path}.end"), true);
        if let (Some(s), Some(e)) = (
            self.get(&format!("{path}.start")).and_then(Value::as_str),
            self.get(&format!("{path}.end")).and_then(Value::as_str),
        ) {
            if check_datetime(s).is_ok() && check_datetime(e).is_ok() && s.len() == e.len() && s > e
            {
                self.errs.push(format!("{path}: end before start"));
            }
        }
    }
    /// CodeableConcept: at least one coding with an absolute system URI and a code.
    fn concept(&mut self, path: &str, required: bool) {
        let Some(v) = self.get(path) else {
            if required {
                self.errs.push(format!("missing required element {path}"));
            }
            return;
        };
        let codings = v.get("coding").and_then(Value::as_array);
        match codings {
            Some(cs) if !cs.is_empty() => {
                for (i, c) in cs.iter().enumerate() {
                    match c.get("system").and_then(Value::as_str) {
                        Some(s) if is_uri(s) => {}
                        Some(_) => self
                            .errs
                            .push(format!("{path}.coding[{i}].system is not an absolute URI")),
                        None => self.errs.push(format!("{path}.coding[{i}].system missing")),
                    }
                    match c.get("code").and_then(Value::as_str) {
                        Some(s) if !s.is_empty() && s.trim() == s => {}
                        _ => self.errs.push(format!(
                            "{path}.coding[{i}].code missing or not a valid code"
                        )),
                    }
                }
            }
            _ => {
                if required || v.get("text").is_none() {
                    self.errs.push(format!("{path} has no coding"));
                }
            }
        }
    }
    /// Reference to a resource of type `to` (relative "Type/id" or "urn:uuid:").
    fn reference(&mut self, path: &str, to: &str, required: bool) {
        let r = self.get(&format!("{path}.reference"));
        match r {
            None if required => self
                .errs
                .push(format!("missing required element {path}.reference")),
            None => {}
            Some(v) => match v.as_str() {
                Some(s) => {
                    let ok = if let Some(u) = s.strip_prefix("urn:uuid:") {
                        is_fhir_id(u)
                    } else {
                        let mut it = s.rsplitn(2, '/');
                        let id = it.next().unwrap_or("");
                        let ty = it.next().unwrap_or("");
                        (ty == to || ty.ends_with(&format!("/{to}"))) && is_fhir_id(id)
                    };
                    if !ok {
                        self.errs
                            .push(format!("{path}.reference is not a reference to a {to}"));
                    }
                }
                None => self.errs.push(format!("{path}.reference must be a string")),
            },
        }
    }
}

/// Validate one NDJSON line.
pub fn validate_line(raw: &str) -> Result<Valid, Invalid> {
    let inv = |t: Option<String>, id: Option<String>, reason: String| Invalid {
        resource_type: t,
        resource_id: id,
        reason,
    };
    if raw.trim().is_empty() {
        return Err(inv(None, None, "empty line".into()));
    }
    let body: Value = serde_json::from_str(raw).map_err(|e| {
        // serde_json's message has line/column only, never the content.
        inv(None, None, format!("invalid JSON: {e}"))
    })?;
    if !body.is_object() {
        return Err(inv(None, None, "JSON value is not an object".into()));
    }
    let rtype = match body.get("resourceType").and_then(Value::as_str) {
        Some(t) => t.to_string(),
        None => return Err(inv(None, None, "missing resourceType".into())),
    };
    let id = match body.get("id").and_then(Value::as_str) {
        Some(i) if is_fhir_id(i) => i.to_string(),
        Some(_) => return Err(inv(Some(rtype), None, "id is not a valid FHIR id".into())),
        None => return Err(inv(Some(rtype), None, "missing id".into())),
    };
    let mut c = Ctx {
        body: &body,
        errs: Vec::new(),
    };
    if !SUPPORTED.contains(&rtype.as_str()) {
        if !loadable(&rtype) {
            return Err(inv(
                Some(rtype.clone()),
                Some(id),
                format!("unsupported resource type {rtype}"),
            ));
        }
        c.generic();
        if !c.errs.is_empty() {
            return Err(inv(Some(rtype), Some(id), c.errs.join("; ")));
        }
        return Ok(Valid {
            resource_type: rtype,
            id,
            body,
        });
    }
    match rtype.as_str() {
        "Patient" => {
            c.code_in("gender", &["male", "female", "other", "unknown"], false);
            c.date("birthDate", false);
            if let Some(s) = c.get("birthDate").and_then(Value::as_str) {
                if let Ok((y, _, _)) = check_date(s) {
                    if !(1850..=2100).contains(&y) {
                        c.errs.push("birthDate out of range".into());
                    }
                }
            }
            if let Some(ids) = c.get("identifier").and_then(Value::as_array) {
                for (i, x) in ids.iter().enumerate() {
                    if x.get("value")
                        .and_then(Value::as_str)
                        .is_none_or(str::is_empty)
                    {
                        c.errs.push(format!("identifier[{i}].value missing"));
                    }
                    if let Some(s) = x.get("system").and_then(Value::as_str) {
                        if !is_uri(s) {
                            c.errs
                                .push(format!("identifier[{i}].system is not an absolute URI"));
                        }
                    }
                }
            }
            if let Some(names) = c.get("name") {
                if !names.is_array() {
                    c.errs.push("name must be an array".into());
                }
            }
            c.reference("managingOrganization", "Organization", false);
        }
        "Organization" | "Practitioner" => {}
        "Group" => {
            c.code_in(
                "type",
                &[
                    "person",
                    "animal",
                    "practitioner",
                    "device",
                    "medication",
                    "substance",
                ],
                true,
            );
            if c.get("actual").and_then(Value::as_bool).is_none() {
                c.errs.push("missing required element actual".into());
            }
            if let Some(ms) = c.get("member").and_then(Value::as_array) {
                for (i, m) in ms.iter().enumerate() {
                    if m.get("entity")
                        .and_then(|e| e.get("reference"))
                        .and_then(Value::as_str)
                        .is_none()
                    {
                        c.errs.push(format!("member[{i}].entity.reference missing"));
                    }
                }
            }
        }
        "PractitionerRole" => {
            c.reference("practitioner", "Practitioner", true);
            c.reference("organization", "Organization", false);
        }
        "CareTeam" => {
            c.reference("subject", "Patient", false);
        }
        "Coverage" => {
            c.code_in(
                "status",
                &["active", "cancelled", "draft", "entered-in-error"],
                true,
            );
            c.reference("beneficiary", "Patient", true);
            c.period("period");
        }
        "Encounter" => {
            c.code_in(
                "status",
                &[
                    "planned",
                    "arrived",
                    "triaged",
                    "in-progress",
                    "onleave",
                    "finished",
                    "cancelled",
                    "entered-in-error",
                    "unknown",
                ],
                true,
            );
            match c.require("class") {
                Some(v) if v.get("code").and_then(Value::as_str).is_some() => {}
                Some(_) => c.errs.push("class.code missing".into()),
                None => {}
            }
            c.reference("subject", "Patient", true);
            c.period("period");
            if let Some(types) = c.get("type").and_then(Value::as_array) {
                for i in 0..types.len() {
                    c.concept(&format!("type.{i}"), false);
                }
            }
        }
        "Condition" => {
            c.reference("subject", "Patient", true);
            c.concept("code", true);
            c.date("onsetDateTime", true);
            c.date("abatementDateTime", true);
            c.date("recordedDate", true);
        }
        "Observation" => {
            c.code_in(
                "status",
                &[
                    "registered",
                    "preliminary",
                    "final",
                    "amended",
                    "corrected",
                    "cancelled",
                    "entered-in-error",
                    "unknown",
                ],
                true,
            );
            c.concept("code", true);
            c.reference("subject", "Patient", true);
            c.date("effectiveDateTime", true);
            c.period("effectivePeriod");
            c.date("issued", true);
            if let Some(q) = c.get("valueQuantity") {
                if !q.get("value").is_some_and(Value::is_number) {
                    c.errs.push("valueQuantity.value must be a number".into());
                }
            }
            c.concept("valueCodeableConcept", false);
        }
        "Procedure" => {
            c.code_in(
                "status",
                &[
                    "preparation",
                    "in-progress",
                    "not-done",
                    "on-hold",
                    "stopped",
                    "completed",
                    "entered-in-error",
                    "unknown",
                ],
                true,
            );
            c.concept("code", true);
            c.reference("subject", "Patient", true);
            c.date("performedDateTime", true);
            c.period("performedPeriod");
        }
        "MedicationRequest" => {
            c.code_in(
                "status",
                &[
                    "active",
                    "on-hold",
                    "cancelled",
                    "completed",
                    "entered-in-error",
                    "stopped",
                    "draft",
                    "unknown",
                ],
                true,
            );
            c.code_in(
                "intent",
                &[
                    "proposal",
                    "plan",
                    "order",
                    "original-order",
                    "reflex-order",
                    "filler-order",
                    "instance-order",
                    "option",
                ],
                true,
            );
            c.reference("subject", "Patient", true);
            if c.get("medicationCodeableConcept").is_some() {
                c.concept("medicationCodeableConcept", true);
            } else if c.get("medicationReference").is_none() {
                c.errs.push("missing required element medication[x]".into());
            }
            c.date("authoredOn", true);
        }
        "Immunization" => {
            c.code_in(
                "status",
                &["completed", "entered-in-error", "not-done"],
                true,
            );
            c.concept("vaccineCode", true);
            c.reference("patient", "Patient", true);
            if c.get("occurrenceDateTime").is_none() && c.get("occurrenceString").is_none() {
                c.errs.push("missing required element occurrence[x]".into());
            }
            c.date("occurrenceDateTime", true);
        }
        _ => {}
    }
    // The shared FHIR model: typed parse + its structural checks (PHI-free messages).
    if c.errs.is_empty() {
        // Typed parse straight from the text (cheaper than cloning the tree).
        match fhir::Resource::from_json_str(raw) {
            Ok(r) => c
                .errs
                .extend(fhir::validate(&r).iter().map(|i| i.to_string())),
            Err(e) => c
                .errs
                .push(format!("does not parse as FHIR R4 {rtype}: {e}")),
        }
    }
    if !c.errs.is_empty() {
        return Err(inv(Some(rtype), Some(id), c.errs.join("; ")));
    }
    Ok(Valid {
        resource_type: rtype,
        id,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert!(check_date("2020-02-29").is_ok());
        assert!(check_date("2021-02-29").is_err());
        assert!(check_date("2021-13").is_err());
        assert!(check_date("2021").is_ok());
        assert!(check_date("21-01-01").is_err());
        assert!(check_datetime("2021-01-01T10:00:00Z").is_ok());
        assert!(check_datetime("2021-01-01T10:00:00.123+05:30").is_ok());
        assert!(check_datetime("2021-01-01T10:00:00").is_err());
        assert!(check_datetime("2021-01-01T25:00:00Z").is_err());
        // PHI-free: digits are masked.
        let e = check_date("1970-02-30").unwrap_err();
        assert!(!e.contains("1970"), "{e}");
    }

    #[test]
    fn lines() {
        assert_eq!(validate_line("").unwrap_err().reason, "empty line");
        assert!(validate_line("{")
            .unwrap_err()
            .reason
            .starts_with("invalid JSON"));
        let e = validate_line(r#"{"resourceType":"Encounter","id":"e1","status":"bogus","class":{"code":"AMB"},"subject":{"reference":"Patient/p1"}}"#).unwrap_err();
        assert!(e.reason.contains("status"), "{}", e.reason);
        let e = validate_line(r#"{"resourceType":"Observation","id":"o1","status":"final","code":{"coding":[{"system":"loinc","code":"1-8"}]},"subject":{"reference":"Patient/p1"}}"#).unwrap_err();
        assert!(e.reason.contains("absolute URI"), "{}", e.reason);
        let e = validate_line(r#"{"resourceType":"Condition","id":"c1","code":{"coding":[{"system":"http://snomed.info/sct","code":"1"}]},"subject":{"reference":"Group/g"}}"#).unwrap_err();
        assert!(e.reason.contains("subject.reference"), "{}", e.reason);
        let ok = validate_line(
            r#"{"resourceType":"Patient","id":"p1","gender":"female","birthDate":"1970-01-01"}"#,
        )
        .unwrap();
        assert_eq!(ok.id, "p1");
        let e = validate_line(r#"{"resourceType":"Bundle","id":"b"}"#).unwrap_err();
        assert!(e.reason.contains("unsupported"));
        let e = validate_line(r#"{"resourceType":"Widget","id":"w"}"#).unwrap_err();
        assert!(e.reason.contains("unsupported"));
        // Types without a typed table are kept whole when valid.
        let ok = validate_line(r#"{"resourceType":"ServiceRequest","id":"s1","status":"active","intent":"order","subject":{"reference":"Patient/p1"},"authoredOn":"2025-03-01"}"#).unwrap();
        assert_eq!(patient_of(&ok.body), Some(("subject", "p1".into())));
        let ok = validate_line(r#"{"resourceType":"Medication","id":"m1","code":{"text":"x"}}"#)
            .unwrap();
        assert_eq!(patient_of(&ok.body), None);
        let ok = validate_line(r#"{"resourceType":"AllergyIntolerance","id":"a1","patient":{"reference":"https://x.example/fhir/Patient/p2/_history/3"}}"#).unwrap();
        assert_eq!(patient_of(&ok.body), Some(("patient", "p2".into())));
        let e = validate_line(r#"{"resourceType":"DeviceRequest","id":"d1","status":"active","subject":{"reference":"Patient/p1"},"authoredOn":"2025-02-30"}"#).unwrap_err();
        assert!(e.reason.contains("authoredOn"), "{}", e.reason);
        assert!(!e.reason.contains("2025"), "{}", e.reason);
        let e = validate_line(r#"{"resourceType":"Task","id":"t1","for":{"reference":7}}"#)
            .unwrap_err();
        assert!(e.reason.contains("for.reference"), "{}", e.reason);
    }
}
