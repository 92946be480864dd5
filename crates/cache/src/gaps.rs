//! Stored evaluation results, care gaps and their evidence, the care team's work on each gap,
//! and the outbox of worklist actions. The cache stores; it does not decide: gap statuses come
//! from `ecqm::gap_status` through the workstation.

use std::collections::{HashMap, HashSet};

use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::{Cache, CacheError};

/// One measure as last evaluated (`measure_package`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeasurePackageRow {
    pub measure_id: String,
    pub short_name: String,
    pub title: String,
    pub version: Option<String>,
    pub url: Option<String>,
    /// JSON of `ecqm::MeasureDef`.
    pub definition: String,
    /// JSON object: group id → the ELM's closing requirements.
    pub requirements: String,
}

/// Population counts of one patient in one measure group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct PopulationCounts {
    pub ip: u32,
    pub denom: u32,
    pub denex: u32,
    pub denexcep: u32,
    pub numer: u32,
    pub numex: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredResult {
    pub measure_id: String,
    pub group_id: String,
    pub counts: PopulationCounts,
    /// JSON array of `[stratifier id, value]`, when the group has stratifiers.
    pub strata: Option<String>,
    /// JSON array of `[supplemental data id, the codes its value carries]` (what QRDA III
    /// counts: `ecqm::qrda3::sde_value_codes`), when they were evaluated.
    pub sde: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredGap {
    pub measure_id: String,
    pub group_id: String,
    /// `open`, `closed` or `prospective`.
    pub status: String,
    /// JSON array of `{name, text}`.
    pub why_open: String,
    /// JSON array of `{population, resource_type, id}`.
    pub evidence: String,
}

/// Everything one evaluation of one patient produced.
#[derive(Debug, Clone, PartialEq)]
pub struct PatientEvaluation {
    pub patient_id: String,
    pub data_hash: String,
    pub results: Vec<StoredResult>,
    pub gaps: Vec<StoredGap>,
}

/// What a run covered (`eval_run`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvalRun {
    pub id: i64,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub period_start: String,
    pub period_end: String,
    pub setup: String,
    pub patients: u64,
    pub evaluated: u64,
    pub failed: u64,
}

/// A patient's resources as stored (JSON text), for evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientResources {
    pub patient_id: String,
    pub resources: Vec<String>,
}

/// The care team's state of one gap (`gap_work`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GapWork {
    pub state: String,
    pub assignee: Option<String>,
    pub snoozed_until: Option<String>,
    pub visit_date: Option<String>,
    pub reason_code: Option<String>,
    pub last_outreach_at: Option<String>,
    pub last_outreach: Option<String>,
}

/// A change to a gap's work state, applied with its outbox row in one transaction.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WorkChange {
    pub state: Option<String>,
    pub assignee: Option<Option<String>>,
    pub snoozed_until: Option<Option<String>>,
    pub visit_date: Option<String>,
    pub reason_code: Option<String>,
    pub outreach: Option<String>,
}

/// One worklist action for the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    pub id: String,
    pub created_at: String,
    pub username: String,
    pub kind: String,
    pub patient_id: String,
    pub measure_id: Option<String>,
    pub group_id: Option<String>,
    /// JSON.
    pub body: String,
}

/// A resource recorded in the app (closure evidence).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResource {
    pub id: String,
    pub patient_id: String,
    pub resource_type: String,
    pub raw: String,
}

/// A panel (Group): a care team's or a practitioner's patients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInfo {
    pub id: String,
    pub name: Option<String>,
    pub practitioner_id: Option<String>,
    pub size: u64,
}

/// A stored gap of one patient, with its work state, for the timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatientGap {
    pub measure_id: String,
    pub group_id: String,
    pub status: String,
    pub since: String,
    pub why_open: String,
    pub evidence: String,
    pub work: Option<GapWork>,
}

const RESOURCES_CHUNK: usize = 256;

impl Cache {
    /// Every patient id, sorted.
    pub fn patient_ids(&self) -> Result<Vec<String>, CacheError> {
        let mut stmt = self.conn.prepare("SELECT id FROM patients ORDER BY id")?;
        let ids = stmt
            .query_map([], |r| r.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        Ok(ids)
    }

    /// Resources with no patient (Medication, Location, ...), which patients' resources
    /// reference: `(resource type, id, JSON)`.
    pub fn shared_resources(&self) -> Result<Vec<(String, String, String)>, CacheError> {
        let mut stmt = self.conn.prepare(
            "SELECT resource_type, resource_id, raw FROM other_resources
             WHERE patient_id IS NULL AND resource_id IS NOT NULL",
        )?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// The stored resources of each patient in `ids` (the Patient first, then clinical
    /// resources, other resources and resources recorded in the app), in `ids` order.
    pub fn patient_resources(&self, ids: &[String]) -> Result<Vec<PatientResources>, CacheError> {
        let mut out: Vec<PatientResources> = ids
            .iter()
            .map(|id| PatientResources {
                patient_id: id.clone(),
                resources: Vec::new(),
            })
            .collect();
        let index: HashMap<&str, usize> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.as_str(), i))
            .collect();
        for chunk in ids.chunks(RESOURCES_CHUNK) {
            let marks = vec!["?"; chunk.len()].join(",");
            for sql in [
                format!("SELECT id, raw FROM patients WHERE id IN ({marks})"),
                format!("SELECT patient_id, raw FROM events WHERE patient_id IN ({marks}) ORDER BY patient_id, id"),
                format!("SELECT patient_id, raw FROM other_resources WHERE patient_id IN ({marks}) ORDER BY patient_id, id"),
                format!("SELECT patient_id, raw FROM local_resource WHERE patient_id IN ({marks}) ORDER BY patient_id, rowid"),
            ] {
                let mut stmt = self.conn.prepare_cached(&sql)?;
                let mut rows = stmt.query(rusqlite::params_from_iter(chunk.iter()))?;
                while let Some(r) = rows.next()? {
                    let pid: String = r.get(0)?;
                    if let Some(&i) = index.get(pid.as_str()) {
                        out[i].resources.push(r.get(1)?);
                    }
                }
            }
        }
        Ok(out)
    }

    /// `patient id → (data hash, setup)` of the stored evaluations.
    pub fn eval_state(&self) -> Result<HashMap<String, (String, String)>, CacheError> {
        let mut stmt = self
            .conn
            .prepare("SELECT patient_id, data_hash, setup FROM eval_patient")?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))?
            .collect::<Result<HashMap<_, _>, _>>()?;
        Ok(rows)
    }

    /// Replaces the stored measure definitions.
    pub fn store_measure_packages(&self, rows: &[MeasurePackageRow]) -> Result<(), CacheError> {
        let tx = self.conn.unchecked_transaction()?;
        tx.execute("DELETE FROM measure_package", [])?;
        {
            let mut ins = tx.prepare(
                "INSERT INTO measure_package(measure_id, short_name, title, version, url, definition, requirements)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for r in rows {
                ins.execute(params![
                    r.measure_id,
                    r.short_name,
                    r.title,
                    r.version,
                    r.url,
                    r.definition,
                    r.requirements
                ])?;
            }
        }
        tx.commit()?;
        self.invalidate_worklist();
        Ok(())
    }

    pub fn measure_packages(&self) -> Result<Vec<MeasurePackageRow>, CacheError> {
        let mut stmt = self.conn.prepare(
            "SELECT measure_id, short_name, title, version, url, definition, requirements
             FROM measure_package ORDER BY short_name",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok(MeasurePackageRow {
                    measure_id: r.get(0)?,
                    short_name: r.get(1)?,
                    title: r.get(2)?,
                    version: r.get(3)?,
                    url: r.get(4)?,
                    definition: r.get(5)?,
                    requirements: r.get(6)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Starts a run; returns its id.
    pub fn begin_eval_run(
        &self,
        started_at: &str,
        period: (&str, &str),
        setup: &str,
        patients: u64,
    ) -> Result<i64, CacheError> {
        self.conn.execute(
            "INSERT INTO eval_run(started_at, period_start, period_end, setup, patients, evaluated)
             VALUES (?1, ?2, ?3, ?4, ?5, 0)",
            params![started_at, period.0, period.1, setup, patients as i64],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    pub fn finish_eval_run(
        &self,
        id: i64,
        finished_at: &str,
        evaluated: u64,
        failed: u64,
    ) -> Result<(), CacheError> {
        self.conn.execute(
            "UPDATE eval_run SET finished_at = ?2, evaluated = ?3, failed = ?4 WHERE id = ?1",
            params![id, finished_at, evaluated as i64, failed as i64],
        )?;
        // The worklist's due dates and measure names come from the finished run.
        if evaluated > 0 {
            self.invalidate_worklist();
        }
        Ok(())
    }

    /// The latest finished run.
    pub fn last_eval_run(&self) -> Result<Option<EvalRun>, CacheError> {
        Ok(self
            .conn
            .query_row(
                "SELECT id, started_at, finished_at, period_start, period_end, setup, patients,
                        evaluated, failed
                 FROM eval_run WHERE finished_at IS NOT NULL ORDER BY id DESC LIMIT 1",
                [],
                |r| {
                    Ok(EvalRun {
                        id: r.get(0)?,
                        started_at: r.get(1)?,
                        finished_at: r.get(2)?,
                        period_start: r.get(3)?,
                        period_end: r.get(4)?,
                        setup: r.get(5)?,
                        patients: r.get::<_, i64>(6)? as u64,
                        evaluated: r.get::<_, i64>(7)? as u64,
                        failed: r.get::<_, i64>(8)? as u64,
                    })
                },
            )
            .optional()?)
    }

    /// Replaces the stored results and gaps of each evaluated patient, in one transaction.
    /// A gap keeps its `since` while its status stays the same.
    pub fn store_evaluations(
        &self,
        evals: &[PatientEvaluation],
        setup: &str,
        at: &str,
    ) -> Result<(), CacheError> {
        let tx = self.conn.unchecked_transaction()?;
        {
            let mut old_since = tx.prepare_cached(
                "SELECT measure_id, group_id, status, since FROM care_gap WHERE patient_id = ?1",
            )?;
            let mut del_results =
                tx.prepare_cached("DELETE FROM measure_result WHERE patient_id = ?1")?;
            let mut del_gaps = tx.prepare_cached("DELETE FROM care_gap WHERE patient_id = ?1")?;
            let mut ins_result = tx.prepare_cached(
                "INSERT INTO measure_result(patient_id, measure_id, group_id, ip, denom, denex,
                        denexcep, numer, numex, strata, sde)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?;
            let mut values = crate::results::ValueIds::new(&tx)?;
            let mut history = crate::results::HistoryWriter::new(&tx, &at[..at.len().min(10)])?;
            let mut ins_gap = tx.prepare_cached(
                "INSERT INTO care_gap(patient_id, measure_id, group_id, status, why_open, why_line,
                        evidence, since)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            let mut state = tx.prepare_cached(
                "INSERT INTO eval_patient(patient_id, data_hash, setup, evaluated_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(patient_id) DO UPDATE SET data_hash = excluded.data_hash,
                    setup = excluded.setup, evaluated_at = excluded.evaluated_at",
            )?;
            for e in evals {
                let mut since: HashMap<(String, String), (String, String)> = HashMap::new();
                let mut rows = old_since.query([&e.patient_id])?;
                while let Some(r) = rows.next()? {
                    since.insert((r.get(0)?, r.get(1)?), (r.get(2)?, r.get(3)?));
                }
                drop(rows);
                history.replace(&e.patient_id, &e.results)?;
                del_results.execute([&e.patient_id])?;
                del_gaps.execute([&e.patient_id])?;
                for r in &e.results {
                    let c = r.counts;
                    let strata = values.id(r.strata.as_deref())?;
                    let sde = values.id(r.sde.as_deref())?;
                    ins_result.execute(params![
                        e.patient_id,
                        r.measure_id,
                        r.group_id,
                        c.ip,
                        c.denom,
                        c.denex,
                        c.denexcep,
                        c.numer,
                        c.numex,
                        strata,
                        sde
                    ])?;
                }
                for g in &e.gaps {
                    let key = (g.measure_id.clone(), g.group_id.clone());
                    let first = match since.get(&key) {
                        Some((status, at_old)) if *status == g.status => at_old.as_str(),
                        _ => at,
                    };
                    ins_gap.execute(params![
                        e.patient_id,
                        g.measure_id,
                        g.group_id,
                        g.status,
                        g.why_open,
                        crate::worklist::first_text(&g.why_open),
                        g.evidence,
                        first
                    ])?;
                }
                state.execute(params![e.patient_id, e.data_hash, setup, at])?;
            }
        }
        tx.commit()?;
        let ids: HashSet<&str> = evals.iter().map(|e| e.patient_id.as_str()).collect();
        self.refresh_worklist_patients(&ids)?;
        Ok(())
    }

    /// Drops stored results of patients no longer in the panel; returns how many.
    pub fn forget_missing_patients(&self) -> Result<u64, CacheError> {
        let tx = self.conn.unchecked_transaction()?;
        // Their past results stay in the history, valid until today.
        crate::results::close_history_of_missing(&tx)?;
        let mut n = 0;
        for table in ["measure_result", "care_gap", "eval_patient"] {
            n = n.max(tx.execute(
                &format!("DELETE FROM {table} WHERE patient_id NOT IN (SELECT id FROM patients)"),
                [],
            )?);
        }
        tx.commit()?;
        if n > 0 {
            self.invalidate_worklist();
        }
        Ok(n as u64)
    }

    /// Stored population counts: `(patient, measure, group, counts)`, ordered.
    pub fn measure_results(
        &self,
    ) -> Result<Vec<(String, String, String, PopulationCounts)>, CacheError> {
        let mut stmt = self.conn.prepare(
            "SELECT patient_id, measure_id, group_id, ip, denom, denex, denexcep, numer, numex
             FROM measure_result ORDER BY measure_id, group_id, patient_id",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    PopulationCounts {
                        ip: r.get(3)?,
                        denom: r.get(4)?,
                        denex: r.get(5)?,
                        denexcep: r.get(6)?,
                        numer: r.get(7)?,
                        numex: r.get(8)?,
                    },
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Gap counts by `(measure, group, status)`.
    pub fn gap_counts(&self) -> Result<Vec<(String, String, String, u64)>, CacheError> {
        let mut stmt = self.conn.prepare(
            "SELECT measure_id, group_id, status, count(*) FROM care_gap
             GROUP BY measure_id, group_id, status ORDER BY 1, 2, 3",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get::<_, i64>(3)? as u64))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// The stored gaps of one patient with their work state.
    pub fn patient_gaps(&self, patient_id: &str) -> Result<Vec<PatientGap>, CacheError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT g.measure_id, g.group_id, g.status, g.since, g.why_open, g.evidence,
                    w.state, w.assignee, w.snoozed_until, w.visit_date, w.reason_code,
                    w.last_outreach_at, w.last_outreach
             FROM care_gap g LEFT JOIN gap_work w
               ON w.patient_id = g.patient_id AND w.measure_id = g.measure_id AND w.group_id = g.group_id
             WHERE g.patient_id = ?1 ORDER BY g.status DESC, g.measure_id, g.group_id",
        )?;
        let rows = stmt
            .query_map([patient_id], |r| {
                let state: Option<String> = r.get(6)?;
                Ok(PatientGap {
                    measure_id: r.get(0)?,
                    group_id: r.get(1)?,
                    status: r.get(2)?,
                    since: r.get(3)?,
                    why_open: r.get(4)?,
                    evidence: r.get(5)?,
                    work: match state {
                        None => None,
                        Some(state) => Some(GapWork {
                            state,
                            assignee: r.get(7)?,
                            snoozed_until: r.get(8)?,
                            visit_date: r.get(9)?,
                            reason_code: r.get(10)?,
                            last_outreach_at: r.get(11)?,
                            last_outreach: r.get(12)?,
                        }),
                    },
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Whether `patient_id` has a stored gap for the measure group.
    pub fn gap_exists(
        &self,
        patient_id: &str,
        measure_id: &str,
        group_id: &str,
    ) -> Result<bool, CacheError> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM care_gap WHERE patient_id = ?1 AND measure_id = ?2 AND group_id = ?3",
                params![patient_id, measure_id, group_id],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Records one worklist action: its outbox row, the change to the gap's work state (when it
    /// names a gap) and the resource it recorded (closure evidence), in one transaction.
    pub fn record_action(
        &self,
        entry: &OutboxEntry,
        change: Option<&WorkChange>,
        resource: Option<&LocalResource>,
    ) -> Result<(), CacheError> {
        let tx = self.conn.unchecked_transaction()?;
        tx.execute(
            "INSERT INTO outbox(id, created_at, username, kind, patient_id, measure_id, group_id, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                entry.id,
                entry.created_at,
                entry.username,
                entry.kind,
                entry.patient_id,
                entry.measure_id,
                entry.group_id,
                entry.body
            ],
        )?;
        if let (Some(c), Some(m), Some(g)) = (change, &entry.measure_id, &entry.group_id) {
            tx.execute(
                "INSERT INTO gap_work(patient_id, measure_id, group_id, updated_at)
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                params![entry.patient_id, m, g, entry.created_at],
            )?;
            let key = params![entry.patient_id, m, g];
            let set = |sql: &str, value: &dyn rusqlite::ToSql| -> Result<(), CacheError> {
                tx.execute(
                    &format!(
                        "UPDATE gap_work SET {sql} = ?4 WHERE patient_id = ?1 AND measure_id = ?2 AND group_id = ?3"
                    ),
                    rusqlite::params_from_iter(key.iter().copied().chain([value])),
                )?;
                Ok(())
            };
            set("updated_at", &entry.created_at)?;
            if let Some(s) = &c.state {
                set("state", s)?;
            }
            if let Some(a) = &c.assignee {
                set("assignee", a)?;
            }
            if let Some(s) = &c.snoozed_until {
                set("snoozed_until", s)?;
            }
            if let Some(v) = &c.visit_date {
                set("visit_date", v)?;
            }
            if let Some(r) = &c.reason_code {
                set("reason_code", r)?;
            }
            if let Some(o) = &c.outreach {
                set("last_outreach", o)?;
                set("last_outreach_at", &entry.created_at)?;
            }
        }
        if let Some(r) = resource {
            tx.execute(
                "INSERT INTO local_resource(id, patient_id, resource_type, action_id, raw)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![r.id, r.patient_id, r.resource_type, entry.id, r.raw],
            )?;
        }
        tx.commit()?;
        self.refresh_worklist_patients(&HashSet::from([entry.patient_id.as_str()]))?;
        Ok(())
    }

    /// The outbox, oldest first (`unsent_only`: not yet acknowledged by the EDW).
    pub fn outbox(&self, unsent_only: bool) -> Result<Vec<OutboxEntry>, CacheError> {
        let mut stmt = self.conn.prepare(
            "SELECT id, created_at, username, kind, patient_id, measure_id, group_id, body
             FROM outbox WHERE (?1 = 0 OR sent_at IS NULL) ORDER BY created_at, rowid",
        )?;
        let rows = stmt
            .query_map([unsent_only as i64], outbox_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Marks actions the EDW acknowledged (stored now or already held) as sent.
    pub fn outbox_mark_sent(&self, ids: &[String], at: &str) -> Result<(), CacheError> {
        let tx = self.conn.unchecked_transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "UPDATE outbox SET sent_at = ?2, attempts = attempts + 1, last_error = NULL
                 WHERE id = ?1 AND sent_at IS NULL",
            )?;
            for id in ids {
                stmt.execute(params![id, at])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Records a failed delivery: `reason` is the server's (a refusal the user must fix)
    /// or the transport's (retried later).
    pub fn outbox_mark_failed(&self, id: &str, reason: &str) -> Result<(), CacheError> {
        self.conn.execute(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ?2 WHERE id = ?1",
            params![id, reason],
        )?;
        Ok(())
    }

    /// Unsent actions with their delivery attempts and last error, oldest first.
    pub fn outbox_pending(&self) -> Result<Vec<(OutboxEntry, u32, Option<String>)>, CacheError> {
        let mut stmt = self.conn.prepare(
            "SELECT id, created_at, username, kind, patient_id, measure_id, group_id, body,
                    attempts, last_error
             FROM outbox WHERE sent_at IS NULL ORDER BY created_at, rowid",
        )?;
        let rows = stmt
            .query_map([], |r| Ok((outbox_row(r)?, r.get(8)?, r.get(9)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// The latest actions on one patient (newest first).
    pub fn patient_actions(
        &self,
        patient_id: &str,
        limit: u32,
    ) -> Result<Vec<OutboxEntry>, CacheError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, created_at, username, kind, patient_id, measure_id, group_id, body
             FROM outbox WHERE patient_id = ?1 ORDER BY created_at DESC, rowid DESC LIMIT ?2",
        )?;
        let rows = stmt
            .query_map(params![patient_id, limit], outbox_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// The practitioner and the Groups (care-team panels) an account is linked to.
    pub fn account_links(
        &self,
        username: &str,
    ) -> Result<(Option<String>, Vec<String>), CacheError> {
        let practitioner = self
            .conn
            .query_row(
                "SELECT practitioner_id FROM accounts WHERE username = ?1",
                [username],
                |r| r.get::<_, Option<String>>(0),
            )
            .optional()?
            .flatten();
        let mut stmt = self.conn.prepare_cached(
            "SELECT group_id FROM account_groups WHERE username = ?1 ORDER BY group_id",
        )?;
        let groups = stmt
            .query_map([username], |r| r.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        Ok((practitioner, groups))
    }

    /// Links an account to a practitioner and Groups (replacing its links).
    pub fn set_account_links(
        &self,
        username: &str,
        practitioner_id: Option<&str>,
        group_ids: &[String],
    ) -> Result<(), CacheError> {
        let tx = self.conn.unchecked_transaction()?;
        let n = tx.execute(
            "UPDATE accounts SET practitioner_id = ?2 WHERE username = ?1",
            params![username, practitioner_id],
        )?;
        if n == 0 {
            return Err(CacheError::Account("no such account".into()));
        }
        tx.execute("DELETE FROM account_groups WHERE username = ?1", [username])?;
        for g in group_ids {
            tx.execute(
                "INSERT INTO account_groups(username, group_id) VALUES (?1, ?2)",
                params![username, g],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Patients attributed to a practitioner (their PCP) or members of any of `group_ids`.
    pub fn patients_linked_to(
        &self,
        practitioner_id: Option<&str>,
        group_ids: &[String],
    ) -> Result<HashSet<String>, CacheError> {
        let mut out = HashSet::new();
        if let Some(p) = practitioner_id {
            let mut stmt = self
                .conn
                .prepare_cached("SELECT id FROM patients WHERE pcp_id = ?1")?;
            for id in stmt.query_map([p], |r| r.get::<_, String>(0))? {
                out.insert(id?);
            }
        }
        let mut stmt = self
            .conn
            .prepare_cached("SELECT patient_id FROM group_members WHERE group_id = ?1")?;
        for g in group_ids {
            for id in stmt.query_map([g], |r| r.get::<_, String>(0))? {
                out.insert(id?);
            }
        }
        Ok(out)
    }

    /// The panels (Groups) with their practitioner and size.
    pub fn groups(&self) -> Result<Vec<GroupInfo>, CacheError> {
        let mut stmt = self.conn.prepare(
            "SELECT g.id, g.name, g.practitioner_id, count(m.patient_id) FROM groups g
             LEFT JOIN group_members m ON m.group_id = g.id GROUP BY g.id ORDER BY g.name, g.id",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok(GroupInfo {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    practitioner_id: r.get(2)?,
                    size: r.get::<_, i64>(3)? as u64,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// A user's saved worklist views: `(name, query JSON)`.
    pub fn saved_views(&self, username: &str) -> Result<Vec<(String, String)>, CacheError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT name, query FROM saved_view WHERE username = ?1 ORDER BY name",
        )?;
        let rows = stmt
            .query_map([username], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    pub fn save_view(&self, username: &str, name: &str, query: &str) -> Result<(), CacheError> {
        self.conn.execute(
            "INSERT INTO saved_view(username, name, query) VALUES (?1, ?2, ?3)
             ON CONFLICT(username, name) DO UPDATE SET query = excluded.query",
            params![username, name, query],
        )?;
        Ok(())
    }

    pub fn delete_view(&self, username: &str, name: &str) -> Result<bool, CacheError> {
        Ok(self.conn.execute(
            "DELETE FROM saved_view WHERE username = ?1 AND name = ?2",
            params![username, name],
        )? > 0)
    }
}

impl Cache {
    /// The latest of the patients' last visits on or before `today` (YYYY-MM-DD): when the
    /// panel's data ends. Read from the panel list (one row per patient), not the events.
    pub fn latest_visit_date(&self, today: &str) -> Result<Option<String>, CacheError> {
        Ok(self.conn.query_row(
            "SELECT max(last_visit) FROM panel_row WHERE substr(last_visit, 1, 10) <= ?1",
            [today],
            |r| r.get(0),
        )?)
    }
}

/// One outbox row, selected as `id, created_at, username, kind, patient_id, measure_id,
/// group_id, body`.
fn outbox_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<OutboxEntry> {
    Ok(OutboxEntry {
        id: r.get(0)?,
        created_at: r.get(1)?,
        username: r.get(2)?,
        kind: r.get(3)?,
        patient_id: r.get(4)?,
        measure_id: r.get(5)?,
        group_id: r.get(6)?,
        body: r.get(7)?,
    })
}
