//! Server faults between `phm-sync` and the real `phm-edw serve`, injected by a
//! TLS-terminating proxy (tests/common/proxy.rs; the server's `--public-url` is the
//! proxy, so every URL it hands out goes through it): 500 and 429 with `Retry-After` on
//! the kick-off, the status and the files, a connection reset, a body cut mid-way, a
//! well-formed but truncated NDJSON file, every access token expired mid-sync (the real
//! server answers 401), and a skewed assertion clock. Each is retried (the sync ends
//! with the EDW's view, nothing lost or doubled) or a clear error.

mod common;

use common::proxy::{Fault, Proxy, Rule};
use common::*;
use std::time::Duration;

#[test]
fn faults_are_retried_or_clear_errors_and_nothing_is_lost_or_doubled() {
    let edw = Edw::setup("sync_faults", 100);
    let proxy = Proxy::start(&edw.admin);
    let srv = Server::start(&edw.server_db, &["--public-url", &proxy.base]);
    proxy.connect(srv.port, &srv.cert());
    let dir = tempfile::tempdir().unwrap();
    let client = edw.client(dir.path(), "ws-faults", "org1", &[edw.group]);
    let cache = CacheFile::new(dir.path(), "c");
    let sync = || Sync::new(&cache, &proxy.base, &client, &proxy.ca);

    // Clock skew on the assertion: the server refuses, plainly; nothing changes.
    let empty = cache.content();
    for skew in ["-900", "900"] {
        let e = sync()
            .env("PHM_SYNC_TEST_CLOCK_SKEW_SECS", skew)
            .run("sync")
            .error();
        assert!(
            e.contains("refused this workstation's credentials: invalid_client"),
            "skew {skew}: {e}"
        );
        assert!(cache.content() == empty);
    }
    proxy.clear_log();

    // A full sync through a fault at every step.
    let export = "/$export";
    let status = "/fhir/bulk/status/";
    let files = "/fhir/bulk/files/";
    for r in [
        Rule::new("POST", export, Fault::Status(500, None)),
        Rule::new("POST", export, Fault::Status(429, Some(1))),
        Rule::new("GET", status, Fault::Status(500, None)),
        Rule::new("GET", status, Fault::Status(429, Some(1))),
        Rule::new("GET", files, Fault::Status(500, None)),
        Rule::new("GET", files, Fault::Status(429, Some(1))).skip(1),
        Rule::new("GET", files, Fault::Reset).skip(2),
        // Files with many lines, so whole lines arrive before the cut.
        Rule::new("GET", "/Observation-1.ndjson", Fault::CutBody(50)),
        Rule::new("GET", "/Encounter-1.ndjson", Fault::Truncate(60)),
        Rule::new("GET", "/Patient-1.ndjson", Fault::ExpireTokens),
    ] {
        proxy.add(r);
    }
    let r = sync().run("sync").report();
    assert!(
        proxy.pending_rules().is_empty(),
        "faults not reached: {:?}",
        proxy.pending_rules()
    );
    assert_eq!(r["full"], true);
    assert_cache_is_edw_view(&edw, &cache);
    let log = proxy.log();
    // Retry-After honoured: the retry after a 429 came at least a second later.
    for (i, e) in log.iter().enumerate() {
        if e.fault == Some(Fault::Status(429, Some(1))) {
            let next = log[i + 1..]
                .iter()
                .find(|x| x.method == e.method && x.path == e.path)
                .unwrap_or_else(|| panic!("no retry after 429 on {}", e.path));
            assert!(
                next.at - e.at >= Duration::from_millis(950),
                "{:?}",
                next.at - e.at
            );
        }
        // A cut or truncated file resumes with Range; a reset is retried.
        if matches!(e.fault, Some(Fault::CutBody(_)) | Some(Fault::Truncate(_))) {
            let next = log[i + 1..]
                .iter()
                .find(|x| x.path == e.path)
                .unwrap_or_else(|| panic!("no retry of {}", e.path));
            let from = e.range.as_deref().unwrap_or("bytes=0-");
            assert!(
                next.range.as_deref().is_some_and(|r| r != from),
                "resumed from a later offset: {:?} after {from}",
                next.range
            );
        }
        if e.fault == Some(Fault::Reset) {
            assert!(log[i + 1..]
                .iter()
                .any(|x| x.path == e.path && x.status / 100 == 2));
        }
    }
    // The expired token: one 401, one new token, the same file again.
    let i = log
        .iter()
        .position(|e| e.fault == Some(Fault::ExpireTokens))
        .unwrap();
    assert_eq!(log[i].status, 401, "{:?}", log[i]);
    assert_eq!(log[i + 1].path, "/auth/token");
    assert_eq!(log[i + 1].status, 200);
    assert_eq!(log[i + 2].path, log[i].path);
    assert_eq!(log.iter().filter(|e| e.path == "/auth/token").count(), 2);
    // Each file ends up fetched with a 2xx at least once, none more often than faults
    // explain (no finished file fetched again).
    let file_paths: std::collections::BTreeSet<&str> = log
        .iter()
        .filter(|e| e.path.contains(files))
        .map(|e| e.path.as_str())
        .collect();
    for p in &file_paths {
        let ok = log
            .iter()
            .filter(|e| e.path == *p && e.fault.is_none() && e.status / 100 == 2)
            .count();
        assert_eq!(ok, 1, "{p} fetched whole {ok} times");
    }

    // Write-back through faults: a 500, then a reply cut after the server stored the
    // batch (the retry is answered `duplicate`), then a reset.
    let patients: Vec<String> = cache.patient_ids().into_iter().collect();
    let ids = cache.queue_actions(&patients, 700, "faults");
    proxy.clear_log();
    proxy.add(Rule::new("POST", "/api/actions", Fault::Status(500, None)));
    proxy.add(Rule::new("POST", "/api/actions", Fault::CutBody(0)));
    proxy.add(Rule::new("POST", "/api/actions", Fault::Reset).skip(1));
    let r = sync().run("actions").report();
    assert!(
        proxy.pending_rules().is_empty(),
        "{:?}",
        proxy.pending_rules()
    );
    assert_eq!(r["refused"], 0, "{r}");
    assert_eq!(
        r["created"].as_u64().unwrap() + r["duplicate"].as_u64().unwrap(),
        700,
        "{r}"
    );
    assert!(r["duplicate"].as_u64().unwrap() >= 1, "the cut reply: {r}");
    assert_eq!(cache.outbox_unsent(), 0);
    assert!(
        edw.action_rows(&ids).values().all(|&n| n == 1),
        "every action exactly once"
    );

    // An incremental sync through faults, after a change in the EDW.
    let members = edw.members(edw.group, "org1");
    let src = edw.source_of(members[0]);
    let mut upd = std::collections::BTreeMap::new();
    upd.insert(
        "Observation",
        vec![a1c("fault-a1c-1", &src, 8.0), a1c("fault-a1c-2", &src, 8.5)],
    );
    edw.ingest_update("v2", &upd);
    proxy.add(Rule::new("GET", status, Fault::Reset));
    // Every status answer cut mid-body until the manifest's is (polls retried).
    proxy.add(Rule::new("GET", status, Fault::CutBody(50)).times(1));
    proxy.add(Rule::new("GET", files, Fault::Truncate(30)));
    // The resumed request after the truncation meets a 503 (this export has one file:
    // the Group is only re-sent when its membership changed).
    proxy.add(Rule::new("GET", files, Fault::Status(503, Some(1))));
    let r = sync().run("sync").report();
    assert_eq!(r["full"], false);
    assert!(
        proxy.pending_rules().is_empty(),
        "{:?}",
        proxy.pending_rules()
    );
    assert_cache_is_edw_view(&edw, &cache);
    assert!(cache
        .view()
        .contains(&("Observation".into(), "fault-a1c-2".into())));
}
