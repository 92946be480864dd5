//! Parsing a FHIR R4 measure package (a Bundle holding one Measure, its
//! Libraries and ValueSets) into a [`MeasureDef`]. Pure JSON work: no engine.

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::error::{EcqmError, Result};

pub const EXT_POPULATION_BASIS: &str =
    "http://hl7.org/fhir/us/cqfmeasures/StructureDefinition/cqfm-populationBasis";
pub const EXT_SCORING: &str = "http://hl7.org/fhir/us/cqfmeasures/StructureDefinition/cqfm-scoring";
pub const EXT_IMPROVEMENT_NOTATION: &str =
    "http://hl7.org/fhir/us/cqfmeasures/StructureDefinition/cqfm-improvementNotation";
pub const EXT_APPLIES_TO: &str =
    "http://hl7.org/fhir/us/cqfmeasures/StructureDefinition/cqfm-appliesTo";
pub const CMS_ID_SYSTEM: &str = "https://madie.cms.gov/measure/cmsId";
pub const POPULATION_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/measure-population";
pub const IMPROVEMENT_SYSTEM: &str =
    "http://terminology.hl7.org/CodeSystem/measure-improvement-notation";

/// FHIR measure-population codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PopulationCode {
    InitialPopulation,
    Denominator,
    DenominatorExclusion,
    DenominatorException,
    Numerator,
    NumeratorExclusion,
    MeasurePopulation,
    MeasurePopulationExclusion,
    MeasureObservation,
}

impl PopulationCode {
    pub const ALL: [PopulationCode; 9] = [
        PopulationCode::InitialPopulation,
        PopulationCode::Denominator,
        PopulationCode::DenominatorExclusion,
        PopulationCode::DenominatorException,
        PopulationCode::Numerator,
        PopulationCode::NumeratorExclusion,
        PopulationCode::MeasurePopulation,
        PopulationCode::MeasurePopulationExclusion,
        PopulationCode::MeasureObservation,
    ];

    pub fn code(self) -> &'static str {
        match self {
            PopulationCode::InitialPopulation => "initial-population",
            PopulationCode::Denominator => "denominator",
            PopulationCode::DenominatorExclusion => "denominator-exclusion",
            PopulationCode::DenominatorException => "denominator-exception",
            PopulationCode::Numerator => "numerator",
            PopulationCode::NumeratorExclusion => "numerator-exclusion",
            PopulationCode::MeasurePopulation => "measure-population",
            PopulationCode::MeasurePopulationExclusion => "measure-population-exclusion",
            PopulationCode::MeasureObservation => "measure-observation",
        }
    }

    pub fn display(self) -> &'static str {
        match self {
            PopulationCode::InitialPopulation => "Initial Population",
            PopulationCode::Denominator => "Denominator",
            PopulationCode::DenominatorExclusion => "Denominator Exclusion",
            PopulationCode::DenominatorException => "Denominator Exception",
            PopulationCode::Numerator => "Numerator",
            PopulationCode::NumeratorExclusion => "Numerator Exclusion",
            PopulationCode::MeasurePopulation => "Measure Population",
            PopulationCode::MeasurePopulationExclusion => "Measure Population Exclusion",
            PopulationCode::MeasureObservation => "Measure Observation",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.code() == code)
    }
}

/// Measure scoring (only proportion and cohort are evaluated).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Scoring {
    Proportion,
    Cohort,
    Ratio,
    ContinuousVariable,
}

impl Scoring {
    fn from_code(code: &str) -> Option<Self> {
        match code {
            "proportion" => Some(Scoring::Proportion),
            "cohort" => Some(Scoring::Cohort),
            "ratio" => Some(Scoring::Ratio),
            "continuous-variable" => Some(Scoring::ContinuousVariable),
            _ => None,
        }
    }
    pub fn code(self) -> &'static str {
        match self {
            Scoring::Proportion => "proportion",
            Scoring::Cohort => "cohort",
            Scoring::Ratio => "ratio",
            Scoring::ContinuousVariable => "continuous-variable",
        }
    }
}

/// Whether a higher score is better (`Increase`) or worse (`Decrease`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImprovementNotation {
    Increase,
    Decrease,
}

impl ImprovementNotation {
    pub fn code(self) -> &'static str {
        match self {
            ImprovementNotation::Increase => "increase",
            ImprovementNotation::Decrease => "decrease",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "increase" => Some(ImprovementNotation::Increase),
            "decrease" => Some(ImprovementNotation::Decrease),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PopulationDef {
    pub id: Option<String>,
    pub code: PopulationCode,
    /// CQL expression (definition name in the main library).
    pub expression: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StratifierDef {
    pub id: Option<String>,
    pub code_text: Option<String>,
    /// `None` when the Measure gives no criteria expression (such a stratifier
    /// is kept in the definition but not evaluated).
    pub expression: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupDef {
    /// `Measure.group.id`, or `group-<n>` (1-based) when absent.
    pub id: String,
    pub scoring: Scoring,
    /// `boolean` for patient-based measures.
    pub population_basis: String,
    pub improvement_notation: Option<ImprovementNotation>,
    pub populations: Vec<PopulationDef>,
    pub stratifiers: Vec<StratifierDef>,
}

impl GroupDef {
    pub fn population(&self, code: PopulationCode) -> Option<&PopulationDef> {
        self.populations.iter().find(|p| p.code == code)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SdeDef {
    pub id: String,
    pub expression: String,
}

/// The parsed Measure: everything the population layer and the reports need.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MeasureDef {
    pub id: String,
    pub name: String,
    pub url: Option<String>,
    pub version: Option<String>,
    pub title: Option<String>,
    /// e.g. `165FHIR`, from the identifier with system [`CMS_ID_SYSTEM`].
    pub cms_id: Option<String>,
    /// The eCQM version-specific identifier (the identifier typed `version-specific`,
    /// `urn:uuid:` stripped): what QRDA III reports as the measure's id.
    #[serde(default)]
    pub version_specific_id: Option<String>,
    /// `Measure.library[0]`.
    pub main_library_url: String,
    /// `name` of the Library whose url is `main_library_url`.
    pub main_library_name: String,
    pub effective_period: Option<(String, String)>,
    pub groups: Vec<GroupDef>,
    pub supplemental_data: Vec<SdeDef>,
    /// Non-fatal oddities found while parsing (e.g. a coded improvement
    /// notation whose display says the opposite).
    pub warnings: Vec<String>,
}

impl MeasureDef {
    /// Canonical reference `url|version` (or `Measure/<id>`).
    pub fn canonical(&self) -> String {
        match (&self.url, &self.version) {
            (Some(u), Some(v)) => format!("{u}|{v}"),
            (Some(u), None) => u.clone(),
            _ => format!("Measure/{}", self.id),
        }
    }

    /// Every distinct expression that population evaluation may need, in order.
    pub fn population_expressions(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for g in &self.groups {
            for p in &g.populations {
                if !out.contains(&p.expression.as_str()) {
                    out.push(&p.expression);
                }
            }
        }
        out
    }
}

fn str_at<'a>(v: &'a Json, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Json::as_str)
}

fn ext<'a>(v: &'a Json, url: &str) -> Option<&'a Json> {
    v.get("extension")?
        .as_array()?
        .iter()
        .find(|e| str_at(e, "url") == Some(url))
}

fn first_code(cc: &Json) -> Option<(&str, Option<&str>)> {
    let c = cc.get("coding")?.as_array()?.first()?;
    Some((str_at(c, "code")?, str_at(c, "display")))
}

/// Iterates the resources of a Bundle's entries (skipping entries without one).
pub fn bundle_resources(bundle: &Json) -> Result<impl Iterator<Item = &Json>> {
    if str_at(bundle, "resourceType") != Some("Bundle") {
        return Err(EcqmError::Package(
            "expected a FHIR Bundle (resourceType \"Bundle\")".into(),
        ));
    }
    let entries = match bundle.get("entry") {
        None => &[][..],
        Some(Json::Array(a)) => a.as_slice(),
        Some(_) => return Err(EcqmError::Package("Bundle.entry is not an array".into())),
    };
    Ok(entries.iter().filter_map(|e| e.get("resource")))
}

fn parse_improvement(
    cc: &Json,
    at: &str,
    warnings: &mut Vec<String>,
) -> Result<Option<ImprovementNotation>> {
    let Some((code, display)) = first_code(cc) else {
        return Ok(None);
    };
    let parsed = ImprovementNotation::parse(code).ok_or_else(|| {
        EcqmError::Package(format!("{at}: unknown improvementNotation code {code:?}"))
    })?;
    if let Some(d) = display.and_then(ImprovementNotation::parse) {
        if d != parsed {
            // A coding that says both directions states neither: treat it as absent
            // (gaps and reports then default to `increase`) and say so.
            warnings.push(format!(
                "{at}: improvementNotation code is \"{}\" but its display says \"{}\"; it is ignored and `increase` assumed (set an explicit improvement notation for the measure where that is wrong)",
                parsed.code(),
                d.code()
            ));
            return Ok(None);
        }
    }
    Ok(Some(parsed))
}

/// Parses the Measure of a measure bundle. Also checks that the main library
/// is present. Returns the definition; the engine is built separately.
pub fn parse_measure_bundle(bundle: &Json) -> Result<MeasureDef> {
    let resources: Vec<&Json> = bundle_resources(bundle)?.collect();
    let measures: Vec<&&Json> = resources
        .iter()
        .filter(|r| str_at(r, "resourceType") == Some("Measure"))
        .collect();
    let measure = match measures.as_slice() {
        [] => return Err(EcqmError::Package("the bundle holds no Measure".into())),
        [m] => **m,
        _ => {
            return Err(EcqmError::Package(format!(
                "the bundle holds {} Measures; exactly one is expected",
                measures.len()
            )))
        }
    };
    let id = str_at(measure, "id").unwrap_or("").to_string();
    let name = str_at(measure, "name")
        .map(str::to_string)
        .or_else(|| (!id.is_empty()).then(|| id.clone()))
        .ok_or_else(|| EcqmError::Package("the Measure has neither name nor id".into()))?;
    let at = format!("Measure {name}");
    let mut warnings = Vec::new();

    let main_library_url = measure
        .get("library")
        .and_then(Json::as_array)
        .and_then(|a| a.first())
        .and_then(Json::as_str)
        .ok_or_else(|| EcqmError::Package(format!("{at}: Measure.library[0] is missing")))?
        .to_string();
    let (lib_url, lib_version) = match main_library_url.split_once('|') {
        Some((u, v)) => (u, Some(v)),
        None => (main_library_url.as_str(), None),
    };
    let library = resources
        .iter()
        .find(|r| {
            str_at(r, "resourceType") == Some("Library")
                && str_at(r, "url") == Some(lib_url)
                && (lib_version.is_none() || str_at(r, "version") == lib_version)
        })
        .ok_or_else(|| {
            EcqmError::Package(format!(
                "{at}: main library {main_library_url} is not in the bundle"
            ))
        })?;
    let main_library_name = str_at(library, "name")
        .map(str::to_string)
        .or_else(|| lib_url.rsplit('/').next().map(str::to_string))
        .unwrap_or_default();

    let measure_scoring = match measure.get("scoring").and_then(first_code) {
        Some((c, _)) => Some(
            Scoring::from_code(c)
                .ok_or_else(|| EcqmError::Unsupported(format!("{at}: unknown scoring {c:?}")))?,
        ),
        None => None,
    };
    let measure_improvement = match measure.get("improvementNotation") {
        Some(cc) => parse_improvement(cc, &at, &mut warnings)?,
        None => None,
    };
    let measure_basis = ext(measure, EXT_POPULATION_BASIS)
        .and_then(|e| str_at(e, "valueCode"))
        .map(str::to_string);

    let groups_json = match measure.get("group") {
        Some(Json::Array(a)) if !a.is_empty() => a,
        _ => {
            return Err(EcqmError::Package(format!(
                "{at}: the Measure has no group"
            )))
        }
    };
    let mut groups = Vec::with_capacity(groups_json.len());
    for (gi, g) in groups_json.iter().enumerate() {
        let gid = str_at(g, "id")
            .map(str::to_string)
            .unwrap_or_else(|| format!("group-{}", gi + 1));
        let gat = format!("{at} group {gid}");
        let scoring = match ext(g, EXT_SCORING)
            .and_then(|e| e.get("valueCodeableConcept"))
            .and_then(first_code)
        {
            Some((c, _)) => Scoring::from_code(c)
                .ok_or_else(|| EcqmError::Unsupported(format!("{gat}: unknown scoring {c:?}")))?,
            None => measure_scoring.ok_or_else(|| {
                EcqmError::Package(format!("{gat}: no scoring on the group or the Measure"))
            })?,
        };
        let population_basis = ext(g, EXT_POPULATION_BASIS)
            .and_then(|e| str_at(e, "valueCode"))
            .map(str::to_string)
            .or_else(|| measure_basis.clone())
            .unwrap_or_else(|| "boolean".to_string());
        let improvement_notation =
            match ext(g, EXT_IMPROVEMENT_NOTATION).and_then(|e| e.get("valueCodeableConcept")) {
                Some(cc) => parse_improvement(cc, &gat, &mut warnings)?,
                None => measure_improvement,
            };
        let mut populations = Vec::new();
        for p in g
            .get("population")
            .and_then(Json::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            let (code, _) = p
                .get("code")
                .and_then(first_code)
                .ok_or_else(|| EcqmError::Package(format!("{gat}: a population has no code")))?;
            let code = PopulationCode::from_code(code).ok_or_else(|| {
                EcqmError::Package(format!("{gat}: unknown population code {code:?}"))
            })?;
            let expression = p
                .get("criteria")
                .and_then(|c| str_at(c, "expression"))
                .filter(|e| !e.trim().is_empty())
                .ok_or_else(|| {
                    EcqmError::Package(format!(
                        "{gat}: population {} has no criteria expression",
                        code.code()
                    ))
                })?;
            if populations.iter().any(|q: &PopulationDef| q.code == code)
                && code != PopulationCode::MeasureObservation
            {
                return Err(EcqmError::Package(format!(
                    "{gat}: population {} appears twice",
                    code.code()
                )));
            }
            populations.push(PopulationDef {
                id: str_at(p, "id").map(str::to_string),
                code,
                expression: expression.to_string(),
            });
        }
        if !populations
            .iter()
            .any(|p| p.code == PopulationCode::InitialPopulation)
        {
            return Err(EcqmError::Package(format!("{gat}: no initial-population")));
        }
        let stratifiers = g
            .get("stratifier")
            .and_then(Json::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
            .iter()
            .map(|s| StratifierDef {
                id: str_at(s, "id").map(str::to_string),
                code_text: s.get("code").and_then(|c| {
                    str_at(c, "text")
                        .or_else(|| first_code(c).map(|(code, d)| d.unwrap_or(code)))
                        .map(str::to_string)
                }),
                expression: s
                    .get("criteria")
                    .and_then(|c| str_at(c, "expression"))
                    .filter(|e| !e.trim().is_empty())
                    .map(str::to_string),
            })
            .collect();
        groups.push(GroupDef {
            id: gid,
            scoring,
            population_basis,
            improvement_notation,
            populations,
            stratifiers,
        });
    }

    let mut supplemental_data = Vec::new();
    for (i, s) in measure
        .get("supplementalData")
        .and_then(Json::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .enumerate()
    {
        let expression = s
            .get("criteria")
            .and_then(|c| str_at(c, "expression"))
            .filter(|e| !e.trim().is_empty())
            .ok_or_else(|| {
                EcqmError::Package(format!(
                    "{at}: supplementalData[{i}] has no criteria expression"
                ))
            })?;
        supplemental_data.push(SdeDef {
            id: str_at(s, "id")
                .map(str::to_string)
                .unwrap_or_else(|| format!("sde-{}", i + 1)),
            expression: expression.to_string(),
        });
    }

    let effective_period = measure.get("effectivePeriod").and_then(|p| {
        Some((
            str_at(p, "start")?.to_string(),
            str_at(p, "end")?.to_string(),
        ))
    });

    Ok(MeasureDef {
        id: if id.is_empty() { name.clone() } else { id },
        name,
        url: str_at(measure, "url").map(str::to_string),
        version: str_at(measure, "version").map(str::to_string),
        title: str_at(measure, "title").map(str::to_string),
        cms_id: measure
            .get("identifier")
            .and_then(Json::as_array)
            .and_then(|ids| {
                ids.iter()
                    .find(|i| str_at(i, "system") == Some(CMS_ID_SYSTEM))
                    .and_then(|i| str_at(i, "value"))
            })
            .map(str::to_string),
        version_specific_id: version_specific_id(measure),
        main_library_url,
        main_library_name,
        effective_period,
        groups,
        supplemental_data,
        warnings,
    })
}

/// The identifier whose type is `version-specific` (cqfm identifier-type), without a
/// `urn:uuid:` / `urn:oid:` prefix.
fn version_specific_id(measure: &Json) -> Option<String> {
    measure
        .get("identifier")?
        .as_array()?
        .iter()
        .find(|i| {
            i.get("type")
                .and_then(first_code)
                .is_some_and(|(c, _)| c == "version-specific")
        })
        .and_then(|i| str_at(i, "value"))
        .map(|v| {
            v.strip_prefix("urn:uuid:")
                .or_else(|| v.strip_prefix("urn:oid:"))
                .unwrap_or(v)
                .to_string()
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn sample_bundle() -> Json {
        json!({"resourceType":"Bundle","type":"transaction","entry":[
            {"resource":{"resourceType":"Measure","id":"M1","name":"M1","url":"http://x/Measure/M1","version":"1.0",
             "library":["http://x/Library/L1"],
             "effectivePeriod":{"start":"2025-01-01","end":"2025-12-31"},
             "scoring":{"coding":[{"code":"proportion"}]},
             "identifier":[{"system":CMS_ID_SYSTEM,"value":"999FHIR"}],
             "group":[{"id":"g1","extension":[
                {"url":EXT_POPULATION_BASIS,"valueCode":"boolean"},
                {"url":EXT_IMPROVEMENT_NOTATION,"valueCodeableConcept":{"coding":[{"code":"increase"}]}}],
               "population":[
                {"code":{"coding":[{"code":"initial-population"}]},"criteria":{"expression":"IP"}},
                {"code":{"coding":[{"code":"denominator"}]},"criteria":{"expression":"Denom"}},
                {"code":{"coding":[{"code":"numerator"}]},"criteria":{"expression":"Numer"}}],
               "stratifier":[{"id":"s1","criteria":{"expression":"Strat"}},{"id":"s2","criteria":{}}]}],
             "supplementalData":[{"id":"sde-sex","criteria":{"expression":"SDE Sex"}}]}},
            {"resource":{"resourceType":"Library","name":"L1","url":"http://x/Library/L1"}}
        ]})
    }

    #[test]
    fn parses_measure() {
        let m = parse_measure_bundle(&sample_bundle()).unwrap();
        assert_eq!(m.name, "M1");
        assert_eq!(m.main_library_name, "L1");
        assert_eq!(m.cms_id.as_deref(), Some("999FHIR"));
        assert_eq!(m.canonical(), "http://x/Measure/M1|1.0");
        assert_eq!(m.groups.len(), 1);
        let g = &m.groups[0];
        assert_eq!(g.scoring, Scoring::Proportion);
        assert_eq!(g.improvement_notation, Some(ImprovementNotation::Increase));
        assert_eq!(g.populations.len(), 3);
        assert_eq!(g.stratifiers.len(), 2);
        assert!(g.stratifiers[1].expression.is_none());
        assert_eq!(m.supplemental_data[0].expression, "SDE Sex");
        assert_eq!(m.population_expressions(), vec!["IP", "Denom", "Numer"]);
        assert!(m.warnings.is_empty());
    }

    #[test]
    fn clear_errors() {
        let not_bundle = json!({"resourceType":"Patient"});
        assert!(matches!(
            parse_measure_bundle(&not_bundle),
            Err(EcqmError::Package(_))
        ));
        let empty = json!({"resourceType":"Bundle"});
        let e = parse_measure_bundle(&empty).unwrap_err().to_string();
        assert!(e.contains("no Measure"), "{e}");

        let mut b = sample_bundle();
        b["entry"].as_array_mut().unwrap().pop();
        let e = parse_measure_bundle(&b).unwrap_err().to_string();
        assert!(e.contains("not in the bundle"), "{e}");

        let mut b = sample_bundle();
        b["entry"][0]["resource"]["group"][0]["population"][1]["criteria"] = json!({});
        let e = parse_measure_bundle(&b).unwrap_err().to_string();
        assert!(e.contains("denominator has no criteria expression"), "{e}");

        let mut b = sample_bundle();
        b["entry"][0]["resource"]["group"] = json!([]);
        assert!(parse_measure_bundle(&b).is_err());

        let mut b = sample_bundle();
        b["entry"] = json!("nope");
        assert!(parse_measure_bundle(&b).is_err());
    }

    #[test]
    fn contradictory_improvement_notation_warns() {
        let mut b = sample_bundle();
        b["entry"][0]["resource"]["group"][0]["extension"][1]["valueCodeableConcept"] =
            json!({"coding":[{"code":"decrease","display":"increase"}]});
        let m = parse_measure_bundle(&b).unwrap();
        assert_eq!(m.groups[0].improvement_notation, None);
        assert_eq!(m.warnings.len(), 1);
    }
}
