//! Panel, timeline and patient-summary queries.

use rusqlite::types::Value;
use rusqlite::{params_from_iter, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

use crate::{Cache, CacheError};

/// Panel sort column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PanelSort {
    #[default]
    Name,
    BirthDate,
    /// Age ascending = birth date descending.
    Age,
    Sex,
    Pcp,
    LastVisit,
    Conditions,
    Id,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SortDir {
    #[default]
    Asc,
    Desc,
}

/// Largest page the panel query returns.
pub const MAX_PAGE: u32 = 1000;

/// Panel list filters, sort and page. Every filter is optional; they combine with AND.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PanelQuery {
    /// Case-insensitive; every whitespace-separated word must occur in "Family, Given".
    pub name: Option<String>,
    /// Age in whole years on `as_of`, inclusive bounds.
    pub min_age: Option<u32>,
    pub max_age: Option<u32>,
    /// Administrative gender code (`female`, `male`, `other`, `unknown`).
    pub sex: Option<String>,
    /// PCP practitioner id.
    pub pcp_id: Option<String>,
    /// An active condition: exact code, or case-insensitive substring of its display.
    pub condition: Option<String>,
    pub sort: PanelSort,
    pub dir: SortDir,
    pub offset: u32,
    /// Page size, 1..=1000 (default 50).
    pub limit: u32,
    /// Reference date for ages, `YYYY-MM-DD` (default: today, UTC).
    pub as_of: Option<String>,
}

impl Default for PanelQuery {
    fn default() -> Self {
        PanelQuery {
            name: None,
            min_age: None,
            max_age: None,
            sex: None,
            pcp_id: None,
            condition: None,
            sort: PanelSort::Name,
            dir: SortDir::Asc,
            offset: 0,
            limit: 50,
            as_of: None,
        }
    }
}

/// One panel list row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PanelRow {
    pub patient_id: String,
    pub name: String,
    pub birth_date: Option<String>,
    /// Whole years on the query's `as_of` date.
    pub age: Option<u32>,
    pub sex: Option<String>,
    pub pcp_id: Option<String>,
    pub pcp_name: Option<String>,
    pub last_visit: Option<String>,
    /// Active conditions, `"; "`-separated.
    pub conditions: String,
}

/// A page of the panel plus the filtered total.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PanelPage {
    pub rows: Vec<PanelRow>,
    pub total: u64,
    pub offset: u32,
    pub limit: u32,
}

/// Kinds of clinical events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Encounter,
    Condition,
    Observation,
    Procedure,
    Medication,
    Immunization,
}

impl EventKind {
    pub const ALL: [EventKind; 6] = [
        EventKind::Encounter,
        EventKind::Condition,
        EventKind::Observation,
        EventKind::Procedure,
        EventKind::Medication,
        EventKind::Immunization,
    ];

    /// Stable id as stored (`encounter`, ...).
    pub const fn id(self) -> &'static str {
        match self {
            EventKind::Encounter => "encounter",
            EventKind::Condition => "condition",
            EventKind::Observation => "observation",
            EventKind::Procedure => "procedure",
            EventKind::Medication => "medication",
            EventKind::Immunization => "immunization",
        }
    }

    pub fn from_id(s: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.id() == s)
    }
}

/// One clinical event on a timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineEvent {
    /// Row id; [`Cache::event_raw`] returns the resource JSON.
    pub id: i64,
    pub kind: EventKind,
    pub resource_id: Option<String>,
    pub date: Option<String>,
    pub end_date: Option<String>,
    pub code_system: Option<String>,
    pub code: Option<String>,
    pub display: Option<String>,
    pub value: Option<f64>,
    /// Second value (diastolic of a blood-pressure panel).
    pub value2: Option<f64>,
    pub value_text: Option<String>,
    pub unit: Option<String>,
    pub status: Option<String>,
}

/// A dated numeric result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    pub date: Option<String>,
    pub value: f64,
    pub unit: Option<String>,
}

/// A dated blood pressure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BloodPressure {
    pub date: Option<String>,
    pub systolic: f64,
    pub diastolic: f64,
    pub unit: Option<String>,
}

/// A patient's timeline: events in date order (oldest first; undated last)
/// and the latest vitals/labs used by the UI's header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    pub patient_id: String,
    pub latest_bp: Option<BloodPressure>,
    pub latest_hba1c: Option<Measurement>,
    pub latest_bmi: Option<Measurement>,
    pub events: Vec<TimelineEvent>,
}

/// Header data for one patient.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatientSummary {
    pub row: PanelRow,
    pub active: bool,
    pub deceased: bool,
    pub active_conditions: Vec<TimelineEvent>,
    pub latest_bp: Option<BloodPressure>,
    pub latest_hba1c: Option<Measurement>,
    pub latest_bmi: Option<Measurement>,
    /// Number of events per kind.
    pub event_counts: Vec<(EventKind, u64)>,
}

/// LOINC codes used for the latest vitals/labs.
pub(crate) const LOINC_BP_PANELS: [&str; 2] = ["85354-9", "55284-4"];
pub(crate) const LOINC_SYSTOLIC: &str = "8480-6";
pub(crate) const LOINC_DIASTOLIC: &str = "8462-4";
const LOINC_HBA1C: [&str; 3] = ["4548-4", "17856-6", "4549-2"];
const LOINC_BMI: [&str; 1] = ["39156-5"];

/// Today's date (UTC) as days since the epoch.
fn today_days() -> i64 {
    access::time::now_unix_ms().div_euclid(86_400_000)
}

/// The latest birth date at which someone is at least `years` old on `on`.
fn birth_date_for_age(on_days: i64, years: u32) -> String {
    let (y, m, d) = access::time::civil_from_days(on_days);
    let y = y - i64::from(years);
    let d = if m == 2 && d == 29 && !calendar::is_leap(y) {
        28
    } else {
        d
    };
    format!("{y:04}-{m:02}-{d:02}")
}

/// One `panel_row` in memory.
pub(crate) struct MemRow {
    patient_id: String,
    name: String,
    name_lc: String,
    birth_date: Option<String>,
    sex: Option<String>,
    pcp_id: Option<String>,
    pcp_name: Option<String>,
    last_visit: Option<String>,
    conditions: String,
    /// Index into [`PanelMem::cond_distinct`].
    cond: u32,
}

impl MemRow {
    fn to_row(&self, on_days: i64) -> PanelRow {
        PanelRow {
            patient_id: self.patient_id.clone(),
            name: self.name.clone(),
            birth_date: self.birth_date.clone(),
            age: self
                .birth_date
                .as_deref()
                .and_then(|b| access::time::age_on(b, on_days)),
            sex: self.sex.clone(),
            pcp_id: self.pcp_id.clone(),
            pcp_name: self.pcp_name.clone(),
            last_visit: self.last_visit.clone(),
            conditions: self.conditions.clone(),
        }
    }
}

/// The panel list in memory with lazily built sort orders (ascending by
/// column then patient id, as SQLite's BINARY collation with NULLs first).
pub(crate) struct PanelMem {
    rows: Vec<MemRow>,
    orders: [Option<Vec<u32>>; 8],
    /// Distinct `(condition_codes, lowercase conditions)` pairs: a condition
    /// filter is evaluated once per pair, not once per patient.
    cond_distinct: Vec<(String, String)>,
}

impl PanelMem {
    fn load(conn: &rusqlite::Connection) -> Result<PanelMem, CacheError> {
        let mut stmt = conn.prepare(
            "SELECT patient_id, name, name_lc, birth_date, sex, pcp_id, pcp_name, last_visit,
                    conditions, condition_codes FROM panel_row",
        )?;
        let mut distinct: std::collections::HashMap<(String, String), u32> = Default::default();
        let mut cond_distinct = Vec::new();
        let rows = stmt
            .query_map([], |r| {
                let conditions: String = r.get(8)?;
                let codes: String = r.get(9)?;
                // Few distinct pairs: lowercase each once, not once per row.
                let key = (codes, conditions);
                let cond = match distinct.get(&key) {
                    Some(&i) => i,
                    None => {
                        let i = cond_distinct.len() as u32;
                        cond_distinct.push((key.0.clone(), key.1.to_lowercase()));
                        distinct.insert(key.clone(), i);
                        i
                    }
                };
                let conditions = key.1;
                Ok(MemRow {
                    patient_id: r.get(0)?,
                    name: r.get(1)?,
                    name_lc: r.get(2)?,
                    birth_date: r.get(3)?,
                    sex: r.get(4)?,
                    pcp_id: r.get(5)?,
                    pcp_name: r.get(6)?,
                    last_visit: r.get(7)?,
                    conditions,
                    cond,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PanelMem {
            rows,
            orders: Default::default(),
            cond_distinct,
        })
    }

    /// Builds the order for `col` if needed; then read it with [`Self::order`].
    fn ensure_order(&mut self, col: PanelSort) {
        let slot = col as usize;
        if self.orders[slot].is_none() {
            let rows = &self.rows;
            let mut o: Vec<u32> = (0..rows.len() as u32).collect();
            let key = |i: u32| -> Option<&str> {
                let r = &rows[i as usize];
                match col {
                    PanelSort::Name => Some(&r.name_lc),
                    PanelSort::BirthDate | PanelSort::Age => r.birth_date.as_deref(),
                    PanelSort::Sex => r.sex.as_deref(),
                    PanelSort::Pcp => r.pcp_name.as_deref(),
                    PanelSort::LastVisit => r.last_visit.as_deref(),
                    PanelSort::Conditions => Some(&r.conditions),
                    PanelSort::Id => Some(&r.patient_id),
                }
            };
            o.sort_unstable_by(|&a, &b| {
                key(a).cmp(&key(b)).then_with(|| {
                    rows[a as usize]
                        .patient_id
                        .cmp(&rows[b as usize].patient_id)
                })
            });
            self.orders[slot] = Some(o);
        }
    }

    fn order(&self, col: PanelSort) -> &[u32] {
        self.orders[col as usize].as_deref().unwrap_or(&[])
    }
}

struct PanelFilter {
    words: Vec<String>,
    born_on_or_before: Option<String>,
    born_after: Option<String>,
    sex: Option<String>,
    pcp_id: Option<String>,
    /// (`|code|`, lowercase text)
    condition: Option<(String, String)>,
}

impl PanelFilter {
    /// Per distinct condition pair: does it pass the condition filter?
    fn condition_table(&self, mem: &PanelMem) -> Option<Vec<bool>> {
        let (code, text) = self.condition.as_ref()?;
        Some(
            mem.cond_distinct
                .iter()
                .map(|(codes, lc)| codes.contains(code.as_str()) || lc.contains(text.as_str()))
                .collect(),
        )
    }

    fn matches(&self, r: &MemRow, cond_ok: Option<&[bool]>) -> bool {
        if self.sex.is_some() && r.sex != self.sex {
            return false;
        }
        if self.pcp_id.is_some() && r.pcp_id != self.pcp_id {
            return false;
        }
        if let Some(ok) = cond_ok {
            if !ok[r.cond as usize] {
                return false;
            }
        }
        if let Some(max) = &self.born_on_or_before {
            if r.birth_date.as_ref().is_none_or(|b| b > max) {
                return false;
            }
        }
        if let Some(min) = &self.born_after {
            if r.birth_date.as_ref().is_none_or(|b| b <= min) {
                return false;
            }
        }
        self.words.iter().all(|w| r.name_lc.contains(w.as_str()))
    }
}

const PANEL_COLUMNS: &str =
    "patient_id, name, birth_date, sex, pcp_id, pcp_name, last_visit, conditions";

fn panel_row(r: &Row<'_>, on_days: i64) -> rusqlite::Result<PanelRow> {
    let birth_date: Option<String> = r.get(2)?;
    Ok(PanelRow {
        patient_id: r.get(0)?,
        name: r.get(1)?,
        age: birth_date
            .as_deref()
            .and_then(|b| access::time::age_on(b, on_days)),
        birth_date,
        sex: r.get(3)?,
        pcp_id: r.get(4)?,
        pcp_name: r.get(5)?,
        last_visit: r.get(6)?,
        conditions: r.get(7)?,
    })
}

const EVENT_COLUMNS: &str = "id, kind, resource_id, date, end_date, code_system, code, display, \
     value_num, value2_num, value_text, unit, status";

fn timeline_event(r: &Row<'_>) -> rusqlite::Result<TimelineEvent> {
    let kind: String = r.get(1)?;
    Ok(TimelineEvent {
        id: r.get(0)?,
        kind: EventKind::from_id(&kind).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                1,
                rusqlite::types::Type::Text,
                "unknown event kind".into(),
            )
        })?,
        resource_id: r.get(2)?,
        date: r.get(3)?,
        end_date: r.get(4)?,
        code_system: r.get(5)?,
        code: r.get(6)?,
        display: r.get(7)?,
        value: r.get(8)?,
        value2: r.get(9)?,
        value_text: r.get(10)?,
        unit: r.get(11)?,
        status: r.get(12)?,
    })
}

impl Cache {
    /// One page of the panel list, filtered and sorted, with the filtered total.
    ///
    /// Served from an in-memory copy of `panel_row` (loaded on first use,
    /// dropped by every import) with one precomputed order per sort column:
    /// a query is one pass over the rows in that order.
    pub fn panel(&self, q: &PanelQuery) -> Result<PanelPage, CacheError> {
        self.panel_in(q, None)
    }

    /// As [`Cache::panel`], limited to the patients in `scope` (`None`: every patient).
    pub fn panel_in(
        &self,
        q: &PanelQuery,
        scope: Option<&std::collections::HashSet<String>>,
    ) -> Result<PanelPage, CacheError> {
        if q.limit == 0 || q.limit > MAX_PAGE {
            return Err(CacheError::InvalidQuery(format!(
                "page size must be between 1 and {MAX_PAGE}"
            )));
        }
        if let (Some(a), Some(b)) = (q.min_age, q.max_age) {
            if a > b {
                return Err(CacheError::InvalidQuery(
                    "minimum age is greater than maximum age".into(),
                ));
            }
        }
        let on_days = match &q.as_of {
            None => today_days(),
            Some(s) => access::time::parse_date(s).ok_or_else(|| {
                CacheError::InvalidQuery("as_of must be a date (YYYY-MM-DD)".into())
            })?,
        };
        let filter = PanelFilter {
            words: q
                .name
                .as_deref()
                .unwrap_or("")
                .split(|c: char| c.is_whitespace() || c == ',')
                .filter(|w| !w.is_empty())
                .map(str::to_lowercase)
                .collect(),
            born_on_or_before: q.min_age.map(|a| birth_date_for_age(on_days, a)),
            born_after: q
                .max_age
                .map(|b| birth_date_for_age(on_days, b.saturating_add(1))),
            sex: q.sex.clone().filter(|s| !s.is_empty()),
            pcp_id: q.pcp_id.clone().filter(|s| !s.is_empty()),
            condition: q
                .condition
                .as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|c| (format!("|{c}|"), c.to_lowercase())),
        };
        let (col, flip) = match q.sort {
            PanelSort::Age => (PanelSort::BirthDate, true),
            other => (other, false),
        };
        let desc = (q.dir == SortDir::Desc) != flip;

        let mut guard = self.panel_mem.borrow_mut();
        if guard.is_none() {
            *guard = Some(PanelMem::load(&self.conn)?);
        }
        let mem = guard.as_mut().expect("loaded above");
        mem.ensure_order(col);
        let mem = &*mem;
        let order = mem.order(col);
        let cond_ok = filter.condition_table(mem);
        let (offset, limit) = (q.offset as usize, q.limit as usize);
        let mut total = 0usize;
        let mut rows = Vec::with_capacity(limit.min(64));
        let mut visit = |i: u32| {
            let r = &mem.rows[i as usize];
            if scope.is_none_or(|s| s.contains(&r.patient_id))
                && filter.matches(r, cond_ok.as_deref())
            {
                if total >= offset && rows.len() < limit {
                    rows.push(r.to_row(on_days));
                }
                total += 1;
            }
        };
        if desc {
            order.iter().rev().for_each(|&i| visit(i));
        } else {
            order.iter().for_each(|&i| visit(i));
        }
        Ok(PanelPage {
            rows,
            total: total as u64,
            offset: q.offset,
            limit: q.limit,
        })
    }

    /// Every distinct active-condition name on the panel with its patient
    /// count, most common first (for the condition filter's suggestions).
    pub fn panel_conditions(&self) -> Result<Vec<(String, u64)>, CacheError> {
        let mut counts: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
        let mut stmt = self.conn.prepare_cached(
            "SELECT conditions, count(*) FROM panel_row WHERE conditions <> '' GROUP BY conditions",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let set: String = r.get(0)?;
            let n = r.get::<_, i64>(1)? as u64;
            for name in set.split("; ").filter(|c| !c.is_empty()) {
                *counts.entry(name.to_owned()).or_default() += n;
            }
        }
        let mut out: Vec<(String, u64)> = counts.into_iter().collect();
        out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Ok(out)
    }

    /// Every PCP on the panel: `(practitioner id, name, patient count)`, by name.
    pub fn panel_providers(&self) -> Result<Vec<(String, Option<String>, u64)>, CacheError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT pcp_id, max(pcp_name), count(*) FROM panel_row
             WHERE pcp_id IS NOT NULL GROUP BY pcp_id ORDER BY max(pcp_name), pcp_id",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Number of patients in the cache.
    pub fn patient_count(&self) -> Result<u64, CacheError> {
        let n: i64 = self
            .conn
            .query_row("SELECT count(*) FROM patients", [], |r| r.get(0))?;
        Ok(n as u64)
    }

    /// Number of clinical events in the cache.
    pub fn event_count(&self) -> Result<u64, CacheError> {
        let n: i64 = self
            .conn
            .query_row("SELECT count(*) FROM events", [], |r| r.get(0))?;
        Ok(n as u64)
    }

    fn patient_exists(&self, patient_id: &str) -> Result<bool, CacheError> {
        Ok(self
            .conn
            .query_row("SELECT 1 FROM patients WHERE id = ?1", [patient_id], |_| {
                Ok(())
            })
            .optional()?
            .is_some())
    }

    /// A patient's timeline, limited to `kinds` (empty = all kinds).
    /// `None` if the patient is not in the cache.
    pub fn timeline(
        &self,
        patient_id: &str,
        kinds: &[EventKind],
    ) -> Result<Option<Timeline>, CacheError> {
        let tx = self.conn.unchecked_transaction()?;
        if !self.patient_exists(patient_id)? {
            return Ok(None);
        }
        let mut sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE patient_id = ?1");
        let mut params: Vec<Value> = vec![Value::Text(patient_id.to_owned())];
        if !kinds.is_empty() {
            let marks = vec!["?"; kinds.len()].join(",");
            sql.push_str(&format!(" AND kind IN ({marks})"));
            params.extend(kinds.iter().map(|k| Value::Text(k.id().to_owned())));
        }
        sql.push_str(" ORDER BY ts IS NULL, ts, id");
        let mut events = {
            let mut stmt = tx.prepare_cached(&sql)?;
            let v = stmt
                .query_map(params_from_iter(params.iter()), timeline_event)?
                .collect::<Result<Vec<_>, _>>()?;
            v
        };
        // Resources recorded here (closure evidence) join the synced events in date order.
        let local: Vec<(Option<i64>, TimelineEvent)> = {
            let mut stmt = tx.prepare_cached(
                "SELECT rowid, raw FROM local_resource WHERE patient_id = ?1 ORDER BY rowid",
            )?;
            let rows = stmt
                .query_map([patient_id], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            rows.iter()
                .filter_map(|(rowid, raw)| crate::import::local_timeline_event(*rowid, raw))
                .filter(|(_, e)| kinds.is_empty() || kinds.contains(&e.kind))
                .collect()
        };
        if !local.is_empty() {
            // `ts` as stored on import: the same conversion of the same date.
            let mut all: Vec<(Option<i64>, TimelineEvent)> = events
                .into_iter()
                .map(|e| (crate::import::fhir_ts(e.date.as_deref()), e))
                .collect();
            all.extend(local);
            all.sort_by_key(|(ts, e)| (ts.is_none(), *ts, e.id));
            events = all.into_iter().map(|(_, e)| e).collect();
        }
        let latest_bp = self.latest_bp(patient_id)?;
        let latest_hba1c = self.latest_measurement(patient_id, &LOINC_HBA1C)?;
        let latest_bmi = self.latest_measurement(patient_id, &LOINC_BMI)?;
        tx.commit()?;
        Ok(Some(Timeline {
            patient_id: patient_id.to_owned(),
            latest_bp,
            latest_hba1c,
            latest_bmi,
            events,
        }))
    }

    /// The stored JSON of one event (by [`TimelineEvent::id`]).
    pub fn event_raw(&self, event_id: i64) -> Result<Option<String>, CacheError> {
        Ok(self
            .conn
            .query_row(
                if event_id < 0 {
                    // A resource recorded on this workstation (see `Cache::timeline`).
                    "SELECT raw FROM local_resource WHERE rowid = -?1"
                } else {
                    "SELECT raw FROM events WHERE id = ?1"
                },
                [event_id],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// The stored JSON of a Patient resource.
    pub fn patient_raw(&self, patient_id: &str) -> Result<Option<String>, CacheError> {
        Ok(self
            .conn
            .query_row(
                "SELECT raw FROM patients WHERE id = ?1",
                [patient_id],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn latest_measurement(
        &self,
        patient_id: &str,
        codes: &[&str],
    ) -> Result<Option<Measurement>, CacheError> {
        let marks = vec!["?"; codes.len()].join(",");
        let sql = format!(
            "SELECT date, value_num, unit FROM events
             WHERE patient_id = ? AND kind = 'observation' AND value_num IS NOT NULL
               AND code IN ({marks})
             ORDER BY ts IS NULL, ts DESC, id DESC LIMIT 1"
        );
        let mut params: Vec<&str> = vec![patient_id];
        params.extend_from_slice(codes);
        let mut stmt = self.conn.prepare_cached(&sql)?;
        Ok(stmt
            .query_row(params_from_iter(params), |r| {
                Ok(Measurement {
                    date: r.get(0)?,
                    value: r.get(1)?,
                    unit: r.get(2)?,
                })
            })
            .optional()?)
    }

    /// Latest BP: a BP panel with both components, or else a systolic and a
    /// diastolic observation with the same date.
    fn latest_bp(&self, patient_id: &str) -> Result<Option<BloodPressure>, CacheError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT date, value_num, value2_num, unit, ts FROM events
             WHERE patient_id = ?1 AND kind = 'observation' AND code IN (?2, ?3)
               AND value_num IS NOT NULL AND value2_num IS NOT NULL
             ORDER BY ts IS NULL, ts DESC, id DESC LIMIT 1",
        )?;
        let panel = stmt
            .query_row([patient_id, LOINC_BP_PANELS[0], LOINC_BP_PANELS[1]], |r| {
                Ok((
                    BloodPressure {
                        date: r.get(0)?,
                        systolic: r.get(1)?,
                        diastolic: r.get(2)?,
                        unit: r.get(3)?,
                    },
                    r.get::<_, Option<i64>>(4)?,
                ))
            })
            .optional()?;
        let mut stmt = self.conn.prepare_cached(
            "SELECT s.date, s.value_num, d.value_num, s.unit, s.ts
             FROM events s JOIN events d
               ON d.patient_id = s.patient_id AND d.ts = s.ts AND d.kind = 'observation'
              AND d.code = ?3 AND d.value_num IS NOT NULL
             WHERE s.patient_id = ?1 AND s.kind = 'observation' AND s.code = ?2
               AND s.value_num IS NOT NULL
             ORDER BY s.ts DESC, s.id DESC LIMIT 1",
        )?;
        let pair = stmt
            .query_row([patient_id, LOINC_SYSTOLIC, LOINC_DIASTOLIC], |r| {
                Ok((
                    BloodPressure {
                        date: r.get(0)?,
                        systolic: r.get(1)?,
                        diastolic: r.get(2)?,
                        unit: r.get(3)?,
                    },
                    r.get::<_, Option<i64>>(4)?,
                ))
            })
            .optional()?;
        Ok(match (panel, pair) {
            (Some((p, pt)), Some((s, st))) => Some(if st > pt { s } else { p }),
            (Some((p, _)), None) => Some(p),
            (None, Some((s, _))) => Some(s),
            (None, None) => None,
        })
    }

    /// Header data for one patient; `None` if not in the cache.
    pub fn patient_summary(&self, patient_id: &str) -> Result<Option<PatientSummary>, CacheError> {
        let tx = self.conn.unchecked_transaction()?;
        let on_days = today_days();
        let row = self
            .conn
            .query_row(
                &format!("SELECT {PANEL_COLUMNS} FROM panel_row WHERE patient_id = ?1"),
                [patient_id],
                |r| panel_row(r, on_days),
            )
            .optional()?;
        let Some(row) = row else {
            return Ok(None);
        };
        let (active, deceased): (bool, bool) = self.conn.query_row(
            "SELECT active, deceased FROM patients WHERE id = ?1",
            [patient_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let active_conditions = {
            let mut stmt = self.conn.prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM events
                 WHERE patient_id = ?1 AND kind = 'condition' AND {ACTIVE_CONDITION}
                 ORDER BY ts IS NULL, ts, id"
            ))?;
            let v = stmt
                .query_map([patient_id], timeline_event)?
                .collect::<Result<Vec<_>, _>>()?;
            v
        };
        let event_counts = {
            let mut stmt = self.conn.prepare_cached(
                "SELECT kind, count(*) FROM events WHERE patient_id = ?1 GROUP BY kind",
            )?;
            let counts = stmt
                .query_map([patient_id], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            EventKind::ALL
                .into_iter()
                .map(|k| {
                    let n = counts
                        .iter()
                        .find(|(id, _)| id == k.id())
                        .map_or(0, |(_, n)| *n as u64);
                    (k, n)
                })
                .collect()
        };
        let summary = PatientSummary {
            row,
            active,
            deceased,
            active_conditions,
            latest_bp: self.latest_bp(patient_id)?,
            latest_hba1c: self.latest_measurement(patient_id, &LOINC_HBA1C)?,
            latest_bmi: self.latest_measurement(patient_id, &LOINC_BMI)?,
            event_counts,
        };
        tx.commit()?;
        Ok(Some(summary))
    }
}

/// SQL predicate for an active condition row of `events`.
pub(crate) const ACTIVE_CONDITION: &str =
    "(status IN ('active','recurrence','relapse') OR (status IS NULL AND end_date IS NULL))";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn birth_dates_for_ages() {
        let on = access::time::parse_date("2026-11-23").unwrap();
        assert_eq!(birth_date_for_age(on, 26), "2000-11-23");
        assert_eq!(access::time::age_on("2000-11-23", on), Some(26));
        let feb29 = access::time::parse_date("2024-02-29").unwrap();
        assert_eq!(birth_date_for_age(feb29, 1), "2023-02-28");
    }
}
