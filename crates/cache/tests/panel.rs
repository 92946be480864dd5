//! Panel filters/sorts/paging, timeline and patient summary on a small known set.

mod common;

use cache::{Cache, EventKind, PanelQuery, PanelSort, SortDir};
use common::key;

fn patient(
    id: &str,
    family: &str,
    given: &str,
    birth: &str,
    sex: &str,
    pcp: Option<&str>,
) -> String {
    let gp = pcp
        .map(|p| format!(r#","generalPractitioner":[{{"reference":"Practitioner/{p}"}}]"#))
        .unwrap_or_default();
    format!(
        r#"{{"resourceType":"Patient","id":"{id}","name":[{{"use":"official","family":"{family}","given":["{given}"]}}],"gender":"{sex}","birthDate":"{birth}"{gp}}}"#
    )
}

fn condition(id: &str, pid: &str, code: &str, display: &str, status: &str) -> String {
    format!(
        r#"{{"resourceType":"Condition","id":"{id}","clinicalStatus":{{"coding":[{{"code":"{status}"}}]}},"code":{{"coding":[{{"system":"http://snomed.info/sct","code":"{code}","display":"{display}"}}]}},"subject":{{"reference":"Patient/{pid}"}},"onsetDateTime":"2010-01-01"}}"#
    )
}

fn encounter(id: &str, pid: &str, date: &str) -> String {
    format!(
        r#"{{"resourceType":"Encounter","id":"{id}","status":"finished","class":{{"code":"AMB"}},"subject":{{"reference":"Patient/{pid}"}},"period":{{"start":"{date}"}}}}"#
    )
}

fn obs(id: &str, pid: &str, code: &str, date: &str, value: f64, unit: &str) -> String {
    format!(
        r#"{{"resourceType":"Observation","id":"{id}","status":"final","code":{{"coding":[{{"system":"http://loinc.org","code":"{code}"}}]}},"subject":{{"reference":"Patient/{pid}"}},"effectiveDateTime":"{date}","valueQuantity":{{"value":{value},"unit":"{unit}"}}}}"#
    )
}

fn bp(id: &str, pid: &str, date: &str, s: f64, d: f64) -> String {
    format!(
        r#"{{"resourceType":"Observation","id":"{id}","status":"final","code":{{"coding":[{{"system":"http://loinc.org","code":"85354-9"}}]}},"subject":{{"reference":"Patient/{pid}"}},"effectiveDateTime":"{date}","component":[{{"code":{{"coding":[{{"code":"8480-6"}}]}},"valueQuantity":{{"value":{s},"unit":"mmHg"}}}},{{"code":{{"coding":[{{"code":"8462-4"}}]}},"valueQuantity":{{"value":{d},"unit":"mmHg"}}}}]}}"#
    )
}

/// 8 patients; "today" for ages is 2026-06-15.
fn known_set() -> Vec<String> {
    vec![
        r#"{"resourceType":"Practitioner","id":"drA","name":[{"family":"Adams","given":["Ann"]}]}"#.into(),
        r#"{"resourceType":"Practitioner","id":"drB","name":[{"family":"Baker","given":["Bob"]}]}"#.into(),
        r#"{"resourceType":"Group","id":"gB","managingEntity":{"reference":"Practitioner/drB"},"member":[{"entity":{"reference":"Patient/p8"}}]}"#.into(),
        patient("p1", "Zimmer", "Anna", "1950-06-15", "female", Some("drA")), // 76
        patient("p2", "Young", "Boris", "1950-06-16", "male", Some("drA")),   // 75
        patient("p3", "Xu", "Carla", "1980-01-01", "female", Some("drB")),    // 46
        patient("p4", "Walker", "Dmitri", "2008-06-15", "male", Some("drB")), // 18
        patient("p5", "Vance", "Elena", "2008-06-16", "female", Some("drA")), // 17
        patient("p6", "Ustinov", "Anna Maria", "1965-03-03", "female", None), // 61, no PCP
        patient("p7", "Zimmerman", "Tomás", "1990-12-31", "male", Some("drB")), // 35
        patient("p8", "Ortiz", "Lena", "2000-02-29", "other", None),          // 26, PCP via Group
        condition("c1", "p1", "44054006", "Diabetes mellitus type 2", "active"),
        condition("c2", "p1", "38341003", "Hypertensive disorder", "active"),
        condition("c3", "p3", "44054006", "Diabetes mellitus type 2", "active"),
        condition("c4", "p4", "38341003", "Hypertensive disorder", "resolved"),
        condition("c5", "p7", "38341003", "Hypertensive disorder", "active"),
        encounter("e1", "p1", "2024-01-10T09:00:00Z"),
        encounter("e2", "p1", "2025-03-01T09:00:00Z"),
        encounter("e3", "p2", "2023-07-07"),
        encounter("e4", "p3", "2025-05-05"),
        obs("o1", "p1", "4548-4", "2024-01-10T09:10:00Z", 8.1, "%"),
        obs("o2", "p1", "4548-4", "2025-03-01T09:10:00Z", 7.2, "%"),
        obs("o3", "p1", "39156-5", "2025-03-01T09:11:00Z", 31.5, "kg/m2"),
        bp("o4", "p1", "2024-01-10T09:05:00Z", 150.0, 95.0),
        bp("o5", "p1", "2025-03-01T09:05:00Z", 132.0, 84.0),
        obs("o6", "p2", "8480-6", "2023-07-07T10:00:00Z", 121.0, "mmHg"),
        obs("o7", "p2", "8462-4", "2023-07-07T10:00:00Z", 79.0, "mmHg"),
        r#"{"resourceType":"Immunization","id":"i1","status":"completed","vaccineCode":{"text":"Flu"},"patient":{"reference":"Patient/p1"},"occurrenceDateTime":"2022-10-01"}"#.into(),
        r#"{"resourceType":"MedicationRequest","id":"m1","status":"active","intent":"order","medicationCodeableConcept":{"coding":[{"code":"860975","display":"metformin"}]},"subject":{"reference":"Patient/p1"}}"#.into(),
        r#"{"resourceType":"Coverage","id":"cov1","status":"active","beneficiary":{"reference":"Patient/p1"}}"#.into(),
    ]
}

fn setup() -> (tempfile::TempDir, Cache) {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cache::open(dir.path().join("c.db"), &key()).unwrap();
    let s = common::import_lines(&mut c, &known_set());
    assert_eq!(
        (s.patients, s.practitioners, s.groups, s.other),
        (8, 2, 1, 1)
    );
    (dir, c)
}

fn q() -> PanelQuery {
    PanelQuery {
        as_of: Some("2026-06-15".into()),
        limit: 100,
        ..Default::default()
    }
}

fn ids(c: &Cache, q: &PanelQuery) -> Vec<String> {
    c.panel(q)
        .unwrap()
        .rows
        .into_iter()
        .map(|r| r.patient_id)
        .collect()
}

#[test]
fn default_sort_is_name_and_rows_are_complete() {
    let (_d, c) = setup();
    let page = c.panel(&q()).unwrap();
    assert_eq!(page.total, 8);
    let names: Vec<_> = page.rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "Ortiz, Lena",
            "Ustinov, Anna Maria",
            "Vance, Elena",
            "Walker, Dmitri",
            "Xu, Carla",
            "Young, Boris",
            "Zimmer, Anna",
            "Zimmerman, Tomás"
        ]
    );
    let p1 = page.rows.iter().find(|r| r.patient_id == "p1").unwrap();
    assert_eq!(p1.age, Some(76));
    assert_eq!(p1.sex.as_deref(), Some("female"));
    assert_eq!(p1.pcp_id.as_deref(), Some("drA"));
    assert_eq!(p1.pcp_name.as_deref(), Some("Adams, Ann"));
    assert_eq!(p1.last_visit.as_deref(), Some("2025-03-01T09:00:00Z"));
    assert_eq!(
        p1.conditions,
        "Diabetes mellitus type 2; Hypertensive disorder"
    );
    // Resolved conditions are not listed; PCP from the Group when the Patient has none.
    let p4 = page.rows.iter().find(|r| r.patient_id == "p4").unwrap();
    assert_eq!(p4.conditions, "");
    let p8 = page.rows.iter().find(|r| r.patient_id == "p8").unwrap();
    assert_eq!(p8.pcp_id.as_deref(), Some("drB"));
    let p6 = page.rows.iter().find(|r| r.patient_id == "p6").unwrap();
    assert_eq!(p6.pcp_id, None);
    assert_eq!(p6.last_visit, None);
}

#[test]
fn name_filter_is_case_insensitive_substring_of_every_word() {
    let (_d, c) = setup();
    let f = |s: &str| {
        ids(
            &c,
            &PanelQuery {
                name: Some(s.into()),
                ..q()
            },
        )
    };
    assert_eq!(f("zimmer"), ["p1", "p7"]);
    assert_eq!(f("ZIMMERMAN"), ["p7"]);
    assert_eq!(f("anna"), ["p6", "p1"]);
    assert_eq!(f("anna zim"), ["p1"]);
    assert_eq!(f("Zimmer, Anna"), ["p1"]);
    assert_eq!(f("tomás"), ["p7"]);
    assert_eq!(f("TOMÁS"), ["p7"]);
    assert_eq!(f("nobody"), Vec::<String>::new());
    assert_eq!(f("%"), Vec::<String>::new());
    assert_eq!(f("   ").len(), 8);
}

#[test]
fn age_range_is_inclusive_at_birthdays() {
    let (_d, c) = setup();
    let f = |a: Option<u32>, b: Option<u32>| {
        let mut v = ids(
            &c,
            &PanelQuery {
                min_age: a,
                max_age: b,
                sort: PanelSort::Id,
                ..q()
            },
        );
        v.sort();
        v
    };
    assert_eq!(f(Some(18), Some(18)), ["p4"]); // 18 today, not 17-year-old p5
    assert_eq!(f(Some(76), None), ["p1"]); // 76 today; p2 turns 76 tomorrow
    assert_eq!(f(None, Some(17)), ["p5"]);
    assert_eq!(f(Some(26), Some(46)), ["p3", "p7", "p8"]);
    assert_eq!(f(Some(75), Some(75)), ["p2"]);
    let err = c
        .panel(&PanelQuery {
            min_age: Some(50),
            max_age: Some(40),
            ..q()
        })
        .unwrap_err();
    assert!(err.to_string().contains("minimum age"));
}

#[test]
fn sex_provider_and_condition_filters() {
    let (_d, c) = setup();
    let f = |q: PanelQuery| {
        let mut v = ids(&c, &q);
        v.sort();
        v
    };
    assert_eq!(
        f(PanelQuery {
            sex: Some("male".into()),
            ..q()
        }),
        ["p2", "p4", "p7"]
    );
    assert_eq!(
        f(PanelQuery {
            sex: Some("other".into()),
            ..q()
        }),
        ["p8"]
    );
    assert_eq!(
        f(PanelQuery {
            pcp_id: Some("drA".into()),
            ..q()
        }),
        ["p1", "p2", "p5"]
    );
    assert_eq!(
        f(PanelQuery {
            pcp_id: Some("drB".into()),
            ..q()
        }),
        ["p3", "p4", "p7", "p8"]
    );
    assert_eq!(
        f(PanelQuery {
            condition: Some("44054006".into()),
            ..q()
        }),
        ["p1", "p3"]
    );
    assert_eq!(
        f(PanelQuery {
            condition: Some("hypertensive".into()),
            ..q()
        }),
        ["p1", "p7"]
    );
    assert_eq!(
        f(PanelQuery {
            condition: Some("4405".into()),
            ..q()
        }),
        Vec::<String>::new()
    );
    // Combined.
    assert_eq!(
        f(PanelQuery {
            condition: Some("Diabetes".into()),
            sex: Some("female".into()),
            pcp_id: Some("drB".into()),
            min_age: Some(40),
            ..q()
        }),
        ["p3"]
    );
    let page = c
        .panel(&PanelQuery {
            pcp_id: Some("drB".into()),
            limit: 2,
            ..q()
        })
        .unwrap();
    assert_eq!(page.total, 4);
    assert_eq!(page.rows.len(), 2);
}

#[test]
fn every_sort_column_both_directions() {
    let (_d, c) = setup();
    let s = |sort, dir| ids(&c, &PanelQuery { sort, dir, ..q() });
    assert_eq!(
        s(PanelSort::Id, SortDir::Asc),
        ["p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8"]
    );
    assert_eq!(
        s(PanelSort::Id, SortDir::Desc),
        ["p8", "p7", "p6", "p5", "p4", "p3", "p2", "p1"]
    );
    assert_eq!(
        s(PanelSort::Name, SortDir::Desc),
        ["p7", "p1", "p2", "p3", "p4", "p5", "p6", "p8"]
    );
    assert_eq!(
        s(PanelSort::BirthDate, SortDir::Asc),
        ["p1", "p2", "p6", "p3", "p7", "p8", "p4", "p5"]
    );
    assert_eq!(
        s(PanelSort::Age, SortDir::Asc),
        ["p5", "p4", "p8", "p7", "p3", "p6", "p2", "p1"]
    );
    assert_eq!(
        s(PanelSort::Age, SortDir::Desc),
        s(PanelSort::BirthDate, SortDir::Asc)
    );
    // Ties broken by patient id in the same direction.
    assert_eq!(
        s(PanelSort::Sex, SortDir::Asc),
        ["p1", "p3", "p5", "p6", "p2", "p4", "p7", "p8"]
    );
    assert_eq!(
        s(PanelSort::Pcp, SortDir::Asc),
        ["p6", "p1", "p2", "p5", "p3", "p4", "p7", "p8"]
    );
    assert_eq!(
        s(PanelSort::LastVisit, SortDir::Desc)[..4],
        ["p3", "p1", "p2", "p8"]
    );
    assert_eq!(
        s(PanelSort::Conditions, SortDir::Desc)[..3],
        ["p7", "p1", "p3"]
    );
}

#[test]
fn paging_and_invalid_queries() {
    let (_d, c) = setup();
    let all = ids(
        &c,
        &PanelQuery {
            sort: PanelSort::Id,
            ..q()
        },
    );
    let mut paged = Vec::new();
    for off in (0..8).step_by(3) {
        let p = c
            .panel(&PanelQuery {
                sort: PanelSort::Id,
                offset: off,
                limit: 3,
                ..q()
            })
            .unwrap();
        assert_eq!(p.total, 8);
        paged.extend(p.rows.into_iter().map(|r| r.patient_id));
    }
    assert_eq!(paged, all);
    let past = c.panel(&PanelQuery { offset: 50, ..q() }).unwrap();
    assert_eq!((past.rows.len(), past.total), (0, 8));
    assert!(c.panel(&PanelQuery { limit: 0, ..q() }).is_err());
    assert!(c.panel(&PanelQuery { limit: 1001, ..q() }).is_err());
    assert!(c
        .panel(&PanelQuery {
            as_of: Some("yesterday".into()),
            ..q()
        })
        .is_err());
    // Injection attempts are just text.
    let f = ids(
        &c,
        &PanelQuery {
            name: Some("' OR 1=1 --".into()),
            ..q()
        },
    );
    assert!(f.is_empty());
    assert_eq!(
        c.panel_providers().unwrap(),
        vec![
            ("drA".to_string(), Some("Adams, Ann".to_string()), 3),
            ("drB".to_string(), Some("Baker, Bob".to_string()), 4),
        ]
    );
}

#[test]
fn timeline_is_ordered_filtered_and_has_latest_values() {
    let (_d, c) = setup();
    let t = c.timeline("p1", &[]).unwrap().unwrap();
    let dates: Vec<_> = t.events.iter().map(|e| e.date.clone()).collect();
    // Oldest first, undated (the medication) last.
    assert_eq!(dates.first().unwrap().as_deref(), Some("2010-01-01"));
    assert_eq!(dates.last().unwrap(), &None);
    assert_eq!(t.events.len(), 11);
    let bp = t.latest_bp.unwrap();
    assert_eq!((bp.systolic, bp.diastolic), (132.0, 84.0));
    assert_eq!(bp.date.as_deref(), Some("2025-03-01T09:05:00Z"));
    let a1c = t.latest_hba1c.unwrap();
    assert_eq!(a1c.value, 7.2);
    assert_eq!(a1c.unit.as_deref(), Some("%"));
    assert_eq!(t.latest_bmi.unwrap().value, 31.5);

    let only = c
        .timeline("p1", &[EventKind::Encounter, EventKind::Immunization])
        .unwrap()
        .unwrap();
    let kinds: Vec<_> = only.events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            EventKind::Immunization,
            EventKind::Encounter,
            EventKind::Encounter
        ]
    );
    // Latest values do not depend on the kinds filter.
    assert!(only.latest_bp.is_some());
    let raw = c.event_raw(only.events[0].id).unwrap().unwrap();
    assert!(raw.contains("\"Immunization\""));

    // Separate systolic/diastolic observations with the same time form a BP.
    let t2 = c.timeline("p2", &[]).unwrap().unwrap();
    let bp2 = t2.latest_bp.unwrap();
    assert_eq!((bp2.systolic, bp2.diastolic), (121.0, 79.0));
    assert!(t2.latest_hba1c.is_none());

    assert!(c.timeline("nobody", &[]).unwrap().is_none());
    let empty = c.timeline("p6", &[]).unwrap().unwrap();
    assert!(empty.events.is_empty() && empty.latest_bp.is_none());
}

#[test]
fn patient_summary_has_header_data() {
    let (_d, c) = setup();
    let s = c.patient_summary("p1").unwrap().unwrap();
    assert_eq!(s.row.name, "Zimmer, Anna");
    assert!(s.active && !s.deceased);
    let conds: Vec<_> = s
        .active_conditions
        .iter()
        .map(|e| e.code.clone().unwrap())
        .collect();
    assert_eq!(conds, ["44054006", "38341003"]);
    assert_eq!(s.latest_hba1c.unwrap().value, 7.2);
    let counts: std::collections::HashMap<_, _> = s.event_counts.into_iter().collect();
    assert_eq!(counts[&EventKind::Observation], 5);
    assert_eq!(counts[&EventKind::Encounter], 2);
    assert_eq!(counts[&EventKind::Procedure], 0);
    assert!(c.patient_summary("nobody").unwrap().is_none());
    assert!(c.patient_raw("p1").unwrap().unwrap().contains("Zimmer"));
}
