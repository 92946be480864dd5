//! Time-bounded randomized mutation test (runs on stable Rust, in CI): the
//! measure parser and the patient readers get mutated versions of the real
//! shared inputs and must return errors, never panic. `PHM_FUZZ_SECS`
//! (default 3) bounds the run; `PHM_FUZZ_SEED` fixes the seed.
//! The cargo-fuzz targets in `fuzz/` cover the same entry points plus the
//! cql library loader with coverage guidance.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ecqm::package::parse_measure_bundle;
use ecqm::patients::{group_ndjson_lines, patient_from_bundle};
use serde_json::{json, Value as Json};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545F4914F6CDD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn shared_dir() -> PathBuf {
    std::env::var_os("PHM_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
}

fn random_leaf(r: &mut Rng) -> Json {
    match r.below(7) {
        0 => Json::Null,
        1 => json!(r.next() as i64),
        2 => json!(""),
        3 => json!("Patient/"),
        4 => json!([]),
        5 => json!({}),
        _ => json!(true),
    }
}

/// Mutates one random node of the tree.
fn mutate(v: &mut Json, r: &mut Rng, depth: usize) {
    let descend = depth < 12 && r.below(4) != 0;
    match v {
        Json::Object(m) if !m.is_empty() => {
            let k = m.keys().nth(r.below(m.len())).unwrap().clone();
            if descend {
                mutate(m.get_mut(&k).unwrap(), r, depth + 1);
            } else if r.below(2) == 0 {
                m.remove(&k);
            } else {
                m.insert(k, random_leaf(r));
            }
        }
        Json::Array(a) if !a.is_empty() => {
            let i = r.below(a.len());
            if descend {
                mutate(&mut a[i], r, depth + 1);
            } else if r.below(2) == 0 {
                a.remove(i);
            } else {
                a[i] = random_leaf(r);
            }
        }
        _ => *v = random_leaf(r),
    }
}

fn mutate_bytes(b: &mut Vec<u8>, r: &mut Rng) {
    if b.is_empty() {
        b.push(b'{');
        return;
    }
    match r.below(3) {
        0 => {
            let i = r.below(b.len());
            b[i] = r.next() as u8;
        }
        1 => b.truncate(r.below(b.len())),
        _ => {
            let i = r.below(b.len());
            let c = b"{}[]\",:\n\t\\"[r.below(10)];
            b.insert(i, c);
        }
    }
}

#[test]
fn mutated_inputs_never_panic() {
    let secs: u64 = std::env::var("PHM_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let seed: u64 = std::env::var("PHM_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x9E3779B97F4A7C15);
    let mut r = Rng(seed | 1);
    let ecqm = shared_dir().join("ecqm");

    // Seeds: the Measure + main Library (content stripped) of one real
    // bundle, and a few real cases.
    let mut measure_seed = json!({"resourceType":"Bundle","entry":[]});
    if let Ok(b) = std::fs::read(ecqm.join("measures/CervicalCancerScreeningFHIR.json")) {
        let b: Json = serde_json::from_slice(&b).unwrap();
        for e in b["entry"].as_array().unwrap() {
            let rt = e["resource"]["resourceType"].as_str().unwrap_or("");
            if rt == "Measure" || rt == "Library" {
                let mut res = e["resource"].clone();
                res.as_object_mut().unwrap().remove("content");
                res.as_object_mut().unwrap().remove("text");
                measure_seed["entry"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"resource": res}));
            }
        }
        assert!(parse_measure_bundle(&measure_seed).is_ok());
    }
    let mut case_seeds: Vec<Json> = Vec::new();
    if let Ok(rd) = std::fs::read_dir(ecqm.join("cases/CervicalCancerScreeningFHIR")) {
        for e in rd.flatten().take(5) {
            if let Ok(b) = std::fs::read(e.path()) {
                case_seeds.push(serde_json::from_slice(&b).unwrap());
            }
        }
    }
    if case_seeds.is_empty() {
        case_seeds.push(json!({"resourceType":"Bundle","entry":[
            {"resource":{"resourceType":"Patient","id":"p"}},
            {"resource":{"resourceType":"Encounter","subject":{"reference":"Patient/p"}}}]}));
    }

    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut iterations = 0u64;
    while Instant::now() < deadline {
        iterations += 1;
        // Measure bundle, tree mutations.
        let mut m = measure_seed.clone();
        for _ in 0..=r.below(4) {
            mutate(&mut m, &mut r, 0);
        }
        let _ = parse_measure_bundle(&m);
        // Measure bundle, byte mutations.
        let mut bytes = serde_json::to_vec(&m).unwrap();
        for _ in 0..=r.below(3) {
            mutate_bytes(&mut bytes, &mut r);
        }
        if let Ok(j) = serde_json::from_slice::<Json>(&bytes) {
            let _ = parse_measure_bundle(&j);
        }
        // Patient bundle.
        let mut c = case_seeds[r.below(case_seeds.len())].clone();
        for _ in 0..=r.below(4) {
            mutate(&mut c, &mut r, 0);
        }
        let _ = patient_from_bundle(&c);
        // NDJSON: the case's resources as lines, then byte mutations.
        let mut text = String::new();
        if let Some(entries) = c.get("entry").and_then(Json::as_array) {
            for e in entries {
                if let Some(res) = e.get("resource") {
                    text.push_str(&res.to_string());
                    text.push('\n');
                }
            }
        }
        let mut bytes = text.into_bytes();
        for _ in 0..=r.below(3) {
            mutate_bytes(&mut bytes, &mut r);
        }
        let text = String::from_utf8_lossy(&bytes);
        let (items, _) = group_ndjson_lines(text.lines());
        for it in items {
            let _ = it.load();
        }
    }
    println!("robustness: {iterations} mutation rounds in {secs}s, no panic");
    assert!(iterations > 0);
}

/// Corrupted real packages reach the cql loader: errors, not panics.
#[test]
fn corrupted_packages_give_errors() {
    use base64::Engine as _;
    let path = shared_dir().join("ecqm/measures/FallsScreeningForFutureFallRiskFHIR.json");
    let Ok(bytes) = std::fs::read(&path) else {
        return;
    };
    let orig: Json = serde_json::from_slice(&bytes).unwrap();
    let main_url = orig["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["resource"]["resourceType"] == "Measure")
        .unwrap()["resource"]["library"][0]
        .as_str()
        .unwrap()
        .to_string();
    let b64 = base64::engine::general_purpose::STANDARD;
    let corrupt = |f: &dyn Fn(&mut Json)| {
        let mut b = orig.clone();
        for e in b["entry"].as_array_mut().unwrap() {
            if e["resource"]["url"] == main_url.as_str() {
                f(&mut e["resource"]);
            }
        }
        b
    };
    let elm_index = |lib: &Json| {
        lib["content"]
            .as_array()
            .unwrap()
            .iter()
            .position(|c| c["contentType"] == "application/elm+json")
            .unwrap()
    };
    let cases: Vec<(&str, Json)> = vec![
        (
            "no content",
            corrupt(&|l| {
                l.as_object_mut().unwrap().remove("content");
            }),
        ),
        (
            "bad base64",
            corrupt(&|l| {
                let i = elm_index(l);
                l["content"][i]["data"] = json!("!!!not base64!!!");
            }),
        ),
        (
            "truncated ELM",
            corrupt(&|l| {
                let i = elm_index(l);
                let raw = b64
                    .decode(l["content"][i]["data"].as_str().unwrap())
                    .unwrap();
                l["content"][i]["data"] = json!(b64.encode(&raw[..raw.len() / 2]));
            }),
        ),
        (
            "ELM not a library",
            corrupt(&|l| {
                let i = elm_index(l);
                l["content"][i]["data"] = json!(b64.encode(b"{\"library\":{\"statements\":7}}"));
            }),
        ),
    ];
    for (what, b) in cases {
        let r = std::panic::catch_unwind(|| {
            ecqm::engine::MeasurePackage::from_json(&b).and_then(|p| {
                let period = p.default_period()?;
                p.prepare(&period).map(|_| ())
            })
        });
        match r {
            Ok(Ok(())) => println!("{what}: loaded (the engine fell back to another content type)"),
            Ok(Err(e)) => println!("{what}: error: {e}"),
            Err(_) => panic!("{what}: the loader panicked"),
        }
    }
}
