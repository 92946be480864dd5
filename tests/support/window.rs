//! Starting the real app window for tests and benchmarks: Xvfb, tauri-driver
//! (which starts WebKitWebDriver and the app) and a WebDriver session.

// Included by several test and bench targets; each uses a different subset.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

/// A child started in its own process group, killed as a group on drop so no
/// WebKitWebDriver or Xvfb outlives the run (tauri-driver does not stop its
/// WebKitWebDriver on SIGKILL).
pub struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        let pgid = self.0.id() as i32;
        unsafe { libc::kill(-pgid, libc::SIGTERM) };
        std::thread::sleep(Duration::from_millis(300));
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

/// Starts Xvfb and points DISPLAY at it, unless a display is already set.
pub fn start_xvfb() -> Option<Group> {
    if std::env::var_os("DISPLAY").is_some() {
        return None;
    }
    let mut child = Command::new("Xvfb")
        .args([
            "-displayfd",
            "1",
            "-screen",
            "0",
            "1280x800x24",
            "-nolisten",
            "tcp",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("Xvfb starts (apt package xvfb)");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    std::env::set_var("DISPLAY", format!(":{}", line.trim()));
    Some(Group(child))
}

fn tauri_driver() -> PathBuf {
    if let Ok(p) = std::env::var("TAURI_DRIVER") {
        return p.into();
    }
    let home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap()).join(".cargo"));
    let p = home.join("bin/tauri-driver");
    if p.exists() {
        p
    } else {
        PathBuf::from("tauri-driver")
    }
}

/// Starts tauri-driver on `port` (and `port + 1` for WebKitWebDriver); the app
/// it launches inherits `PHM_DATA_DIR` and `PHM_DEMO_PATIENTS`.
pub fn start_driver(port: u16, data_dir: &Path, demo_patients: u64) -> Group {
    let driver = Group(
        Command::new(tauri_driver())
            .args([
                "--port",
                &port.to_string(),
                "--native-port",
                &(port + 1).to_string(),
            ])
            .env("PHM_DATA_DIR", data_dir)
            .env("PHM_DEMO_PATIENTS", demo_patients.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("tauri-driver starts (cargo install tauri-driver)"),
    );
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "tauri-driver did not open port {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    driver
}

/// A WebDriver session on a new app process started with `args` (`--demo` for demo mode).
pub async fn launch_app(port: u16, app: &str, args: &[&str]) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "tauri:options".into(),
        json!({ "application": app, "args": args }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("WebDriver session")
}

/// Fills and submits the sign-in form (waits for it first).
pub async fn submit_login(c: &Client, user: &str, passphrase: &str) {
    let field = c
        .wait()
        .for_element(Locator::Css("#login-user"))
        .await
        .unwrap();
    field.send_keys(user).await.unwrap();
    let pass = c.find(Locator::Css("#login-pass")).await.unwrap();
    pass.send_keys(passphrase).await.unwrap();
    c.find(Locator::Css("#login-submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Picks the session's purpose of use on the screen after sign-in and continues.
pub async fn choose_purpose(c: &Client, purpose: &str) {
    let select = c
        .wait()
        .for_element(Locator::Css("#purpose-select"))
        .await
        .unwrap();
    select.select_by_value(purpose).await.unwrap();
    c.find(Locator::Css("#purpose-submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}
