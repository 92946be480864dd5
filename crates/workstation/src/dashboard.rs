//! Quality dashboards: per measure and group, the populations, the performance rate and the
//! open gaps of the patients the session may see, summed from the stored evaluation results
//! (`measure_result`: population counts per patient, measure and group, written by the local
//! evaluation with the engine's memberships), so the numbers are the engine's summary
//! MeasureReport over the same patients. Charts are rendered here as SVG by `charts`; the UI
//! shows the same numbers as tables. Drill-down lists the patients behind a number.
//!
//! Who sees what is the worklist's rule (the session's scope): a quality analyst every patient
//! (with a purpose of use), a clinician their attributed patients, a care manager the panels
//! of their care teams; a privacy officer is refused by the role matrix (`view_measures`).
//!
//! Stratifiers: where a measure group defines them, its detail has the populations and rate
//! of each stratum. Strata are not stored (the cache keeps population counts per patient), so
//! they are computed at dashboard time by the engine for that measure's initial population
//! within the scope (only when the detail is opened).
//!
//! Not computed: a trend by month. The cache keeps one evaluation per patient over the whole
//! measurement period (not the state at each month's end), so a monthly rate cannot be derived
//! from stored data without re-evaluating every patient for each month.

pub mod population;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};

use access::{Action, Role};
use cache::{Cache, PopulationCounts};
use ecqm::{GroupDef, ImprovementNotation, MeasureDef};

use crate::evaluation::{MeasureSet, BATCH};
use crate::{
    BreakdownRow, ChartBars, ChartSvg, Dashboard, DashboardQuery, DrillPage, DrillQuery, DrillRow,
    MeasureDetail, MeasureRow, PopulationTally, Session, StratumRow, Workstation, WsError,
};

/// The setting holding a measure's target (a rate, 0..=1).
const TARGET_KEY: &str = "dashboard_target:";

/// Why the dashboard shows no trend by month.
pub const TREND_NOTE: &str = "No trend by month: the local cache keeps one evaluation per \
    patient for the whole measurement period, not the results at each month's end.";

/// The populations a drill-down can ask for.
pub const DRILL_POPULATIONS: [&str; 8] = [
    "initial-population",
    "denominator",
    "denominator-exclusion",
    "denominator-exception",
    "numerator",
    "numerator-exclusion",
    "performance-not-met",
    "open-gap",
];

impl PopulationTally {
    fn add(&mut self, c: &PopulationCounts) {
        self.initial_population += u64::from(c.ip);
        self.denominator += u64::from(c.denom);
        self.denominator_exclusion += u64::from(c.denex);
        self.denominator_exception += u64::from(c.denexcep);
        self.numerator += u64::from(c.numer);
        self.numerator_exclusion += u64::from(c.numex);
    }

    fn add_tally(&mut self, c: &PopulationTally) {
        self.initial_population += c.initial_population;
        self.denominator += c.denominator;
        self.denominator_exclusion += c.denominator_exclusion;
        self.denominator_exception += c.denominator_exception;
        self.numerator += c.numerator;
        self.numerator_exclusion += c.numerator_exclusion;
    }

    /// The eCQM proportion: (NUMER − NUMEX) / (DENOM − DENEX − DENEXCEP), as
    /// `ecqm::report::Counts::proportion`; `None` when that denominator is 0.
    pub fn rate(&self) -> Option<f64> {
        let d = self
            .denominator
            .saturating_sub(self.denominator_exclusion)
            .saturating_sub(self.denominator_exception);
        let n = self.numerator.saturating_sub(self.numerator_exclusion);
        (d > 0).then(|| n as f64 / d as f64)
    }
}

/// One measure group as stored, with what the dashboard needs to know of its definition.
struct GroupInfo {
    measure_id: String,
    group_id: String,
    short_name: String,
    title: String,
    label: String,
    notation: ImprovementNotation,
    proportion: bool,
    /// The group's evaluable stratifiers: `(id as the engine reports it, text)`.
    stratifiers: Vec<(String, String)>,
}

/// A patient's gap is open (or prospective) for a group: `ecqm::gap_status` on the stored
/// counts, without the period (open and prospective both count).
fn gap_open(c: &PopulationCounts, notation: ImprovementNotation) -> bool {
    let eligible = c.denom > 0 && c.denex == 0 && c.denexcep == 0;
    let met = c.numer > 0 && c.numex == 0;
    eligible
        && match notation {
            ImprovementNotation::Increase => !met,
            ImprovementNotation::Decrease => met,
        }
}

fn in_population(c: &PopulationCounts, population: &str, notation: ImprovementNotation) -> bool {
    match population {
        "initial-population" => c.ip > 0,
        "denominator" => c.denom > 0,
        "denominator-exclusion" => c.denex > 0,
        "denominator-exception" => c.denexcep > 0,
        "numerator" => c.numer > 0,
        "numerator-exclusion" => c.numex > 0,
        "performance-not-met" => {
            c.denom > 0 && c.denex == 0 && c.denexcep == 0 && !(c.numer > 0 && c.numex == 0)
        }
        "open-gap" => gap_open(c, notation),
        _ => false,
    }
}

fn meets(rate: Option<f64>, target: Option<f64>, notation: ImprovementNotation) -> Option<bool> {
    let (r, t) = (rate?, target?);
    Some(match notation {
        ImprovementNotation::Increase => r >= t,
        ImprovementNotation::Decrease => r <= t,
    })
}

fn notation_code(n: ImprovementNotation) -> &'static str {
    match n {
        ImprovementNotation::Increase => "increase",
        ImprovementNotation::Decrease => "decrease",
    }
}

/// What one computation reads from the cache.
struct Stored {
    groups: Vec<GroupInfo>,
    /// `(measure, group)` → per patient counts, for the patients in scope.
    results: BTreeMap<(String, String), Vec<(String, PopulationCounts)>>,
    targets: HashMap<String, f64>,
}

impl Stored {
    /// Only `measure`'s groups, results and target (what `Workstation::stored` reads with
    /// `Some(measure)`), without reading the cache again.
    fn only(mut self, measure: &str) -> Result<Stored, WsError> {
        self.groups.retain(|g| g.measure_id == measure);
        if self.groups.is_empty() {
            return Err(WsError::not_found("measure"));
        }
        self.results.retain(|(m, _), _| m == measure);
        self.targets.retain(|m, _| m == measure);
        Ok(self)
    }
}

impl Workstation {
    fn stored(
        &self,
        cache: &Cache,
        scope: Option<&HashSet<String>>,
        measure: Option<&str>,
    ) -> Result<Stored, WsError> {
        let mut groups = Vec::new();
        let mut targets = HashMap::new();
        for p in cache.measure_packages()? {
            if measure.is_some_and(|m| m != p.measure_id) {
                continue;
            }
            let def: MeasureDef = serde_json::from_str(&p.definition).map_err(|_| {
                WsError::new(
                    "evaluation",
                    "A stored measure definition could not be read; evaluate the panel again.",
                )
            })?;
            if let Some(t) = cache
                .setting(&format!("{TARGET_KEY}{}", p.measure_id))?
                .and_then(|t| t.parse::<f64>().ok())
            {
                targets.insert(p.measure_id.clone(), t);
            }
            let several = def.groups.len() > 1;
            for (i, g) in def.groups.iter().enumerate() {
                groups.push(group_info(&self.improvement, &p, &def, g, i, several));
            }
        }
        if let Some(m) = measure {
            if groups.is_empty() {
                return Err(WsError::not_found("measure"));
            }
            debug_assert!(groups.iter().all(|g| g.measure_id == m));
        }
        let mut results: BTreeMap<(String, String), Vec<(String, PopulationCounts)>> =
            BTreeMap::new();
        for (patient, m, g, counts) in cache.measure_results()? {
            if measure.is_some_and(|x| x != m) || scope.is_some_and(|s| !s.contains(&patient)) {
                continue;
            }
            results.entry((m, g)).or_default().push((patient, counts));
        }
        Ok(Stored {
            groups,
            results,
            targets,
        })
    }

    /// The session's scope: `None` for every patient, which needs a purpose of use.
    fn dashboard_scope<'a>(&self, s: &'a Session) -> Result<Option<&'a HashSet<String>>, WsError> {
        match s.scope.as_deref() {
            None if s.purpose.is_none() => Err(WsError::no_purpose()),
            None => Ok(None),
            Some(scope) => Ok(Some(&scope.patients)),
        }
    }

    /// The quality dashboard over the session's patients (`view_measures`): every measure
    /// group's populations, rate, target and open gaps, a chart, and with `q.measure` that
    /// measure's detail by provider and by care team. One audit record (no patient ids: the
    /// numbers are aggregates).
    pub fn dashboard(&self, q: &DashboardQuery) -> Result<Dashboard, WsError> {
        let query = format!(
            "dashboard{}",
            q.measure
                .as_deref()
                .map(|m| format!(" measure {m}"))
                .unwrap_or_default()
        );
        self.audited(
            Action::ViewMeasures,
            Some(query),
            |cache, s| self.build_dashboard(cache, s, q),
            |_| Vec::new(),
        )
    }

    fn build_dashboard(
        &self,
        cache: &Cache,
        s: &Session,
        q: &DashboardQuery,
    ) -> Result<Dashboard, WsError> {
        let scope = self.dashboard_scope(s)?;
        let stored = self.stored(cache, scope, None)?;
        let run = cache.last_eval_run()?;
        let today = access::time::rfc3339_from_unix_ms((self.clock)());
        let measures = rows(&stored);
        let mut total = PopulationTally::default();
        for r in &measures {
            total.add_tally(&r.counts);
        }
        let with_target: Vec<&MeasureRow> =
            measures.iter().filter(|r| r.target.is_some()).collect();
        let chart_title = "Performance rate by measure (dashed: target)".to_string();
        let bars: Vec<charts::Bar> = measures
            .iter()
            .map(|r| charts::Bar {
                label: r.label.clone(),
                value: r.rate,
                target: r.target,
            })
            .collect();
        let chart = ChartSvg {
            svg: charts::bar_chart(&chart_title, &bars).map_err(chart_error)?,
            title: chart_title,
            bars: None,
        };
        // The detail's measure from what was read for the summary (not read again).
        let detail = match q
            .measure
            .as_deref()
            .map(str::trim)
            .filter(|m| !m.is_empty())
        {
            None => None,
            Some(m) => Some(self.measure_detail(cache, s, stored.only(m)?, m)?),
        };
        let patients_in_scope = match scope {
            Some(set) => set.len() as u64,
            None => cache.patient_count()?,
        };
        Ok(Dashboard {
            scope: match s.role {
                Role::QualityAnalyst => "All patients",
                Role::Clinician => "Your patients",
                Role::CareManager => "Your care teams' panels",
                Role::PrivacyOfficer => "No patients",
            }
            .into(),
            patients_in_scope,
            period_over: run
                .as_ref()
                .is_some_and(|r| &today[..10] > r.period_end.as_str()),
            period_start: run.as_ref().map(|r| r.period_start.clone()),
            period_end: run.as_ref().map(|r| r.period_end.clone()),
            evaluated_at: run.and_then(|r| r.finished_at),
            total_open_gaps: measures.iter().map(|r| r.open_gaps).sum(),
            measures_with_target: with_target.len() as u64,
            measures_meeting_target: with_target
                .iter()
                .filter(|r| r.meets_target == Some(true))
                .count() as u64,
            measures,
            total,
            chart,
            trend_note: Some(TREND_NOTE.into()),
            detail,
        })
    }

    fn measure_detail(
        &self,
        cache: &Cache,
        s: &Session,
        stored: Stored,
        measure: &str,
    ) -> Result<MeasureDetail, WsError> {
        let groups = rows(&stored);
        let first = &stored.groups[0];
        // Providers: the patients' PCPs; care teams: the panels (for a care manager, theirs).
        let mut providers: Vec<(String, String, HashSet<String>)> = Vec::new();
        for (id, name, _) in cache.panel_providers()? {
            let members = cache.patients_linked_to(Some(&id), &[])?;
            providers.push((id.clone(), name.unwrap_or(id), members));
        }
        let linked = if s.role == Role::CareManager {
            Some(cache.account_links(&s.username)?.1)
        } else {
            None
        };
        let mut teams: Vec<(String, String, HashSet<String>)> = Vec::new();
        for g in cache.groups()? {
            if linked.as_ref().is_some_and(|l| !l.contains(&g.id)) {
                continue;
            }
            let members = cache.patients_linked_to(None, std::slice::from_ref(&g.id))?;
            teams.push((g.id.clone(), g.name.unwrap_or(g.id), members));
        }
        let breakdown = |slices: &[(String, String, HashSet<String>)]| {
            // Each patient's slices, so the results are read once (not once per slice).
            let mut of_patient: HashMap<&str, Vec<usize>> = HashMap::new();
            for (i, (_, _, members)) in slices.iter().enumerate() {
                for p in members {
                    of_patient.entry(p.as_str()).or_default().push(i);
                }
            }
            let mut out = Vec::new();
            for g in &stored.groups {
                let key = (g.measure_id.clone(), g.group_id.clone());
                let patients = stored.results.get(&key).map(Vec::as_slice).unwrap_or(&[]);
                let mut tallies = vec![(PopulationTally::default(), 0u64); slices.len()];
                for (p, c) in patients {
                    for &i in of_patient.get(p.as_str()).into_iter().flatten() {
                        tallies[i].0.add(c);
                        tallies[i].1 += u64::from(gap_open(c, g.notation));
                    }
                }
                for ((id, label, _), (counts, open)) in slices.iter().zip(tallies) {
                    if counts.initial_population == 0 {
                        continue;
                    }
                    out.push(BreakdownRow {
                        id: id.clone(),
                        label: label.clone(),
                        group_id: g.group_id.clone(),
                        rate: if g.proportion { counts.rate() } else { None },
                        counts,
                        open_gaps: open,
                    });
                }
            }
            out
        };
        let by_provider = breakdown(&providers);
        let by_care_team = breakdown(&teams);
        let target = stored.targets.get(measure).copied();
        let mut charts = Vec::new();
        for g in &stored.groups {
            let group = if stored.groups.len() > 1 {
                format!(" ({})", g.group_id)
            } else {
                String::new()
            };
            for (what, kind, rows) in [
                ("provider", "provider", &by_provider),
                ("care team", "careTeam", &by_care_team),
            ] {
                let rows: Vec<_> = rows.iter().filter(|r| r.group_id == g.group_id).collect();
                let bars: Vec<charts::Bar> = rows
                    .iter()
                    .map(|r| charts::Bar {
                        label: r.label.clone(),
                        value: r.rate,
                        target,
                    })
                    .collect();
                if bars.is_empty() {
                    continue;
                }
                let title = format!("{}{group}: performance rate by {what}", g.short_name);
                charts.push(ChartSvg {
                    svg: charts::bar_chart(&title, &bars).map_err(chart_error)?,
                    title,
                    bars: Some(ChartBars {
                        group_id: g.group_id.clone(),
                        kind: kind.into(),
                        ids: rows.iter().map(|r| r.id.clone()).collect(),
                    }),
                });
            }
        }
        let strata = self.strata(cache, &stored, measure)?;
        let mut strata_charts = Vec::new();
        for g in &stored.groups {
            let group = if stored.groups.len() > 1 {
                format!(" ({})", g.group_id)
            } else {
                String::new()
            };
            for (sid, text) in &g.stratifiers {
                let bars: Vec<charts::Bar> = strata
                    .iter()
                    .filter(|r| r.group_id == g.group_id && &r.stratifier_id == sid)
                    .map(|r| charts::Bar {
                        label: r.value.clone(),
                        value: r.rate,
                        target,
                    })
                    .collect();
                if bars.is_empty() {
                    continue;
                }
                let title = format!("{}{group}: performance rate by {text}", g.short_name);
                strata_charts.push(ChartSvg {
                    svg: charts::bar_chart(&title, &bars).map_err(chart_error)?,
                    title,
                    bars: None,
                });
            }
        }
        Ok(MeasureDetail {
            measure_id: first.measure_id.clone(),
            short_name: first.short_name.clone(),
            title: first.title.clone(),
            groups,
            by_provider,
            by_care_team,
            charts,
            strata,
            strata_charts,
        })
    }

    /// The strata of `measure`'s groups over the patients in `stored` (the session's scope).
    ///
    /// The cache stores each patient's population counts, not their stratifier values, so the
    /// strata are computed here by the engine: the measure alone, prepared for the stored
    /// results' period (once per measure and year), evaluated with stratifiers for the
    /// patients in scope who are in one of its groups' initial populations (the engine gives
    /// strata only to those), and summed as `ecqm::report::Summary` sums them. Only measures
    /// that define a stratifier are evaluated; their detail costs one evaluation of that
    /// measure over its initial population.
    fn strata(
        &self,
        cache: &Cache,
        stored: &Stored,
        measure: &str,
    ) -> Result<Vec<StratumRow>, WsError> {
        if stored.groups.iter().all(|g| g.stratifiers.is_empty()) {
            return Ok(Vec::new());
        }
        let Some(run) = cache.last_eval_run()? else {
            return Ok(Vec::new());
        };
        let Some(year) = run
            .period_start
            .get(..4)
            .and_then(|y| y.parse::<i32>().ok())
        else {
            return Ok(Vec::new());
        };
        let mut ids: Vec<String> = stored
            .results
            .iter()
            .filter(|((m, _), _)| m == measure)
            .flat_map(|(_, rows)| rows.iter().filter(|(_, c)| c.ip > 0).map(|(p, _)| p))
            .cloned()
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        ids.sort();
        let set = self.prepared_measure(measure, year)?;
        let shared: HashMap<String, cql::fhir::J> = cache
            .shared_resources()?
            .into_iter()
            .filter_map(|(t, id, raw)| {
                Some((format!("{t}/{id}"), serde_json::from_str(&raw).ok()?))
            })
            .collect();
        let opts = ecqm::EvalOptions {
            stratifiers: true,
            ..Default::default()
        };
        // (group, stratifier, value) -> counts.
        let mut tally: BTreeMap<(String, String, String), PopulationTally> = BTreeMap::new();
        for chunk in ids.chunks(BATCH) {
            use rayon::prelude::*;
            let patients = cache.patient_resources(chunk)?;
            let evaluated: Vec<Result<Vec<ecqm::PatientResult>, WsError>> = patients
                .par_iter()
                .map(|p| set.evaluate_results(p, &shared, opts))
                .collect();
            for results in evaluated {
                for r in results? {
                    for g in &r.groups {
                        let counts = crate::evaluation::counts(&g.populations);
                        for st in &g.strata {
                            tally
                                .entry((
                                    g.id.clone(),
                                    st.stratifier.clone(),
                                    ecqm::report::stratum_text(&st.value),
                                ))
                                .or_default()
                                .add(&counts);
                        }
                    }
                }
            }
        }
        let mut out = Vec::new();
        for g in &stored.groups {
            for (sid, text) in &g.stratifiers {
                for ((gid, s, value), counts) in &tally {
                    if gid != &g.group_id || s != sid {
                        continue;
                    }
                    out.push(StratumRow {
                        group_id: gid.clone(),
                        stratifier_id: sid.clone(),
                        stratifier: text.clone(),
                        value: value.clone(),
                        counts: *counts,
                        rate: if g.proportion { counts.rate() } else { None },
                    });
                }
            }
        }
        Ok(out)
    }

    /// `measure` alone prepared for the calendar year `year`, kept for the next detail.
    fn prepared_measure(&self, measure: &str, year: i32) -> Result<Arc<MeasureSet>, WsError> {
        type Prepared = Mutex<HashMap<(String, i32), Arc<MeasureSet>>>;
        static PREPARED: OnceLock<Prepared> = OnceLock::new();
        let slot = PREPARED.get_or_init(Default::default);
        let key = (measure.to_string(), year);
        if let Some(set) = slot.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Ok(set.clone());
        }
        let package = crate::evaluation::shipped_packages()?
            .into_iter()
            .find(|p| p.def.name == measure)
            .ok_or_else(|| WsError::not_found("measure"))?;
        let today = access::time::rfc3339_from_unix_ms((self.clock)());
        let set = Arc::new(MeasureSet::prepare(
            std::slice::from_ref(&package),
            year,
            &today[..10],
            &self.improvement,
        )?);
        slot.lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, set.clone());
        Ok(set)
    }

    /// Sets (or with `None` clears) the target rate (0..=1) of a measure, kept in the cache's
    /// settings for everyone on this workstation. Audited.
    pub fn set_dashboard_target(
        &self,
        measure_id: &str,
        target: Option<f64>,
    ) -> Result<(), WsError> {
        if target.is_some_and(|t| !(0.0..=1.0).contains(&t)) {
            return Err(WsError::invalid(
                "The target is a rate between 0 % and 100 %.",
            ));
        }
        let query = format!(
            "dashboard target {measure_id}: {}",
            target.map_or("none".into(), |t| format!("{t}"))
        );
        self.audited(
            Action::ViewMeasures,
            Some(query),
            |cache, _| {
                if !cache
                    .measure_packages()?
                    .iter()
                    .any(|p| p.measure_id == measure_id)
                {
                    return Err(WsError::not_found("measure"));
                }
                let key = format!("{TARGET_KEY}{measure_id}");
                cache.set_setting(&key, &target.map_or(String::new(), |t| t.to_string()))?;
                Ok(())
            },
            |_| Vec::new(),
        )
    }

    /// The patients behind one dashboard number, within the session's scope (and a provider's
    /// or care team's slice), by name, one page. Needs a purpose of use; audited with the
    /// ids of the patients returned.
    pub fn dashboard_patients(&self, q: &DrillQuery) -> Result<DrillPage, WsError> {
        if !DRILL_POPULATIONS.contains(&q.population.as_str()) {
            return Err(WsError::invalid("Unknown population."));
        }
        let limit = if q.limit == 0 { 100 } else { q.limit };
        if limit > 1000 {
            return Err(WsError::invalid("At most 1,000 patients per page."));
        }
        let s = self.authorize(Action::ViewMeasures)?;
        if s.purpose.is_none() {
            return Err(WsError::no_purpose());
        }
        let query = serde_json::to_string(q).unwrap_or_default();
        self.audited(
            Action::ViewMeasures,
            Some(format!("dashboard patients {query}")),
            |cache, s| {
                let scope = s.scope.as_deref().map(|x| &x.patients);
                let stored = self.stored(cache, scope, Some(&q.measure_id))?;
                let g = stored
                    .groups
                    .iter()
                    .find(|g| g.group_id == q.group_id)
                    .ok_or_else(|| WsError::not_found("measure group"))?;
                let slice = match (&q.provider, &q.care_team) {
                    (Some(p), _) => Some(cache.patients_linked_to(Some(p), &[])?),
                    (None, Some(t)) => {
                        if s.role == Role::CareManager
                            && !cache.account_links(&s.username)?.1.contains(t)
                        {
                            return Err(WsError::new(
                                "outside_panel",
                                "This care team is not one of yours.",
                            ));
                        }
                        Some(cache.patients_linked_to(None, std::slice::from_ref(t))?)
                    }
                    (None, None) => None,
                };
                let key = (g.measure_id.clone(), g.group_id.clone());
                let ids: HashSet<String> = stored
                    .results
                    .get(&key)
                    .into_iter()
                    .flatten()
                    .filter(|(p, c)| {
                        in_population(c, &q.population, g.notation)
                            && slice.as_ref().is_none_or(|s| s.contains(p))
                    })
                    .map(|(p, _)| p.clone())
                    .collect();
                drill_page(cache, &ids, q.offset, limit)
            },
            |page| page.rows.iter().map(|r| r.patient_id.clone()).collect(),
        )
    }
}

fn chart_error(e: charts::ChartError) -> WsError {
    WsError::new("chart", e.to_string())
}

fn group_info(
    overrides: &ecqm::ImprovementOverrides,
    p: &cache::MeasurePackageRow,
    def: &MeasureDef,
    g: &GroupDef,
    index: usize,
    several: bool,
) -> GroupInfo {
    GroupInfo {
        measure_id: p.measure_id.clone(),
        group_id: g.id.clone(),
        short_name: p.short_name.clone(),
        title: p.title.clone(),
        label: if several {
            format!("{} #{}", p.short_name, index + 1)
        } else {
            p.short_name.clone()
        },
        notation: overrides.notation(def, g),
        proportion: g.scoring == ecqm::package::Scoring::Proportion,
        stratifiers: g
            .stratifiers
            .iter()
            .enumerate()
            .filter_map(|(si, st)| {
                let expression = st.expression.as_ref()?;
                Some((
                    st.id
                        .clone()
                        .unwrap_or_else(|| format!("stratifier-{}", si + 1)),
                    st.code_text.clone().unwrap_or_else(|| expression.clone()),
                ))
            })
            .collect(),
    }
}

/// One row per stored measure group, summed over the patients in scope.
fn rows(stored: &Stored) -> Vec<MeasureRow> {
    stored
        .groups
        .iter()
        .map(|g| {
            let mut counts = PopulationTally::default();
            let mut open = 0;
            let key = (g.measure_id.clone(), g.group_id.clone());
            for (_, c) in stored.results.get(&key).into_iter().flatten() {
                counts.add(c);
                open += u64::from(gap_open(c, g.notation));
            }
            let rate = if g.proportion { counts.rate() } else { None };
            let target = stored.targets.get(&g.measure_id).copied();
            MeasureRow {
                measure_id: g.measure_id.clone(),
                group_id: g.group_id.clone(),
                short_name: g.short_name.clone(),
                title: g.title.clone(),
                label: g.label.clone(),
                improvement: notation_code(g.notation).into(),
                counts,
                rate,
                target,
                meets_target: meets(rate, target, g.notation),
                open_gaps: open,
            }
        })
        .collect()
}

/// One page of the patients `ids` (the panel's columns), for a drill-down.
pub(crate) fn drill_page(
    cache: &Cache,
    ids: &std::collections::HashSet<String>,
    offset: u32,
    limit: u32,
) -> Result<DrillPage, WsError> {
    let page = cache.panel_in(
        &cache::PanelQuery {
            offset,
            limit,
            ..Default::default()
        },
        Some(ids),
    )?;
    Ok(DrillPage {
        rows: page
            .rows
            .into_iter()
            .map(|r| DrillRow {
                patient_id: r.patient_id,
                name: r.name,
                birth_date: r.birth_date,
                sex: r.sex,
                provider: r.pcp_name,
            })
            .collect(),
        total: page.total,
        offset: page.offset,
        limit: page.limit,
    })
}
