//! The population page: for the patients the session may see (the dashboard's scope and role
//! rules), age bands and sex mix, the 10 most common active conditions, visits per month over
//! the last 12 months of data and patients per primary-care provider, each a bar chart with
//! its numbers; a drill-down lists the patients behind a bar or a cell (purpose of use needed,
//! audited with their ids).
//!
//! Read from the cache's panel rows (birth date, sex, PCP, active conditions) and encounter
//! events ([`cache::Cache::population_patients`], [`cache::Cache::visit_dates`]).

use std::collections::{BTreeMap, HashMap, HashSet};

use access::{Action, Role};
use cache::{Cache, PopulationPatient};

use super::chart_error;
use crate::{
    ChartSvg, DrillPage, PopulationBucket, PopulationDrillQuery, PopulationSection, PopulationView,
    Session, Workstation, WsError,
};

/// The dimensions of the page, in order.
pub const DIMENSIONS: [&str; 5] = ["age", "sex", "condition", "visits", "provider"];

/// Age bands: `(key, label, lowest age, highest age)`.
pub const AGE_BANDS: [(&str, &str, u32, u32); 6] = [
    ("0-17", "0–17", 0, 17),
    ("18-34", "18–34", 18, 34),
    ("35-49", "35–49", 35, 49),
    ("50-64", "50–64", 50, 64),
    ("65-74", "65–74", 65, 74),
    ("75+", "75 and over", 75, u32::MAX),
];

/// How many conditions the page shows.
pub const TOP_CONDITIONS: usize = 10;

/// Months of visits shown, ending with the month of the latest visit.
pub const VISIT_MONTHS: usize = 12;

const UNKNOWN: &str = "unknown";

/// The age band key of a patient on `today` (`unknown` without a usable birth date).
pub fn age_band(birth: Option<&str>, today: i64) -> &'static str {
    birth
        .and_then(|b| access::time::age_on(b, today))
        .and_then(|a| {
            AGE_BANDS
                .iter()
                .find(|(_, _, lo, hi)| (*lo..=*hi).contains(&a))
        })
        .map_or(UNKNOWN, |b| b.0)
}

fn sex_key(p: &PopulationPatient) -> String {
    p.sex
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map_or(UNKNOWN.into(), str::to_lowercase)
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// The month before `YYYY-MM`.
fn previous_month(month: &str) -> Option<String> {
    let y: i32 = month.get(..4)?.parse().ok()?;
    let m: u32 = month.get(5..7)?.parse().ok()?;
    Some(if m == 1 {
        format!("{:04}-12", y - 1)
    } else {
        format!("{y:04}-{:02}", m - 1)
    })
}

/// The `VISIT_MONTHS` months ending with the latest month among `dates`, oldest first.
fn visit_months<'a>(dates: impl Iterator<Item = &'a str>) -> Vec<String> {
    let Some(latest) = dates
        .filter_map(|d| d.get(..7))
        .filter(|m| m.as_bytes().get(4) == Some(&b'-'))
        .max()
    else {
        return Vec::new();
    };
    let mut months = vec![latest.to_string()];
    while months.len() < VISIT_MONTHS {
        match months.last().and_then(|m| previous_month(m)) {
            Some(p) => months.push(p),
            None => break,
        }
    }
    months.reverse();
    months
}

/// What the page counts, for the patients in scope.
struct Data {
    patients: Vec<PopulationPatient>,
    /// `(patient, date)` of their visits.
    visits: Vec<(String, String)>,
    today: i64,
}

impl Data {
    fn read(cache: &Cache, scope: Option<&HashSet<String>>, today: i64) -> Result<Data, WsError> {
        let inside = |p: &str| scope.is_none_or(|s| s.contains(p));
        let patients = cache
            .population_patients()?
            .into_iter()
            .filter(|p| inside(&p.patient_id))
            .collect();
        let visits = cache
            .visit_dates()?
            .into_iter()
            .filter(|(p, _)| inside(p))
            .collect();
        Ok(Data {
            patients,
            visits,
            today,
        })
    }

    /// The patients behind one bucket.
    fn members(&self, dimension: &str, key: &str) -> Result<HashSet<String>, WsError> {
        let ids = |f: &dyn Fn(&PopulationPatient) -> bool| -> HashSet<String> {
            self.patients
                .iter()
                .filter(|p| f(p))
                .map(|p| p.patient_id.clone())
                .collect()
        };
        Ok(match dimension {
            "age" => ids(&|p| age_band(p.birth_date.as_deref(), self.today) == key),
            "sex" => ids(&|p| sex_key(p) == key),
            "condition" => ids(&|p| p.conditions.iter().any(|c| c == key)),
            "provider" => ids(&|p| p.pcp_id.as_deref().unwrap_or("") == key),
            "visits" => self
                .visits
                .iter()
                .filter(|(_, d)| d.get(..7) == Some(key))
                .map(|(p, _)| p.clone())
                .collect(),
            _ => return Err(WsError::invalid("Unknown population dimension.")),
        })
    }

    fn sections(&self) -> Result<Vec<PopulationSection>, WsError> {
        let mut out = Vec::new();
        // Age bands, every band shown; `unknown` only when someone has no usable birth date.
        let mut ages: HashMap<&str, u64> = HashMap::new();
        for p in &self.patients {
            *ages
                .entry(age_band(p.birth_date.as_deref(), self.today))
                .or_default() += 1;
        }
        let mut rows: Vec<PopulationBucket> = AGE_BANDS
            .iter()
            .map(|(key, label, _, _)| bucket(key, label, ages.get(key).copied().unwrap_or(0)))
            .collect();
        if let Some(&n) = ages.get(UNKNOWN) {
            rows.push(bucket(UNKNOWN, "Unknown", n));
        }
        out.push(section("age", "Patients by age band", "Patients", rows)?);

        // Sex: most common first.
        let mut sexes: BTreeMap<String, u64> = BTreeMap::new();
        for p in &self.patients {
            *sexes.entry(sex_key(p)).or_default() += 1;
        }
        let mut rows: Vec<PopulationBucket> = sexes
            .into_iter()
            .map(|(k, n)| bucket(&k, &capitalized(&k), n))
            .collect();
        rows.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
        out.push(section("sex", "Patients by sex", "Patients", rows)?);

        // The most common active conditions.
        let mut conditions: HashMap<&str, u64> = HashMap::new();
        for p in &self.patients {
            let distinct: HashSet<&str> = p.conditions.iter().map(String::as_str).collect();
            for c in distinct {
                *conditions.entry(c).or_default() += 1;
            }
        }
        let mut rows: Vec<PopulationBucket> = conditions
            .into_iter()
            .map(|(c, n)| bucket(c, c, n))
            .collect();
        rows.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
        rows.truncate(TOP_CONDITIONS);
        out.push(section(
            "condition",
            "The 10 most common active conditions (patients)",
            "Patients",
            rows,
        )?);

        // Visits per month over the last 12 months of data.
        let months = visit_months(self.visits.iter().map(|(_, d)| d.as_str()));
        let mut visits: HashMap<&str, (u64, HashSet<&str>)> = HashMap::new();
        for (p, d) in &self.visits {
            if let Some(m) = d.get(..7) {
                let e = visits.entry(m).or_default();
                e.0 += 1;
                e.1.insert(p);
            }
        }
        let rows = months
            .iter()
            .map(|m| {
                let (n, who) = visits
                    .get(m.as_str())
                    .map_or((0, 0), |(n, who)| (*n, who.len() as u64));
                PopulationBucket {
                    key: m.clone(),
                    label: m.clone(),
                    count: n,
                    patients: who,
                }
            })
            .collect();
        out.push(section(
            "visits",
            "Visits per month (the last 12 months of data)",
            "Visits",
            rows,
        )?);

        // Patients per primary-care provider.
        let mut providers: HashMap<String, (String, u64)> = HashMap::new();
        for p in &self.patients {
            let key = p.pcp_id.clone().unwrap_or_default();
            let label = match (&p.pcp_name, &p.pcp_id) {
                (Some(n), _) => n.clone(),
                (None, Some(id)) => id.clone(),
                (None, None) => "No primary-care provider".into(),
            };
            providers.entry(key).or_insert((label, 0)).1 += 1;
        }
        let mut rows: Vec<PopulationBucket> = providers
            .into_iter()
            .map(|(k, (label, n))| bucket(&k, &label, n))
            .collect();
        rows.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| a.label.cmp(&b.label))
                .then_with(|| a.key.cmp(&b.key))
        });
        out.push(section(
            "provider",
            "Patients per primary-care provider",
            "Patients",
            rows,
        )?);
        Ok(out)
    }
}

fn bucket(key: &str, label: &str, n: u64) -> PopulationBucket {
    PopulationBucket {
        key: key.into(),
        label: label.into(),
        count: n,
        patients: n,
    }
}

fn section(
    dimension: &str,
    title: &str,
    unit: &str,
    rows: Vec<PopulationBucket>,
) -> Result<PopulationSection, WsError> {
    let bars: Vec<charts::CountBar> = rows
        .iter()
        .map(|r| charts::CountBar {
            label: r.label.clone(),
            value: r.count,
        })
        .collect();
    Ok(PopulationSection {
        dimension: dimension.into(),
        unit: unit.into(),
        chart: ChartSvg {
            svg: charts::count_chart(title, unit, &bars).map_err(chart_error)?,
            title: title.into(),
            bars: None,
        },
        rows,
    })
}

impl Workstation {
    fn today_days(&self) -> i64 {
        (self.clock)().div_euclid(86_400_000)
    }

    /// The population page over the session's patients (`view_measures`: the dashboard's
    /// roles and scope; everyone needs a purpose of use). One audit record without patient
    /// ids (the numbers are aggregates).
    pub fn population(&self) -> Result<PopulationView, WsError> {
        self.audited(
            Action::ViewMeasures,
            Some("population".into()),
            |cache, s| self.build_population(cache, s),
            |_| Vec::new(),
        )
    }

    fn build_population(&self, cache: &Cache, s: &Session) -> Result<PopulationView, WsError> {
        let scope = self.dashboard_scope(s)?;
        let today = self.today_days();
        let data = Data::read(cache, scope, today)?;
        let (y, m, d) = access::time::civil_from_days(today);
        Ok(PopulationView {
            scope: match s.role {
                Role::QualityAnalyst => "All patients",
                Role::Clinician => "Your patients",
                Role::CareManager => "Your care teams' panels",
                Role::PrivacyOfficer | Role::Administrator => "No patients",
            }
            .into(),
            patients_in_scope: data.patients.len() as u64,
            as_of: format!("{y:04}-{m:02}-{d:02}"),
            sections: data.sections()?,
        })
    }

    /// The patients behind one number of the population page, within the session's scope, by
    /// name, one page. Needs a purpose of use; audited with the ids of the patients returned.
    pub fn population_patients(&self, q: &PopulationDrillQuery) -> Result<DrillPage, WsError> {
        if !DIMENSIONS.contains(&q.dimension.as_str()) {
            return Err(WsError::invalid("Unknown population dimension."));
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
            Some(format!("population patients {query}")),
            |cache, s| {
                let scope = s.scope.as_deref().map(|x| &x.patients);
                let data = Data::read(cache, scope, self.today_days())?;
                let ids = data.members(&q.dimension, &q.key)?;
                super::drill_page(cache, &ids, q.offset, limit)
            },
            |page| page.rows.iter().map(|r| r.patient_id.clone()).collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age_bands_and_months() {
        let today = access::time::parse_date("2026-03-15").unwrap();
        assert_eq!(age_band(Some("2008-03-16"), today), "0-17");
        assert_eq!(age_band(Some("2008-03-15"), today), "18-34");
        assert_eq!(age_band(Some("1950-01-01"), today), "75+");
        assert_eq!(age_band(None, today), "unknown");
        assert_eq!(age_band(Some("2030-01-01"), today), "unknown");
        let months = visit_months(["2025-02-03", "2024-12-31T10:00:00Z", "x"].into_iter());
        assert_eq!(months.len(), 12);
        assert_eq!(months[0], "2024-03");
        assert_eq!(months[11], "2025-02");
    }
}
