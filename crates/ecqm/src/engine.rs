//! The cql adapter: a [`MeasurePackage`] (parsed Measure + its libraries)
//! prepared once per measurement period into a [`PreparedMeasure`], which
//! evaluates patients.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value as Json;

use crate::error::{EcqmError, Result};
use crate::evidence::EvidencePlan;
use crate::package::{parse_measure_bundle, MeasureDef};
use crate::patients::PatientRecord;
use crate::period::Period;
use crate::populations::{
    check_supported, evaluate_patient, EvalOptions, Evaluator, PatientResult,
};

fn engine_err(e: cql::CqlError) -> EcqmError {
    EcqmError::Engine(e.to_string())
}

/// A measure bundle: the parsed Measure and its compiled library set.
pub struct MeasurePackage {
    pub def: MeasureDef,
    libraries: cql::LibrarySet,
}

impl std::fmt::Debug for MeasurePackage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeasurePackage")
            .field("measure", &self.def.name)
            .finish_non_exhaustive()
    }
}

impl MeasurePackage {
    /// Loads a measure bundle file.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| EcqmError::io(path, e))?;
        let json: Json = serde_json::from_slice(&bytes)
            .map_err(|e| EcqmError::Package(format!("{}: not valid JSON ({e})", path.display())))?;
        Self::from_json(&json).map_err(|e| EcqmError::Package(format!("{}: {e}", path.display())))
    }

    /// Loads every `*.json` bundle in a directory (sorted by file name), or
    /// the single file `path`.
    pub fn load_all(path: &Path) -> Result<Vec<Self>> {
        let meta = std::fs::metadata(path).map_err(|e| EcqmError::io(path, e))?;
        if meta.is_file() {
            return Ok(vec![Self::load(path)?]);
        }
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| EcqmError::io(path, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().and_then(|e| e.to_str()) == Some("json"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(EcqmError::Package(format!(
                "{}: no .json measure bundles",
                path.display()
            )));
        }
        files.iter().map(|f| Self::load(f)).collect()
    }

    /// Parses the Measure and builds the library set (the libraries' ELM is
    /// decoded and compiled here, once).
    pub fn from_json(bundle: &Json) -> Result<Self> {
        let def = parse_measure_bundle(bundle)?;
        check_supported(&def)?;
        let libraries = cql::LibrarySet::from_measure_bundle(bundle).map_err(engine_err)?;
        Ok(MeasurePackage { def, libraries })
    }

    /// A package from an already parsed Measure and its library set (see [`crate::compact`]).
    pub fn from_parts(def: MeasureDef, libraries: cql::LibrarySet) -> Self {
        MeasurePackage { def, libraries }
    }

    /// The Measure's effective period, used when no period is given.
    pub fn default_period(&self) -> Result<Period> {
        let (s, e) = self.def.effective_period.as_ref().ok_or_else(|| {
            EcqmError::Argument(format!(
                "Measure {} has no effectivePeriod; give a measurement period",
                self.def.name
            ))
        })?;
        Period::new(s, e)
    }

    /// Prepares the main library for one measurement period.
    pub fn prepare(&self, period: &Period) -> Result<PreparedMeasure> {
        let bound = |s: &str| {
            cql::datetime::parse_datetime(s, 0)
                .map(cql::Value::DateTime)
                .ok_or_else(|| {
                    EcqmError::Argument(format!("period bound {s:?} rejected by the engine"))
                })
        };
        let mp = cql::Value::interval(
            bound(&period.start_datetime)?,
            bound(&period.end_datetime)?,
            true,
            true,
        );
        let params = cql::Parameters::new().with("Measurement Period", mp);
        let prepared = self
            .libraries
            .prepare(self.main_library(), params)
            .map_err(engine_err)?;
        Ok(PreparedMeasure {
            def: self.def.clone(),
            period: period.clone(),
            evidence: EvidencePlan::new(&self.def, &prepared),
            prepared,
            retrieved_types: self.retrieved_types()?,
        })
    }

    /// The FHIR resource types (`Encounter`, `ServiceRequest`, ...) the measure's ELM retrieves:
    /// the `dataType` of every `Retrieve` in the main library and every library it includes,
    /// namespace stripped. Fails when the main library or an included one has no ELM.
    pub fn retrieved_types(&self) -> Result<BTreeSet<String>> {
        self.libraries
            .retrieved_types(self.main_library())
            .map_err(engine_err)
    }

    fn main_library(&self) -> &str {
        if self.def.main_library_name.is_empty() {
            self.def.main_library_url.as_str()
        } else {
            self.def.main_library_name.as_str()
        }
    }
}

/// A measure ready to evaluate patients for one period. `Send + Sync`.
pub struct PreparedMeasure {
    pub def: MeasureDef,
    pub period: Period,
    pub(crate) prepared: cql::Prepared,
    retrieved_types: BTreeSet<String>,
    /// care-gap evidence plan and closing requirements (see [`crate::evidence`])
    pub(crate) evidence: EvidencePlan,
}

/// One measure bound to one patient's evaluation session: definitions are memoized across the
/// population, stratifier and SDE calls, and (through a shared [`cql::PatientMemo`]) across
/// measures that use identical libraries with identical parameters.
pub(crate) struct Bound<'a> {
    pub(crate) session: cql::Session<'a>,
}

impl Evaluator for Bound<'_> {
    type Patient = ();

    fn truths(&self, _: &(), expressions: &[&str]) -> Result<Vec<bool>> {
        let vals = self.session.evaluate(expressions).map_err(engine_err)?;
        vals.iter()
            .zip(expressions)
            .map(|(v, e)| match v {
                cql::Value::Boolean(b) => Ok(*b),
                cql::Value::Null => Ok(false),
                other => Err(EcqmError::Expression {
                    expression: e.to_string(),
                    message: format!(
                        "returned {} where the population basis is boolean",
                        other.type_name()
                    ),
                }),
            })
            .collect()
    }

    fn values(&self, _: &(), expressions: &[&str]) -> Result<Vec<Json>> {
        Ok(self
            .session
            .evaluate(expressions)
            .map_err(engine_err)?
            .iter()
            .map(cql::Value::to_json)
            .collect())
    }
}

impl PreparedMeasure {
    /// The FHIR resource types the measure's ELM retrieves (see
    /// [`MeasurePackage::retrieved_types`]).
    pub fn retrieved_types(&self) -> &BTreeSet<String> {
        &self.retrieved_types
    }

    /// Evaluates one patient already converted to engine data.
    pub fn evaluate_data(
        &self,
        data: &cql::PatientData,
        patient_id: &str,
        opts: EvalOptions,
    ) -> Result<PatientResult> {
        self.evaluate_memo(&cql::PatientMemo::new(data), patient_id, opts)
    }

    /// Evaluates one patient, sharing memoized library definitions with the other measures
    /// evaluated with the same `memo` (one per patient; see [`cql::PatientMemo`]).
    pub fn evaluate_memo(
        &self,
        memo: &cql::PatientMemo<'_>,
        patient_id: &str,
        opts: EvalOptions,
    ) -> Result<PatientResult> {
        let bound = Bound {
            session: self.prepared.session_shared(memo),
        };
        evaluate_patient(&self.def, &bound, &(), patient_id, opts)
    }

    /// Converts and evaluates one patient.
    pub fn evaluate(&self, record: &PatientRecord, opts: EvalOptions) -> Result<PatientResult> {
        let data = patient_data(record.resources.clone())?;
        self.evaluate_data(&data, &record.id, opts)
    }
}

/// Evaluates one patient against every measure: converts the record once and shares one
/// [`cql::PatientMemo`] across the measures (common libraries are evaluated once). Same results
/// as calling [`PreparedMeasure::evaluate`] per measure, in measure order.
pub fn evaluate_all(
    measures: &[PreparedMeasure],
    record: &PatientRecord,
    opts: EvalOptions,
) -> Result<Vec<Result<PatientResult>>> {
    evaluate_all_in(measures, record, opts, cql::EvalContext::from_clock())
}

/// As [`evaluate_all`], in the evaluation request `cx`: a batch passes one context to every
/// patient so that `Now()` is one timestamp for the whole run.
pub fn evaluate_all_in(
    measures: &[PreparedMeasure],
    record: &PatientRecord,
    opts: EvalOptions,
    cx: cql::EvalContext,
) -> Result<Vec<Result<PatientResult>>> {
    let data = patient_data(record.resources.clone())?;
    let memo = cql::PatientMemo::new_in(&data, cx);
    Ok(measures
        .iter()
        .map(|m| m.evaluate_memo(&memo, &record.id, opts))
        .collect())
}

/// Converts a patient's resources to engine data.
pub fn patient_data(resources: Vec<Json>) -> Result<cql::PatientData> {
    cql::PatientData::from_resources(resources).map_err(engine_err)
}

/// One patient's outcome in a batch: the Patient resource (when asked for),
/// and one result (or error) per measure, in measure order.
#[derive(Debug)]
pub struct PatientOutcome {
    /// Safe-to-log label (file name or hashed id), never patient content.
    pub label: String,
    pub patient_id: Option<String>,
    pub patient: Option<Json>,
    /// `Err` for the whole patient when it could not be read or converted.
    pub results: Result<Vec<Result<PatientResult>>>,
}

/// Evaluates a batch of patients against every measure, in parallel on the
/// current rayon pool (each patient is read and converted once). Order is
/// kept. `keep_patient` keeps the Patient resource (for gaps bundles). Every patient is
/// evaluated in the one request `cx` (one `Now()`; a run passes the same `cx` to each batch).
pub fn evaluate_batch(
    measures: &[PreparedMeasure],
    items: &[crate::patients::PatientItem],
    opts: EvalOptions,
    keep_patient: bool,
    cx: cql::EvalContext,
) -> Vec<PatientOutcome> {
    use rayon::prelude::*;
    items
        .par_iter()
        .map(|item| {
            let label = match item {
                crate::patients::PatientItem::File(p) => p.display().to_string(),
                crate::patients::PatientItem::Lines { id, .. } => {
                    format!("patient #{}", &crate::report::safe_id(&[id])[..10])
                }
            };
            let (id, nodes) = match item.load_nodes() {
                Ok(r) => r,
                Err(e) => {
                    return PatientOutcome {
                        label,
                        patient_id: None,
                        patient: None,
                        results: Err(e),
                    }
                }
            };
            let patient = if keep_patient {
                nodes.first().map(cql::fhir::J::to_json)
            } else {
                None
            };
            let results = cql::PatientData::from_nodes(nodes)
                .map_err(engine_err)
                .map(|data| {
                    let memo = cql::PatientMemo::new_in(&data, cx);
                    measures
                        .iter()
                        .map(|m| m.evaluate_memo(&memo, &id, opts))
                        .collect()
                });
            PatientOutcome {
                label,
                patient_id: Some(id),
                patient,
                results,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepared_measure_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<PreparedMeasure>();
        check::<MeasurePackage>();
    }

    #[test]
    fn package_errors_are_clear() {
        let e = MeasurePackage::from_json(&serde_json::json!({"resourceType": "Bundle"}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no Measure"), "{e}");
        let e = MeasurePackage::load(Path::new("/nonexistent/m.json"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/m.json"), "{e}");
        assert!(MeasurePackage::load_all(Path::new("/nonexistent")).is_err());
    }
}
