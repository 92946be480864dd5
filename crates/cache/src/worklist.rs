//! The care-gap worklist: one row per patient and open gap, served from memory (loaded on first
//! use, refreshed per patient after each evaluation or action) so that filtering and sorting
//! 100,000 gaps stays interactive.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::query::SortDir;
use crate::{Cache, CacheError};

/// Largest worklist page.
pub const MAX_WORKLIST_PAGE: u32 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorklistSort {
    /// Overdue first, then most open gaps, then patient name.
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

/// Last-outreach filter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "date")]
pub enum OutreachFilter {
    /// Never contacted about this gap.
    None,
    /// Last outreach before this date (YYYY-MM-DD), or never.
    Before(String),
    /// Last outreach on or after this date.
    Since(String),
}

/// Worklist filters, sort and page; every filter optional, combined with AND.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WorklistQuery {
    /// Measure id (Measure.name).
    pub measure: Option<String>,
    /// PCP practitioner id.
    pub provider: Option<String>,
    /// Care team panel (Group id).
    pub care_team: Option<String>,
    /// Due on or before this date (YYYY-MM-DD).
    pub due_before: Option<String>,
    /// Work state (`new`, `in_progress`, `scheduled`, `declined`, `excluded`).
    pub state: Option<String>,
    pub outreach: Option<OutreachFilter>,
    /// A user name, or `""` for unassigned.
    pub assignee: Option<String>,
    /// At least this many open gaps for the patient.
    pub min_gaps: Option<u32>,
    /// Words of the patient's name.
    pub name: Option<String>,
    /// Also show gaps snoozed past `as_of`.
    pub include_snoozed: bool,
    /// Show closed gaps instead of open ones.
    pub closed: bool,
    pub sort: WorklistSort,
    pub dir: SortDir,
    pub offset: u32,
    /// 1..=1000, default 100.
    pub limit: u32,
    /// "Today" for overdue and snooze (default: today, UTC).
    pub as_of: Option<String>,
}

impl Default for WorklistQuery {
    fn default() -> Self {
        WorklistQuery {
            measure: None,
            provider: None,
            care_team: None,
            due_before: None,
            state: None,
            outreach: None,
            assignee: None,
            min_gaps: None,
            name: None,
            include_snoozed: false,
            closed: false,
            sort: WorklistSort::Priority,
            dir: SortDir::Asc,
            offset: 0,
            limit: 100,
            as_of: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorklistRow {
    pub patient_id: String,
    pub patient_name: String,
    pub birth_date: Option<String>,
    pub sex: Option<String>,
    pub provider_id: Option<String>,
    pub provider_name: Option<String>,
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorklistPage {
    pub rows: Vec<WorklistRow>,
    pub total: u64,
    pub offset: u32,
    pub limit: u32,
}

/// The patients one session may see, with an id unique in this process (so per-scope work
/// can be cached safely: a new scope never reuses an old one's id).
#[derive(Debug)]
pub struct PatientScope {
    id: u64,
    pub patients: HashSet<String>,
}

impl PatientScope {
    pub fn new(patients: HashSet<String>) -> PatientScope {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        PatientScope {
            id: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            patients,
        }
    }

    pub fn contains(&self, patient_id: &str) -> bool {
        self.patients.contains(patient_id)
    }
}

struct MemGap {
    row: WorklistRow,
    name_lc: String,
    teams: Vec<String>,
}

/// Which care-gap rows to read.
enum RowsOf<'a> {
    Open,
    Closed,
    Patient(&'a str),
}

/// The worklist in memory.
pub(crate) struct WorklistMem {
    gaps: Vec<MemGap>,
    /// Row indices in ascending order per sort key, for the `today` they were built with;
    /// dropped whenever rows change.
    orders: HashMap<WorklistSort, Vec<u32>>,
    orders_today: String,
    /// Which rows a scope admits, for the scope (by id) it was built for.
    scope_rows: Option<(u64, Vec<bool>)>,
    /// Group memberships per patient.
    teams: HashMap<String, Vec<String>>,
    measures: HashMap<String, (String, HashMap<String, String>)>,
    due_date: String,
    /// Whether every closed gap is loaded. Most gaps are closed and most queries ask for open
    /// ones, so closed rows are read on the first query that asks for them (until then only
    /// those of patients refreshed after an action are present).
    closed_loaded: bool,
}

const ROW_SQL: &str = "
    SELECT g.patient_id, p.name, p.name_lc, p.birth_date, p.sex, p.pcp_id, pr.name,
           g.measure_id, g.group_id, g.status, g.why_line,
           w.state, w.assignee, w.snoozed_until, w.visit_date, w.last_outreach_at, w.last_outreach
    FROM care_gap g
    JOIN patients p ON p.id = g.patient_id
    LEFT JOIN practitioners pr ON pr.id = p.pcp_id
    LEFT JOIN gap_work w ON w.patient_id = g.patient_id AND w.measure_id = g.measure_id
                        AND w.group_id = g.group_id";

/// The first entry of a JSON array of `{name?, text}` objects, as "name: text" (or the text).
pub(crate) fn first_text(json: &str) -> String {
    serde_json::from_str(json)
        .map(|v| first_text_of(&v))
        .unwrap_or_default()
}

fn first_text_of(v: &serde_json::Value) -> String {
    v.as_array()
        .and_then(|items| {
            items.iter().find_map(|x| {
                let text = x.get("text")?.as_str()?;
                Some(match x.get("name").and_then(|n| n.as_str()) {
                    Some(name) => format!("{name}: {text}"),
                    None => text.to_string(),
                })
            })
        })
        .unwrap_or_default()
}

impl WorklistMem {
    fn load(conn: &rusqlite::Connection) -> Result<WorklistMem, CacheError> {
        let mut teams: HashMap<String, Vec<String>> = HashMap::new();
        {
            let mut stmt =
                conn.prepare("SELECT patient_id, group_id FROM group_members ORDER BY 1, 2")?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                teams.entry(r.get(0)?).or_default().push(r.get(1)?);
            }
        }
        let mut measures = HashMap::new();
        {
            let mut stmt =
                conn.prepare("SELECT measure_id, short_name, requirements FROM measure_package")?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let reqs: String = r.get(2)?;
                let by_group: HashMap<String, String> =
                    serde_json::from_str::<HashMap<String, serde_json::Value>>(&reqs)
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(g, v)| (g, first_text_of(&v)))
                        .collect();
                measures.insert(r.get(0)?, (r.get(1)?, by_group));
            }
        }
        let due_date = conn
            .query_row(
                "SELECT period_end FROM eval_run WHERE finished_at IS NOT NULL ORDER BY id DESC LIMIT 1",
                [],
                |r| r.get::<_, String>(0),
            )
            .unwrap_or_default();
        let mut mem = WorklistMem {
            gaps: Vec::new(),
            orders: HashMap::new(),
            orders_today: String::new(),
            scope_rows: None,
            teams,
            measures,
            due_date,
            closed_loaded: false,
        };
        mem.gaps = mem.read_rows(conn, RowsOf::Open)?;
        mem.count_open();
        Ok(mem)
    }

    /// Adds every closed gap (replacing the closed rows already present).
    fn load_closed(&mut self, conn: &rusqlite::Connection) -> Result<(), CacheError> {
        let mut closed = self.read_rows(conn, RowsOf::Closed)?;
        self.gaps.retain(|g| g.row.status != "closed");
        self.gaps.append(&mut closed);
        self.count_open();
        self.orders.clear();
        self.scope_rows = None;
        self.closed_loaded = true;
        Ok(())
    }

    fn read_rows(
        &self,
        conn: &rusqlite::Connection,
        which: RowsOf<'_>,
    ) -> Result<Vec<MemGap>, CacheError> {
        let (sql, params): (String, Vec<&str>) = match which {
            RowsOf::Open => (format!("{ROW_SQL} WHERE g.status <> 'closed'"), vec![]),
            RowsOf::Closed => (format!("{ROW_SQL} WHERE g.status = 'closed'"), vec![]),
            RowsOf::Patient(p) => (format!("{ROW_SQL} WHERE g.patient_id = ?1"), vec![p]),
        };
        let mut stmt = conn.prepare_cached(&sql)?;
        let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let patient_id: String = r.get(0)?;
            let measure_id: String = r.get(7)?;
            let group_id: String = r.get(8)?;
            let why: String = r.get(10)?;
            let (measure, closes_with) = match self.measures.get(&measure_id) {
                Some((short, by_group)) => (
                    short.clone(),
                    by_group.get(&group_id).cloned().unwrap_or_default(),
                ),
                None => (measure_id.clone(), String::new()),
            };
            let teams = self.teams.get(&patient_id).cloned().unwrap_or_default();
            out.push(MemGap {
                name_lc: r.get(2)?,
                teams,
                row: WorklistRow {
                    patient_id,
                    patient_name: r.get(1)?,
                    birth_date: r.get(3)?,
                    sex: r.get(4)?,
                    provider_id: r.get(5)?,
                    provider_name: r.get(6)?,
                    measure_id,
                    measure,
                    group_id,
                    status: r.get(9)?,
                    why_open: why,
                    closes_with,
                    due_date: self.due_date.clone(),
                    overdue: false,
                    open_gaps: 0,
                    state: r
                        .get::<_, Option<String>>(11)?
                        .unwrap_or_else(|| "new".into()),
                    assignee: r.get(12)?,
                    snoozed_until: r.get(13)?,
                    visit_date: r.get(14)?,
                    last_outreach_at: r.get(15)?,
                    last_outreach: r.get(16)?,
                },
            });
        }
        Ok(out)
    }

    fn count_open(&mut self) {
        let mut open: HashMap<&str, u32> = HashMap::new();
        for g in &self.gaps {
            if g.row.status != "closed" {
                *open.entry(g.row.patient_id.as_str()).or_default() += 1;
            }
        }
        let open: HashMap<String, u32> =
            open.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        for g in &mut self.gaps {
            g.row.open_gaps = open.get(&g.row.patient_id).copied().unwrap_or(0);
        }
    }

    fn refresh(
        &mut self,
        conn: &rusqlite::Connection,
        patients: &HashSet<&str>,
    ) -> Result<(), CacheError> {
        for p in patients {
            self.refresh_patient(conn, p)?;
        }
        Ok(())
    }

    /// Re-reads one patient's rows. When none of the patient's rows went away (the usual case
    /// after an action: statuses change, a closed gap's row may be new) the rows are updated
    /// where they are, new ones appended, and each moved within every cached order; otherwise
    /// the rows are replaced and the orders rebuilt on next use.
    fn refresh_patient(
        &mut self,
        conn: &rusqlite::Connection,
        patient: &str,
    ) -> Result<(), CacheError> {
        let mut fresh = self.read_rows(conn, RowsOf::Patient(patient))?;
        let open = fresh.iter().filter(|g| g.row.status != "closed").count() as u32;
        for g in &mut fresh {
            g.row.open_gaps = open;
        }
        let key = |g: &MemGap| (g.row.measure_id.clone(), g.row.group_id.clone());
        let at: Vec<usize> = (0..self.gaps.len())
            .filter(|&i| self.gaps[i].row.patient_id == patient)
            .collect();
        let new_keys: HashSet<_> = fresh.iter().map(key).collect();
        if !at.iter().all(|&i| new_keys.contains(&key(&self.gaps[i]))) {
            self.gaps.retain(|g| g.row.patient_id != patient);
            self.gaps.extend(fresh);
            self.orders.clear();
            self.scope_rows = None;
            return Ok(());
        }
        let moved: HashSet<u32> = at.iter().map(|&i| i as u32).collect();
        let mut touched = at.clone();
        for g in fresh {
            let k = key(&g);
            match at.iter().find(|&&i| key(&self.gaps[i]) == k) {
                Some(&i) => self.gaps[i] = g,
                None => {
                    self.gaps.push(g);
                    touched.push(self.gaps.len() - 1);
                }
            }
        }
        if touched.len() > at.len() {
            // New rows: the scope's row map is rebuilt on next use.
            self.scope_rows = None;
        }
        // Take the patient's rows out of each order and put them back where they now belong.
        let today = self.orders_today.clone();
        let gaps = &self.gaps;
        for (sort, order) in self.orders.iter_mut() {
            order.retain(|i| !moved.contains(i));
            for &i in &touched {
                let row = &gaps[i].row;
                let pos = order.partition_point(|&j| {
                    compare(*sort, &today, &gaps[j as usize].row, row).is_lt()
                });
                order.insert(pos, i as u32);
            }
        }
        Ok(())
    }

    /// Builds the rows' `sort` order (ascending) unless it is cached.
    fn ensure_order(&mut self, sort: WorklistSort, today: &str) {
        if self.orders_today != today {
            self.orders.clear();
            self.orders_today = today.to_string();
        }
        let gaps = &self.gaps;
        self.orders.entry(sort).or_insert_with(|| {
            let mut idx: Vec<u32> = (0..gaps.len() as u32).collect();
            idx.sort_unstable_by(|&a, &b| {
                compare(sort, today, &gaps[a as usize].row, &gaps[b as usize].row)
            });
            idx
        });
    }

    /// Computes whether each row is within `scope`, unless done for this scope.
    fn ensure_scope_rows(&mut self, scope: &PatientScope) {
        if self
            .scope_rows
            .as_ref()
            .is_none_or(|(id, _)| *id != scope.id)
        {
            let rows = self
                .gaps
                .iter()
                .map(|g| scope.contains(&g.row.patient_id))
                .collect();
            self.scope_rows = Some((scope.id, rows));
        }
    }
}

fn cmp_opt(a: &Option<String>, b: &Option<String>) -> Ordering {
    a.cmp(b)
}

fn compare(sort: WorklistSort, today: &str, a: &WorklistRow, b: &WorklistRow) -> Ordering {
    let primary = match sort {
        WorklistSort::Priority => {
            let over = |r: &WorklistRow| r.due_date.as_str() < today && r.status != "closed";
            over(b)
                .cmp(&over(a))
                .then(b.open_gaps.cmp(&a.open_gaps))
                .then_with(|| a.patient_name.cmp(&b.patient_name))
        }
        WorklistSort::Patient => a.patient_name.cmp(&b.patient_name),
        WorklistSort::Measure => a.measure.cmp(&b.measure),
        WorklistSort::Due => a.due_date.cmp(&b.due_date),
        WorklistSort::Provider => cmp_opt(&a.provider_name, &b.provider_name),
        WorklistSort::LastOutreach => cmp_opt(&a.last_outreach_at, &b.last_outreach_at),
        WorklistSort::State => a.state.cmp(&b.state),
        WorklistSort::Assignee => cmp_opt(&a.assignee, &b.assignee),
        WorklistSort::Gaps => a.open_gaps.cmp(&b.open_gaps),
    };
    primary
        .then_with(|| a.patient_id.cmp(&b.patient_id))
        .then_with(|| a.measure.cmp(&b.measure))
        .then_with(|| a.group_id.cmp(&b.group_id))
}

fn check_date(d: &Option<String>, what: &str) -> Result<(), CacheError> {
    match d {
        Some(s) if access::time::parse_date(s).is_none() => Err(CacheError::InvalidQuery(format!(
            "{what} must be a date (YYYY-MM-DD)"
        ))),
        _ => Ok(()),
    }
}

impl Cache {
    pub(crate) fn invalidate_worklist(&self) {
        *self.worklist_mem.borrow_mut() = None;
    }

    pub(crate) fn refresh_worklist_patients(
        &self,
        patients: &HashSet<&str>,
    ) -> Result<(), CacheError> {
        let mut guard = self.worklist_mem.borrow_mut();
        if let Some(mem) = guard.as_mut() {
            // Each patient's refresh scans the rows: a batch (an evaluation run) reloads instead.
            if patients.len() > 32 {
                *guard = None;
            } else {
                mem.refresh(&self.conn, patients)?;
            }
        }
        Ok(())
    }

    /// Loads the worklist into memory now (after an evaluation, so the first page a user asks
    /// for needs no load).
    pub fn warm_worklist(&self) -> Result<(), CacheError> {
        let mut guard = self.worklist_mem.borrow_mut();
        if guard.is_none() {
            *guard = Some(WorklistMem::load(&self.conn)?);
        }
        Ok(())
    }

    /// One page of the worklist within `scope` (the patients the caller may see; `None`: all).
    pub fn worklist(
        &self,
        q: &WorklistQuery,
        scope: Option<&PatientScope>,
    ) -> Result<WorklistPage, CacheError> {
        if q.limit == 0 || q.limit > MAX_WORKLIST_PAGE {
            return Err(CacheError::InvalidQuery(format!(
                "page size must be between 1 and {MAX_WORKLIST_PAGE}"
            )));
        }
        check_date(&q.as_of, "as_of")?;
        check_date(&q.due_before, "due_before")?;
        if let Some(OutreachFilter::Before(d) | OutreachFilter::Since(d)) = &q.outreach {
            check_date(&Some(d.clone()), "the outreach date")?;
        }
        let today = q.as_of.clone().unwrap_or_else(|| {
            let (y, m, d) =
                access::time::civil_from_days(access::time::now_unix_ms().div_euclid(86_400_000));
            format!("{y:04}-{m:02}-{d:02}")
        });
        let words: Vec<String> = q
            .name
            .as_deref()
            .unwrap_or("")
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect();
        fn nonempty(s: &Option<String>) -> Option<&str> {
            s.as_deref().filter(|s| !s.is_empty())
        }

        self.warm_worklist()?;
        let mut guard = self.worklist_mem.borrow_mut();
        let mem = guard.as_mut().expect("loaded above");
        if q.closed && !mem.closed_loaded {
            mem.load_closed(&self.conn)?;
        }
        if let Some(s) = scope {
            mem.ensure_scope_rows(s);
        }
        mem.ensure_order(q.sort, &today);
        let mem = &*mem;
        let in_scope: Option<&[bool]> = scope.and(mem.scope_rows.as_ref().map(|(_, r)| &r[..]));
        let order: &[u32] = &mem.orders[&q.sort];
        let keep = |i: usize, g: &MemGap| {
            let r = &g.row;
            if q.closed != (r.status == "closed") {
                return false;
            }
            if in_scope.is_some_and(|s| !s[i]) {
                return false;
            }
            if nonempty(&q.measure).is_some_and(|m| m != r.measure_id) {
                return false;
            }
            if nonempty(&q.provider).is_some_and(|p| Some(p) != r.provider_id.as_deref()) {
                return false;
            }
            if nonempty(&q.care_team).is_some_and(|t| !g.teams.iter().any(|x| x == t)) {
                return false;
            }
            if nonempty(&q.due_before).is_some_and(|d| r.due_date.as_str() > d) {
                return false;
            }
            if nonempty(&q.state).is_some_and(|s| s != r.state) {
                return false;
            }
            if let Some(a) = &q.assignee {
                let unassigned = r.assignee.as_deref().unwrap_or("").is_empty();
                if (a.is_empty() && !unassigned)
                    || (!a.is_empty() && r.assignee.as_ref() != Some(a))
                {
                    return false;
                }
            }
            if q.min_gaps.is_some_and(|n| r.open_gaps < n) {
                return false;
            }
            let contacted = r.last_outreach_at.as_deref().map(|t| &t[..t.len().min(10)]);
            match &q.outreach {
                Some(OutreachFilter::None) if contacted.is_some() => return false,
                Some(OutreachFilter::Before(d)) if contacted.is_some_and(|c| c >= d.as_str()) => {
                    return false
                }
                Some(OutreachFilter::Since(d)) if contacted.is_none_or(|c| c < d.as_str()) => {
                    return false
                }
                _ => {}
            }
            if !q.include_snoozed
                && r.snoozed_until
                    .as_deref()
                    .is_some_and(|s| s > today.as_str())
            {
                return false;
            }
            words.iter().all(|w| g.name_lc.contains(w.as_str()))
        };
        // One pass over the rows in the requested order: count every match, keep the page.
        let (offset, limit) = (q.offset as usize, q.limit as usize);
        let mut total = 0usize;
        let mut rows = Vec::with_capacity(limit.min(128));
        let mut visit = |i: u32| {
            let g = &mem.gaps[i as usize];
            if keep(i as usize, g) {
                if total >= offset && rows.len() < limit {
                    let mut r = g.row.clone();
                    r.overdue = r.status != "closed" && r.due_date.as_str() < today.as_str();
                    rows.push(r);
                }
                total += 1;
            }
        };
        if q.dir == SortDir::Desc {
            order.iter().rev().for_each(|&i| visit(i));
        } else {
            order.iter().for_each(|&i| visit(i));
        }
        let total = total as u64;
        Ok(WorklistPage {
            rows,
            total,
            offset: q.offset,
            limit: q.limit,
        })
    }
}
