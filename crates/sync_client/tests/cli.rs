//! `phm-sync` as a separate process, without a server: key generation, and the clear,
//! recorded errors of a sync that cannot reach its server or is not allowed to try.
//! (Syncs against a real `phm-edw serve` live in tests/edw.rs once the server lands.)

use std::process::Command;

fn phm_sync() -> Command {
    Command::new(env!("CARGO_BIN_EXE_phm-sync"))
}

#[test]
fn keygen_writes_a_private_pkcs8_and_the_public_jwks() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (pk, jwks) = (dir.path().join("k.pk8"), dir.path().join("jwks.json"));
    let out = phm_sync()
        .args(["keygen", "--out"])
        .arg(&pk)
        .arg("--jwks")
        .arg(&jwks)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kid = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(
        std::fs::metadata(&pk).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let key = sync_client::KeyPair::from_pkcs8(&std::fs::read(&pk).unwrap()).unwrap();
    assert_eq!(key.kid(), kid);
    let j: serde_json::Value = serde_json::from_slice(&std::fs::read(&jwks).unwrap()).unwrap();
    let k = &j["keys"][0];
    assert_eq!(
        (k["kty"].as_str(), k["crv"].as_str()),
        (Some("EC"), Some("P-384"))
    );
    assert_eq!(
        (k["alg"].as_str(), k["use"].as_str()),
        (Some("ES384"), Some("sig"))
    );
    assert_eq!(k["kid"].as_str(), Some(kid.as_str()));
    assert!(k.get("d").is_none(), "no private part in the JWKS");
}

/// Runs a sync into a fresh cache; returns (exit ok, stderr, the cache's recorded error).
fn sync(server: &str, extra: &[&str]) -> (bool, String, Option<String>) {
    let dir = tempfile::tempdir().unwrap();
    let key = sync_client::KeyPair::generate().unwrap();
    let pk = dir.path().join("k.pk8");
    std::fs::write(&pk, key.pkcs8()).unwrap();
    let cache_key = cache::CacheKey::generate().unwrap();
    let path = dir.path().join("c.db");
    drop(cache::Cache::open(&path, &cache_key).unwrap());
    let out = phm_sync()
        .env("PHM_SYNC_CACHE_KEY", cache_key.to_hex())
        .arg("--cache")
        .arg(&path)
        .args(["--server", server, "--client-id", "ws1", "--key-file"])
        .arg(&pk)
        .args(extra)
        .output()
        .unwrap();
    let c = cache::Cache::open(&path, &cache_key).unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        c.sync_state().unwrap().last_error,
    )
}

#[test]
fn an_unreachable_server_is_a_plain_offline_error_recorded_in_the_cache() {
    // A loopback port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}");
    let (ok, stderr, recorded) = sync(&url, &["--allow-plain-http"]);
    assert!(!ok);
    assert!(stderr.contains("offline"), "{stderr}");
    assert!(recorded.unwrap().contains("offline"));
    let https = format!("https://127.0.0.1:{port}");
    let (ok, stderr, _) = sync(&https, &[]);
    assert!(!ok && stderr.contains("offline"), "{stderr}");
}

#[test]
fn plain_http_is_refused_without_the_flag_and_off_loopback() {
    let (ok, stderr, _) = sync("http://127.0.0.1:9", &[]);
    assert!(!ok && stderr.contains("allow-plain-http"), "{stderr}");
    let (ok, stderr, _) = sync("http://192.0.2.1:9", &["--allow-plain-http"]);
    assert!(!ok && stderr.contains("loopback"), "{stderr}");
}
