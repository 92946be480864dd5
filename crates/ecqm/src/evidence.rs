//! Care-gap evidence, derived from the measure's ELM (nothing here knows a measure):
//!
//! - **why open** ([`DefineValue`]): the values of the main library's definitions that the
//!   group's population criteria depend on, rendered short;
//! - **which data** ([`EvidenceResource`]): the FHIR resources in the values of the
//!   definitions behind each population the patient is in;
//! - **what would close it** ([`Requirement`]): the numerator's data requirements (retrieves,
//!   value sets or codes, date windows), patient-independent, computed once per
//!   [`PreparedMeasure`] and group.
//!
//! The plan (which definitions, in which order) is built once when the measure is prepared;
//! per patient, the values come from the same memoized session as the population results.
//!
//! Cost (`cargo run -p ecqm --release --example evidence_rate -- ../shared/ecqm [--ndjson DIR]`,
//! 2 threads on a 2-core machine shared with other builds, so CPU seconds are the steadier
//! figure): the 515 official cases x 20 against all 12 measures, 10,300 patients, 20,660 open
//! gaps: 3,892 patients/s (1.78 CPU-s) without evidence, 3,520 patients/s (1.99 CPU-s) with;
//! 50,000 phm-synth patients (seed 7) x 12 measures, 61,704 open gaps: 1,850 patients/s
//! (27.6 CPU-s) without, 1,825 patients/s (27.3 CPU-s) with, i.e. 27 s wall for the whole
//! first evaluation with evidence. Evidence costs about 10 % on gap-dense data and within the
//! noise on a realistic population; rendering is under 1 % of the profile, the rest is
//! definitions the populations short-circuited past (e.g. the second operand of a false `and`).
//!
//! Limits: a date window is found only for a `where` / `such that` conjunct (or a disjunction
//! of equal windows, or an `exists` over the row's own elements) that puts an expression of the
//! row alone `in` / `during` / `included in` / `overlaps` an interval computable from
//! parameters; bounds relative to another alias (an encounter's period), point comparisons
//! (`on or before end of "Measurement Period"`) and windows in function bodies give none.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::engine::{Bound, PreparedMeasure};
use crate::error::Result;
use crate::package::{MeasureDef, PopulationCode};
use crate::populations::{evaluate_patient, EvalOptions, GroupResult, PatientResult};

/// Longest "why open" line (`name: text`), in characters.
pub const LINE_MAX: usize = 160;

/// One "why open" line: a definition of the measure's main library and its value for the
/// patient, rendered short (`Most Recent Blood Pressure Day: 2025-06-03`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefineValue {
    pub name: String,
    pub text: String,
}

/// A FHIR resource that is in the value of a definition behind a population the patient is
/// in (a link into the patient's timeline). Serialised with the population's FHIR code
/// (`denominator`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceResource {
    #[serde(with = "population_code")]
    pub population: PopulationCode,
    pub resource_type: String,
    pub id: String,
}

/// One data requirement of a group's numerator: what data would close the gap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requirement {
    /// FHIR resource type (`Observation`)
    pub resource_type: String,
    /// the value set the retrieve filters by, as the library names it (`Mammography`)
    pub value_set_name: Option<String>,
    pub value_set_url: Option<String>,
    /// direct-reference codes the retrieve filters by, as `system|code` (comma-separated)
    pub code: Option<String>,
    /// the resource property the value set or codes apply to (`code`)
    pub code_property: Option<String>,
    /// ISO dates `(first, last)` of the date window the consuming query puts on the data
    pub window: Option<(String, String)>,
    /// e.g. `Mammography between 2023-10-01 and 2025-12-31`
    pub text: String,
}

/// The evidence for one group of one patient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupEvidence {
    pub group_id: String,
    pub why_open: Vec<DefineValue>,
    pub data: Vec<EvidenceResource>,
}

mod population_code {
    use super::PopulationCode;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(c: &PopulationCode, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(c.code())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PopulationCode, D::Error> {
        let s = String::deserialize(d)?;
        PopulationCode::from_code(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown population code {s:?}")))
    }
}

/// A "why open" candidate.
#[derive(Debug)]
struct WhyItem {
    id: cql::DefId,
    name: String,
    /// used as a population criterion (left out when its value is a plain boolean)
    population: bool,
}

/// What to evaluate and render for one group (patient-independent).
#[derive(Debug, Default)]
struct GroupPlan {
    why: Vec<WhyItem>,
    /// per population: the definitions whose values hold its evidence resources
    data: Vec<(PopulationCode, Vec<cql::DefId>)>,
    requirements: Vec<Requirement>,
}

/// The evidence plan of a prepared measure: one [`GroupPlan`] per group.
#[derive(Debug, Default)]
pub(crate) struct EvidencePlan {
    groups: Vec<GroupPlan>,
}

impl EvidencePlan {
    pub(crate) fn new(def: &MeasureDef, prepared: &cql::Prepared) -> EvidencePlan {
        let graph = prepared.define_graph();
        let criteria: HashSet<&str> = def
            .groups
            .iter()
            .flat_map(|g| g.populations.iter().map(|p| p.expression.as_str()))
            .collect();
        let groups = def
            .groups
            .iter()
            .map(|g| {
                let mut plan = GroupPlan::default();
                let mut seen = HashSet::new();
                for p in &g.populations {
                    if p.code == PopulationCode::MeasureObservation {
                        continue;
                    }
                    let Some(root) = prepared.def_id(&p.expression) else {
                        continue;
                    };
                    let mut main = vec![root];
                    main.extend(graph.dependencies_within_library(root));
                    for &id in &main {
                        if graph.reaches_retrieve(id)
                            && !graph.is_context_define(id)
                            && seen.insert(id)
                        {
                            let name = prepared.def_name(id).to_string();
                            plan.why.push(WhyItem {
                                id,
                                population: criteria.contains(name.as_str()),
                                name,
                            });
                        }
                    }
                    // the population's main-library definitions and the other libraries'
                    // definitions they reference directly
                    let mut data: Vec<cql::DefId> = Vec::new();
                    for &id in &main {
                        for d in std::iter::once(&id).chain(
                            graph
                                .references(id)
                                .iter()
                                .filter(|r| !prepared.is_main(**r)),
                        ) {
                            if graph.reaches_retrieve(*d)
                                && !graph.is_context_define(*d)
                                && !graph.is_function(*d)
                                && !data.contains(d)
                            {
                                data.push(*d);
                            }
                        }
                    }
                    plan.data.push((p.code, data));
                    if p.code == PopulationCode::Numerator {
                        for r in prepared.data_requirements(&graph, root) {
                            let r = requirement(&r);
                            if !plan.requirements.contains(&r) {
                                plan.requirements.push(r);
                            }
                        }
                    }
                }
                plan
            })
            .collect();
        EvidencePlan { groups }
    }
}

/// A cql data requirement as a [`Requirement`] with its text.
fn requirement(r: &cql::DataRequirement) -> Requirement {
    let value_set_name = r.value_set.as_ref().and_then(|v| v.name.clone());
    let value_set_url = r.value_set.as_ref().map(|v| v.url.clone());
    let code = (!r.codes.is_empty()).then(|| {
        r.codes
            .iter()
            .map(|c| match &c.code.system {
                Some(s) => format!("{s}|{}", c.code.code),
                None => c.code.code.to_string(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    });
    let label = value_set_name
        .clone()
        .or_else(|| {
            (!r.codes.is_empty()).then(|| {
                r.codes
                    .iter()
                    .map(|c| {
                        c.name
                            .clone()
                            .or_else(|| c.code.display.as_deref().map(str::to_string))
                            .unwrap_or_else(|| c.code.code.to_string())
                    })
                    .collect::<Vec<_>>()
                    .join(" or ")
            })
        })
        .or_else(|| value_set_url.clone())
        .unwrap_or_else(
            || match r.template.as_deref().and_then(|t| t.rsplit('/').next()) {
                Some(profile) => format!("{} (profile {profile})", r.data_type),
                None => r.data_type.clone(),
            },
        );
    let (window, text) = match &r.window {
        Some(cql::DateWindow::Dates {
            low,
            high,
            overlaps,
        }) => match (cql::render::iso_date(low), cql::render::iso_date(high)) {
            (Some(s), Some(e)) => {
                let text = if *overlaps {
                    format!("{label} overlapping {s} to {e}")
                } else {
                    format!("{label} between {s} and {e}")
                };
                (Some((s, e)), text)
            }
            _ => (None, label),
        },
        Some(cql::DateWindow::Parameter { name, .. }) => {
            (None, format!("{label} during the {}", name.to_lowercase()))
        }
        None => (None, label),
    };
    Requirement {
        resource_type: r.data_type.clone(),
        value_set_name,
        value_set_url,
        code,
        code_property: r.code_property.clone(),
        window,
        text,
    }
}

impl GroupPlan {
    fn evidence(&self, session: &cql::Session<'_>, group: &GroupResult) -> GroupEvidence {
        let mut why_open = Vec::new();
        for w in &self.why {
            let text = match session.evaluate_def(w.id) {
                Ok(v) => {
                    if w.population && matches!(v, cql::Value::Boolean(_) | cql::Value::Null) {
                        continue;
                    }
                    let budget = LINE_MAX.saturating_sub(w.name.chars().count() + 2).max(40);
                    cql::render::short(&v, budget)
                }
                // errors name no data values; the population results did not need this value
                Err(_) => "could not be evaluated".to_string(),
            };
            why_open.push(DefineValue {
                name: w.name.clone(),
                text,
            });
        }
        let mut data = Vec::new();
        for (code, defs) in &self.data {
            if !group.populations.is(*code) {
                continue;
            }
            let mut seen = HashSet::new();
            for d in defs {
                if let Ok(v) = session.evaluate_def(*d) {
                    for (resource_type, id) in cql::render::resource_ids(&v) {
                        if seen.insert((resource_type.clone(), id.clone())) {
                            data.push(EvidenceResource {
                                population: *code,
                                resource_type,
                                id,
                            });
                        }
                    }
                }
            }
        }
        GroupEvidence {
            group_id: group.id.clone(),
            why_open,
            data,
        }
    }
}

impl PreparedMeasure {
    /// Patient-independent: what would close the numerator of group `group_index` (the
    /// numerator's data requirements read from the ELM, with their date windows). Empty for a
    /// group without a numerator or an index out of range.
    pub fn closing_requirements(&self, group_index: usize) -> &[Requirement] {
        self.evidence
            .groups
            .get(group_index)
            .map(|g| g.requirements.as_slice())
            .unwrap_or(&[])
    }

    /// Evaluates like [`PreparedMeasure::evaluate_memo`], and for the groups where
    /// `want(&GroupResult)` is true also returns the evidence (in group order), reusing the same
    /// memoized session (no second evaluation of what the populations already evaluated).
    pub fn evaluate_with_evidence(
        &self,
        memo: &cql::PatientMemo<'_>,
        patient_id: &str,
        opts: EvalOptions,
        want: &dyn Fn(&GroupResult) -> bool,
    ) -> Result<(PatientResult, Vec<GroupEvidence>)> {
        let bound = Bound {
            session: self.prepared.session_shared(memo),
        };
        let result = evaluate_patient(&self.def, &bound, &(), patient_id, opts)?;
        let evidence = result
            .groups
            .iter()
            .zip(&self.evidence.groups)
            .filter(|(g, _)| want(g))
            .map(|(g, plan)| plan.evidence(&bound.session, g))
            .collect();
        Ok((result, evidence))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn population_serialises_as_its_fhir_code() {
        let r = EvidenceResource {
            population: PopulationCode::DenominatorExclusion,
            resource_type: "Condition".into(),
            id: "c1".into(),
        };
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["population"], "denominator-exclusion");
        let back: EvidenceResource = serde_json::from_value(j).unwrap();
        assert_eq!(back, r);
        assert!(serde_json::from_value::<EvidenceResource>(
            serde_json::json!({"population":"nope","resource_type":"X","id":"1"})
        )
        .is_err());
    }
}
