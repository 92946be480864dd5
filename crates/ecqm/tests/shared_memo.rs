//! A patient's memo shared across measures (`cql::PatientMemo`) must give exactly the results of
//! evaluating each measure on its own: libraries are shared only when identical, with identical
//! parameters. Every official case is evaluated against all twelve measures, for two different
//! measurement periods, through one memo, and compared with fresh evaluations.

use std::path::{Path, PathBuf};

use ecqm::engine::{patient_data, MeasurePackage};
use ecqm::patients::PatientItem;
use ecqm::{EvalOptions, Period};

fn shared_dir() -> PathBuf {
    std::env::var_os("PHM_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.retain(|p| p.extension().and_then(|e| e.to_str()) == Some("json"));
    v.sort();
    v
}

#[test]
fn shared_memo_equals_separate_evaluation() {
    let dir = shared_dir().join("ecqm");
    if !dir.join("measures").is_dir() {
        eprintln!("skipping: {} not found", dir.display());
        return;
    }
    let pkgs = MeasurePackage::load_all(&dir.join("measures")).expect("measures");
    let periods = [
        Period::new("2025-01-01", "2025-12-31").unwrap(),
        Period::new("2024-01-01", "2024-12-31").unwrap(),
    ];
    // both periods of every measure, interleaved, through one memo per patient
    let measures: Vec<_> = pkgs
        .iter()
        .flat_map(|p| {
            periods
                .iter()
                .map(move |per| p.prepare(per).expect("prepare"))
        })
        .collect();
    let opts = EvalOptions {
        supplemental_data: true,
        stratifiers: true,
        ..EvalOptions::default()
    };
    let mut checked = 0;
    for p in &pkgs {
        // a few cases per measure keep the debug-build test short
        for f in files(&dir.join("cases").join(&p.def.name)).iter().take(2) {
            let rec = PatientItem::File(f.clone()).load().expect("case");
            let data = patient_data(rec.resources.clone()).expect("convert");
            let memo = cql::PatientMemo::new(&data);
            for m in &measures {
                let shared = m.evaluate_memo(&memo, &rec.id, opts);
                let alone = m.evaluate_data(&data, &rec.id, opts);
                match (shared, alone) {
                    (Ok(a), Ok(b)) => assert_eq!(
                        serde_json::to_string(&a).unwrap(),
                        serde_json::to_string(&b).unwrap(),
                        "{} / {} / {:?}",
                        m.def.name,
                        rec.id,
                        m.period
                    ),
                    (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
                    (a, b) => panic!("{}: {:?} vs {:?}", m.def.name, a.is_ok(), b.is_ok()),
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 0);
    // the one-patient convenience gives the same
    let f = &files(&dir.join("cases").join(&pkgs[0].def.name))[0];
    let rec = PatientItem::File(f.clone()).load().expect("case");
    let all = ecqm::engine::evaluate_all(&measures, &rec, opts).expect("convert");
    for (m, r) in measures.iter().zip(all) {
        let alone = m.evaluate(&rec, opts);
        assert_eq!(
            r.map(|r| serde_json::to_string(&r).unwrap())
                .map_err(|e| e.to_string()),
            alone
                .map(|r| serde_json::to_string(&r).unwrap())
                .map_err(|e| e.to_string())
        );
    }
}
