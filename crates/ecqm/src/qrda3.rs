//! QRDA Category III (aggregate eCQM results) for the CMS program years 2025 and 2026.
//!
//! One document per export, covering every measure given: the CDA header the CMS IG
//! requires (author, custodian, informationRecipient with the CMS program, legal
//! authenticator, CEHRT participant, the reporting entity's TIN), and the Measure Section
//! with the Reporting Parameters (the measurement period) and, per measure, one Measure
//! Reference and Results organizer (the measure's version-specific id) holding, per
//! population group, one Measure Data observation per population (IPOP, DENOM, DENEX,
//! NUMER, NUMEX, DENEXCEP, as the measure defines) with its aggregate count, the
//! supplemental data (sex, race, ethnicity, payer) and the strata of the group's
//! stratifiers, and one performance rate per proportion group.
//!
//! | | 2025 (CMS IG v1.1) | 2026 (CMS IG v1.0, "CMS V10") |
//! |---|---|---|
//! | QRDA III Report - CMS `.27.1.2` | `2024-12-01` | `2025-05-01` |
//! | Measure Section - CMS `.27.2.3` | `2022-05-01` | `2025-05-01` |
//! | Measure Reference and Results - CMS `.27.3.17` | `2022-05-01` | `2025-05-01` |
//! | Measure Data - CMS `.27.3.16` | `2019-05-01` | `2025-05-01` |
//! | Sex SDE | `.27.3.6`, AdministrativeGender `M`/`F` | `.27.3.6` + Sex SDE - CMS `.27.3.21`, `nullFlavor="OTH"` with a SNOMED CT translation |
//!
//! Counts come from [`MeasureAggregate`], fed with the engine's [`PatientResult`]s (the
//! same membership rules as the summary MeasureReport). Supplemental data need the
//! measure's `SDE Sex` / `SDE Race` / `SDE Ethnicity` / `SDE Payer` definitions: see
//! [`ensure_cms_sde`]. Every value set is reported in full (zero counts included), as the
//! CMS samples do; a patient whose value falls outside it (no recorded race, an unknown
//! sex, no coverage) is counted in the population but in none of that element's entries.
//!
//! The organisation identifiers default to clearly synthetic values taken from the CMS
//! sample files (TIN `123456789`, NPI `1234567893`, CEHRT id `0015EUK17H3DCM9`); set them
//! in [`Qrda3Options`] for a real submission.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use serde_json::Value as Json;

use crate::engine::PreparedMeasure;
use crate::error::{EcqmError, Result};
use crate::package::{MeasureDef, PopulationCode, Scoring};
use crate::period::Period;
use crate::populations::{Memberships, PatientResult, StratumValue};
use crate::report::{safe_id, stratum_text, Counts};

/// The CMS program (performance) year whose QRDA III implementation guide to follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProgramYear {
    /// 2025 CMS QRDA III IG (schematron v1.1): document template extension `2024-12-01`.
    Y2025,
    /// 2026 CMS QRDA III IG v1.0 (CMS V10): extension `2025-05-01`, Sex SDE - CMS.
    Y2026,
}

impl ProgramYear {
    pub const ALL: [ProgramYear; 2] = [ProgramYear::Y2025, ProgramYear::Y2026];

    pub fn parse(s: &str) -> Result<Self> {
        match s.trim() {
            "2025" => Ok(ProgramYear::Y2025),
            "2026" => Ok(ProgramYear::Y2026),
            other => Err(EcqmError::Argument(format!(
                "program year {other:?} is not offered: QRDA III is written for 2025 or 2026"
            ))),
        }
    }
    pub fn year(self) -> u32 {
        match self {
            ProgramYear::Y2025 => 2025,
            ProgramYear::Y2026 => 2026,
        }
    }
    /// `@extension` of QRDA Category III Report - CMS (2.16.840.1.113883.10.20.27.1.2).
    pub fn document_extension(self) -> &'static str {
        match self {
            ProgramYear::Y2025 => "2024-12-01",
            ProgramYear::Y2026 => "2025-05-01",
        }
    }
    fn measure_section_extension(self) -> &'static str {
        match self {
            ProgramYear::Y2025 => "2022-05-01",
            ProgramYear::Y2026 => "2025-05-01",
        }
    }
    fn measure_results_extension(self) -> &'static str {
        match self {
            ProgramYear::Y2025 => "2022-05-01",
            ProgramYear::Y2026 => "2025-05-01",
        }
    }
    fn measure_data_extension(self) -> &'static str {
        match self {
            ProgramYear::Y2025 => "2019-05-01",
            ProgramYear::Y2026 => "2025-05-01",
        }
    }
}

impl std::fmt::Display for ProgramYear {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.year())
    }
}

/// The CMS program names of the QRDA III CMS Program Name value set
/// (2.16.840.1.113883.3.249.14.101) that report eCQMs.
pub const CMS_PROGRAMS: &[&str] = &[
    "MIPS_INDIV",
    "MIPS_GROUP",
    "MIPS_VIRTUALGROUP",
    "MIPS_APMENTITY",
    "MIPS_APP1_INDIV",
    "MIPS_APP1_GROUP",
    "MIPS_APP1_APMENTITY",
    "MIPS_SUBGROUP",
    "APP_PLUS_INDIV",
    "APP_PLUS_GROUP",
    "APP_PLUS_APMENTITY",
];

/// Header settings. [`Qrda3Options::new`] fills in synthetic identifiers (from the CMS
/// sample files) that pass the CMS schematron and identify no one.
#[derive(Debug, Clone)]
pub struct Qrda3Options {
    pub year: ProgramYear,
    /// CMS program name (informationRecipient), group reporting by default.
    pub program: String,
    /// Reporting organisation (author, custodian, legal authenticator, performer).
    pub organization_name: String,
    /// The organisation's id: `root` OID and `extension`.
    pub organization_id: (String, String),
    /// Taxpayer Identification Number of the reporting group (9 digits).
    pub tin: String,
    /// NPI of the individual reporting (MIPS_INDIV, MIPS_APP1_INDIV, APP_PLUS_INDIV); the
    /// performer's NPI is `nullFlavor="NA"` for group programs.
    pub npi: String,
    /// CMS EHR Certification ID (15 alphanumeric characters).
    pub cehrt_id: String,
    /// The authoring device's software name.
    pub software_name: String,
    /// Document creation time, `YYYY-MM-DDThh:mm:ssZ` (written without a zone offset).
    pub created: String,
}

impl Qrda3Options {
    pub fn new(year: ProgramYear) -> Self {
        Qrda3Options {
            year,
            program: "MIPS_GROUP".into(),
            organization_name: "PHM Workstation Synthetic Test Practice".into(),
            // 2.16.840.1.113883.19.5: HL7's example organisation OID
            organization_id: ("2.16.840.1.113883.19.5".into(), "223344".into()),
            tin: "123456789".into(),
            npi: "1234567893".into(),
            cehrt_id: "0015EUK17H3DCM9".into(),
            software_name: format!("PHM Workstation phm-ecqm {}", crate::VERSION),
            created: crate::period::now_utc(),
        }
    }

    /// Checks the identifiers the CMS schematron checks (formats, NPI Luhn check digit,
    /// program name), so a bad setting fails before any evaluation.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(EcqmError::Argument(m));
        if !CMS_PROGRAMS.contains(&self.program.as_str()) {
            return bad(format!(
                "CMS program {:?} is not one that reports eCQMs (one of {})",
                self.program,
                CMS_PROGRAMS.join(", ")
            ));
        }
        if self.tin.len() != 9 || !self.tin.bytes().all(|b| b.is_ascii_digit()) {
            return bad(format!("TIN {:?} must be 9 digits", self.tin));
        }
        if !npi_valid(&self.npi) {
            return bad(format!(
                "NPI {:?} must be 10 digits with a valid Luhn check digit",
                self.npi
            ));
        }
        if self.cehrt_id.len() != 15 || !self.cehrt_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return bad(format!(
                "CMS EHR Certification ID {:?} must be 15 alphanumeric characters",
                self.cehrt_id
            ));
        }
        if self.organization_name.trim().is_empty() || self.organization_id.0.trim().is_empty() {
            return bad("the organisation needs a name and an id root".into());
        }
        cda_time(&self.created)?;
        Ok(())
    }

    fn individual(&self) -> bool {
        self.program.ends_with("_INDIV")
    }
}

/// NPI check digit: Luhn over `80840` + the first 9 digits.
pub fn npi_valid(npi: &str) -> bool {
    if npi.len() != 10 || !npi.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let d: Vec<u32> = npi.bytes().map(|b| u32::from(b - b'0')).collect();
    let mut sum = 24; // the 80840 prefix
    for (i, v) in d[..9].iter().rev().enumerate() {
        sum += if i % 2 == 0 {
            let x = v * 2;
            x / 10 + x % 10
        } else {
            *v
        };
    }
    (10 - sum % 10) % 10 == d[9]
}

/// `YYYY-MM-DD[Thh:mm:ss...]` → `YYYYMMDD[hhmmss]` (no zone: the CMS schematron wants
/// zone offsets everywhere or nowhere).
fn cda_time(iso: &str) -> Result<String> {
    let digits: String = iso
        .chars()
        .take_while(|c| *c != 'Z' && *c != '+' && *c != '.')
        .filter(char::is_ascii_digit)
        .collect();
    match digits.len() {
        8 | 14 => Ok(digits),
        12 => Ok(format!("{digits}00")),
        _ => Err(EcqmError::Argument(format!(
            "{iso:?} is not a date or date-time"
        ))),
    }
}

// ---------------------------------------------------------------------------
// Supplemental data

/// The four supplemental data elements QRDA III reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SdeKind {
    Sex,
    Race,
    Ethnicity,
    Payer,
}

impl SdeKind {
    pub const ALL: [SdeKind; 4] = [
        SdeKind::Sex,
        SdeKind::Race,
        SdeKind::Ethnicity,
        SdeKind::Payer,
    ];
    /// The definition name in the measure's main library.
    pub fn expression(self) -> &'static str {
        match self {
            SdeKind::Sex => "SDE Sex",
            SdeKind::Race => "SDE Race",
            SdeKind::Ethnicity => "SDE Ethnicity",
            SdeKind::Payer => "SDE Payer",
        }
    }
    fn default_id(self) -> &'static str {
        match self {
            SdeKind::Sex => "sde-sex",
            SdeKind::Race => "sde-race",
            SdeKind::Ethnicity => "sde-ethnicity",
            SdeKind::Payer => "sde-payer",
        }
    }
    /// Which element a Measure supplementalData entry is, from its expression or id.
    pub fn of(id: &str, expression: &str) -> Option<SdeKind> {
        let e = expression.to_ascii_lowercase();
        let i = id.to_ascii_lowercase();
        SdeKind::ALL.into_iter().find(|k| {
            let word = match k {
                SdeKind::Sex => "sex",
                SdeKind::Race => "race",
                SdeKind::Ethnicity => "ethnicity",
                SdeKind::Payer => "payer",
            };
            e == k.expression().to_ascii_lowercase()
                || (e.starts_with("sde") && e.contains(word))
                || i.ends_with(word)
        })
    }
    /// The reported codes, in the order they are written: `(code, display)`.
    pub fn codes(self, year: ProgramYear) -> &'static [(&'static str, &'static str)] {
        match (self, year) {
            (SdeKind::Sex, ProgramYear::Y2025) => &[("M", "Male"), ("F", "Female")],
            (SdeKind::Sex, ProgramYear::Y2026) => &[
                ("248153007", "Male (finding)"),
                ("248152002", "Female (finding)"),
            ],
            (SdeKind::Race, _) => &[
                ("1002-5", "American Indian or Alaska Native"),
                ("2028-9", "Asian"),
                ("2054-5", "Black or African American"),
                ("2076-8", "Native Hawaiian or Other Pacific Islander"),
                ("2106-3", "White"),
                ("2131-1", "Other Race"),
            ],
            (SdeKind::Ethnicity, _) => &[
                ("2135-2", "Hispanic or Latino"),
                ("2186-5", "Not Hispanic or Latino"),
            ],
            (SdeKind::Payer, _) => &[
                ("A", "Medicare"),
                ("B", "Medicaid"),
                ("C", "Private Health Insurance"),
                ("D", "Other"),
            ],
        }
    }
}

/// The codes of a cql Code / Concept / list rendering (`{code}`, `{codes:[..]}`, `[..]`).
fn codes_of(v: &Json, out: &mut Vec<String>) {
    match v {
        Json::Array(a) => a.iter().for_each(|x| codes_of(x, out)),
        Json::Object(o) => {
            if let Some(c) = o.get("code") {
                match c {
                    Json::String(s) => out.push(s.clone()),
                    other => codes_of(other, out),
                }
            }
            if let Some(cs) = o.get("codes") {
                codes_of(cs, out);
            }
            if let Some(cs) = o.get("coding") {
                codes_of(cs, out);
            }
        }
        Json::String(s) => out.push(s.clone()),
        _ => {}
    }
}

/// What QRDA III reads of a supplemental data value: the codes it carries, in order, as a JSON
/// array of strings. [`sde_codes`] gives the same for it as for the value itself, so stored
/// results keep this instead of the whole value (which carries per-patient details such as a
/// coverage period, and so would be different for every patient).
pub fn sde_value_codes(v: &Json) -> Json {
    let mut raw = Vec::new();
    codes_of(v, &mut raw);
    Json::Array(raw.into_iter().map(Json::String).collect())
}

/// The reported codes (see [`SdeKind::codes`]) one patient's SDE value counts in:
/// sex `M`/`F` (FHIR `male`/`female` too), the OMB race and ethnicity categories, and the
/// CMS payer grouping of Source of Payment Typology codes (1 Medicare, 2 Medicaid,
/// 5/6 private, anything else other).
pub fn sde_codes(kind: SdeKind, year: ProgramYear, v: &Json) -> Vec<&'static str> {
    let mut raw = Vec::new();
    codes_of(v, &mut raw);
    let mut out: Vec<&'static str> = Vec::new();
    for c in raw {
        let code: Option<&'static str> = match kind {
            SdeKind::Sex => {
                let male = matches!(c.as_str(), "M" | "male" | "248153007");
                let female = matches!(c.as_str(), "F" | "female" | "248152002");
                match (male, female, year) {
                    (true, _, ProgramYear::Y2025) => Some("M"),
                    (true, _, ProgramYear::Y2026) => Some("248153007"),
                    (_, true, ProgramYear::Y2025) => Some("F"),
                    (_, true, ProgramYear::Y2026) => Some("248152002"),
                    _ => None,
                }
            }
            SdeKind::Payer => {
                if c.is_empty() || !c.bytes().all(|b| b.is_ascii_digit()) {
                    None
                } else {
                    Some(match c.as_bytes()[0] {
                        b'1' => "A",
                        b'2' => "B",
                        b'5' | b'6' => "C",
                        _ => "D",
                    })
                }
            }
            _ => kind
                .codes(year)
                .iter()
                .find(|(k, _)| *k == c)
                .map(|(k, _)| *k),
        };
        if let Some(code) = code {
            if !out.contains(&code) {
                out.push(code);
            }
        }
    }
    // one sex per patient
    if kind == SdeKind::Sex && out.len() > 1 {
        out.clear();
    }
    out
}

/// Adds the CMS supplemental data elements to a prepared measure whose Measure resource
/// does not list them but whose main library defines them (`SDE Sex`, `SDE Race`,
/// `SDE Ethnicity`, `SDE Payer`: every CMS eCQM's library does). Fails, naming the
/// measure, when one is defined nowhere: QRDA III cannot be written without it.
pub fn ensure_cms_sde(m: &mut PreparedMeasure) -> Result<()> {
    let names = m.prepared.expression_names();
    for kind in SdeKind::ALL {
        if m.def
            .supplemental_data
            .iter()
            .any(|s| SdeKind::of(&s.id, &s.expression) == Some(kind))
        {
            continue;
        }
        if !names.iter().any(|n| n == kind.expression()) {
            return Err(EcqmError::Unsupported(format!(
                "measure {}: no supplemental data element \"{}\" (neither in the Measure nor \
                 defined in its main library); QRDA III requires sex, race, ethnicity and payer",
                m.def.name,
                kind.expression()
            )));
        }
        m.def.supplemental_data.push(crate::package::SdeDef {
            id: kind.default_id().into(),
            expression: kind.expression().into(),
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Aggregation

/// Counts of one population: the members and, per supplemental data element, per code.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PopulationAggregate {
    pub count: u64,
    pub sde: BTreeMap<SdeKind, BTreeMap<&'static str, u64>>,
}

#[derive(Debug, Clone)]
pub struct GroupAggregate {
    pub id: String,
    pub scoring: Scoring,
    /// The group's populations in Measure order (measure-observation left out):
    /// `(code, population id)`.
    pub populations: Vec<(PopulationCode, Option<String>)>,
    pub counts: BTreeMap<PopulationCode, PopulationAggregate>,
    /// `(stratifier id, stratum text)` → population counts.
    pub strata: BTreeMap<(String, String), Counts>,
}

impl GroupAggregate {
    pub fn count(&self, code: PopulationCode) -> u64 {
        self.counts.get(&code).map_or(0, |p| p.count)
    }
    /// As a report [`Counts`] (for the performance rate).
    pub fn as_counts(&self) -> Counts {
        Counts(
            self.populations
                .iter()
                .map(|(c, _)| (*c, self.count(*c)))
                .collect(),
        )
    }
}

/// One measure's aggregate over the patients added, as QRDA III reports it.
#[derive(Debug, Clone)]
pub struct MeasureAggregate {
    pub name: String,
    pub title: String,
    /// The version-specific measure id (`externalDocument/id/@extension`).
    pub version_specific_id: String,
    /// supplemental data id → element
    sde_ids: Vec<(String, SdeKind)>,
    pub groups: Vec<GroupAggregate>,
    pub patients: u64,
    year: ProgramYear,
}

impl MeasureAggregate {
    /// An empty aggregate. Fails when the measure has no version-specific identifier or
    /// lacks one of the four supplemental data elements (see [`ensure_cms_sde`]).
    pub fn new(def: &MeasureDef, year: ProgramYear) -> Result<Self> {
        let vsid = def.version_specific_id.clone().ok_or_else(|| {
            EcqmError::Package(format!(
                "measure {}: no version-specific identifier, which QRDA III reports as the measure id",
                def.name
            ))
        })?;
        let sde_ids: Vec<(String, SdeKind)> = def
            .supplemental_data
            .iter()
            .filter_map(|s| SdeKind::of(&s.id, &s.expression).map(|k| (s.id.clone(), k)))
            .collect();
        for kind in SdeKind::ALL {
            if !sde_ids.iter().any(|(_, k)| *k == kind) {
                return Err(EcqmError::Unsupported(format!(
                    "measure {}: no supplemental data element for {kind:?}; QRDA III requires \
                     sex, race, ethnicity and payer",
                    def.name
                )));
            }
        }
        Ok(MeasureAggregate {
            name: def.name.clone(),
            title: def
                .title
                .clone()
                .unwrap_or_else(|| def.name.clone())
                .trim()
                .to_string(),
            version_specific_id: vsid,
            sde_ids,
            groups: def
                .groups
                .iter()
                .map(|g| GroupAggregate {
                    id: g.id.clone(),
                    scoring: g.scoring,
                    populations: g
                        .populations
                        .iter()
                        .filter(|p| qrda_population_code(p.code).is_some())
                        .map(|p| (p.code, p.id.clone()))
                        .collect(),
                    counts: BTreeMap::new(),
                    strata: BTreeMap::new(),
                })
                .collect(),
            patients: 0,
            year,
        })
    }

    /// Adds one patient's result (evaluated with supplemental data and stratifiers).
    pub fn add(&mut self, r: &PatientResult) {
        self.patients += 1;
        let sde: Vec<(SdeKind, Vec<&'static str>)> = self
            .sde_ids
            .iter()
            .filter_map(|(id, kind)| {
                let v = r.sde.iter().find(|(i, _)| i == id)?;
                Some((*kind, sde_codes(*kind, self.year, &v.1)))
            })
            .collect();
        for g in &mut self.groups {
            if let Some(res) = r.groups.iter().find(|x| x.id == g.id) {
                add_group(g, &res.populations, &res.strata, &sde);
            }
        }
    }

    /// Adds one patient from stored parts (as the EDW keeps them): a group's memberships,
    /// its strata, and the patient's supplemental data by SDE id.
    pub fn add_stored(
        &mut self,
        group_id: &str,
        populations: &Memberships,
        strata: &[StratumValue],
        sde: &[(String, Json)],
    ) {
        let codes: Vec<(SdeKind, Vec<&'static str>)> = self
            .sde_ids
            .iter()
            .filter_map(|(id, kind)| {
                let v = sde.iter().find(|(i, _)| i == id)?;
                Some((*kind, sde_codes(*kind, self.year, &v.1)))
            })
            .collect();
        if let Some(g) = self.groups.iter_mut().find(|g| g.id == group_id) {
            add_group(g, populations, strata, &codes);
        }
    }
}

fn add_group(
    g: &mut GroupAggregate,
    pops: &Memberships,
    strata: &[StratumValue],
    sde: &[(SdeKind, Vec<&'static str>)],
) {
    for (code, member) in &pops.0 {
        if !*member || !g.populations.iter().any(|(c, _)| c == code) {
            continue;
        }
        let p = g.counts.entry(*code).or_default();
        p.count += 1;
        for (kind, codes) in sde {
            let m = p.sde.entry(*kind).or_default();
            for c in codes {
                *m.entry(c).or_default() += 1;
            }
        }
    }
    for s in strata {
        let c = g
            .strata
            .entry((s.stratifier.clone(), stratum_text(&s.value)))
            .or_default();
        for (code, member) in &pops.0 {
            *c.0.entry(*code).or_default() += u64::from(*member);
        }
    }
}

/// The QRDA population code (PopulationInclusionObservationType), `None` for
/// measure-observation.
pub fn qrda_population_code(c: PopulationCode) -> Option<&'static str> {
    use PopulationCode::*;
    Some(match c {
        InitialPopulation => "IPOP",
        Denominator => "DENOM",
        DenominatorExclusion => "DENEX",
        DenominatorException => "DENEXCEP",
        Numerator => "NUMER",
        NumeratorExclusion => "NUMEX",
        MeasurePopulation => "MSRPOPL",
        MeasurePopulationExclusion => "MSRPOPLEX",
        MeasureObservation => return None,
    })
}

// ---------------------------------------------------------------------------
// Writing

/// A deterministic UUID (version-4 layout) from parts.
fn uuid(parts: &[&str]) -> String {
    let h = safe_id(parts);
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
    .to_ascii_uppercase()
}

/// Thin layer over quick-xml's writer: every tag and attribute goes through it (escaping,
/// well-formedness); nothing is concatenated by hand.
struct Xml<W: Write> {
    w: quick_xml::Writer<W>,
}

type Attrs<'a> = &'a [(&'a str, &'a str)];

impl<W: Write> Xml<W> {
    fn start(&mut self, name: &str, attrs: Attrs) -> std::io::Result<()> {
        self.w.write_event(Event::Start(
            BytesStart::new(name).with_attributes(attrs.iter().copied()),
        ))
    }
    fn end(&mut self, name: &str) -> std::io::Result<()> {
        self.w.write_event(Event::End(BytesEnd::new(name)))
    }
    fn empty(&mut self, name: &str, attrs: Attrs) -> std::io::Result<()> {
        self.w.write_event(Event::Empty(
            BytesStart::new(name).with_attributes(attrs.iter().copied()),
        ))
    }
    fn text(&mut self, name: &str, attrs: Attrs, text: &str) -> std::io::Result<()> {
        self.start(name, attrs)?;
        self.w.write_event(Event::Text(BytesText::new(text)))?;
        self.end(name)
    }
    fn template(&mut self, root: &str, ext: Option<&str>) -> std::io::Result<()> {
        match ext {
            Some(e) => self.empty("templateId", &[("root", root), ("extension", e)]),
            None => self.empty("templateId", &[("root", root)]),
        }
    }
}

const ACT_CODE: &str = "2.16.840.1.113883.5.4";
const LOINC: &str = "2.16.840.1.113883.6.1";
const SNOMED: &str = "2.16.840.1.113883.6.96";
const CDC_RACE: &str = "2.16.840.1.113883.6.238";

/// Writes the QRDA III document for `measures` over `period`. Fails on an empty measure
/// list, on a measure with no patients, and on bad options.
pub fn write_qrda3<W: Write>(
    out: W,
    measures: &[MeasureAggregate],
    period: &Period,
    opts: &Qrda3Options,
) -> Result<()> {
    opts.validate()?;
    if measures.is_empty() {
        return Err(EcqmError::Argument(
            "QRDA III needs at least one measure".into(),
        ));
    }
    for m in measures {
        if m.patients == 0 {
            return Err(EcqmError::Argument(format!(
                "measure {}: no patients were evaluated; refusing to report empty results",
                m.name
            )));
        }
    }
    let mut x = Xml {
        w: quick_xml::Writer::new_with_indent(out, b' ', 1),
    };
    write_document(&mut x, measures, period, opts).map_err(|e| EcqmError::Io {
        path: "QRDA III output".into(),
        source: e,
    })?;
    x.w.get_mut().flush().map_err(|e| EcqmError::Io {
        path: "QRDA III output".into(),
        source: e,
    })
}

fn write_document<W: Write>(
    x: &mut Xml<W>,
    measures: &[MeasureAggregate],
    period: &Period,
    o: &Qrda3Options,
) -> std::io::Result<()> {
    let bad = |e: EcqmError| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string());
    let created = cda_time(&o.created).map_err(bad)?;
    let low = cda_time(period.start_date()).map_err(bad)?;
    let high = cda_time(period.end_date()).map_err(bad)?;
    let ids: Vec<&str> = measures
        .iter()
        .map(|m| m.version_specific_id.as_str())
        .collect();
    let doc_key = [ids.join(","), o.created.clone(), period.start.clone()];
    let doc_key: Vec<&str> = doc_key.iter().map(String::as_str).collect();
    let (org_root, org_ext) = (&o.organization_id.0, &o.organization_id.1);

    x.w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    x.start(
        "ClinicalDocument",
        &[
            ("xmlns", "urn:hl7-org:v3"),
            ("xmlns:xsi", "http://www.w3.org/2001/XMLSchema-instance"),
        ],
    )?;
    x.empty("realmCode", &[("code", "US")])?;
    x.empty(
        "typeId",
        &[
            ("root", "2.16.840.1.113883.1.3"),
            ("extension", "POCD_HD000040"),
        ],
    )?;
    x.template("2.16.840.1.113883.10.20.27.1.1", Some("2020-12-01"))?;
    x.template(
        "2.16.840.1.113883.10.20.27.1.2",
        Some(o.year.document_extension()),
    )?;
    x.empty(
        "id",
        &[("root", &uuid(&[&["document"], &doc_key[..]].concat()))],
    )?;
    x.empty(
        "code",
        &[
            ("code", "55184-6"),
            ("codeSystem", LOINC),
            ("codeSystemName", "LOINC"),
            (
                "displayName",
                "Quality Reporting Document Architecture Calculated Summary Report",
            ),
        ],
    )?;
    x.text(
        "title",
        &[],
        &format!(
            "QRDA Category III Report, CMS program year {} ({} measure{})",
            o.year,
            measures.len(),
            if measures.len() == 1 { "" } else { "s" }
        ),
    )?;
    x.empty("effectiveTime", &[("value", &created)])?;
    x.empty(
        "confidentialityCode",
        &[("codeSystem", "2.16.840.1.113883.5.25"), ("code", "N")],
    )?;
    x.empty("languageCode", &[("code", "en")])?;
    x.empty("versionNumber", &[("value", "1")])?;
    x.start("recordTarget", &[])?;
    x.start("patientRole", &[])?;
    x.empty("id", &[("nullFlavor", "NA")])?;
    x.end("patientRole")?;
    x.end("recordTarget")?;

    let organization = |x: &mut Xml<W>, tag: &str| -> std::io::Result<()> {
        x.start(tag, &[])?;
        x.empty("id", &[("root", org_root), ("extension", org_ext)])?;
        x.text("name", &[], &o.organization_name)?;
        x.end(tag)
    };
    // author: the device that produced the file
    x.start("author", &[])?;
    x.empty("time", &[("value", &created)])?;
    x.start("assignedAuthor", &[])?;
    x.empty(
        "id",
        &[("root", &uuid(&["author-device", &o.software_name]))],
    )?;
    x.start("assignedAuthoringDevice", &[])?;
    x.text("softwareName", &[], &o.software_name)?;
    x.end("assignedAuthoringDevice")?;
    organization(x, "representedOrganization")?;
    x.end("assignedAuthor")?;
    x.end("author")?;
    // custodian
    x.start("custodian", &[])?;
    x.start("assignedCustodian", &[])?;
    organization(x, "representedCustodianOrganization")?;
    x.end("assignedCustodian")?;
    x.end("custodian")?;
    // the CMS program
    x.start("informationRecipient", &[])?;
    x.start("intendedRecipient", &[])?;
    x.empty(
        "id",
        &[
            ("root", "2.16.840.1.113883.3.249.7"),
            ("extension", &o.program),
        ],
    )?;
    x.end("intendedRecipient")?;
    x.end("informationRecipient")?;
    // legal authenticator
    x.start("legalAuthenticator", &[])?;
    x.empty("time", &[("value", &created)])?;
    x.empty("signatureCode", &[("code", "S")])?;
    x.start("assignedEntity", &[])?;
    x.empty(
        "id",
        &[("root", &uuid(&["legal-authenticator", org_root, org_ext]))],
    )?;
    organization(x, "representedOrganization")?;
    x.end("assignedEntity")?;
    x.end("legalAuthenticator")?;
    // CMS EHR Certification ID
    x.start("participant", &[("typeCode", "DEV")])?;
    x.start("associatedEntity", &[("classCode", "RGPR")])?;
    x.empty(
        "id",
        &[
            ("root", "2.16.840.1.113883.3.2074.1"),
            ("extension", &o.cehrt_id),
        ],
    )?;
    x.empty(
        "code",
        &[
            ("code", "129465004"),
            ("displayName", "medical record, device"),
            ("codeSystem", SNOMED),
            ("codeSystemName", "SNOMED-CT"),
        ],
    )?;
    x.end("associatedEntity")?;
    x.end("participant")?;
    // the reporting entity: TIN (and the NPI for individual reporting)
    x.start("documentationOf", &[("typeCode", "DOC")])?;
    x.start("serviceEvent", &[("classCode", "PCPR")])?;
    x.start("effectiveTime", &[])?;
    x.empty("low", &[("value", &low)])?;
    x.empty("high", &[("value", &high)])?;
    x.end("effectiveTime")?;
    x.start("performer", &[("typeCode", "PRF")])?;
    x.start("assignedEntity", &[])?;
    if o.individual() {
        x.empty(
            "id",
            &[("root", "2.16.840.1.113883.4.6"), ("extension", &o.npi)],
        )?;
    } else {
        x.empty(
            "id",
            &[("root", "2.16.840.1.113883.4.6"), ("nullFlavor", "NA")],
        )?;
    }
    x.start("representedOrganization", &[])?;
    x.empty(
        "id",
        &[("root", "2.16.840.1.113883.4.2"), ("extension", &o.tin)],
    )?;
    x.text("name", &[], &o.organization_name)?;
    x.end("representedOrganization")?;
    x.end("assignedEntity")?;
    x.end("performer")?;
    x.end("serviceEvent")?;
    x.end("documentationOf")?;

    x.start("component", &[])?;
    x.start("structuredBody", &[])?;
    x.start("component", &[])?;
    x.start("section", &[])?;
    x.template("2.16.840.1.113883.10.20.24.2.2", None)?;
    x.template("2.16.840.1.113883.10.20.27.2.1", Some("2020-12-01"))?;
    x.template(
        "2.16.840.1.113883.10.20.27.2.3",
        Some(o.year.measure_section_extension()),
    )?;
    x.empty(
        "code",
        &[
            ("code", "55186-1"),
            ("codeSystem", LOINC),
            ("displayName", "measure section"),
        ],
    )?;
    x.text("title", &[], "Measure Section")?;
    write_narrative(x, measures, period)?;
    // Reporting Parameters Act: the performance period
    x.start("entry", &[("typeCode", "DRIV")])?;
    x.start("act", &[("classCode", "ACT"), ("moodCode", "EVN")])?;
    x.template("2.16.840.1.113883.10.20.17.3.8", Some("2020-12-01"))?;
    x.empty(
        "id",
        &[(
            "root",
            &uuid(&[&["reporting-parameters"], &doc_key[..]].concat()),
        )],
    )?;
    x.empty(
        "code",
        &[
            ("code", "252116004"),
            ("codeSystem", SNOMED),
            ("displayName", "Observation Parameters"),
        ],
    )?;
    x.start("effectiveTime", &[])?;
    x.empty("low", &[("value", &low)])?;
    x.empty("high", &[("value", &high)])?;
    x.end("effectiveTime")?;
    x.end("act")?;
    x.end("entry")?;
    for m in measures {
        write_measure(x, m, o.year, &doc_key)?;
    }
    x.end("section")?;
    x.end("component")?;
    x.end("structuredBody")?;
    x.end("component")?;
    x.end("ClinicalDocument")?;
    Ok(())
}

fn write_narrative<W: Write>(
    x: &mut Xml<W>,
    measures: &[MeasureAggregate],
    period: &Period,
) -> std::io::Result<()> {
    x.start("text", &[])?;
    x.start("table", &[("border", "1"), ("width", "100%")])?;
    x.start("tbody", &[])?;
    x.start("tr", &[])?;
    x.text(
        "th",
        &[],
        &format!(
            "Reporting Period: {} - {}",
            period.start_date(),
            period.end_date()
        ),
    )?;
    x.end("tr")?;
    x.end("tbody")?;
    x.end("table")?;
    for m in measures {
        x.start("table", &[("border", "1"), ("width", "100%")])?;
        x.start("thead", &[])?;
        x.start("tr", &[])?;
        x.text("th", &[], "eCQM Title")?;
        x.text("th", &[], "Version specific identifier")?;
        x.end("tr")?;
        x.end("thead")?;
        x.start("tbody", &[])?;
        x.start("tr", &[])?;
        x.text("td", &[], &m.title)?;
        x.text("td", &[], &m.version_specific_id)?;
        x.end("tr")?;
        x.end("tbody")?;
        x.end("table")?;
        x.start("list", &[])?;
        for (gi, g) in m.groups.iter().enumerate() {
            for (code, _) in &g.populations {
                x.text(
                    "item",
                    &[],
                    &format!(
                        "Population criteria {} - {}: {}",
                        gi + 1,
                        code.display(),
                        g.count(*code)
                    ),
                )?;
            }
        }
        x.end("list")?;
    }
    x.end("text")
}

fn aggregate_count<W: Write>(x: &mut Xml<W>, n: u64) -> std::io::Result<()> {
    x.start(
        "entryRelationship",
        &[("typeCode", "SUBJ"), ("inversionInd", "true")],
    )?;
    x.start("observation", &[("classCode", "OBS"), ("moodCode", "EVN")])?;
    x.template("2.16.840.1.113883.10.20.27.3.3", None)?;
    x.empty(
        "code",
        &[
            ("code", "MSRAGG"),
            ("codeSystem", ACT_CODE),
            ("codeSystemName", "ActCode"),
            ("displayName", "rate aggregation"),
        ],
    )?;
    x.empty("value", &[("xsi:type", "INT"), ("value", &n.to_string())])?;
    x.empty(
        "methodCode",
        &[
            ("code", "COUNT"),
            ("codeSystem", "2.16.840.1.113883.5.84"),
            ("codeSystemName", "ObservationMethod"),
            ("displayName", "Count"),
        ],
    )?;
    x.end("observation")?;
    x.end("entryRelationship")
}

fn population_id(
    m: &MeasureAggregate,
    g: &GroupAggregate,
    code: PopulationCode,
    id: &Option<String>,
) -> String {
    id.clone()
        .unwrap_or_else(|| uuid(&["population", &m.version_specific_id, &g.id, code.code()]))
}

fn write_measure<W: Write>(
    x: &mut Xml<W>,
    m: &MeasureAggregate,
    year: ProgramYear,
    doc_key: &[&str],
) -> std::io::Result<()> {
    x.start("entry", &[])?;
    x.start(
        "organizer",
        &[("classCode", "CLUSTER"), ("moodCode", "EVN")],
    )?;
    x.template("2.16.840.1.113883.10.20.24.3.98", None)?;
    x.template("2.16.840.1.113883.10.20.27.3.1", Some("2020-12-01"))?;
    x.template(
        "2.16.840.1.113883.10.20.27.3.17",
        Some(year.measure_results_extension()),
    )?;
    x.empty(
        "id",
        &[(
            "root",
            &uuid(&[&["measure", &m.version_specific_id], doc_key].concat()),
        )],
    )?;
    x.empty("statusCode", &[("code", "completed")])?;
    x.start("reference", &[("typeCode", "REFR")])?;
    x.start(
        "externalDocument",
        &[("classCode", "DOC"), ("moodCode", "EVN")],
    )?;
    x.empty(
        "id",
        &[
            ("root", "2.16.840.1.113883.4.738"),
            ("extension", &m.version_specific_id),
        ],
    )?;
    x.empty(
        "code",
        &[
            ("code", "57024-2"),
            ("codeSystem", LOINC),
            ("codeSystemName", "LOINC"),
            ("displayName", "Health Quality Measure Document"),
        ],
    )?;
    x.text("text", &[], &m.title)?;
    x.end("externalDocument")?;
    x.end("reference")?;
    for g in &m.groups {
        if g.scoring == Scoring::Proportion {
            write_performance_rate(x, m, g)?;
        }
        for (code, id) in &g.populations {
            write_measure_data(x, m, g, *code, id, year)?;
        }
    }
    x.end("organizer")?;
    x.end("entry")
}

fn write_performance_rate<W: Write>(
    x: &mut Xml<W>,
    m: &MeasureAggregate,
    g: &GroupAggregate,
) -> std::io::Result<()> {
    let Some((_, numer_id)) = g
        .populations
        .iter()
        .find(|(c, _)| *c == PopulationCode::Numerator)
    else {
        return Ok(());
    };
    let numer_id = population_id(m, g, PopulationCode::Numerator, numer_id);
    x.start("component", &[])?;
    x.start("observation", &[("classCode", "OBS"), ("moodCode", "EVN")])?;
    x.template("2.16.840.1.113883.10.20.27.3.14", Some("2020-12-01"))?;
    x.template("2.16.840.1.113883.10.20.27.3.25", Some("2022-05-01"))?;
    x.empty(
        "code",
        &[
            ("code", "72510-1"),
            ("codeSystem", LOINC),
            ("codeSystemName", "LOINC"),
            ("displayName", "Performance Rate"),
        ],
    )?;
    x.empty("statusCode", &[("code", "completed")])?;
    match g.as_counts().proportion() {
        Some(r) => x.empty("value", &[("xsi:type", "REAL"), ("value", &format_rate(r))])?,
        None => x.empty("value", &[("xsi:type", "REAL"), ("nullFlavor", "NA")])?,
    }
    x.start("reference", &[("typeCode", "REFR")])?;
    x.start(
        "externalObservation",
        &[("classCode", "OBS"), ("moodCode", "EVN")],
    )?;
    x.empty("id", &[("root", &numer_id)])?;
    x.empty(
        "code",
        &[
            ("code", "NUMER"),
            ("displayName", "Numerator"),
            ("codeSystem", ACT_CODE),
            ("codeSystemName", "ActCode"),
        ],
    )?;
    x.end("externalObservation")?;
    x.end("reference")?;
    x.end("observation")?;
    x.end("component")
}

/// A rate in [0, 1] with at most 6 decimals, trailing zeros dropped (`0.5`, `1`, `0.333333`).
pub fn format_rate(r: f64) -> String {
    let s = format!("{:.6}", r.clamp(0.0, 1.0));
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() {
        "0".into()
    } else {
        s.to_string()
    }
}

fn write_measure_data<W: Write>(
    x: &mut Xml<W>,
    m: &MeasureAggregate,
    g: &GroupAggregate,
    code: PopulationCode,
    id: &Option<String>,
    year: ProgramYear,
) -> std::io::Result<()> {
    let Some(qcode) = qrda_population_code(code) else {
        return Ok(());
    };
    let empty = PopulationAggregate::default();
    let p = g.counts.get(&code).unwrap_or(&empty);
    let pid = population_id(m, g, code, id);
    x.start("component", &[])?;
    x.start("observation", &[("classCode", "OBS"), ("moodCode", "EVN")])?;
    x.template("2.16.840.1.113883.10.20.27.3.5", Some("2016-09-01"))?;
    x.template(
        "2.16.840.1.113883.10.20.27.3.16",
        Some(year.measure_data_extension()),
    )?;
    x.empty(
        "code",
        &[
            ("code", "ASSERTION"),
            ("codeSystem", ACT_CODE),
            ("codeSystemName", "ActCode"),
            ("displayName", "Assertion"),
        ],
    )?;
    x.empty("statusCode", &[("code", "completed")])?;
    x.empty(
        "value",
        &[
            ("xsi:type", "CD"),
            ("code", qcode),
            ("codeSystem", ACT_CODE),
            ("codeSystemName", "ActCode"),
        ],
    )?;
    aggregate_count(x, p.count)?;
    for kind in SdeKind::ALL {
        let counts = p.sde.get(&kind);
        for (c, display) in kind.codes(year) {
            let n = counts.and_then(|m| m.get(c)).copied().unwrap_or(0);
            write_sde(x, kind, c, display, n, year, &[&pid, c])?;
        }
    }
    // strata of the group's stratifiers, for this population
    for ((sid, value), counts) in &g.strata {
        // boolean stratifiers (the eCQM convention): the stratum is the patients for whom
        // the criterion is true
        if value == "false" || value == "null" {
            continue;
        }
        let n = counts.0.get(&code).copied().unwrap_or(0);
        let sref = if value == "true" {
            sid.clone()
        } else {
            uuid(&["stratum", sid, value])
        };
        x.start("entryRelationship", &[("typeCode", "COMP")])?;
        x.start("observation", &[("classCode", "OBS"), ("moodCode", "EVN")])?;
        x.template("2.16.840.1.113883.10.20.27.3.4", None)?;
        x.empty(
            "code",
            &[
                ("code", "ASSERTION"),
                ("codeSystem", ACT_CODE),
                ("codeSystemName", "ActCode"),
                ("displayName", "Assertion"),
            ],
        )?;
        x.empty("statusCode", &[("code", "completed")])?;
        x.start("value", &[("xsi:type", "CD"), ("nullFlavor", "OTH")])?;
        x.text("originalText", &[], &format!("Stratum {sid}: {value}"))?;
        x.end("value")?;
        aggregate_count(x, n)?;
        x.start("reference", &[("typeCode", "REFR")])?;
        x.start(
            "externalObservation",
            &[("classCode", "OBS"), ("moodCode", "EVN")],
        )?;
        x.empty("id", &[("root", &sref)])?;
        x.end("externalObservation")?;
        x.end("reference")?;
        x.end("observation")?;
        x.end("entryRelationship")?;
    }
    x.start("reference", &[("typeCode", "REFR")])?;
    x.start(
        "externalObservation",
        &[("classCode", "OBS"), ("moodCode", "EVN")],
    )?;
    x.empty("id", &[("root", &pid)])?;
    x.end("externalObservation")?;
    x.end("reference")?;
    x.end("observation")?;
    x.end("component")
}

fn write_sde<W: Write>(
    x: &mut Xml<W>,
    kind: SdeKind,
    code: &str,
    display: &str,
    n: u64,
    year: ProgramYear,
    key: &[&str],
) -> std::io::Result<()> {
    x.start("entryRelationship", &[("typeCode", "COMP")])?;
    x.start("observation", &[("classCode", "OBS"), ("moodCode", "EVN")])?;
    let (loinc, loinc_name) = match kind {
        SdeKind::Sex => {
            x.template("2.16.840.1.113883.10.20.27.3.6", Some("2016-09-01"))?;
            if year == ProgramYear::Y2026 {
                x.template("2.16.840.1.113883.10.20.27.3.21", Some("2025-05-01"))?;
            }
            ("76689-9", "Sex assigned at birth")
        }
        SdeKind::Ethnicity => {
            x.template("2.16.840.1.113883.10.20.27.3.7", Some("2016-09-01"))?;
            ("69490-1", "Ethnic")
        }
        SdeKind::Race => {
            x.template("2.16.840.1.113883.10.20.27.3.8", Some("2016-09-01"))?;
            ("72826-1", "Race")
        }
        SdeKind::Payer => {
            x.template("2.16.840.1.113883.10.20.27.3.9", Some("2016-02-01"))?;
            x.template("2.16.840.1.113883.10.20.27.3.18", Some("2018-05-01"))?;
            ("48768-6", "Payment Source")
        }
    };
    let kind_name = format!("{kind:?}");
    x.empty(
        "id",
        &[("root", &uuid(&[&["sde", &kind_name], key].concat()))],
    )?;
    x.empty(
        "code",
        &[
            ("code", loinc),
            ("codeSystem", LOINC),
            ("codeSystemName", "LOINC"),
            ("displayName", loinc_name),
        ],
    )?;
    x.empty("statusCode", &[("code", "completed")])?;
    match (kind, year) {
        (SdeKind::Sex, ProgramYear::Y2025) => x.empty(
            "value",
            &[
                ("xsi:type", "CD"),
                ("code", code),
                ("codeSystem", "2.16.840.1.113883.5.1"),
                ("codeSystemName", "AdministrativeGender"),
                ("displayName", display),
            ],
        )?,
        (SdeKind::Sex, ProgramYear::Y2026) | (SdeKind::Payer, _) => {
            let (system, system_name) = if kind == SdeKind::Sex {
                (SNOMED, "SNOMED CT")
            } else {
                ("2.16.840.1.113883.3.249.12", "CMS Clinical Codes")
            };
            x.start("value", &[("xsi:type", "CD"), ("nullFlavor", "OTH")])?;
            x.empty(
                "translation",
                &[
                    ("code", code),
                    ("displayName", display),
                    ("codeSystem", system),
                    ("codeSystemName", system_name),
                ],
            )?;
            x.end("value")?;
        }
        _ => x.empty(
            "value",
            &[
                ("xsi:type", "CD"),
                ("code", code),
                ("codeSystem", CDC_RACE),
                ("codeSystemName", "Race & Ethnicity - CDC"),
                ("displayName", display),
            ],
        )?,
    }
    aggregate_count(x, n)?;
    x.end("observation")?;
    x.end("entryRelationship")
}

// ---------------------------------------------------------------------------
// Files

/// Fails unless a file can be created next to `path` (the directory exists and is
/// writable, `path` is not a directory): checked before any evaluation.
pub fn check_writable(path: &Path) -> Result<()> {
    if path.as_os_str().is_empty() {
        return Err(EcqmError::Argument("empty output path".into()));
    }
    if path.is_dir() {
        return Err(EcqmError::Argument(format!(
            "{}: is a directory, not a file",
            path.display()
        )));
    }
    let tmp = temp_path(path);
    std::fs::File::create(&tmp).map_err(|e| EcqmError::io(path, e))?;
    let _ = std::fs::remove_file(&tmp);
    Ok(())
}

fn temp_path(path: &Path) -> PathBuf {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "qrda3.xml".into());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    dir.join(format!(".{name}.{}.{nanos}.tmp", std::process::id()))
}

/// Writes `path` atomically: the document goes to a temporary file in the same directory,
/// is flushed and synced, then renamed into place. On any error nothing is left behind
/// (and an existing file at `path` is untouched).
pub fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<&std::fs::File>) -> Result<()>,
) -> Result<()> {
    if path.is_dir() {
        return Err(EcqmError::Argument(format!(
            "{}: is a directory, not a file",
            path.display()
        )));
    }
    let tmp = temp_path(path);
    let file = std::fs::File::create(&tmp).map_err(|e| EcqmError::io(path, e))?;
    let result = (|| {
        {
            let mut w = std::io::BufWriter::with_capacity(1 << 20, &file);
            write(&mut w)?;
            w.flush().map_err(|e| EcqmError::io(path, e))?;
        }
        file.sync_all().map_err(|e| EcqmError::io(path, e))?;
        std::fs::rename(&tmp, path).map_err(|e| EcqmError::io(path, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// [`write_qrda3`] to a file, atomically. Returns the number of bytes written.
pub fn write_qrda3_file(
    path: &Path,
    measures: &[MeasureAggregate],
    period: &Period,
    opts: &Qrda3Options,
) -> Result<u64> {
    write_atomically(path, |w| write_qrda3(w, measures, period, opts))?;
    Ok(std::fs::metadata(path).map(|m| m.len()).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn npi_and_rates() {
        assert!(npi_valid("1234567893"));
        assert!(!npi_valid("1234567890"));
        assert!(!npi_valid("123456789"));
        assert_eq!(format_rate(0.5), "0.5");
        assert_eq!(format_rate(1.0), "1");
        assert_eq!(format_rate(0.0), "0");
        assert_eq!(format_rate(1.0 / 3.0), "0.333333");
        assert_eq!(cda_time("2026-01-15T08:09:10Z").unwrap(), "20260115080910");
        assert_eq!(cda_time("2025-12-31").unwrap(), "20251231");
        assert!(cda_time("soon").is_err());
    }

    #[test]
    fn sde_mapping() {
        let y = ProgramYear::Y2026;
        let sex = json!({"code":"F","system":"http://hl7.org/fhir/administrative-gender"});
        assert_eq!(sde_codes(SdeKind::Sex, y, &sex), ["248152002"]);
        assert_eq!(sde_codes(SdeKind::Sex, ProgramYear::Y2025, &sex), ["F"]);
        assert!(sde_codes(SdeKind::Sex, y, &Json::Null).is_empty());
        let race = json!({"codes":[{"code":"2028-9"},{"code":"2106-3"},{"code":"9999-9"}]});
        assert_eq!(sde_codes(SdeKind::Race, y, &race), ["2028-9", "2106-3"]);
        let payer = json!([{"code":{"codes":[{"code":"1","system":"https://nahdo.org/sopt"}]}},
                           {"code":{"codes":[{"code":"59"}]}}, {"code":{"codes":[{"code":"99"}]}}]);
        assert_eq!(sde_codes(SdeKind::Payer, y, &payer), ["A", "C", "D"]);
        assert!(sde_codes(SdeKind::Payer, y, &json!([])).is_empty());
    }

    #[test]
    fn an_sde_value_and_its_codes_count_the_same() {
        let values = [
            json!({"code": "F", "system": "http://hl7.org/fhir/administrative-gender"}),
            json!("male"),
            json!([{"code": {"code": "2106-3", "system": "urn:oid:2.16.840.1.113883.6.238"}}]),
            json!({"codes": [{"code": "2135-2"}, {"code": "2186-5"}], "display": "x"}),
            json!([
                {"code": {"code": "1", "system": "sop"}, "period": {"low": "2025-01-01"}},
                {"code": {"code": "511"}, "period": {"low": "2024-03-01"}}
            ]),
            json!({"coding": [{"code": "248152002"}, {"code": "F"}]}),
            json!(null),
        ];
        for v in &values {
            let codes = sde_value_codes(v);
            for kind in SdeKind::ALL {
                for year in [ProgramYear::Y2025, ProgramYear::Y2026] {
                    assert_eq!(
                        sde_codes(kind, year, &codes),
                        sde_codes(kind, year, v),
                        "{v}"
                    );
                }
            }
        }
        assert_eq!(sde_value_codes(&values[4]), json!(["1", "511"]));
    }

    #[test]
    fn options_are_checked() {
        let mut o = Qrda3Options::new(ProgramYear::Y2025);
        o.validate().unwrap();
        o.npi = "1234567890".into();
        assert!(o.validate().unwrap_err().to_string().contains("Luhn"));
        let mut o = Qrda3Options::new(ProgramYear::Y2025);
        o.program = "NOPE".into();
        assert!(o.validate().is_err());
        let mut o = Qrda3Options::new(ProgramYear::Y2025);
        o.tin = "12345".into();
        assert!(o.validate().is_err());
        assert!(ProgramYear::parse("2024").is_err());
        assert_eq!(ProgramYear::parse("2026").unwrap(), ProgramYear::Y2026);
    }
}

/// The QRDA III submitter options of the command lines that write one (`phm-ecqm eval
/// --report qrda3`, `phm-edw report --type qrda3`), in one place.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct SubmitterArgs {
    /// CMS program year of the QRDA III.
    #[arg(long, value_name = "2025|2026")]
    pub program_year: Option<String>,
    /// QRDA III: CMS program name.
    #[arg(long, value_name = "NAME")]
    pub cms_program: Option<String>,
    /// QRDA III: TIN.
    #[arg(long, value_name = "N")]
    pub tin: Option<String>,
    /// QRDA III: NPI.
    #[arg(long, value_name = "N")]
    pub npi: Option<String>,
    /// QRDA III: organisation name.
    #[arg(long, value_name = "TEXT")]
    pub org_name: Option<String>,
    /// QRDA III: CEHRT id.
    #[arg(long, value_name = "ID")]
    pub cehrt_id: Option<String>,
}

impl SubmitterArgs {
    /// The options given: `--program-year` when it is, else the defaults' overrides, then
    /// checked. `wanted_by` names what needs them in the error (e.g. `--report qrda3`).
    pub fn options(
        &self,
        wanted_by: &str,
        software_name: Option<String>,
    ) -> std::result::Result<Qrda3Options, String> {
        let year = self
            .program_year
            .as_deref()
            .ok_or_else(|| format!("{wanted_by} needs --program-year 2025|2026"))?;
        let year =
            ProgramYear::parse(year).map_err(|_| "--program-year: 2025 or 2026".to_string())?;
        let mut o = Qrda3Options::new(year);
        if let Some(name) = software_name {
            o.software_name = name;
        }
        for (given, field) in [
            (&self.cms_program, &mut o.program),
            (&self.tin, &mut o.tin),
            (&self.npi, &mut o.npi),
            (&self.org_name, &mut o.organization_name),
            (&self.cehrt_id, &mut o.cehrt_id),
        ] {
            if let Some(v) = given {
                field.clone_from(v);
            }
        }
        o.validate().map_err(|e| e.to_string())?;
        Ok(o)
    }

    /// The first option given (its flag without `--`), to refuse them where no QRDA III is
    /// written.
    pub fn first_given(&self) -> Option<&'static str> {
        [
            ("program-year", &self.program_year),
            ("cms-program", &self.cms_program),
            ("tin", &self.tin),
            ("npi", &self.npi),
            ("org-name", &self.org_name),
            ("cehrt-id", &self.cehrt_id),
        ]
        .into_iter()
        .find_map(|(flag, v)| v.as_ref().map(|_| flag))
    }
}
