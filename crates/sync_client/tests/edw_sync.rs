//! `phm-sync` (a child process) against the real `phm-edw serve` (a child process, HTTPS
//! on loopback, PostgreSQL from `PgHarness`): a full then an incremental sync whose result
//! equals the EDW's own view of the Group (read as the superuser from its tables, not from
//! the export), deletions included; refusals (wrong key, unknown and revoked clients, a
//! Group not granted) leave the cache as it was; offline; the audit chain shipped.
//! The harness is in tests/common/.

mod common;

use common::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Checks the cache against the EDW's view of `group` for organisation org1.
#[track_caller]
fn assert_cache_is_edw_view(edw: &Edw, cache: &CacheFile) -> Vec<i64> {
    let (persons, want) = edw.expected_view(edw.group, "org1");
    let got = cache.view();
    let missing: Vec<_> = want.difference(&got).take(5).collect();
    let extra: Vec<_> = got.difference(&want).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "cache != EDW view: missing {missing:?}, extra {extra:?} ({} vs {})",
        got.len(),
        want.len()
    );
    let members: BTreeSet<String> = persons.iter().map(|p| p.to_string()).collect();
    assert_eq!(cache.group_members(edw.group), members, "Group members");
    assert_eq!(cache.patient_ids(), members, "patients");
    // No patient of the other organisation only.
    let org2_only: BTreeSet<String> = edw
        .persons_of_org("org2")
        .difference(&edw.persons_of_org("org1"))
        .cloned()
        .collect();
    assert!(cache.patient_ids().is_disjoint(&org2_only));
    persons
}

/// The `_since` of the latest export job of a client (from the EDW's job table).
fn last_since(edw: &Edw, client: &str) -> Option<String> {
    let r = edw
        .sql()
        .query_one(
            "SELECT request->>'since' FROM edw.bulk_job WHERE client_id = $1
             ORDER BY created_at DESC LIMIT 1",
            &[&client],
        )
        .unwrap();
    r.get(0)
}

#[test]
fn full_then_incremental_sync_equals_the_edw_view() {
    let edw = Edw::setup("sync_full", 160);
    let srv = Server::start(&edw.server_db, &[]);
    let dir = tempfile::tempdir().unwrap();
    let client = edw.client(dir.path(), "ws1", "org1", &[edw.group]);
    let cache = CacheFile::new(dir.path(), "c");
    // No --group: the client lists the Groups it may see.
    let sync = Sync::new(&cache, &srv.base, &client, &srv.cert());

    let r = sync.run("sync").report();
    assert_eq!(r["full"], true, "{r}");
    assert_eq!(r["groups"], serde_json::json!([edw.group.to_string()]));
    assert!(r["resources"].as_u64().unwrap() > 100, "{r}");
    assert_eq!(last_since(&edw, &client.id), None, "a full export");
    let before = assert_cache_is_edw_view(&edw, &cache);
    let tt1 = r["transaction_time"].as_str().unwrap().to_string();
    assert_eq!(
        cache.open().sync_state().unwrap().groups[0].transaction_time,
        tt1
    );
    // Nothing left staged.
    assert!(
        !cache::stage_path(&cache.path).exists() || {
            let st = cache::SyncStage::open(&cache.path, &cache.key).unwrap();
            st.staged().unwrap().is_none()
        }
    );

    // Changes in the EDW: a changed observation and a new one for a member who stays,
    // a new patient who joins (primary-care visits to pr1 of ct1), a member who leaves
    // (their visits move to pr3 of ct2), and two members merged into one person.
    assert!(before.len() >= 6, "{before:?}");
    let stay = before[0];
    let stay_src = edw.source_of(stay);
    let leaver = *before.last().unwrap();
    let leaver_src = edw.source_of(leaver);
    let (changed_id, mut changed): (String, Value) = {
        let row = edw
            .sql()
            .query_one(
                "SELECT o.source_id, l.raw FROM edw.observation o
                 JOIN staging.raw_line l ON (l.batch_id, l.line_no) = (o.batch_id, o.line_no)
                 JOIN edw.source_patient sp ON sp.id = o.source_patient_id
                 WHERE sp.person_id = $1 ORDER BY o.source_id LIMIT 1",
                &[&stay],
            )
            .unwrap();
        (
            row.get(0),
            serde_json::from_str(row.get::<_, &str>(1)).unwrap(),
        )
    };
    changed["valueQuantity"] = serde_json::json!({"value": 123.25, "unit": "mg/dL"});
    changed["status"] = "amended".into();
    let mut files: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    files.insert("Patient", vec![patient("newbie", "Newcomer", "org1")]);
    let mut visits: Vec<Value> = (1..=3)
        .map(|d| visit(&format!("nb-{d}"), "newbie", "pr1", d))
        .collect();
    visits.extend((1..=12).map(|d| visit(&format!("lv-{d}"), &leaver_src, "pr3", d)));
    files.insert("Encounter", visits);
    files.insert(
        "Observation",
        vec![a1c("late-a1c", &stay_src, 7.1), changed.clone()],
    );
    edw.ingest_update("v2", &files);
    // Merge two members (a manual link), as in the EDW's own tests.
    let (a, b) = (before[1], before[2]);
    {
        let mut c = edw.sql();
        let r = c
            .query_one(
                "SELECT (SELECT min(id) FROM edw.source_patient WHERE person_id = $1),
                        (SELECT min(id) FROM edw.source_patient WHERE person_id = $2)",
                &[&a, &b],
            )
            .unwrap();
        let (ar, br): (i64, i64) = (r.get(0), r.get(1));
        c.execute(
            "INSERT INTO edw.match_link (a_id, b_id, method) VALUES ($1, $2, 'manual')",
            &[&ar.min(br), &ar.max(br)],
        )
        .unwrap();
    }
    edw.rematch();
    let newbie = edw.person_of("newbie");
    let after = edw.members(edw.group, "org1");
    assert!(
        after.contains(&newbie) && !after.contains(&leaver),
        "{after:?}"
    );
    let merged_away: Vec<i64> = [a, b].into_iter().filter(|p| !after.contains(p)).collect();
    assert_eq!(
        merged_away.len(),
        1,
        "one of the two merged persons is gone"
    );
    let leaver_events: i64 = cache
        .raw()
        .query_row(
            "SELECT count(*) FROM events WHERE patient_id = ?1",
            [leaver.to_string()],
            |r| r.get(0),
        )
        .unwrap();
    assert!(leaver_events > 0);

    // Incremental.
    let r2 = sync.run("sync").report();
    assert_eq!(r2["full"], false, "{r2}");
    assert_eq!(
        last_since(&edw, &client.id).as_deref(),
        Some(tt1.as_str()),
        "the export asked for _since = the last transactionTime"
    );
    assert!(r2["transaction_time"].as_str().unwrap() > tt1.as_str());
    let removed: BTreeSet<String> = r2["removed_patients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert!(removed.contains(&leaver.to_string()), "{r2}");
    assert!(removed.contains(&merged_away[0].to_string()), "{r2}");
    let changed_p: Vec<&str> = r2["changed_patients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(changed_p.contains(&newbie.to_string().as_str()));
    assert!(changed_p.contains(&stay.to_string().as_str()));
    // Far fewer resources than the full sync: only what changed.
    assert!(r2["resources"].as_u64().unwrap() < r["resources"].as_u64().unwrap() / 2);
    assert_cache_is_edw_view(&edw, &cache);
    // The leaver is gone with every event of theirs; the changed observation is updated.
    let c = cache.raw();
    for p in [leaver, merged_away[0]] {
        for t in ["patients", "panel_row"] {
            let col = if t == "patients" { "id" } else { "patient_id" };
            let n: i64 = c
                .query_row(
                    &format!("SELECT count(*) FROM {t} WHERE {col} = ?1"),
                    [p.to_string()],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(n, 0, "{t} of a removed patient");
        }
        for t in ["events", "other_resources", "group_members"] {
            let n: i64 = c
                .query_row(
                    &format!("SELECT count(*) FROM {t} WHERE patient_id = ?1"),
                    [p.to_string()],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(n, 0, "{t} of a removed patient");
        }
    }
    let raw: String = c
        .query_row(
            "SELECT raw FROM events WHERE resource_id = ?1 AND kind LIKE '%'",
            [&changed_id],
            |r| r.get(0),
        )
        .unwrap();
    let v: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(v["valueQuantity"]["value"], 123.25, "{v}");
    assert_eq!(v["status"], "amended");
    assert_eq!(v["subject"]["reference"], format!("Patient/{stay}"));

    // A third sync with nothing changed: incremental, nothing removed, same state.
    let before3 = cache.content();
    let r3 = sync.run("sync").report();
    assert_eq!(r3["full"], false);
    assert!(r3["removed_patients"].as_array().unwrap().is_empty());
    assert!(before3 == cache.content(), "unchanged");
    assert_cache_is_edw_view(&edw, &cache);
}
