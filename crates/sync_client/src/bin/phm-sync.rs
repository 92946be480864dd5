//! `phm-sync`: sync an encrypted cache from a FHIR Bulk Data server (for tests and
//! operators), and make the workstation's key pair.
//!
//! ```text
//! phm-sync keygen --out KEY.pk8 --jwks JWKS.json
//! phm-sync [sync|actions|audit] --cache PATH --server URL --client-id ID --key-file KEY.pk8
//!          [--ca CA.pem] [--group ID]... [--allow-plain-http]
//! ```
//! `sync` (the default) syncs the panel; `actions` sends the outbox's unsent worklist
//! actions; `audit` ships the cache's audit chain.
//! The cache key comes from `PHM_SYNC_CACHE_KEY` (64 hex digits). The report is printed
//! as JSON on stdout, progress on stderr. Exit 0 on success, 1 on a sync error, 2 on usage.

use std::sync::atomic::AtomicBool;

fn usage() -> ! {
    eprintln!(
        "usage: phm-sync keygen --out KEY.pk8 --jwks JWKS.json\n       \
         phm-sync [sync|actions|audit] --cache PATH --server URL --client-id ID \
         --key-file KEY.pk8 [--ca CA.pem] [--group ID]... [--allow-plain-http]\n       (cache key: PHM_SYNC_CACHE_KEY, hex)"
    );
    std::process::exit(2)
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let command = match args.first().map(String::as_str) {
        Some(c @ ("keygen" | "sync" | "actions" | "audit")) => {
            let c = c.to_owned();
            args.remove(0);
            c
        }
        _ => "sync".to_owned(),
    };
    let keygen = command == "keygen";
    let mut opt = std::collections::HashMap::<String, Vec<String>>::new();
    let mut flags = std::collections::HashSet::new();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--allow-plain-http" => {
                flags.insert(a);
            }
            "--out" | "--jwks" | "--cache" | "--server" | "--client-id" | "--key-file" | "--ca"
            | "--group" => {
                let v = it.next().unwrap_or_else(|| usage());
                opt.entry(a).or_default().push(v);
            }
            _ => usage(),
        }
    }
    let one = |k: &str| opt.get(k).and_then(|v| v.last().cloned());
    let need = |k: &str| one(k).unwrap_or_else(|| usage());
    if keygen {
        let k = sync_client::KeyPair::generate().unwrap_or_else(|e| fail(&e.to_string()));
        write_private(&need("--out"), k.pkcs8());
        std::fs::write(
            need("--jwks"),
            serde_json::to_string_pretty(&k.jwks()).expect("json"),
        )
        .unwrap_or_else(|e| fail(&format!("could not write the JWKS: {}", e.kind())));
        println!("{}", k.kid());
        return;
    }
    let key_bytes = std::fs::read(need("--key-file"))
        .unwrap_or_else(|e| fail(&format!("could not read the key file: {}", e.kind())));
    let key = sync_client::KeyPair::from_pkcs8(&key_bytes).unwrap_or_else(|e| fail(&e.to_string()));
    let cache_key = std::env::var("PHM_SYNC_CACHE_KEY")
        .ok()
        .and_then(|h| cache::CacheKey::from_hex(h.trim()))
        .unwrap_or_else(|| fail("PHM_SYNC_CACHE_KEY must hold the cache key (64 hex digits)"));
    let mut cfg = sync_client::SyncConfig::new(&need("--server"), &need("--client-id"));
    if let Some(ca) = one("--ca") {
        cfg.ca_pem = Some(
            std::fs::read_to_string(&ca)
                .unwrap_or_else(|e| fail(&format!("could not read the CA file: {}", e.kind()))),
        );
    }
    cfg.allow_plain_http = flags.contains("--allow-plain-http");
    cfg.groups = opt.get("--group").cloned();
    let mut cache = cache::Cache::open(need("--cache"), &cache_key)
        .unwrap_or_else(|e| fail(&format!("cache: {e}")));
    let cancel = AtomicBool::new(false);
    if command == "actions" {
        match sync_client::send_actions(&cache, &cfg, &key, &cancel) {
            Ok(r) => println!("{}", serde_json::to_string(&r).expect("json")),
            Err(e) => fail(&e.to_string()),
        }
        return;
    }
    if command == "audit" {
        match sync_client::ship_audit(&cache, &cfg, &key, &cancel) {
            Ok(h) => println!("{}", serde_json::to_string(&h).expect("json")),
            Err(e) => fail(&e.to_string()),
        }
        return;
    }
    let mut last = std::time::Instant::now();
    let mut progress = |p: sync_client::SyncProgress| {
        if last.elapsed().as_millis() >= 500 || p.phase == sync_client::SyncPhase::Done {
            last = std::time::Instant::now();
            eprintln!(
                "{:?}: {} resources, {} bytes{}",
                p.phase,
                p.resources,
                p.bytes,
                p.server_progress
                    .map(|s| format!(" (server: {s})"))
                    .unwrap_or_default()
            );
        }
    };
    match sync_client::sync_now(&mut cache, &cfg, &key, &mut progress, &cancel) {
        Ok(r) => println!("{}", serde_json::to_string(&r).expect("json")),
        Err(e) => fail(&e.to_string()),
    }
}

fn write_private(path: &str, bytes: &[u8]) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap_or_else(|e| fail(&format!("could not write the key file: {}", e.kind())));
    f.write_all(bytes)
        .unwrap_or_else(|e| fail(&format!("could not write the key file: {}", e.kind())));
}

fn fail(msg: &str) -> ! {
    eprintln!("phm-sync: {msg}");
    std::process::exit(1)
}
