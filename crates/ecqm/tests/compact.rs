//! The compact form the workstation ships (`assets/measures.json.gz`): it is what
//! `phm-ecqm compact` makes from the shared packages, and every official case evaluates to the
//! same populations from it as from the published bundles.

use std::path::{Path, PathBuf};

use ecqm::engine::MeasurePackage;
use ecqm::patients::PatientItem;
use ecqm::EvalOptions;
use rayon::prelude::*;
use serde_json::Value as Json;

fn shared_dir() -> PathBuf {
    std::env::var_os("PHM_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
}

fn asset() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/measures.json.gz")
}

fn sorted_json(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("json"))
        .collect();
    v.sort();
    v
}

fn gunzip(bytes: &[u8]) -> Json {
    use std::io::Read;
    let mut text = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut text)
        .unwrap();
    serde_json::from_slice(&text).unwrap()
}

#[test]
fn shipped_asset_is_the_compact_form_of_the_shared_packages() {
    let bundles: Vec<Json> = sorted_json(&shared_dir().join("ecqm/measures"))
        .iter()
        .map(|f| serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap())
        .collect();
    let fresh = ecqm::compact::compact(&bundles).unwrap();
    let shipped = gunzip(&std::fs::read(asset()).unwrap());
    assert!(
        fresh == shipped,
        "assets/measures.json.gz is out of date: run \
         `cargo run -p ecqm --bin phm-ecqm -- compact --measure ../shared/ecqm/measures --out assets/measures.json.gz`"
    );
    // A few hundred kilobytes instead of 100 MB.
    let size = std::fs::metadata(asset()).unwrap().len();
    assert!(size < 1_000_000, "{size} bytes");
}

#[test]
fn compact_packages_evaluate_every_official_case_as_the_bundles_do() {
    let compact = ecqm::compact::load_gzip(&std::fs::read(asset()).unwrap()).unwrap();
    let ecqm_dir = shared_dir().join("ecqm");
    let bundles = sorted_json(&ecqm_dir.join("measures"));
    assert_eq!(compact.len(), bundles.len());
    let mut cases = 0;
    for (file, small) in bundles.iter().zip(&compact) {
        let full = MeasurePackage::load(file).unwrap();
        assert_eq!(
            format!("{:?}", full.def),
            format!("{:?}", small.def),
            "{}",
            file.display()
        );
        let period = full.default_period().unwrap();
        let (a, b) = (
            full.prepare(&period).unwrap(),
            small.prepare(&period).unwrap(),
        );
        assert_eq!(a.retrieved_types(), b.retrieved_types());
        let name = file.file_stem().unwrap().to_string_lossy().to_string();
        let case_files = sorted_json(&ecqm_dir.join("cases").join(&name));
        cases += case_files.len();
        let opts = EvalOptions {
            stratifiers: true,
            supplemental_data: true,
            single_pass: false,
        };
        case_files.par_iter().for_each(|case| {
            let record = PatientItem::File(case.clone()).load().unwrap();
            let x = a.evaluate(&record, opts).map_err(|e| e.to_string());
            let y = b.evaluate(&record, opts).map_err(|e| e.to_string());
            assert_eq!(x, y, "{}", case.display());
        });
    }
    assert!(cases >= 515, "{cases} cases");
}

#[test]
fn damaged_compact_forms_are_refused_clearly() {
    let e = ecqm::compact::load_gzip(b"not gzip")
        .unwrap_err()
        .to_string();
    assert!(e.contains("not valid gzip"), "{e}");
    let e = ecqm::compact::load(&serde_json::json!({"format": "other"}))
        .unwrap_err()
        .to_string();
    assert!(e.contains("format"), "{e}");
    let mut doc = gunzip(&std::fs::read(asset()).unwrap());
    doc["measures"][0]["libraries"] = serde_json::json!([999_999]);
    let e = ecqm::compact::load(&doc).unwrap_err().to_string();
    assert!(e.contains("bad library index"), "{e}");
}
