//! The population page against a real SQLCipher cache holding a demo panel: every number
//! equals a count computed here from the cache's own rows (the panel list and each patient's
//! encounter timeline); a clinician sees only their patients; the privacy officer is refused
//! and audited; a drill-down returns the patients behind a number, audited with their ids.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};

use access::{Action, Outcome, Role};
use cache::{Cache, EventKind, PanelQuery, PanelRow};
use common::demo_workstation;
use workstation::{demo_passphrase, PopulationDrillQuery, PopulationView, Workstation};

fn sign_in(ws: &Workstation, user: &str) {
    ws.logout();
    ws.login(user, &demo_passphrase(user)).unwrap();
    ws.set_purpose("TREAT").unwrap();
}

/// Every panel row, through the panel list's pages.
fn panel_rows(c: &Cache, only: Option<&HashSet<String>>) -> Vec<PanelRow> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let page = c
            .panel(&PanelQuery {
                offset,
                limit: 1000,
                ..Default::default()
            })
            .unwrap();
        let n = page.rows.len() as u32;
        out.extend(
            page.rows
                .into_iter()
                .filter(|r| only.is_none_or(|s| s.contains(&r.patient_id))),
        );
        offset += n;
        if n == 0 || u64::from(offset) >= page.total {
            break;
        }
    }
    out
}

/// `dimension` → `key` → `(count, patients)`, computed from the panel rows and timelines.
type Numbers = BTreeMap<String, BTreeMap<String, (u64, u64)>>;

fn expected(c: &Cache, rows: &[PanelRow]) -> Numbers {
    let mut out = Numbers::new();
    let mut add = |dim: &str, key: String, count: u64, patients: u64| {
        let e = out.entry(dim.into()).or_default().entry(key).or_default();
        e.0 += count;
        e.1 += patients;
    };
    let mut conditions: HashMap<String, u64> = HashMap::new();
    let mut visits: BTreeMap<String, (u64, HashSet<String>)> = BTreeMap::new();
    for r in rows {
        let band = match r.age {
            None => "unknown",
            Some(0..=17) => "0-17",
            Some(18..=34) => "18-34",
            Some(35..=49) => "35-49",
            Some(50..=64) => "50-64",
            Some(65..=74) => "65-74",
            Some(_) => "75+",
        };
        add("age", band.into(), 1, 1);
        add(
            "sex",
            r.sex
                .clone()
                .unwrap_or_else(|| "unknown".into())
                .to_lowercase(),
            1,
            1,
        );
        add("provider", r.pcp_id.clone().unwrap_or_default(), 1, 1);
        let distinct: HashSet<&str> = r.conditions.split("; ").filter(|s| !s.is_empty()).collect();
        for name in distinct {
            *conditions.entry(name.into()).or_default() += 1;
        }
        let timeline = c
            .timeline(&r.patient_id, &[EventKind::Encounter])
            .unwrap()
            .unwrap();
        for e in timeline.events {
            if let Some(month) = e.date.as_deref().and_then(|d| d.get(..7)) {
                let v = visits.entry(month.into()).or_default();
                v.0 += 1;
                v.1.insert(r.patient_id.clone());
            }
        }
    }
    // Every age band is shown, empty or not.
    for band in ["0-17", "18-34", "35-49", "50-64", "65-74", "75+"] {
        out.entry("age".into())
            .or_default()
            .entry(band.into())
            .or_default();
    }
    let mut top: Vec<(String, u64)> = conditions.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    for (name, n) in top.into_iter().take(10) {
        out.entry("condition".into())
            .or_default()
            .insert(name, (n, n));
    }
    // The 12 months ending with the latest month with a visit.
    let months: Vec<&String> = visits.keys().rev().take(12).collect();
    let latest = months[0].clone();
    let (mut y, mut m): (i32, u32) = (latest[..4].parse().unwrap(), latest[5..7].parse().unwrap());
    let section = out.entry("visits".into()).or_default();
    for _ in 0..12 {
        let key = format!("{y:04}-{m:02}");
        let (n, who) = visits
            .get(&key)
            .map_or((0, 0), |(n, w)| (*n, w.len() as u64));
        section.insert(key, (n, who));
        if m == 1 {
            y -= 1;
            m = 12;
        } else {
            m -= 1;
        }
    }
    out
}

fn shown(v: &PopulationView) -> Numbers {
    v.sections
        .iter()
        .map(|s| {
            (
                s.dimension.clone(),
                s.rows
                    .iter()
                    .map(|r| (r.key.clone(), (r.count, r.patients)))
                    .collect(),
            )
        })
        .collect()
}

fn check_charts(v: &PopulationView) {
    for s in &v.sections {
        let doc = roxmltree::Document::parse(&s.chart.svg).unwrap();
        assert!(doc
            .descendants()
            .any(|n| n.has_tag_name("title") && n.text() == Some(s.chart.title.as_str())));
        let bars: Vec<usize> = doc
            .descendants()
            .filter_map(|n| n.attribute("data-bar"))
            .map(|i| i.parse().unwrap())
            .collect();
        let nonzero: Vec<usize> = (0..s.rows.len()).filter(|&i| s.rows[i].count > 0).collect();
        assert_eq!(
            bars, nonzero,
            "{}: one marked bar per non-zero row",
            s.dimension
        );
    }
}

#[test]
fn population_numbers_equal_counts_from_the_cache_rows_within_the_callers_scope() {
    let f = demo_workstation(500);
    let c = Cache::open(&f.path, &f.key).unwrap();

    sign_in(&f.ws, "quality");
    let v = f.ws.population().unwrap();
    assert_eq!(v.scope, "All patients");
    assert_eq!(v.patients_in_scope, 500);
    let dims: Vec<&str> = v.sections.iter().map(|s| s.dimension.as_str()).collect();
    assert_eq!(dims, ["age", "sex", "condition", "visits", "provider"]);
    let everyone = panel_rows(&c, None);
    assert_eq!(everyone.len(), 500);
    let want = expected(&c, &everyone);
    assert_eq!(shown(&v), want);
    // Not trivially empty: several bands, sexes, conditions, months with visits, providers.
    for (dim, min) in [
        ("age", 3),
        ("sex", 2),
        ("condition", 10),
        ("visits", 6),
        ("provider", 2),
    ] {
        let nonzero = want[dim].values().filter(|(n, _)| *n > 0).count();
        assert!(nonzero >= min, "{dim}: {nonzero}");
    }
    for dim in ["age", "sex", "provider"] {
        assert_eq!(want[dim].values().map(|x| x.0).sum::<u64>(), 500, "{dim}");
    }
    // Most common first; months in order.
    let cond: Vec<u64> = v.sections[2].rows.iter().map(|r| r.count).collect();
    assert!(cond.windows(2).all(|w| w[0] >= w[1]));
    let months: Vec<&str> = v.sections[3].rows.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(months.len(), 12);
    assert!(months.windows(2).all(|w| w[0] < w[1]));
    check_charts(&v);

    // A clinician: only their attributed patients.
    let (practitioner, _) = c.account_links("clinician").unwrap();
    let mine: HashSet<String> = c.patients_linked_to(practitioner.as_deref(), &[]).unwrap();
    assert!(!mine.is_empty() && mine.len() < 500);
    sign_in(&f.ws, "clinician");
    let v = f.ws.population().unwrap();
    assert_eq!(v.scope, "Your patients");
    assert_eq!(v.patients_in_scope, mine.len() as u64);
    let theirs = panel_rows(&c, Some(&mine));
    assert_eq!(
        shown(&v),
        expected(&c, &theirs),
        "the clinician's panel only"
    );
    check_charts(&v);
    // Their drill-downs stay within their patients.
    let busiest = v.sections[0]
        .rows
        .iter()
        .max_by_key(|r| r.count)
        .unwrap()
        .clone();
    let page =
        f.ws.population_patients(&PopulationDrillQuery {
            dimension: "age".into(),
            key: busiest.key.clone(),
            limit: 1000,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(page.total, busiest.count);
    assert!(page.rows.iter().all(|r| mine.contains(&r.patient_id)));
}

#[test]
fn the_privacy_officer_is_refused_and_drill_down_is_audited_with_its_patient_ids() {
    let f = demo_workstation(300);
    let c = Cache::open(&f.path, &f.key).unwrap();
    let audit = |user: &str| {
        c.audit_list(&cache::AuditFilter {
            user: Some(user.into()),
            action: Some(Action::ViewMeasures),
            limit: Some(10_000),
            ..Default::default()
        })
        .unwrap()
    };

    sign_in(&f.ws, "privacy");
    assert_eq!(f.ws.population().unwrap_err().code, "denied");
    let e =
        f.ws.population_patients(&PopulationDrillQuery {
            dimension: "sex".into(),
            key: "female".into(),
            ..Default::default()
        })
        .unwrap_err();
    assert_eq!(e.code, "denied");
    let refused = audit("privacy");
    assert_eq!(refused.len(), 2);
    assert!(refused.iter().all(|r| r.outcome == Outcome::Denied
        && r.role == Some(Role::PrivacyOfficer)
        && r.patient_ids.is_empty()));

    // Everyone's numbers need a purpose of use.
    f.ws.logout();
    f.ws.login("quality", &demo_passphrase("quality")).unwrap();
    assert_eq!(f.ws.population().unwrap_err().code, "no_purpose");
    f.ws.set_purpose("HQUALIMP").unwrap();
    let v = f.ws.population().unwrap();
    let last = audit("quality").into_iter().next().unwrap();
    assert_eq!(last.outcome, Outcome::Allowed);
    assert!(
        last.patient_ids.is_empty(),
        "the page itself lists no patient"
    );
    assert_eq!(last.query.as_deref(), Some("population"));

    // Drill-down on each dimension: the patients behind the number, audited with their ids.
    let rows = panel_rows(&c, None);
    for s in &v.sections {
        let r = s.rows.iter().max_by_key(|r| r.count).unwrap();
        let page =
            f.ws.population_patients(&PopulationDrillQuery {
                dimension: s.dimension.clone(),
                key: r.key.clone(),
                limit: 1000,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(page.total, r.patients, "{} {}", s.dimension, r.key);
        assert_eq!(page.rows.len() as u64, r.patients);
        let last = audit("quality").into_iter().next().unwrap();
        assert_eq!(last.outcome, Outcome::Allowed);
        assert!(last.query.as_deref().unwrap().contains(&s.dimension));
        let mut ids: Vec<String> = page.rows.iter().map(|p| p.patient_id.clone()).collect();
        ids.sort();
        let mut audited = last.patient_ids.clone();
        audited.sort();
        assert_eq!(
            audited, ids,
            "{}: audited with the patient ids",
            s.dimension
        );
        // Each listed patient is behind the number, by the cache's own rows.
        let by_id: HashMap<&str, &PanelRow> =
            rows.iter().map(|p| (p.patient_id.as_str(), p)).collect();
        for id in &ids {
            let p = by_id[id.as_str()];
            match s.dimension.as_str() {
                "sex" => assert_eq!(p.sex.as_deref().unwrap_or("unknown").to_lowercase(), r.key),
                "provider" => assert_eq!(p.pcp_id.as_deref().unwrap_or(""), r.key),
                "condition" => assert!(p.conditions.split("; ").any(|x| x == r.key)),
                "visits" => assert!(c
                    .timeline(id, &[EventKind::Encounter])
                    .unwrap()
                    .unwrap()
                    .events
                    .iter()
                    .any(|e| e.date.as_deref().and_then(|d| d.get(..7)) == Some(r.key.as_str()))),
                _ => {}
            }
        }
    }
    // A page of two, and a bad dimension.
    let small =
        f.ws.population_patients(&PopulationDrillQuery {
            dimension: "sex".into(),
            key: v.sections[1].rows[0].key.clone(),
            offset: 1,
            limit: 2,
        })
        .unwrap();
    assert_eq!(small.rows.len(), 2);
    assert_eq!(audit("quality")[0].patient_ids.len(), 2);
    assert_eq!(
        f.ws.population_patients(&PopulationDrillQuery {
            dimension: "income".into(),
            key: "x".into(),
            ..Default::default()
        })
        .unwrap_err()
        .code,
        "invalid"
    );
}
