#![no_main]
//! The measure-bundle loader: JSON parsing, Measure parsing and the cql
//! library set must reject garbage with an error, never a panic.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(json) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = ecqm::package::parse_measure_bundle(&json);
        if let Ok(p) = ecqm::engine::MeasurePackage::from_json(&json) {
            if let Ok(period) = p.default_period() {
                let _ = p.prepare(&period);
            }
        }
    }
});
