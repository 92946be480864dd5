//! `phm-edw measure` through the EDW equals the ecqm engine run directly on the same NDJSON.
use std::collections::HashMap;
use std::path::PathBuf;

#[test]
fn measure_results_from_edw_match_direct_engine_run() {
    let pkg = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/ecqm/measures/DiabetesGlycemicStatusAssessmentGreaterThan9PercentFHIR.json");
    assert!(
        pkg.exists(),
        "shared eCQM package missing: {}",
        pkg.display()
    );
    let pg = edw::pgharness::PgHarness::start().unwrap();
    let url = pg.create_db("m").unwrap();
    let mut c = edw::connect(&url).unwrap();
    edw::migrate::migrate(&mut c).unwrap();
    let tmp = std::env::temp_dir().join(format!("edw-measure-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let g = synth::Generator::new(synth::SynthConfig::new(120, 9)).unwrap();
    synth::write_ndjson_dir(&g, &tmp, 1, &mut |_| {}).unwrap();
    edw::ingest::ingest(
        &mut c,
        std::slice::from_ref(&tmp),
        &edw::ingest::Options::new("synth"),
    )
    .unwrap();
    edw::matching::run(&mut c, &edw::matching::Params::default()).unwrap();
    // Chunks of 7 persons: results must not depend on where chunks split.
    let rep = edw::measure::run_in_chunks(&mut c, &pkg, 2025, 7, &[]).unwrap();
    assert_eq!(rep.errors, 0);
    assert_eq!(rep.persons, 120);

    // Direct: the engine on the NDJSON files.
    let m = ecqm::engine::MeasurePackage::load(&pkg).unwrap();
    let prepared = m
        .prepare(&ecqm::Period::new("2025-01-01", "2025-12-31").unwrap())
        .unwrap();
    let src = ecqm::PatientSource::open(&tmp).unwrap();
    let mut direct: HashMap<(String, String), i32> = HashMap::new();
    src.for_each_batch(&ecqm::ReadOptions::default(), |items| {
        for it in items {
            let rec = it.load()?;
            let r = prepared.evaluate(&rec, ecqm::EvalOptions::default())?;
            for (code, b) in &r.groups[0].populations.0 {
                direct.insert((rec.id.clone(), code.code().to_string()), *b as i32);
            }
        }
        Ok(())
    })
    .unwrap();
    let mut via_edw: HashMap<(String, String), i32> = HashMap::new();
    for r in c
        .query(
            "SELECT sp.source_id, mr.population, mr.count FROM edw.measure_result mr
             JOIN edw.source_patient sp ON sp.person_id = mr.person_id",
            &[],
        )
        .unwrap()
    {
        via_edw.insert((r.get(0), r.get(1)), r.get(2));
    }
    assert_eq!(via_edw.len(), direct.len());
    assert_eq!(via_edw, direct);
    let ip = direct
        .iter()
        .filter(|(k, v)| k.1 == "initial-population" && **v == 1)
        .count();
    assert!(
        ip > 0,
        "synthetic population has no one in the initial population"
    );
    // Idempotent: a second run changes nothing.
    let before: i64 = c
        .query_one("SELECT max(change_no) FROM edw.measure_result", &[])
        .unwrap()
        .get(0);
    edw::measure::run(&mut c, &pkg, 2025).unwrap();
    let after: i64 = c
        .query_one("SELECT max(change_no) FROM edw.measure_result", &[])
        .unwrap()
        .get(0);
    assert_eq!(before, after);

    // Gap status follows the improvement notation. The package's coding says
    // "decrease" with the display "increase": it is ignored and `increase`
    // assumed; an explicit override by CMS id flips it.
    let count =
        |c: &mut postgres::Client, sql: &str| -> i64 { c.query_one(sql, &[]).unwrap().get(0) };
    let open = "SELECT count(*) FROM edw.care_gap WHERE status = 'open'";
    let total = count(&mut c, "SELECT count(*) FROM edw.care_gap");
    let met = count(
        &mut c,
        "SELECT count(*) FROM edw.care_gap g JOIN edw.measure_result r
           ON r.person_id = g.person_id AND r.measure_id = g.measure_id
          AND r.period_start = g.period_start AND r.population = 'numerator' AND r.count = 1",
    );
    assert!(
        met > 0 && met < total,
        "both gap states occur ({met} of {total})"
    );
    assert_eq!(count(&mut c, open), total - met);
    let overrides = edw::measure::parse_improvement_overrides("122FHIR=decrease").unwrap();
    edw::measure::run_in_chunks(&mut c, &pkg, 2025, 50, &overrides).unwrap();
    assert_eq!(count(&mut c, open), met);
    assert!(edw::measure::parse_improvement_overrides("122FHIR=sideways").is_err());
    assert!(edw::measure::parse_improvement_overrides("decrease").is_err());
    let _ = std::fs::remove_dir_all(&tmp);
}
