#![no_main]
//! The patient readers: a Bundle file, or NDJSON lines grouped by patient.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(json) = serde_json::from_slice::<serde_json::Value>(data) {
        if let Ok(rec) = ecqm::patients::patient_from_bundle(&json) {
            let _ = ecqm::engine::patient_data(rec.resources);
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let (items, _) = ecqm::patients::group_ndjson_lines(text.lines());
        for it in items {
            if let Ok(rec) = it.load() {
                let _ = ecqm::engine::patient_data(rec.resources);
            }
        }
    }
});
