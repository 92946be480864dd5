//! A population written in parts (as the 1 M-patient EDW bench loads it) is the
//! whole output, byte for byte, once each type's files are concatenated in order.
use std::path::Path;

fn read(dir: &Path, t: &str) -> Vec<u8> {
    std::fs::read(dir.join(format!("{t}.ndjson"))).unwrap_or_default()
}

#[test]
fn parts_concatenate_to_the_whole_output() {
    let g = synth::Generator::new(synth::SynthConfig::new(700, 5)).unwrap();
    let base = std::env::temp_dir().join(format!("synth-parts-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let whole = base.join("whole");
    let all = synth::write_ndjson_dir(&g, &whole, 2, &mut |_| {}).unwrap();
    let is_group = |r: &fhir::Resource| r.resource_type() == "Group";
    let dirs = [base.join("p1"), base.join("p2"), base.join("p3")];
    let mut total = 0;
    total += synth::write_ndjson_part(&g, &dirs[0], 0..300, &|r| !is_group(r), 2, &mut |_| {})
        .unwrap()
        .total_resources();
    total += synth::write_ndjson_part(&g, &dirs[1], 300..700, &|_| false, 1, &mut |_| {})
        .unwrap()
        .total_resources();
    total += synth::write_ndjson_part(&g, &dirs[2], 700..700, &is_group, 1, &mut |_| {})
        .unwrap()
        .total_resources();
    assert_eq!(total, all.total_resources());
    for t in synth::OUTPUT_TYPES {
        let joined: Vec<u8> = dirs.iter().flat_map(|d| read(d, t)).collect();
        assert_eq!(joined, read(&whole, t), "{t}");
    }
    let _ = std::fs::remove_dir_all(&base);
}
