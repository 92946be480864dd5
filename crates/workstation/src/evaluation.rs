//! Local evaluation: the shipped measure packages run by the shared engine (`ecqm`) over the
//! cached panel. The gap status is `ecqm::gap_status`; the evidence is `ecqm`'s, read from the
//! ELM. Nothing here knows a measure.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use cache::{PatientEvaluation, PatientResources, PopulationCounts, StoredGap, StoredResult};
use ecqm::engine::{MeasurePackage, PreparedMeasure};
use ecqm::{
    gap_status, EvalOptions, GapStatus, GroupResult, ImprovementOverrides, Memberships, Period,
    PopulationCode,
};
use serde_json::Value as Json;

use crate::WsError;

/// The measure packages the app ships (`phm-ecqm compact` of the CMS packages).
pub static PACKAGES_GZ: &[u8] = include_bytes!("../../../assets/measures.json.gz");

/// Improvement-notation overrides for the shipped packages (same syntax as `phm-ecqm
/// --improvement-notation`). CMS122's package codes its notation `decrease` with the display
/// `increase`; the engine treats a self-contradicting coding as absent (so `increase`), while
/// the measure (glycemic status *greater than* 9 %) is an inverse measure: its gap is open when
/// the numerator is met. Without this every well-controlled diabetic would show an open gap.
pub const SHIPPED_IMPROVEMENT_OVERRIDES: &str = "122FHIR=decrease";

/// Patients evaluated per batch: one cache read and one write transaction each.
pub const BATCH: usize = 512;

/// What evaluations run with: the prepared measures and the resources without a patient
/// (`Type/id` → resource) that patients' resources reference.
#[derive(Clone)]
pub struct EvalContext {
    pub set: std::sync::Arc<MeasureSet>,
    pub shared: std::sync::Arc<HashMap<String, cql::fhir::J>>,
}

/// The measures prepared for one measurement period.
pub struct MeasureSet {
    pub measures: Vec<PreparedMeasure>,
    pub period: Period,
    /// Open gaps are `open` once the period is over, `prospective` before.
    pub period_over: bool,
    /// What stored results were computed with: engine, packages, period, period over.
    pub setup: String,
    /// Why QRDA III cannot be written for a measure: the CMS supplemental data elements it
    /// lacks (empty for every shipped measure).
    pub sde_missing: Vec<(String, String)>,
    overrides: ImprovementOverrides,
}

/// What the local evaluation evaluates beyond the populations: stratifiers and supplemental
/// data, stored with each result so that reports and stratified dashboards need no second
/// evaluation.
pub const STORED_OPTIONS: EvalOptions = EvalOptions {
    stratifiers: true,
    supplemental_data: true,
    single_pass: false,
};

fn engine_error(e: ecqm::EcqmError) -> WsError {
    // Engine errors name measures and definitions, never patient data.
    WsError::new(
        "evaluation",
        format!("The measures could not be evaluated: {e}."),
    )
}

fn hex_hash(parts: impl IntoIterator<Item = impl Hash>) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for p in parts {
        p.hash(&mut h);
    }
    format!("{:016x}", h.finish())
}

/// The codes of a shipped value set (`system`, `code`, `display`), by canonical url.
pub fn shipped_value_set(url: &str) -> Option<Vec<(String, String, Option<String>)>> {
    static SETS: std::sync::OnceLock<HashMap<String, Json>> = std::sync::OnceLock::new();
    let sets = SETS.get_or_init(|| {
        use std::io::Read;
        let mut text = Vec::new();
        let doc: Json = flate2::read::GzDecoder::new(PACKAGES_GZ)
            .read_to_end(&mut text)
            .ok()
            .and_then(|_| serde_json::from_slice(&text).ok())
            .unwrap_or_default();
        doc.get("valueSets")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
            .filter_map(|v| Some((v.get("url")?.as_str()?.to_string(), v.clone())))
            .collect()
    });
    sets.get(url).map(ecqm::compact::value_set_codes)
}

/// The shipped packages, parsed (ELM compiled once per period by [`MeasureSet::prepare`]).
pub fn shipped_packages() -> Result<Vec<MeasurePackage>, WsError> {
    ecqm::compact::load_gzip(PACKAGES_GZ).map_err(engine_error)
}

impl MeasureSet {
    /// Prepares `packages` for the calendar year `year`; `today` (YYYY-MM-DD) decides whether
    /// the period is over.
    pub fn prepare(
        packages: &[MeasurePackage],
        year: i32,
        today: &str,
        overrides: &ImprovementOverrides,
    ) -> Result<Self, WsError> {
        let period = Period::new(&format!("{year:04}-01-01"), &format!("{year:04}-12-31"))
            .map_err(engine_error)?;
        let mut measures = packages
            .iter()
            .map(|p| p.prepare(&period))
            .collect::<Result<Vec<_>, _>>()
            .map_err(engine_error)?;
        // QRDA III needs sex, race, ethnicity and payer: evaluated (and stored) for every
        // measure whose library defines them, even when its Measure does not list them.
        let sde_missing = measures
            .iter_mut()
            .filter_map(|m| {
                let name = m.def.name.clone();
                ecqm::qrda3::ensure_cms_sde(m)
                    .err()
                    .map(|e| (name, e.to_string()))
            })
            .collect();
        let period_over = today > period.end_date();
        let setup = format!(
            "ecqm {} packages {} period {year} {} notation {} stored strata+sde",
            ecqm::VERSION,
            hex_hash([PACKAGES_GZ]),
            if period_over { "over" } else { "running" },
            overrides.fingerprint()
        );
        Ok(MeasureSet {
            measures,
            period,
            period_over,
            setup,
            sde_missing,
            overrides: overrides.clone(),
        })
    }

    /// The hash of a patient's stored data: with [`MeasureSet::setup`], whether stored
    /// results are still current.
    pub fn data_hash(resources: &[String]) -> String {
        hex_hash(resources)
    }

    pub(crate) fn status(&self, m: &PreparedMeasure, g: &GroupResult) -> GapStatus {
        let notation = m
            .def
            .groups
            .iter()
            .find(|d| d.id == g.id)
            .map(|d| self.overrides.notation(&m.def, d))
            .unwrap_or(ecqm::ImprovementNotation::Increase);
        gap_status(&g.populations, notation, self.period_over)
    }

    /// Evaluates one patient against every measure (one engine memo shared across them).
    /// `shared` holds the resources without a patient that patients reference (Medication).
    pub fn evaluate(
        &self,
        patient: &PatientResources,
        shared: &HashMap<String, cql::fhir::J>,
    ) -> Result<PatientEvaluation, WsError> {
        let data = patient_data(patient, shared)?;
        let memo = cql::PatientMemo::new(&data);
        let mut results = Vec::new();
        let mut gaps = Vec::new();
        for m in &self.measures {
            let want = |g: &GroupResult| {
                matches!(self.status(m, g), GapStatus::Open | GapStatus::Prospective)
            };
            let (result, evidence) = m
                .evaluate_with_evidence(&memo, &patient.patient_id, STORED_OPTIONS, &want)
                .map_err(engine_error)?;
            // Supplemental data as the codes QRDA III counts (not each patient's details).
            let sde = (!result.sde.is_empty()).then(|| {
                let codes: Vec<(&str, Json)> = result
                    .sde
                    .iter()
                    .map(|(id, v)| (id.as_str(), ecqm::qrda3::sde_value_codes(v)))
                    .collect();
                pairs_json(&codes)
            });
            for g in &result.groups {
                let c = counts(&g.populations);
                // Outside the initial population every count is 0: no row (sums are the same).
                if c != PopulationCounts::default() {
                    let strata: Vec<(&str, &Json)> = g
                        .strata
                        .iter()
                        .map(|s| (s.stratifier.as_str(), &s.value))
                        .collect();
                    results.push(StoredResult {
                        measure_id: m.def.name.clone(),
                        group_id: g.id.clone(),
                        counts: c,
                        strata: (!strata.is_empty()).then(|| pairs_json(&strata)),
                        sde: sde.clone(),
                    });
                }
                let status = match self.status(m, g) {
                    GapStatus::NotApplicable => continue,
                    GapStatus::Open => "open",
                    GapStatus::Closed => "closed",
                    GapStatus::Prospective => "prospective",
                };
                let ev = evidence.iter().find(|e| e.group_id == g.id);
                let to_json = |v: Result<String, _>| v.unwrap_or_else(|_| "[]".to_string());
                gaps.push(StoredGap {
                    measure_id: m.def.name.clone(),
                    group_id: g.id.clone(),
                    status: status.into(),
                    why_open: ev
                        .map_or("[]".into(), |e| to_json(serde_json::to_string(&e.why_open))),
                    evidence: ev.map_or("[]".into(), |e| to_json(serde_json::to_string(&e.data))),
                });
            }
        }
        Ok(PatientEvaluation {
            patient_id: patient.patient_id.clone(),
            data_hash: Self::data_hash(&patient.resources),
            results,
            gaps,
        })
    }

    /// Evaluates one patient against every measure with `opts` (supplemental data and
    /// stratifiers for reports): the engine's full results, one per measure, in order. The
    /// same data and rules as [`MeasureSet::evaluate`].
    pub fn evaluate_results(
        &self,
        patient: &PatientResources,
        shared: &HashMap<String, cql::fhir::J>,
        opts: EvalOptions,
    ) -> Result<Vec<ecqm::PatientResult>, WsError> {
        let data = patient_data(patient, shared)?;
        let memo = cql::PatientMemo::new(&data);
        self.measures
            .iter()
            .map(|m| {
                m.evaluate_memo(&memo, &patient.patient_id, opts)
                    .map_err(engine_error)
            })
            .collect()
    }

    /// The stored form of each measure: definition and closing requirements per group.
    pub fn package_rows(&self) -> Vec<cache::MeasurePackageRow> {
        self.measures
            .iter()
            .map(|m| {
                let requirements: serde_json::Map<String, Json> = m
                    .def
                    .groups
                    .iter()
                    .enumerate()
                    .map(|(i, g)| {
                        (
                            g.id.clone(),
                            serde_json::to_value(m.closing_requirements(i)).unwrap_or_default(),
                        )
                    })
                    .collect();
                cache::MeasurePackageRow {
                    measure_id: m.def.name.clone(),
                    short_name: m
                        .def
                        .cms_id
                        .as_ref()
                        .map(|c| format!("CMS{c}"))
                        .unwrap_or_else(|| m.def.name.clone()),
                    title: m.def.title.clone().unwrap_or_else(|| m.def.name.clone()),
                    version: m.def.version.clone(),
                    url: m.def.url.clone(),
                    definition: serde_json::to_string(&m.def).unwrap_or_default(),
                    requirements: Json::Object(requirements).to_string(),
                }
            })
            .collect()
    }
}

/// A patient's stored resources (and the shared resources they reference) as engine data.
fn patient_data(
    patient: &PatientResources,
    shared: &HashMap<String, cql::fhir::J>,
) -> Result<cql::PatientData, WsError> {
    let bad = || {
        WsError::new(
            "evaluation",
            "A stored resource is not valid JSON; the patient was not evaluated.",
        )
    };
    let mut nodes = Vec::with_capacity(patient.resources.len() + 4);
    for r in &patient.resources {
        nodes.push(serde_json::from_str::<cql::fhir::J>(r).map_err(|_| bad())?);
    }
    if !shared.is_empty() {
        let mut added: Vec<&str> = patient
            .resources
            .iter()
            .flat_map(|r| references(r))
            .filter(|r| shared.contains_key(*r))
            .collect();
        added.sort_unstable();
        added.dedup();
        nodes.extend(added.iter().map(|r| shared[*r].clone()));
    }
    cql::PatientData::from_nodes(nodes)
        .map_err(|e| engine_error(ecqm::EcqmError::Engine(e.to_string())))
}

/// Stored results read back as the engine's results, with the strata and supplemental data
/// they were stored with: for a patient, what [`MeasureSet::evaluate_results`] gave when the
/// results were stored (groups outside the initial population have every membership false
/// and no strata, as the engine gives them).
pub struct StoredResults<'m> {
    measures: Vec<&'m ecqm::MeasureDef>,
    /// patient → (measure index, group index, counts, strata id, sde id).
    by_patient: HashMap<String, Vec<StoredRow>>,
    strata: HashMap<i64, Vec<ecqm::populations::StratumValue>>,
    sde: HashMap<i64, Vec<(String, Json)>>,
}

type StoredRow = (usize, usize, PopulationCounts, Option<i64>, Option<i64>);

impl<'m> StoredResults<'m> {
    /// Reads the stored results of `measures` (every patient's).
    pub fn read(cache: &cache::Cache, measures: &[&'m PreparedMeasure]) -> Result<Self, WsError> {
        let measures: Vec<&ecqm::MeasureDef> = measures.iter().map(|m| &m.def).collect();
        let index: HashMap<&str, usize> = measures
            .iter()
            .enumerate()
            .map(|(i, m)| (m.name.as_str(), i))
            .collect();
        let only = (measures.len() == 1).then(|| measures[0].name.as_str());
        let mut by_patient: HashMap<String, Vec<StoredRow>> = HashMap::new();
        for r in cache.result_rows(only)? {
            let Some(&mi) = index.get(r.measure_id.as_str()) else {
                continue;
            };
            let Some(gi) = measures[mi].groups.iter().position(|g| g.id == r.group_id) else {
                continue;
            };
            by_patient
                .entry(r.patient_id)
                .or_default()
                .push((mi, gi, r.counts, r.strata, r.sde));
        }
        let mut strata = HashMap::new();
        let mut sde = HashMap::new();
        for (id, json) in cache.result_values()? {
            // The same JSON may serve as either; each is parsed as what it is used for.
            if json.starts_with('[') {
                strata.insert(id, stored_strata(&json));
                sde.insert(id, stored_sde(&json));
            }
        }
        Ok(StoredResults {
            measures,
            by_patient,
            strata,
            sde,
        })
    }

    /// One patient's results, one per measure in the order given to [`StoredResults::read`].
    pub fn patient(&self, patient_id: &str) -> Vec<ecqm::PatientResult> {
        let mut out: Vec<ecqm::PatientResult> = self
            .measures
            .iter()
            .map(|m| ecqm::PatientResult {
                measure: m.name.clone(),
                patient_id: patient_id.to_string(),
                groups: m
                    .groups
                    .iter()
                    .map(|g| GroupResult {
                        id: g.id.clone(),
                        populations: memberships(g, &PopulationCounts::default()),
                        strata: Vec::new(),
                    })
                    .collect(),
                sde: Vec::new(),
            })
            .collect();
        for &(mi, gi, c, strata, sde) in self.by_patient.get(patient_id).into_iter().flatten() {
            let r = &mut out[mi];
            let g = &mut r.groups[gi];
            g.populations = memberships(&self.measures[mi].groups[gi], &c);
            if let Some(s) = strata.and_then(|id| self.strata.get(&id)) {
                g.strata = s.clone();
            }
            if r.sde.is_empty() {
                if let Some(s) = sde.and_then(|id| self.sde.get(&id)) {
                    r.sde = s.clone();
                }
            }
        }
        out
    }
}

/// `[[id, value], ...]` as JSON text: stored stratum values and supplemental data.
fn pairs_json<K: serde::Serialize, V: serde::Serialize>(pairs: &[(K, V)]) -> String {
    serde_json::to_string(pairs).unwrap_or_else(|_| "[]".into())
}

/// Stored stratum values (`[[stratifier, value], ...]`) as the engine gives them.
pub fn stored_strata(json: &str) -> Vec<ecqm::populations::StratumValue> {
    serde_json::from_str::<Vec<(String, Json)>>(json)
        .unwrap_or_default()
        .into_iter()
        .map(|(stratifier, value)| ecqm::populations::StratumValue { stratifier, value })
        .collect()
}

/// Stored supplemental data (`[[id, value], ...]`) as the engine gives them.
pub fn stored_sde(json: &str) -> Vec<(String, Json)> {
    serde_json::from_str(json).unwrap_or_default()
}

/// The memberships that stored `counts` of `group` stand for (the inverse of [`counts`]:
/// the group's populations in Measure order, as `ecqm::apply_rules` lists them).
pub fn memberships(group: &ecqm::GroupDef, c: &PopulationCounts) -> Memberships {
    use PopulationCode::*;
    if group.scoring == ecqm::package::Scoring::Cohort {
        return Memberships(vec![(InitialPopulation, c.ip > 0)]);
    }
    Memberships(
        group
            .populations
            .iter()
            .filter_map(|p| {
                let n = match p.code {
                    InitialPopulation => c.ip,
                    Denominator => c.denom,
                    DenominatorExclusion => c.denex,
                    DenominatorException => c.denexcep,
                    Numerator => c.numer,
                    NumeratorExclusion => c.numex,
                    _ => return None,
                };
                Some((p.code, n > 0))
            })
            .collect(),
    )
}

/// Population memberships as counts (0/1 for a patient-based measure).
pub fn counts(m: &Memberships) -> PopulationCounts {
    use PopulationCode::*;
    let n = |c| u32::from(m.is(c));
    PopulationCounts {
        ip: n(InitialPopulation),
        denom: n(Denominator),
        denex: n(DenominatorExclusion),
        denexcep: n(DenominatorException),
        numer: n(Numerator),
        numex: n(NumeratorExclusion),
    }
}

/// The targets of the `"reference": "..."` elements in a resource's JSON text.
fn references(json: &str) -> impl Iterator<Item = &str> {
    const KEY: &str = "\"reference\"";
    json.match_indices(KEY).filter_map(move |(at, _)| {
        let rest = json[at + KEY.len()..].trim_start();
        let rest = rest.strip_prefix(':')?.trim_start().strip_prefix('"')?;
        rest.find('"').map(|end| &rest[..end])
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn references_are_read_from_the_json_text() {
        let r = r#"{"subject": {"reference":"Patient/1"}, "medicationReference" : { "reference" : "Medication/m 2" }}"#;
        let found: Vec<&str> = super::references(r).collect();
        assert_eq!(found, ["Patient/1", "Medication/m 2"]);
    }
}
