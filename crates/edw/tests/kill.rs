//! kill -9 during ingest, then re-run == one clean run.
use edw::pgharness::PgHarness;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn phm_edw(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_phm-edw"))
        .args(args)
        .output()
        .unwrap()
}

fn one(c: &mut postgres::Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).unwrap().get(0)
}

#[test]
fn killed_ingest_then_rerun_equals_clean_run() {
    let pg = PgHarness::start().unwrap();
    let tmp = std::env::temp_dir().join(format!("edw-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let w = edw::testdata::write_dataset(&tmp, 2500, 7).unwrap();
    // A few bad lines too, so the quarantine is part of the comparison.
    let enc = tmp.join("Encounter.ndjson");
    let mut data = std::fs::read(&enc).unwrap();
    data.extend_from_slice(b"not json\n{\"resourceType\":\"Encounter\",\"id\":\"zz\"}\n");
    std::fs::write(&enc, data).unwrap();
    let dir = tmp.to_str().unwrap();

    // Clean run.
    let clean = pg.create_db("clean").unwrap();
    assert!(phm_edw(&["migrate", "--db", &clean]).status.success());
    let out = phm_edw(&[
        "ingest", dir, "--source", "ehr", "--db", &clean, "--chunk", "500",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("lines/s") && stderr.contains("quarantined"),
        "progress on stderr: {stderr}"
    );

    // Killed run: kill -9 once the merge is under way (some but not all batches merged).
    let killed = pg.create_db("killed").unwrap();
    assert!(phm_edw(&["migrate", "--db", &killed]).status.success());
    let mut c = edw::connect(&killed).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_phm-edw"))
        .args([
            "ingest", dir, "--source", "ehr", "--db", &killed, "--chunk", "500",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    loop {
        let n = one(&mut c, "SELECT count(*) FROM edw.encounter");
        if n > 1000 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "ingest made no progress"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "ingest finished before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let merged = one(
        &mut c,
        "SELECT count(*) FROM staging.load_batch WHERE status = 'merged'",
    );
    let files = w.per_type.len() as i64;
    assert!(
        merged < files,
        "kill came too late: {merged}/{files} files merged"
    );
    let partial = one(&mut c, "SELECT count(*) FROM edw.encounter");
    assert!(partial < w.per_type.iter().find(|t| t.0 == "Encounter").unwrap().1 as i64);

    // Another --chunk on the re-run: a started batch keeps the chunk size it began with.
    let out = phm_edw(&[
        "ingest", dir, "--source", "ehr", "--db", &killed, "--chunk", "700",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut cc = edw::connect(&clean).unwrap();
    assert_eq!(
        edw::stats::table_counts(&mut c).unwrap(),
        edw::stats::table_counts(&mut cc).unwrap()
    );
    assert_eq!(
        edw::stats::checksums(&mut c).unwrap(),
        edw::stats::checksums(&mut cc).unwrap()
    );
    assert_eq!(one(&mut c, "SELECT count(*) FROM edw.quarantine"), 2);
    assert_eq!(edw::stats::orphans(&mut c).unwrap(), vec![]);
    assert_eq!(
        one(&mut c, "SELECT (sum(line_count) - sum(loaded_count) - sum(quarantined_count))::bigint FROM staging.load_batch"),
        0
    );
    let _ = std::fs::remove_dir_all(&tmp);
}
