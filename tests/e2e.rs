//! End to end: the real app window under Xvfb, driven through tauri-driver and
//! WebKitWebDriver. One WebDriver session walks the care manager, privacy
//! officer and clinician flows in order, since the driver ports are fixed.

#[path = "support/window.rs"]
mod window;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};
use serde_json::json;
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

async fn text(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .prop("textContent")
        .await
        .unwrap()
        .unwrap_or_default()
}

/// Polls until `check` holds, or fails with `what`.
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
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

#[tokio::test(flavor = "multi_thread")]
async fn care_manager_privacy_officer_and_clinician_flows() {
    let _xvfb = start_xvfb();
    let data_dir = tempfile::tempdir().unwrap();
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("e2e");
    std::fs::create_dir_all(&shots).unwrap();

    let driver = start_driver(DRIVER_PORT, data_dir.path(), 400);
    let c = launch_app(DRIVER_PORT, env!("CARGO_BIN_EXE_phm-workstation")).await;

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

    // Care manager: filter the panel, open a timeline.
    sign_in(&c, "caremanager", "TREAT").await;
    c.wait()
        .for_element(Locator::Css(".panel-row[data-patient-id]"))
        .await
        .unwrap();
    let total_all = text(&c, "#panel-total").await;
    assert!(
        total_all.starts_with("400 "),
        "whole panel shown: {total_all}"
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

    // Clinician: no audit screen, and Rust refuses the command even when called directly.
    sign_in(&c, "clinician", "TREAT").await;
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
    sign_out(&c).await;

    c.close().await.unwrap();
    drop(driver);
}
