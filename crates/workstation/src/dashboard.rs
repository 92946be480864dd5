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
//! of each stratum, summed from the stratum values stored with each result.
//!
//! Trend by month: each month's point is what was stored at its last day (today for the month
//! under way), summed over the patients in scope, from `measure_result_history`; a month before
//! the first evaluation has no point. The summary's change is the rate now against the rate
//! at the end of the previous month.

pub mod population;

use std::collections::{BTreeMap, HashMap, HashSet};

use access::{Action, Role};
use cache::{Cache, PopulationCounts};
use ecqm::{GroupDef, ImprovementNotation, MeasureDef};

use crate::{
    BreakdownRow, ChartBars, ChartSvg, Dashboard, DashboardQuery, DrillPage, DrillQuery, DrillRow,
    MeasureDetail, MeasureRow, PopulationTally, Session, StratumRow, TrendPoint, Workstation,
    WsError,
};

/// The setting holding a measure's target (a rate, 0..=1).
const TARGET_KEY: &str = "dashboard_target:";

/// How the trend by month is made.
pub const TREND_NOTE: &str = "Each month shows the results stored at its last day (today for \
    this month); months before the first evaluation have no point.";

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
    /// Adds `n` patients with the counts `c`.
    fn add_n(&mut self, c: &PopulationCounts, n: u64) {
        self.initial_population += u64::from(c.ip) * n;
        self.denominator += u64::from(c.denom) * n;
        self.denominator_exclusion += u64::from(c.denex) * n;
        self.denominator_exception += u64::from(c.denexcep) * n;
        self.numerator += u64::from(c.numer) * n;
        self.numerator_exclusion += u64::from(c.numex) * n;
    }

    fn add(&mut self, c: &PopulationCounts) {
        self.add_n(c, 1);
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

/// Patients of one measure group in scope who share the same stored counts and strata.
#[derive(Debug, Clone, Copy)]
struct Tally {
    counts: PopulationCounts,
    /// `result_value` id of the stratum values.
    strata: Option<i64>,
    patients: u64,
}

/// What one computation reads from the cache.
struct Stored {
    groups: Vec<GroupInfo>,
    /// `(measure, group)` → the patients in scope, summed by counts and strata.
    tallies: BTreeMap<(String, String), Vec<Tally>>,
    targets: HashMap<String, f64>,
}

impl Stored {
    /// Only `measure`'s groups, tallies and target (what `Workstation::stored` reads with
    /// `Some(measure)`), without reading the cache again.
    fn only(mut self, measure: &str) -> Result<Stored, WsError> {
        self.groups.retain(|g| g.measure_id == measure);
        if self.groups.is_empty() {
            return Err(WsError::not_found("measure"));
        }
        self.tallies.retain(|(m, _), _| m == measure);
        self.targets.retain(|m, _| m == measure);
        Ok(self)
    }
}

/// `(patient, group, counts)` of `measure`'s stored results for the patients in `scope`.
fn patient_results(
    cache: &Cache,
    scope: Option<&HashSet<String>>,
    measure: &str,
) -> Result<Vec<(String, String, PopulationCounts)>, WsError> {
    Ok(cache
        .result_rows(Some(measure))?
        .into_iter()
        .filter(|r| scope.is_none_or(|s| s.contains(&r.patient_id)))
        .map(|r| (r.patient_id, r.group_id, r.counts))
        .collect())
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
        let mut tallies: BTreeMap<(String, String), Vec<Tally>> = BTreeMap::new();
        match scope {
            // Every patient: summed by the database.
            None => {
                for t in cache.result_tallies(measure)? {
                    tallies
                        .entry((t.measure_id, t.group_id))
                        .or_default()
                        .push(Tally {
                            counts: t.counts,
                            strata: t.strata,
                            patients: t.patients,
                        });
                }
            }
            Some(scope) => {
                let mut sums: HashMap<(String, String, PopulationCounts, Option<i64>), u64> =
                    HashMap::new();
                for r in cache.result_rows(measure)? {
                    if scope.contains(&r.patient_id) {
                        *sums
                            .entry((r.measure_id, r.group_id, r.counts, r.strata))
                            .or_default() += 1;
                    }
                }
                for ((m, g, counts, strata), patients) in sums {
                    tallies.entry((m, g)).or_default().push(Tally {
                        counts,
                        strata,
                        patients,
                    });
                }
            }
        }
        Ok(Stored {
            groups,
            tallies,
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
        let mut measures = rows(&stored);
        // The change since the end of the previous month, where results were stored then.
        let last_month_end = previous_month_end(&today[..10]);
        let mut then: HashMap<(String, String), PopulationTally> = HashMap::new();
        for t in cache.result_tallies_on(&last_month_end, scope)? {
            then.entry((t.measure_id, t.group_id))
                .or_default()
                .add_n(&t.counts, t.patients);
        }
        for r in &mut measures {
            if let (Some(now), Some(before)) = (
                r.rate,
                then.get(&(r.measure_id.clone(), r.group_id.clone()))
                    .and_then(PopulationTally::rate),
            ) {
                r.change_since_last_month = Some(now - before);
            }
        }
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
            Some(m) => Some(self.measure_detail(cache, s, scope, stored.only(m)?, m, &today)?),
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
                Role::PrivacyOfficer | Role::Administrator => "No patients",
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
        scope: Option<&HashSet<String>>,
        stored: Stored,
        measure: &str,
        today: &str,
    ) -> Result<MeasureDetail, WsError> {
        let groups = rows(&stored);
        let first = &stored.groups[0];
        let results = patient_results(cache, scope, measure)?;
        // Providers: the patients' PCPs; care teams: the panels (for a care manager, theirs).
        let providers: Vec<(String, String)> = cache
            .panel_providers()?
            .into_iter()
            .map(|(id, name, _)| (id.clone(), name.unwrap_or(id)))
            .collect();
        let provider_index: HashMap<&str, usize> = providers
            .iter()
            .enumerate()
            .map(|(i, (id, _))| (id.as_str(), i))
            .collect();
        let mut provider_of: HashMap<String, Vec<usize>> = HashMap::new();
        for (patient, pcp) in cache.patient_providers()? {
            if let Some(&i) = provider_index.get(pcp.as_str()) {
                provider_of.entry(patient).or_default().push(i);
            }
        }
        let linked = if s.role == Role::CareManager {
            Some(cache.account_links(&s.username)?.1)
        } else {
            None
        };
        let teams: Vec<(String, String)> = cache
            .groups()?
            .into_iter()
            .filter(|g| linked.as_ref().is_none_or(|l| l.contains(&g.id)))
            .map(|g| (g.id.clone(), g.name.unwrap_or(g.id)))
            .collect();
        let team_index: HashMap<&str, usize> = teams
            .iter()
            .enumerate()
            .map(|(i, (id, _))| (id.as_str(), i))
            .collect();
        let mut teams_of: HashMap<String, Vec<usize>> = HashMap::new();
        for (group, patient) in cache.group_memberships()? {
            if let Some(&i) = team_index.get(group.as_str()) {
                teams_of.entry(patient).or_default().push(i);
            }
        }
        let breakdown = |slices: &[(String, String)], of_patient: &HashMap<String, Vec<usize>>| {
            let mut out = Vec::new();
            for g in &stored.groups {
                let mut tallies = vec![(PopulationTally::default(), 0u64); slices.len()];
                for (p, _, c) in results.iter().filter(|(_, gid, _)| *gid == g.group_id) {
                    for &i in of_patient.get(p).into_iter().flatten() {
                        tallies[i].0.add(c);
                        tallies[i].1 += u64::from(gap_open(c, g.notation));
                    }
                }
                for ((id, label), (counts, open)) in slices.iter().zip(tallies) {
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
        let by_provider = breakdown(&providers, &provider_of);
        let by_care_team = breakdown(&teams, &teams_of);
        let target = stored.targets.get(measure).copied();
        let group_suffix = |g: &GroupInfo| {
            if stored.groups.len() > 1 {
                format!(" ({})", g.group_id)
            } else {
                String::new()
            }
        };
        let mut charts = Vec::new();
        for g in &stored.groups {
            let group = group_suffix(g);
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
        let strata = strata(cache, &stored)?;
        let mut strata_charts = Vec::new();
        for g in &stored.groups {
            let group = group_suffix(g);
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
        let trend = match cache.last_eval_run()? {
            Some(run) => trend(cache, scope, &stored, measure, &run, &today[..10])?,
            None => Vec::new(),
        };
        let mut trend_charts = Vec::new();
        for g in stored.groups.iter().filter(|g| g.proportion) {
            let points: Vec<charts::Point> = trend
                .iter()
                .filter(|p| p.group_id == g.group_id)
                .map(|p| charts::Point {
                    label: p.month.clone(),
                    value: p.rate,
                })
                .collect();
            if points.iter().all(|p| p.value.is_none()) {
                continue;
            }
            let title = format!(
                "{}{}: performance rate by month",
                g.short_name,
                group_suffix(g)
            );
            trend_charts.push(ChartSvg {
                svg: charts::line_chart(&title, &points, target).map_err(chart_error)?,
                title,
                bars: None,
            });
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
            trend,
            trend_charts,
        })
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
                let ids: HashSet<String> = patient_results(cache, scope, &q.measure_id)?
                    .into_iter()
                    .filter(|(p, gid, c)| {
                        *gid == g.group_id
                            && in_population(c, &q.population, g.notation)
                            && slice.as_ref().is_none_or(|s| s.contains(p))
                    })
                    .map(|(p, _, _)| p)
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

/// The last day of the month before the one `day` (YYYY-MM-DD) is in.
fn previous_month_end(day: &str) -> String {
    let y: i64 = day[..4].parse().unwrap_or(1970);
    let m: u32 = day[5..7].parse().unwrap_or(1);
    let (y, m, d) = access::time::civil_from_days(access::time::days_from_civil(y, m, 1) - 1);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The last day of month `m` of year `y`.
fn month_end(y: i64, m: u32) -> String {
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    previous_month_end(&format!("{ny:04}-{nm:02}-01"))
}

/// The strata of each of the measure's groups, summed from the stored stratum values of the
/// patients in scope (as `ecqm::report::Summary` sums the engine's).
fn strata(cache: &Cache, stored: &Stored) -> Result<Vec<StratumRow>, WsError> {
    if stored.groups.iter().all(|g| g.stratifiers.is_empty()) {
        return Ok(Vec::new());
    }
    let values = cache.result_values()?;
    let mut parsed: HashMap<i64, Vec<ecqm::populations::StratumValue>> = HashMap::new();
    // (group, stratifier, value) -> counts.
    let mut tally: BTreeMap<(String, String, String), PopulationTally> = BTreeMap::new();
    for ((_, gid), tallies) in &stored.tallies {
        for t in tallies {
            let Some(id) = t.strata else { continue };
            let strata = parsed.entry(id).or_insert_with(|| {
                values
                    .get(&id)
                    .map(|j| crate::evaluation::stored_strata(j))
                    .unwrap_or_default()
            });
            for st in strata.iter() {
                tally
                    .entry((
                        gid.clone(),
                        st.stratifier.clone(),
                        ecqm::report::stratum_text(&st.value),
                    ))
                    .or_default()
                    .add_n(&t.counts, t.patients);
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

/// The measure's groups by month over the run's measurement period up to `today`: what was
/// stored at each month's last day (today for the month under way) for the patients in scope.
/// A month with nothing stored at its end has no counts and no rate.
fn trend(
    cache: &Cache,
    scope: Option<&HashSet<String>>,
    stored: &Stored,
    measure: &str,
    run: &cache::EvalRun,
    today: &str,
) -> Result<Vec<TrendPoint>, WsError> {
    let (Some(y), Some(first), Some(last)) = (
        run.period_start
            .get(..4)
            .and_then(|y| y.parse::<i64>().ok()),
        run.period_start
            .get(5..7)
            .and_then(|m| m.parse::<u32>().ok()),
        run.period_end.get(5..7).and_then(|m| m.parse::<u32>().ok()),
    ) else {
        return Ok(Vec::new());
    };
    // Each month's day: its last, or today for the month under way; none after today.
    let days: Vec<(String, String)> = (first..=last)
        .map(|m| (format!("{y:04}-{m:02}"), month_end(y, m)))
        .filter(|(month, _)| month.as_str() <= &today[..7])
        .map(|(month, end)| {
            let day = if end.as_str() > today {
                today.to_string()
            } else {
                end
            };
            (month, day)
        })
        .collect();
    let Some((_, to)) = days.last() else {
        return Ok(Vec::new());
    };
    let from = &days[0].1;
    let history = cache.result_history(measure, from, to)?;
    // (group, month index) -> counts; months with any stored result.
    let mut sums: HashMap<(&str, usize), PopulationTally> = HashMap::new();
    let mut stored_at = vec![false; days.len()];
    for h in &history {
        if scope.is_some_and(|s| !s.contains(&h.patient_id)) {
            continue;
        }
        for (i, (_, day)) in days.iter().enumerate() {
            let valid = h.valid_from.as_str() <= day.as_str()
                && h.valid_to.as_deref().is_none_or(|t| t > day.as_str());
            if valid {
                stored_at[i] = true;
                sums.entry((h.group_id.as_str(), i))
                    .or_default()
                    .add(&h.counts);
            }
        }
    }
    let mut out = Vec::new();
    for g in &stored.groups {
        for (i, (month, day)) in days.iter().enumerate() {
            let counts = stored_at[i].then(|| {
                sums.get(&(g.group_id.as_str(), i))
                    .copied()
                    .unwrap_or_default()
            });
            out.push(TrendPoint {
                group_id: g.group_id.clone(),
                month: month.clone(),
                as_of: day.clone(),
                rate: counts.and_then(|c| if g.proportion { c.rate() } else { None }),
                counts,
            });
        }
    }
    Ok(out)
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
            for t in stored.tallies.get(&key).into_iter().flatten() {
                counts.add_n(&t.counts, t.patients);
                open += u64::from(gap_open(&t.counts, g.notation)) * t.patients;
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
                change_since_last_month: None,
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
