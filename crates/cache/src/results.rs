//! Reading stored evaluation results the way dashboards and reports sum them: one measure's
//! rows through its index, rows summed by population counts and strata (one row per distinct
//! combination, with how many patients have it), the stratum values and supplemental data
//! stored once each (`result_value`), each patient's provider and care teams, and each result's
//! history (what was stored on a given day, for the trend by month).
//!
//! Writing: [`ValueIds`] interns stratum and supplemental-data JSON, [`HistoryWriter`] keeps
//! `measure_result_history` in step with `measure_result` inside `Cache::store_evaluations`.

use std::collections::HashMap;

use rusqlite::{params, OptionalExtension, Transaction};

use crate::{Cache, CacheError, PopulationCounts, StoredResult};

/// One stored result: a patient's counts in one measure group, with its stratum values and
/// supplemental data (`result_value` ids; see [`Cache::result_values`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultRow {
    pub patient_id: String,
    pub measure_id: String,
    pub group_id: String,
    pub counts: PopulationCounts,
    pub strata: Option<i64>,
    pub sde: Option<i64>,
}

/// How many patients of one measure group share the same counts and stratum values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultTally {
    pub measure_id: String,
    pub group_id: String,
    pub counts: PopulationCounts,
    pub strata: Option<i64>,
    pub patients: u64,
}

/// One stored result as it was from `valid_from` until `valid_to` (exclusive; `None` while
/// current). Days are `YYYY-MM-DD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRow {
    pub patient_id: String,
    pub group_id: String,
    pub counts: PopulationCounts,
    pub valid_from: String,
    pub valid_to: Option<String>,
}

fn counts_at(r: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<PopulationCounts> {
    Ok(PopulationCounts {
        ip: r.get(first)?,
        denom: r.get(first + 1)?,
        denex: r.get(first + 2)?,
        denexcep: r.get(first + 3)?,
        numer: r.get(first + 4)?,
        numex: r.get(first + 5)?,
    })
}

impl Cache {
    /// The stored results of `measure` (every measure with `None`), in no particular order.
    pub fn result_rows(&self, measure: Option<&str>) -> Result<Vec<ResultRow>, CacheError> {
        let sql = "SELECT patient_id, measure_id, group_id, ip, denom, denex, denexcep, numer,
                          numex, strata, sde
                   FROM measure_result";
        let map = |r: &rusqlite::Row<'_>| {
            Ok(ResultRow {
                patient_id: r.get(0)?,
                measure_id: r.get(1)?,
                group_id: r.get(2)?,
                counts: counts_at(r, 3)?,
                strata: r.get(9)?,
                sde: r.get(10)?,
            })
        };
        let rows = match measure {
            Some(m) => {
                let mut stmt = self.conn.prepare_cached(&format!(
                    "{sql} INDEXED BY measure_result_measure WHERE measure_id = ?1"
                ))?;
                let rows = stmt.query_map([m], map)?.collect::<Result<Vec<_>, _>>()?;
                rows
            }
            None => {
                let mut stmt = self.conn.prepare_cached(sql)?;
                let rows = stmt.query_map([], map)?.collect::<Result<Vec<_>, _>>()?;
                rows
            }
        };
        Ok(rows)
    }

    /// The stored results of every patient, summed by measure group, counts and stratum
    /// values (of `measure` only with `Some`).
    pub fn result_tallies(&self, measure: Option<&str>) -> Result<Vec<ResultTally>, CacheError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT measure_id, group_id, ip, denom, denex, denexcep, numer, numex, strata,
                    count(*)
             FROM measure_result INDEXED BY measure_result_measure
             WHERE ?1 IS NULL OR measure_id = ?1
             GROUP BY measure_id, group_id, ip, denom, denex, denexcep, numer, numex, strata",
        )?;
        let rows = stmt
            .query_map([measure], |r| {
                Ok(ResultTally {
                    measure_id: r.get(0)?,
                    group_id: r.get(1)?,
                    counts: counts_at(r, 2)?,
                    strata: r.get(8)?,
                    patients: r.get::<_, i64>(9)? as u64,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Every stored stratum-values and supplemental-data JSON by id.
    pub fn result_values(&self) -> Result<HashMap<i64, String>, CacheError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, json FROM result_value")?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<HashMap<_, _>, _>>()?;
        Ok(rows)
    }

    /// `(patient id, provider id)` of every patient with a provider (their PCP).
    pub fn patient_providers(&self) -> Result<Vec<(String, String)>, CacheError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, pcp_id FROM patients INDEXED BY patients_pcp WHERE pcp_id IS NOT NULL",
        )?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// `(group id, patient id)` of every panel membership.
    pub fn group_memberships(&self) -> Result<Vec<(String, String)>, CacheError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT group_id, patient_id FROM group_members")?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// The history of `measure`'s stored results that overlaps `[from, to]` (days).
    pub fn result_history(
        &self,
        measure: &str,
        from: &str,
        to: &str,
    ) -> Result<Vec<HistoryRow>, CacheError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT patient_id, group_id, ip, denom, denex, denexcep, numer, numex, valid_from,
                    valid_to
             FROM measure_result_history
             WHERE measure_id = ?1 AND valid_from <= ?3 AND (valid_to IS NULL OR valid_to > ?2)",
        )?;
        let rows = stmt
            .query_map(params![measure, from, to], |r| {
                Ok(HistoryRow {
                    patient_id: r.get(0)?,
                    group_id: r.get(1)?,
                    counts: counts_at(r, 2)?,
                    valid_from: r.get(8)?,
                    valid_to: r.get(9)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// The results stored at the end of `day`, of every patient (or with `patients`, of
    /// those), summed by measure group and counts (`strata` is `None`).
    pub fn result_tallies_on(
        &self,
        day: &str,
        patients: Option<&std::collections::HashSet<String>>,
    ) -> Result<Vec<ResultTally>, CacheError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT measure_id, group_id, ip, denom, denex, denexcep, numer, numex, patient_id
             FROM measure_result_history
             WHERE valid_from <= ?1 AND (valid_to IS NULL OR valid_to > ?1)",
        )?;
        let mut sums: HashMap<(String, String, PopulationCounts), u64> = HashMap::new();
        let mut rows = stmt.query([day])?;
        while let Some(r) = rows.next()? {
            if let Some(set) = patients {
                let id: &str = r.get_ref(8)?.as_str().map_err(rusqlite::Error::from)?;
                if !set.contains(id) {
                    continue;
                }
            }
            let key = (r.get(0)?, r.get(1)?, counts_at(r, 2)?);
            *sums.entry(key).or_default() += 1;
        }
        Ok(sums
            .into_iter()
            .map(|((measure_id, group_id, counts), patients)| ResultTally {
                measure_id,
                group_id,
                counts,
                strata: None,
                patients,
            })
            .collect())
    }
}

/// Ids of stratum-values and supplemental-data JSON, inserted when new (in the caller's
/// transaction), remembered for the rest of the write.
pub(crate) struct ValueIds<'t> {
    tx: &'t Transaction<'t>,
    known: HashMap<String, i64>,
}

impl<'t> ValueIds<'t> {
    pub(crate) fn new(tx: &'t Transaction<'t>) -> Result<Self, CacheError> {
        Ok(ValueIds {
            tx,
            known: HashMap::new(),
        })
    }

    pub(crate) fn id(&mut self, json: Option<&str>) -> Result<Option<i64>, CacheError> {
        let Some(json) = json else { return Ok(None) };
        if let Some(&id) = self.known.get(json) {
            return Ok(Some(id));
        }
        let found: Option<i64> = self
            .tx
            .prepare_cached("SELECT id FROM result_value WHERE json = ?1")?
            .query_row([json], |r| r.get(0))
            .optional()?;
        let id = match found {
            Some(id) => id,
            None => {
                self.tx
                    .prepare_cached("INSERT INTO result_value(json) VALUES (?1)")?
                    .execute([json])?;
                self.tx.last_insert_rowid()
            }
        };
        self.known.insert(json.to_string(), id);
        Ok(Some(id))
    }
}

/// Keeps `measure_result_history` in step: a result whose counts changed (or that is gone)
/// ends today, a new or changed one starts today; one replaced again the same day leaves no
/// trace of its earlier value.
pub(crate) struct HistoryWriter<'t> {
    tx: &'t Transaction<'t>,
    day: String,
}

impl<'t> HistoryWriter<'t> {
    pub(crate) fn new(tx: &'t Transaction<'t>, day: &str) -> Result<Self, CacheError> {
        Ok(HistoryWriter {
            tx,
            day: day.to_string(),
        })
    }

    /// Called before `patient`'s stored results are replaced by `new`: the results stored
    /// now (`measure_result`) are the history's current rows.
    pub(crate) fn replace(
        &mut self,
        patient: &str,
        new: &[StoredResult],
    ) -> Result<(), CacheError> {
        let mut current: HashMap<(String, String), PopulationCounts> = HashMap::new();
        {
            let mut stmt = self.tx.prepare_cached(
                "SELECT measure_id, group_id, ip, denom, denex, denexcep, numer, numex
                 FROM measure_result WHERE patient_id = ?1",
            )?;
            let mut rows = stmt.query([patient])?;
            while let Some(r) = rows.next()? {
                current.insert((r.get(0)?, r.get(1)?), counts_at(r, 2)?);
            }
        }
        let mut end = self.tx.prepare_cached(
            "UPDATE measure_result_history SET valid_to = ?4
             WHERE measure_id = ?2 AND group_id = ?3 AND patient_id = ?1 AND valid_to IS NULL",
        )?;
        let mut drop_same_day = self.tx.prepare_cached(
            "DELETE FROM measure_result_history
             WHERE measure_id = ?2 AND group_id = ?3 AND patient_id = ?1 AND valid_from = ?4",
        )?;
        // A row started today and replaced today is replaced in place.
        let mut start = self.tx.prepare_cached(
            "INSERT OR REPLACE INTO measure_result_history(patient_id, measure_id, group_id, ip,
                    denom, denex, denexcep, numer, numex, valid_from, valid_to)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, NULL)",
        )?;
        for r in new {
            let key = (r.measure_id.clone(), r.group_id.clone());
            match current.remove(&key) {
                Some(c) if c == r.counts => continue,
                Some(_) => {
                    end.execute(params![patient, r.measure_id, r.group_id, self.day])?;
                }
                None => {}
            }
            let c = r.counts;
            start.execute(params![
                patient,
                r.measure_id,
                r.group_id,
                c.ip,
                c.denom,
                c.denex,
                c.denexcep,
                c.numer,
                c.numex,
                self.day
            ])?;
        }
        for (measure, group) in current.keys() {
            end.execute(params![patient, measure, group, self.day])?;
            drop_same_day.execute(params![patient, measure, group, self.day])?;
        }
        Ok(())
    }
}

/// Ends today the current history of patients no longer in the panel.
pub(crate) fn close_history_of_missing(tx: &Transaction<'_>) -> Result<(), CacheError> {
    tx.execute(
        "UPDATE measure_result_history SET valid_to = date('now')
         WHERE valid_to IS NULL AND patient_id NOT IN (SELECT id FROM patients)",
        [],
    )?;
    tx.execute(
        "DELETE FROM measure_result_history WHERE valid_to = valid_from",
        [],
    )?;
    Ok(())
}
