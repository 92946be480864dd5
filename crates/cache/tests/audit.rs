//! Audit trail: append, filters, and tamper detection through raw SQL.

mod common;

use access::{Action, AuditEntry, BreakReason, Outcome, PurposeOfUse, Role};
use cache::{AuditFilter, Cache, CacheError};
use common::{key, raw_conn};

fn entry(i: i64) -> AuditEntry {
    AuditEntry {
        at: format!("2026-11-{:02}T10:00:00.000Z", 1 + i),
        user: if i % 2 == 0 {
            "alice".into()
        } else {
            "bob".into()
        },
        role: Some(if i % 2 == 0 {
            Role::CareManager
        } else {
            Role::Clinician
        }),
        purpose: Some(PurposeOfUse::Treatment),
        action: if i % 3 == 0 {
            Action::ViewTimeline
        } else {
            Action::ViewPanel
        },
        patient_ids: if i % 3 == 0 {
            vec![format!("p{i}")]
        } else {
            vec![]
        },
        query: (i % 3 != 0).then(|| r#"{"name":"zim"}"#.to_owned()),
        outcome: if i == 4 {
            Outcome::Denied
        } else {
            Outcome::Allowed
        },
        detail: None,
    }
}

fn setup(
    n: i64,
) -> (
    tempfile::TempDir,
    std::path::PathBuf,
    cache::CacheKey,
    Cache,
) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let k = key();
    let c = Cache::open(&path, &k).unwrap();
    for i in 1..=n {
        let r = c.audit_append(entry(i)).unwrap();
        assert_eq!(r.seq, i);
    }
    (dir, path, k, c)
}

fn expect_break(c: &Cache, seq: i64) -> BreakReason {
    match c.audit_verify() {
        Err(CacheError::AuditChain(b)) => {
            assert_eq!(b.seq, seq, "{b}");
            b.reason
        }
        other => panic!("expected a chain break at {seq}, got {other:?}"),
    }
}

#[test]
fn append_chains_and_verifies() {
    let (_d, _p, _k, c) = setup(8);
    assert_eq!(c.audit_verify().unwrap(), 8);
    assert_eq!(c.audit_count().unwrap(), 8);
    let all = c.audit_list(&AuditFilter::default()).unwrap();
    assert_eq!(all.len(), 8);
    assert_eq!(all[0].seq, 8, "newest first");
    assert_eq!(all[7].prev_hash, access::GENESIS_HASH);
    assert_eq!(all[0].prev_hash, all[1].hash);
    assert!(access::verify_chain(&all.into_iter().rev().collect::<Vec<_>>()).is_ok());
    // Empty trail verifies.
    let dir = tempfile::tempdir().unwrap();
    let empty = Cache::open(dir.path().join("e.db"), &key()).unwrap();
    assert_eq!(empty.audit_verify().unwrap(), 0);
}

#[test]
fn filters() {
    let (_d, _p, _k, c) = setup(9);
    let seqs =
        |f: AuditFilter| -> Vec<i64> { c.audit_list(&f).unwrap().iter().map(|r| r.seq).collect() };
    assert_eq!(
        seqs(AuditFilter {
            user: Some("alice".into()),
            ..Default::default()
        }),
        [8, 6, 4, 2]
    );
    assert_eq!(
        seqs(AuditFilter {
            patient_id: Some("p6".into()),
            ..Default::default()
        }),
        [6]
    );
    assert_eq!(
        seqs(AuditFilter {
            patient_id: Some("p".into()),
            ..Default::default()
        }),
        Vec::<i64>::new()
    );
    assert_eq!(
        seqs(AuditFilter {
            action: Some(Action::ViewTimeline),
            ..Default::default()
        }),
        [9, 6, 3]
    );
    assert_eq!(
        seqs(AuditFilter {
            outcome: Some(Outcome::Denied),
            ..Default::default()
        }),
        [4]
    );
    assert_eq!(
        seqs(AuditFilter {
            from: Some("2026-11-04".into()),
            to: Some("2026-11-06T10:00:00Z".into()),
            ..Default::default()
        }),
        [4, 3]
    );
    // Offsets in another time zone are compared in UTC.
    assert_eq!(
        seqs(AuditFilter {
            from: Some("2026-11-05T11:00:00+01:00".into()),
            to: Some("2026-11-05T10:00:00.001Z".into()),
            ..Default::default()
        }),
        [4]
    );
    assert_eq!(
        seqs(AuditFilter {
            limit: Some(2),
            offset: 1,
            ..Default::default()
        }),
        [8, 7]
    );
    assert!(c
        .audit_list(&AuditFilter {
            from: Some("last week".into()),
            ..Default::default()
        })
        .is_err());
    assert!(c
        .audit_list(&AuditFilter {
            limit: Some(0),
            ..Default::default()
        })
        .is_err());
    assert!(c
        .audit_append(AuditEntry {
            at: "not a time".into(),
            ..entry(1)
        })
        .is_err());
}

#[test]
fn altered_field_via_raw_sql_is_detected_at_its_seq() {
    let cases = [
        "UPDATE audit SET user = 'mallory' WHERE seq = 5",
        "UPDATE audit SET patient_ids = '[\"p99\"]' WHERE seq = 5",
        "UPDATE audit SET outcome = 'error' WHERE seq = 5",
        "UPDATE audit SET at = '2020-01-01T00:00:00.000Z' WHERE seq = 5",
        "UPDATE audit SET role = 'privacy_officer' WHERE seq = 5",
        "UPDATE audit SET query = NULL WHERE seq = 5",
        "UPDATE audit SET action = 'not_an_action' WHERE seq = 5",
        "UPDATE audit SET patient_ids = 'not json' WHERE seq = 5",
    ];
    for sql in cases {
        let (_d, path, k, c) = setup(8);
        assert_eq!(raw_conn(&path, &k).execute(sql, []).unwrap(), 1);
        let reason = expect_break(&c, 5);
        assert_eq!(reason, BreakReason::HashMismatch, "{sql}");
        let msg = c.audit_verify().unwrap_err().to_string();
        assert!(msg.starts_with("audit chain broken at seq 5:"), "{msg}");
    }
}

#[test]
fn deleted_reordered_and_truncated_rows_are_detected() {
    // Deleted middle row.
    let (_d, path, k, c) = setup(8);
    raw_conn(&path, &k)
        .execute("DELETE FROM audit WHERE seq = 3", [])
        .unwrap();
    assert_eq!(
        expect_break(&c, 4),
        BreakReason::SeqMismatch { expected: 3 }
    );

    // Deleted and renumbered.
    let (_d, path, k, c) = setup(8);
    raw_conn(&path, &k)
        .execute_batch(
            "DELETE FROM audit WHERE seq = 3; UPDATE audit SET seq = seq - 1 WHERE seq > 3;",
        )
        .unwrap();
    assert_eq!(expect_break(&c, 3), BreakReason::PrevHashMismatch);

    // Two rows swapped (contents exchanged, seq kept).
    let (_d, path, k, c) = setup(8);
    raw_conn(&path, &k)
        .execute_batch(
            "UPDATE audit SET seq = -2 WHERE seq = 2;
             UPDATE audit SET seq = 2 WHERE seq = 6;
             UPDATE audit SET seq = 6 WHERE seq = -2;",
        )
        .unwrap();
    assert_eq!(expect_break(&c, 2), BreakReason::PrevHashMismatch);

    // Last two rows deleted: caught by the recorded head.
    let (_d, path, k, c) = setup(8);
    raw_conn(&path, &k)
        .execute("DELETE FROM audit WHERE seq > 6", [])
        .unwrap();
    assert_eq!(
        expect_break(&c, 7),
        BreakReason::Truncated { expected_last: 8 }
    );

    // Everything deleted.
    let (_d, path, k, c) = setup(3);
    raw_conn(&path, &k)
        .execute("DELETE FROM audit", [])
        .unwrap();
    assert_eq!(
        expect_break(&c, 1),
        BreakReason::Truncated { expected_last: 3 }
    );
}

#[test]
fn appends_continue_the_chain_across_reopen() {
    let (_d, path, k, c) = setup(3);
    drop(c);
    let c = Cache::open(&path, &k).unwrap();
    let r = c.audit_append(entry(4)).unwrap();
    assert_eq!(r.seq, 4);
    assert_eq!(c.audit_verify().unwrap(), 4);
}

/// The head the EDW acknowledged anchors the chain: a cache restored from a copy made
/// before it, or a trail cut below it, no longer verifies.
#[test]
fn acknowledged_head_detects_restore_and_truncation() {
    let (dir, path, k, c) = setup(2);
    let old_copy = dir.path().join("old.db");
    c.checkpoint().unwrap();
    std::fs::copy(&path, &old_copy).unwrap();
    c.audit_append(entry(3)).unwrap();
    let r4 = c.audit_append(entry(4)).unwrap();
    assert_eq!(c.audit_after(2, 10).unwrap().len(), 2);
    assert_eq!(c.audit_after(0, 1).unwrap()[0].seq, 1);
    c.set_audit_edw_head(4, &r4.hash).unwrap();
    assert_eq!(c.audit_verify().unwrap(), 4);
    let anchor = Some((4, r4.hash.clone()));
    assert_eq!(c.audit_verify_anchored(anchor.clone()).unwrap(), 4);
    // A wrong hash at the acknowledged position.
    match c.audit_verify_anchored(Some((3, r4.hash.clone()))) {
        Err(CacheError::AuditChain(b)) => assert_eq!(b.reason, BreakReason::HashMismatch),
        other => panic!("expected a break, got {other:?}"),
    }
    drop(c);
    // The old copy is a valid chain on its own, but not against the kept anchor.
    let restored = Cache::open(&old_copy, &k).unwrap();
    assert_eq!(restored.audit_verify().unwrap(), 2);
    match restored.audit_verify_anchored(anchor) {
        Err(CacheError::AuditChain(b)) => {
            assert_eq!(b.reason, BreakReason::Truncated { expected_last: 4 })
        }
        other => panic!("expected truncation, got {other:?}"),
    }
}
