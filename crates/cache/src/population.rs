//! What the population page reads: the panel rows' demographics, primary-care provider and
//! active conditions, and the patients' visits (encounter dates). Aggregation (age bands,
//! sex mix, top conditions, visits per month, patients per provider) is the caller's, over
//! the patients it may show.

use crate::{Cache, CacheError};

/// One patient as the population page counts them (from `panel_row`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PopulationPatient {
    pub patient_id: String,
    pub birth_date: Option<String>,
    pub sex: Option<String>,
    pub pcp_id: Option<String>,
    pub pcp_name: Option<String>,
    /// Active condition names (the panel row's `"; "`-separated list, split).
    pub conditions: Vec<String>,
}

impl Cache {
    /// Every patient's panel row as [`PopulationPatient`], by patient id.
    pub fn population_patients(&self) -> Result<Vec<PopulationPatient>, CacheError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT patient_id, birth_date, sex, pcp_id, pcp_name, conditions FROM panel_row
             ORDER BY patient_id",
        )?;
        let rows = stmt
            .query_map([], |r| {
                let conditions: String = r.get(5)?;
                Ok(PopulationPatient {
                    patient_id: r.get(0)?,
                    birth_date: r.get(1)?,
                    sex: r.get(2)?,
                    pcp_id: r.get(3)?,
                    pcp_name: r.get(4)?,
                    conditions: conditions
                        .split("; ")
                        .filter(|c| !c.is_empty())
                        .map(str::to_owned)
                        .collect(),
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Every visit (synced encounter event with a date): `(patient id, date as stored)`.
    pub fn visit_dates(&self) -> Result<Vec<(String, String)>, CacheError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT patient_id, date FROM events WHERE kind = 'encounter' AND date IS NOT NULL",
        )?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Every patient's name (as the panel shows it), birth date and sex (`""` when absent).
    pub fn patient_demographics(
        &self,
    ) -> Result<std::collections::HashMap<String, (String, String, String)>, CacheError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, name, coalesce(birth_date, ''), coalesce(sex, '') FROM patients",
        )?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?, r.get(3)?))))?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }
}
