//! Shared helpers of the process tests against a real EDW: PostgreSQL (`PgHarness`) with a
//! small synthetic population ingested, matched and attributed; `phm-edw serve` over HTTPS
//! as a child process; clients registered with the real `phm-edw client add`; `phm-sync`
//! run as a child process on an encrypted cache; what the EDW holds for a Group, read as
//! the superuser, and what the cache holds, read from its SQLCipher file.
//!
//! The `phm-edw` binary is not a target of this crate, so `CARGO_BIN_EXE_phm-edw` is not
//! available: [`phm_edw`] takes `PHM_EDW_BIN` when set (`scripts/test.sh` sets it to the binary
//! its `cargo test --workspace` just built, so no second build with other features), else
//! runs `cargo build -p edw --bin phm-edw` once per test process (a no-op when it is fresh)
//! and uses `target/<profile>/phm-edw` beside this test binary.
#![allow(dead_code)]

pub mod proxy;

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::pgharness::PgHarness;

/// The `phm-edw` binary, built if needed (see the module docs).
pub fn phm_edw() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("PHM_EDW_BIN") {
            let bin = PathBuf::from(bin);
            assert!(bin.exists(), "PHM_EDW_BIN {} missing", bin.display());
            return bin;
        }
        let exe = std::env::current_exe().unwrap();
        // target/<profile>/deps/<test> -> target/<profile>/phm-edw
        let dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "edw", "--bin", "phm-edw"]);
        if dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let st = cmd
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("cargo build -p edw --bin phm-edw");
        assert!(st.success(), "cargo build -p edw --bin phm-edw failed");
        let bin = dir.join("phm-edw");
        assert!(bin.exists(), "{} missing", bin.display());
        bin
    })
    .clone()
}

pub fn phm_sync_bin() -> &'static str {
    env!("CARGO_BIN_EXE_phm-sync")
}

/// An EDW database with `patients` synthetic patients (two organisations, care teams
/// ct1/ct2), matched and attributed, and a login for the server.
pub struct Edw {
    pub admin: String,
    pub server_db: String,
    pub data: tempfile::TempDir,
    /// The care-team Group of ct1 (patients of org1 and org2).
    pub group: i64,
    /// A practitioner Group never granted.
    pub other_group: i64,
    pub pg: PgHarness,
}

impl Edw {
    pub fn setup(name: &str, patients: usize) -> Edw {
        let pg = PgHarness::start().unwrap();
        let admin = pg.create_db(name).unwrap();
        let mut c = edw::connect(&admin).unwrap();
        edw::migrate::migrate(&mut c).unwrap();
        let data = tempfile::tempdir().unwrap();
        let v1 = data.path().join("v1");
        testkit::testdata::write_dataset(&v1, patients, 11).unwrap();
        edw::ingest::ingest(
            &mut c,
            std::slice::from_ref(&v1),
            &edw::ingest::Options::new("ehr"),
        )
        .unwrap();
        edw::matching::run(&mut c, &edw::matching::Params::default()).unwrap();
        edw::attribute::run(&mut c, Some("2025-12-31")).unwrap();
        c.batch_execute("CREATE ROLE phm_sync_server LOGIN IN ROLE edw_api")
            .unwrap();
        let group: i64 = c
            .query_one(
                "SELECT g.id FROM edw.patient_group g JOIN edw.care_team ct ON ct.id = g.ref_id
                 WHERE g.kind = 'care_team' AND ct.source_id = 'ct1'",
                &[],
            )
            .unwrap()
            .get(0);
        let other_group: i64 = c
            .query_one(
                "SELECT min(id) FROM edw.patient_group WHERE kind = 'practitioner'",
                &[],
            )
            .unwrap()
            .get(0);
        Edw {
            server_db: pg.url_as("phm_sync_server", name),
            admin,
            data,
            group,
            other_group,
            pg,
        }
    }

    pub fn sql(&self) -> postgres::Client {
        edw::connect(&self.admin).unwrap()
    }

    /// Ingests NDJSON files (`type -> lines`) as a new batch of source `ehr`, then
    /// matches and attributes again.
    pub fn ingest_update(&self, tag: &str, files: &BTreeMap<&str, Vec<Value>>) {
        let dir = self.data.path().join(tag);
        std::fs::create_dir_all(&dir).unwrap();
        for (ty, lines) in files {
            let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
            std::fs::write(dir.join(format!("{ty}.ndjson")), text).unwrap();
        }
        let mut c = self.sql();
        edw::ingest::ingest(
            &mut c,
            std::slice::from_ref(&dir),
            &edw::ingest::Options::new("ehr"),
        )
        .unwrap();
        self.rematch();
    }

    pub fn rematch(&self) {
        let mut c = self.sql();
        edw::matching::run(&mut c, &edw::matching::Params::default()).unwrap();
        edw::attribute::run(&mut c, Some("2025-12-31")).unwrap();
    }

    /// Persons of `group` with records of organisation `org` (source id), sorted.
    pub fn members(&self, group: i64, org: &str) -> Vec<i64> {
        self.sql()
            .query(
                "SELECT DISTINCT m.person_id FROM edw.patient_group_member m
                 JOIN edw.source_patient sp ON sp.person_id = m.person_id
                 JOIN edw.organization o ON o.id = sp.org_id
                 WHERE m.group_id = $1 AND o.source_id = $2 ORDER BY 1",
                &[&group, &org],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    /// The first source patient id of a person.
    pub fn source_of(&self, person: i64) -> String {
        self.sql()
            .query_one(
                "SELECT source_id FROM edw.source_patient WHERE person_id = $1 ORDER BY id LIMIT 1",
                &[&person],
            )
            .unwrap()
            .get(0)
    }

    pub fn person_of(&self, source_id: &str) -> i64 {
        self.sql()
            .query_one(
                "SELECT person_id FROM edw.source_patient WHERE source_id = $1",
                &[&source_id],
            )
            .unwrap()
            .get(0)
    }

    /// What a client of `org` must hold for `group`, from the EDW's 3NF tables as the
    /// superuser (independently of the export): the Patients (id = person id) of the
    /// Group's members with records of `org`, and every resource of those records,
    /// as (type, id).
    pub fn expected_view(&self, group: i64, org: &str) -> (Vec<i64>, BTreeSet<(String, String)>) {
        let persons = self.members(group, org);
        let mut c = self.sql();
        let mut want = BTreeSet::new();
        for p in &persons {
            want.insert(("Patient".to_string(), p.to_string()));
        }
        for (t, ty) in [
            ("encounter", "Encounter"),
            ("condition", "Condition"),
            ("observation", "Observation"),
            ("procedure", "Procedure"),
            ("medication_request", "MedicationRequest"),
            ("immunization", "Immunization"),
            ("coverage", "Coverage"),
        ] {
            for r in c
                .query(
                    &format!(
                        "SELECT t.source_id FROM edw.{t} t
                         JOIN edw.source_patient sp ON sp.id = t.source_patient_id
                         JOIN edw.organization o ON o.id = sp.org_id
                         WHERE sp.person_id = ANY($1) AND o.source_id = $2"
                    ),
                    &[&persons, &org],
                )
                .unwrap()
            {
                want.insert((ty.to_string(), r.get(0)));
            }
        }
        for r in c
            .query(
                "SELECT t.resource_type, t.source_id FROM edw.resource t
                 JOIN edw.source_patient sp ON sp.id = t.source_patient_id
                 JOIN edw.organization o ON o.id = sp.org_id
                 WHERE sp.person_id = ANY($1) AND o.source_id = $2",
                &[&persons, &org],
            )
            .unwrap()
        {
            want.insert((r.get(0), r.get(1)));
        }
        (persons, want)
    }

    /// Every person with records of `org` (any Group).
    pub fn persons_of_org(&self, org: &str) -> BTreeSet<String> {
        self.sql()
            .query(
                "SELECT DISTINCT sp.person_id FROM edw.source_patient sp
                 JOIN edw.organization o ON o.id = sp.org_id WHERE o.source_id = $1",
                &[&org],
            )
            .unwrap()
            .iter()
            .map(|r| r.get::<_, i64>(0).to_string())
            .collect()
    }

    /// How many rows of `edw.worklist_action` each action id has.
    pub fn action_rows(&self, ids: &[String]) -> BTreeMap<String, i64> {
        let mut c = self.sql();
        let mut out = BTreeMap::new();
        for id in ids {
            let n: i64 = c
                .query_one(
                    "SELECT count(*) FROM edw.worklist_action WHERE action_id = $1::text::uuid",
                    &[id],
                )
                .unwrap()
                .get(0);
            out.insert(id.clone(), n);
        }
        out
    }

    /// Registers a client of `org` granted `groups` with the real `phm-edw client add`
    /// and a key made by `phm-sync keygen`.
    pub fn client(&self, dir: &Path, name: &str, org: &str, groups: &[i64]) -> SyncClient {
        let key_file = dir.join(format!("{name}.pk8"));
        let jwks = dir.join(format!("{name}.jwks.json"));
        let out = Command::new(phm_sync_bin())
            .args(["keygen", "--out"])
            .arg(&key_file)
            .arg("--jwks")
            .arg(&jwks)
            .output()
            .unwrap();
        assert!(out.status.success(), "keygen: {}", stderr(&out));
        let mut cmd = Command::new(phm_edw());
        cmd.args(["client", "add", "--db", &self.admin, "--name", name])
            .args(["--org", org, "--jwks"])
            .arg(&jwks);
        for g in groups {
            cmd.args(["--group", &g.to_string()]);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "client add: {}", stderr(&out));
        SyncClient {
            id: String::from_utf8(out.stdout).unwrap().trim().to_string(),
            key_file,
        }
    }

    pub fn revoke(&self, client: &SyncClient) {
        let out = Command::new(phm_edw())
            .args(["client", "revoke", "--db", &self.admin, &client.id])
            .output()
            .unwrap();
        assert!(out.status.success(), "client revoke: {}", stderr(&out));
    }
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[derive(Clone, Debug)]
pub struct SyncClient {
    pub id: String,
    pub key_file: PathBuf,
}

/// `phm-edw serve` over HTTPS (self-signed certificate in its state directory).
pub struct Server {
    child: Option<Child>,
    pub port: u16,
    pub base: String,
    pub state: tempfile::TempDir,
    db: String,
    extra: Vec<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Server {
    pub fn start(db: &str, extra: &[&str]) -> Server {
        let port = testkit::pgharness::free_port().unwrap();
        let mut s = Server {
            child: None,
            port,
            base: format!("https://127.0.0.1:{port}"),
            state: tempfile::tempdir().unwrap(),
            db: db.to_string(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        s.restart();
        s
    }

    pub fn cert(&self) -> PathBuf {
        self.state.path().join("tls/cert.pem")
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// (Re)starts on the same port and state directory (the same certificate).
    pub fn restart(&mut self) {
        self.stop();
        let log = self.state.path().join("serve.log");
        let mut child = Command::new(phm_edw())
            .args(["serve", "--db", &self.db, "--addr"])
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--state-dir")
            .arg(self.state.path())
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let t0 = Instant::now();
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                panic!(
                    "phm-edw serve exited {st}: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            if self.cert().exists() && health(self.port, &self.cert()) {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "phm-edw serve did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child = Some(child);
    }
}

/// `GET /health` answers 200 over TLS trusting `cert`.
fn health(port: u16, cert: &Path) -> bool {
    proxy::https_get_status(port, cert, "/health") == Some(200)
}

/// An encrypted cache file and its key.
pub struct CacheFile {
    pub path: PathBuf,
    pub key: cache::CacheKey,
}

impl CacheFile {
    pub fn new(dir: &Path, name: &str) -> CacheFile {
        let path = dir.join(format!("{name}.db"));
        let key = cache::CacheKey::generate().unwrap();
        drop(cache::Cache::open(&path, &key).unwrap());
        CacheFile { path, key }
    }

    pub fn open(&self) -> cache::Cache {
        cache::Cache::open(&self.path, &self.key).unwrap()
    }

    pub fn raw(&self) -> rusqlite::Connection {
        let c = rusqlite::Connection::open(&self.path).unwrap();
        c.execute_batch(&format!(
            "PRAGMA key = \"x'{}'\"; PRAGMA cipher_page_size = {}; PRAGMA cipher_hmac_algorithm = {};",
            self.key.to_hex(),
            cache::PAGE_SIZE,
            cache::HMAC_ALGORITHM
        ))
        .unwrap();
        c
    }

    /// Every clinical table's rows (row ids left out), sorted, as text: the whole panel
    /// state, for "old or new, never a mix".
    pub fn content(&self) -> String {
        // Opening through the cache first recovers a WAL left by a killed writer.
        drop(self.open());
        let c = self.raw();
        let mut out = String::new();
        for (table, cols) in [
            ("patients", "*"),
            ("practitioners", "*"),
            ("organizations", "*"),
            ("groups", "*"),
            ("group_members", "*"),
            ("panel_row", "*"),
            (
                "events",
                "patient_id, kind, resource_id, date, ts, end_date, code_system, code, display,
                 value_num, value2_num, value_text, unit, status, raw",
            ),
            (
                "other_resources",
                "resource_type, resource_id, patient_id, raw",
            ),
            // Each export has its own transactionTime: only which Groups are synced.
            ("sync_group", "group_id"),
        ] {
            let mut stmt = c.prepare(&format!("SELECT {cols} FROM {table}")).unwrap();
            let n = stmt.column_count();
            let mut rows: Vec<String> = stmt
                .query_map([], |r| {
                    let mut s = String::new();
                    for i in 0..n {
                        let v: rusqlite::types::Value = r.get(i)?;
                        s.push_str(&format!("{v:?}|"));
                    }
                    Ok(s)
                })
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            rows.sort();
            out.push_str(&format!("== {table} ({})\n", rows.len()));
            for r in rows {
                out.push_str(&r);
                out.push('\n');
            }
        }
        out
    }

    /// (type, id) of every patient-linked resource in the cache (from the stored JSON),
    /// and the Patients.
    pub fn view(&self) -> BTreeSet<(String, String)> {
        let c = self.raw();
        let mut out = BTreeSet::new();
        for sql in [
            "SELECT raw FROM patients",
            "SELECT raw FROM events",
            "SELECT raw FROM other_resources WHERE patient_id IS NOT NULL",
        ] {
            let mut stmt = c.prepare(sql).unwrap();
            for raw in stmt.query_map([], |r| r.get::<_, String>(0)).unwrap() {
                let v: Value = serde_json::from_str(&raw.unwrap()).unwrap();
                out.insert((
                    v["resourceType"].as_str().unwrap().to_string(),
                    v["id"].as_str().unwrap().to_string(),
                ));
            }
        }
        out
    }

    pub fn patient_ids(&self) -> BTreeSet<String> {
        self.open().patient_ids().unwrap().into_iter().collect()
    }

    /// The members of a Group in the cache.
    pub fn group_members(&self, group: i64) -> BTreeSet<String> {
        let c = self.raw();
        let mut stmt = c
            .prepare("SELECT patient_id FROM group_members WHERE group_id = ?1")
            .unwrap();
        let v = stmt
            .query_map([group.to_string()], |r| r.get::<_, String>(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        v
    }

    /// Copies the cache file (and any WAL) to `to` (a restorable snapshot; the staging
    /// store is left out).
    pub fn snapshot(&self, to: &Path) {
        drop(self.open()); // checkpoint state settled
        std::fs::copy(&self.path, to).unwrap();
    }

    /// Replaces the cache by a snapshot and removes the WAL/SHM and the staging store.
    pub fn restore(&self, from: &Path) {
        for suffix in ["-wal", "-shm", ".sync", ".sync-wal", ".sync-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.path.display()));
        }
        let stage = cache::stage_path(&self.path);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", stage.display()));
        }
        std::fs::copy(from, &self.path).unwrap();
    }

    /// Queues `n` worklist actions on `patients` (round robin); returns their ids.
    pub fn queue_actions(&self, patients: &[String], n: usize, tag: &str) -> Vec<String> {
        let c = self.open();
        let mut ids = Vec::new();
        for i in 0..n {
            let id = uuid_v4();
            let e = cache::OutboxEntry {
                id: id.clone(),
                created_at: format!("2025-12-01T10:{:02}:{:02}Z", (i / 60) % 60, i % 60),
                username: "dr.test".into(),
                kind: "note".into(),
                patient_id: patients[i % patients.len()].clone(),
                measure_id: None,
                group_id: None,
                body: json!({"text": format!("{tag} note {i}")}).to_string(),
            };
            c.record_action(&e, None, None).unwrap();
            ids.push(id);
        }
        ids
    }

    pub fn outbox_unsent(&self) -> usize {
        self.open().outbox(true).unwrap().len()
    }
}

pub fn uuid_v4() -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    ring::rand::SystemRandom::new().fill(&mut b).unwrap();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// One `phm-sync` invocation.
pub struct Sync<'a> {
    pub cache: &'a CacheFile,
    pub server: String,
    pub client: &'a SyncClient,
    pub ca: PathBuf,
    pub groups: Vec<String>,
    pub env: Vec<(String, String)>,
}

#[derive(Debug)]
pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    #[track_caller]
    pub fn report(&self) -> Value {
        assert!(self.ok, "phm-sync failed: {}", self.stderr);
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|_| panic!("{}", self.stdout))
    }
    /// The error line `phm-sync: ...`.
    #[track_caller]
    pub fn error(&self) -> String {
        assert!(!self.ok, "phm-sync succeeded: {}", self.stdout);
        self.stderr
            .lines()
            .rfind(|l| l.starts_with("phm-sync: "))
            .unwrap_or(&self.stderr)
            .to_string()
    }
}

impl<'a> Sync<'a> {
    pub fn new(cache: &'a CacheFile, server: &str, client: &'a SyncClient, ca: &Path) -> Self {
        Sync {
            cache,
            server: server.to_string(),
            client,
            ca: ca.to_path_buf(),
            groups: Vec::new(),
            env: Vec::new(),
        }
    }

    pub fn group(mut self, g: impl ToString) -> Self {
        self.groups.push(g.to_string());
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    fn command(&self, sub: &str) -> Command {
        let mut cmd = Command::new(phm_sync_bin());
        cmd.arg(sub)
            .env("PHM_SYNC_CACHE_KEY", self.cache.key.to_hex())
            .arg("--cache")
            .arg(&self.cache.path)
            .args(["--server", &self.server, "--client-id", &self.client.id])
            .arg("--key-file")
            .arg(&self.client.key_file)
            .arg("--ca")
            .arg(&self.ca);
        for g in &self.groups {
            cmd.args(["--group", g]);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs `phm-sync <sub>` to the end.
    pub fn run(&self, sub: &str) -> Run {
        let out = self.command(sub).output().unwrap();
        Run {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: stderr(&out),
        }
    }

    /// Runs `phm-sync <sub>` with `PHM_SYNC_TEST_PAUSE_AT=point`, and kills it with
    /// SIGKILL once it reports being paused there. Returns false when it finished (or
    /// failed) before reaching the point.
    pub fn kill_at(&self, sub: &str, point: &str) -> (bool, String) {
        let mut cmd = self.command(sub);
        cmd.env("PHM_SYNC_TEST_PAUSE_AT", point)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let err = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let l2 = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                let paused = line.starts_with("phm-sync test: paused at");
                l2.lock().unwrap().push_str(&(line + "\n"));
                if paused {
                    let _ = tx.send(());
                }
            }
        });
        let paused = loop {
            if rx.recv_timeout(Duration::from_millis(20)).is_ok() {
                break true;
            }
            if let Ok(Some(_)) = child.try_wait() {
                break false;
            }
        };
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let _ = reader.join();
        let text = lines.lock().unwrap().clone();
        (paused, text)
    }

    /// Runs `phm-sync <sub>` and kills it with SIGKILL after `after`; returns whether it
    /// was still running then.
    pub fn kill_after(&self, sub: &str, after: Duration) -> bool {
        let mut child = self
            .command(sub)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let t0 = Instant::now();
        while t0.elapsed() < after {
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let running = matches!(child.try_wait(), Ok(None));
        let _ = child.kill();
        let _ = child.wait();
        running
    }
}

/// Checks the cache against the EDW's view of `group` for organisation org1.
#[track_caller]
pub fn assert_cache_is_edw_view(edw: &Edw, cache: &CacheFile) -> Vec<i64> {
    let (persons, want) = edw.expected_view(edw.group, "org1");
    let got = cache.view();
    let missing: Vec<_> = want.difference(&got).take(5).collect();
    let extra: Vec<_> = got.difference(&want).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "cache != EDW view: missing {missing:?}, extra {extra:?} ({} vs {})",
        got.len(),
        want.len()
    );
    let members: BTreeSet<String> = persons.iter().map(|p| p.to_string()).collect();
    assert_eq!(cache.group_members(edw.group), members, "Group members");
    assert_eq!(cache.patient_ids(), members, "patients");
    // No patient of the other organisation only.
    let org2_only: BTreeSet<String> = edw
        .persons_of_org("org2")
        .difference(&edw.persons_of_org("org1"))
        .cloned()
        .collect();
    assert!(cache.patient_ids().is_disjoint(&org2_only));
    persons
}

/// A Patient line for an update file.
pub fn patient(id: &str, family: &str, org: &str) -> Value {
    json!({"resourceType": "Patient", "id": id, "gender": "female", "birthDate": "1980-02-02",
        "name": [{"family": family, "given": ["Nia"]}],
        "identifier": [{"system": "https://ehr.example.org/mrn", "value": format!("MRN-{id}")}],
        "managingOrganization": {"reference": format!("Organization/{org}")}})
}

/// A primary-care visit (attribution counts these).
pub fn visit(id: &str, patient_src: &str, practitioner: &str, day: u32) -> Value {
    json!({"resourceType": "Encounter", "id": id, "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "type": [{"coding": [{"system": "http://snomed.info/sct", "code": testkit::testdata::PCP_TYPE}]}],
        "subject": {"reference": format!("Patient/{patient_src}")},
        "participant": [{"individual": {"reference": format!("Practitioner/{practitioner}")}}],
        "period": {"start": format!("2025-11-{day:02}T09:00:00Z")}})
}

pub fn a1c(id: &str, patient_src: &str, value: f64) -> Value {
    json!({"resourceType": "Observation", "id": id, "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
        "subject": {"reference": format!("Patient/{patient_src}")}, "effectiveDateTime": "2025-11-20",
        "valueQuantity": {"value": value, "unit": "%"}})
}
