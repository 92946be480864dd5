//! Population membership rules (FHIR / CQF measure evaluation) and the
//! per-patient evaluation driver over an [`Evaluator`] seam.

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::Value as Json;

use crate::error::{EcqmError, Result};
use crate::package::{GroupDef, MeasureDef, PopulationCode, Scoring};

/// What the population layer needs from an expression engine. The cql
/// adapter implements it; tests use a table-driven fake.
pub trait Evaluator {
    type Patient: ?Sized + Sync;
    /// Evaluates boolean-basis criteria: `true`/`false`, null counts as false.
    /// Anything else (a list, a number) is an error.
    fn truths(&self, patient: &Self::Patient, expressions: &[&str]) -> Result<Vec<bool>>;
    /// Evaluates expressions to their JSON rendering (stratifiers, SDEs).
    fn values(&self, patient: &Self::Patient, expressions: &[&str]) -> Result<Vec<Json>>;
}

/// Membership of one patient in the populations of one group, in the order
/// the Measure lists them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Memberships(pub Vec<(PopulationCode, bool)>);

impl Memberships {
    pub fn get(&self, code: PopulationCode) -> Option<bool> {
        self.0.iter().find(|(c, _)| *c == code).map(|(_, b)| *b)
    }
    pub fn is(&self, code: PopulationCode) -> bool {
        self.get(code).unwrap_or(false)
    }
}

impl Serialize for Memberships {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (c, b) in &self.0 {
            m.serialize_entry(c.code(), &u8::from(*b))?;
        }
        m.end()
    }
}

/// Applies the proportion (or cohort) membership rules to the raw truth
/// value of each population's criteria. `raw` returns `None` for a population
/// the group does not define.
///
/// Proportion: DENOM ⊆ IP; DENEX ⊆ DENOM; NUMER ⊆ DENOM \ DENEX;
/// NUMEX ⊆ NUMER; DENEXCEP ⊆ DENOM \ (DENEX ∪ NUMER).
pub fn apply_rules(group: &GroupDef, raw: impl Fn(PopulationCode) -> bool) -> Memberships {
    use PopulationCode::*;
    let has = |c| group.population(c).is_some();
    let r = |c| has(c) && raw(c);
    let ip = r(InitialPopulation);
    let mut out = Vec::with_capacity(group.populations.len());
    match group.scoring {
        Scoring::Cohort => {
            out.push((InitialPopulation, ip));
        }
        _ => {
            let denom = ip && r(Denominator);
            let denex = denom && r(DenominatorExclusion);
            let numer = denom && !denex && r(Numerator);
            let numex = numer && r(NumeratorExclusion);
            let denexcep = denom && !denex && !numer && r(DenominatorException);
            for p in &group.populations {
                let v = match p.code {
                    InitialPopulation => ip,
                    Denominator => denom,
                    DenominatorExclusion => denex,
                    Numerator => numer,
                    NumeratorExclusion => numex,
                    DenominatorException => denexcep,
                    _ => continue,
                };
                out.push((p.code, v));
            }
        }
    }
    Memberships(out)
}

/// One stratifier's value for a patient (only for initial-population members).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StratumValue {
    pub stratifier: String,
    pub value: Json,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupResult {
    pub id: String,
    pub populations: Memberships,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub strata: Vec<StratumValue>,
}

/// One patient's result for one measure. Serialises to the scorer's JSONL
/// format (`measure`, `case` = patient id, `groups`), plus `sde` when
/// supplemental data were evaluated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PatientResult {
    pub measure: String,
    #[serde(rename = "case")]
    pub patient_id: String,
    pub groups: Vec<GroupResult>,
    /// Supplemental data, `(id, value)` in Measure order; serialised as an object.
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "pairs_as_map")]
    pub sde: Vec<(String, Json)>,
}

fn pairs_as_map<S: Serializer>(
    pairs: &[(String, Json)],
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    let mut m = s.serialize_map(Some(pairs.len()))?;
    for (k, v) in pairs {
        m.serialize_entry(k, v)?;
    }
    m.end()
}

/// What to evaluate beyond the populations.
#[derive(Debug, Clone, Copy, Default)]
pub struct EvalOptions {
    pub stratifiers: bool,
    pub supplemental_data: bool,
    /// Evaluate every population criterion in one engine call (shares the
    /// engine's per-call memoisation) instead of initial populations first
    /// and the rest only for IP members. Same results; faster when most
    /// patients are in the initial population.
    pub single_pass: bool,
}

/// Checks that the population layer can evaluate this measure.
pub fn check_supported(m: &MeasureDef) -> Result<()> {
    for g in &m.groups {
        match g.scoring {
            Scoring::Proportion | Scoring::Cohort => {}
            s => {
                return Err(EcqmError::Unsupported(format!(
                    "Measure {} group {}: {} scoring",
                    m.name,
                    g.id,
                    s.code()
                )))
            }
        }
        if g.population_basis != "boolean" {
            return Err(EcqmError::Unsupported(format!(
                "Measure {} group {}: population basis {:?} (only patient-based, boolean, measures)",
                m.name, g.id, g.population_basis
            )));
        }
    }
    Ok(())
}

/// Evaluates one patient. Initial populations are evaluated first; the other
/// criteria only for groups whose initial population holds (their results
/// could not count otherwise).
pub fn evaluate_patient<E: Evaluator>(
    m: &MeasureDef,
    eval: &E,
    patient: &E::Patient,
    patient_id: &str,
    opts: EvalOptions,
) -> Result<PatientResult> {
    use PopulationCode::InitialPopulation;
    // Stage 1: initial populations.
    let mut ip_exprs: Vec<&str> = Vec::new();
    for g in &m.groups {
        for p in &g.populations {
            let wanted = p.code == InitialPopulation
                || (opts.single_pass && p.code != PopulationCode::MeasureObservation);
            if wanted && !ip_exprs.contains(&p.expression.as_str()) {
                ip_exprs.push(&p.expression);
            }
        }
    }
    let ip_vals = eval.truths(patient, &ip_exprs)?;
    let truth_of = |exprs: &[&str], vals: &[bool], e: &str| -> bool {
        exprs
            .iter()
            .position(|x| *x == e)
            .and_then(|i| vals.get(i).copied())
            .unwrap_or(false)
    };
    let in_ip: Vec<bool> = m
        .groups
        .iter()
        .map(|g| {
            g.population(InitialPopulation)
                .is_some_and(|p| truth_of(&ip_exprs, &ip_vals, &p.expression))
        })
        .collect();

    // Stage 2: everything else, for groups with IP members.
    let mut rest: Vec<&str> = Vec::new();
    for (g, _) in m.groups.iter().zip(&in_ip).filter(|(_, ip)| **ip) {
        for p in &g.populations {
            if p.code != InitialPopulation
                && p.code != PopulationCode::MeasureObservation
                && !ip_exprs.contains(&p.expression.as_str())
                && !rest.contains(&p.expression.as_str())
            {
                rest.push(&p.expression);
            }
        }
    }
    let rest_vals = if rest.is_empty() {
        Vec::new()
    } else {
        eval.truths(patient, &rest)?
    };

    // Stratifiers (IP members only).
    let mut strat_exprs: Vec<&str> = Vec::new();
    if opts.stratifiers {
        for (g, _) in m.groups.iter().zip(&in_ip).filter(|(_, ip)| **ip) {
            for s in &g.stratifiers {
                if let Some(e) = &s.expression {
                    if !strat_exprs.contains(&e.as_str()) {
                        strat_exprs.push(e);
                    }
                }
            }
        }
    }
    let strat_vals = if strat_exprs.is_empty() {
        Vec::new()
    } else {
        eval.values(patient, &strat_exprs)?
    };

    let mut groups = Vec::with_capacity(m.groups.len());
    for (gi, g) in m.groups.iter().enumerate() {
        let populations = apply_rules(g, |code| {
            let Some(p) = g.population(code) else {
                return false;
            };
            if code == InitialPopulation {
                return in_ip[gi];
            }
            if ip_exprs.contains(&p.expression.as_str()) {
                truth_of(&ip_exprs, &ip_vals, &p.expression)
            } else {
                truth_of(&rest, &rest_vals, &p.expression)
            }
        });
        let mut strata = Vec::new();
        if in_ip[gi] {
            for (si, s) in g.stratifiers.iter().enumerate() {
                if let Some(e) = &s.expression {
                    if let Some(i) = strat_exprs.iter().position(|x| x == e) {
                        strata.push(StratumValue {
                            stratifier: s
                                .id
                                .clone()
                                .unwrap_or_else(|| format!("stratifier-{}", si + 1)),
                            value: strat_vals.get(i).cloned().unwrap_or(Json::Null),
                        });
                    }
                }
            }
        }
        groups.push(GroupResult {
            id: g.id.clone(),
            populations,
            strata,
        });
    }

    let sde = if opts.supplemental_data && !m.supplemental_data.is_empty() {
        let exprs: Vec<&str> = m
            .supplemental_data
            .iter()
            .map(|s| s.expression.as_str())
            .collect();
        let vals = eval.values(patient, &exprs)?;
        m.supplemental_data
            .iter()
            .zip(vals)
            .map(|(s, v)| (s.id.clone(), v))
            .collect()
    } else {
        Vec::new()
    };

    Ok(PatientResult {
        measure: m.name.clone(),
        patient_id: patient_id.to_string(),
        groups,
        sde,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::package::{ImprovementNotation, PopulationDef, StratifierDef};
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use PopulationCode::*;

    pub(crate) fn group(codes: &[(PopulationCode, &str)]) -> GroupDef {
        GroupDef {
            id: "g1".into(),
            scoring: Scoring::Proportion,
            population_basis: "boolean".into(),
            improvement_notation: Some(ImprovementNotation::Increase),
            populations: codes
                .iter()
                .map(|(c, e)| PopulationDef {
                    id: None,
                    code: *c,
                    expression: e.to_string(),
                })
                .collect(),
            stratifiers: vec![],
        }
    }

    pub(crate) fn full_group() -> GroupDef {
        group(&[
            (InitialPopulation, "IP"),
            (Denominator, "DENOM"),
            (DenominatorExclusion, "DENEX"),
            (Numerator, "NUMER"),
            (DenominatorException, "DENEXCEP"),
        ])
    }

    fn rules(g: &GroupDef, t: &[PopulationCode]) -> Vec<u8> {
        apply_rules(g, |c| t.contains(&c))
            .0
            .iter()
            .map(|(_, b)| u8::from(*b))
            .collect()
    }

    #[test]
    fn proportion_rules() {
        let g = full_group();
        // order: IP, DENOM, DENEX, NUMER, DENEXCEP
        assert_eq!(rules(&g, &[]), [0, 0, 0, 0, 0]);
        // nothing counts outside the initial population
        assert_eq!(
            rules(&g, &[Denominator, Numerator, DenominatorException]),
            [0, 0, 0, 0, 0]
        );
        assert_eq!(rules(&g, &[InitialPopulation]), [1, 0, 0, 0, 0]);
        assert_eq!(
            rules(&g, &[InitialPopulation, Denominator, Numerator]),
            [1, 1, 0, 1, 0]
        );
        // exclusion wins over numerator and exception
        assert_eq!(
            rules(
                &g,
                &[
                    InitialPopulation,
                    Denominator,
                    DenominatorExclusion,
                    Numerator,
                    DenominatorException
                ]
            ),
            [1, 1, 1, 0, 0]
        );
        // numerator wins over exception
        assert_eq!(
            rules(
                &g,
                &[
                    InitialPopulation,
                    Denominator,
                    Numerator,
                    DenominatorException
                ]
            ),
            [1, 1, 0, 1, 0]
        );
        assert_eq!(
            rules(&g, &[InitialPopulation, Denominator, DenominatorException]),
            [1, 1, 0, 0, 1]
        );
        // numerator without denominator does not count
        assert_eq!(rules(&g, &[InitialPopulation, Numerator]), [1, 0, 0, 0, 0]);
    }

    #[test]
    fn numerator_exclusion_and_cohort() {
        let g = group(&[
            (InitialPopulation, "IP"),
            (Denominator, "D"),
            (Numerator, "N"),
            (NumeratorExclusion, "NX"),
        ]);
        assert_eq!(
            rules(
                &g,
                &[
                    InitialPopulation,
                    Denominator,
                    Numerator,
                    NumeratorExclusion
                ]
            ),
            [1, 1, 1, 1]
        );
        assert_eq!(
            rules(&g, &[InitialPopulation, Denominator, NumeratorExclusion]),
            [1, 1, 0, 0]
        );
        let mut c = group(&[(InitialPopulation, "IP")]);
        c.scoring = Scoring::Cohort;
        assert_eq!(rules(&c, &[InitialPopulation]), [1]);
    }

    /// Table-driven fake engine: expression name -> value; counts calls.
    pub(crate) struct Fake {
        pub vals: HashMap<String, Json>,
        pub calls: AtomicUsize,
    }
    impl Fake {
        pub(crate) fn new(pairs: &[(&str, Json)]) -> Self {
            Fake {
                vals: pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect(),
                calls: AtomicUsize::new(0),
            }
        }
    }
    impl Evaluator for Fake {
        type Patient = ();
        fn truths(&self, _: &(), exprs: &[&str]) -> Result<Vec<bool>> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            exprs
                .iter()
                .map(|e| match self.vals.get(*e) {
                    None | Some(Json::Null) => Ok(false),
                    Some(Json::Bool(b)) => Ok(*b),
                    Some(_) => Err(EcqmError::Expression {
                        expression: e.to_string(),
                        message: "not a boolean".into(),
                    }),
                })
                .collect()
        }
        fn values(&self, _: &(), exprs: &[&str]) -> Result<Vec<Json>> {
            Ok(exprs
                .iter()
                .map(|e| self.vals.get(*e).cloned().unwrap_or(Json::Null))
                .collect())
        }
    }

    pub(crate) fn measure(groups: Vec<GroupDef>) -> MeasureDef {
        MeasureDef {
            id: "M".into(),
            name: "M".into(),
            url: Some("http://x/Measure/M".into()),
            version: Some("1".into()),
            title: Some("Test measure".into()),
            cms_id: None,
            version_specific_id: None,
            main_library_url: "http://x/Library/M".into(),
            main_library_name: "M".into(),
            effective_period: Some(("2025-01-01".into(), "2025-12-31".into())),
            groups,
            supplemental_data: vec![crate::package::SdeDef {
                id: "sde-sex".into(),
                expression: "SDE Sex".into(),
            }],
            warnings: vec![],
        }
    }

    #[test]
    fn evaluate_patient_staged() {
        let mut g = full_group();
        g.stratifiers.push(StratifierDef {
            id: Some("s1".into()),
            code_text: None,
            expression: Some("Strat".into()),
        });
        let m = measure(vec![g]);
        let fake = Fake::new(&[
            ("IP", Json::Bool(true)),
            ("DENOM", Json::Bool(true)),
            ("NUMER", Json::Bool(true)),
            ("Strat", Json::String("a".into())),
            ("SDE Sex", serde_json::json!({"code":"F"})),
        ]);
        let r = evaluate_patient(
            &m,
            &fake,
            &(),
            "p1",
            EvalOptions {
                stratifiers: true,
                supplemental_data: true,
                single_pass: false,
            },
        )
        .unwrap();
        let line = serde_json::to_value(&r).unwrap();
        assert_eq!(line["case"], "p1");
        assert_eq!(line["measure"], "M");
        assert_eq!(
            line["groups"][0]["populations"],
            serde_json::json!({"initial-population":1,"denominator":1,"denominator-exclusion":0,"numerator":1,"denominator-exception":0})
        );
        assert_eq!(r.groups[0].strata[0].value, Json::String("a".into()));
        assert_eq!(r.sde[0].0, "sde-sex");
        assert_eq!(line["sde"]["sde-sex"]["code"], "F");

        let single = evaluate_patient(
            &m,
            &fake,
            &(),
            "p1",
            EvalOptions {
                stratifiers: true,
                supplemental_data: true,
                single_pass: true,
            },
        )
        .unwrap();
        assert_eq!(single, r);

        // Not in IP: one engine call only, all zero, no strata.
        let fake = Fake::new(&[("DENOM", Json::Bool(true))]);
        let r = evaluate_patient(&m, &fake, &(), "p2", EvalOptions::default()).unwrap();
        assert_eq!(fake.calls.load(Ordering::Relaxed), 1);
        assert!(r.groups[0].populations.0.iter().all(|(_, b)| !b));
        assert!(r.groups[0].strata.is_empty());
    }

    #[test]
    fn non_boolean_population_is_an_error() {
        let m = measure(vec![full_group()]);
        let fake = Fake::new(&[("IP", serde_json::json!([1, 2]))]);
        let e = evaluate_patient(&m, &fake, &(), "p", EvalOptions::default()).unwrap_err();
        assert!(e.to_string().contains("\"IP\""), "{e}");
    }

    #[test]
    fn unsupported_scoring() {
        let mut g = full_group();
        g.scoring = Scoring::Ratio;
        assert!(check_supported(&measure(vec![g])).is_err());
        let mut g = full_group();
        g.population_basis = "Encounter".into();
        assert!(check_supported(&measure(vec![g])).is_err());
        assert!(check_supported(&measure(vec![full_group()])).is_ok());
    }
}
