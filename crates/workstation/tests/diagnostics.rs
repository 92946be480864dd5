//! "Copy diagnostics" on a real SQLCipher cache: counts, never a patient's name or id.

mod common;

use cache::{Cache, PanelQuery};
use workstation::{diagnostics, log_dir, Config, StartupStatus};

#[test]
fn diagnostics_hold_counts_and_no_patient_data() {
    let f = common::demo_workstation(25);
    let mut config = Config::new(f.dir.path());
    config.demo = true;
    // A log file as the app writes it (codes and counts only).
    let logs = log_dir(f.dir.path());
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::write(
        logs.join("phm-workstation.2030-01-01.log"),
        "2030-01-01T00:00:00Z  INFO workstation: demo panel generated patients=25\n",
    )
    .unwrap();

    let text = diagnostics("1.2.3", &config, &StartupStatus::ready(25), Some(&f.ws));

    let other = Cache::open(&f.path, &f.key).unwrap();
    let accounts = other.list_accounts().unwrap().len();
    assert_eq!(other.account_count().unwrap(), accounts as u64);
    for expected in [
        "app version: 1.2.3\n".to_string(),
        "demo mode: yes\n".to_string(),
        "patients: 25\n".to_string(),
        format!("accounts: {accounts}\n"),
        format!("cache schema: {}\n", cache::SCHEMA_VERSION),
        "sync server set: no\n".to_string(),
        "last synced: never\n".to_string(),
        "actions waiting to sync: 0\n".to_string(),
    ] {
        assert!(
            text.contains(&expected),
            "{expected:?} missing from:\n{text}"
        );
    }
    assert!(
        text.ends_with("demo panel generated patients=25\n"),
        "{text}"
    );

    let rows = other
        .panel(&PanelQuery {
            limit: 1000,
            ..Default::default()
        })
        .unwrap()
        .rows;
    assert_eq!(rows.len(), 25);
    for r in rows {
        assert!(!text.contains(&r.patient_id), "a patient id in:\n{text}");
        assert!(!text.contains(&r.name), "a patient name in:\n{text}");
    }
}
