//! Stored results as dashboards and reports read them, on a real SQLCipher file: stratum
//! values and supplemental data stored once each and read back, one measure's rows, sums by
//! counts and strata, each result's history (what was stored on a given day), and an
//! imported panel that drops a patient ending that patient's history.

mod common;

use std::collections::HashSet;

use cache::{Cache, PatientEvaluation, PopulationCounts, StoredResult};
use common::key;

fn patient(id: &str) -> String {
    format!(
        r#"{{"resourceType":"Patient","id":"{id}","gender":"female","birthDate":"1960-01-01"}}"#
    )
}

fn counts(denom: u32, numer: u32) -> PopulationCounts {
    PopulationCounts {
        ip: 1,
        denom,
        numer,
        ..Default::default()
    }
}

fn result(measure: &str, c: PopulationCounts, strata: Option<&str>) -> StoredResult {
    StoredResult {
        measure_id: measure.into(),
        group_id: "g1".into(),
        counts: c,
        strata: strata.map(str::to_string),
        sde: Some(r#"[["sde-sex",{"code":"F"}]]"#.into()),
    }
}

fn store(c: &Cache, patient: &str, results: Vec<StoredResult>, at: &str) {
    c.store_evaluations(
        &[PatientEvaluation {
            patient_id: patient.into(),
            data_hash: "h".into(),
            results,
            gaps: Vec::new(),
        }],
        "setup",
        at,
    )
    .unwrap();
}

/// `(measure, group, denom, numer) -> patients` on `day`.
fn on(c: &Cache, day: &str, scope: Option<&HashSet<String>>) -> Vec<(String, u32, u32, u64)> {
    let mut v: Vec<_> = c
        .result_tallies_on(day, scope)
        .unwrap()
        .into_iter()
        .map(|t| (t.measure_id, t.counts.denom, t.counts.numer, t.patients))
        .collect();
    v.sort();
    v
}

#[test]
fn strata_sde_sums_and_history_are_stored_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let k = key();
    let mut c = Cache::open(&path, &k).unwrap();
    let lines: Vec<String> = ["p1", "p2", "p3"].iter().map(|p| patient(p)).collect();
    common::import_lines(&mut c, &lines);

    let under_65 = r#"[["strat-1",true]]"#;
    let over_65 = r#"[["strat-1",false]]"#;
    // January: p1 and p2 in the denominator, p2 met; p3 in M2 only.
    store(
        &c,
        "p1",
        vec![result("M1", counts(1, 0), Some(under_65))],
        "2026-01-10T08:00:00Z",
    );
    store(
        &c,
        "p2",
        vec![result("M1", counts(1, 1), Some(over_65))],
        "2026-01-10T08:00:00Z",
    );
    store(
        &c,
        "p3",
        vec![result("M2", counts(1, 1), None)],
        "2026-01-10T08:00:00Z",
    );
    // March: p1 meets the numerator; p2 leaves the measure.
    store(
        &c,
        "p1",
        vec![result("M1", counts(1, 1), Some(under_65))],
        "2026-03-02T08:00:00Z",
    );
    store(&c, "p2", vec![], "2026-03-02T08:00:00Z");
    // Twice the same day: only the last value remains in the history.
    store(
        &c,
        "p3",
        vec![result("M2", counts(1, 0), None)],
        "2026-03-05T08:00:00Z",
    );
    store(
        &c,
        "p3",
        vec![result("M2", counts(1, 1), None)],
        "2026-03-05T09:00:00Z",
    );

    // The values are stored once each and read back as written.
    let values = c.result_values().unwrap();
    let mut texts: Vec<&str> = values.values().map(String::as_str).collect();
    texts.sort();
    assert_eq!(
        texts,
        [r#"[["sde-sex",{"code":"F"}]]"#, over_65, under_65],
        "three distinct values, each once"
    );
    let rows = c.result_rows(Some("M1")).unwrap();
    assert_eq!(rows.len(), 1, "only p1 is in M1 now");
    assert_eq!(rows[0].patient_id, "p1");
    assert_eq!(values[&rows[0].strata.unwrap()], under_65);
    assert_eq!(
        values[&rows[0].sde.unwrap()],
        r#"[["sde-sex",{"code":"F"}]]"#
    );
    assert_eq!(c.result_rows(None).unwrap().len(), 2);

    // Sums by counts and strata.
    store(
        &c,
        "p2",
        vec![result("M1", counts(1, 1), Some(under_65))],
        "2026-03-20T08:00:00Z",
    );
    let tallies = c.result_tallies(Some("M1")).unwrap();
    assert_eq!(tallies.len(), 1, "{tallies:?}");
    assert_eq!((tallies[0].counts, tallies[0].patients), (counts(1, 1), 2));

    // The history: what was stored at the end of each day.
    assert_eq!(
        on(&c, "2026-01-09", None),
        vec![],
        "before the first evaluation"
    );
    assert_eq!(
        on(&c, "2026-01-31", None),
        vec![
            ("M1".into(), 1, 0, 1),
            ("M1".into(), 1, 1, 1),
            ("M2".into(), 1, 1, 1)
        ]
    );
    assert_eq!(
        on(&c, "2026-03-10", None),
        vec![("M1".into(), 1, 1, 1), ("M2".into(), 1, 1, 1)],
        "p2 had left M1; p3's intermediate value of 2026-03-05 is gone"
    );
    assert_eq!(
        on(&c, "2026-03-31", None),
        vec![("M1".into(), 1, 1, 2), ("M2".into(), 1, 1, 1)]
    );
    let only_p1: HashSet<String> = ["p1".to_string()].into();
    assert_eq!(
        on(&c, "2026-01-31", Some(&only_p1)),
        vec![("M1".into(), 1, 0, 1)]
    );
    let history = c.result_history("M1", "2026-01-01", "2026-12-31").unwrap();
    assert_eq!(history.len(), 4, "p1 twice, p2 twice: {history:?}");
    let p1: Vec<_> = history.iter().filter(|h| h.patient_id == "p1").collect();
    assert!(p1.iter().any(|h| h.valid_from == "2026-01-10"
        && h.valid_to.as_deref() == Some("2026-03-02")
        && h.counts == counts(1, 0)));
    assert!(p1
        .iter()
        .any(|h| h.valid_from == "2026-03-02" && h.valid_to.is_none()));
    assert!(c
        .result_history("M1", "2026-01-01", "2026-01-09")
        .unwrap()
        .is_empty());

    // A new import without p3: p3's results are forgotten, its history ends today, and the
    // history survives the import (kept tables) and a reopen.
    let lines: Vec<String> = ["p1", "p2"].iter().map(|p| patient(p)).collect();
    common::import_lines(&mut c, &lines);
    assert_eq!(c.forget_missing_patients().unwrap(), 1);
    drop(c);
    let c = Cache::open(&path, &k).unwrap();
    let today = access::time::rfc3339_from_unix_ms(access::time::now_unix_ms())[..10].to_string();
    let p3 = c.result_history("M2", "2026-01-01", "2999-12-31").unwrap();
    assert_eq!(p3.len(), 2, "{p3:?}");
    assert!(p3.iter().all(|h| h.valid_to.is_some()), "{p3:?}");
    assert!(p3
        .iter()
        .any(|h| h.valid_from == "2026-03-05" && h.valid_to.as_deref() == Some(today.as_str())));
    assert_eq!(c.result_rows(Some("M2")).unwrap(), vec![]);
}
