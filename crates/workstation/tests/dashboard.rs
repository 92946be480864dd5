//! Quality dashboards against a real SQLCipher cache and the real engine: the numbers per
//! measure and group equal the engine's summary MeasureReport computed independently over the
//! same patients (everyone for a quality analyst, the attributed patients for a clinician);
//! the privacy officer is refused and audited; a drill-down returns the patients behind a
//! number within the caller's scope and is audited with their ids.

mod common;

use std::collections::{BTreeMap, HashSet};

use common::{demo_workstation, rusqlite_open, Fixture};

use access::{Action, Outcome, Role};
use cache::Cache;
use ecqm::report::{ReportContext, Summary};
use ecqm::{EvalOptions, GapStatus, Period};
use serde_json::Value as Json;
use workstation::{demo_passphrase, DashboardQuery, DrillQuery, Workstation};

fn fixture(patients: u64) -> Fixture {
    let f = demo_workstation(patients);
    let status = f.ws.evaluate_panel(&|_| {}).unwrap();
    assert_eq!((status.phase.as_str(), status.failed), ("done", 0));
    f
}

fn sign_in(ws: &Workstation, user: &str) {
    ws.logout();
    ws.login(user, &demo_passphrase(user)).unwrap();
    ws.set_purpose("TREAT").unwrap();
}

/// `(measure, group)` → `[ip, denom, denex, denexcep, numer, numex]`, the summary
/// MeasureReport's score, and the open (or prospective) gaps.
type Expected = BTreeMap<(String, String), ([u64; 6], Option<f64>, u64)>;

const CODES: [&str; 6] = [
    "initial-population",
    "denominator",
    "denominator-exclusion",
    "denominator-exception",
    "numerator",
    "numerator-exclusion",
];

/// The engine's summary MeasureReports over `patients`, computed without the workstation:
/// the shipped packages prepared for the period, each patient's stored resources evaluated by
/// `ecqm`, aggregated by `ecqm::report::Summary` and read back from the report's JSON.
fn engine_reports(c: &Cache, patients: &[String], period: &Period) -> Expected {
    let packages = workstation::evaluation::shipped_packages().unwrap();
    let measures: Vec<_> = packages
        .iter()
        .map(|p| p.prepare(period).unwrap())
        .collect();
    let overrides =
        ecqm::ImprovementOverrides::parse(workstation::evaluation::SHIPPED_IMPROVEMENT_OVERRIDES)
            .unwrap();
    let shared: Vec<Json> = c
        .shared_resources()
        .unwrap()
        .into_iter()
        .map(|(_, _, raw)| serde_json::from_str(&raw).unwrap())
        .collect();
    let mut summaries: Vec<Summary> = measures
        .iter()
        .map(|m| Summary::new(&m.def, false))
        .collect();
    let mut open: BTreeMap<(String, String), u64> = BTreeMap::new();
    for p in c.patient_resources(patients).unwrap() {
        let mut resources: Vec<Json> = p
            .resources
            .iter()
            .map(|r| serde_json::from_str(r).unwrap())
            .collect();
        resources.extend(shared.iter().cloned());
        let data = ecqm::engine::patient_data(resources).unwrap();
        for (m, summary) in measures.iter().zip(summaries.iter_mut()) {
            let r = m
                .evaluate_data(&data, &p.patient_id, EvalOptions::default())
                .unwrap();
            for g in &r.groups {
                let def = m.def.groups.iter().find(|d| d.id == g.id).unwrap();
                let notation = overrides.notation(&m.def, def);
                if matches!(
                    ecqm::gap_status(&g.populations, notation, false),
                    GapStatus::Prospective | GapStatus::Open
                ) {
                    *open.entry((m.def.name.clone(), g.id.clone())).or_default() += 1;
                }
            }
            summary.add(&r);
        }
    }
    let ctx = ReportContext::new(period.clone(), "2026-01-01T00:00:00Z".into());
    let mut out = Expected::new();
    for (m, summary) in measures.iter().zip(&summaries) {
        let report = summary.report(&m.def, &ctx);
        assert_eq!(report["type"], "summary");
        for g in report["group"].as_array().unwrap() {
            let gid = g["id"].as_str().unwrap().to_string();
            let mut counts = [0u64; 6];
            for pop in g["population"].as_array().unwrap() {
                let code = pop["code"]["coding"][0]["code"].as_str().unwrap();
                if let Some(i) = CODES.iter().position(|c| *c == code) {
                    counts[i] = pop["count"].as_u64().unwrap();
                }
            }
            let score = g["measureScore"]["value"].as_f64();
            let key = (m.def.name.clone(), gid);
            let gaps = open.get(&key).copied().unwrap_or(0);
            out.insert(key, (counts, score, gaps));
        }
    }
    out
}

/// `(group, stratifier, stratum)` → `[ip, denom, denex, denexcep, numer, numex]` and score.
type ExpectedStrata = BTreeMap<(String, String, String), ([u64; 6], Option<f64>)>;

fn population_counts(pops: &Json) -> [u64; 6] {
    let mut counts = [0u64; 6];
    for pop in pops.as_array().unwrap() {
        let code = pop["code"]["coding"][0]["code"].as_str().unwrap();
        if let Some(i) = CODES.iter().position(|c| *c == code) {
            counts[i] = pop["count"].as_u64().unwrap();
        }
    }
    counts
}

/// The stratifiers of the engine's summary MeasureReport for `measure` over `patients`
/// (every patient evaluated with stratifiers, without the workstation).
fn engine_strata(c: &Cache, measure: &str, patients: &[String], period: &Period) -> ExpectedStrata {
    let package = workstation::evaluation::shipped_packages()
        .unwrap()
        .into_iter()
        .find(|p| p.def.name == measure)
        .unwrap();
    let m = package.prepare(period).unwrap();
    let shared: Vec<Json> = c
        .shared_resources()
        .unwrap()
        .into_iter()
        .map(|(_, _, raw)| serde_json::from_str(&raw).unwrap())
        .collect();
    let mut summary = Summary::new(&m.def, false);
    let opts = EvalOptions {
        stratifiers: true,
        ..Default::default()
    };
    for p in c.patient_resources(patients).unwrap() {
        let mut resources: Vec<Json> = p
            .resources
            .iter()
            .map(|r| serde_json::from_str(r).unwrap())
            .collect();
        resources.extend(shared.iter().cloned());
        let data = ecqm::engine::patient_data(resources).unwrap();
        summary.add(&m.evaluate_data(&data, &p.patient_id, opts).unwrap());
    }
    let ctx = ReportContext::new(period.clone(), "2026-01-01T00:00:00Z".into());
    let report = summary.report(&m.def, &ctx);
    let mut out = ExpectedStrata::new();
    for g in report["group"].as_array().unwrap() {
        let gid = g["id"].as_str().unwrap();
        for s in g["stratifier"].as_array().into_iter().flatten() {
            let sid = s["id"].as_str().unwrap();
            for st in s["stratum"].as_array().unwrap() {
                out.insert(
                    (
                        gid.into(),
                        sid.into(),
                        st["value"]["text"].as_str().unwrap().into(),
                    ),
                    (
                        population_counts(&st["population"]),
                        st["measureScore"]["value"].as_f64(),
                    ),
                );
            }
        }
    }
    out
}

fn detail_strata(d: &workstation::MeasureDetail) -> ExpectedStrata {
    d.strata
        .iter()
        .map(|r| {
            let c = &r.counts;
            (
                (r.group_id.clone(), r.stratifier_id.clone(), r.value.clone()),
                (
                    [
                        c.initial_population,
                        c.denominator,
                        c.denominator_exclusion,
                        c.denominator_exception,
                        c.numerator,
                        c.numerator_exclusion,
                    ],
                    r.rate.map(|v| (v * 1e6).round() / 1e6),
                ),
            )
        })
        .collect()
}

/// The shipped measure whose group defines evaluable stratifiers (CMS130, by age).
const STRATIFIED: &str = "ColonCancerScreeningFHIR";

fn dashboard_numbers(d: &workstation::Dashboard) -> Expected {
    d.measures
        .iter()
        .map(|r| {
            let c = &r.counts;
            (
                (r.measure_id.clone(), r.group_id.clone()),
                (
                    [
                        c.initial_population,
                        c.denominator,
                        c.denominator_exclusion,
                        c.denominator_exception,
                        c.numerator,
                        c.numerator_exclusion,
                    ],
                    // The report keeps 6 decimals.
                    r.rate.map(|v| (v * 1e6).round() / 1e6),
                    r.open_gaps,
                ),
            )
        })
        .collect()
}

fn period_of(d: &workstation::Dashboard) -> Period {
    Period::new(
        d.period_start.as_deref().unwrap(),
        d.period_end.as_deref().unwrap(),
    )
    .unwrap()
}

#[test]
fn dashboard_numbers_equal_the_engines_summary_measure_report_for_the_same_patients() {
    let f = fixture(600);
    let c = Cache::open(&f.path, &f.key).unwrap();

    // A quality analyst: every patient.
    sign_in(&f.ws, "quality");
    let d = f.ws.dashboard(&DashboardQuery::default()).unwrap();
    assert_eq!(d.scope, "All patients");
    assert_eq!(d.patients_in_scope, 600);
    assert_eq!(
        d.measures.len(),
        12 + 3 + 2,
        "every group of the 12 measures"
    );
    let everyone = c.patient_ids().unwrap();
    let period = period_of(&d);
    let expected = engine_reports(&c, &everyone, &period);
    assert_eq!(dashboard_numbers(&d), expected, "per measure and group");
    let denominators: u64 = expected.values().map(|e| e.0[1]).sum();
    let open: u64 = expected.values().map(|e| e.2).sum();
    assert!(denominators > 50 && open > 20, "{denominators} {open}");
    assert_eq!(d.total.denominator, denominators);
    assert_eq!(d.total_open_gaps, open);
    assert!(
        d.trend_note.is_some(),
        "says how the trend by month is made"
    );
    let chart = roxmltree::Document::parse(&d.chart.svg).unwrap();
    assert!(chart
        .descendants()
        .any(|n| n.has_tag_name("title") && n.text() == Some(d.chart.title.as_str())));
    let bars = chart
        .descendants()
        .filter(|n| n.has_tag_name("rect") && n.attribute("fill") == Some("#2F6DB5"))
        .count();
    assert_eq!(bars, d.measures.iter().filter(|r| r.rate.is_some()).count());

    // One measure's detail: by provider and by care team, summing to no more than the whole.
    let busiest = d
        .measures
        .iter()
        .max_by_key(|r| r.counts.denominator)
        .unwrap()
        .clone();
    let detail =
        f.ws.dashboard(&DashboardQuery {
            measure: Some(busiest.measure_id.clone()),
        })
        .unwrap()
        .detail
        .unwrap();
    assert_eq!(detail.measure_id, busiest.measure_id);
    let by_provider: Vec<_> = detail
        .by_provider
        .iter()
        .filter(|r| r.group_id == busiest.group_id)
        .collect();
    assert!(by_provider.len() > 1, "several providers");
    let summed: u64 = by_provider.iter().map(|r| r.counts.denominator).sum();
    assert!(summed <= busiest.counts.denominator && summed > 0);
    assert!(!detail.by_care_team.is_empty());
    assert!(detail
        .charts
        .iter()
        .all(|ch| roxmltree::Document::parse(&ch.svg).is_ok()));
    // A provider's slice equals the engine over that provider's patients.
    let p = by_provider[0];
    let theirs: Vec<String> = {
        let mut v: Vec<String> = c
            .patients_linked_to(Some(&p.id), &[])
            .unwrap()
            .into_iter()
            .collect();
        v.sort();
        v
    };
    let slice = engine_reports(&c, &theirs, &period);
    let (counts, _, gaps) = slice[&(busiest.measure_id.clone(), busiest.group_id.clone())];
    assert_eq!(counts[1], p.counts.denominator);
    assert_eq!(counts[4], p.counts.numerator);
    assert_eq!(gaps, p.open_gaps);

    // Stratifiers: the strata of the stratified measure equal the engine's summary
    // MeasureReport stratifiers over the same patients; a table row and a chart per stratifier.
    let stratified =
        f.ws.dashboard(&DashboardQuery {
            measure: Some(STRATIFIED.into()),
        })
        .unwrap()
        .detail
        .unwrap();
    let expected_strata = engine_strata(&c, STRATIFIED, &everyone, &period);
    assert!(expected_strata.len() >= 2, "{expected_strata:?}");
    assert!(expected_strata.values().any(|e| e.0[1] > 0));
    assert_eq!(detail_strata(&stratified), expected_strata);
    let stratifiers: HashSet<&str> = stratified
        .strata
        .iter()
        .map(|r| r.stratifier_id.as_str())
        .collect();
    assert_eq!(stratified.strata_charts.len(), stratifiers.len());
    for ch in &stratified.strata_charts {
        let doc = roxmltree::Document::parse(&ch.svg).unwrap();
        assert!(doc
            .descendants()
            .any(|n| n.has_tag_name("title") && n.text() == Some(ch.title.as_str())));
    }
    // A measure without stratifiers has none (and is not evaluated for them).
    assert!(detail.strata.is_empty() || detail.measure_id == STRATIFIED);

    // A clinician: only their attributed patients' numbers.
    let (practitioner, _) = c.account_links("clinician").unwrap();
    let mut mine: Vec<String> = c
        .patients_linked_to(practitioner.as_deref(), &[])
        .unwrap()
        .into_iter()
        .collect();
    mine.sort();
    assert!(!mine.is_empty() && mine.len() < 600);
    sign_in(&f.ws, "clinician");
    let d = f.ws.dashboard(&DashboardQuery::default()).unwrap();
    assert_eq!(d.scope, "Your patients");
    assert_eq!(d.patients_in_scope, mine.len() as u64);
    assert_eq!(
        dashboard_numbers(&d),
        engine_reports(&c, &mine, &period),
        "the clinician's panel only"
    );
    let theirs =
        f.ws.dashboard(&DashboardQuery {
            measure: Some(STRATIFIED.into()),
        })
        .unwrap()
        .detail
        .unwrap();
    assert_eq!(
        detail_strata(&theirs),
        engine_strata(&c, STRATIFIED, &mine, &period),
        "the clinician's strata"
    );
}

#[test]
fn roles_targets_and_drill_down_are_checked_and_audited() {
    let f = fixture(400);
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

    // The privacy officer is refused, and the refusal is audited.
    sign_in(&f.ws, "privacy");
    let e = f.ws.dashboard(&DashboardQuery::default()).unwrap_err();
    assert_eq!(e.code, "denied");
    let e =
        f.ws.dashboard_patients(&DrillQuery {
            measure_id: "x".into(),
            group_id: "y".into(),
            population: "numerator".into(),
            ..Default::default()
        })
        .unwrap_err();
    assert_eq!(e.code, "denied");
    let refused = audit("privacy");
    assert_eq!(refused.len(), 2);
    assert!(refused.iter().all(|r| r.outcome == Outcome::Denied
        && r.role == Some(Role::PrivacyOfficer)
        && r.patient_ids.is_empty()));

    // A quality analyst without a purpose of use sees no numbers over everyone.
    f.ws.logout();
    f.ws.login("quality", &demo_passphrase("quality")).unwrap();
    assert_eq!(
        f.ws.dashboard(&DashboardQuery::default()).unwrap_err().code,
        "no_purpose"
    );
    f.ws.set_purpose("HQUALIMP").unwrap();
    let d = f.ws.dashboard(&DashboardQuery::default()).unwrap();
    let before = audit("quality").len();
    assert!(before >= 1, "the dashboard itself is audited");
    assert!(audit("quality").iter().all(|r| r.patient_ids.is_empty()));

    // Targets: stored, shown, judged by the improvement notation; out of range refused.
    let row = d
        .measures
        .iter()
        .filter(|r| r.rate.is_some())
        .max_by_key(|r| r.open_gaps)
        .unwrap()
        .clone();
    f.ws.set_dashboard_target(&row.measure_id, Some(0.5))
        .unwrap();
    assert_eq!(
        f.ws.set_dashboard_target(&row.measure_id, Some(1.5))
            .unwrap_err()
            .code,
        "invalid"
    );
    assert_eq!(
        f.ws.set_dashboard_target("no-such-measure", Some(0.5))
            .unwrap_err()
            .code,
        "not_found"
    );
    let d = f.ws.dashboard(&DashboardQuery::default()).unwrap();
    let shown = d
        .measures
        .iter()
        .find(|r| r.measure_id == row.measure_id && r.group_id == row.group_id)
        .unwrap();
    assert_eq!(shown.target, Some(0.5));
    let rate = shown.rate.unwrap();
    let expected = if shown.improvement == "decrease" {
        rate <= 0.5
    } else {
        rate >= 0.5
    };
    assert_eq!(shown.meets_target, Some(expected));
    assert!(d.measures_with_target >= 1);
    assert!(d.chart.svg.contains("#C0392B"), "the target is drawn");
    f.ws.set_dashboard_target(&row.measure_id, None).unwrap();
    let d = f.ws.dashboard(&DashboardQuery::default()).unwrap();
    assert!(d.measures.iter().all(|r| r.target.is_none()));

    // Drill-down: the patients behind the open gaps, audited with their ids.
    let drill = |population: &str| DrillQuery {
        measure_id: row.measure_id.clone(),
        group_id: row.group_id.clone(),
        population: population.into(),
        limit: 1000,
        ..Default::default()
    };
    let page = f.ws.dashboard_patients(&drill("open-gap")).unwrap();
    assert_eq!(page.total, row.open_gaps);
    assert_eq!(page.rows.len() as u64, row.open_gaps);
    let last = audit("quality").into_iter().next().unwrap();
    assert_eq!(last.outcome, Outcome::Allowed);
    let mut shown: Vec<String> = page.rows.iter().map(|r| r.patient_id.clone()).collect();
    shown.sort();
    let mut audited = last.patient_ids.clone();
    audited.sort();
    assert_eq!(audited, shown, "audited with the patient ids");
    assert!(last.query.unwrap().contains("open-gap"));
    // Each patient's stored gap agrees.
    for id in &shown {
        let gaps = c.patient_gaps(id).unwrap();
        assert!(gaps.iter().any(|g| g.measure_id == row.measure_id
            && g.group_id == row.group_id
            && g.status != "closed"));
    }
    let denominator = f.ws.dashboard_patients(&drill("denominator")).unwrap();
    assert_eq!(denominator.total, row.counts.denominator);
    let numerator = f.ws.dashboard_patients(&drill("numerator")).unwrap();
    assert_eq!(numerator.total, row.counts.numerator);
    let small =
        f.ws.dashboard_patients(&DrillQuery {
            limit: 2,
            offset: 1,
            ..drill("denominator")
        })
        .unwrap();
    assert_eq!(small.rows.len(), 2);
    assert_eq!(small.rows[0], denominator.rows[1]);
    assert_eq!(
        f.ws.dashboard_patients(&drill("everyone"))
            .unwrap_err()
            .code,
        "invalid"
    );

    // A clinician's drill-down stays within their patients.
    let (practitioner, _) = c.account_links("clinician").unwrap();
    let mine: HashSet<String> = c.patients_linked_to(practitioner.as_deref(), &[]).unwrap();
    sign_in(&f.ws, "clinician");
    let theirs = f.ws.dashboard_patients(&drill("denominator")).unwrap();
    assert!(theirs.total < denominator.total);
    assert!(theirs.rows.iter().all(|r| mine.contains(&r.patient_id)));
    let last = audit("clinician").into_iter().next().unwrap();
    assert_eq!(last.patient_ids.len(), theirs.rows.len());
}

#[test]
fn the_trend_by_month_and_the_change_since_last_month_are_the_stored_history() {
    let f = fixture(600);
    sign_in(&f.ws, "quality");
    let d = f.ws.dashboard(&DashboardQuery::default()).unwrap();
    let start = d.period_start.clone().unwrap();
    let year = &start[..4];
    let july = format!("{year}-07-01");

    // The history rewritten: every current result stored since the period's first day, and
    // until July every numerator not yet met. Today is made 15 July.
    let conn = rusqlite_open(&f);
    conn.execute(
        "UPDATE measure_result_history SET valid_from = ?1",
        [&start],
    )
    .unwrap();
    conn.execute(
        "UPDATE measure_result_history SET valid_from = ?1 WHERE numer > 0",
        [&july],
    )
    .unwrap();
    let earlier = conn
        .execute(
            "INSERT INTO measure_result_history(patient_id, measure_id, group_id, ip, denom, denex,
                    denexcep, numer, numex, valid_from, valid_to)
             SELECT patient_id, measure_id, group_id, ip, denom, denex, denexcep, 0, 0, ?1, ?2
             FROM measure_result_history WHERE numer > 0",
            [&start, &july],
        )
        .unwrap();
    assert!(earlier > 20, "{earlier} numerators");
    drop(conn);
    f.clock.store(
        access::time::parse_rfc3339_ms(&format!("{year}-07-15T12:00:00Z")).unwrap(),
        std::sync::atomic::Ordering::SeqCst,
    );
    sign_in(&f.ws, "quality");

    // The change since the end of June: the whole rate (it was 0 then).
    let d = f.ws.dashboard(&DashboardQuery::default()).unwrap();
    for r in &d.measures {
        match r.rate {
            Some(rate) => assert_eq!(
                r.change_since_last_month,
                Some(rate),
                "{} {}",
                r.measure_id,
                r.group_id
            ),
            None => assert_eq!(r.change_since_last_month, None),
        }
    }
    assert!(d.measures.iter().any(|r| r.rate.is_some_and(|x| x > 0.0)));

    // One measure's trend: January to June without its numerator, July as it is now.
    let busiest = d
        .measures
        .iter()
        .filter(|r| r.rate.is_some_and(|x| x > 0.0))
        .max_by_key(|r| r.counts.denominator)
        .unwrap()
        .clone();
    let detail =
        f.ws.dashboard(&DashboardQuery {
            measure: Some(busiest.measure_id.clone()),
        })
        .unwrap()
        .detail
        .unwrap();
    let points: Vec<_> = detail
        .trend
        .iter()
        .filter(|p| p.group_id == busiest.group_id)
        .collect();
    let months: Vec<&str> = points.iter().map(|p| p.month.as_str()).collect();
    let expected: Vec<String> = (1..=7).map(|m| format!("{year}-{m:02}")).collect();
    assert_eq!(months, expected, "the period's months until today");
    assert_eq!(points[0].as_of, format!("{year}-01-31"));
    assert_eq!(
        points[6].as_of,
        format!("{year}-07-15"),
        "today for this month"
    );
    for p in &points[..6] {
        let c = p.counts.unwrap();
        assert_eq!(
            (c.numerator, c.denominator),
            (0, busiest.counts.denominator)
        );
        assert_eq!(p.rate, Some(0.0));
    }
    assert_eq!(points[6].counts, Some(busiest.counts));
    assert_eq!(points[6].rate, busiest.rate);
    assert!(!detail.trend_charts.is_empty());
    for ch in &detail.trend_charts {
        let doc = roxmltree::Document::parse(&ch.svg).unwrap();
        assert!(doc
            .descendants()
            .any(|n| n.has_tag_name("title") && n.text() == Some(ch.title.as_str())));
    }

    // Before the first stored result there is nothing: no counts, no rate.
    let conn = rusqlite_open(&f);
    conn.execute(
        "UPDATE measure_result_history SET valid_from = ?1 WHERE valid_from = ?2",
        [&format!("{year}-03-01"), &start],
    )
    .unwrap();
    drop(conn);
    let detail =
        f.ws.dashboard(&DashboardQuery {
            measure: Some(busiest.measure_id.clone()),
        })
        .unwrap()
        .detail
        .unwrap();
    let first = detail
        .trend
        .iter()
        .find(|p| p.group_id == busiest.group_id)
        .unwrap();
    assert_eq!((first.counts, first.rate), (None, None), "{first:?}");

    // A clinician's trend: their patients only.
    sign_in(&f.ws, "clinician");
    let theirs =
        f.ws.dashboard(&DashboardQuery {
            measure: Some(busiest.measure_id.clone()),
        })
        .unwrap();
    let row = theirs
        .measures
        .iter()
        .find(|r| r.measure_id == busiest.measure_id && r.group_id == busiest.group_id)
        .unwrap();
    let last = theirs
        .detail
        .unwrap()
        .trend
        .into_iter()
        .rfind(|p| p.group_id == busiest.group_id)
        .unwrap();
    assert_eq!(last.counts, Some(row.counts));
    assert_eq!(theirs.scope, "Your patients");
    assert!(
        row.counts.denominator < busiest.counts.denominator,
        "{} {:?}",
        theirs.patients_in_scope,
        row.counts
    );
}
