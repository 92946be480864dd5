//! The cache against the project's synthetic generator (crates/synth): the
//! import maps its resources into a usable panel and timelines.

mod common;

use cache::{Cache, EventKind, PanelQuery};

#[test]
fn synth_panel_imports_and_queries() {
    let gen = synth::Generator::new(synth::SynthConfig::new(300, 7)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cache::open(dir.path().join("c.db"), &common::key()).unwrap();
    let resources: Vec<fhir::Resource> = gen.resources().collect();
    let n = resources.len() as u64;
    let s = c.import_resources(resources, |_| {}).unwrap();
    assert_eq!(s.resources, n);
    assert_eq!(s.patients, 300);
    assert_eq!(s.groups, u64::from(gen.providers()));
    assert!(s.events > 300 * 5, "{s:?}");

    let page = c
        .panel(&PanelQuery {
            limit: 1000,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(page.total, 300);
    // Every synthetic patient has a PCP with a name, and a birth date.
    for r in &page.rows {
        assert!(
            r.pcp_id.is_some() && r.pcp_name.is_some(),
            "{}",
            r.patient_id
        );
        assert!(r.birth_date.is_some());
        assert!(!r.name.is_empty());
    }
    assert!(page.rows.iter().any(|r| !r.conditions.is_empty()));
    assert!(page.rows.iter().any(|r| r.last_visit.is_some()));
    // PCP filter agrees with the generator's assignment.
    let pcp = gen.practitioner_id(gen.pcp_of(0));
    let by_pcp = c
        .panel(&PanelQuery {
            pcp_id: Some(pcp.clone()),
            limit: 1000,
            ..Default::default()
        })
        .unwrap();
    let expected = (0..300)
        .filter(|&i| gen.practitioner_id(gen.pcp_of(i)) == pcp)
        .count();
    assert_eq!(by_pcp.total as usize, expected);

    // Code filter matches any coding of an active condition (synth codes
    // type 2 diabetes as ICD-10 E11.9 plus SNOMED 44054006).
    let icd = c
        .panel(&PanelQuery {
            condition: Some("E11.9".into()),
            limit: 1000,
            ..Default::default()
        })
        .unwrap();
    let sct = c
        .panel(&PanelQuery {
            condition: Some("44054006".into()),
            limit: 1000,
            ..Default::default()
        })
        .unwrap();
    assert!(icd.total > 0);
    assert_eq!(icd.total, sct.total);

    // Timelines: ordered, and vitals found for at least some patients.
    let mut with_bp = 0;
    for r in &page.rows {
        let t = c.timeline(&r.patient_id, &[]).unwrap().unwrap();
        let ts: Vec<_> = t.events.iter().filter_map(|e| e.date.clone()).collect();
        assert!(!t.events.is_empty());
        with_bp += usize::from(t.latest_bp.is_some());
        let kinds: Vec<_> = c
            .timeline(&r.patient_id, &[EventKind::Encounter])
            .unwrap()
            .unwrap()
            .events
            .iter()
            .map(|e| e.kind)
            .collect();
        assert!(kinds.iter().all(|k| *k == EventKind::Encounter));
        assert!(ts.len() <= t.events.len());
    }
    assert!(
        with_bp > 0,
        "no blood pressure found in any synthetic timeline"
    );
}
