//! Every command × every role against a real SQLCipher cache: allowed or
//! refused exactly as the role matrix says, and one audit record per call.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use access::{Action, Role};
use cache::{Cache, CacheKey};
use workstation::{
    demo_passphrase, AccountChange, ActionRequest, AuditFilter, Config, GapRef, NewAccount,
    PanelQuery, WorklistAction, WorklistQuery, Workstation, WsError, DEMO_ACCOUNTS,
};

struct Fixture {
    ws: Workstation,
    now: Arc<AtomicI64>,
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    key: CacheKey,
}

fn fixture(patients: u64) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.db");
    let key = CacheKey::generate().unwrap();
    let cache = Cache::open(&path, &key).unwrap();
    let mut config = Config::new(dir.path());
    config.demo = true;
    config.demo_patients = patients;
    config.idle_timeout = Duration::from_secs(15 * 60);
    let now = Arc::new(AtomicI64::new(1_800_000_000_000));
    let clock = now.clone();
    let ws = Workstation::with_cache(
        cache,
        &config,
        &|_| {},
        Box::new(move || clock.load(Ordering::SeqCst)),
    )
    .unwrap();
    Fixture {
        ws,
        now,
        _dir: dir,
        path,
        key,
    }
}

fn user_for(role: Role) -> &'static str {
    DEMO_ACCOUNTS.iter().find(|(_, _, r)| *r == role).unwrap().0
}

fn sign_in(ws: &Workstation, role: Role) {
    let user = user_for(role);
    ws.login(user, &demo_passphrase(user)).unwrap();
    ws.set_purpose("TREAT").unwrap();
}

/// Audit rows, read straight from the cache file (not through a command).
fn audit_rows(f: &Fixture) -> Vec<access::AuditRecord> {
    let c = Cache::open(&f.path, &f.key).unwrap();
    let mut rows = c
        .audit_list(&cache::AuditFilter {
            limit: Some(10_000),
            ..Default::default()
        })
        .unwrap();
    rows.sort_by_key(|r| r.seq);
    rows
}

type Call = fn(&Workstation, &str) -> Result<(), WsError>;

/// A temporary passphrase the strength check accepts.
const TEMPORARY: &str = "Harbor-lantern-quietly-91";

/// Every data and account command of the app, with the action it is checked against.
const COMMANDS: [(&str, Action, Call); 20] = [
    ("value_set_codes", Action::ViewWorklist, |ws, _| {
        ws.value_set_codes(
            "http://cts.nlm.nih.gov/fhir/ValueSet/2.16.840.1.113883.3.464.1003.108.12.1018",
            "",
        )
        .map(drop)
    }),
    ("set_measurement_period", Action::ViewWorklist, |ws, _| {
        ws.set_measurement_period("data")
    }),
    ("worklist", Action::ViewWorklist, |ws, _| {
        ws.worklist(&WorklistQuery::default()).map(drop)
    }),
    ("worklist_facets", Action::ViewWorklist, |ws, _| {
        ws.worklist_facets().map(drop)
    }),
    ("save_worklist_view", Action::ViewWorklist, |ws, _| {
        ws.save_worklist_view("Mine", &WorklistQuery::default())
    }),
    ("delete_worklist_view", Action::ViewWorklist, |ws, _| {
        ws.delete_worklist_view("Mine")
    }),
    ("patient_gaps", Action::ViewTimeline, |ws, id| {
        ws.patient_gaps(id).map(drop)
    }),
    ("worklist_action", Action::UpdateWorklist, |ws, id| {
        // A gap that does not exist: allowed roles get a clear error, audited once.
        let r = ws.worklist_action(&ActionRequest {
            targets: vec![GapRef {
                patient_id: id.into(),
                measure_id: "NoSuchMeasure".into(),
                group_id: "g".into(),
            }],
            action: WorklistAction::Assign { assignee: None },
        });
        match r {
            Err(e) if e.code == "not_found" => Ok(()),
            other => other.map(drop),
        }
    }),
    ("panel_query", Action::ViewPanel, |ws, _| {
        ws.panel_query(&PanelQuery::default()).map(drop)
    }),
    ("panel_facets", Action::ViewPanel, |ws, _| {
        ws.panel_facets().map(drop)
    }),
    ("patient_timeline", Action::ViewTimeline, |ws, id| {
        ws.patient_timeline(id).map(drop)
    }),
    ("audit_list", Action::ViewAudit, |ws, _| {
        ws.audit_list(&AuditFilter::default()).map(drop)
    }),
    ("audit_verify", Action::VerifyAudit, |ws, _| {
        ws.audit_verify().map(drop)
    }),
    ("list_accounts", Action::ManageAccounts, |ws, _| {
        ws.list_accounts().map(drop)
    }),
    ("account_options", Action::ManageAccounts, |ws, _| {
        ws.account_options().map(drop)
    }),
    ("create_account", Action::ManageAccounts, |ws, _| {
        ws.create_account(&NewAccount {
            username: "table.user".into(),
            display_name: "Table User".into(),
            role: Some(Role::QualityAnalyst),
            passphrase: TEMPORARY.into(),
            ..Default::default()
        })
        .map(drop)
    }),
    ("update_account", Action::ManageAccounts, |ws, _| {
        ws.update_account(&AccountChange {
            username: "table.user".into(),
            role: Some(Role::Clinician),
            ..Default::default()
        })
        .map(drop)
    }),
    ("set_account_disabled", Action::ManageAccounts, |ws, _| {
        ws.set_account_disabled("table.user", true).map(drop)
    }),
    ("unlock_account", Action::ManageAccounts, |ws, _| {
        ws.unlock_account("table.user").map(drop)
    }),
    (
        "reset_account_passphrase",
        Action::ManageAccounts,
        |ws, _| {
            ws.reset_account_passphrase("table.user", TEMPORARY)
                .map(drop)
        },
    ),
];

fn some_patient(ws: &Workstation) -> String {
    // A patient of the demo clinician, who is in the demo care manager's panels too.
    sign_in(ws, Role::Clinician);
    let id = ws
        .panel_query(&PanelQuery {
            limit: 1,
            ..Default::default()
        })
        .unwrap()
        .rows[0]
        .id
        .clone();
    ws.logout();
    id
}

#[test]
fn every_role_and_command_follows_the_matrix_and_is_audited_once() {
    let f = fixture(25);
    let patient = some_patient(&f.ws);
    for role in Role::ALL {
        sign_in(&f.ws, role);
        for (name, action, call) in COMMANDS {
            let before = audit_rows(&f).len();
            let result = call(&f.ws, &patient);
            let rows = audit_rows(&f);
            assert_eq!(
                rows.len(),
                before + 1,
                "{name} as {role}: exactly one audit record"
            );
            let last = rows.last().unwrap();
            assert_eq!(last.action, action, "{name} as {role}");
            assert_eq!(last.user, user_for(role));
            assert_eq!(last.role, Some(role));
            if access::allows(role, action) {
                assert!(
                    result.is_ok(),
                    "{name} as {role} should be allowed: {result:?}"
                );
                let expected = if name == "worklist_action" {
                    access::Outcome::Error // the gap named does not exist
                } else {
                    access::Outcome::Allowed
                };
                assert_eq!(last.outcome, expected, "{name} as {role}");
                assert_eq!(last.purpose.map(|p| p.code()), Some("TREAT"));
            } else {
                let e = result.expect_err(&format!("{name} as {role} should be refused"));
                assert_eq!(e.code, "denied");
                assert_eq!(last.outcome, access::Outcome::Denied, "{name} as {role}");
            }
        }
        f.ws.logout();
    }
}

#[test]
fn a_timeline_records_the_patient_and_the_panel_records_the_rows_shown() {
    let f = fixture(25);
    sign_in(&f.ws, Role::CareManager);
    let page =
        f.ws.panel_query(&PanelQuery {
            limit: 5,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(page.total, 25);
    assert_eq!(page.rows.len(), 5);
    let last = audit_rows(&f).pop().unwrap();
    let shown: Vec<String> = page.rows.iter().map(|r| r.id.clone()).collect();
    assert_eq!(last.patient_ids, shown);
    assert!(last.query.as_deref().unwrap().contains("\"limit\":5"));

    let t = f.ws.patient_timeline(&shown[2]).unwrap();
    assert_eq!(t.patient_id, shown[2]);
    assert!(!t.events.is_empty());
    let dates: Vec<_> = t.events.iter().filter_map(|e| e.date.clone()).collect();
    assert!(dates.windows(2).all(|w| w[0] >= w[1]), "newest first");
    let last = audit_rows(&f).pop().unwrap();
    assert_eq!(last.action, Action::ViewTimeline);
    assert_eq!(last.patient_ids, vec![shown[2].clone()]);
}

#[test]
fn facets_list_the_panel_providers_and_conditions() {
    let f = fixture(40);
    sign_in(&f.ws, Role::Clinician);
    let facets = f.ws.panel_facets().unwrap();
    assert!(!facets.providers.is_empty());
    assert!(!facets.conditions.is_empty());
    // Every suggested condition filters to at least one patient, every provider too.
    for condition in &facets.conditions {
        let q = PanelQuery {
            condition: Some(condition.clone()),
            ..Default::default()
        };
        assert!(
            f.ws.panel_query(&q).unwrap().total > 0,
            "condition suggestion matches"
        );
    }
    let mut total = 0;
    for p in &facets.providers {
        let q = PanelQuery {
            provider: Some(p.id.clone()),
            ..Default::default()
        };
        total += f.ws.panel_query(&q).unwrap().total;
    }
    assert_eq!(
        total, 40,
        "every patient has exactly one of the listed providers"
    );
}

#[test]
fn commands_need_a_session_and_a_purpose() {
    let f = fixture(5);
    assert_eq!(
        f.ws.panel_query(&PanelQuery::default()).unwrap_err().code,
        "not_signed_in"
    );
    f.ws.login("clinician", "demo-clinician").unwrap();
    assert_eq!(
        f.ws.panel_query(&PanelQuery::default()).unwrap_err().code,
        "no_purpose"
    );
    assert_eq!(f.ws.set_purpose("NOPE").unwrap_err().code, "invalid");
    f.ws.set_purpose("TREAT").unwrap();
    assert!(f.ws.panel_query(&PanelQuery::default()).is_ok());
}

#[test]
fn idle_session_locks_and_the_refusal_is_audited() {
    let f = fixture(5);
    sign_in(&f.ws, Role::Clinician);
    f.now.fetch_add(14 * 60 * 1000, Ordering::SeqCst);
    assert!(
        f.ws.panel_query(&PanelQuery::default()).is_ok(),
        "activity within the timeout"
    );
    f.now.fetch_add(15 * 60 * 1000 + 1, Ordering::SeqCst);
    let e = f.ws.panel_query(&PanelQuery::default()).unwrap_err();
    assert_eq!(e.code, "session_locked");
    let last = audit_rows(&f).pop().unwrap();
    assert_eq!(last.outcome, access::Outcome::Denied);
    assert!(f.ws.current_session().is_none());
    assert_eq!(
        f.ws.panel_query(&PanelQuery::default()).unwrap_err().code,
        "not_signed_in"
    );
}

#[test]
fn repeated_wrong_passphrases_lock_the_account() {
    let f = fixture(0);
    for _ in 0..3 {
        assert_eq!(
            f.ws.login("caremanager", "not-the-passphrase")
                .unwrap_err()
                .code,
            "bad_credentials"
        );
    }
    // The fourth failure locks for 30 s; the fifth (after the wait) for a minute.
    assert_eq!(
        f.ws.login("caremanager", "not-the-passphrase")
            .unwrap_err()
            .code,
        "account_locked"
    );
    // Even the right passphrase is refused while locked, and says so plainly.
    let e = f.ws.login("caremanager", "demo-caremanager").unwrap_err();
    assert_eq!(e.code, "account_locked");
    assert!(e.message.contains("30 more second"), "{}", e.message);
    f.now.fetch_add(31 * 1000, Ordering::SeqCst);
    let e = f.ws.login("caremanager", "not-the-passphrase").unwrap_err();
    assert_eq!(e.code, "account_locked");
    assert!(e.message.contains("1 more minute"), "{}", e.message);
    f.now.fetch_add(61 * 1000, Ordering::SeqCst);
    assert!(f.ws.login("caremanager", "demo-caremanager").is_ok());
    let denied = audit_rows(&f)
        .iter()
        .filter(|r| r.outcome == access::Outcome::Denied)
        .count();
    assert_eq!(denied, 6);
}

#[test]
fn unknown_user_and_wrong_passphrase_read_the_same() {
    let f = fixture(0);
    let a = f.ws.login("nobody", "whatever-passphrase").unwrap_err();
    let b = f.ws.login("clinician", "whatever-passphrase").unwrap_err();
    assert_eq!(a, b);
}

#[test]
fn audit_verification_reports_an_altered_row() {
    let f = fixture(5);
    sign_in(&f.ws, Role::CareManager);
    f.ws.panel_query(&PanelQuery::default()).unwrap();
    f.ws.logout();
    sign_in(&f.ws, Role::PrivacyOfficer);
    assert!(f.ws.audit_verify().unwrap().ok);
    {
        let raw = rusqlite_open(&f);
        raw.execute("UPDATE audit SET user = 'someone-else' WHERE seq = 2", [])
            .unwrap();
    }
    let v = f.ws.audit_verify().unwrap();
    assert!(!v.ok);
    assert_eq!(v.broken_at, Some(2));
}

/// A second connection to the same encrypted file, as a tamperer with the key would have.
fn rusqlite_open(f: &Fixture) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(&f.path).unwrap();
    c.execute_batch(&format!(
        "PRAGMA key = \"x'{}'\"; PRAGMA cipher_page_size = {}; PRAGMA cipher_hmac_algorithm = {};",
        f.key.to_hex(),
        cache::PAGE_SIZE,
        cache::HMAC_ALGORITHM
    ))
    .unwrap();
    c
}

#[test]
fn errors_carry_no_patient_data() {
    let f = fixture(10);
    sign_in(&f.ws, Role::CareManager);
    let page = f.ws.panel_query(&PanelQuery::default()).unwrap();
    let name = page.rows[0].name.clone();
    // Outside a care manager's panels an unknown id reads as any other outsider.
    let e =
        f.ws.patient_timeline(&format!("{name}-missing"))
            .unwrap_err();
    assert_eq!(e.code, "outside_panel");
    assert!(!e.message.contains(&name));
    f.ws.logout();
    sign_in(&f.ws, Role::QualityAnalyst);
    let e =
        f.ws.patient_timeline(&format!("{name}-missing"))
            .unwrap_err();
    assert_eq!(e.code, "not_found");
    assert!(!e.message.contains(&name));
    let e =
        f.ws.panel_query(&PanelQuery {
            age_min: Some(50),
            age_max: Some(10),
            ..Default::default()
        })
        .unwrap_err();
    assert_eq!(e.code, "invalid");
}
