//! End to end: the real app window under Xvfb, driven through tauri-driver and
//! WebKitWebDriver. One WebDriver session on the demo (`--demo`) walks the care manager,
//! privacy officer and clinician flows in order, since the driver ports are fixed, then a
//! care manager syncing the workstation from a running EDW (offline and back), then the
//! administrator managing accounts; last, a normal start of a new installation creates its
//! first administrator.

#[path = "support/edw.rs"]
mod edw_support;
#[path = "support/window.rs"]
mod window;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};
use serde_json::json;
use sha2::Digest;
use window::{choose_purpose, launch_app, start_driver, start_xvfb, submit_login};

const DRIVER_PORT: u16 = 4444;

/// The text of every element matching `css`, read in one script so a list
/// re-rendering between WebDriver calls cannot leave a stale reference.
async fn texts(c: &Client, css: &str) -> Vec<String> {
    let v = c
        .execute(
            "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.textContent)",
            vec![json!(css)],
        )
        .await
        .unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap_or_default().to_string())
        .collect()
}

/// The text of the first element matching `css`, or "" while there is none (commands
/// run off the UI thread, so an answer may render after the next WebDriver call).
async fn text(c: &Client, css: &str) -> String {
    texts(c, css).await.into_iter().next().unwrap_or_default()
}

/// Polls until `check` holds, or fails with `what`.
async fn until<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    until_for(what, Duration::from_secs(60), check).await
}

/// [`until`] with its own time limit.
async fn until_for<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

async fn sign_in(c: &Client, user: &str, purpose: &str) {
    submit_login(c, user, &format!("demo-{user}")).await;
    choose_purpose(c, purpose).await;
    c.wait().for_element(Locator::Css("#logout")).await.unwrap();
}

async fn sign_out(c: &Client) {
    c.find(Locator::Css("#logout"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .for_element(Locator::Css("#login-user"))
        .await
        .unwrap();
}

async fn screenshot(c: &Client, dir: &Path, name: &str) {
    // Two frames, so the picture shows the latest DOM rather than the previous paint.
    let _ = c
        .execute_async(
            "requestAnimationFrame(() => requestAnimationFrame(() => arguments[0]()))",
            vec![],
        )
        .await;
    if let Ok(Ok(png)) = tokio::time::timeout(Duration::from_secs(20), c.screenshot()).await {
        std::fs::write(dir.join(name), png).unwrap();
    }
}

/// Filters the worklist by measure, logs outreach on a row, records closure evidence that
/// meets the measure and sees the row close.
async fn care_manager_works_the_worklist(c: &Client, shots: &Path) {
    c.wait()
        .for_element(Locator::Css("#worklist-view"))
        .await
        .unwrap();
    until("worklist rows", || async {
        !texts(c, ".worklist-row[data-key]").await.is_empty()
    })
    .await;
    let measure = "BreastCancerScreeningFHIR";
    c.wait()
        .for_element(Locator::Css(&format!(
            "#worklist-measure option[value='{measure}']"
        )))
        .await
        .unwrap();
    c.find(Locator::Css("#worklist-measure"))
        .await
        .unwrap()
        .select_by_value(measure)
        .await
        .unwrap();
    let measure_of_rows = || async {
        c.execute(
            "return Array.from(document.querySelectorAll('.worklist-row[data-key]')).map(e => e.dataset.measureId)",
            vec![],
        )
        .await
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect::<Vec<_>>()
    };
    until("measure filter", || async {
        let m = measure_of_rows().await;
        !m.is_empty() && m.iter().all(|x| x == measure)
    })
    .await;
    let key = c
        .execute(
            "return document.querySelector('.worklist-row[data-key]').dataset.key",
            vec![],
        )
        .await
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    let row = format!(".worklist-row[data-key='{key}']");
    let click = |css: String| async move {
        c.find(Locator::Css(&css))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    };

    // Log a call on the row.
    click(row.clone()).await;
    click("#action-outreach".into()).await;
    click("#action-submit".into()).await;
    until("outreach saved", || async {
        text(c, "#action-message").await.starts_with("Saved")
    })
    .await;
    until("the row shows the call", || async {
        texts(c, &format!("{row} .c-outreach"))
            .await
            .iter()
            .any(|t| t.contains("call"))
    })
    .await;

    // Record the mammography done elsewhere: the evidence meets the measure and the row closes.
    click(row.clone()).await;
    until("closure form available", || async {
        c.execute(
            "return !document.querySelector('#action-closure').disabled",
            vec![],
        )
        .await
        .unwrap()
            == json!(true)
    })
    .await;
    click("#action-closure".into()).await;
    c.wait()
        .for_element(Locator::Css("#closure-code option"))
        .await
        .unwrap();
    c.execute(
        "const pick = (id, v) => { const e = document.getElementById(id); e.value = v; e.dispatchEvent(new Event('change', { bubbles: true })); e.dispatchEvent(new Event('input', { bubbles: true })); };\
         const req = Array.from(document.querySelectorAll('#closure-requirement option')).find(o => o.textContent.startsWith('Mammography'));\
         pick('closure-requirement', req.value);",
        vec![],
    )
    .await
    .unwrap();
    c.wait()
        .for_element(Locator::Css("#closure-code option"))
        .await
        .unwrap();
    c.execute(
        "const pick = (id, v) => { const e = document.getElementById(id); e.value = v; e.dispatchEvent(new Event('change', { bubbles: true })); e.dispatchEvent(new Event('input', { bubbles: true })); };\
         pick('closure-date', '2025-06-01');\
         pick('closure-category', 'imaging');",
        vec![],
    )
    .await
    .unwrap();
    screenshot(c, shots, "worklist.png").await;
    click("#action-submit".into()).await;
    until("closure recorded", || async {
        text(c, "#action-message").await.contains("closed")
    })
    .await;
    until("the row left the open worklist", || async {
        c.execute(
            "return document.querySelector(arguments[0]) === null",
            vec![json!(row)],
        )
        .await
        .unwrap()
            == json!(true)
    })
    .await;
}

/// Runs a blocking EDW call off the async test body (the `postgres` client starts its own
/// runtime).
fn blocking<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| s.spawn(f).join().unwrap())
}

/// Sign in, point the app at the EDW, sync, see the synced panel and its worklist, take an
/// action with the server down, reconnect, and see the EDW acknowledge it exactly once.
async fn care_manager_syncs_from_the_edw(
    c: &Client,
    data_dir: &Path,
    shots: &Path,
    edw: &mut edw_support::Edw,
) {
    sign_in(c, "caremanager", "TREAT").await;
    // The app made its key pair and wrote the public key set beside its cache.
    let jwks = data_dir.join(workstation_jwks_file());
    until("the public key set is written", || async { jwks.exists() }).await;
    let client_id = blocking(|| edw.register(&jwks));
    blocking(|| edw.start_server());

    let click = |css: &'static str| async move {
        c.find(Locator::Css(css))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    };
    click("#nav-sync").await;
    c.wait()
        .for_element(Locator::Css("#sync-settings"))
        .await
        .unwrap();
    // The screen has its status (and the stored settings) before anything is typed.
    until("the sync screen's status", || async {
        !text(c, "#sync-state").await.is_empty()
    })
    .await;
    c.execute(
        "const set = (id, v) => { const e = document.getElementById(id); e.value = v; e.dispatchEvent(new Event('input', { bubbles: true })); };\
         set('sync-server', arguments[0]); set('sync-client-id', arguments[1]); set('sync-ca', arguments[2]); set('sync-interval', '0');",
        vec![json!(edw.url()), json!(client_id), json!(edw.cert_pem())],
    )
    .await
    .unwrap();
    click("#sync-save").await;
    until("settings saved", || async {
        text(c, "#sync-note").await == "Settings saved."
    })
    .await;
    until("the settings in effect", || async {
        text(c, "#sync-state").await.starts_with("Last synced")
    })
    .await;
    click("#sync-now").await;
    let seen = std::sync::Mutex::new(String::new());
    until_for("the first sync", Duration::from_secs(300), || async {
        let state = text(c, "#sync-state").await;
        let mut last = seen.lock().unwrap();
        if state != *last {
            eprintln!("sync state: {state}");
            *last = state.clone();
        }
        state.starts_with("Last synced") && !state.contains("never")
    })
    .await;
    assert!(
        texts(c, "#sync-error").await.is_empty(),
        "sync error: {:?}",
        texts(c, "#sync-error").await
    );
    screenshot(c, shots, "sync.png").await;

    // The panel is the EDW's: every patient shown is a member of the granted panels.
    let members = blocking(|| edw.members());
    click("#nav-panel").await;
    c.wait()
        .for_element(Locator::Css(".panel-row[data-patient-id]"))
        .await
        .unwrap();
    let ids = c
        .execute(
            "return Array.from(document.querySelectorAll('.panel-row[data-patient-id]')).map(e => e.dataset.patientId)",
            vec![],
        )
        .await
        .unwrap();
    let ids: Vec<String> = ids
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert!(!ids.is_empty());
    for id in &ids {
        assert!(
            members.contains(id),
            "patient {id} is not in the EDW's panels"
        );
    }

    // Its worklist, evaluated locally from the synced data.
    click("#nav-worklist").await;
    until_for(
        "worklist rows after the sync",
        Duration::from_secs(120),
        || async { !texts(c, ".worklist-row[data-key]").await.is_empty() },
    )
    .await;

    // Offline: the action is taken and kept.
    blocking(|| edw.stop_server());
    let key = c
        .execute(
            "return document.querySelector('.worklist-row[data-key]').dataset.key",
            vec![],
        )
        .await
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    c.find(Locator::Css(&format!(".worklist-row[data-key='{key}']")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    click("#action-outreach").await;
    click("#action-submit").await;
    until("outreach saved offline", || async {
        text(c, "#action-message").await.starts_with("Saved")
    })
    .await;
    click("#nav-sync").await;
    c.wait()
        .for_element(Locator::Css("#sync-now"))
        .await
        .unwrap();
    click("#sync-now").await;
    until_for("offline shown", Duration::from_secs(60), || async {
        text(c, "#sync-state").await.starts_with("Offline")
    })
    .await;
    assert!(text(c, "#sync-pending").await.starts_with("1 action"));
    assert!(text(c, "#sync-chip").await.contains("Offline"));
    assert!(blocking(|| edw.action_ids()).is_empty());

    // Back online: the action reaches the EDW exactly once.
    blocking(|| edw.start_server());
    click("#sync-now").await;
    until_for(
        "the action acknowledged",
        Duration::from_secs(120),
        || async {
            text(c, "#sync-pending").await.starts_with("0 actions")
                && text(c, "#sync-state").await.starts_with("Last synced")
        },
    )
    .await;
    assert_eq!(blocking(|| edw.action_ids()).len(), 1);
    sign_out(c).await;
}

/// The quality analyst's dashboard: a row per measure and group, the chart drawn in Rust,
/// a number opening the patients behind it, and one of them opening a timeline.
async fn quality_analyst_reads_the_dashboard(c: &Client, shots: &Path) {
    sign_in(c, "quality", "HOPERAT").await;
    c.find(Locator::Css("#nav-dashboard"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until_for("dashboard rows", Duration::from_secs(120), || async {
        !texts(c, "#dashboard-measures tbody tr").await.is_empty()
    })
    .await;
    assert!(
        c.execute(
            "return document.querySelector('#dashboard-chart svg') !== null",
            vec![]
        )
        .await
        .unwrap()
            == json!(true),
        "the chart is an SVG"
    );
    // The first row's initial population with patients in it.
    let clicked = c
        .execute(
            "const b = Array.from(document.querySelectorAll('#dashboard-measures tbody tr td.num button'))               .find(b => Number(b.textContent) > 0); b.click(); return b.textContent;",
            vec![],
        )
        .await
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    until("the patients behind the number", || async {
        text(c, "#dashboard-patients-title")
            .await
            .contains(&format!(": {clicked} patient"))
    })
    .await;
    screenshot(c, shots, "dashboard.png").await;
    c.execute(
        "document.querySelector('#dashboard-patients tbody button').click()",
        vec![],
    )
    .await
    .unwrap();
    c.wait()
        .for_element(Locator::Css("#timeline-events li.event"))
        .await
        .unwrap();

    // A measure's detail: a provider's bar lists that provider's patients; one opens a timeline.
    c.find(Locator::Css("#nav-dashboard"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until_for("dashboard rows again", Duration::from_secs(60), || async {
        !texts(c, "#dashboard-measures tbody tr").await.is_empty()
    })
    .await;
    c.execute(
        "document.querySelector('#dashboard-measures tbody tr th button').click()",
        vec![],
    )
    .await
    .unwrap();
    until_for("a provider chart with bars", Duration::from_secs(60), || async {
        c.execute(
            "return document.querySelector('figure[data-chart-kind=\"provider\"] rect[data-bar]') !== null",
            vec![],
        )
        .await
        .unwrap()
            == json!(true)
    })
    .await;
    c.execute(
        "document.querySelector('figure[data-chart-kind=\"provider\"] rect[data-bar]')\
           .dispatchEvent(new MouseEvent('click', { bubbles: true }))",
        vec![],
    )
    .await
    .unwrap();
    until("the provider's patients", || async {
        text(c, "#dashboard-patients-title")
            .await
            .contains("Denominator")
    })
    .await;
    screenshot(c, shots, "dashboard-provider.png").await;
    c.execute(
        "document.querySelector('#dashboard-patients tbody button').click()",
        vec![],
    )
    .await
    .unwrap();
    c.wait()
        .for_element(Locator::Css("#timeline-events li.event"))
        .await
        .unwrap();

    // The QRDA III report for the 2025 program: written whole, its SHA-256 shown, and the
    // file valid for the CMS schematron.
    c.find(Locator::Css("#nav-exports"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .for_element(Locator::Css("#export-form"))
        .await
        .unwrap();
    let out = shots.join("qrda3-2025.xml");
    let _ = std::fs::remove_file(&out);
    c.execute(
        "const set = (id, v) => { const e = document.getElementById(id); e.value = v; e.dispatchEvent(new Event('change', { bubbles: true })); e.dispatchEvent(new Event('input', { bubbles: true })); };\
         set('export-kind', 'qrda3'); set('export-program-year', '2025'); set('export-path', arguments[0]);",
        vec![json!(out.to_string_lossy())],
    )
    .await
    .unwrap();
    c.find(Locator::Css("#export-run"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until_for("the export", Duration::from_secs(120), || async {
        !text(c, "#export-result-sha256").await.is_empty()
            || !text(c, "#export-error").await.is_empty()
    })
    .await;
    assert_eq!(text(c, "#export-error").await, "");
    let bytes = std::fs::read(&out).unwrap();
    let sha: String = sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(text(c, "#export-result-sha256").await, sha);
    let validate = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/qrda/validate");
    if validate.exists() {
        let v = std::process::Command::new(&validate)
            .args(["--year", "2025"])
            .arg(&out)
            .output()
            .unwrap();
        let report = String::from_utf8_lossy(&v.stdout);
        assert!(
            report.trim_end().ends_with("1 passed, 0 failed"),
            "QRDA III from the app: {report}"
        );
    }
    screenshot(c, shots, "exports.png").await;
    sign_out(c).await;
}

fn workstation_jwks_file() -> &'static str {
    "workstation-jwks.json"
}

/// Sets a `<select>` (single or multiple) the way a user's choice does: the chosen options
/// selected and a `change` event (which Svelte's `bind:value` listens to).
async fn choose(c: &Client, css: &str, values: &[&str]) {
    c.execute(
        "const s = document.querySelector(arguments[0]);\
         for (const o of s.options) o.selected = arguments[1].includes(o.value);\
         s.dispatchEvent(new Event('change', { bubbles: true }));",
        vec![json!(css), json!(values)],
    )
    .await
    .unwrap();
}

/// Brings the element of `css` into the middle of its scrolling view (a form below a long
/// table is out of sight otherwise) and returns it.
async fn in_view(c: &Client, css: &str) -> fantoccini::elements::Element {
    let el = c.wait().for_element(Locator::Css(css)).await.unwrap();
    c.execute(
        "arguments[0].scrollIntoView({ block: 'center' });",
        vec![serde_json::to_value(&el).unwrap()],
    )
    .await
    .unwrap();
    el
}

async fn type_into(c: &Client, css: &str, value: &str) {
    let field = in_view(c, css).await;
    field.clear().await.unwrap();
    field.send_keys(value).await.unwrap();
}

async fn click(c: &Client, css: &str) {
    in_view(c, css).await.click().await.unwrap();
}

async fn hidden(c: &Client, css: &str) -> bool {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .attr("hidden")
        .await
        .unwrap()
        .is_some()
}

const NEW_USER_TEMPORARY: &str = "Harbor-lantern-quietly-91";
const NEW_USER_OWN: &str = "Copper kettle sings at dawn 4";

/// The demo administrator creates a care manager linked to one care team; the new user must
/// choose their own passphrase at first sign-in and then sees only that team's patients; a
/// disabled account cannot sign in; the privacy officer finds each step in the audit trail.
async fn administrator_manages_accounts(c: &Client, shots: &Path) {
    // No purpose of use: the administrator sees no patient data.
    submit_login(c, "administrator", "demo-administrator").await;
    c.wait()
        .for_element(Locator::Css("#accounts-table"))
        .await
        .unwrap();
    for tab in [
        "#nav-panel",
        "#nav-worklist",
        "#nav-dashboard",
        "#nav-audit",
        "#nav-exports",
    ] {
        assert!(hidden(c, tab).await, "{tab} hidden from the administrator");
    }
    assert!(
        c.find(Locator::Css("#demo-marker")).await.is_ok(),
        "demo mode is marked on every screen"
    );

    type_into(c, "#new-user", "cm.new").await;
    type_into(c, "#new-name", "Casey New").await;
    choose(c, "#new-role", &["care_manager"]).await;
    c.wait()
        .for_element(Locator::Css("#new-teams"))
        .await
        .unwrap();
    let team: (String, String) = {
        let v = c
            .execute(
                "const o = document.querySelector('#new-teams').options[0]; return [o.value, o.textContent];",
                vec![],
            )
            .await
            .unwrap();
        (
            v[0].as_str().unwrap().to_string(),
            v[1].as_str().unwrap().to_string(),
        )
    };
    choose(c, "#new-teams", &[&team.0]).await;
    type_into(c, "#new-pass", NEW_USER_TEMPORARY).await;
    click(c, "#new-submit").await;
    until("account created", || async {
        text(c, "#accounts-message").await.contains("cm.new")
    })
    .await;
    let row = text(c, "tr[data-account='cm.new'] .state").await;
    assert!(row.contains("must change passphrase"), "{row}");
    screenshot(c, shots, "accounts.png").await;
    sign_out(c).await;

    // The new care manager: the temporary passphrase works once, to choose their own.
    submit_login(c, "cm.new", NEW_USER_TEMPORARY).await;
    c.wait()
        .for_element(Locator::Css("#change-pass-forced"))
        .await
        .unwrap();
    type_into(c, "#change-current", NEW_USER_TEMPORARY).await;
    type_into(c, "#change-new", NEW_USER_OWN).await;
    type_into(c, "#change-new2", NEW_USER_OWN).await;
    click(c, "#change-submit").await;
    choose_purpose(c, "TREAT").await;
    c.wait().for_element(Locator::Css("#logout")).await.unwrap();
    click(c, "#nav-panel").await;
    until("panel total", || async {
        let t = text(c, "#panel-total").await;
        !t.is_empty() && !t.starts_with("Loading")
    })
    .await;
    let total: u64 = text(c, "#panel-total")
        .await
        .split(' ')
        .next()
        .unwrap()
        .replace(',', "")
        .parse()
        .unwrap();
    let team_size: u64 = team
        .1
        .rsplit(" · ")
        .next()
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.replace(',', "").parse().ok())
        .unwrap_or_else(|| panic!("team label with its size: {}", team.1));
    assert_eq!(total, team_size, "only the care team's patients");
    assert!(total > 0 && total < 400);
    sign_out(c).await;

    // The administrator disables the account: it can no longer sign in.
    submit_login(c, "administrator", "demo-administrator").await;
    click(c, "tr[data-account='cm.new'] [data-act='disable']").await;
    until("account disabled", || async {
        text(c, "tr[data-account='cm.new'] .state")
            .await
            .starts_with("disabled")
    })
    .await;
    sign_out(c).await;
    submit_login(c, "cm.new", NEW_USER_OWN).await;
    until("disabled account refused", || async {
        text(c, "#login-error").await.contains("disabled")
    })
    .await;
    c.find(Locator::Css("#login-user"))
        .await
        .unwrap()
        .clear()
        .await
        .unwrap();

    // The privacy officer finds each step: created, passphrase changed, disabled, refused.
    sign_in(c, "privacy", "HOPERAT").await;
    c.wait()
        .for_element(Locator::Css("#audit-table"))
        .await
        .unwrap();
    until("account changes in the audit trail", || async {
        let details = texts(c, "tr.audit-row[data-action='manage_accounts']").await;
        let logins = texts(c, "tr.audit-row[data-action='login']").await;
        details.iter().any(|d| d.contains("created account cm.new"))
            && details.iter().any(|d| d.contains("changed own passphrase"))
            && details
                .iter()
                .any(|d| d.contains("disabled account cm.new"))
            && logins
                .iter()
                .any(|d| d.contains("cm.new") && d.contains("disabled"))
    })
    .await;
    sign_out(c).await;
}

/// A normal start of a new installation: no account, no patient, no demo marker; the
/// first-run screen creates the administrator (a weak passphrase is refused in plain words).
async fn first_run_creates_the_administrator(shots: &Path) {
    const PORT: u16 = DRIVER_PORT + 10;
    let data_dir = tempfile::tempdir().unwrap();
    let _driver = start_driver(PORT, data_dir.path(), 400);
    let c = launch_app(PORT, env!("CARGO_BIN_EXE_phm-workstation"), &[]).await;
    c.wait()
        .at_most(Duration::from_secs(60))
        .for_element(Locator::Css("#first-run-form"))
        .await
        .unwrap();
    assert!(c.find(Locator::Css("#demo-marker")).await.is_err());
    type_into(&c, "#first-user", "it.admin").await;
    type_into(&c, "#first-name", "Morgan Admin").await;
    type_into(&c, "#first-pass", "passwordpassword").await;
    type_into(&c, "#first-pass2", "passwordpassword").await;
    click(&c, "#first-submit").await;
    until("weak passphrase refused", || async {
        text(&c, "#first-error")
            .await
            .to_lowercase()
            .contains("passphrase")
    })
    .await;
    type_into(&c, "#first-pass", NEW_USER_OWN).await;
    type_into(&c, "#first-pass2", NEW_USER_OWN).await;
    click(&c, "#first-submit").await;
    c.wait()
        .for_element(Locator::Css("#login-user"))
        .await
        .unwrap();
    assert!(c.find(Locator::Css("#demo-accounts")).await.is_err());
    // No demo account exists.
    submit_login(&c, "caremanager", "demo-caremanager").await;
    until("no demo account", || async {
        !text(&c, "#login-error").await.is_empty()
    })
    .await;
    c.find(Locator::Css("#login-user"))
        .await
        .unwrap()
        .clear()
        .await
        .unwrap();
    submit_login(&c, "it.admin", NEW_USER_OWN).await;
    c.wait()
        .for_element(Locator::Css("#accounts-table"))
        .await
        .unwrap();
    until("only the administrator", || async {
        texts(&c, "#accounts-table tbody tr").await.len() == 1
    })
    .await;
    screenshot(&c, shots, "first-run-accounts.png").await;
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn care_manager_privacy_officer_and_clinician_flows() {
    let _xvfb = start_xvfb();
    // The EDW loads while the app generates its demo panel.
    let edw_loading = std::thread::spawn(|| edw_support::Edw::load(300));
    let data_dir = tempfile::tempdir().unwrap();
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("e2e");
    std::fs::create_dir_all(&shots).unwrap();

    let driver = start_driver(DRIVER_PORT, data_dir.path(), 400);
    let c = launch_app(
        DRIVER_PORT,
        env!("CARGO_BIN_EXE_phm-workstation"),
        &["--demo"],
    )
    .await;

    // First launch: the demo panel is generated into the encrypted cache, then sign-in shows.
    c.wait()
        .at_most(Duration::from_secs(120))
        .for_element(Locator::Css("#login-user"))
        .await
        .unwrap();

    // A wrong passphrase is refused in plain words.
    submit_login(&c, "caremanager", "wrong").await;
    until("login error", || async {
        !text(&c, "#login-error").await.is_empty()
    })
    .await;
    assert!(text(&c, "#login-error")
        .await
        .to_lowercase()
        .contains("passphrase"));
    c.find(Locator::Css("#login-user"))
        .await
        .unwrap()
        .clear()
        .await
        .unwrap();

    // Care manager: the worklist first (gaps evaluated locally after the demo import).
    sign_in(&c, "caremanager", "TREAT").await;
    care_manager_works_the_worklist(&c, &shots).await;

    // Then the panel: the patients of the care teams assigned to her, not all 400.
    c.find(Locator::Css("#nav-panel"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .for_element(Locator::Css(".panel-row[data-patient-id]"))
        .await
        .unwrap();
    until("panel total", || async {
        !text(&c, "#panel-total").await.starts_with("Loading")
    })
    .await;
    let total_all = text(&c, "#panel-total").await;
    let shown: u64 = total_all
        .split(' ')
        .next()
        .unwrap()
        .replace(',', "")
        .parse()
        .unwrap();
    assert!(
        shown > 0 && shown < 400,
        "her care teams' patients only: {total_all}"
    );

    c.find(Locator::Css("#filter-sex"))
        .await
        .unwrap()
        .select_by_value("female")
        .await
        .unwrap();
    until("female filter", || async {
        let t = text(&c, "#panel-total").await;
        t != total_all && !t.starts_with("Loading")
    })
    .await;
    for sex in texts(&c, ".panel-row[data-patient-id] .c-sex").await {
        assert_eq!(sex, "female");
    }
    let name = texts(&c, ".panel-row[data-patient-id] .c-name").await[0].clone();
    let family: String = name
        .split([',', ' '])
        .next()
        .unwrap()
        .chars()
        .take(4)
        .collect();
    c.find(Locator::Css("#filter-name"))
        .await
        .unwrap()
        .send_keys(&family)
        .await
        .unwrap();
    until("name filter", || async {
        let names = texts(&c, ".panel-row[data-patient-id] .c-name").await;
        !names.is_empty()
            && names
                .iter()
                .all(|n| n.to_lowercase().contains(&family.to_lowercase()))
    })
    .await;
    screenshot(&c, &shots, "panel.png").await;

    let ids = c
        .execute(
            "return Array.from(document.querySelectorAll('.panel-row[data-patient-id]')).map(e => [e.dataset.patientId, e.querySelector('.c-name').textContent])",
            vec![],
        )
        .await
        .unwrap();
    let patient_id = ids[0][0].as_str().unwrap().to_string();
    let row_name = ids[0][1].as_str().unwrap().to_string();
    c.find(Locator::Css(&format!(
        ".panel-row[data-patient-id='{patient_id}']"
    )))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    c.wait()
        .for_element(Locator::Css("#timeline-events li.event"))
        .await
        .unwrap();
    assert_eq!(text(&c, "#timeline-name").await, row_name);
    assert!(!texts(&c, "#timeline-events li.event").await.is_empty());
    screenshot(&c, &shots, "timeline.png").await;
    sign_out(&c).await;

    // Privacy officer: finds that access in the audit trail, and the chain verifies.
    sign_in(&c, "privacy", "HOPERAT").await;
    c.wait()
        .for_element(Locator::Css("#audit-table"))
        .await
        .unwrap();
    assert!(c
        .find(Locator::Css("#nav-panel"))
        .await
        .unwrap()
        .attr("hidden")
        .await
        .unwrap()
        .is_some());
    c.find(Locator::Css("#audit-patient"))
        .await
        .unwrap()
        .send_keys(&patient_id)
        .await
        .unwrap();
    c.find(Locator::Css("#audit-search"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until("audit rows for the patient", || async {
        let users = texts(&c, "tr.audit-row[data-action='view_timeline'] .audit-user").await;
        let patients = texts(
            &c,
            "tr.audit-row[data-action='view_timeline'] .audit-patients",
        )
        .await;
        users
            .iter()
            .zip(&patients)
            .any(|(u, p)| u == "caremanager" && p.contains(&patient_id))
    })
    .await;
    c.find(Locator::Css("#audit-verify"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until("chain verified", || async {
        text(&c, "#audit-verify-result")
            .await
            .starts_with("Chain intact")
    })
    .await;
    screenshot(&c, &shots, "audit.png").await;
    sign_out(&c).await;

    // Clinician: no audit screen and no exports, and Rust refuses both even when called
    // directly.
    sign_in(&c, "clinician", "TREAT").await;
    assert!(c
        .find(Locator::Css("#nav-exports"))
        .await
        .unwrap()
        .attr("hidden")
        .await
        .unwrap()
        .is_some());
    let refused = c
        .execute_async(
            "window.__TAURI_INTERNALS__.invoke('export_report', { request: { kind: 'qrda3', programYear: 2025, measurementYear: null, measures: [], savedView: null, worklist: null, path: '/tmp/should-not-exist.xml' } })\
               .then(() => arguments[0]('allowed'), (e) => arguments[0](e.code))",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        refused.as_str(),
        Some("denied"),
        "a clinician cannot export"
    );
    assert!(!Path::new("/tmp/should-not-exist.xml").exists());
    assert!(c
        .find(Locator::Css("#nav-audit"))
        .await
        .unwrap()
        .attr("hidden")
        .await
        .unwrap()
        .is_some());
    let refused = c
        .execute_async(
            "window.__TAURI_INTERNALS__.invoke('audit_list', { filter: { user: null, patientId: null, action: null, outcome: null, from: null, to: null, limit: 10 } })\
               .then(() => arguments[0]('allowed'), (e) => arguments[0](e.code + ': ' + e.message))",
            vec![],
        )
        .await
        .unwrap();
    let refused = refused.as_str().unwrap().to_string();
    assert!(
        refused.starts_with("denied: "),
        "clinician refused the audit trail: {refused}"
    );
    // Only the clinician's own attributed patients, on the panel and on the worklist.
    c.find(Locator::Css("#nav-panel"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .for_element(Locator::Css(".panel-row[data-patient-id] .c-provider"))
        .await
        .unwrap();
    let providers = texts(&c, ".panel-row[data-patient-id] .c-provider").await;
    assert!(!providers.is_empty());
    assert!(
        providers.iter().all(|p| *p == providers[0]),
        "one provider: {providers:?}"
    );
    let outsider = c
        .execute_async(
            "window.__TAURI_INTERNALS__.invoke('patient_timeline', { patientId: 'not-mine' })\
               .then(() => arguments[0]('allowed'), (e) => arguments[0](e.code))",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(outsider.as_str(), Some("outside_panel"));
    sign_out(&c).await;

    quality_analyst_reads_the_dashboard(&c, &shots).await;

    let mut edw = edw_loading.join().unwrap();
    care_manager_syncs_from_the_edw(&c, data_dir.path(), &shots, &mut edw).await;

    administrator_manages_accounts(&c, &shots).await;

    c.close().await.unwrap();
    drop(driver);

    first_run_creates_the_administrator(&shots).await;
}
