//! The account rules through the crate's public re-exports, as the service
//! layer uses them: a new passphrase's strength, the lockout schedule, the
//! label of an unknown user name.

use std::time::Duration;

use access::{
    check_new_passphrase, hash_passphrase, unknown_user_label, verify_passphrase, LockoutPolicy,
    PassphraseProblem, MAX_PASSPHRASE_LEN, MIN_PASSPHRASE_LEN,
};

const T0: i64 = 1_800_000_000_000;

#[test]
fn a_checked_passphrase_hashes_and_verifies() {
    let p = "orbit walnut tuesday glacier";
    check_new_passphrase(p, &["jdoe", "Jane Doe"]).unwrap();
    let phc = hash_passphrase(p).unwrap();
    assert!(verify_passphrase(p, &phc).unwrap());
    assert_eq!((MIN_PASSPHRASE_LEN, MAX_PASSPHRASE_LEN), (12, 1024));
}

#[test]
fn every_problem_reads_as_a_sentence_without_the_passphrase() {
    let user = ["jdoe", "Jane Doe"];
    for p in [
        "Sh0rt!",
        "password1234",
        "qwertyuiop12",
        "jdoejdoejdoe",
        "Jane.Doe1234",
        "111111111111",
    ] {
        let problem = check_new_passphrase(p, &user).expect_err(p);
        let text = problem.to_string();
        assert!(text.starts_with("This passphrase is too"), "{text}");
        assert!(!text.to_lowercase().contains(&p.to_lowercase()), "{text}");
        // The serialized form (for the UI) carries no passphrase either.
        let json = serde_json::to_string(&problem).unwrap();
        assert!(!json.contains(p), "{json}");
    }
    assert!(matches!(
        check_new_passphrase(&"x".repeat(MAX_PASSPHRASE_LEN + 1), &[]),
        Err(PassphraseProblem::TooLong { .. })
    ));
}

#[test]
fn lockout_schedule_through_the_public_api() {
    let p = LockoutPolicy::default();
    let mut count = 0;
    let mut locks = Vec::new();
    for _ in 0..12 {
        let o = p.after_failure(count, T0);
        count = o.failed_count;
        locks.push(o.locked_until.map(|u| (u - T0) / 1000));
    }
    assert_eq!(
        locks,
        [
            None,
            None,
            None,
            Some(30),
            Some(60),
            Some(120),
            Some(240),
            Some(480),
            Some(960),
            Some(1920),
            Some(3600),
            Some(3600)
        ]
    );
    assert_eq!(count, 12);
    assert_eq!(p.delay_after(4), Some(Duration::from_secs(30)));
    let until = p.after_failure(3, T0).locked_until;
    assert!(p.is_locked(until, T0 + 29_999));
    assert!(!p.is_locked(until, T0 + 30_000));
    assert_eq!(p.remaining_ms(until, T0 + 10_000), 20_000);
}

#[test]
fn unknown_user_labels_are_stable_and_opaque() {
    let secret = [42u8; 32];
    let a = unknown_user_label(&secret, "correct horse battery staple");
    assert_eq!(
        a,
        unknown_user_label(&secret, "correct horse battery staple")
    );
    assert_ne!(
        a,
        unknown_user_label(&[43u8; 32], "correct horse battery staple")
    );
    assert!(a.starts_with("unknown user #"));
    assert!(!a.contains("horse"));
}
