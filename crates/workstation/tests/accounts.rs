//! Accounts against a real SQLCipher cache: a normal start creates no account and no patient
//! and lets exactly one first administrator be created; the administrator's account commands
//! (a new care manager must choose their own passphrase first, then sees only their care
//! teams' patients; disable, reset, the administrator's own account protected); weak
//! passphrases refused in plain words; an unknown user name kept only as a keyed hash; the idle
//! lock on the monotonic clock. Every step is in the audit trail.

mod common;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use access::{Action, Outcome, Role};
use cache::{AuditFilter, Cache, CacheKey};
use common::demo_workstation;
use workstation::{demo_passphrase, AccountChange, Config, NewAccount, PanelQuery, Workstation};

const STRONG: &str = "Copper kettle sings at dawn 4";
const TEMPORARY: &str = "Harbor-lantern-quietly-91";

fn audit(path: &std::path::Path, key: &CacheKey) -> Vec<access::AuditRecord> {
    let c = Cache::open(path, key).unwrap();
    let mut rows = c
        .audit_list(&AuditFilter {
            limit: Some(10_000),
            ..Default::default()
        })
        .unwrap();
    rows.sort_by_key(|r| r.seq);
    rows
}

fn detail_of(r: &access::AuditRecord) -> String {
    r.detail.clone().unwrap_or_default()
}

#[test]
fn a_normal_start_has_no_account_and_no_patient_and_one_first_administrator() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.db");
    let key = CacheKey::generate().unwrap();
    let mut config = Config::new(dir.path());
    config.demo_patients = 50; // ignored outside demo mode
    let ws = Workstation::with_cache(
        Cache::open(&path, &key).unwrap(),
        &config,
        &|_| {},
        Box::new(access::time::now_unix_ms),
    )
    .unwrap();
    let c = Cache::open(&path, &key).unwrap();
    assert_eq!(c.account_count().unwrap(), 0);
    assert_eq!(c.patient_count().unwrap(), 0);
    let mode = ws.app_mode().unwrap();
    assert!(!mode.demo && mode.needs_first_administrator);
    assert_eq!(
        ws.login("caremanager", "demo-caremanager")
            .unwrap_err()
            .code,
        "bad_credentials",
        "no demo account outside demo mode"
    );

    // Weak passphrases are refused in plain words and create nothing.
    for weak in ["Tiny1", "passwordpassword", "qwertyuiop12"] {
        let e = ws
            .create_first_administrator("it.admin", "Morgan Admin", weak)
            .unwrap_err();
        assert_eq!(e.code, "weak_passphrase", "{weak}");
        assert!(!e.message.contains(weak), "the message never repeats it");
    }
    assert_eq!(c.account_count().unwrap(), 0);
    let mode = ws
        .create_first_administrator("it.admin", "Morgan Admin", STRONG)
        .unwrap();
    assert!(!mode.needs_first_administrator);
    assert_eq!(
        ws.create_first_administrator("second", "Second", STRONG)
            .unwrap_err()
            .code,
        "already_set_up"
    );
    let a = c.account("it.admin").unwrap().unwrap();
    assert_eq!(a.role, Role::Administrator);
    let rows = audit(&path, &key);
    assert!(rows.iter().any(|r| r.user == "it.admin"
        && r.action == Action::ManageAccounts
        && detail_of(r) == "first administrator created"));

    // The administrator sees no patient data.
    ws.login("it.admin", STRONG).unwrap();
    assert_eq!(
        ws.panel_query(&PanelQuery::default()).unwrap_err().code,
        "denied"
    );
    assert_eq!(ws.list_accounts().unwrap().len(), 1);
}

#[test]
fn demo_mode_has_its_accounts_and_no_first_administrator() {
    let f = demo_workstation(20);
    let mode = f.ws.app_mode().unwrap();
    assert!(mode.demo && !mode.needs_first_administrator);
    assert_eq!(
        f.ws.create_first_administrator("x.admin", "X", STRONG)
            .unwrap_err()
            .code,
        "demo"
    );
    // The demo keeps its own cache file: a real installation's never holds its accounts.
    let mut config = Config::new(f.dir.path());
    assert!(config.cache_path().ends_with("cache.db"));
    config.demo = true;
    assert!(config.cache_path().ends_with("demo-cache.db"));
}

#[test]
fn the_administrator_manages_a_care_manager_who_sees_only_their_care_team() {
    let f = demo_workstation(600);
    let c = Cache::open(&f.path, &f.key).unwrap();
    let team = c
        .groups()
        .unwrap()
        .into_iter()
        .filter(|g| g.size > 0)
        .min_by_key(|g| g.size)
        .unwrap();
    assert!(team.size < 600, "{team:?}");
    let ws = &f.ws;
    ws.login("administrator", &demo_passphrase("administrator"))
        .unwrap();
    let options = ws.account_options().unwrap();
    assert_eq!(options.roles.len(), Role::ALL.len());
    assert!(options.care_teams.iter().any(|t| t.id == team.id));

    // Bad requests: a weak temporary passphrase, no role, an unknown care team.
    let mut new = NewAccount {
        username: "cm.new".into(),
        display_name: "Casey New".into(),
        role: Some(Role::CareManager),
        passphrase: "cm.newcm.new1".into(),
        practitioner_id: None,
        care_teams: vec![team.id.clone()],
    };
    assert_eq!(ws.create_account(&new).unwrap_err().code, "weak_passphrase");
    new.passphrase = TEMPORARY.into();
    let no_role = NewAccount {
        role: None,
        ..new.clone()
    };
    assert_eq!(ws.create_account(&no_role).unwrap_err().code, "invalid");
    let bad_team = NewAccount {
        care_teams: vec!["no-such-team".into()],
        ..new.clone()
    };
    assert_eq!(ws.create_account(&bad_team).unwrap_err().code, "invalid");
    assert!(c.account("cm.new").unwrap().is_none());

    let row = ws.create_account(&new).unwrap();
    assert!(row.must_change_passphrase && !row.disabled);
    assert_eq!(row.care_teams, vec![team.id.clone()]);
    // The administrator's own account is protected.
    assert_eq!(
        ws.set_account_disabled("administrator", true)
            .unwrap_err()
            .code,
        "own_account"
    );
    assert_eq!(
        ws.update_account(&AccountChange {
            username: "administrator".into(),
            role: Some(Role::QualityAnalyst),
            ..Default::default()
        })
        .unwrap_err()
        .code,
        "own_account"
    );
    ws.logout();

    // First sign-in: nothing but choosing one's own passphrase.
    let s = ws.login("cm.new", TEMPORARY).unwrap();
    assert!(s.must_change_passphrase && s.permissions.is_empty());
    assert_eq!(
        ws.panel_query(&PanelQuery::default()).unwrap_err().code,
        "must_change_passphrase"
    );
    assert_eq!(
        ws.change_own_passphrase("wrong current passphrase", STRONG)
            .unwrap_err()
            .code,
        "bad_credentials"
    );
    assert_eq!(
        ws.change_own_passphrase(TEMPORARY, "qwertyuiop12")
            .unwrap_err()
            .code,
        "weak_passphrase"
    );
    assert_eq!(
        ws.change_own_passphrase(TEMPORARY, TEMPORARY)
            .unwrap_err()
            .code,
        "weak_passphrase"
    );
    let s = ws.change_own_passphrase(TEMPORARY, STRONG).unwrap();
    assert!(!s.must_change_passphrase && s.permissions.contains(&Action::ViewPanel));
    ws.set_purpose("TREAT").unwrap();
    let page = ws.panel_query(&PanelQuery::default()).unwrap();
    assert_eq!(page.total, team.size, "only the care team's patients");
    ws.logout();
    assert!(
        ws.login("cm.new", TEMPORARY).is_err(),
        "the old one is gone"
    );

    // Disabled: cannot sign in. Re-enabled and reset: must change again.
    ws.login("administrator", &demo_passphrase("administrator"))
        .unwrap();
    assert!(ws.set_account_disabled("cm.new", true).unwrap().disabled);
    ws.logout();
    assert_eq!(ws.login("cm.new", STRONG).unwrap_err().code, "disabled");
    ws.login("administrator", &demo_passphrase("administrator"))
        .unwrap();
    ws.set_account_disabled("cm.new", false).unwrap();
    let row = ws.reset_account_passphrase("cm.new", TEMPORARY).unwrap();
    assert!(row.must_change_passphrase);
    let row = ws
        .update_account(&AccountChange {
            username: "cm.new".into(),
            role: Some(Role::Clinician),
            practitioner_id: Some(String::new()),
            care_teams: Some(Vec::new()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!((row.role, row.care_teams.len()), (Role::Clinician, 0));
    ws.logout();
    assert!(
        ws.login("cm.new", TEMPORARY)
            .unwrap()
            .must_change_passphrase
    );
    ws.logout();

    // Every step is in the audit trail, with no passphrase anywhere.
    let rows = audit(&f.path, &f.key);
    let details: Vec<String> = rows
        .iter()
        .filter(|r| r.action == Action::ManageAccounts)
        .map(detail_of)
        .collect();
    for expected in [
        "created account cm.new (care_manager)",
        "changed own passphrase",
        "disabled account cm.new",
        "re-enabled account cm.new",
        "reset the passphrase of cm.new",
        "changed account cm.new: role clinician, links",
    ] {
        assert!(
            details.iter().any(|d| d == expected),
            "{expected:?} in {details:?}"
        );
    }
    assert!(details
        .iter()
        .any(|d| d.contains("refused (weak_passphrase)")));
    assert!(details.iter().any(|d| d.contains("refused (own_account)")));
    assert!(rows.iter().any(|r| r.user == "cm.new"
        && r.action == Action::Login
        && r.outcome == Outcome::Denied
        && detail_of(r) == "account disabled"));
    for r in &rows {
        let text = format!("{r:?}");
        assert!(
            !text.contains(TEMPORARY) && !text.contains(STRONG),
            "{text}"
        );
    }
}

#[test]
fn an_unknown_user_name_is_kept_only_as_a_keyed_hash() {
    let f = demo_workstation(0);
    let typed = "Correct horse battery staple";
    for _ in 0..2 {
        assert_eq!(
            f.ws.login(typed, "anything at all").unwrap_err().code,
            "bad_credentials"
        );
    }
    let rows = audit(&f.path, &f.key);
    let unknown: Vec<_> = rows
        .iter()
        .filter(|r| r.action == Action::Login && detail_of(r) == "unknown user")
        .collect();
    assert_eq!(unknown.len(), 2);
    assert_eq!(
        unknown[0].user, unknown[1].user,
        "the same name, the same label"
    );
    assert!(
        unknown[0].user.starts_with("unknown user #"),
        "{}",
        unknown[0].user
    );
    for r in &rows {
        assert!(!format!("{r:?}").contains("horse"), "{r:?}");
    }
}

#[test]
fn the_idle_lock_follows_the_monotonic_clock_not_the_wall_clock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.db");
    let key = CacheKey::generate().unwrap();
    let mut config = Config::new(dir.path());
    config.demo = true;
    config.demo_patients = 5;
    let wall = Arc::new(AtomicI64::new(1_800_000_000_000));
    let mono = Arc::new(AtomicI64::new(0));
    let (w, m) = (wall.clone(), mono.clone());
    let ws = Workstation::with_clocks(
        Cache::open(&path, &key).unwrap(),
        &config,
        &|_| {},
        Box::new(move || w.load(Ordering::SeqCst)),
        Box::new(move || m.load(Ordering::SeqCst)),
    )
    .unwrap();
    ws.login("clinician", &demo_passphrase("clinician"))
        .unwrap();
    ws.set_purpose("TREAT").unwrap();
    // The wall clock jumps a day ahead, then back: the session stays.
    wall.fetch_add(24 * 3600 * 1000, Ordering::SeqCst);
    assert!(ws.panel_query(&PanelQuery::default()).is_ok());
    wall.fetch_sub(48 * 3600 * 1000, Ordering::SeqCst);
    assert!(ws.panel_query(&PanelQuery::default()).is_ok());
    // Fifteen minutes without activity on the monotonic clock lock it.
    mono.fetch_add(15 * 60 * 1000, Ordering::SeqCst);
    assert_eq!(
        ws.panel_query(&PanelQuery::default()).unwrap_err().code,
        "session_locked"
    );
}
