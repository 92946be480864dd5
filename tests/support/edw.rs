//! A real EDW for the end-to-end test: Debian's PostgreSQL in a temp dir with synthetic
//! patients loaded, matched and attributed, and `phm-edw serve` over HTTPS on loopback
//! as a non-superuser login role. Blocking (the `postgres` client): call from a plain
//! thread, not from the async test body.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use testkit::pgharness::PgHarness;

pub struct Edw {
    pg: PgHarness,
    admin: String,
    serve_db: String,
    pub port: u16,
    dir: tempfile::TempDir,
    server: Option<Child>,
    /// The organisation whose patients the workstation's client may see.
    pub org: i64,
    /// The practitioner panels granted to the client.
    pub groups: Vec<i64>,
}

/// `phm-edw`: `PHM_EDW_BIN` when set (by `scripts/test.sh`), else built beside this test's
/// binary (by `cargo test --workspace`, or here).
fn edw_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("PHM_EDW_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("phm-edw");
    if !bin.exists() {
        let st = Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "edw", "--bin", "phm-edw"])
            .status()
            .unwrap();
        assert!(st.success(), "cargo build -p edw --bin phm-edw");
    }
    bin
}

impl Edw {
    /// Loads `patients` synthetic patients and picks the largest organisation's panels.
    pub fn load(patients: u64) -> Edw {
        let pg = PgHarness::start().unwrap();
        let admin = pg.create_db("e2e_edw").unwrap();
        let mut c = edw::connect(&admin).unwrap();
        edw::migrate::migrate(&mut c).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("synth");
        let g = synth::Generator::new(synth::SynthConfig::new(patients, 20_251_231)).unwrap();
        synth::write_ndjson_dir(&g, &data, 1, &mut |_| {}).unwrap();
        edw::ingest::ingest(
            &mut c,
            std::slice::from_ref(&data),
            &edw::ingest::Options::new("ehr"),
        )
        .unwrap();
        edw::matching::run(&mut c, &edw::matching::Params::default()).unwrap();
        edw::attribute::run(&mut c, Some("2025-12-31")).unwrap();
        let org: i64 = c
            .query_one(
                "SELECT org_id FROM edw.source_patient WHERE org_id IS NOT NULL
                 GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1",
                &[],
            )
            .unwrap()
            .get(0);
        let groups: Vec<i64> = c
            .query(
                "SELECT DISTINCT g.id FROM edw.patient_group g
                 JOIN edw.patient_group_member m ON m.group_id = g.id
                 JOIN edw.source_patient s ON s.person_id = m.person_id
                 WHERE g.kind = 'practitioner' AND s.org_id = $1 ORDER BY 1",
                &[&org],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert!(!groups.is_empty(), "the organisation has attributed panels");
        c.batch_execute("CREATE ROLE e2e_serve LOGIN IN ROLE edw_api")
            .unwrap();
        let serve_db = pg.url_as("e2e_serve", "e2e_edw");
        Edw {
            port: testkit::pgharness::free_port().unwrap(),
            pg,
            admin,
            serve_db,
            dir,
            server: None,
            org,
            groups,
        }
    }

    /// Registers the workstation whose public key set is `jwks`; returns the client id.
    pub fn register(&self, jwks: &Path) -> String {
        let mut cmd = Command::new(edw_bin());
        cmd.args([
            "client",
            "add",
            "--db",
            &self.admin,
            "--name",
            "e2e workstation",
        ])
        .args(["--org", &self.org.to_string(), "--jwks"])
        .arg(jwks);
        for g in &self.groups {
            cmd.args(["--group", &g.to_string()]);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "client add: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .last()
            .unwrap()
            .trim()
            .to_string()
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Starts (or restarts, same port and certificate) the server; waits until it answers.
    pub fn start_server(&mut self) {
        self.stop_server();
        let log = self.dir.path().join("serve.log");
        let child = Command::new(edw_bin())
            .args(["serve", "--db", &self.serve_db])
            .args(["--addr", &format!("127.0.0.1:{}", self.port), "--state-dir"])
            .arg(self.state())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        self.server = Some(child);
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err()
            || !self.state().join("tls/cert.pem").exists()
        {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "phm-edw serve did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stop_server(&mut self) {
        if let Some(mut c) = self.server.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}/fhir", self.port)
    }

    pub fn cert_pem(&self) -> String {
        std::fs::read_to_string(self.state().join("tls/cert.pem")).unwrap()
    }

    /// The persons of the granted panels (what the workstation may receive).
    pub fn members(&self) -> BTreeSet<String> {
        let mut c = edw::connect(&self.admin).unwrap();
        c.query(
            "SELECT DISTINCT m.person_id::text FROM edw.patient_group_member m
             WHERE m.group_id = ANY($1)",
            &[&self.groups],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
    }

    /// Worklist actions the EDW holds, by action id.
    pub fn action_ids(&self) -> Vec<String> {
        let mut c = edw::connect(&self.admin).unwrap();
        c.query("SELECT event_id FROM edw.worklist_action ORDER BY 1", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }
}

impl Drop for Edw {
    fn drop(&mut self) {
        self.stop_server();
    }
}
