//! Care gaps on the workstation: local evaluation of the cached panel, the worklist, the
//! patient's gaps with their evidence, and worklist actions (outbox, re-evaluation at once).
//! Every command checks the role and the caller's panel in Rust and writes one audit record.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use access::{Action, AuditEntry, Outcome, Role};
use cache::{Cache, LocalResource, OutboxEntry, WorkChange};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};

use crate::evaluation::{EvalContext, MeasureSet, BATCH};
use crate::{Session, Workstation, WsError};

// ---------------------------------------------------------------------------------------------
// What the UI sends and receives
// ---------------------------------------------------------------------------------------------

/// Progress of the local evaluation (no PHI: counts and dates only).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct EvaluationStatus {
    /// `idle`, `running`, `done` or `failed`.
    pub phase: String,
    pub done: u64,
    pub total: u64,
    /// Patients actually re-evaluated (the others' data had not changed).
    pub evaluated: u64,
    pub failed: u64,
    pub message: String,
    pub period_start: Option<String>,
    pub period_end: Option<String>,
    /// Open gaps are prospective while the period runs.
    pub period_over: bool,
    pub evaluated_at: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub enum WorklistSortKey {
    #[default]
    Priority,
    Patient,
    Measure,
    Due,
    Provider,
    LastOutreach,
    State,
    Assignee,
    Gaps,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase", default)]
pub struct WorklistQuery {
    pub measure: Option<String>,
    pub provider: Option<String>,
    /// A care team's panel (Group id).
    pub care_team: Option<String>,
    /// Due on or before (YYYY-MM-DD).
    pub due_before: Option<String>,
    /// `new`, `in_progress`, `scheduled`, `declined`, `excluded`.
    pub state: Option<String>,
    /// `none` (never contacted), or a date: contacted before it (`before`) or since (`since`).
    pub outreach: Option<String>,
    pub outreach_date: Option<String>,
    /// A user name; `""` for unassigned.
    pub assignee: Option<String>,
    pub min_gaps: Option<u32>,
    pub name: Option<String>,
    pub include_snoozed: bool,
    /// Closed gaps instead of open ones.
    pub closed: bool,
    pub sort: WorklistSortKey,
    pub descending: bool,
    pub offset: u32,
    /// Default 100, at most 1000.
    pub limit: u32,
    /// "Today" (YYYY-MM-DD) for overdue and snoozes; default today.
    pub as_of: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct WorklistRow {
    pub patient_id: String,
    pub patient_name: String,
    pub birth_date: Option<String>,
    pub sex: Option<String>,
    pub provider: Option<String>,
    pub measure_id: String,
    pub measure: String,
    pub group_id: String,
    /// `open`, `prospective` or `closed`.
    pub status: String,
    pub why_open: String,
    pub closes_with: String,
    pub due_date: String,
    pub overdue: bool,
    pub open_gaps: u32,
    pub last_outreach_at: Option<String>,
    pub last_outreach: Option<String>,
    pub state: String,
    pub assignee: Option<String>,
    pub snoozed_until: Option<String>,
    pub visit_date: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct WorklistPage {
    pub rows: Vec<WorklistRow>,
    pub total: u64,
    pub offset: u32,
    pub limit: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct Choice {
    pub id: String,
    pub label: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct WorklistFacets {
    pub measures: Vec<Choice>,
    pub providers: Vec<Choice>,
    pub care_teams: Vec<Choice>,
    pub assignees: Vec<Choice>,
    pub states: Vec<Choice>,
    pub saved_views: Vec<SavedView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct SavedView {
    pub name: String,
    pub query: WorklistQuery,
}

/// One data requirement that would close a gap (read from the ELM).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct ClosingRequirement {
    pub index: u32,
    pub resource_type: String,
    pub value_set: Option<String>,
    pub value_set_url: Option<String>,
    /// Direct-reference codes, `system|code`.
    pub code: Option<String>,
    pub window: Option<(String, String)>,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct EvidenceLine {
    pub name: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct EvidenceLink {
    pub population: String,
    pub resource_type: String,
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct PatientGap {
    pub measure_id: String,
    pub measure: String,
    pub title: String,
    pub group_id: String,
    pub status: String,
    pub since: String,
    pub why_open: Vec<EvidenceLine>,
    pub evidence: Vec<EvidenceLink>,
    pub closes_with: Vec<ClosingRequirement>,
    pub state: String,
    pub assignee: Option<String>,
    pub snoozed_until: Option<String>,
    pub visit_date: Option<String>,
    pub last_outreach: Option<String>,
    pub last_outreach_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct ActionRecord {
    pub id: String,
    pub at: String,
    pub user: String,
    pub kind: String,
    pub measure_id: Option<String>,
    pub summary: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct PatientGaps {
    pub patient_id: String,
    pub gaps: Vec<PatientGap>,
    pub actions: Vec<ActionRecord>,
}

/// A code of a value set, for the closure-evidence form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct CodeChoice {
    pub system: String,
    pub code: String,
    pub display: Option<String>,
}

/// A gap an action applies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct GapRef {
    pub patient_id: String,
    pub measure_id: String,
    pub group_id: String,
}

/// Evidence that closes a gap, recorded as the FHIR resource the measure reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct ClosureEvidence {
    /// Index into the gap's closing requirements.
    pub requirement: u32,
    /// The code recorded (`system|code`, or a code of the requirement's value set).
    pub system: String,
    pub code: String,
    pub display: Option<String>,
    /// When it was done (YYYY-MM-DD).
    pub date: String,
    pub value: Option<f64>,
    pub unit: Option<String>,
    /// `patient-reported` or `outside-record`.
    pub source: String,
    /// For an observation, its category (FHIR observation-category: `laboratory`, `imaging`,
    /// `vital-signs`, `survey`, `exam`, `procedure`, ...), which measures read.
    pub category: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum WorklistAction {
    /// `channel`: call, letter, portal, in_person; `outcome`: reached, no_answer, left_message,
    /// declined, wrong_number.
    Outreach {
        channel: String,
        outcome: String,
        note: Option<String>,
    },
    ScheduleVisit {
        date: String,
    },
    Closure {
        evidence: ClosureEvidence,
    },
    /// `declined` or `excluded` with a coded reason.
    Decline {
        reason: String,
    },
    Exclude {
        reason: String,
    },
    Assign {
        assignee: Option<String>,
    },
    Snooze {
        until: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct ActionRequest {
    pub targets: Vec<GapRef>,
    pub action: WorklistAction,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct ActionOutcome {
    pub action_id: String,
    pub target: GapRef,
    /// The gap's status after the action (re-evaluated for closure evidence).
    pub status: String,
}

// ---------------------------------------------------------------------------------------------

pub const OUTREACH_CHANNELS: [&str; 4] = ["call", "letter", "portal", "in_person"];
pub const OUTREACH_OUTCOMES: [&str; 5] = [
    "reached",
    "no_answer",
    "left_message",
    "declined",
    "wrong_number",
];
pub const DECLINE_REASONS: [&str; 3] = ["patient-refused", "cost", "other"];
pub const EXCLUDE_REASONS: [&str; 4] = ["hospice", "palliative-care", "medical-reason", "other"];
const STATES: [(&str, &str); 5] = [
    ("new", "New"),
    ("in_progress", "In progress"),
    ("scheduled", "Visit scheduled"),
    ("declined", "Declined"),
    ("excluded", "Excluded"),
];

fn now_rfc3339() -> String {
    access::time::rfc3339_from_unix_ms(access::time::now_unix_ms())
}

fn today() -> String {
    now_rfc3339()[..10].to_string()
}

fn valid_date(s: &str) -> bool {
    access::time::parse_date(s).is_some() && s.len() == 10
}

pub(crate) fn map_query(q: &WorklistQuery) -> Result<cache::WorklistQuery, WsError> {
    use cache::{OutreachFilter, WorklistSort as S};
    let blank = |s: &Option<String>| {
        s.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let outreach = match q.outreach.as_deref().map(str::trim) {
        None | Some("") => None,
        Some("none") => Some(OutreachFilter::None),
        Some(kind @ ("before" | "since")) => {
            let d = blank(&q.outreach_date)
                .ok_or_else(|| WsError::invalid("Give the date for the outreach filter."))?;
            Some(if kind == "before" {
                OutreachFilter::Before(d)
            } else {
                OutreachFilter::Since(d)
            })
        }
        Some(_) => return Err(WsError::invalid("Unknown outreach filter.")),
    };
    Ok(cache::WorklistQuery {
        measure: blank(&q.measure),
        provider: blank(&q.provider),
        care_team: blank(&q.care_team),
        due_before: blank(&q.due_before),
        state: blank(&q.state),
        outreach,
        assignee: q.assignee.as_ref().map(|a| a.trim().to_string()),
        min_gaps: q.min_gaps,
        name: blank(&q.name),
        include_snoozed: q.include_snoozed,
        closed: q.closed,
        sort: match q.sort {
            WorklistSortKey::Priority => S::Priority,
            WorklistSortKey::Patient => S::Patient,
            WorklistSortKey::Measure => S::Measure,
            WorklistSortKey::Due => S::Due,
            WorklistSortKey::Provider => S::Provider,
            WorklistSortKey::LastOutreach => S::LastOutreach,
            WorklistSortKey::State => S::State,
            WorklistSortKey::Assignee => S::Assignee,
            WorklistSortKey::Gaps => S::Gaps,
        },
        dir: if q.descending {
            cache::SortDir::Desc
        } else {
            cache::SortDir::Asc
        },
        offset: q.offset,
        limit: if q.limit == 0 { 100 } else { q.limit },
        as_of: blank(&q.as_of),
    })
}

fn map_row(r: cache::WorklistRow) -> WorklistRow {
    WorklistRow {
        patient_id: r.patient_id,
        patient_name: r.patient_name,
        birth_date: r.birth_date,
        sex: r.sex,
        provider: r.provider_name,
        measure_id: r.measure_id,
        measure: r.measure,
        group_id: r.group_id,
        status: r.status,
        why_open: r.why_open,
        closes_with: r.closes_with,
        due_date: r.due_date,
        overdue: r.overdue,
        open_gaps: r.open_gaps,
        last_outreach_at: r.last_outreach_at,
        last_outreach: r.last_outreach,
        state: r.state,
        assignee: r.assignee,
        snoozed_until: r.snoozed_until,
        visit_date: r.visit_date,
    }
}

fn requirements_of(
    row: Option<&cache::MeasurePackageRow>,
    group_id: &str,
) -> Vec<ClosingRequirement> {
    let Some(row) = row else { return Vec::new() };
    let all: HashMap<String, Vec<ecqm::evidence::Requirement>> =
        serde_json::from_str(&row.requirements).unwrap_or_default();
    all.get(group_id)
        .map(|reqs| {
            reqs.iter()
                .enumerate()
                .map(|(i, r)| ClosingRequirement {
                    index: i as u32,
                    resource_type: r.resource_type.clone(),
                    value_set: r.value_set_name.clone(),
                    value_set_url: r.value_set_url.clone(),
                    code: r.code.clone(),
                    window: r.window.clone(),
                    text: r.text.clone(),
                })
                .collect()
        })
        .unwrap_or_default()
}

impl Workstation {
    /// The patients the session may see: `None` for every patient (quality analyst, with a
    /// purpose of use), else the clinician's attributed patients or the care manager's panels.
    pub(crate) fn scope_for(
        cache: &Cache,
        username: &str,
        role: Role,
    ) -> Result<Option<Arc<cache::PatientScope>>, WsError> {
        match role {
            Role::QualityAnalyst => Ok(None),
            Role::Clinician | Role::CareManager => {
                let (practitioner, groups) = cache.account_links(username)?;
                let groups = if role == Role::Clinician {
                    Vec::new()
                } else {
                    groups
                };
                let practitioner = if role == Role::Clinician {
                    practitioner
                } else {
                    None
                };
                Ok(Some(Arc::new(cache::PatientScope::new(
                    cache.patients_linked_to(practitioner.as_deref(), &groups)?,
                ))))
            }
            Role::PrivacyOfficer | Role::Administrator => {
                Ok(Some(Arc::new(cache::PatientScope::new(HashSet::new()))))
            }
        }
    }

    /// Refuses (and audits) a patient outside the session's panel.
    pub(crate) fn check_in_panel(
        &self,
        s: &Session,
        action: Action,
        patient_id: &str,
    ) -> Result<(), WsError> {
        let allowed = s.scope.as_ref().is_none_or(|set| set.contains(patient_id));
        if allowed {
            return Ok(());
        }
        let entry = AuditEntry::now(
            &s.username,
            Some(s.role),
            s.purpose,
            action,
            Outcome::Denied,
        )
        .with_patients(vec![patient_id.to_string()])
        .with_detail("patient outside the caller's panel");
        self.audit(entry)?;
        tracing::warn!(role = %s.role, action = ?action, "refused: outside the panel");
        Err(WsError::new(
            "outside_panel",
            "This patient is not in your panel, so the request was refused and recorded.",
        ))
    }

    /// The local evaluation's progress.
    pub fn evaluation_status(&self) -> EvaluationStatus {
        self.eval_status
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    fn set_eval_status(&self, s: EvaluationStatus, progress: &dyn Fn(&EvaluationStatus)) {
        progress(&s);
        if let Ok(mut slot) = self.eval_status.lock() {
            *slot = s;
        }
    }

    /// The measurement year: the `measurement_year` setting (`current`, or a year), else the
    /// calendar year of the panel's latest clinical data.
    pub(crate) fn measurement_year(&self) -> Result<i32, WsError> {
        let this_year: i32 = today()[..4].parse().unwrap_or(2026);
        let cache = self.cache();
        match cache.setting("measurement_year")?.as_deref() {
            Some("current") => return Ok(this_year),
            Some(y) => {
                if let Ok(y) = y.parse::<i32>() {
                    return Ok(y);
                }
            }
            None => {}
        }
        Ok(cache
            .latest_visit_date(&today())?
            .and_then(|d| d.get(..4).and_then(|y| y.parse().ok()))
            .unwrap_or(this_year))
    }

    /// The prepared measures and the shared resources. `refresh` re-reads the measurement
    /// year and the shared resources (each evaluation run); otherwise the last ones are used.
    /// The prepared measures of the stored results when every stored result is current
    /// (see [`results_current`]) and is for the calendar year `year`.
    pub(crate) fn current_results(&self, year: i32) -> Result<Option<Arc<MeasureSet>>, WsError> {
        let ctx = self.eval_context(false)?;
        if !ctx
            .set
            .period
            .start_date()
            .starts_with(&format!("{year:04}"))
        {
            return Ok(None);
        }
        let current = results_current(&self.cache(), &ctx.set)?;
        Ok(current.then_some(ctx.set))
    }

    fn eval_context(&self, refresh: bool) -> Result<EvalContext, WsError> {
        let mut slot = self.measures.lock().unwrap_or_else(|p| p.into_inner());
        if !refresh {
            if let Some(ctx) = slot.as_ref() {
                return Ok(ctx.clone());
            }
        }
        let year = self.measurement_year()?;
        let today = today();
        let set = match slot.as_ref() {
            Some(ctx)
                if ctx
                    .set
                    .period
                    .start_date()
                    .starts_with(&format!("{year:04}"))
                    && ctx.set.period_over == (today.as_str() > ctx.set.period.end_date()) =>
            {
                ctx.set.clone()
            }
            _ => {
                let packages = crate::evaluation::shipped_packages()?;
                Arc::new(MeasureSet::prepare(
                    &packages,
                    year,
                    &today,
                    &self.improvement,
                )?)
            }
        };
        let shared: HashMap<String, cql::fhir::J> = self
            .cache()
            .shared_resources()?
            .into_iter()
            .filter_map(|(t, id, raw)| {
                Some((format!("{t}/{id}"), serde_json::from_str(&raw).ok()?))
            })
            .collect();
        let ctx = EvalContext {
            set,
            shared: Arc::new(shared),
        };
        *slot = Some(ctx.clone());
        Ok(ctx)
    }

    /// Evaluates every patient whose data or whose evaluation setup (engine, packages, period)
    /// changed since the stored results: all of them the first time. A system task (no
    /// session): it runs after the cache opens and after each import, with progress.
    pub fn evaluate_panel(
        &self,
        progress: &dyn Fn(&EvaluationStatus),
    ) -> Result<EvaluationStatus, WsError> {
        let _one_at_a_time = self.eval_lock.lock().unwrap_or_else(|p| p.into_inner());
        let started = now_rfc3339();
        let mut status = EvaluationStatus {
            phase: "running".into(),
            message: "Preparing the measures…".into(),
            ..Default::default()
        };
        self.set_eval_status(status.clone(), progress);
        let result = self.evaluate_inner(&mut status, &started, progress);
        match result {
            Ok(()) => {
                status.phase = "done".into();
                status.message = format!(
                    "Care gaps are up to date ({} of {} patients re-evaluated).",
                    status.evaluated, status.total
                );
            }
            Err(ref e) => {
                status.phase = "failed".into();
                status.message = e.message.clone();
                tracing::error!(code = e.code, "local evaluation failed");
            }
        }
        self.set_eval_status(status.clone(), progress);
        result.map(|()| status)
    }

    fn evaluate_inner(
        &self,
        status: &mut EvaluationStatus,
        started: &str,
        progress: &dyn Fn(&EvaluationStatus),
    ) -> Result<(), WsError> {
        use rayon::prelude::*;
        let ctx = self.eval_context(true)?;
        let set = ctx.set.clone();
        let shared = ctx.shared.clone();
        status.period_start = Some(set.period.start_date().to_string());
        status.period_end = Some(set.period.end_date().to_string());
        status.period_over = set.period_over;
        let timing = std::env::var_os("PHM_EVAL_TIMING").is_some();
        let (ids, state, run, unchanged) = {
            let cache = self.cache();
            // Nothing was imported since the last complete run with the same setup: every
            // stored result is current (actions re-evaluate their patient at once).
            let unchanged = results_current(&cache, &set)?;
            if !unchanged {
                cache.store_measure_packages(&set.package_rows())?;
                cache.forget_missing_patients()?;
            }
            let ids = cache.patient_ids()?;
            let state = if unchanged {
                HashMap::new()
            } else {
                cache.eval_state()?
            };
            let run = cache.begin_eval_run(
                started,
                (set.period.start_date(), set.period.end_date()),
                &set.setup,
                ids.len() as u64,
            )?;
            (ids, state, run, unchanged)
        };
        status.total = ids.len() as u64;
        status.message = format!("Evaluating {} patients…", ids.len());
        self.set_eval_status(status.clone(), progress);
        let (mut t_read, mut t_eval, mut t_write) = (0.0, 0.0, 0.0);
        for chunk in ids.chunks(BATCH) {
            if unchanged {
                status.done = status.total;
                break;
            }
            let t = std::time::Instant::now();
            let patients = self.cache().patient_resources(chunk)?;
            t_read += t.elapsed().as_secs_f64();
            let t = std::time::Instant::now();
            let outcomes: Vec<Option<Result<cache::PatientEvaluation, WsError>>> = patients
                .par_iter()
                .map(|p| {
                    let hash = MeasureSet::data_hash(&p.resources);
                    let current = state
                        .get(&p.patient_id)
                        .is_some_and(|(h, s)| *h == hash && *s == set.setup);
                    (!current).then(|| set.evaluate(p, &shared))
                })
                .collect();
            t_eval += t.elapsed().as_secs_f64();
            let mut evals = Vec::new();
            for o in outcomes.into_iter().flatten() {
                match o {
                    Ok(e) => evals.push(e),
                    Err(e) => {
                        status.failed += 1;
                        tracing::warn!(code = e.code, "a patient could not be evaluated");
                    }
                }
            }
            status.evaluated += evals.len() as u64;
            let t = std::time::Instant::now();
            if !evals.is_empty() {
                self.cache()
                    .store_evaluations(&evals, &set.setup, started)?;
            }
            t_write += t.elapsed().as_secs_f64();
            status.done += chunk.len() as u64;
            status.message = format!(
                "Evaluating care gaps: {} of {} patients…",
                status.done, status.total
            );
            self.set_eval_status(status.clone(), progress);
        }
        if timing {
            eprintln!("evaluation phases: read {t_read:.2} s, evaluate {t_eval:.2} s, write {t_write:.2} s");
        }
        let finished = now_rfc3339();
        let cache = self.cache();
        cache.finish_eval_run(run, &finished, status.evaluated, status.failed)?;
        // The first worklist page after sign-in should not wait for the worklist's load.
        cache.warm_worklist()?;
        status.evaluated_at = Some(finished);
        Ok(())
    }

    /// Re-evaluates the patients a sync changed (and forgets removed ones), or everyone when
    /// the evaluation setup changed meanwhile (e.g. the data moved into a new year).
    pub(crate) fn evaluate_patients(
        &self,
        patient_ids: &[String],
        removed: bool,
    ) -> Result<(), WsError> {
        let ctx = self.eval_context(true)?;
        let same_setup = self
            .cache()
            .last_eval_run()?
            .is_some_and(|r| r.setup == ctx.set.setup && r.failed == 0);
        if !same_setup {
            return self.evaluate_panel(&|_| {}).map(|_| ());
        }
        let _one_at_a_time = self.eval_lock.lock().unwrap_or_else(|p| p.into_inner());
        if removed {
            self.cache().forget_missing_patients()?;
        }
        use rayon::prelude::*;
        for chunk in patient_ids.chunks(BATCH) {
            let patients = self.cache().patient_resources(chunk)?;
            let evals: Vec<cache::PatientEvaluation> = patients
                .par_iter()
                .filter_map(|p| ctx.set.evaluate(p, &ctx.shared).ok())
                .collect();
            self.cache()
                .store_evaluations(&evals, &ctx.set.setup, &now_rfc3339())?;
        }
        self.cache().warm_worklist()?;
        Ok(())
    }

    /// Recomputes the signed-in session's patients after the panel changed.
    pub(crate) fn refresh_session_scope(&self, cache: &Cache) -> Result<(), WsError> {
        let mut slot = self.session_slot();
        if let Some(s) = slot.as_mut() {
            s.scope = Workstation::scope_for(cache, &s.username, s.role)?;
        }
        Ok(())
    }

    /// Re-evaluates one patient now (after closure evidence): returns the new gap statuses.
    fn reevaluate_patient(&self, patient_id: &str) -> Result<(), WsError> {
        let ctx = self.eval_context(false)?;
        let cache = self.cache();
        let patients = cache.patient_resources(&[patient_id.to_string()])?;
        let eval = ctx.set.evaluate(&patients[0], &ctx.shared)?;
        cache.store_evaluations(&[eval], &ctx.set.setup, &now_rfc3339())?;
        Ok(())
    }

    /// Chooses the measurement period: `data` (the calendar year of the panel's latest data,
    /// the default) or `current` (this calendar year, where open gaps are prospective). The
    /// caller then runs [`Workstation::evaluate_panel`], which re-evaluates every patient.
    pub fn set_measurement_period(&self, choice: &str) -> Result<(), WsError> {
        let s = self.authorize(Action::ViewWorklist)?;
        if !matches!(choice, "data" | "current") {
            return Err(WsError::invalid(
                "The measurement period is either the year of the data or the current year.",
            ));
        }
        self.cache().set_setting("measurement_year", choice)?;
        self.audit(
            AuditEntry::now(
                &s.username,
                Some(s.role),
                s.purpose,
                Action::ViewWorklist,
                Outcome::Allowed,
            )
            .with_query(format!("measurement period: {choice}")),
        )
    }

    /// The codes of one of the shipped value sets whose display or code contains `search`
    /// (case-insensitive), at most 200: what the closure-evidence form offers.
    pub fn value_set_codes(&self, url: &str, search: &str) -> Result<Vec<CodeChoice>, WsError> {
        let s = self.authorize(Action::ViewWorklist)?;
        let codes = crate::evaluation::shipped_value_set(url)
            .ok_or_else(|| WsError::not_found("value set"));
        let entry = |o| {
            AuditEntry::now(
                &s.username,
                Some(s.role),
                s.purpose,
                Action::ViewWorklist,
                o,
            )
            .with_query(format!("value set codes {url}"))
        };
        let codes = match codes {
            Ok(c) => c,
            Err(e) => {
                self.audit(entry(Outcome::Error).with_detail(e.code))?;
                return Err(e);
            }
        };
        let needle = search.trim().to_lowercase();
        let out = codes
            .into_iter()
            .filter(|(_, code, display)| {
                needle.is_empty()
                    || code.to_lowercase().contains(&needle)
                    || display
                        .as_deref()
                        .is_some_and(|d| d.to_lowercase().contains(&needle))
            })
            .take(200)
            .map(|(system, code, display)| CodeChoice {
                system,
                code,
                display,
            })
            .collect();
        self.audit(entry(Outcome::Allowed))?;
        Ok(out)
    }

    pub fn worklist(&self, q: &WorklistQuery) -> Result<WorklistPage, WsError> {
        let query = map_query(q)?;
        let s = self.authorize(Action::ViewWorklist)?;
        let audit_query = serde_json::to_string(q).unwrap_or_default();
        let result = self
            .cache()
            .worklist(&query, s.scope.as_deref())
            .map_err(WsError::from);
        let base = |o| {
            AuditEntry::now(
                &s.username,
                Some(s.role),
                s.purpose,
                Action::ViewWorklist,
                o,
            )
            .with_query(audit_query.clone())
        };
        match &result {
            Ok(page) => {
                let mut ids: Vec<String> = page.rows.iter().map(|r| r.patient_id.clone()).collect();
                ids.sort();
                ids.dedup();
                self.audit(base(Outcome::Allowed).with_patients(ids))?;
            }
            Err(e) => self.audit(base(Outcome::Error).with_detail(e.code))?,
        }
        let page = result?;
        Ok(WorklistPage {
            rows: page.rows.into_iter().map(map_row).collect(),
            total: page.total,
            offset: page.offset,
            limit: page.limit,
        })
    }

    pub fn worklist_facets(&self) -> Result<WorklistFacets, WsError> {
        let s = self.authorize(Action::ViewWorklist)?;
        let cache = self.cache();
        let measures = cache
            .measure_packages()?
            .into_iter()
            .map(|m| Choice {
                id: m.measure_id,
                label: format!("{} {}", m.short_name, m.title),
            })
            .collect();
        let (_, linked_groups) = cache.account_links(&s.username)?;
        let care_teams = cache
            .groups()?
            .into_iter()
            .filter(|g| s.role == Role::QualityAnalyst || linked_groups.contains(&g.id))
            .map(|g| Choice {
                label: format!("{} ({})", g.name.unwrap_or_else(|| g.id.clone()), g.size),
                id: g.id,
            })
            .collect();
        let providers = cache
            .panel_providers()?
            .into_iter()
            .map(|(id, name, _)| Choice {
                label: name.unwrap_or_else(|| id.clone()),
                id,
            })
            .collect();
        let assignees = cache
            .list_accounts()?
            .into_iter()
            .filter(|a| matches!(a.role, Role::CareManager | Role::Clinician))
            .map(|a| Choice {
                id: a.username,
                label: a.display_name,
            })
            .collect();
        let saved_views = cache
            .saved_views(&s.username)?
            .into_iter()
            .filter_map(|(name, q)| {
                Some(SavedView {
                    name,
                    query: serde_json::from_str(&q).ok()?,
                })
            })
            .collect();
        drop(cache);
        self.audit(
            AuditEntry::now(
                &s.username,
                Some(s.role),
                s.purpose,
                Action::ViewWorklist,
                Outcome::Allowed,
            )
            .with_query("worklist facets".to_string()),
        )?;
        Ok(WorklistFacets {
            measures,
            providers,
            care_teams,
            assignees,
            states: STATES
                .iter()
                .map(|(id, label)| Choice {
                    id: (*id).into(),
                    label: (*label).into(),
                })
                .collect(),
            saved_views,
        })
    }

    pub fn save_worklist_view(&self, name: &str, q: &WorklistQuery) -> Result<(), WsError> {
        let s = self.authorize(Action::ViewWorklist)?;
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 60 {
            return Err(WsError::invalid(
                "Give the view a name of up to 60 characters.",
            ));
        }
        map_query(q)?;
        self.cache().save_view(
            &s.username,
            name,
            &serde_json::to_string(q).unwrap_or_default(),
        )?;
        self.audit(
            AuditEntry::now(
                &s.username,
                Some(s.role),
                s.purpose,
                Action::ViewWorklist,
                Outcome::Allowed,
            )
            .with_query("save worklist view".to_string()),
        )
    }

    pub fn delete_worklist_view(&self, name: &str) -> Result<(), WsError> {
        let s = self.authorize(Action::ViewWorklist)?;
        self.cache().delete_view(&s.username, name)?;
        self.audit(
            AuditEntry::now(
                &s.username,
                Some(s.role),
                s.purpose,
                Action::ViewWorklist,
                Outcome::Allowed,
            )
            .with_query("delete worklist view".to_string()),
        )
    }

    /// A patient's gaps (status, evidence, what would close them) and recent actions.
    pub fn patient_gaps(&self, patient_id: &str) -> Result<PatientGaps, WsError> {
        let s = self.authorize(Action::ViewTimeline)?;
        self.check_in_panel(&s, Action::ViewTimeline, patient_id)?;
        let result = (|| {
            let cache = self.cache();
            let packages: HashMap<String, cache::MeasurePackageRow> = cache
                .measure_packages()?
                .into_iter()
                .map(|m| (m.measure_id.clone(), m))
                .collect();
            let gaps = cache
                .patient_gaps(patient_id)?
                .into_iter()
                .map(|g| {
                    let pkg = packages.get(&g.measure_id);
                    let work = g.work.unwrap_or_default();
                    PatientGap {
                        measure: pkg.map_or(g.measure_id.clone(), |p| p.short_name.clone()),
                        title: pkg.map_or(g.measure_id.clone(), |p| p.title.clone()),
                        closes_with: requirements_of(pkg, &g.group_id),
                        why_open: serde_json::from_str(&g.why_open).unwrap_or_default(),
                        evidence: serde_json::from_str::<Vec<Json>>(&g.evidence)
                            .unwrap_or_default()
                            .iter()
                            .filter_map(|e| {
                                Some(EvidenceLink {
                                    population: e.get("population")?.as_str()?.into(),
                                    resource_type: e.get("resource_type")?.as_str()?.into(),
                                    id: e.get("id")?.as_str()?.into(),
                                })
                            })
                            .collect(),
                        measure_id: g.measure_id,
                        group_id: g.group_id,
                        status: g.status,
                        since: g.since,
                        state: if work.state.is_empty() {
                            "new".into()
                        } else {
                            work.state
                        },
                        assignee: work.assignee,
                        snoozed_until: work.snoozed_until,
                        visit_date: work.visit_date,
                        last_outreach: work.last_outreach,
                        last_outreach_at: work.last_outreach_at,
                    }
                })
                .collect();
            let actions = cache
                .patient_actions(patient_id, 50)?
                .into_iter()
                .map(|a| ActionRecord {
                    summary: serde_json::from_str::<Json>(&a.body)
                        .ok()
                        .and_then(|b| b.get("summary")?.as_str().map(str::to_string))
                        .unwrap_or_default(),
                    id: a.id,
                    at: a.created_at,
                    user: a.username,
                    kind: a.kind,
                    measure_id: a.measure_id,
                })
                .collect();
            Ok::<_, WsError>(PatientGaps {
                patient_id: patient_id.to_string(),
                gaps,
                actions,
            })
        })();
        let entry = |o| {
            AuditEntry::now(
                &s.username,
                Some(s.role),
                s.purpose,
                Action::ViewTimeline,
                o,
            )
            .with_patients(vec![patient_id.to_string()])
            .with_query("patient gaps".to_string())
        };
        match &result {
            Ok(_) => self.audit(entry(Outcome::Allowed))?,
            Err(e) => self.audit(entry(Outcome::Error).with_detail(e.code))?,
        }
        result
    }

    /// Applies one action to each target gap: an outbox row with its own UUID, the gap's work
    /// state, and for closure evidence the FHIR resource, after which the patient is
    /// re-evaluated at once. Each target is audited.
    pub fn worklist_action(&self, req: &ActionRequest) -> Result<Vec<ActionOutcome>, WsError> {
        let s = self.authorize(Action::UpdateWorklist)?;
        if req.targets.is_empty() {
            return Err(WsError::invalid("Choose at least one gap."));
        }
        if req.targets.len() > 1000 {
            return Err(WsError::invalid("At most 1,000 gaps at once."));
        }
        validate_action(&req.action)?;
        for t in &req.targets {
            self.check_in_panel(&s, Action::UpdateWorklist, &t.patient_id)?;
        }
        let mut out = Vec::new();
        for t in &req.targets {
            let exists = self
                .cache()
                .gap_exists(&t.patient_id, &t.measure_id, &t.group_id)?;
            if !exists {
                let e = WsError::not_found("care gap");
                self.audit(
                    AuditEntry::now(
                        &s.username,
                        Some(s.role),
                        s.purpose,
                        Action::UpdateWorklist,
                        Outcome::Error,
                    )
                    .with_patients(vec![t.patient_id.clone()])
                    .with_detail(e.code),
                )?;
                return Err(e);
            }
            let id = uuid::Uuid::new_v4().to_string();
            let at = now_rfc3339();
            let (kind, change, resource, summary) = self.plan_action(t, &req.action)?;
            let body = json!({
                "action": &req.action,
                "target": t,
                "summary": summary,
                "resource": resource.as_ref().and_then(|r| serde_json::from_str::<Json>(&r.raw).ok()),
            });
            let entry = OutboxEntry {
                id: id.clone(),
                created_at: at,
                username: s.username.clone(),
                kind: kind.into(),
                patient_id: t.patient_id.clone(),
                measure_id: Some(t.measure_id.clone()),
                group_id: Some(t.group_id.clone()),
                body: body.to_string(),
            };
            let stored = self
                .cache()
                .record_action(&entry, Some(&change), resource.as_ref());
            let audit = |o| {
                AuditEntry::now(
                    &s.username,
                    Some(s.role),
                    s.purpose,
                    Action::UpdateWorklist,
                    o,
                )
                .with_patients(vec![t.patient_id.clone()])
                .with_query(format!("{kind} {} {}", t.measure_id, t.group_id))
            };
            if let Err(e) = stored {
                let e = WsError::from(e);
                self.audit(audit(Outcome::Error).with_detail(e.code))?;
                return Err(e);
            }
            if resource.is_some() {
                self.reevaluate_patient(&t.patient_id)?;
            }
            let status = self
                .cache()
                .patient_gaps(&t.patient_id)?
                .into_iter()
                .find(|g| g.measure_id == t.measure_id && g.group_id == t.group_id)
                .map_or("not_applicable".to_string(), |g| g.status);
            self.audit(audit(Outcome::Allowed).with_detail(format!("{kind}: gap {status}")))?;
            out.push(ActionOutcome {
                action_id: id,
                target: t.clone(),
                status,
            });
        }
        Ok(out)
    }

    fn plan_action(
        &self,
        t: &GapRef,
        action: &WorklistAction,
    ) -> Result<(&'static str, WorkChange, Option<LocalResource>, String), WsError> {
        let mut change = WorkChange::default();
        Ok(match action {
            WorklistAction::Outreach {
                channel, outcome, ..
            } => {
                change.outreach = Some(format!("{channel}: {outcome}"));
                change.state = Some("in_progress".into());
                (
                    "outreach",
                    change,
                    None,
                    format!("Outreach by {channel}: {outcome}"),
                )
            }
            WorklistAction::ScheduleVisit { date } => {
                change.visit_date = Some(date.clone());
                change.state = Some("scheduled".into());
                (
                    "schedule_visit",
                    change,
                    None,
                    format!("Visit scheduled for {date}"),
                )
            }
            WorklistAction::Decline { reason } => {
                change.state = Some("declined".into());
                change.reason_code = Some(reason.clone());
                ("decline", change, None, format!("Declined: {reason}"))
            }
            WorklistAction::Exclude { reason } => {
                change.state = Some("excluded".into());
                change.reason_code = Some(reason.clone());
                ("exclude", change, None, format!("Excluded: {reason}"))
            }
            WorklistAction::Assign { assignee } => {
                if let Some(a) = assignee {
                    if self.cache().account(a)?.is_none() {
                        return Err(WsError::invalid("No such colleague."));
                    }
                }
                change.assignee = Some(assignee.clone());
                let who = assignee.clone().unwrap_or_else(|| "nobody".into());
                ("assign", change, None, format!("Assigned to {who}"))
            }
            WorklistAction::Snooze { until } => {
                change.snoozed_until = Some(until.clone());
                let text = until
                    .clone()
                    .map_or("Snooze cleared".into(), |u| format!("Snoozed until {u}"));
                ("snooze", change, None, text)
            }
            WorklistAction::Closure { evidence } => {
                let requirement = {
                    let cache = self.cache();
                    let pkg = cache
                        .measure_packages()?
                        .into_iter()
                        .find(|m| m.measure_id == t.measure_id);
                    requirements_of(pkg.as_ref(), &t.group_id)
                        .into_iter()
                        .nth(evidence.requirement as usize)
                        .ok_or_else(|| WsError::invalid("Choose what was done from the list."))?
                };
                let id = uuid::Uuid::new_v4().to_string();
                let resource = crate::closure::resource(
                    &requirement.resource_type,
                    &id,
                    &t.patient_id,
                    evidence,
                )?;
                let summary = format!(
                    "Recorded {} on {} ({})",
                    evidence
                        .display
                        .clone()
                        .unwrap_or_else(|| evidence.code.clone()),
                    evidence.date,
                    evidence.source
                );
                change.state = Some("in_progress".into());
                let local = LocalResource {
                    id,
                    patient_id: t.patient_id.clone(),
                    resource_type: requirement.resource_type,
                    raw: resource.to_string(),
                };
                ("closure_evidence", change, Some(local), summary)
            }
        })
    }
}

fn validate_action(a: &WorklistAction) -> Result<(), WsError> {
    let date = |d: &str, what: &str| {
        if valid_date(d) {
            Ok(())
        } else {
            Err(WsError::invalid(format!(
                "{what} must be a date (YYYY-MM-DD)."
            )))
        }
    };
    match a {
        WorklistAction::Outreach {
            channel,
            outcome,
            note,
        } => {
            if !OUTREACH_CHANNELS.contains(&channel.as_str()) {
                return Err(WsError::invalid("Unknown outreach channel."));
            }
            if !OUTREACH_OUTCOMES.contains(&outcome.as_str()) {
                return Err(WsError::invalid("Unknown outreach outcome."));
            }
            if note.as_ref().is_some_and(|n| n.chars().count() > 2000) {
                return Err(WsError::invalid(
                    "The note is longer than 2,000 characters.",
                ));
            }
            Ok(())
        }
        WorklistAction::ScheduleVisit { date: d } => date(d, "The visit date"),
        WorklistAction::Snooze { until: Some(d) } => date(d, "The snooze date"),
        WorklistAction::Snooze { until: None } | WorklistAction::Assign { .. } => Ok(()),
        WorklistAction::Decline { reason } if DECLINE_REASONS.contains(&reason.as_str()) => Ok(()),
        WorklistAction::Exclude { reason } if EXCLUDE_REASONS.contains(&reason.as_str()) => Ok(()),
        WorklistAction::Decline { .. } | WorklistAction::Exclude { .. } => {
            Err(WsError::invalid("Choose a reason from the list."))
        }
        WorklistAction::Closure { evidence: e } => {
            date(&e.date, "The date it was done")?;
            if e.date > today() {
                return Err(WsError::invalid("The date it was done is in the future."));
            }
            if e.code.trim().is_empty() || e.system.trim().is_empty() {
                return Err(WsError::invalid("Choose what was done (a code)."));
            }
            if !matches!(e.source.as_str(), "patient-reported" | "outside-record") {
                return Err(WsError::invalid(
                    "Say where the information comes from: patient-reported or outside record.",
                ));
            }
            if e.value.is_some_and(|v| !v.is_finite()) {
                return Err(WsError::invalid("The value is not a number."));
            }
            Ok(())
        }
    }
}

/// Whether every stored result is current for `set`: the last complete run had the same
/// setup (engine, packages, period), nothing failed, and nothing was imported since it started
/// (actions re-evaluate their patient at once).
pub(crate) fn results_current(cache: &Cache, set: &MeasureSet) -> Result<bool, WsError> {
    let last = cache.last_eval_run()?;
    let imported = cache.setting("last_import_at")?;
    Ok(last.as_ref().is_some_and(|r| {
        r.setup == set.setup
            && r.failed == 0
            && imported
                .as_deref()
                .is_none_or(|i| i < r.started_at.as_str())
    }))
}
