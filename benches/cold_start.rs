//! Cold start of the real app on a large encrypted cache, through WebDriver:
//! launch → sign-in shown (cache opened), and purpose of use chosen → first worklist
//! page shown (the care manager's home screen). The first launch also times generating the
//! demo panel and its first local evaluation (every patient × the shipped measures).
//!
//! Run (needs a session bus and an unlocked keyring, like the e2e test):
//!   XDG_DATA_HOME=$(mktemp -d) dbus-run-session -- bash -c \
//!     'echo -n b | gnome-keyring-daemon --unlock --components=secrets >/dev/null; \
//!      PHM_BENCH_PATIENTS=50000 cargo bench --bench cold_start'

#[path = "../tests/support/window.rs"]
mod window;

use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};
use window::{choose_purpose, launch_app, start_driver, start_xvfb, submit_login};

const PORT: u16 = 4454;

async fn launch() -> (Client, Instant) {
    let t0 = Instant::now();
    (
        launch_app(PORT, env!("CARGO_BIN_EXE_phm-workstation"), &["--demo"]).await,
        t0,
    )
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let patients: u64 = std::env::var("PHM_BENCH_PATIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let runs: usize = std::env::var("PHM_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let _x = start_xvfb();
    let dir = tempfile::tempdir().unwrap();
    let _d = start_driver(PORT, dir.path(), patients);

    // First launch: generate the demo panel into the encrypted cache, then evaluate it.
    let (c, t0) = launch().await;
    c.wait()
        .at_most(Duration::from_secs(1800))
        .for_element(Locator::Css("#login-user"))
        .await
        .unwrap();
    println!(
        "first launch, {patients} patients generated and imported: {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    submit_login(&c, "caremanager", "demo-caremanager").await;
    choose_purpose(&c, "TREAT").await;
    let t1 = Instant::now();
    loop {
        let status = match c.find(Locator::Css("#evaluation-status")).await {
            Ok(e) => e.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if status.starts_with("Care gaps are up to date") {
            break;
        }
        assert!(
            !status.contains("could not"),
            "local evaluation failed: {status}"
        );
        assert!(t1.elapsed() < Duration::from_secs(3600), "evaluation hung");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    println!(
        "first local evaluation seen done after sign-in: {:.1} s",
        t1.elapsed().as_secs_f64()
    );
    c.close().await.unwrap();

    let mut to_signin = Vec::new();
    let mut to_page = Vec::new();
    for _ in 0..runs {
        let (c, t0) = launch().await;
        c.wait()
            .at_most(Duration::from_secs(60))
            .for_element(Locator::Css("#login-user"))
            .await
            .unwrap();
        to_signin.push(t0.elapsed());
        submit_login(&c, "caremanager", "demo-caremanager").await;
        let purpose = c
            .wait()
            .for_element(Locator::Css("#purpose-select"))
            .await
            .unwrap();
        purpose.select_by_value("TREAT").await.unwrap();
        let t1 = Instant::now();
        c.find(Locator::Css("#purpose-submit"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        c.wait()
            .at_most(Duration::from_secs(60))
            .for_element(Locator::Css(".worklist-row[data-key]"))
            .await
            .unwrap();
        to_page.push(t1.elapsed());
        c.close().await.unwrap();
    }
    to_signin.sort();
    to_page.sort();
    let med = |v: &[Duration]| ms(v[v.len() / 2]);
    println!("runs: {runs}, panel: {patients} patients");
    println!(
        "launch -> sign-in shown (cache opened): median {:.0} ms, min {:.0}, max {:.0}",
        med(&to_signin),
        ms(to_signin[0]),
        ms(*to_signin.last().unwrap())
    );
    println!(
        "purpose chosen -> first worklist page shown: median {:.0} ms, min {:.0}, max {:.0}",
        med(&to_page),
        ms(to_page[0]),
        ms(*to_page.last().unwrap())
    );
    println!(
        "cold start to first worklist page (sum of medians, excluding typing): {:.0} ms",
        med(&to_signin) + med(&to_page)
    );
}
