//! The harness cleans up servers orphaned by a SIGKILLed test process.
use std::io::BufRead;
use std::process::{Command, Stdio};

#[test]
fn child_helper() {
    if std::env::var("PGH_CHILD").is_err() {
        return; // only does something when re-executed by the test below
    }
    let pg = testkit::pgharness::PgHarness::start().unwrap();
    println!("DIR {}", pg.socket_dir().display());
    std::thread::sleep(std::time::Duration::from_secs(120));
}

#[test]
fn orphaned_server_of_a_killed_process_is_swept() {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_helper", "--nocapture", "--test-threads=1"])
        .env("PGH_CHILD", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut dir = None;
    for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        // libtest prints "test child_helper ... " on the same line.
        if let Some(i) = line.find("DIR ") {
            dir = Some(std::path::PathBuf::from(line[i + 4..].trim()));
            break;
        }
    }
    let dir = dir.expect("child started a server");
    child.kill().unwrap(); // SIGKILL: Drop does not run
    child.wait().unwrap();
    let pidfile = dir.join("data/postmaster.pid");
    assert!(pidfile.exists(), "orphaned server should still be running");
    let pg_pid: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Starting a harness in a new process sweeps it.
    let _pg = testkit::pgharness::PgHarness::start().unwrap();
    assert!(!dir.exists(), "stale harness dir removed");
    let t0 = std::time::Instant::now();
    while std::path::Path::new(&format!("/proc/{pg_pid}")).exists() {
        assert!(
            t0.elapsed().as_secs() < 10,
            "orphaned postgres still running"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
