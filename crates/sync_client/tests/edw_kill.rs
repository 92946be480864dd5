//! kill -9 of `phm-sync` at 30+ moments across download, apply and write-back, against
//! the real `phm-edw serve`. The named moments come from the test-only pause points in
//! the client (`PHM_SYNC_TEST_PAUSE_AT`, src/testhook.rs): the process stops there and
//! the test sends SIGKILL; other kills land at timed offsets. After each kill:
//! * the cache opens and holds exactly the old or exactly the new panel state;
//! * a re-run completes to the same state as an uninterrupted sync, resuming the
//!   interrupted export and reusing the staged bytes (bytes downloaded + reused = the
//!   export's size: nothing finished is fetched again);
//! * every worklist action exists exactly once in the EDW (`edw.worklist_action`).

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Small staging batches, so a download has many pause points.
const BATCH: &str = "4096";

struct Case<'a> {
    cache: &'a CacheFile,
    srv: &'a Server,
    client: &'a SyncClient,
}

impl Case<'_> {
    fn sync(&self) -> Sync<'_> {
        Sync::new(self.cache, &self.srv.base, self.client, &self.srv.cert())
            .env("PHM_SYNC_TEST_BATCH_BYTES", BATCH)
    }
}

/// Kills a sync at each point (or time), starting each time from `start`; checks the
/// state after the kill and after a re-run. Returns the number of kills.
fn kill_sync_at_points(
    case: &Case<'_>,
    start: &std::path::Path,
    old: &str,
    new: &str,
    total_bytes: u64,
    points: &[&str],
    times: &[Duration],
) -> usize {
    let mut kills = 0;
    let moments: Vec<Result<&str, Duration>> = points
        .iter()
        .map(|p| Ok(*p))
        .chain(times.iter().map(|t| Err(*t)))
        .collect();
    for m in moments {
        case.cache.restore(start);
        let sync = case.sync();
        match m {
            Ok(point) => {
                let (paused, log) = sync.kill_at("sync", point);
                assert!(paused, "{point} was never reached:\n{log}");
            }
            Err(t) => {
                if !sync.kill_after("sync", t) {
                    eprintln!("sync finished before {t:?}: no kill");
                    continue;
                }
            }
        }
        kills += 1;
        let what = format!("{m:?}");
        let after_kill = case.cache.content();
        assert!(
            after_kill == old || after_kill == new,
            "after a kill at {what} the cache holds neither the old nor the new state"
        );
        let r = case.sync().run("sync").report();
        assert!(
            case.cache.content() == new,
            "the re-run after {what} ended in another state than an uninterrupted sync"
        );
        let (resumed, bytes, reused) = (
            r["resumed"].as_bool().unwrap(),
            r["bytes"].as_u64().unwrap(),
            r["bytes_reused"].as_u64().unwrap(),
        );
        if let Ok(point) = m {
            let name = point.split(':').next().unwrap();
            if ["kicked_off", "manifest", "staged", "fed", "lines_done"].contains(&name) {
                assert!(resumed, "{point}: the export was not resumed: {r}");
                assert_eq!(
                    bytes + reused,
                    total_bytes,
                    "{point}: downloaded {bytes} + reused {reused} != the export's size"
                );
            }
            if ["staged", "fed", "lines_done"].contains(&name) {
                assert!(reused > 0, "{point}: staged bytes not reused: {r}");
            }
        }
        if resumed {
            assert!(bytes + reused == total_bytes || bytes + reused == 0 || bytes < total_bytes);
        }
    }
    kills
}

#[test]
fn kill_9_at_many_points_leaves_old_or_new_and_resumes() {
    let t0 = Instant::now();
    let edw = Edw::setup("sync_kill", 120);
    let srv = Server::start(&edw.server_db, &[]);
    let dir = tempfile::tempdir().unwrap();
    let client = edw.client(dir.path(), "ws-kill", "org1", &[edw.group]);
    let cache = CacheFile::new(dir.path(), "c");
    let case = Case {
        cache: &cache,
        srv: &srv,
        client: &client,
    };
    let empty = dir.path().join("empty.db");
    cache.snapshot(&empty);
    let old0 = cache.content();

    // Reference: an uninterrupted full sync.
    let t = Instant::now();
    let r = case.sync().run("sync").report();
    let full_time = t.elapsed();
    assert_eq!(r["full"], true);
    let full_bytes = r["bytes"].as_u64().unwrap();
    let new1 = cache.content();
    assert_ne!(old0, new1);
    let synced1 = dir.path().join("synced1.db");
    cache.snapshot(&synced1);

    let mut kills = kill_sync_at_points(
        &case,
        &empty,
        &old0,
        &new1,
        full_bytes,
        &[
            "kicked_off:1",
            "manifest:1",
            "staged:1",
            "staged:4",
            "staged:12",
            "fed:1",
            "fed:6",
            "fed:10",
            "lines_done:1",
            "applied:1",
            "deleted:1",
        ],
        &[
            full_time / 5,
            full_time * 2 / 5,
            full_time * 3 / 5,
            full_time * 4 / 5,
        ],
    );

    // The EDW changes: a new member, a changed observation, a member leaves.
    let members = edw.members(edw.group, "org1");
    let stay_src = edw.source_of(members[0]);
    let leaver_src = edw.source_of(*members.last().unwrap());
    let mut files: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    files.insert("Patient", vec![patient("kn1", "Killnew", "org1")]);
    let mut visits: Vec<Value> = (1..=3)
        .map(|d| visit(&format!("kn-{d}"), "kn1", "pr2", d))
        .collect();
    visits.extend((1..=12).map(|d| visit(&format!("kl-{d}"), &leaver_src, "pr4", d)));
    files.insert("Encounter", visits);
    files.insert("Observation", vec![a1c("kill-a1c", &stay_src, 6.4)]);
    edw.ingest_update("v2", &files);

    // Reference: an uninterrupted incremental sync from the synced state.
    cache.restore(&synced1);
    let t = Instant::now();
    let r = case.sync().run("sync").report();
    let inc_time = t.elapsed();
    assert_eq!(r["full"], false);
    assert!(!r["removed_patients"].as_array().unwrap().is_empty(), "{r}");
    let inc_bytes = r["bytes"].as_u64().unwrap();
    let new2 = cache.content();
    assert_ne!(new1, new2);
    let synced2 = dir.path().join("synced2.db");
    cache.snapshot(&synced2);

    kills += kill_sync_at_points(
        &case,
        &synced1,
        &new1,
        &new2,
        inc_bytes,
        &[
            "kicked_off:1",
            "manifest:1",
            "staged:1",
            "staged:2",
            "fed:1",
            "fed:2",
            "lines_done:1",
            "applied:1",
            "deleted:1",
        ],
        &[inc_time / 3, inc_time * 2 / 3],
    );

    // Write-back: 1,200 actions (three requests of 500, 500, 200), killed between the
    // server's answer and marking them sent, after marking, and at timed moments.
    cache.restore(&synced2);
    let panel: Vec<String> = cache.patient_ids().into_iter().collect();
    let mut all_ids: Vec<String> = Vec::new();
    let writeback_points = [
        Ok("actions_answered:1"),
        Ok("actions_marked:1"),
        Ok("actions_answered:2"),
        Err(Duration::from_millis(300)),
        Err(Duration::from_millis(700)),
        Ok("actions_answered:1"),
    ];
    for (i, m) in writeback_points.iter().enumerate() {
        let ids = cache.queue_actions(&panel, 1200, &format!("round {i}"));
        all_ids.extend(ids.iter().cloned());
        let sync = case.sync();
        let killed = match m {
            Ok(point) => {
                let (paused, log) = sync.kill_at("actions", point);
                assert!(paused, "{point} never reached:\n{log}");
                true
            }
            Err(t) => sync.kill_after("actions", *t),
        };
        kills += usize::from(killed);
        // Never doubled, whatever the moment.
        let rows = edw.action_rows(&ids);
        assert!(rows.values().all(|&n| n <= 1), "an action stored twice");
        let sent_before_rerun = rows.values().filter(|&&n| n == 1).count();
        let unsent = cache.outbox_unsent();
        assert!(unsent <= 1200 && unsent >= 1200 - sent_before_rerun);
        let r = case.sync().run("actions").report();
        let (created, duplicate) = (
            r["created"].as_u64().unwrap(),
            r["duplicate"].as_u64().unwrap(),
        );
        assert_eq!(r["refused"], 0, "{r}");
        assert_eq!(created as usize + sent_before_rerun, 1200, "{r}");
        assert_eq!((created + duplicate) as usize, unsent, "{r}");
        if *m == Ok("actions_answered:1") {
            assert_eq!(
                duplicate, 500,
                "the first batch was stored but not marked: {r}"
            );
        }
        assert_eq!(cache.outbox_unsent(), 0);
        let rows = edw.action_rows(&ids);
        assert!(
            rows.values().all(|&n| n == 1),
            "an action missing or doubled"
        );
    }
    // All rounds together: each exactly once, and a second drain sends nothing.
    assert!(edw.action_rows(&all_ids).values().all(|&n| n == 1));
    let r = case.sync().run("actions").report();
    assert_eq!(
        (r["created"].as_u64(), r["duplicate"].as_u64()),
        (Some(0), Some(0))
    );
    let total: i64 = edw
        .sql()
        .query_one("SELECT count(*) FROM edw.worklist_action", &[])
        .unwrap()
        .get(0);
    assert_eq!(total as usize, all_ids.len());

    assert!(kills >= 20, "only {kills} kills");
    eprintln!("{kills} kills in {:?}", t0.elapsed());
}
