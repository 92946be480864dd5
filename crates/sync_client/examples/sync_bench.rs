//! Panel sync benchmark (issue 13), everything on this machine in one run:
//!
//! 1. a throwaway PostgreSQL (`testkit::pgharness`, honouring `PGHARNESS_SETTINGS`) loaded with
//!    N phm-synth patients (ingest, match, attribute) of one clinic organisation, a care
//!    team of all its practitioners whose Group holds every one of its N patients, and
//!    `phm-edw serve` over HTTPS on loopback (as a non-superuser login role in `edw_api`)
//!    with this workstation registered (`phm-edw client add`, an ES384 [`KeyPair`]);
//! 2. the raw download alone: an export of that Group, every file fetched with a plain
//!    HTTPS client (ureq) to a temp dir; only the downloads are timed;
//! 3. the import alone: `Cache::import_ndjson` of those files into a new encrypted cache;
//! 4. the full sync: `sync_client::sync_now` into another new encrypted cache (kick-off,
//!    polling, download and apply overlapped);
//! 5. an incremental sync after 1 % of the Group's patients got a new Observation;
//! 6. 10,000 worklist actions queued in the synced cache and drained by `send_actions`.
//!
//! ```sh
//! cargo build --release -p sync_client --examples -p edw --bin phm-edw
//! PGHARNESS_SETTINGS="shared_buffers=4GB,maintenance_work_mem=1GB,work_mem=64MB,max_wal_size=2GB,checkpoint_timeout=30min,effective_cache_size=16GB" \
//!   target/release/examples/sync_bench --patients 50000
//! ```
//! `phm-edw` is looked for beside the example's directory (`target/release/phm-edw`), or
//! at `PHM_EDW_BIN`. Intermediate state lives in a temp dir removed at the end.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use cache::{Cache, CacheKey, OutboxEntry};
use sync_client::{KeyPair, SyncConfig, SyncPhase, SyncProgress};

// As in the app (src-tauri/src/main.rs): the cache import allocates many small values.
#[global_allocator]
static GLOBAL: allocator::MiMalloc = allocator::MiMalloc;

const NDJSON: &str = "application/fhir+ndjson";

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// A directory removed on drop.
struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `phm-edw serve`, killed on drop.
struct Serve(Child);
impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn phm_edw() -> PathBuf {
    if let Some(p) = std::env::var_os("PHM_EDW_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/examples/sync_bench -> target/<profile>/phm-edw
    let p = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("phm-edw");
    assert!(
        p.exists(),
        "{} not found: cargo build --release -p edw --bin phm-edw (or set PHM_EDW_BIN)",
        p.display()
    );
    p
}

fn agent_trusting(cert_pem: &[u8]) -> ureq::Agent {
    let cert = ureq::tls::Certificate::from_pem(cert_pem)
        .expect("server certificate")
        .to_owned();
    let tls = ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        .root_certs(ureq::tls::RootCerts::new_with_certs(&[cert]))
        .build();
    ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .timeout_per_read(Some(Duration::from_secs(120)))
        .build()
        .new_agent()
}

fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn one_i64(
    c: &mut postgres::Client,
    sql: &str,
    params: &[&(dyn postgres::types::ToSql + Sync)],
) -> i64 {
    c.query_one(sql, params).expect(sql).get(0)
}

/// A plain Bulk Data client: token, kick-off, polling, downloads.
struct Plain {
    agent: ureq::Agent,
    base: String,
    client_id: String,
}

impl Plain {
    fn token(&self, key: &KeyPair) -> String {
        let token_url = format!("{}/auth/token", self.base);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let assertion = key
            .client_assertion(&self.client_id, &token_url, now)
            .expect("assertion");
        let form = format!(
            "grant_type={}&scope={}&client_assertion_type={}&client_assertion={}",
            pct(protocol::smart::GRANT_TYPE),
            pct(protocol::smart::WORKSTATION_SCOPE),
            pct(protocol::smart::CLIENT_ASSERTION_TYPE),
            pct(&assertion)
        );
        let mut r = self
            .agent
            .post(&token_url)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .send(form)
            .expect("token request");
        let body = r.body_mut().read_to_string().unwrap_or_default();
        assert_eq!(r.status(), 200, "token: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["access_token"].as_str().unwrap().to_owned()
    }

    /// Kicks off a Group export and polls until the manifest; (status URL, manifest).
    fn export(&self, token: &str, group: i64) -> (String, protocol::bulk::Manifest) {
        let bearer = format!("Bearer {token}");
        let url = format!(
            "{}/fhir/Group/{group}/$export?_outputFormat={}",
            self.base,
            pct(NDJSON)
        );
        let mut r = self
            .agent
            .get(&url)
            .header("Accept", "application/fhir+json")
            .header("Prefer", "respond-async")
            .header("Authorization", &bearer)
            .call()
            .expect("kick-off");
        let status_url = r
            .headers()
            .get("content-location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = r.body_mut().read_to_string().unwrap_or_default();
        assert_eq!(r.status(), 202, "kick-off: {body}");
        let status_url = status_url.expect("Content-Location");
        let status_url = if status_url.starts_with("http") {
            status_url
        } else {
            format!("{}{status_url}", self.base)
        };
        loop {
            let mut r = self
                .agent
                .get(&status_url)
                .header("Accept", "application/json")
                .header("Authorization", &bearer)
                .call()
                .expect("status");
            let body = r.body_mut().read_to_string().unwrap_or_default();
            match r.status().as_u16() {
                202 => std::thread::sleep(Duration::from_millis(200)),
                200 => return (status_url, serde_json::from_str(&body).expect("manifest")),
                s => panic!("export status {s}: {body}"),
            }
        }
    }

    /// Downloads one file to `path`; its bytes.
    fn download(&self, token: Option<&str>, url: &str, path: &Path) -> u64 {
        let mut req = self.agent.get(url).header("Accept", NDJSON);
        let bearer;
        if let Some(t) = token {
            bearer = format!("Bearer {t}");
            req = req.header("Authorization", &bearer);
        }
        let r = req.call().expect("download");
        assert_eq!(r.status(), 200, "download {url}");
        let mut reader = r.into_body().into_reader();
        let mut out = std::fs::File::create(path).expect("file");
        let mut buf = vec![0u8; 256 << 10];
        let mut n = 0u64;
        loop {
            let k = reader.read(&mut buf).expect("read");
            if k == 0 {
                break;
            }
            out.write_all(&buf[..k]).expect("write");
            n += k as u64;
        }
        n
    }

    fn delete(&self, token: &str, status_url: &str) {
        let _ = self
            .agent
            .delete(status_url)
            .header("Authorization", &format!("Bearer {token}"))
            .call();
    }
}

/// When each phase of a sync was first reported, and its last report.
#[derive(Default)]
struct Phases {
    exporting: Option<Instant>,
    downloading: Option<Instant>,
    applying: Option<Instant>,
    done: Option<Instant>,
    /// The apply's last report: its final one comes after its commit.
    last_apply: Option<Instant>,
    resources_at_download_end: u64,
}

impl Phases {
    fn observe(&mut self, p: &SyncProgress) {
        let now = Instant::now();
        if matches!(p.phase, SyncPhase::Downloading | SyncPhase::Applying) {
            self.last_apply = Some(now);
        }
        let slot = match p.phase {
            SyncPhase::Exporting => &mut self.exporting,
            SyncPhase::Downloading => &mut self.downloading,
            SyncPhase::Applying => &mut self.applying,
            SyncPhase::Done => &mut self.done,
            SyncPhase::Connecting => return,
        };
        if slot.is_none() {
            *slot = Some(now);
            if p.phase == SyncPhase::Applying {
                self.resources_at_download_end = p.resources;
            }
        }
    }
}

/// The latest export job's (created, completed) as seconds since the epoch (the
/// server's clock: this machine's).
fn last_job(c: &mut postgres::Client) -> (f64, f64) {
    let r = c
        .query_one(
            "SELECT extract(epoch FROM created_at)::float8, extract(epoch FROM completed_at)::float8
             FROM edw.bulk_job ORDER BY created_at DESC LIMIT 1",
            &[],
        )
        .expect("bulk_job");
    (r.get(0), r.get(1))
}

/// CPU seconds (user + system) of a process so far.
fn cpu_s(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|x| x.parse().ok())
        .collect();
    f.iter().sum::<u64>() as f64 / 100.0
}

/// CPU seconds of (this process, the server, every other process: PostgreSQL and
/// whatever else runs on the machine), from /proc/stat and the two processes.
struct Cpu {
    me: f64,
    server: f64,
    total: f64,
}

fn cpu(server_pid: &str) -> Cpu {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let total = stat
        .lines()
        .next()
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .take(8)
                .enumerate()
                .filter(|(i, _)| *i != 3 && *i != 4) // idle, iowait
                .filter_map(|(_, x)| x.parse::<u64>().ok())
                .sum::<u64>()
        })
        .unwrap_or(0) as f64
        / 100.0;
    Cpu {
        me: cpu_s("self"),
        server: cpu_s(server_pid),
        total,
    }
}

impl Cpu {
    /// "client X s, server Y s, others Z s" since `before`.
    fn since(&self, before: &Cpu) -> String {
        let (me, srv) = (self.me - before.me, self.server - before.server);
        format!(
            "CPU: this process {me:.1} s, phm-edw {srv:.1} s, others {:.1} s",
            (self.total - before.total - me - srv).max(0.0)
        )
    }
}

fn epoch_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn secs(a: Instant, b: Option<Instant>) -> Option<f64> {
    b.map(|b| b.duration_since(a).as_secs_f64())
}

fn main() {
    allocator::tune();
    let patients: u64 = arg("--patients").map_or(50_000, |v| v.parse().expect("--patients N"));
    // --actions N: worklist actions to queue and drain (default 10,000).
    let actions: usize = arg("--actions").map_or(10_000, |v| v.parse().expect("--actions N"));
    let started = Instant::now();
    let load_start = loadavg();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let tmp = TempDir(std::env::temp_dir().join(format!("sync-bench-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&tmp.0);
    std::fs::create_dir_all(&tmp.0).expect("temp dir");
    let base = tmp.0.clone();
    let edw_bin = phm_edw();

    // ---- 1. The EDW: N patients of one organisation, a Group of all of them. ----
    let pg = testkit::pgharness::PgHarness::start().expect("postgres");
    let admin = pg.create_db("sync_bench").expect("db");
    let mut c = edw::connect(&admin).expect("connect");
    edw::migrate::migrate(&mut c).expect("migrate");
    // One clinic: phm-synth puts 5 providers in each clinic organisation, so 5 providers
    // make every patient one organisation's (the export is row-level-secured by it).
    let scfg = synth::SynthConfig {
        providers: synth::PROVIDERS_PER_CLINIC,
        ..synth::SynthConfig::new(patients, 1)
    };
    let g = synth::Generator::new(scfg).expect("synth");
    let data = base.join("synth");
    let t = Instant::now();
    let stats = synth::write_ndjson_dir(&g, &data, 2, &mut |_| {}).expect("synth write");
    let synth_s = t.elapsed().as_secs_f64();
    eprintln!(
        "bench: phm-synth {patients} patients, {} resources, {synth_s:.1} s",
        stats.total_resources()
    );
    let mut opts = edw::ingest::Options::new("synth");
    opts.workers = 2;
    opts.url = Some(admin.clone());
    let t = Instant::now();
    let reps = edw::ingest::ingest(&mut c, std::slice::from_ref(&data), &opts).expect("ingest");
    let ingest_s = t.elapsed().as_secs_f64();
    let loaded: i64 = reps.iter().map(|r| r.loaded).sum();
    eprintln!("bench: ingest {loaded} resources in {ingest_s:.1} s");
    let _ = std::fs::remove_dir_all(&data);
    // A care team of every practitioner: its attributed Group is the clinic's panel.
    let pracs: Vec<String> = c
        .query(
            "SELECT source_id FROM edw.practitioner WHERE source = 'synth' ORDER BY id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let team = serde_json::json!({"resourceType": "CareTeam", "id": "sync-bench-team",
        "name": "Sync bench team",
        "participant": pracs.iter().map(|p| serde_json::json!({"member": {"reference": format!("Practitioner/{p}")}})).collect::<Vec<_>>()});
    let teams = base.join("teams");
    std::fs::create_dir_all(&teams).unwrap();
    std::fs::write(teams.join("CareTeam.ndjson"), format!("{team}\n")).unwrap();
    edw::ingest::ingest(&mut c, std::slice::from_ref(&teams), &opts).expect("team ingest");
    let t = Instant::now();
    edw::matching::run(&mut c, &edw::matching::Params::default()).expect("match");
    c.batch_execute("VACUUM ANALYZE").expect("vacuum");
    let a = edw::attribute::run(&mut c, Some("2025-12-31")).expect("attribute");
    let match_attr_s = t.elapsed().as_secs_f64();
    eprintln!(
        "bench: match + vacuum + attribute {match_attr_s:.1} s ({} attributed, {} not)",
        a.attributed, a.unattributed
    );
    let group = one_i64(
        &mut c,
        "SELECT g.id FROM edw.patient_group g JOIN edw.care_team ct ON ct.id = g.ref_id
         WHERE g.kind = 'care_team' AND ct.source_id = 'sync-bench-team'",
        &[],
    );
    let row = c
        .query_one(
            "SELECT org_id, count(*) FROM edw.source_patient WHERE org_id IS NOT NULL
             GROUP BY 1 ORDER BY 2 DESC LIMIT 1",
            &[],
        )
        .unwrap();
    let (org, org_patients): (i64, i64) = (row.get(0), row.get(1));
    assert_eq!(
        org_patients as u64, patients,
        "one organisation holds every patient"
    );
    // Attribution leaves out patients without a primary-care visit in 24 months: they
    // join the team's Group too, so it is the organisation's whole panel.
    let topped_up = c
        .execute(
            "INSERT INTO edw.patient_group_member (group_id, person_id)
             SELECT DISTINCT $1::bigint, sp.person_id FROM edw.source_patient sp
             WHERE sp.org_id = $2 AND sp.person_id IS NOT NULL
             ON CONFLICT DO NOTHING",
            &[&group, &org],
        )
        .unwrap();
    let members = one_i64(
        &mut c,
        "SELECT count(*) FROM edw.patient_group_member WHERE group_id = $1",
        &[&group],
    );
    let persons = one_i64(&mut c, "SELECT count(*) FROM edw.person", &[]);
    eprintln!(
        "bench: Group {group} (care team): {members} members ({} attributed + {topped_up} added), {persons} persons",
        members - topped_up as i64
    );

    // The server, as a login role with nothing but edw_api.
    c.batch_execute("CREATE ROLE phm_sync_bench LOGIN IN ROLE edw_api")
        .unwrap();
    let state = base.join("state");
    let port = testkit::pgharness::free_port().unwrap();
    let server = format!("https://127.0.0.1:{port}");
    let serve_log = base.join("serve.stderr");
    let serve = Serve(
        Command::new(&edw_bin)
            .args(["serve", "--db", &pg.url_as("phm_sync_bench", "sync_bench")])
            .args(["--addr", &format!("127.0.0.1:{port}"), "--state-dir"])
            .arg(&state)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&serve_log).unwrap())
            .spawn()
            .expect("phm-edw serve"),
    );
    let spid = serve.0.id().to_string();
    let cert_path = state.join("tls/cert.pem");
    let t0 = Instant::now();
    let agent = loop {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "server did not start: {}",
            std::fs::read_to_string(&serve_log).unwrap_or_default()
        );
        if let Ok(pem) = std::fs::read(&cert_path) {
            let agent = agent_trusting(&pem);
            if agent
                .get(format!("{server}/health"))
                .call()
                .is_ok_and(|r| r.status() == 200)
            {
                break agent;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let cert_pem = std::fs::read_to_string(&cert_path).unwrap();
    let key = KeyPair::generate().unwrap();
    let jwks = base.join("jwks.json");
    std::fs::write(&jwks, key.jwks().to_string()).unwrap();
    let out = Command::new(&edw_bin)
        .args(["client", "add", "--db", &admin, "--name", "sync bench"])
        .args(["--org", &org.to_string(), "--group", &group.to_string()])
        .arg("--jwks")
        .arg(&jwks)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "client add: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let client_id = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_owned();
    let setup_s = started.elapsed().as_secs_f64();

    // ---- 2. Raw download alone. ----
    let plain = Plain {
        agent,
        base: server.clone(),
        client_id: client_id.clone(),
    };
    let token = plain.token(&key);
    let t = Instant::now();
    let (status_url, manifest) = plain.export(&token, group);
    let raw_export_s = t.elapsed().as_secs_f64();
    let dl = base.join("download");
    std::fs::create_dir_all(&dl).unwrap();
    let load_dl = loadavg();
    let c0 = cpu(&spid);
    let t = Instant::now();
    let mut dl_bytes = 0u64;
    for (i, f) in manifest.output.iter().enumerate() {
        let tok = manifest.requires_access_token.then_some(token.as_str());
        let path = dl.join(format!("{i:04}-{}.ndjson", f.resource_type));
        dl_bytes += plain.download(tok, &f.url, &path);
    }
    let dl_s = t.elapsed().as_secs_f64();
    let dl_cpu = cpu(&spid).since(&c0);
    plain.delete(&token, &status_url);
    let manifest_count: u64 = manifest.output.iter().filter_map(|f| f.count).sum();
    eprintln!(
        "bench: raw download {} files, {dl_bytes} bytes in {dl_s:.2} s (export {raw_export_s:.1} s)",
        manifest.output.len()
    );

    // ---- 3. Import alone. ----
    let load_imp = loadavg();
    let mut ci = Cache::open(base.join("import.db"), &CacheKey::generate().unwrap()).unwrap();
    let t = Instant::now();
    let c0 = cpu(&spid);
    let imported = ci.import_ndjson(&dl, |_| {}).expect("import");
    let import_s = t.elapsed().as_secs_f64();
    let import_cpu = cpu(&spid).since(&c0);
    drop(ci);
    let _ = std::fs::remove_file(base.join("import.db"));
    let _ = std::fs::remove_dir_all(&dl);
    eprintln!(
        "bench: import {} resources ({} patients) in {import_s:.2} s",
        imported.resources, imported.patients
    );

    // ---- 4. Full sync. ----
    let mut cfg = SyncConfig::new(&server, &client_id);
    cfg.ca_pem = Some(cert_pem);
    cfg.groups = Some(vec![group.to_string()]);
    let cancel = AtomicBool::new(false);
    let mut cs = Cache::open(base.join("sync.db"), &CacheKey::generate().unwrap()).unwrap();
    let load_full = loadavg();
    let mut ph = Phases::default();
    let (t, e0, c0) = (Instant::now(), epoch_now(), cpu(&spid));
    let full = sync_client::sync_now(&mut cs, &cfg, &key, &mut |p| ph.observe(&p), &cancel)
        .expect("full sync");
    let full_s = t.elapsed().as_secs_f64();
    let full_done = Instant::now();
    let full_cpu = cpu(&spid).since(&c0);
    let (jc, jd) = last_job(&mut c);
    // The server's export (created -> completed), and when it completed in this run.
    let (full_srv_s, full_ready_s) = (jd - jc, jd - e0);
    assert!(full.full, "the first sync is full");
    assert_eq!(
        full.resources, imported.resources,
        "the sync stores what the import of the same export stores"
    );
    let full_manifest = ph.downloading.or(ph.applying);
    let full_manifest_s = secs(t, full_manifest);
    let full_after_manifest_s = full_manifest.map(|m| full_done.duration_since(m).as_secs_f64());
    let full_dl_end_s = secs(t, ph.applying);
    // After the apply's commit: the status URL DELETE and the staging store's clean-up.
    let full_applied_s = secs(t, ph.last_apply);
    eprintln!(
        "bench: full sync {} resources, {} bytes in {full_s:.2} s (manifest at {:?} s, download done at {:?} s)",
        full.resources, full.bytes, full_manifest_s, full_dl_end_s
    );

    // ---- 5. Incremental: 1 % of the patients get a new Observation. ----
    let mut changed: Vec<(String, String)> = Vec::new(); // (source patient id, observation id)
    let mut lines = String::new();
    for block in (0..patients).step_by(100) {
        // The first patient of each block of 100 who has an Observation to copy.
        let Some((i, obs)) = (block..(block + 100).min(patients)).find_map(|i| {
            g.patient(i)
                .into_iter()
                .find(|r| r.resource_type() == "Observation")
                .map(|o| (i, o))
        }) else {
            continue;
        };
        let mut v = serde_json::to_value(&obs).unwrap();
        let id = format!("sync-bench-inc-{i}");
        v["id"] = serde_json::Value::String(id.clone());
        v["effectiveDateTime"] = serde_json::Value::String("2025-12-30T09:00:00Z".into());
        lines.push_str(&v.to_string());
        lines.push('\n');
        changed.push((g.patient_id(i), id));
    }
    let inc_dir = base.join("incremental");
    std::fs::create_dir_all(&inc_dir).unwrap();
    std::fs::write(inc_dir.join("Observation.ndjson"), lines).unwrap();
    let t = Instant::now();
    let inc_rep =
        edw::ingest::ingest(&mut c, std::slice::from_ref(&inc_dir), &opts).expect("ingest 1 %");
    let inc_ingest_s = t.elapsed().as_secs_f64();
    assert_eq!(
        inc_rep.iter().map(|r| r.loaded).sum::<i64>(),
        changed.len() as i64
    );
    let mut expect: Vec<(String, String)> = Vec::new(); // (person id, observation id)
    for (sid, oid) in &changed {
        let pid = one_i64(
            &mut c,
            "SELECT person_id FROM edw.source_patient WHERE source = 'synth' AND source_id = $1",
            &[sid],
        );
        expect.push((pid.to_string(), oid.clone()));
    }
    let load_inc = loadavg();
    let (t, e0, c0) = (Instant::now(), epoch_now(), cpu(&spid));
    let mut ph_inc = Phases::default();
    let inc = sync_client::sync_now(&mut cs, &cfg, &key, &mut |p| ph_inc.observe(&p), &cancel)
        .expect("incremental sync");
    let inc_s = t.elapsed().as_secs_f64();
    let inc_cpu = cpu(&spid).since(&c0);
    let inc_applied_s = secs(t, ph_inc.last_apply);
    let (jc, jd) = last_job(&mut c);
    let (inc_srv_s, inc_ready_s) = (jd - jc, jd - e0);
    assert!(!inc.full, "the second sync is incremental");
    let ids: Vec<String> = expect.iter().map(|(p, _)| p.clone()).collect();
    let stored = cs.patient_resources(&ids).unwrap();
    for ((pid, oid), pr) in expect.iter().zip(&stored) {
        let needle = format!("\"{oid}\"");
        assert!(
            pr.resources.iter().any(|r| r.contains(&needle)),
            "patient {pid}: the new Observation is in the cache"
        );
    }
    eprintln!(
        "bench: incremental sync {} resources ({} patients changed), {} bytes in {inc_s:.2} s",
        inc.resources,
        inc.changed_patients.len(),
        inc.bytes
    );

    // ---- 6. 10,000 queued actions drained. ----
    let pids = cs.patient_ids().unwrap();
    let t = Instant::now();
    for k in 0..actions {
        let e = OutboxEntry {
            id: sync_client::keys::random_uuid().unwrap(),
            created_at: access::time::rfc3339_from_unix_ms(access::time::now_unix_ms()),
            username: "bench".into(),
            kind: "outreach".into(),
            patient_id: pids[k % pids.len()].clone(),
            measure_id: None,
            group_id: Some(group.to_string()),
            body: serde_json::json!({"note": "sync bench", "n": k}).to_string(),
        };
        cs.record_action(&e, None, None).expect("record action");
    }
    let record_s = t.elapsed().as_secs_f64();
    let load_act = loadavg();
    let (t, c0) = (Instant::now(), cpu(&spid));
    let sent = sync_client::send_actions(&cs, &cfg, &key, &cancel).expect("send actions");
    let send_s = t.elapsed().as_secs_f64();
    let send_cpu = cpu(&spid).since(&c0);
    assert_eq!(
        (sent.created, sent.duplicate, sent.refused),
        (actions as u64, 0, 0)
    );
    let rows = one_i64(&mut c, "SELECT count(*) FROM edw.worklist_action", &[]);
    assert_eq!(
        rows, actions as i64,
        "every action is in edw.worklist_action"
    );
    assert!(cs.outbox_pending().unwrap().is_empty());
    drop(cs);

    // ---- Report. ----
    let mb = dl_bytes as f64 / 1e6;
    let slower = dl_s.max(import_s);
    let f = |v: Option<f64>| v.map_or("?".into(), |v| format!("{v:.2} s"));
    let goal = |ok: bool| if ok { "met" } else { "**missed**" };
    println!(
        "# Panel sync benchmark (issue 13)\n\n\
{patients} phm-synth patients (seed 1, one clinic organisation), {cpus} cores, \
PGHARNESS_SETTINGS=`{}`.\n\
Load average (1/5/15 min): start {load_start}; raw download {load_dl}; import {load_imp}; \
full sync {load_full}; incremental {load_inc}; actions {load_act}.\n\n\
| step | figure |\n|---|---|\n\
| EDW load: phm-synth / ingest / match+attribute | {} resources: {synth_s:.1} s / {loaded} in {ingest_s:.1} s / {match_attr_s:.1} s ({} attributed) |\n\
| Group (care team, organisation {org}) | {members} patients ({topped_up} without attribution added) |\n\
| setup total (load, server, client) | {setup_s:.1} s |\n\
| server export (kick-off to manifest, raw client) | {raw_export_s:.2} s, {} files, {manifest_count} resources |\n\
| **raw download** alone | {dl_bytes} bytes ({mb:.1} MB) in **{dl_s:.2} s = {:.1} MB/s** ({dl_cpu}) |\n\
| **import** alone (`import_ndjson`, new encrypted cache) | {} resources in **{import_s:.2} s** ({:.0} resources/s; {import_cpu}) |\n\
| **full sync** (`sync_now`, new encrypted cache) | **{full_s:.2} s**: manifest at {}, download done at {} ({} of {} resources applied by then), applied (committed) at {}, done at {full_s:.2} s; {} bytes, {} resources ({full_cpu}) |\n\
| full sync, server export (job created → completed) | {full_srv_s:.2} s, completed at {full_ready_s:.2} s into the sync |\n\
| full sync, manifest → done | {} (first apply progress → done); {:.2} s from the job's completion |\n\
| ratio full sync / max(download, import) | {:.2} (manifest → done: {}) — goal ≤ 1.2: {} |\n\
| full sync ≤ 60 s | {} |\n\
| incremental change in the EDW | {} patients with a new Observation, ingested in {inc_ingest_s:.2} s |\n\
| **incremental sync** | **{inc_s:.2} s** (server export {inc_srv_s:.2} s, completed at {inc_ready_s:.2} s; applied (committed) at {}), {} resources, {} patients changed, {} bytes ({inc_cpu}) — goal ≤ 5 s: {} |\n\
| {actions} actions recorded in the cache (`record_action`) | {record_s:.2} s |\n\
| **{actions} actions drained** (`send_actions`) | **{send_s:.2} s = {:.0} actions/s**; {rows} rows in edw.worklist_action ({send_cpu}) |\n\
| whole run | {:.1} s |",
        std::env::var("PGHARNESS_SETTINGS").unwrap_or_else(|_| "none".into()),
        stats.total_resources(),
        a.attributed,
        manifest.output.len(),
        mb / dl_s,
        imported.resources,
        imported.resources as f64 / import_s,
        f(full_manifest_s),
        f(full_dl_end_s),
        ph.resources_at_download_end,
        full.resources,
        f(full_applied_s),
        full.bytes,
        full.resources,
        f(full_after_manifest_s),
        full_s - full_ready_s,
        full_s / slower,
        full_after_manifest_s.map_or("?".into(), |v| format!("{:.2}", v / slower)),
        goal(full_s <= 1.2 * slower),
        goal(full_s <= 60.0),
        changed.len(),
        f(inc_applied_s),
        inc.resources,
        inc.changed_patients.len(),
        inc.bytes,
        goal(inc_s <= 5.0),
        actions as f64 / send_s,
        started.elapsed().as_secs_f64(),
    );
    drop(c);
    drop(serve);
    drop(pg);
}
