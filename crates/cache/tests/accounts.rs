//! Accounts: Argon2id passphrases and lockout, stored in the encrypted cache.

mod common;

use access::{LockoutPolicy, Role};
use cache::{Cache, LoginResult};
use common::{key, raw_conn};

const T0: i64 = 1_800_000_000_000;
const MIN: i64 = 60_000;

#[test]
fn create_list_update_delete() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let k = key();
    let c = Cache::open(&path, &k).unwrap();
    let a = c
        .create_account(
            "alice",
            "Alice A.",
            Role::CareManager,
            "correct horse battery",
        )
        .unwrap();
    assert_eq!(
        (a.role, a.failed_count, a.locked_until, a.disabled),
        (Role::CareManager, 0, None, false)
    );
    assert!(c
        .create_account("alice", "Other", Role::Clinician, "another passphrase")
        .is_err());
    assert!(c
        .create_account("bad name", "x", Role::Clinician, "another passphrase")
        .is_err());
    assert!(c
        .create_account("", "x", Role::Clinician, "another passphrase")
        .is_err());
    assert!(c
        .create_account("bob", "Bob", Role::Clinician, "short")
        .is_err());
    c.create_account("bob", "Bob B.", Role::Clinician, "another passphrase")
        .unwrap();
    let names: Vec<_> = c
        .list_accounts()
        .unwrap()
        .into_iter()
        .map(|a| a.username)
        .collect();
    assert_eq!(names, ["alice", "bob"]);
    c.set_role("bob", Role::QualityAnalyst).unwrap();
    assert_eq!(
        c.account("bob").unwrap().unwrap().role,
        Role::QualityAnalyst
    );
    assert!(c.set_role("carol", Role::Clinician).is_err());
    // Stored as an Argon2id PHC string, never the passphrase.
    let phc: String = raw_conn(&path, &k)
        .query_row(
            "SELECT phc FROM accounts WHERE username = 'alice'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(phc.starts_with("$argon2id$v=19$"), "{phc}");
    assert!(!phc.contains("correct horse"));
    c.delete_account("bob").unwrap();
    assert!(c.account("bob").unwrap().is_none());
    assert!(c.delete_account("bob").is_err());
}

#[test]
fn authenticate_with_lockout_at_the_fifth_failure() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cache::open(dir.path().join("c.db"), &key()).unwrap();
    let p = LockoutPolicy::default();
    c.create_account("alice", "Alice", Role::Clinician, "correct horse battery")
        .unwrap();

    match c
        .authenticate("alice", "correct horse battery", T0, &p)
        .unwrap()
    {
        LoginResult::Success(a) => assert_eq!(
            a.last_login_at.as_deref(),
            Some(access::time::rfc3339_from_unix_ms(T0).as_str())
        ),
        other => panic!("{other:?}"),
    }
    for i in 1..=4 {
        assert_eq!(
            c.authenticate("alice", "wrong passphrase!", T0 + i, &p)
                .unwrap(),
            LoginResult::WrongPassphrase { locked_until: None }
        );
        assert_eq!(c.account("alice").unwrap().unwrap().failed_count, i as u32);
    }
    let until = T0 + 5 + 15 * MIN;
    assert_eq!(
        c.authenticate("alice", "wrong passphrase!", T0 + 5, &p)
            .unwrap(),
        LoginResult::WrongPassphrase {
            locked_until: Some(until)
        }
    );
    // Locked: even the right passphrase is refused until the lockout ends.
    assert_eq!(
        c.authenticate("alice", "correct horse battery", until - 1, &p)
            .unwrap(),
        LoginResult::Locked { until }
    );
    assert!(matches!(
        c.authenticate("alice", "correct horse battery", until, &p)
            .unwrap(),
        LoginResult::Success(_)
    ));
    let a = c.account("alice").unwrap().unwrap();
    assert_eq!((a.failed_count, a.locked_until), (0, None));

    // A success resets the counter.
    c.authenticate("alice", "nope nope nope", until + 1, &p)
        .unwrap();
    c.authenticate("alice", "correct horse battery", until + 2, &p)
        .unwrap();
    assert_eq!(c.account("alice").unwrap().unwrap().failed_count, 0);

    // Admin reset and explicit failure recording.
    for _ in 0..5 {
        c.record_login_failure("alice", T0, &p).unwrap();
    }
    assert!(c.account("alice").unwrap().unwrap().locked_until.is_some());
    c.reset_login_failures("alice").unwrap();
    assert_eq!(c.account("alice").unwrap().unwrap().locked_until, None);

    assert_eq!(
        c.authenticate("nobody", "whatever passphrase", T0, &p)
            .unwrap(),
        LoginResult::UnknownUser
    );
    c.set_disabled("alice", true).unwrap();
    assert_eq!(
        c.authenticate("alice", "correct horse battery", until + 10, &p)
            .unwrap(),
        LoginResult::Disabled
    );
    c.set_disabled("alice", false).unwrap();
    c.set_passphrase("alice", "a brand new passphrase").unwrap();
    assert!(matches!(
        c.authenticate("alice", "a brand new passphrase", until + 11, &p)
            .unwrap(),
        LoginResult::Success(_)
    ));
    assert!(matches!(
        c.authenticate("alice", "correct horse battery", until + 12, &p)
            .unwrap(),
        LoginResult::WrongPassphrase { .. }
    ));
}
