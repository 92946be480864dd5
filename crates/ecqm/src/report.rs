//! FHIR R4 MeasureReports (individual, subject-list, summary) and the DEQM
//! STU5 gaps-in-care Bundle.

use std::collections::BTreeMap;

use serde_json::{json, Value as Json};

use crate::gaps::ImprovementOverrides;
pub use crate::gaps::{gap_status, GapStatus};
use crate::package::{
    GroupDef, ImprovementNotation, MeasureDef, PopulationCode, IMPROVEMENT_SYSTEM,
    POPULATION_SYSTEM,
};
use crate::period::Period;
use crate::populations::{Memberships, PatientResult};

pub const DEQM_INDIVIDUAL: &str =
    "http://hl7.org/fhir/us/davinci-deqm/StructureDefinition/indv-measurereport-deqm";
pub const DEQM_SUMMARY: &str =
    "http://hl7.org/fhir/us/davinci-deqm/StructureDefinition/summary-measurereport-deqm";
pub const DEQM_SUBJECT_LIST: &str =
    "http://hl7.org/fhir/us/davinci-deqm/StructureDefinition/subjectlist-measurereport-deqm";
pub const DEQM_GAPS_BUNDLE: &str =
    "http://hl7.org/fhir/us/davinci-deqm/StructureDefinition/gaps-bundle-deqm";
pub const DEQM_GAPS_COMPOSITION: &str =
    "http://hl7.org/fhir/us/davinci-deqm/StructureDefinition/gaps-composition-deqm";
pub const DEQM_GAPS_DETECTED_ISSUE: &str =
    "http://hl7.org/fhir/us/davinci-deqm/StructureDefinition/gaps-detectedissue-deqm";
pub const EXT_GAP_STATUS: &str =
    "http://hl7.org/fhir/us/davinci-deqm/StructureDefinition/extension-gapStatus";
pub const GAP_STATUS_SYSTEM: &str = "http://hl7.org/fhir/us/davinci-deqm/CodeSystem/gaps-status";
pub const EXT_POPULATION_REFERENCE: &str =
    "http://hl7.org/fhir/us/davinci-deqm/StructureDefinition/extension-populationReference";
/// The organisation named as reporter / author.
pub const REPORTER: &str = "Organization/phm-workstation";

/// Settings shared by every report of a run.
#[derive(Debug, Clone)]
pub struct ReportContext {
    pub period: Period,
    /// `MeasureReport.date` / Bundle timestamp (ISO date-time).
    pub date: String,
    /// Improvement-notation overrides (for packages whose coded notation is
    /// missing or wrong; see `MeasureDef::warnings`).
    pub improvement: ImprovementOverrides,
}

impl ReportContext {
    pub fn new(period: Period, date: String) -> Self {
        ReportContext {
            period,
            date,
            improvement: ImprovementOverrides::default(),
        }
    }
}

fn population_code(code: PopulationCode) -> Json {
    json!({"coding": [{"system": POPULATION_SYSTEM, "code": code.code(), "display": code.display()}]})
}

/// Counts of one group's populations (summed over patients).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts(pub BTreeMap<PopulationCode, u64>);

impl Counts {
    fn add(&mut self, m: &Memberships) {
        for (c, b) in &m.0 {
            *self.0.entry(*c).or_default() += u64::from(*b);
        }
    }
    fn get(&self, c: PopulationCode) -> u64 {
        self.0.get(&c).copied().unwrap_or(0)
    }
    /// Proportion score: (NUMER − NUMEX) / (DENOM − DENEX − DENEXCEP), or
    /// `None` when that denominator is zero.
    pub fn proportion(&self) -> Option<f64> {
        use PopulationCode::*;
        let d = self
            .get(Denominator)
            .saturating_sub(self.get(DenominatorExclusion))
            .saturating_sub(self.get(DenominatorException));
        let n = self
            .get(Numerator)
            .saturating_sub(self.get(NumeratorExclusion));
        (d > 0).then(|| n as f64 / d as f64)
    }
}

fn score_json(g: &GroupDef, c: &Counts) -> Option<Json> {
    if g.scoring != crate::package::Scoring::Proportion {
        return None;
    }
    c.proportion().map(|v| {
        // keep 6 decimals, stable text
        let v = (v * 1e6).round() / 1e6;
        json!({"value": v})
    })
}

fn populations_json(
    g: &GroupDef,
    c: &Counts,
    lists: Option<&BTreeMap<PopulationCode, String>>,
) -> Json {
    Json::Array(
        g.populations
            .iter()
            .filter(|p| p.code != PopulationCode::MeasureObservation)
            .map(|p| {
                let mut o = json!({"code": population_code(p.code), "count": c.get(p.code)});
                if let Some(id) = &p.id {
                    o["id"] = json!(id);
                }
                if let Some(l) = lists.and_then(|l| l.get(&p.code)) {
                    o["subjectResults"] = json!({"reference": format!("#{l}")});
                }
                o
            })
            .collect(),
    )
}

fn base_report(m: &MeasureDef, ctx: &ReportContext, kind: &str, profile: &str, id: String) -> Json {
    let mut r = json!({
        "resourceType": "MeasureReport",
        "id": id,
        "meta": {"profile": [profile]},
        "status": "complete",
        "type": kind,
        "measure": m.canonical(),
        "date": ctx.date,
        "reporter": {"reference": REPORTER},
        "period": {"start": ctx.period.start, "end": ctx.period.end},
    });
    if let Some(i) = ctx.improvement.measure_level(m) {
        r["improvementNotation"] =
            json!({"coding": [{"system": IMPROVEMENT_SYSTEM, "code": i.code()}]});
    }
    r
}

/// A FHIR-safe id (`[A-Za-z0-9.-]{1,64}`) derived from arbitrary parts.
pub fn safe_id(parts: &[&str]) -> String {
    let mut h1: u64 = 0xcbf29ce484222325;
    let mut h2: u64 = 0x84222325cbf29ce4;
    for p in parts {
        for b in p.bytes().chain([0u8]) {
            h1 ^= u64::from(b);
            h1 = h1.wrapping_mul(0x100000001b3);
            h2 = (h2 ^ u64::from(b))
                .wrapping_mul(0x100000001b3)
                .rotate_left(5);
        }
    }
    format!("{h1:016x}{h2:016x}")
}

fn uuid_from(parts: &[&str]) -> String {
    let h = safe_id(parts);
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// The individual MeasureReport of one patient.
pub fn individual_report(m: &MeasureDef, r: &PatientResult, ctx: &ReportContext) -> Json {
    let id = safe_id(&[
        "individual",
        &m.canonical(),
        &r.patient_id,
        &ctx.period.start,
        &ctx.period.end,
    ]);
    let mut rep = base_report(m, ctx, "individual", DEQM_INDIVIDUAL, id);
    rep["subject"] = json!({"reference": format!("Patient/{}", r.patient_id)});
    let mut groups = Vec::new();
    for g in &m.groups {
        let Some(res) = r.groups.iter().find(|x| x.id == g.id) else {
            continue;
        };
        let mut c = Counts::default();
        c.add(&res.populations);
        let mut gj = json!({"id": g.id, "population": populations_json(g, &c, None)});
        if let Some(s) = score_json(g, &c) {
            gj["measureScore"] = s;
        }
        if !res.strata.is_empty() {
            gj["stratifier"] = Json::Array(
                res.strata
                    .iter()
                    .map(|s| {
                        json!({"id": s.stratifier, "stratum": [{
                            "value": {"text": stratum_text(&s.value)},
                            "population": populations_json(g, &c, None)}]})
                    })
                    .collect(),
            );
        }
        groups.push(gj);
    }
    rep["group"] = Json::Array(groups);
    if !r.sde.is_empty() {
        // Supplemental data travel as contained Observations referenced from
        // evaluatedResource (the DEQM pattern), rendered as valueString JSON
        // when they are not codes.
        let mut contained = Vec::new();
        let mut evaluated = Vec::new();
        for (sid, v) in &r.sde {
            let oid = format!("sde-{}", &safe_id(&[sid])[..12]);
            let mut obs = json!({
                "resourceType": "Observation", "id": oid, "status": "final",
                "code": {"text": sid},
            });
            set_observation_value(&mut obs, v);
            contained.push(obs);
            evaluated.push(json!({"reference": format!("#{oid}")}));
        }
        rep["contained"] = Json::Array(contained);
        rep["evaluatedResource"] = Json::Array(evaluated);
    }
    rep
}

/// Drops JSON nulls (FHIR forbids them), recursively.
fn strip_nulls(v: &Json) -> Json {
    match v {
        Json::Object(o) => Json::Object(
            o.iter()
                .filter(|(_, x)| !x.is_null())
                .map(|(k, x)| (k.clone(), strip_nulls(x)))
                .collect(),
        ),
        Json::Array(a) => Json::Array(a.iter().map(strip_nulls).collect()),
        other => other.clone(),
    }
}

/// A cql Code (`{code, system, display, version}`) or Concept (`{codes, display}`)
/// rendered as a FHIR CodeableConcept.
fn as_codeable_concept(v: &Json) -> Option<Json> {
    let o = v.as_object()?;
    if o.contains_key("code") && o.contains_key("system") {
        return Some(json!({"coding": [strip_nulls(v)]}));
    }
    if let Some(codes) = o.get("codes").and_then(Json::as_array) {
        let mut cc = json!({"coding": strip_nulls(&Json::Array(codes.clone()))});
        if let Some(d) = o.get("display").and_then(Json::as_str) {
            cc["text"] = json!(d);
        }
        return Some(cc);
    }
    o.contains_key("coding").then(|| strip_nulls(v))
}

fn set_observation_value(obs: &mut Json, v: &Json) {
    match v {
        Json::Null => {
            obs["dataAbsentReason"] = json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/data-absent-reason", "code": "unknown"}]});
        }
        Json::Bool(b) => obs["valueBoolean"] = json!(b),
        Json::String(s) => obs["valueString"] = json!(s),
        Json::Array(a) if a.is_empty() => {
            obs["dataAbsentReason"] = json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/data-absent-reason", "code": "unknown"}]});
        }
        other => match as_codeable_concept(other) {
            Some(cc) => obs["valueCodeableConcept"] = cc,
            None => obs["valueString"] = json!(strip_nulls(other).to_string()),
        },
    }
}

/// The text of a stratum value (a code's code, a string, or compact JSON).
pub fn stratum_text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        Json::Bool(b) => b.to_string(),
        Json::Null => "null".into(),
        Json::Object(o) => o
            .get("code")
            .and_then(Json::as_str)
            .or_else(|| o.get("codes")?.as_array()?.first()?.get("code")?.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| strip_nulls(v).to_string()),
        other => other.to_string(),
    }
}

/// (stratifier id, stratum text) -> counts.
type StrataCounts = BTreeMap<(String, String), Counts>;
/// population -> patient ids.
type SubjectLists = BTreeMap<PopulationCode, Vec<String>>;

/// Streaming aggregation of patient results into summary / subject-list
/// reports (memory: counts, plus patient ids when subject lists are kept).
#[derive(Debug, Clone)]
pub struct Summary {
    groups: Vec<(String, Counts, StrataCounts)>,
    subjects: Option<Vec<SubjectLists>>,
    pub patients: u64,
}

impl Summary {
    pub fn new(m: &MeasureDef, keep_subjects: bool) -> Self {
        Summary {
            groups: m
                .groups
                .iter()
                .map(|g| (g.id.clone(), Counts::default(), BTreeMap::new()))
                .collect(),
            subjects: keep_subjects.then(|| vec![BTreeMap::new(); m.groups.len()]),
            patients: 0,
        }
    }

    pub fn add(&mut self, r: &PatientResult) {
        self.patients += 1;
        for (gi, (gid, counts, strata)) in self.groups.iter_mut().enumerate() {
            let Some(res) = r.groups.iter().find(|x| &x.id == gid) else {
                continue;
            };
            counts.add(&res.populations);
            for s in &res.strata {
                strata
                    .entry((s.stratifier.clone(), stratum_text(&s.value)))
                    .or_default()
                    .add(&res.populations);
            }
            if let Some(subj) = self.subjects.as_mut() {
                for (c, b) in &res.populations.0 {
                    if *b {
                        subj[gi].entry(*c).or_default().push(r.patient_id.clone());
                    }
                }
            }
        }
    }

    pub fn counts(&self, group_id: &str) -> Option<&Counts> {
        self.groups.iter().find(|g| g.0 == group_id).map(|g| &g.1)
    }

    /// A summary (or, when subjects were kept, subject-list) MeasureReport.
    pub fn report(&self, m: &MeasureDef, ctx: &ReportContext) -> Json {
        let subject_list = self.subjects.is_some();
        let (kind, profile) = if subject_list {
            ("subject-list", DEQM_SUBJECT_LIST)
        } else {
            ("summary", DEQM_SUMMARY)
        };
        let id = safe_id(&[kind, &m.canonical(), &ctx.period.start, &ctx.period.end]);
        let mut rep = base_report(m, ctx, kind, profile, id);
        let mut contained = Vec::new();
        let mut groups = Vec::new();
        for (gi, g) in m.groups.iter().enumerate() {
            let Some((_, counts, strata)) = self.groups.iter().find(|x| x.0 == g.id) else {
                continue;
            };
            let mut lists = BTreeMap::new();
            if let Some(subj) = &self.subjects {
                for (code, ids) in &subj[gi] {
                    let lid = format!("list-{}-{}", gi + 1, code.code());
                    contained.push(json!({
                        "resourceType": "List", "id": lid, "status": "current", "mode": "snapshot",
                        "entry": ids.iter().map(|i| json!({"item": {"reference": format!("Patient/{i}")}})).collect::<Vec<_>>(),
                    }));
                    lists.insert(*code, lid);
                }
            }
            let mut gj =
                json!({"id": g.id, "population": populations_json(g, counts, Some(&lists))});
            if let Some(s) = score_json(g, counts) {
                gj["measureScore"] = s;
            }
            let mut by_strat: BTreeMap<&str, Vec<Json>> = BTreeMap::new();
            for ((sid, value), c) in strata {
                let mut st =
                    json!({"value": {"text": value}, "population": populations_json(g, c, None)});
                if let Some(s) = score_json(g, c) {
                    st["measureScore"] = s;
                }
                by_strat.entry(sid.as_str()).or_default().push(st);
            }
            if !by_strat.is_empty() {
                gj["stratifier"] = Json::Array(
                    by_strat
                        .into_iter()
                        .map(|(sid, st)| json!({"id": sid, "stratum": st}))
                        .collect(),
                );
            }
            groups.push(gj);
        }
        if !contained.is_empty() {
            rep["contained"] = Json::Array(contained);
        }
        rep["group"] = Json::Array(groups);
        rep
    }
}

fn gap_reason(
    m: &MeasureDef,
    g: &GroupDef,
    status: GapStatus,
    notation: ImprovementNotation,
) -> String {
    let title = m.title.as_deref().unwrap_or(&m.name);
    let numer = g
        .population(PopulationCode::Numerator)
        .map(|p| p.expression.as_str())
        .unwrap_or("Numerator");
    match (status, notation) {
        (GapStatus::Closed, ImprovementNotation::Increase) => format!(
            "{title} (group {}): in the denominator and the numerator criteria \"{numer}\" are met; gap closed.",
            g.id
        ),
        (GapStatus::Closed, ImprovementNotation::Decrease) => format!(
            "{title} (group {}): in the denominator and the numerator criteria \"{numer}\" are not met (lower is better); gap closed.",
            g.id
        ),
        (_, ImprovementNotation::Increase) => format!(
            "{title} (group {}): in the denominator, not excluded, and the numerator criteria \"{numer}\" are not met{}.",
            g.id,
            if status == GapStatus::Prospective { " yet; the measurement period is still open" } else { "" }
        ),
        (_, ImprovementNotation::Decrease) => format!(
            "{title} (group {}): in the denominator and the numerator criteria \"{numer}\" are met (lower is better){}.",
            g.id,
            if status == GapStatus::Prospective { "; the measurement period is still open" } else { "" }
        ),
    }
}

/// Flat gap rows for a worklist: one per group where the patient has a gap
/// status, with the reason. `{patient, measure, title, cms_id, group,
/// status, improvement_notation, reason, populations}`.
pub fn gap_rows(m: &MeasureDef, r: &PatientResult, ctx: &ReportContext, as_of: &str) -> Vec<Json> {
    let period_over = as_of > ctx.period.end_date();
    let mut rows = Vec::new();
    for g in &m.groups {
        let Some(res) = r.groups.iter().find(|x| x.id == g.id) else {
            continue;
        };
        let notation = ctx.improvement.notation(m, g);
        let status = gap_status(&res.populations, notation, period_over);
        if status == GapStatus::NotApplicable {
            continue;
        }
        rows.push(json!({
            "patient": r.patient_id,
            "measure": m.name,
            "title": m.title,
            "cms_id": m.cms_id,
            "group": g.id,
            "status": status.code(),
            "improvement_notation": notation.code(),
            "reason": gap_reason(m, g, status, notation),
            "populations": res.populations,
            "period": {"start": ctx.period.start, "end": ctx.period.end},
        }));
    }
    rows
}

/// The DEQM STU5 gaps-in-care Bundle (type document) for one patient over
/// several measures: a Composition with one section per measure (focus: the
/// individual MeasureReport; entries: its DetectedIssues), the reports, one
/// DetectedIssue per group with a gap status (open, closed or prospective),
/// the Patient when given, and the reporting Organization.
///
/// `as_of` is the date (`YYYY-MM-DD`) the gaps are evaluated at: before the
/// end of the period, open gaps are prospective.
pub fn gaps_bundle(
    patient_id: &str,
    patient: Option<&Json>,
    measures: &[(&MeasureDef, &PatientResult)],
    ctx: &ReportContext,
    as_of: &str,
) -> Json {
    let period_over = as_of > ctx.period.end_date();
    // References inside the document resolve to entries: the Patient's and
    // the Organization's fullUrl when they are in the Bundle.
    let patient_url = format!("urn:uuid:{}", uuid_from(&["patient", patient_id]));
    let patient_ref = if patient.is_some() {
        patient_url.clone()
    } else {
        format!("Patient/{patient_id}")
    };
    let org_url = "urn:uuid:00000000-0000-4000-a000-000000000001";
    let comp_id = uuid_from(&["composition", patient_id, &ctx.date, &ctx.period.start]);
    let mut entries: Vec<Json> = Vec::new();
    let mut sections = Vec::new();
    for (m, r) in measures {
        let rep = individual_report(m, r, ctx);
        let rep_url = format!(
            "urn:uuid:{}",
            uuid_from(&["report", &m.canonical(), patient_id, &ctx.date])
        );
        let mut issue_refs = Vec::new();
        let mut issues = Vec::new();
        for g in &m.groups {
            let Some(res) = r.groups.iter().find(|x| x.id == g.id) else {
                continue;
            };
            let notation = ctx.improvement.notation(m, g);
            let status = gap_status(&res.populations, notation, period_over);
            if status == GapStatus::NotApplicable {
                continue;
            }
            let di_url = format!(
                "urn:uuid:{}",
                uuid_from(&["issue", &m.canonical(), &g.id, patient_id, &ctx.date])
            );
            issue_refs.push(json!({"reference": di_url}));
            issues.push(json!({"fullUrl": di_url, "resource": {
                "resourceType": "DetectedIssue",
                "id": safe_id(&["issue", &m.canonical(), &g.id, patient_id]),
                "meta": {"profile": [DEQM_GAPS_DETECTED_ISSUE]},
                "modifierExtension": [{"url": EXT_GAP_STATUS, "valueCodeableConcept": {"coding": [
                    {"system": GAP_STATUS_SYSTEM, "code": status.code(), "display": status.display()}]}}],
                "status": if status == GapStatus::Prospective { "preliminary" } else { "final" },
                "code": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "CAREGAP", "display": "Care Gaps"}]},
                "patient": {"reference": patient_ref},
                "identifiedDateTime": ctx.date,
                "detail": gap_reason(m, g, status, notation),
                "evidence": [{"detail": [{"reference": rep_url}]}],
            }}));
        }
        let mut section = json!({
            "title": m.title.clone().unwrap_or_else(|| m.name.clone()),
            "focus": {"reference": rep_url},
        });
        if !issue_refs.is_empty() {
            section["entry"] = Json::Array(issue_refs);
        }
        sections.push(section);
        entries.push(json!({"fullUrl": rep_url, "resource": rep}));
        entries.extend(issues);
    }
    let composition = json!({
        "resourceType": "Composition",
        "id": safe_id(&["composition", patient_id, &ctx.date]),
        "meta": {"profile": [DEQM_GAPS_COMPOSITION]},
        "status": "final",
        "type": {"coding": [{"system": "http://loinc.org", "code": "96315-7", "display": "Gaps in care report"}]},
        "subject": {"reference": patient_ref},
        "date": ctx.date,
        "author": [{"reference": org_url}],
        "title": "Gaps in Care Report",
        "section": sections,
    });
    let mut all = vec![json!({"fullUrl": format!("urn:uuid:{comp_id}"), "resource": composition})];
    if let Some(p) = patient {
        all.push(json!({"fullUrl": patient_url, "resource": p}));
    }
    all.push(json!({"fullUrl": org_url, "resource": {
        "resourceType": "Organization", "id": "phm-workstation", "name": "PHM Workstation"}}));
    all.extend(entries);
    json!({
        "resourceType": "Bundle",
        "id": safe_id(&["gaps", patient_id, &ctx.date]),
        "meta": {"profile": [DEQM_GAPS_BUNDLE]},
        "identifier": {"system": "urn:ietf:rfc:3986", "value": format!("urn:uuid:{}", uuid_from(&["gaps-bundle", patient_id, &ctx.date]))},
        "type": "document",
        "timestamp": ctx.date,
        "entry": all,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::populations::tests::{full_group, measure};
    use crate::populations::{GroupResult, StratumValue};
    use PopulationCode::*;

    fn ctx() -> ReportContext {
        ReportContext::new(
            Period::new("2025-01-01", "2025-12-31").unwrap(),
            "2026-01-15T00:00:00Z".into(),
        )
    }

    fn result(pid: &str, flags: [bool; 5]) -> PatientResult {
        let codes = [
            InitialPopulation,
            Denominator,
            DenominatorExclusion,
            Numerator,
            DenominatorException,
        ];
        PatientResult {
            measure: "M".into(),
            patient_id: pid.into(),
            groups: vec![GroupResult {
                id: "g1".into(),
                populations: Memberships(codes.into_iter().zip(flags).collect()),
                strata: vec![StratumValue {
                    stratifier: "s1".into(),
                    value: json!("a"),
                }],
            }],
            sde: vec![(
                "sde-sex".into(),
                json!({"system":"http://hl7.org/fhir/administrative-gender","code":"F"}),
            )],
        }
    }

    fn check_report_shape(r: &Json, kind: &str) {
        assert_eq!(r["resourceType"], "MeasureReport");
        assert_eq!(r["status"], "complete");
        assert_eq!(r["type"], kind);
        assert_eq!(r["measure"], "http://x/Measure/M|1");
        assert_eq!(
            r["period"],
            json!({"start":"2025-01-01","end":"2025-12-31"})
        );
        assert!(r["date"].is_string());
        let pops = r["group"][0]["population"].as_array().unwrap();
        assert_eq!(pops.len(), 5);
        for p in pops {
            assert_eq!(p["code"]["coding"][0]["system"], POPULATION_SYSTEM);
            assert!(p["count"].is_u64());
        }
    }

    #[test]
    fn individual_report_shape() {
        let m = measure(vec![full_group()]);
        let r = individual_report(&m, &result("p1", [true, true, false, true, false]), &ctx());
        check_report_shape(&r, "individual");
        assert_eq!(r["subject"]["reference"], "Patient/p1");
        assert_eq!(r["group"][0]["id"], "g1");
        assert_eq!(r["group"][0]["population"][3]["count"], 1);
        assert_eq!(r["group"][0]["measureScore"]["value"], 1.0);
        assert_eq!(
            r["contained"][0]["valueCodeableConcept"]["coding"][0]["code"],
            "F"
        );
        assert_eq!(r["improvementNotation"]["coding"][0]["code"], "increase");
        // not in the denominator: no score
        let r = individual_report(
            &m,
            &result("p2", [true, false, false, false, false]),
            &ctx(),
        );
        assert!(r["group"][0].get("measureScore").is_none());
    }

    #[test]
    fn summary_and_subject_list() {
        let m = measure(vec![full_group()]);
        let rs = [
            result("p1", [true, true, false, true, false]),
            result("p2", [true, true, false, false, false]),
            result("p3", [true, true, true, false, false]),
            result("p4", [true, true, false, false, true]),
            result("p5", [false, false, false, false, false]),
        ];
        let mut s = Summary::new(&m, false);
        let mut sl = Summary::new(&m, true);
        for r in &rs {
            s.add(r);
            sl.add(r);
        }
        let rep = s.report(&m, &ctx());
        check_report_shape(&rep, "summary");
        let counts: Vec<u64> = rep["group"][0]["population"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["count"].as_u64().unwrap())
            .collect();
        assert_eq!(counts, [4, 4, 1, 1, 1]);
        // 1 / (4 - 1 - 1)
        assert_eq!(rep["group"][0]["measureScore"]["value"], 0.5);
        assert_eq!(
            rep["group"][0]["stratifier"][0]["stratum"][0]["value"]["text"],
            "a"
        );
        let rep = sl.report(&m, &ctx());
        check_report_shape(&rep, "subject-list");
        let ip_list = rep["group"][0]["population"][0]["subjectResults"]["reference"]
            .as_str()
            .unwrap();
        let list = rep["contained"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| format!("#{}", l["id"].as_str().unwrap()) == ip_list)
            .unwrap();
        assert_eq!(list["entry"].as_array().unwrap().len(), 4);
    }

    #[test]
    fn gaps_bundle_structure() {
        let m = measure(vec![full_group()]);
        let open = result("p1", [true, true, false, false, false]);
        let patient = json!({"resourceType":"Patient","id":"p1"});
        let b = gaps_bundle("p1", Some(&patient), &[(&m, &open)], &ctx(), "2026-01-15");
        assert_eq!(b["type"], "document");
        assert!(b["timestamp"].is_string());
        assert!(b["identifier"]["value"].is_string());
        let entries = b["entry"].as_array().unwrap();
        let comp = &entries[0]["resource"];
        assert_eq!(comp["resourceType"], "Composition");
        assert_eq!(comp["type"]["coding"][0]["code"], "96315-7");
        let section = &comp["section"][0];
        let find = |url: &str| {
            entries
                .iter()
                .find(|e| e["fullUrl"] == url)
                .map(|e| &e["resource"])
        };
        let mr = find(section["focus"]["reference"].as_str().unwrap()).unwrap();
        assert_eq!(mr["resourceType"], "MeasureReport");
        assert_eq!(mr["type"], "individual");
        let di = find(section["entry"][0]["reference"].as_str().unwrap()).unwrap();
        assert_eq!(di["resourceType"], "DetectedIssue");
        assert_eq!(di["modifierExtension"][0]["url"], EXT_GAP_STATUS);
        assert_eq!(
            di["modifierExtension"][0]["valueCodeableConcept"]["coding"][0]["code"],
            "open-gap"
        );
        assert_eq!(di["code"]["coding"][0]["code"], "CAREGAP");
        assert!(di["patient"]["reference"]
            .as_str()
            .unwrap()
            .starts_with("urn:uuid:"));
        assert_eq!(
            di["evidence"][0]["detail"][0]["reference"],
            section["focus"]["reference"]
        );
        assert!(di["detail"].as_str().unwrap().contains("not met"));
        let rows = gap_rows(&m, &open, &ctx(), "2026-01-15");
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0]["status"], "open-gap");
        assert_eq!(rows[0]["populations"]["numerator"], 0);
        assert!(gap_rows(
            &m,
            &result("p9", [true, true, true, false, false]),
            &ctx(),
            "2026-01-15"
        )
        .is_empty());
        // the Composition's subject and author, and the issue's patient, resolve in the Bundle
        assert_eq!(
            find(comp["subject"]["reference"].as_str().unwrap()).unwrap()["resourceType"],
            "Patient"
        );
        assert_eq!(
            find(comp["author"][0]["reference"].as_str().unwrap()).unwrap()["resourceType"],
            "Organization"
        );
        assert_eq!(
            find(di["patient"]["reference"].as_str().unwrap()).unwrap()["id"],
            "p1"
        );
        // every fullUrl unique
        let mut urls: Vec<&str> = entries
            .iter()
            .map(|e| e["fullUrl"].as_str().unwrap())
            .collect();
        urls.sort();
        urls.dedup();
        assert_eq!(urls.len(), entries.len());

        // mid-period: prospective; override flips the notation
        let b = gaps_bundle("p1", None, &[(&m, &open)], &ctx(), "2025-06-01");
        let di = &b["entry"].as_array().unwrap().last().unwrap()["resource"];
        assert_eq!(
            di["modifierExtension"][0]["valueCodeableConcept"]["coding"][0]["code"],
            "prospective-gap"
        );
        let mut c = ctx();
        c.improvement.global = Some(ImprovementNotation::Decrease);
        let b = gaps_bundle("p1", None, &[(&m, &open)], &c, "2026-01-15");
        let di = &b["entry"].as_array().unwrap().last().unwrap()["resource"];
        assert_eq!(
            di["modifierExtension"][0]["valueCodeableConcept"]["coding"][0]["code"],
            "closed-gap"
        );
    }
}
