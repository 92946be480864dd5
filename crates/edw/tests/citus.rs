//! The warehouse on a Citus cluster (a coordinator and two workers on this machine) beside the
//! same load on one node: `phm-edw migrate --citus` distributes a loaded warehouse by person,
//! after which the stored results, the five quality queries, a patient's read, row-level
//! security and a new attribution give the same answers as on one node; the per-person read is routed to one shard
//! and the aggregates are pushed down to the workers (EXPLAIN); a third worker joins with a
//! rebalance while the quality queries run, and the answers stay the same; the writers run on
//! the cluster as on one node; `phm-edw serve` answers as on one node.
//!
//! Skipped without Citus (`../shared/citus/install`) unless CI is set.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::bulk::{call, poll, KICK};
use common::smart::{register_client, Es384Key, Server, SigningKey};
use testkit::citus::{citus_installed, CitusCluster};
use testkit::pgharness::PgHarness;

fn measures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/ecqm/measures")
}

/// The same data on every database: 150 generated patients (realistic measure results) and
/// the small test set with two organisations and care teams (row-level security, teams).
fn load(url: &str, data: &Path) {
    let mut c = edw::connect(url).unwrap();
    edw::migrate::migrate(&mut c).unwrap();
    for (source, dir) in [
        ("synth", data.join("synth")),
        ("clinic", data.join("clinic")),
    ] {
        let mut opts = edw::ingest::Options::new(source);
        opts.progress = false;
        edw::ingest::ingest(&mut c, &[dir], &opts).unwrap();
    }
    edw::matching::run(&mut c, &edw::matching::Params::default()).unwrap();
    edw::attribute::run(&mut c, Some("2025-12-31")).unwrap();
    edw::measure::run(&mut c, &measures_dir(), 2025).unwrap();
    edw::etl::run(&mut c).unwrap();
    c.batch_execute(
        "CREATE ROLE org1_reader LOGIN IN ROLE edw_org_reader;
         INSERT INTO edw.org_role SELECT 'org1_reader', id FROM edw.organization
         WHERE source = 'clinic' AND source_id = 'org1';",
    )
    .unwrap();
}

fn results(c: &mut postgres::Client) -> String {
    let mut out = Vec::new();
    let n = edw::results::write_results(c, 2025, None, &mut out).unwrap();
    assert!(n > 1000, "{n} results");
    String::from_utf8(out).unwrap()
}

/// Every row of `sql`, as text, sorted.
fn rows(c: &mut postgres::Client, sql: &str) -> Vec<String> {
    rows_of(c, sql, &[])
}

fn rows_of(
    c: &mut postgres::Client,
    sql: &str,
    params: &[&(dyn postgres::types::ToSql + Sync)],
) -> Vec<String> {
    c.query(
        // The record's text, not JSON: Citus may hand back an intermediate result whose
        // columns have lost their names.
        &format!("SELECT q::text FROM ({sql}) q ORDER BY 1"),
        params,
    )
    .unwrap_or_else(|e| panic!("{sql}: {}", edw::db_err(&e)))
    .iter()
    .map(|r| r.get(0))
    .collect()
}

fn one(c: &mut postgres::Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).unwrap().get(0)
}

fn explain(c: &mut postgres::Client, sql: &str) -> String {
    c.query(&format!("EXPLAIN {sql}"), &[])
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_distributed_warehouse_answers_as_one_node() {
    if !citus_installed() && std::env::var_os("CI").is_none() {
        eprintln!("skipping: Citus is not installed (../shared/citus/install)");
        return;
    }
    assert!(
        measures_dir().is_dir(),
        "missing {}",
        measures_dir().display()
    );
    let data = tempfile::tempdir().unwrap();
    let g = synth::Generator::new(synth::SynthConfig::new(150, 7)).unwrap();
    synth::write_ndjson_dir(&g, &data.path().join("synth"), 1, &mut |_| {}).unwrap();
    testkit::testdata::write_dataset(&data.path().join("clinic"), 80, 5).unwrap();

    let single = PgHarness::start().unwrap();
    let single_url = single.create_db("edw").unwrap();
    load(&single_url, data.path());
    let mut one_node = edw::connect(&single_url).unwrap();

    let mut cluster = CitusCluster::start(2).unwrap();
    let url = cluster.create_db("edw").unwrap();
    load(&url, data.path());
    let mut c = edw::connect(&url).unwrap();
    assert!(!edw::migrate::is_distributed(&mut c).unwrap());
    let applied = edw::migrate::migrate_citus(&mut c).unwrap();
    assert_eq!(
        applied,
        vec![edw::migrate::CITUS_FIRST, 1002, 1003, 1004, 1005]
    );
    assert!(edw::migrate::is_distributed(&mut c).unwrap());
    // A second run applies nothing.
    assert!(edw::migrate::migrate_citus(&mut c).unwrap().is_empty());

    // The layout: every person table hash-distributed in one co-location group, spread over
    // both workers; the small tables replicated.
    let distributed = rows(
        &mut c,
        "SELECT logicalrelid::text AS t, colocationid FROM pg_dist_partition WHERE partmethod = 'h'",
    );
    assert_eq!(distributed.len(), 26, "{distributed:?}");
    assert_eq!(
        one(
            &mut c,
            "SELECT count(DISTINCT colocationid) FROM pg_dist_partition WHERE partmethod = 'h'"
        ),
        1
    );
    assert_eq!(
        one(
            &mut c,
            "SELECT count(*) FROM pg_dist_partition WHERE repmodel = 't' AND partmethod = 'n'"
        ),
        17
    );
    assert_eq!(
        one(
            &mut c,
            "SELECT count(DISTINCT nodeport) FROM citus_shards WHERE table_name = 'edw.encounter'::regclass"
        ),
        2
    );
    assert_eq!(
        one(&mut c, "SELECT count(*) FROM ONLY edw.encounter"),
        one(&mut one_node, "SELECT count(*) FROM edw.encounter")
    );

    // The same answers: stored results, the five quality queries, a patient's read.
    let before = results(&mut c);
    assert_eq!(before, results(&mut one_node));
    let queries = edw::quality::queries(&mut c).unwrap();
    assert_eq!(queries.len(), 5);
    let mut quality = Vec::new();
    for (name, sql) in &queries {
        let here = rows(&mut c, sql);
        assert_eq!(here, rows(&mut one_node, sql), "quality query {name}");
        quality.push(here);
    }
    assert!(
        quality.iter().all(|q| !q.is_empty()),
        "a quality query returned nothing"
    );
    let person = one(
        &mut c,
        "SELECT person_id FROM edw.source_patient GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1",
    );
    let read_sql = edw::quality::person_read(true);
    let read = rows_of(&mut c, &read_sql, &[&person]);
    assert!(!read.is_empty());
    assert_eq!(
        read,
        rows_of(&mut one_node, &edw::quality::person_read(false), &[&person])
    );

    // The per-person read goes to one shard; the aggregates run on the workers.
    let plan = explain(&mut c, &read_sql.replace("$1", &person.to_string()));
    assert!(plan.contains("Task Count: 1"), "{plan}");
    // (e) groups by the person: each worker computes whole groups and applies HAVING itself,
    // the coordinator only concatenates.
    let plan = explain(&mut c, "SELECT * FROM mart.q_patients_3_open_gaps");
    assert!(
        plan.starts_with("Custom Scan (Citus Adaptive)")
            && plan.contains("Task Count: 32")
            && plan.contains("Filter: (count(*) >= 3)"),
        "{plan}"
    );
    // A count by measure: partial counts on the workers, merged on the coordinator.
    let plan = explain(
        &mut c,
        "SELECT measure_id, count(*) FROM edw.care_gap WHERE status = 'open' GROUP BY 1",
    );
    let (coordinator, workers) = plan.split_once("->  Task").unwrap();
    assert!(
        coordinator.contains("Group Key: remote_scan.measure_id")
            && coordinator.contains("Task Count: 32")
            && workers.contains("Aggregate"),
        "{plan}"
    );

    // Row-level security on the shards: an organisation's role sees what it sees on one node.
    let as_org1 = |url: String| {
        let mut r = edw::connect(&url).unwrap();
        [
            "SELECT count(*) FROM edw.source_patient",
            "SELECT count(*) FROM edw.encounter",
            "SELECT count(*) FROM edw.person",
            "SELECT count(*) FROM edw.measure_result",
        ]
        .map(|q| one(&mut r, q))
    };
    let seen = as_org1(cluster.coordinator.url_as("org1_reader", "edw"));
    assert!(seen[0] > 0 && seen[0] < one(&mut c, "SELECT count(*) FROM edw.source_patient"));
    assert_eq!(seen, as_org1(single.url_as("org1_reader", "edw")));
    let org1_view = seen;

    // Attribution runs on the distributed form: a new period gives the single node's
    // attribution, Groups, joins and leaves, and the organisation's view of them.
    for conn in [&mut c, &mut one_node] {
        edw::attribute::run(conn, Some("2026-06-30")).unwrap();
    }
    for sql in [
        "SELECT person_id, practitioner_id, care_team_id, period_start, period_end, method,
                visit_count, last_visit FROM edw.attribution",
        "SELECT g.kind, g.ref_id, g.name, m.person_id FROM edw.patient_group_member m
         JOIN edw.patient_group g ON g.id = m.group_id",
        "SELECT g.kind, g.ref_id, l.person_id FROM edw.patient_group_left l
         JOIN edw.patient_group g ON g.id = l.group_id",
    ] {
        let here = rows(&mut c, sql);
        assert!(!here.is_empty(), "{sql}");
        assert_eq!(here, rows(&mut one_node, sql), "{sql}");
    }
    let attributed_as_org1 = |url: String| {
        one(
            &mut edw::connect(&url).unwrap(),
            "SELECT count(*) FROM edw.attribution WHERE period_end = '2026-06-30'",
        )
    };
    let seen = attributed_as_org1(cluster.coordinator.url_as("org1_reader", "edw"));
    assert!(seen > 0);
    assert_eq!(
        seen,
        attributed_as_org1(single.url_as("org1_reader", "edw"))
    );
    // The star refreshed on the distributed warehouse: the summaries follow the new
    // attribution as on one node.
    let star = edw::etl::run(&mut c).unwrap();
    assert!(star.summaries_rebuilt, "{star:?}");
    assert_eq!(
        star.summary(),
        edw::etl::run(&mut one_node).unwrap().summary()
    );
    quality.clear();
    for (name, sql) in &queries {
        let here = rows(&mut c, sql);
        assert_eq!(
            here,
            rows(&mut one_node, sql),
            "quality query {name} after attribution and etl"
        );
        quality.push(here);
    }

    // The cluster's runs take the persons shard by shard (a chunk's statements then reach
    // one or two shards): every person once, in the order of their shards.
    let persons: Vec<i64> = c
        .query("SELECT id FROM edw.person ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let ordered = edw::measure::shard_order(&mut c, &persons).unwrap();
    let shards: Vec<i64> = c
        .query(
            "SELECT get_shard_id_for_distribution_column('edw.source_patient', u.p)
             FROM unnest($1::bigint[]) WITH ORDINALITY AS u(p, n) ORDER BY u.n",
            &[&ordered],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(shards.windows(2).all(|w| w[0] <= w[1]), "{shards:?}");
    assert!(shards.first() < shards.last(), "persons on one shard only");
    let mut again = ordered.clone();
    again.sort_unstable();
    assert_eq!(again, persons);

    // A full measure run on the distributed warehouse evaluates everyone again and finds
    // what the single node found before it was distributed; in chunks of 7 persons, so
    // that each statement runs many times (planned with each chunk's persons bound) and
    // chunks straddle shards.
    let opts = edw::measure::Options {
        full: true,
        chunk: 7,
        ..Default::default()
    };
    let rerun = edw::measure::run_with(&mut c, &measures_dir(), 2025, &opts).unwrap();
    let one_rerun = edw::measure::run_with(&mut one_node, &measures_dir(), 2025, &opts).unwrap();
    assert_eq!(
        (rerun.persons, rerun.results, rerun.open_gaps, rerun.errors),
        (one_rerun.persons, one_rerun.results, one_rerun.open_gaps, 0)
    );
    assert_eq!(results(&mut c), before);
    let mode: String = c.query_one("SHOW plan_cache_mode", &[]).unwrap().get(0);
    assert_eq!(
        mode, "auto",
        "the run leaves the session's plan cache mode as it was"
    );

    // A third worker joins while the quality queries run; the answers stay the same.
    cluster.add_worker().unwrap();
    c.batch_execute("SELECT citus_rebalance_start()").unwrap();
    let reader_url = url.clone();
    let sqls: Vec<String> = queries.iter().map(|q| q.1.clone()).collect();
    let reader = std::thread::spawn(move || {
        let mut r = edw::connect(&reader_url).unwrap();
        let mut runs = 0;
        loop {
            for sql in &sqls {
                rows(&mut r, sql);
            }
            runs += 1;
            let running: i64 = r
                .query_one(
                    "SELECT count(*) FROM pg_dist_background_job WHERE state IN ('scheduled', 'running')",
                    &[],
                )
                .unwrap()
                .get(0);
            if running == 0 {
                return runs;
            }
        }
    });
    c.batch_execute("SELECT citus_rebalance_wait()").unwrap();
    assert!(reader.join().unwrap() >= 1);
    assert_eq!(
        one(
            &mut c,
            "SELECT count(DISTINCT nodeport) FROM citus_shards WHERE table_name = 'edw.encounter'::regclass"
        ),
        3
    );
    assert_eq!(results(&mut c), before);
    for ((name, sql), expected) in queries.iter().zip(&quality) {
        assert_eq!(
            &rows(&mut c, sql),
            expected,
            "quality query {name} after the rebalance"
        );
    }
    assert_eq!(rows_of(&mut c, &read_sql, &[&person]), read);
    // The organisation's role reaches the new worker too (its login came with the role).
    assert_eq!(
        as_org1(cluster.coordinator.url_as("org1_reader", "edw")),
        org1_view,
        "org1's view after the rebalance"
    );
}

#[test]
fn migrate_citus_refuses_a_database_without_citus() {
    let pg = PgHarness::start().unwrap();
    let url = pg.create_db("plain").unwrap();
    let mut c = edw::connect(&url).unwrap();
    let err = edw::migrate::migrate_citus(&mut c).unwrap_err();
    assert!(err.0.contains("no Citus extension"), "{}", err.0);
    assert_eq!(edw::migrate::current_version(&mut c).unwrap(), None);
}

#[test]
fn migrate_citus_refuses_records_without_a_person() {
    if !citus_installed() && std::env::var_os("CI").is_none() {
        eprintln!("skipping: Citus is not installed (../shared/citus/install)");
        return;
    }
    let mut cluster = CitusCluster::start(1).unwrap();
    let url = cluster.create_db("edw").unwrap();
    let mut c = edw::connect(&url).unwrap();
    edw::migrate::migrate(&mut c).unwrap();
    let data = tempfile::tempdir().unwrap();
    testkit::testdata::write_dataset(data.path(), 10, 3).unwrap();
    let mut opts = edw::ingest::Options::new("clinic");
    opts.progress = false;
    // Loaded, not matched: no record has a person yet.
    edw::ingest::ingest(&mut c, &[data.path().to_path_buf()], &opts).unwrap();
    let err = edw::migrate::migrate_citus(&mut c).unwrap_err();
    assert!(err.0.contains("run phm-edw match"), "{}", err.0);
    // Nothing was distributed: the migration is one transaction.
    assert!(!edw::migrate::is_distributed(&mut c).unwrap());
    assert_eq!(one(&mut c, "SELECT count(*) FROM pg_dist_partition"), 0);
    // Matched, the same command distributes.
    edw::matching::run(&mut c, &edw::matching::Params::default()).unwrap();
    edw::migrate::migrate_citus(&mut c).unwrap();
    assert!(edw::migrate::is_distributed(&mut c).unwrap());
}

/// A second source sending copies of the first `n` patients of `clinic` (same identifiers,
/// so matching links them) with their encounters, under ids of its own.
fn write_registry(clinic: &Path, registry: &Path, n: usize) -> usize {
    std::fs::create_dir_all(registry).unwrap();
    let read = |t: &str| -> Vec<serde_json::Value> {
        std::fs::read_to_string(clinic.join(format!("{t}.ndjson")))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let mut patients = read("Patient");
    patients.truncate(n);
    let ids: std::collections::HashSet<String> = patients
        .iter()
        .map(|p| format!("Patient/{}", p["id"].as_str().unwrap()))
        .collect();
    let renamed = |v: &mut serde_json::Value| {
        let id = format!("r-{}", v["id"].as_str().unwrap());
        v["id"] = id.into();
    };
    let mut text = String::new();
    for mut p in patients {
        renamed(&mut p);
        p.as_object_mut().unwrap().remove("managingOrganization");
        text += &format!("{p}\n");
    }
    std::fs::write(registry.join("Patient.ndjson"), text).unwrap();
    let mut text = String::new();
    let mut encounters = 0;
    for mut e in read("Encounter") {
        let subject = e["subject"]["reference"].as_str().unwrap_or("").to_string();
        if ids.contains(&subject) {
            renamed(&mut e);
            e["subject"]["reference"] = subject.replace("Patient/", "Patient/r-").into();
            e.as_object_mut().unwrap().remove("serviceProvider");
            e.as_object_mut().unwrap().remove("participant");
            text += &format!("{e}\n");
            encounters += 1;
        }
    }
    std::fs::write(registry.join("Encounter.ndjson"), text).unwrap();
    encounters
}

/// Equal, or the first rows that differ on each side.
fn same(cluster: &[Vec<String>; 3], one_node: &[Vec<String>; 3]) {
    for (a, b) in cluster.iter().zip(one_node) {
        let only = |x: &[String], y: &[String]| -> Vec<String> {
            x.iter()
                .filter(|r| y.binary_search(r).is_err())
                .take(3)
                .cloned()
                .collect()
        };
        assert_eq!(
            (only(a, b), only(b, a)),
            (vec![], vec![]),
            "only on the cluster, only on one node"
        );
        assert_eq!(a.len(), b.len());
    }
}

/// What `measure` stored, by the person's first record (person ids differ between the
/// cluster and one node): populations a person is in, gaps that apply, details.
fn measured(c: &mut postgres::Client) -> [Vec<String>; 3] {
    let key = "(SELECT person_id, min(source || '/' || source_id) AS rec
                FROM edw.source_patient GROUP BY 1) k";
    let got = [
        format!(
            "SELECT k.rec, r.measure_id, r.group_id, r.population FROM edw.measure_result r
             JOIN {key} ON k.person_id = r.person_id WHERE r.count <> 0"
        ),
        format!(
            "SELECT k.rec, g.measure_id, g.group_id, g.status FROM edw.care_gap g
             JOIN {key} ON k.person_id = g.person_id WHERE g.status <> 'not-applicable'"
        ),
        format!(
            "SELECT k.rec, d.measure_id, d.strata::text, d.sde::text FROM edw.measure_detail d
             JOIN {key} ON k.person_id = d.person_id"
        ),
    ]
    .map(|sql| rows(c, &sql));
    assert!(got.iter().all(|g| !g.is_empty()), "nothing measured");
    got
}

/// The star's encounter facts by the encounter's source id and the first record of the
/// person whose patient version the fact points at (internal keys differ between the
/// cluster and one node).
fn encounter_facts(c: &mut postgres::Client, cluster: bool) -> Vec<String> {
    let (fe, fd) = if cluster {
        (
            " AND e.person_id = f.person_id",
            " AND dp.person_id = f.person_id",
        )
    } else {
        ("", "")
    };
    let got = rows(
        c,
        &format!(
            "SELECT e.source, e.source_id, k.rec, f.date_key, f.class_code, f.status
             FROM mart.fact_encounter f
             JOIN edw.encounter e ON e.id = f.encounter_id{fe}
             JOIN mart.dim_patient dp ON dp.patient_key = f.patient_key{fd}
             JOIN (SELECT person_id, min(source || '/' || source_id) AS rec
                   FROM edw.source_patient GROUP BY 1) k ON k.person_id = dp.person_id"
        ),
    );
    assert!(!got.is_empty());
    got
}

/// The first encounter of `clinic` sent again for the source's last patient; its id.
fn write_moved_encounter(clinic: &Path, out: &Path) -> String {
    std::fs::create_dir_all(out).unwrap();
    let first_line = |t: &str, last: bool| -> serde_json::Value {
        let text = std::fs::read_to_string(clinic.join(format!("{t}.ndjson"))).unwrap();
        let mut lines = text.lines().filter(|l| l.starts_with('{'));
        let l = if last {
            lines.next_back()
        } else {
            lines.next()
        };
        serde_json::from_str(l.unwrap()).unwrap()
    };
    let mut e = first_line("Encounter", false);
    let to = first_line("Patient", true);
    e["subject"]["reference"] = format!("Patient/{}", to["id"].as_str().unwrap()).into();
    std::fs::write(out.join("Encounter.ndjson"), format!("{e}\n")).unwrap();
    e["id"].as_str().unwrap().to_string()
}

fn ingest_dir(url: &str, source: &str, dir: &Path) -> Vec<(String, i64, i64, bool)> {
    let mut c = edw::connect(url).unwrap();
    let mut opts = edw::ingest::Options::new(source);
    opts.progress = false;
    opts.chunk = 200;
    edw::ingest::ingest(&mut c, &[dir.to_path_buf()], &opts)
        .unwrap()
        .into_iter()
        .map(|r| (r.file, r.loaded, r.quarantined, r.already_loaded))
        .collect()
}

/// The writers on the cluster: ingest (with quarantine, a kill -9 and a re-run, a re-ingest
/// that changes nothing) and matching (records of two sources merged into one person: their
/// rows move to the person's shard) leave the warehouse the single node has after the same
/// commands, by content, by person and as an organisation's role sees it.
#[test]
fn ingest_and_match_run_on_the_cluster_as_on_one_node() {
    if !citus_installed() && std::env::var_os("CI").is_none() {
        eprintln!("skipping: Citus is not installed (../shared/citus/install)");
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let clinic = data.path().join("clinic");
    testkit::testdata::write_dataset(&clinic, 300, 11).unwrap();
    let registry = data.path().join("registry");
    assert!(write_registry(&clinic, &registry, 40) > 0);
    // Bad lines: not JSON, an encounter without a subject, one of an unknown patient.
    let enc = clinic.join("Encounter.ndjson");
    let mut text = std::fs::read(&enc).unwrap();
    text.extend_from_slice(
        b"not json\n{\"resourceType\":\"Encounter\",\"id\":\"zz\"}\n\
          {\"resourceType\":\"Encounter\",\"id\":\"zz2\",\"status\":\"finished\",\
           \"class\":{\"code\":\"AMB\"},\"subject\":{\"reference\":\"Patient/nobody\"}}\n",
    );
    std::fs::write(&enc, text).unwrap();

    let single = PgHarness::start().unwrap();
    let one_url = single.create_db("edw").unwrap();
    let mut one_node = edw::connect(&one_url).unwrap();
    edw::migrate::migrate(&mut one_node).unwrap();
    let loaded = ingest_dir(&one_url, "clinic", &clinic);
    assert!(loaded.iter().any(|f| f.2 == 3), "{loaded:?}");
    edw::matching::run(&mut one_node, &edw::matching::Params::default()).unwrap();
    let one_full = edw::measure::run(&mut one_node, &measures_dir(), 2025).unwrap();
    let one_full_measured = measured(&mut one_node);
    let registry_loaded = ingest_dir(&one_url, "registry", &registry);
    let moved = data.path().join("moved");
    let moved_id = write_moved_encounter(&clinic, &moved);
    let person_of_encounter = "SELECT sp.person_id FROM edw.encounter e
        JOIN edw.source_patient sp ON sp.id = e.source_patient_id
        WHERE e.source = 'clinic' AND e.source_id = $1";
    let one_before: i64 = one_node
        .query_one(person_of_encounter, &[&moved_id])
        .unwrap()
        .get(0);
    ingest_dir(&one_url, "clinic", &moved);
    // The person who lost the encounter is logged for the incremental measure.
    assert_eq!(
        rows(&mut one_node, "SELECT person_id FROM edw.resource_move"),
        vec![format!("({one_before})")]
    );
    assert_ne!(
        one_node
            .query_one(person_of_encounter, &[&moved_id])
            .unwrap()
            .get::<_, i64>(0),
        one_before
    );
    let one_match = edw::matching::run(&mut one_node, &edw::matching::Params::default()).unwrap();
    assert!(one_match.identifier_links >= 40, "{one_match:?}");
    let one_incremental = edw::measure::run(&mut one_node, &measures_dir(), 2025).unwrap();
    assert_eq!(one_incremental.mode, "incremental");

    let mut cluster = CitusCluster::start(2).unwrap();
    let url = cluster.create_db("edw").unwrap();
    let mut c = edw::connect(&url).unwrap();
    edw::migrate::migrate_citus(&mut c).unwrap();
    // kill -9 while the clinic's files load, then the same command again.
    let bin = env!("CARGO_BIN_EXE_phm-edw");
    let args = [
        "ingest",
        clinic.to_str().unwrap(),
        "--source",
        "clinic",
        "--db",
        &url,
        "--chunk",
        "100",
        "--no-match",
        "--quiet",
    ];
    let mut child = std::process::Command::new(bin).args(args).spawn().unwrap();
    let t0 = std::time::Instant::now();
    while one(&mut c, "SELECT count(*) FROM staging.merged_chunk") < 8 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "ingest ended before the kill"
        );
        assert!(t0.elapsed().as_secs() < 120, "ingest made no progress");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        one(
            &mut c,
            "SELECT count(*) FROM staging.load_batch WHERE status = 'merged'"
        ) < loaded.len() as i64
    );
    let rerun = std::process::Command::new(bin).args(args).output().unwrap();
    assert!(
        rerun.status.success(),
        "{}",
        String::from_utf8_lossy(&rerun.stderr)
    );
    // Loaded once: a second run changes nothing.
    let changes = one(&mut c, "SELECT last_value FROM edw.change_seq");
    let again = ingest_dir(&url, "clinic", &clinic);
    assert!(again.iter().all(|f| f.3), "{again:?}");
    assert_eq!(
        one(&mut c, "SELECT last_value FROM edw.change_seq"),
        changes
    );
    // Every record got a person of its own when it was loaded.
    assert_eq!(
        one(&mut c, "SELECT count(*) FROM edw.person"),
        one(&mut c, "SELECT count(*) FROM edw.source_patient")
    );
    edw::matching::run(&mut c, &edw::matching::Params::default()).unwrap();
    // The measures on the cluster: a full run, as on one node.
    let full = edw::measure::run(&mut c, &measures_dir(), 2025).unwrap();
    assert_eq!(
        (
            full.mode,
            full.persons,
            full.results,
            full.open_gaps,
            full.errors
        ),
        (
            one_full.mode,
            one_full.persons,
            one_full.results,
            one_full.open_gaps,
            0
        )
    );
    assert!(full.results > 0 && full.open_gaps > 0, "{full:?}");
    same(&measured(&mut c), &one_full_measured);
    assert_eq!(ingest_dir(&url, "registry", &registry), registry_loaded);
    // An encounter sent again for another patient leaves its old person's shard.
    let before: i64 = c
        .query_one(
            "SELECT person_id FROM edw.encounter WHERE source = 'clinic' AND source_id = $1",
            &[&moved_id],
        )
        .unwrap()
        .get(0);
    ingest_dir(&url, "clinic", &moved);
    let after: Vec<i64> = c
        .query(
            "SELECT person_id FROM edw.encounter WHERE source = 'clinic' AND source_id = $1",
            &[&moved_id],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(after.len(), 1);
    assert_ne!(after[0], before);
    // The registry's records are persons of their own until matched: an incremental run
    // gives them results, which matching then leaves without a record. (The 41st is the
    // person the encounter was sent again for, the 42nd the person who lost it: none of
    // their rows changed, edw.resource_move says so.)
    assert_eq!(
        rows(&mut c, "SELECT person_id FROM edw.resource_move"),
        vec![format!("({before})")]
    );
    let registry_only = edw::measure::run(&mut c, &measures_dir(), 2025).unwrap();
    assert_eq!(
        (registry_only.mode, registry_only.persons),
        ("incremental", 42)
    );
    // The star refreshed now holds the registry persons' encounters, which matching moves.
    let star = edw::etl::run(&mut c).unwrap();
    assert!(
        star.encounters > 0 && star.patient_versions_added > 0,
        "{star:?}"
    );
    let cluster_match = edw::matching::run(&mut c, &edw::matching::Params::default()).unwrap();
    assert_eq!(
        (
            cluster_match.identifier_links,
            cluster_match.probabilistic_links,
            cluster_match.review_pairs,
            cluster_match.persons
        ),
        (
            one_match.identifier_links,
            one_match.probabilistic_links,
            one_match.review_pairs,
            one_match.persons
        ),
    );
    assert!(cluster_match.reassigned_records >= 40, "{cluster_match:?}");

    // The same warehouse: rows, contents, persons as sets of records, quarantine. The
    // persons matched away that have measure results stay (matching keeps a person with
    // results), without a record.
    let with_records = |c: &mut postgres::Client| {
        let mut counts = edw::stats::table_counts(c).unwrap();
        for (t, n) in &mut counts {
            if t == "edw.person" {
                *n = one(
                    c,
                    "SELECT count(DISTINCT person_id) FROM edw.source_patient",
                );
            }
        }
        counts
    };
    assert_eq!(with_records(&mut c), with_records(&mut one_node));
    assert_eq!(
        one(&mut one_node, "SELECT count(*) FROM edw.person"),
        one(
            &mut one_node,
            "SELECT count(DISTINCT person_id) FROM edw.source_patient"
        )
    );
    let kept = one(
        &mut c,
        "SELECT count(*) FROM edw.person p
         WHERE NOT EXISTS (SELECT 1 FROM edw.source_patient sp WHERE sp.person_id = p.id)",
    );
    assert!(kept > 0 && kept <= 40, "{kept}");
    assert_eq!(
        edw::stats::checksums(&mut c).unwrap(),
        edw::stats::checksums(&mut one_node).unwrap()
    );
    assert_eq!(edw::stats::orphans(&mut c).unwrap(), vec![]);
    // A moved record's rows are on its person's shard, and the coordinator's key agrees.
    for t in ["encounter", "patient_name", "patient_identifier"] {
        assert_eq!(
            one(
                &mut c,
                &format!(
                    "SELECT count(*) FROM edw.{t} x WHERE NOT EXISTS (SELECT 1 FROM edw.source_patient sp
                     WHERE sp.id = x.source_patient_id AND sp.person_id = x.person_id)"
                )
            ),
            0,
            "{t}"
        );
    }
    let keys = rows(
        &mut c,
        "SELECT source_patient_id, person_id, org_id FROM edw.patient_key",
    );
    assert_eq!(
        keys,
        rows(
            &mut c,
            "SELECT id, person_id, org_id FROM edw.source_patient"
        )
    );

    // Incremental after matching: the merged persons evaluated again, the persons matched
    // away set to 0; the results by record are the single node's.
    let incremental = edw::measure::run(&mut c, &measures_dir(), 2025).unwrap();
    assert_eq!(incremental.mode, "incremental");
    // (One node evaluates the moved encounter's person here; the cluster did in the run
    // before.)
    assert_eq!(
        incremental.persons,
        one_incremental.persons + kept as usize - 1
    );
    assert_eq!(incremental.errors, 0);
    same(&measured(&mut c), &measured(&mut one_node));
    let away = |c: &mut postgres::Client, live: bool| {
        one(
            c,
            &format!(
                "SELECT count(*) FROM edw.measure_result r WHERE (r.count <> 0) = {live}
                 AND NOT EXISTS (SELECT 1 FROM edw.source_patient sp WHERE sp.person_id = r.person_id)"
            ),
        )
    };
    assert_eq!(away(&mut c, true), 0);
    assert!(away(&mut c, false) > 0);

    // The star after the same commands: the moved encounters' facts are on their new
    // person's shard only, every fact points at its person's current version, and the
    // quality queries answer as on one node.
    edw::etl::run(&mut c).unwrap();
    edw::etl::run(&mut one_node).unwrap();
    let facts = encounter_facts(&mut c, true);
    assert_eq!(facts, encounter_facts(&mut one_node, false));
    // (The persons matched away on the cluster had results, facts and a patient version
    // before matching; their results are now 0 and their gaps not applicable.)
    for t in [
        "fact_encounter",
        "fact_observation",
        "fact_measure_result WHERE count <> 0",
        "fact_care_gap WHERE status <> 'not-applicable'",
        "dim_provider",
        "dim_organization",
        "dim_measure",
        "dim_code",
        "agg_gap_provider_month",
        "agg_open_gap_care_team",
    ] {
        let count = format!("SELECT count(*) FROM mart.{t}");
        assert_eq!(one(&mut c, &count), one(&mut one_node, &count), "{t}");
    }
    assert_eq!(
        one(
            &mut c,
            "SELECT count(*) FROM mart.fact_encounter f WHERE NOT EXISTS
             (SELECT 1 FROM edw.encounter e WHERE e.id = f.encounter_id AND e.person_id = f.person_id)"
        ),
        0
    );
    assert!(one(&mut c, "SELECT count(*) FROM edw.record_move") >= 40);
    for (name, sql) in edw::quality::queries(&mut c).unwrap() {
        assert_eq!(
            rows(&mut c, &sql),
            rows(&mut one_node, &sql),
            "quality query {name}"
        );
    }

    // Row-level security: a merged person is seen by the organisation of either record.
    for conn in [&mut c, &mut one_node] {
        conn.batch_execute(
            "CREATE ROLE org1_reader LOGIN IN ROLE edw_org_reader;
             INSERT INTO edw.org_role SELECT 'org1_reader', id FROM edw.organization
             WHERE source = 'clinic' AND source_id = 'org1';",
        )
        .unwrap();
    }
    // A role made by hand on the cluster gets its login to the workers (docs/scale-out.md).
    c.batch_execute("SELECT edw.org_role_node_login('org1_reader')")
        .unwrap();
    let as_org1 = |url: String| {
        let mut r = edw::connect(&url).unwrap();
        [
            "SELECT count(*) FROM edw.source_patient",
            "SELECT count(*) FROM edw.encounter",
            "SELECT count(*) FROM edw.person",
            "SELECT count(*) FROM edw.patient_name",
            "SELECT count(*) FROM edw.measure_result WHERE count <> 0",
            "SELECT count(*) FROM edw.care_gap WHERE status = 'open'",
        ]
        .map(|q| one(&mut r, q))
    };
    let seen = as_org1(cluster.coordinator.url_as("org1_reader", "edw"));
    assert!(seen[0] > 0 && seen[0] < one(&mut c, "SELECT count(*) FROM edw.source_patient"));
    assert_eq!(seen, as_org1(single.url_as("org1_reader", "edw")));
}

/// One Bulk Data Group export to its end (`query`: its parameters): each resource type's
/// lines, sorted, and the transactionTime.
fn export(
    srv: &Server,
    group: i64,
    token: &str,
    query: &str,
) -> (BTreeMap<String, Vec<String>>, String) {
    let path = format!("/fhir/Group/{group}/$export{query}");
    let r = call(srv, "GET", &path, token, &KICK, None);
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let status = r.header("content-location").unwrap().to_string();
    let (done, _) = poll(srv, &status, token);
    assert_eq!(done.status, 200, "{}", String::from_utf8_lossy(&done.body));
    let manifest: protocol::bulk::Manifest = serde_json::from_value(done.json()).unwrap();
    assert!(manifest.error.is_empty(), "{:?}", manifest.error);
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in &manifest.output {
        let r = call(srv, "GET", &f.url, token, &[], None);
        assert_eq!(r.status, 200);
        let lines = out.entry(f.resource_type.clone()).or_default();
        lines.extend(
            String::from_utf8(r.body)
                .unwrap()
                .lines()
                .map(str::to_string),
        );
    }
    for lines in out.values_mut() {
        lines.sort();
    }
    (out, manifest.transaction_time)
}

/// The API on the cluster (`phm-edw serve` over HTTPS, SMART tokens): Groups, a patient's read,
/// a Group export and a worklist action answer as on one node, under row-level security for
/// the caller's organisation; the organisation's role reaches the workers only with the
/// password Citus keeps, for a client registered before the warehouse was distributed and
/// for one registered after.
#[test]
fn the_api_serves_the_cluster_as_one_node() {
    if !citus_installed() && std::env::var_os("CI").is_none() {
        eprintln!("skipping: Citus is not installed (../shared/citus/install)");
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let clinic = data.path().join("clinic");
    testkit::testdata::write_dataset(&clinic, 60, 11).unwrap();
    // A Location (about no patient) where org1's first patients were seen: an export follows
    // the reference to it.
    let shared = data.path().join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::write(
        shared.join("Location.ndjson"),
        "{\"resourceType\":\"Location\",\"id\":\"loc1\",\"name\":\"Main Street clinic\"}\n",
    )
    .unwrap();
    let visits: String = (0..12)
        .step_by(2)
        .map(|n| {
            format!(
                "{}\n",
                serde_json::json!({"resourceType": "Encounter", "id": format!("loc-visit-{n}"),
                    "status": "finished",
                    "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                    "subject": {"reference": format!("Patient/p{n}")},
                    "location": [{"location": {"reference": "Location/loc1"}}],
                    "period": {"start": "2025-04-01T09:00:00Z", "end": "2025-04-01T09:30:00Z"}})
            )
        })
        .collect();
    std::fs::write(shared.join("Encounter.ndjson"), visits).unwrap();
    let prepare = |url: &str| {
        let mut c = edw::connect(url).unwrap();
        edw::migrate::migrate(&mut c).unwrap();
        let mut opts = edw::ingest::Options::new("ehr");
        opts.progress = false;
        edw::ingest::ingest(&mut c, &[clinic.clone(), shared.clone()], &opts).unwrap();
        edw::matching::run(&mut c, &edw::matching::Params::default()).unwrap();
        edw::attribute::run(&mut c, Some("2025-12-31")).unwrap();
        c.batch_execute("CREATE ROLE phm_api LOGIN IN ROLE edw_api")
            .unwrap();
        c
    };
    let single = PgHarness::start().unwrap();
    let single_url = single.create_db("edw").unwrap();
    let mut one_node = prepare(&single_url);
    let mut cluster = CitusCluster::start(2).unwrap();
    let url = cluster.create_db("edw").unwrap();
    let mut c = prepare(&url);

    let group = one(
        &mut c,
        "SELECT g.id FROM edw.patient_group g JOIN edw.care_team ct ON ct.id = g.ref_id
         WHERE g.kind = 'care_team' AND ct.source_id = 'ct1'",
    );
    let person_of = |c: &mut postgres::Client, org: &str| -> i64 {
        c.query_one(
            "SELECT min(sp.person_id) FROM edw.source_patient sp
             JOIN edw.organization o ON o.id = sp.org_id
             JOIN edw.patient_group_member m ON m.person_id = sp.person_id AND m.group_id = $2
             WHERE o.source_id = $1",
            &[&org, &group],
        )
        .unwrap()
        .get(0)
    };
    let (p1, p2) = (person_of(&mut c, "org1"), person_of(&mut c, "org2"));
    assert_eq!(
        (p1, p2),
        (
            person_of(&mut one_node, "org1"),
            person_of(&mut one_node, "org2")
        )
    );
    // org1's client exists before the warehouse is distributed, org2's after.
    let key1 = Es384Key::generate();
    let key2 = Es384Key::generate();
    let org1_single = register_client(&single_url, "ws1", "org1", &[group], &key1.jwks());
    let org2_single = register_client(&single_url, "ws2", "org2", &[group], &key2.jwks());
    let org1 = register_client(&url, "ws1", "org1", &[group], &key1.jwks());
    let applied = edw::migrate::migrate_citus(&mut c).unwrap();
    assert_eq!(applied.last(), Some(&1005));
    let org2 = register_client(&url, "ws2", "org2", &[group], &key2.jwks());

    let on_one_node = Server::start(&single.url_as("phm_api", "edw"), &[]);
    let on_cluster = Server::start(&cluster.coordinator.url_as("phm_api", "edw"), &[]);
    let (status, body) = on_cluster.get("/ready", None);
    assert_eq!(status, 200, "{body}");
    let t1 = on_cluster.token(&org1, &key1, "system/*.rs");
    let t2 = on_cluster.token(&org2, &key2, "system/*.rs");
    let s1 = on_one_node.token(&org1_single, &key1, "system/*.rs");
    let s2 = on_one_node.token(&org2_single, &key2, "system/*.rs");

    // Reads: the same answers, each organisation seeing its own patients only.
    for path in [
        "/fhir/Group".to_string(),
        format!("/fhir/Group/{group}"),
        format!("/fhir/Patient/{p1}"),
        format!("/fhir/Patient/{p2}"),
    ] {
        for (t, s) in [(&t1, &s1), (&t2, &s2)] {
            // Each server's own address aside.
            let get = |srv: &Server, token: &str| {
                let (st, body) = srv.get(&path, Some(token));
                (st, body.replace(&srv.base, "BASE"))
            };
            assert_eq!(
                get(&on_cluster, t),
                get(&on_one_node, s),
                "{path}: {}",
                std::fs::read_to_string(&on_cluster.stderr_path).unwrap_or_default()
            );
        }
    }
    assert_eq!(
        on_cluster.get(&format!("/fhir/Patient/{p1}"), Some(&t1)).0,
        200
    );
    assert_eq!(
        on_cluster.get(&format!("/fhir/Patient/{p2}"), Some(&t1)).0,
        404
    );
    assert_eq!(
        on_cluster.get(&format!("/fhir/Patient/{p2}"), Some(&t2)).0,
        200
    );

    // The Group export: every resource of the organisation's members, as on one node.
    let mut since = String::new();
    for (t, s, org) in [(&t1, &s1, "org1"), (&t2, &s2, "org2")] {
        let (got, at) = export(&on_cluster, group, t, "");
        since = at;
        assert!(got.get("Patient").is_some_and(|p| !p.is_empty()), "{got:?}");
        assert_eq!(
            got.contains_key("Location"),
            org == "org1",
            "{org}: {:?}",
            got.keys()
        );
        assert_eq!(got, export(&on_one_node, group, s, "").0, "{org}");
    }
    // `_since`: only what changed after it, here a new observation of org1's member.
    let later = data.path().join("later");
    std::fs::create_dir_all(&later).unwrap();
    let source_id: String = c
        .query_one(
            "SELECT source_id FROM edw.source_patient WHERE person_id = $1 ORDER BY id LIMIT 1",
            &[&p1],
        )
        .unwrap()
        .get(0);
    std::fs::write(
        later.join("Observation.ndjson"),
        format!(
            "{}\n",
            serde_json::json!({"resourceType": "Observation", "id": "later-1", "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                "subject": {"reference": format!("Patient/{source_id}")},
                "effectiveDateTime": "2025-11-01T09:00:00Z",
                "valueQuantity": {"value": 128, "unit": "mm[Hg]"}})
        ),
    )
    .unwrap();
    for conn in [&mut c, &mut one_node] {
        let mut opts = edw::ingest::Options::new("ehr");
        opts.progress = false;
        edw::ingest::ingest(conn, std::slice::from_ref(&later), &opts).unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(5));
    let query = format!("?_since={}", since.replace(':', "%3A"));
    let (got, _) = export(&on_cluster, group, &t1, &query);
    assert_eq!(
        got.get("Observation").map(Vec::len),
        Some(1),
        "{:?}",
        got.keys()
    );
    assert!(!got.contains_key("Encounter"), "{:?}", got.keys());
    assert_eq!(got, export(&on_one_node, group, &s1, &query).0);

    // A worklist action is written once, for a patient the caller may see only.
    let action = |id: &str, pid: i64| {
        serde_json::json!({"id": id, "patient_id": pid.to_string(), "kind": "outreach",
            "measure_id": "CMS122", "group_id": "Group_1",
            "created_at": "2026-01-05T10:00:00Z", "username": "caremanager",
            "body": {"note": "called"}})
    };
    let batch = |ws: &str| {
        serde_json::json!({"workstation_id": ws, "actions": [
            action("0b7e5f0e-4a3b-4c52-9d8e-0f6a3c2b1a01", p1),
            action("0b7e5f0e-4a3b-4c52-9d8e-0f6a3c2b1a02", p2)]})
        .to_string()
    };
    let statuses = |body: &str| -> Vec<String> {
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        v["results"]
            .as_array()
            .unwrap_or_else(|| panic!("{body}"))
            .iter()
            .map(|r| r["status"].as_str().unwrap().to_string())
            .collect()
    };
    for _ in 0..2 {
        let (st, body) = on_cluster.post_json("/api/actions", Some(&t1), &batch(&org1));
        let (st1, body1) = on_one_node.post_json("/api/actions", Some(&s1), &batch(&org1_single));
        assert_eq!((st, statuses(&body)), (st1, statuses(&body1)), "{body}");
    }
    // A workstation's audit chain: appended and its head read back.
    let chain = common::smart::audit_chain(3, &p1.to_string());
    for (srv, token, ws) in [(&on_cluster, &t1, &org1), (&on_one_node, &s1, &org1_single)] {
        let segment = protocol::audit::segment_bundle(ws, &chain).to_string();
        let (st, body) = srv.post_json("/api/audit", Some(token), &segment);
        assert_eq!(st, 200, "{body}");
        let (st, body) = srv.get("/api/audit/head", Some(token));
        let head: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!((st, head["seq"].as_i64()), (200, Some(3)), "{body}");
    }

    let stored = "SELECT person_id, action, action_id, body::text FROM edw.worklist_action";
    assert_eq!(rows(&mut c, stored), rows(&mut one_node, stored));
    assert_eq!(rows(&mut c, stored).len(), 1);

    // The organisation roles log in to a worker only with the password Citus keeps.
    let worker = &cluster.workers[0];
    let roles: Vec<String> = c
        .query("SELECT DISTINCT role_name FROM edw.org_role", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(roles.len(), 2);
    for role in roles {
        let e = postgres::Client::connect(&worker.url_as(&role, "edw"), postgres::NoTls)
            .err()
            .unwrap_or_else(|| panic!("{role} logged in to a worker without a password"));
        assert!(format!("{e:?}").contains("password missing"), "{e:?}");
        let guessed = format!("{} password=edw", worker.url_as(&role, "edw"));
        let e = postgres::Client::connect(&guessed, postgres::NoTls)
            .err()
            .unwrap_or_else(|| panic!("{role} logged in to a worker with a guessed password"));
        assert_eq!(
            e.code(),
            Some(&postgres::error::SqlState::INVALID_PASSWORD),
            "{e:?}"
        );
    }
    let mut api = edw::connect(&cluster.coordinator.url_as("phm_api", "edw")).unwrap();
    let e = api
        .query("SELECT authinfo FROM pg_dist_authinfo", &[])
        .unwrap_err();
    assert!(
        edw::db_err(&e).contains("permission denied"),
        "{}",
        edw::db_err(&e)
    );
}
