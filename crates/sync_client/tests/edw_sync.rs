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

/// The panel part of the cache's content (what a refused sync must leave as it was).
fn panel(c: &CacheFile) -> String {
    c.content()
}

#[test]
fn refusals_offline_and_audit_shipping() {
    let edw = Edw::setup("sync_refuse", 80);
    let mut srv = Server::start(&edw.server_db, &[]);
    let dir = tempfile::tempdir().unwrap();
    let client = edw.client(dir.path(), "ws-ok", "org1", &[edw.group]);
    let cache = CacheFile::new(dir.path(), "c");
    let (base, cert) = (srv.base.clone(), srv.cert());
    let sync = || Sync::new(&cache, &base, &client, &cert);
    sync().run("sync").report();
    assert_cache_is_edw_view(&edw, &cache);
    let synced = panel(&cache);

    // Refused: each a clear error, the cache as it was.
    let refused = |what: &str, run: Run, needle: &str, cache: &CacheFile, before: &str| {
        let e = run.error();
        assert!(e.contains(needle), "{what}: {e}");
        assert!(panel(cache) == before, "{what}: the cache changed");
        drop(cache.open());
        e
    };
    // A key the server does not know for this client.
    let stranger = edw.client(dir.path(), "ws-stranger", "org1", &[edw.group]);
    let wrong_key = SyncClient {
        id: client.id.clone(),
        key_file: stranger.key_file.clone(),
    };
    let e = refused(
        "wrong key",
        Sync::new(&cache, &srv.base, &wrong_key, &srv.cert()).run("sync"),
        "refused this workstation's credentials: invalid_client",
        &cache,
        &synced,
    );
    eprintln!("wrong key: {e}");
    // A Group not granted.
    let e = refused(
        "group not granted",
        sync().group(edw.other_group).run("sync"),
        "refused access",
        &cache,
        &synced,
    );
    eprintln!("not granted: {e}");
    // The same cache still syncs incrementally afterwards (nothing was forgotten).
    let r = sync().run("sync").report();
    assert_eq!(r["full"], false, "{r}");
    assert!(panel(&cache) == synced);
    // An unknown client (its own cache: another client id starts afresh by design).
    let unknown = SyncClient {
        id: "no-such-client".into(),
        key_file: client.key_file.clone(),
    };
    let c2 = CacheFile::new(dir.path(), "unknown");
    let empty = panel(&c2);
    let e = refused(
        "unknown client",
        Sync::new(&c2, &srv.base, &unknown, &srv.cert()).run("sync"),
        "refused this workstation's credentials: invalid_client",
        &c2,
        &empty,
    );
    eprintln!("unknown: {e}");
    // A mistyped client id on the synced cache is refused and forgets nothing: the next
    // sync with the right one is still incremental.
    let typo = SyncClient {
        id: format!("{}x", client.id),
        key_file: client.key_file.clone(),
    };
    refused(
        "mistyped client id",
        Sync::new(&cache, &srv.base, &typo, &srv.cert()).run("sync"),
        "refused this workstation's credentials: invalid_client",
        &cache,
        &synced,
    );
    let r = sync().run("sync").report();
    assert_eq!(r["full"], false, "{r}");
    // A revoked client, after it had synced.
    let revoked = edw.client(dir.path(), "ws-revoked", "org1", &[edw.group]);
    let c3 = CacheFile::new(dir.path(), "revoked");
    Sync::new(&c3, &srv.base, &revoked, &srv.cert())
        .run("sync")
        .report();
    let c3_state = panel(&c3);
    edw.revoke(&revoked);
    let e = refused(
        "revoked client",
        Sync::new(&c3, &srv.base, &revoked, &srv.cert()).run("sync"),
        "refused this workstation's credentials",
        &c3,
        &c3_state,
    );
    eprintln!("revoked: {e}");
    // Another organisation's client granted the same Group sees only its own patients.
    let org2 = edw.client(dir.path(), "ws-org2", "org2", &[edw.group]);
    let c4 = CacheFile::new(dir.path(), "org2");
    Sync::new(&c4, &srv.base, &org2, &srv.cert())
        .run("sync")
        .report();
    let org2_members: BTreeSet<String> = edw
        .members(edw.group, "org2")
        .iter()
        .map(|p| p.to_string())
        .collect();
    assert!(!org2_members.is_empty());
    assert_eq!(c4.patient_ids(), org2_members);
    let org1_only: BTreeSet<String> = edw
        .persons_of_org("org1")
        .difference(&edw.persons_of_org("org2"))
        .cloned()
        .collect();
    assert!(c4.patient_ids().is_disjoint(&org1_only));
    assert!(cache.patient_ids().is_disjoint(
        &edw.persons_of_org("org2")
            .difference(&edw.persons_of_org("org1"))
            .cloned()
            .collect()
    ));

    // Offline: the server is down. The sync says so, the cache is unchanged and opens,
    // actions stay queued; when the server is back they drain exactly once.
    let patients: Vec<String> = cache.patient_ids().into_iter().collect();
    let ids = cache.queue_actions(&patients, 40, "offline");
    srv.stop();
    let e = sync().run("sync").error();
    assert!(e.contains("offline"), "{e}");
    assert!(panel(&cache) == synced);
    let c = cache.open();
    assert!(c
        .sync_state()
        .unwrap()
        .last_error
        .unwrap()
        .contains("offline"));
    assert_eq!(
        c.patient_ids().unwrap().len(),
        patients.len(),
        "works from the cache"
    );
    drop(c);
    let e = sync().run("actions").error();
    assert!(e.contains("offline"), "{e}");
    assert_eq!(cache.outbox_unsent(), 40);
    assert!(edw.action_rows(&ids).values().all(|&n| n == 0));
    srv.restart();
    let r = sync().run("actions").report();
    assert_eq!(
        (r["created"].as_u64(), r["refused"].as_u64()),
        (Some(40), Some(0))
    );
    assert_eq!(cache.outbox_unsent(), 0);
    let r = sync().run("actions").report();
    assert_eq!(r["created"], 0);
    assert!(edw.action_rows(&ids).values().all(|&n| n == 1));
    let r = sync().run("sync").report();
    assert_eq!(r["full"], false);
    assert!(cache.open().sync_state().unwrap().last_error.is_none());

    // Audit shipping.
    let append = |c: &CacheFile, n: usize, tag: &str| {
        let cache = c.open();
        for i in 0..n {
            let mut e = access::AuditEntry::now(
                "dr.test",
                Some(access::Role::Clinician),
                Some(access::PurposeOfUse::Treatment),
                access::Action::ViewTimeline,
                access::Outcome::Allowed,
            );
            e.patient_ids = vec![patients[i % patients.len()].clone()];
            e.detail = Some(format!("{tag} {i}"));
            cache.audit_append(e).unwrap();
        }
    };
    let chain_rows = || -> i64 {
        edw.sql()
            .query_one(
                "SELECT count(*) FROM audit.workstation_chain WHERE workstation_id = $1",
                &[&client.id],
            )
            .unwrap()
            .get(0)
    };
    append(&cache, 5, "first");
    let local = cache.open().audit_count().unwrap() as i64;
    let h = sync().run("audit").report();
    assert_eq!(h["seq"].as_i64(), Some(local), "{h}");
    assert_eq!(chain_rows(), local);
    assert_eq!(cache.open().audit_edw_head().unwrap().unwrap().0, local);
    let older = dir.path().join("older.db");
    cache.snapshot(&older);
    append(&cache, 3, "second");
    // A second call sends only the new records (the EDW refuses a segment that does
    // not start right after the head it holds).
    let h = sync().run("audit").report();
    assert_eq!(h["seq"].as_i64(), Some(local + 3));
    assert_eq!(chain_rows(), local + 3);
    let h = sync().run("audit").report();
    assert_eq!(h["seq"].as_i64(), Some(local + 3), "nothing new");
    // A cache restored from the older copy, with new records of its own: refused.
    cache.restore(&older);
    append(&cache, 2, "after restore");
    let e = sync().run("audit").error();
    assert!(e.contains("409"), "{e}");
    assert_eq!(chain_rows(), local + 3, "nothing stored");
    let alerts: i64 = edw
        .sql()
        .query_one(
            "SELECT count(*) FROM audit.chain_alert WHERE workstation_id = $1",
            &[&client.id],
        )
        .unwrap()
        .get(0);
    assert!(alerts >= 1, "flagged for the privacy officer");
}
