//! Accounts: Argon2id passphrases, the growing lockout, administration and the
//! per-installation secret, stored in a real encrypted cache file.

mod common;

use access::{LockoutPolicy, Role};
use cache::{Cache, LoginResult};
use common::{gen, key, raw_conn};

const T0: i64 = 1_800_000_000_000;
const SEC: i64 = 1000;
const MIN: i64 = 60 * SEC;
const HOUR: i64 = 60 * MIN;

const PASS: &str = "correct horse battery";

fn open(dir: &tempfile::TempDir) -> Cache {
    Cache::open(dir.path().join("c.db"), &common::key()).unwrap()
}

fn success(r: LoginResult) -> cache::Account {
    match r {
        LoginResult::Success(a) => a,
        other => panic!("expected success, got {other:?}"),
    }
}

fn is_no_such_account(e: cache::CacheError) -> bool {
    matches!(&e, cache::CacheError::Account(m) if m == "no such account")
}

#[test]
fn create_list_update_delete() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let k = key();
    let c = Cache::open(&path, &k).unwrap();
    assert_eq!(c.account_count().unwrap(), 0);
    let a = c
        .create_account("alice", "Alice A.", Role::CareManager, PASS)
        .unwrap();
    assert_eq!(
        (
            a.role,
            a.failed_count,
            a.locked_until,
            a.disabled,
            a.must_change_passphrase
        ),
        (Role::CareManager, 0, None, false, false)
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
    for bad_display in ["", "   ", "Bob\nB.", &"x".repeat(201)] {
        assert!(
            c.create_account("bob", bad_display, Role::Clinician, "another passphrase")
                .is_err(),
            "{bad_display:?}"
        );
    }
    assert_eq!(c.account_count().unwrap(), 1);
    c.create_account("bob", "  Bob B. ", Role::Clinician, "another passphrase")
        .unwrap();
    assert_eq!(c.account("bob").unwrap().unwrap().display_name, "Bob B.");
    assert_eq!(c.account_count().unwrap(), 2);
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
    assert_eq!(c.account_count().unwrap(), 1);
}

#[test]
fn role_and_display_name() {
    let dir = tempfile::tempdir().unwrap();
    let c = open(&dir);
    c.create_account("alice", "Alice", Role::Clinician, PASS)
        .unwrap();
    c.set_account_role("alice", Role::CareManager).unwrap();
    c.set_display_name("alice", " Alice Adams ").unwrap();
    let a = c.account("alice").unwrap().unwrap();
    assert_eq!(
        (a.role, a.display_name.as_str()),
        (Role::CareManager, "Alice Adams")
    );
    for bad in ["", " ", "tab\there", &"é".repeat(201)] {
        assert!(c.set_display_name("alice", bad).is_err(), "{bad:?}");
    }
    assert!(c.set_display_name("alice", &"é".repeat(200)).is_ok());
    assert!(is_no_such_account(
        c.set_account_role("nobody", Role::Clinician).unwrap_err()
    ));
    assert!(is_no_such_account(
        c.set_display_name("nobody", "Nobody").unwrap_err()
    ));
}

#[test]
fn the_administrator_role_is_stored() {
    // Schema 5 accepts the administrator role (raw SQL: independent of the Role enum).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let k = key();
    let c = Cache::open(&path, &k).unwrap();
    c.create_account("admin", "Admin", Role::PrivacyOfficer, PASS)
        .unwrap();
    drop(c);
    let conn = raw_conn(&path, &k);
    conn.execute(
        "UPDATE accounts SET role = 'administrator' WHERE username = 'admin'",
        [],
    )
    .unwrap();
    assert!(conn
        .execute(
            "UPDATE accounts SET role = 'superuser' WHERE username = 'admin'",
            []
        )
        .is_err());
    assert!(conn
        .execute(
            "UPDATE accounts SET must_change_passphrase = 2 WHERE username = 'admin'",
            []
        )
        .is_err());
}

#[test]
fn disabled_account_is_refused_and_can_be_enabled_again() {
    let dir = tempfile::tempdir().unwrap();
    let c = open(&dir);
    let p = LockoutPolicy::default();
    c.create_account("alice", "Alice", Role::Clinician, PASS)
        .unwrap();
    c.set_account_disabled("alice", true).unwrap();
    assert!(c.account("alice").unwrap().unwrap().disabled);
    // Refused with the right passphrase, and a wrong one is not even counted.
    assert_eq!(
        c.authenticate("alice", PASS, T0, &p).unwrap(),
        LoginResult::Disabled
    );
    for i in 0..10 {
        assert_eq!(
            c.authenticate("alice", "wrong passphrase!", T0 + i, &p)
                .unwrap(),
            LoginResult::Disabled
        );
    }
    assert_eq!(c.account("alice").unwrap().unwrap().failed_count, 0);
    c.set_account_disabled("alice", false).unwrap();
    success(c.authenticate("alice", PASS, T0 + 20, &p).unwrap());
    assert!(is_no_such_account(
        c.set_account_disabled("nobody", true).unwrap_err()
    ));
    // The old name does the same.
    c.set_disabled("alice", true).unwrap();
    assert_eq!(
        c.authenticate("alice", PASS, T0 + 30, &p).unwrap(),
        LoginResult::Disabled
    );
}

/// (time offset, passphrase right?, expected result) through `authenticate`
/// with the default policy: 3 free failures, then 30 s doubling to 1 h, the
/// counter kept across lockouts.
#[test]
fn lockout_schedule_through_authenticate() {
    let dir = tempfile::tempdir().unwrap();
    let c = open(&dir);
    let p = LockoutPolicy::default();
    c.create_account("alice", "Alice", Role::Clinician, PASS)
        .unwrap();
    let a = success(c.authenticate("alice", PASS, T0, &p).unwrap());
    assert_eq!(
        a.last_login_at.as_deref(),
        Some(access::time::rfc3339_from_unix_ms(T0).as_str())
    );

    enum Want {
        Wrong(Option<i64>),
        Locked(i64),
        Success,
    }
    use Want::*;
    // Each wrong attempt is made as soon as the previous lock ends.
    let steps: &[(i64, &str, Want, u32)] = &[
        (1, "wrong passphrase!", Wrong(None), 1),
        (2, "wrong passphrase!", Wrong(None), 2),
        (3, "wrong passphrase!", Wrong(None), 3),
        (4, "wrong passphrase!", Wrong(Some(4 + 30 * SEC)), 4),
        // Locked: even the right passphrase is refused, not counted.
        (5, PASS, Locked(4 + 30 * SEC), 4),
        (
            4 + 30 * SEC - 1,
            "wrong passphrase!",
            Locked(4 + 30 * SEC),
            4,
        ),
        // The lock ends at its boundary; the counter was not reset by it.
        (
            4 + 30 * SEC,
            "wrong passphrase!",
            Wrong(Some(4 + 30 * SEC + MIN)),
            5,
        ),
        (
            4 + 30 * SEC + MIN,
            "wrong passphrase!",
            Wrong(Some(4 + 30 * SEC + 3 * MIN)),
            6,
        ),
        (
            4 + 30 * SEC + 3 * MIN,
            "wrong passphrase!",
            Wrong(Some(4 + 30 * SEC + 7 * MIN)),
            7,
        ),
        (
            4 + 30 * SEC + 7 * MIN - 1,
            PASS,
            Locked(4 + 30 * SEC + 7 * MIN),
            7,
        ),
        (4 + 30 * SEC + 7 * MIN, PASS, Success, 0),
        // A success resets the counter: three free failures again.
        (HOUR, "wrong passphrase!", Wrong(None), 1),
        (HOUR + 1, "wrong passphrase!", Wrong(None), 2),
        (HOUR + 2, "wrong passphrase!", Wrong(None), 3),
        (
            HOUR + 3,
            "wrong passphrase!",
            Wrong(Some(HOUR + 3 + 30 * SEC)),
            4,
        ),
    ];
    for (i, (dt, pass, want, count)) in steps.iter().enumerate() {
        let got = c.authenticate("alice", pass, T0 + dt, &p).unwrap();
        match want {
            Wrong(until) => assert_eq!(
                got,
                LoginResult::WrongPassphrase {
                    locked_until: until.map(|u| T0 + u)
                },
                "step {i}"
            ),
            Locked(until) => assert_eq!(got, LoginResult::Locked { until: T0 + until }, "step {i}"),
            Success => {
                success(got);
            }
        }
        let a = c.account("alice").unwrap().unwrap();
        assert_eq!(a.failed_count, *count, "step {i}");
        if matches!(want, Success) {
            assert_eq!(a.locked_until, None, "step {i}");
        }
    }

    // Keep guessing at the earliest moment: the lock doubles up to an hour and stays there.
    let mut now = T0 + HOUR + 3 + 30 * SEC;
    let mut locks = Vec::new();
    for _ in 0..8 {
        match c
            .authenticate("alice", "wrong passphrase!", now, &p)
            .unwrap()
        {
            LoginResult::WrongPassphrase {
                locked_until: Some(until),
            } => {
                locks.push((until - now) / SEC);
                now = until;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(locks, [60, 120, 240, 480, 960, 1920, 3600, 3600]);
    assert_eq!(c.account("alice").unwrap().unwrap().failed_count, 12);

    // Explicit failure recording follows the same schedule.
    c.unlock_account("alice").unwrap();
    for n in 1..=3 {
        let o = c.record_login_failure("alice", T0, &p).unwrap();
        assert_eq!((o.failed_count, o.locked_until), (n, None));
    }
    let o = c.record_login_failure("alice", T0, &p).unwrap();
    assert_eq!((o.failed_count, o.locked_until), (4, Some(T0 + 30 * SEC)));

    assert_eq!(
        c.authenticate("nobody", "whatever passphrase", T0, &p)
            .unwrap(),
        LoginResult::UnknownUser
    );
}

#[test]
fn unlock_clears_failures_and_lock() {
    let dir = tempfile::tempdir().unwrap();
    let c = open(&dir);
    let p = LockoutPolicy::default();
    c.create_account("alice", "Alice", Role::Clinician, PASS)
        .unwrap();
    for i in 0..6 {
        c.record_login_failure("alice", T0 + i, &p).unwrap();
    }
    let a = c.account("alice").unwrap().unwrap();
    assert_eq!(a.failed_count, 6);
    assert!(p.is_locked(a.locked_until, T0 + 10));
    assert!(matches!(
        c.authenticate("alice", PASS, T0 + 10, &p).unwrap(),
        LoginResult::Locked { .. }
    ));
    c.unlock_account("alice").unwrap();
    let a = c.account("alice").unwrap().unwrap();
    assert_eq!((a.failed_count, a.locked_until), (0, None));
    success(c.authenticate("alice", PASS, T0 + 11, &p).unwrap());
    assert!(is_no_such_account(c.unlock_account("nobody").unwrap_err()));
}

#[test]
fn reset_then_change_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let c = open(&dir);
    let p = LockoutPolicy::default();
    c.create_account("alice", "Alice", Role::Clinician, PASS)
        .unwrap();
    for i in 0..5 {
        c.authenticate("alice", "wrong passphrase!", T0 + i, &p)
            .unwrap();
    }
    assert!(c.account("alice").unwrap().unwrap().locked_until.is_some());

    // The administrator's reset: new passphrase, must change, lock and failures cleared.
    c.reset_passphrase("alice", "temporary passphrase 1")
        .unwrap();
    let a = c.account("alice").unwrap().unwrap();
    assert_eq!(
        (a.must_change_passphrase, a.failed_count, a.locked_until),
        (true, 0, None)
    );
    assert!(matches!(
        c.authenticate("alice", PASS, T0 + 10, &p).unwrap(),
        LoginResult::WrongPassphrase { locked_until: None }
    ));
    // Signing in still succeeds; the flag tells the service layer to force the change.
    let a = success(
        c.authenticate("alice", "temporary passphrase 1", T0 + 11, &p)
            .unwrap(),
    );
    assert!(a.must_change_passphrase);
    assert_eq!(a.failed_count, 0);

    // The user's own change clears the flag.
    c.change_passphrase("alice", "my own new passphrase")
        .unwrap();
    assert!(!c.account("alice").unwrap().unwrap().must_change_passphrase);
    assert!(matches!(
        c.authenticate("alice", "temporary passphrase 1", T0 + 12, &p)
            .unwrap(),
        LoginResult::WrongPassphrase { .. }
    ));
    let a = success(
        c.authenticate("alice", "my own new passphrase", T0 + 13, &p)
            .unwrap(),
    );
    assert!(!a.must_change_passphrase);

    // Too short for hashing: refused, nothing changed.
    assert!(c.reset_passphrase("alice", "short").is_err());
    assert!(c.change_passphrase("alice", "short").is_err());
    assert!(!c.account("alice").unwrap().unwrap().must_change_passphrase);
    assert!(is_no_such_account(
        c.reset_passphrase("nobody", "temporary passphrase 1")
            .unwrap_err()
    ));
    assert!(is_no_such_account(
        c.change_passphrase("nobody", "temporary passphrase 1")
            .unwrap_err()
    ));

    // set_passphrase changes only the hash.
    c.reset_passphrase("alice", "temporary passphrase 2")
        .unwrap();
    c.set_passphrase("alice", "a brand new passphrase").unwrap();
    let a = success(
        c.authenticate("alice", "a brand new passphrase", T0 + 14, &p)
            .unwrap(),
    );
    assert!(a.must_change_passphrase);
}

#[test]
fn must_change_is_kept_across_reopen_and_import() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let k = key();
    {
        let c = Cache::open(&path, &k).unwrap();
        let a = c
            .create_account_must_change("carol", "Carol", Role::CareManager, "first passphrase 1")
            .unwrap();
        assert!(a.must_change_passphrase);
        assert_eq!(a.role, Role::CareManager);
        c.create_account("dave", "Dave", Role::Clinician, PASS)
            .unwrap();
        assert!(c
            .create_account_must_change("carol", "Carol", Role::Clinician, PASS)
            .is_err());
        assert!(c
            .create_account_must_change("erin", "Erin", Role::Clinician, "short")
            .is_err());
    }
    let mut c = Cache::open(&path, &k).unwrap();
    assert!(c.account("carol").unwrap().unwrap().must_change_passphrase);
    assert!(!c.account("dave").unwrap().unwrap().must_change_passphrase);
    // An import replaces the clinical tables and keeps the accounts as they were.
    let (_, lines) = gen::panel(3, 1);
    common::import_lines(&mut c, &lines);
    let listed: Vec<(String, bool)> = c
        .list_accounts()
        .unwrap()
        .into_iter()
        .map(|a| (a.username, a.must_change_passphrase))
        .collect();
    assert_eq!(listed, [("carol".into(), true), ("dave".into(), false)]);
    c.change_passphrase("carol", "carol's own passphrase")
        .unwrap();
    drop(c);
    let c = Cache::open(&path, &k).unwrap();
    assert!(!c.account("carol").unwrap().unwrap().must_change_passphrase);
}

#[test]
fn install_secret_is_made_once_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let k = key();
    let secret = {
        let c = Cache::open(&path, &k).unwrap();
        let s = c.install_secret().unwrap();
        assert_eq!(s.len(), 32);
        assert_ne!(s, vec![0u8; 32]);
        assert_eq!(c.install_secret().unwrap(), s);
        s
    };
    let mut c = Cache::open(&path, &k).unwrap();
    assert_eq!(c.install_secret().unwrap(), secret);
    let (_, lines) = gen::panel(2, 3);
    common::import_lines(&mut c, &lines);
    assert_eq!(c.install_secret().unwrap(), secret);
    // Same typed name, same label, for the life of the installation.
    assert_eq!(
        access::unknown_user_label(&secret, "alcie"),
        access::unknown_user_label(&c.install_secret().unwrap(), "alcie")
    );
    // Another installation has another secret.
    let other = tempfile::tempdir().unwrap();
    assert_ne!(open(&other).install_secret().unwrap(), secret);
    // Stored as hex in the settings (inside the encrypted file).
    let hex: String = c.setting("install_secret").unwrap().unwrap();
    assert_eq!(hex.len(), 64);
    assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()));
    // A damaged value is an error, never silently replaced.
    c.set_setting("install_secret", "not hex").unwrap();
    assert!(c.install_secret().is_err());
    assert_eq!(
        c.setting("install_secret").unwrap().as_deref(),
        Some("not hex")
    );
}

#[test]
fn a_version_4_cache_is_migrated_with_its_accounts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let k = key();
    {
        // A cache as version 4 left it, with an account that had failures.
        let conn = raw_conn(&path, &k);
        for (version, _, sql) in cache::MIGRATIONS.iter().take(4) {
            conn.execute_batch(sql).unwrap();
            conn.execute_batch(&format!("PRAGMA user_version = {version}"))
                .unwrap();
        }
        let phc = access::hash_passphrase(PASS).unwrap();
        conn.execute(
            "INSERT INTO accounts(username, display_name, role, phc, failed_count, locked_until,
                                  created_at, practitioner_id)
             VALUES ('alice', 'Alice', 'clinician', ?1, 2, NULL, '2026-01-01T00:00:00.000Z', 'pr-1')",
            [&phc],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO account_groups(username, group_id) VALUES ('alice', 'g-1')",
            [],
        )
        .unwrap();
    }
    let c = Cache::open(&path, &k).unwrap();
    assert_eq!(c.schema_version().unwrap(), cache::SCHEMA_VERSION);
    const { assert!(cache::SCHEMA_VERSION >= 5) };
    let a = c.account("alice").unwrap().unwrap();
    assert_eq!(
        (
            a.display_name.as_str(),
            a.role,
            a.failed_count,
            a.must_change_passphrase,
            a.created_at.as_str()
        ),
        (
            "Alice",
            Role::Clinician,
            2,
            false,
            "2026-01-01T00:00:00.000Z"
        )
    );
    drop(c);
    let conn = raw_conn(&path, &k);
    let (practitioner, groups): (String, i64) = conn
        .query_row(
            "SELECT practitioner_id, (SELECT count(*) FROM account_groups) FROM accounts",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((practitioner.as_str(), groups), ("pr-1", 1));
    drop(conn);
    let c = Cache::open(&path, &k).unwrap();
    // The failures carried over count towards the schedule: the 4th locks.
    let p = LockoutPolicy::default();
    assert_eq!(
        c.authenticate("alice", "wrong passphrase!", T0, &p)
            .unwrap(),
        LoginResult::WrongPassphrase { locked_until: None }
    );
    assert_eq!(
        c.authenticate("alice", "wrong passphrase!", T0 + 1, &p)
            .unwrap(),
        LoginResult::WrongPassphrase {
            locked_until: Some(T0 + 1 + 30 * SEC)
        }
    );
}
