//! Care gaps on the workstation, against a real SQLCipher cache and the real engine:
//! the stored populations and open gaps equal what `phm-ecqm eval` computes on the same panel
//! exported as NDJSON; closure evidence closes a gap only when it meets the measure; panels are
//! enforced in Rust.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{demo_workstation, Fixture};

use access::Role;
use cache::Cache;
use workstation::{
    demo_passphrase, ActionRequest, ClosureEvidence, GapRef, PanelQuery, WorklistAction,
    WorklistQuery, Workstation,
};

fn fixture(patients: u64) -> Fixture {
    demo_workstation(patients)
}

fn sign_in(ws: &Workstation, user: &str) {
    ws.login(user, &demo_passphrase(user)).unwrap();
    ws.set_purpose("TREAT").unwrap();
}

fn shared_dir() -> PathBuf {
    std::env::var_os("PHM_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
}

/// The `phm-ecqm` binary next to this test's binary (built by `cargo test --workspace`),
/// else built now.
fn phm_ecqm() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let bin = dir.join("phm-ecqm");
    if !bin.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "ecqm", "--bin", "phm-ecqm"])
            .status()
            .unwrap();
        assert!(status.success());
    }
    bin
}

/// Writes the cached panel as Bulk Data NDJSON, one file per resource type.
fn export_ndjson(f: &Fixture, dir: &Path) -> usize {
    let c = Cache::open(&f.path, &f.key).unwrap();
    let ids = c.patient_ids().unwrap();
    let mut files: BTreeMap<String, std::fs::File> = BTreeMap::new();
    let mut write = |raw: &str| {
        let v: serde_json::Value = serde_json::from_str(raw).unwrap();
        let t = v["resourceType"].as_str().unwrap().to_string();
        let file = files
            .entry(t.clone())
            .or_insert_with(|| std::fs::File::create(dir.join(format!("{t}.ndjson"))).unwrap());
        writeln!(file, "{raw}").unwrap();
    };
    for (_, _, raw) in c.shared_resources().unwrap() {
        write(&raw);
    }
    for p in c.patient_resources(&ids).unwrap() {
        for r in &p.resources {
            write(r);
        }
    }
    ids.len()
}

type Counts = BTreeMap<(String, String), [u64; 6]>;

const CODES: [&str; 6] = [
    "initial-population",
    "denominator",
    "denominator-exclusion",
    "denominator-exception",
    "numerator",
    "numerator-exclusion",
];

#[test]
fn stored_populations_and_open_gaps_equal_phm_ecqm_on_the_exported_panel() {
    let f = fixture(160);
    let status = f.ws.evaluate_panel(&|_| {}).unwrap();
    assert_eq!(status.phase, "done");
    assert_eq!(
        (status.total, status.evaluated, status.failed),
        (160, 160, 0)
    );
    let year = &status.period_start.clone().unwrap()[..4];

    let work = tempfile::tempdir().unwrap();
    let ndjson = work.path().join("ndjson");
    std::fs::create_dir(&ndjson).unwrap();
    assert_eq!(export_ndjson(&f, &ndjson), 160);
    let results = work.path().join("results.jsonl");
    let worklist = work.path().join("worklist.jsonl");
    let out = Command::new(phm_ecqm())
        .arg("eval")
        .arg("--measure")
        .arg(shared_dir().join("ecqm/measures"))
        .arg("--patients")
        .arg(&ndjson)
        .args(["--period-start", &format!("{year}-01-01")])
        .args(["--period-end", &format!("{year}-12-31")])
        .arg("--out")
        .arg(&results)
        .args(["--report", "worklist", "--report-out"])
        .arg(&worklist)
        .args([
            "--improvement-notation",
            workstation::evaluation::SHIPPED_IMPROVEMENT_OVERRIDES,
        ])
        .arg("--quiet")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "phm-ecqm: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The engine's counts per measure and group.
    let mut engine: Counts = BTreeMap::new();
    for line in std::fs::read_to_string(&results).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        for g in v["groups"].as_array().unwrap() {
            let key = (
                v["measure"].as_str().unwrap().to_string(),
                g["id"].as_str().unwrap().to_string(),
            );
            let slot = engine.entry(key).or_default();
            for (i, code) in CODES.iter().enumerate() {
                slot[i] += g["populations"][code].as_u64().unwrap_or(0);
            }
        }
    }
    let mut engine_open: BTreeMap<(String, String), u64> = BTreeMap::new();
    for line in std::fs::read_to_string(&worklist).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if matches!(v["status"].as_str(), Some("open-gap" | "prospective-gap")) {
            let key = (
                v["measure"].as_str().unwrap().to_string(),
                v["group"].as_str().unwrap().to_string(),
            );
            *engine_open.entry(key).or_default() += 1;
        }
    }

    // What the workstation stored.
    let c = Cache::open(&f.path, &f.key).unwrap();
    let mut stored: Counts = BTreeMap::new();
    for (_, m, g, k) in c.measure_results().unwrap() {
        let slot = stored.entry((m, g)).or_default();
        for (i, n) in [k.ip, k.denom, k.denex, k.denexcep, k.numer, k.numex]
            .into_iter()
            .enumerate()
        {
            slot[i] += u64::from(n);
        }
    }
    // The workstation stores no row for a patient outside a group's initial population.
    let groups_evaluated = engine.len();
    engine.retain(|_, c| c.iter().any(|n| *n > 0));
    assert_eq!(stored, engine, "population counts per measure and group");
    let mut stored_open: BTreeMap<(String, String), u64> = BTreeMap::new();
    for (m, g, status, n) in c.gap_counts().unwrap() {
        if status != "closed" {
            *stored_open.entry((m, g)).or_default() += n;
        }
    }
    assert_eq!(stored_open, engine_open, "open gaps per measure and group");
    assert_eq!(
        groups_evaluated,
        12 + 3 + 2,
        "every group of the 12 measures"
    );
    let total_denominator: u64 = engine.values().map(|c| c[1]).sum();
    let total_numerator: u64 = engine.values().map(|c| c[4]).sum();
    let total_open: u64 = engine_open.values().sum();
    assert!(total_denominator > 100 && total_numerator > 10 && total_open > 50);

    // What the worklist shows: a care manager linked to every panel sees every open gap.
    let groups: Vec<String> = c.groups().unwrap().into_iter().map(|g| g.id).collect();
    c.set_account_links("caremanager", None, &groups).unwrap();
    sign_in(&f.ws, "caremanager");
    let mut per_measure: HashMap<String, u64> = HashMap::new();
    for ((m, _), n) in &engine_open {
        *per_measure.entry(m.clone()).or_default() += n;
    }
    for (measure, expected) in per_measure {
        let page =
            f.ws.worklist(&WorklistQuery {
                measure: Some(measure.clone()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(page.total, expected, "{measure}: worklist rows");
    }
    let all = f.ws.worklist(&WorklistQuery::default()).unwrap();
    assert_eq!(all.total, total_open);
    assert!(
        all.rows.iter().all(|r| !r.closes_with.is_empty()),
        "every row says what closes it"
    );

    // A second run re-evaluates nobody: nothing changed.
    let again = f.ws.evaluate_panel(&|_| {}).unwrap();
    assert_eq!((again.total, again.evaluated), (160, 0));
}

/// The first code of the shipped value set whose `field` is `value` (`name` or `url`).
fn first_code_of(field: &str, value: &str) -> (String, String) {
    use std::io::Read;
    let mut text = Vec::new();
    flate2::read::GzDecoder::new(workstation::evaluation::PACKAGES_GZ)
        .read_to_end(&mut text)
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&text).unwrap();
    let vs = doc["valueSets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v[field] == value)
        .unwrap_or_else(|| panic!("no value set with {field} {value}"));
    let (system, codes) = vs["codes"].as_object().unwrap().iter().next().unwrap();
    (system.clone(), codes[0][0].as_str().unwrap().to_string())
}

fn mammography_code() -> (String, String) {
    first_code_of("name", "Mammography")
}

/// Evaluates the panel and signs in the care manager, linked to every panel.
fn care_manager_over_every_panel(f: &Fixture) -> Cache {
    f.ws.evaluate_panel(&|_| {}).unwrap();
    let c = Cache::open(&f.path, &f.key).unwrap();
    let groups: Vec<String> = c.groups().unwrap().into_iter().map(|g| g.id).collect();
    c.set_account_links("caremanager", None, &groups).unwrap();
    sign_in(&f.ws, "caremanager");
    c
}

#[test]
fn closure_evidence_closes_the_gap_only_when_it_meets_the_measure() {
    let f = fixture(160);
    let c = care_manager_over_every_panel(&f);
    let page =
        f.ws.worklist(&WorklistQuery {
            measure: Some("BreastCancerScreeningFHIR".into()),
            ..Default::default()
        })
        .unwrap();
    let row = page
        .rows
        .first()
        .expect("an open breast cancer screening gap");
    let target = GapRef {
        patient_id: row.patient_id.clone(),
        measure_id: row.measure_id.clone(),
        group_id: row.group_id.clone(),
    };
    let gaps = f.ws.patient_gaps(&row.patient_id).unwrap();
    let gap = gaps
        .gaps
        .iter()
        .find(|g| g.measure_id == target.measure_id && g.group_id == target.group_id)
        .unwrap();
    assert_ne!(gap.status, "closed");
    let req = gap
        .closes_with
        .iter()
        .find(|r| r.value_set.as_deref() == Some("Mammography"))
        .expect("the numerator's requirement names the value set");
    let (start, end) = req.window.clone().expect("a date window");
    let (system, code) = mammography_code();
    let record = |system: &str, code: &str, date: &str| {
        f.ws.worklist_action(&ActionRequest {
            targets: vec![target.clone()],
            action: WorklistAction::Closure {
                evidence: ClosureEvidence {
                    requirement: req.index,
                    system: system.into(),
                    code: code.into(),
                    display: None,
                    date: date.into(),
                    value: None,
                    unit: None,
                    source: "outside-record".into(),
                    category: Some("imaging".into()),
                },
            },
        })
        .unwrap()[0]
            .status
            .clone()
    };
    let day_before = {
        let d = access::time::parse_date(&start).unwrap() - 1;
        let (y, m, dd) = access::time::civil_from_days(d);
        format!("{y:04}-{m:02}-{dd:02}")
    };
    // Outside the window, then a code outside the value set: the gap stays open.
    assert_ne!(record(&system, &code, &day_before), "closed");
    assert_ne!(record(&system, "00000-0", &end), "closed");
    // A code of the value set inside the window closes it.
    let today = access::time::rfc3339_from_unix_ms(access::time::now_unix_ms())[..10].to_string();
    let inside = if end > today { &start } else { &end };
    assert_eq!(record(&system, &code, inside), "closed");
    let page =
        f.ws.worklist(&WorklistQuery {
            measure: Some("BreastCancerScreeningFHIR".into()),
            ..Default::default()
        })
        .unwrap();
    assert!(!page.rows.iter().any(|r| r.patient_id == target.patient_id));

    // The three recorded resources are on the patient's timeline, and each one's JSON is
    // found by its event id.
    let timeline = c.timeline(&target.patient_id, &[]).unwrap().unwrap();
    let recorded: Vec<_> = timeline.events.iter().filter(|e| e.id < 0).collect();
    assert_eq!(recorded.len(), 3, "all three recorded resources are shown");
    let shown = recorded
        .iter()
        .find(|e| {
            e.code.as_deref() == Some(code.as_str())
                && e.date
                    .as_deref()
                    .is_some_and(|d| d.starts_with(inside.as_str()))
        })
        .expect("the closing evidence, on its date");
    let raw = c.event_raw(shown.id).unwrap().unwrap();
    assert!(raw.contains(&code) && raw.contains(shown.resource_id.as_deref().unwrap()));
    // Only the kinds asked for.
    let encounters = c
        .timeline(&target.patient_id, &[cache::EventKind::Encounter])
        .unwrap()
        .unwrap();
    assert!(encounters.events.iter().all(|e| e.id > 0));
    let through_app = f.ws.patient_timeline(&target.patient_id).unwrap();
    assert!(through_app
        .events
        .iter()
        .any(|e| e.resource_id == shown.resource_id));

    // All three are in the outbox with their own UUIDs, and audited.
    let outbox = c.outbox(true).unwrap();
    let closures: Vec<_> = outbox
        .iter()
        .filter(|o| o.kind == "closure_evidence")
        .collect();
    assert_eq!(closures.len(), 3);
    let mut ids: Vec<&str> = closures.iter().map(|o| o.id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3);
    assert!(ids.iter().all(|id| uuid_like(id)));
    let audit = c
        .audit_list(&cache::AuditFilter {
            limit: Some(10_000),
            ..Default::default()
        })
        .unwrap();
    let details: Vec<String> = audit
        .iter()
        .filter(|r| r.action == access::Action::UpdateWorklist)
        .filter_map(|r| r.detail.clone())
        .collect();
    assert_eq!(details.len(), 3, "{details:?}");
    assert_eq!(
        details.iter().filter(|d| d.ends_with("gap closed")).count(),
        1,
        "{details:?}"
    );
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.chars().filter(|c| *c == '-').count() == 4
}

#[test]
fn a_clinician_sees_only_their_patients_and_a_refusal_is_audited() {
    let f = fixture(400);
    f.ws.evaluate_panel(&|_| {}).unwrap();
    let c = Cache::open(&f.path, &f.key).unwrap();
    let (practitioner, _) = c.account_links("clinician").unwrap();
    let practitioner = practitioner.expect("the demo clinician is linked to a practitioner");
    sign_in(&f.ws, "quality");
    let everyone = f.ws.panel_query(&PanelQuery::default()).unwrap().total;
    f.ws.logout();

    sign_in(&f.ws, "clinician");
    let own =
        f.ws.panel_query(&PanelQuery {
            limit: 1000,
            ..Default::default()
        })
        .unwrap();
    assert!(
        own.total > 0 && own.total < everyone,
        "{} of {everyone}",
        own.total
    );
    let mine: std::collections::HashSet<String> = own.rows.iter().map(|r| r.id.clone()).collect();
    for id in &mine {
        let raw = c.patient_raw(id).unwrap().unwrap();
        assert!(raw.contains(&format!("Practitioner/{practitioner}")));
    }
    let worklist =
        f.ws.worklist(&WorklistQuery {
            limit: 1000,
            ..Default::default()
        })
        .unwrap();
    assert!(worklist.rows.iter().all(|r| mine.contains(&r.patient_id)));

    let outsider = c
        .patient_ids()
        .unwrap()
        .into_iter()
        .find(|id| !mine.contains(id))
        .unwrap();
    for e in [
        f.ws.patient_timeline(&outsider).unwrap_err(),
        f.ws.patient_gaps(&outsider).unwrap_err(),
    ] {
        assert_eq!(e.code, "outside_panel");
        assert!(!e.message.contains(&outsider));
    }
    let audit = c
        .audit_list(&cache::AuditFilter {
            limit: Some(10_000),
            ..Default::default()
        })
        .unwrap();
    let refusals: Vec<_> = audit
        .iter()
        .filter(|r| r.outcome == access::Outcome::Denied && r.patient_ids == vec![outsider.clone()])
        .collect();
    assert_eq!(refusals.len(), 2);
    assert!(refusals
        .iter()
        .all(|r| r.user == "clinician" && r.role == Some(Role::Clinician)));
}

#[test]
fn a_result_out_of_range_leaves_an_inverse_measure_gap_open_and_one_in_range_closes_it() {
    let f = fixture(160);
    care_manager_over_every_panel(&f);
    let measure = "DiabetesGlycemicStatusAssessmentGreaterThan9PercentFHIR";
    let page =
        f.ws.worklist(&WorklistQuery {
            measure: Some(measure.into()),
            ..Default::default()
        })
        .unwrap();
    let row = page.rows.first().expect("an open glycemic status gap");
    let target = GapRef {
        patient_id: row.patient_id.clone(),
        measure_id: row.measure_id.clone(),
        group_id: row.group_id.clone(),
    };
    let gaps = f.ws.patient_gaps(&row.patient_id).unwrap();
    let gap = gaps
        .gaps
        .iter()
        .find(|g| g.measure_id == target.measure_id && g.group_id == target.group_id)
        .unwrap();
    let req = gap
        .closes_with
        .iter()
        .find(|r| {
            r.resource_type == "Observation"
                && r.value_set.as_deref().is_some_and(|v| v.contains("HbA1c"))
        })
        .unwrap_or_else(|| panic!("an HbA1c requirement in {:?}", gap.closes_with));
    let (system, code) = first_code_of("url", req.value_set_url.as_deref().unwrap());
    let today = access::time::rfc3339_from_unix_ms(access::time::now_unix_ms())[..10].to_string();
    let (_, end) = req.window.clone().expect("a date window");
    let date = if end > today { today } else { end };
    let day_before = {
        let d = access::time::parse_date(&date).unwrap() - 1;
        let (y, m, dd) = access::time::civil_from_days(d);
        format!("{y:04}-{m:02}-{dd:02}")
    };
    let record = |value: f64, date: &str| {
        f.ws.worklist_action(&ActionRequest {
            targets: vec![target.clone()],
            action: WorklistAction::Closure {
                evidence: ClosureEvidence {
                    requirement: req.index,
                    system: system.clone(),
                    code: code.clone(),
                    display: None,
                    date: date.into(),
                    value: Some(value),
                    unit: Some("%".into()),
                    source: "patient-reported".into(),
                    category: Some("laboratory".into()),
                },
            },
        })
        .unwrap()[0]
            .status
            .clone()
    };
    // Above 9 % the measure's (inverse) numerator is met: the gap stays open (here it was open
    // to begin with, so the patient had no result or a high one).
    assert_ne!(record(10.4, &day_before), "closed");
    // The most recent result, at 6.8 %, is below it: closed.
    let status = record(6.8, &date);
    let after = f.ws.patient_gaps(&target.patient_id).unwrap();
    assert_eq!(
        status,
        "closed",
        "{:#?}",
        after
            .gaps
            .iter()
            .find(|g| g.measure_id == target.measure_id)
    );
}

/// The worklist kept in memory and updated row by row after actions lists exactly what a
/// freshly loaded one lists, in every sort order.
#[test]
fn the_worklist_after_actions_equals_a_fresh_read_in_every_order() {
    use workstation::WorklistSortKey as K;
    let f = fixture(160);
    care_manager_over_every_panel(&f);
    let sorts = [
        K::Priority,
        K::Patient,
        K::LastOutreach,
        K::State,
        K::Assignee,
        K::Gaps,
    ];
    // Build every order first, so the actions below update them in place.
    for sort in sorts {
        f.ws.worklist(&WorklistQuery {
            sort,
            ..Default::default()
        })
        .unwrap();
    }
    let rows =
        f.ws.worklist(&WorklistQuery {
            limit: 8,
            ..Default::default()
        })
        .unwrap()
        .rows;
    for (i, r) in rows.iter().enumerate() {
        let action = match i % 3 {
            0 => WorklistAction::Outreach {
                channel: "call".into(),
                outcome: "no_answer".into(),
                note: None,
            },
            1 => WorklistAction::Assign {
                assignee: Some("clinician".into()),
            },
            _ => WorklistAction::ScheduleVisit {
                date: "2026-01-15".into(),
            },
        };
        f.ws.worklist_action(&ActionRequest {
            targets: vec![GapRef {
                patient_id: r.patient_id.clone(),
                measure_id: r.measure_id.clone(),
                group_id: r.group_id.clone(),
            }],
            action,
        })
        .unwrap();
    }
    // Closure evidence that meets the measure: the gap's row turns closed (closed rows are not
    // loaded yet, so it is a new row in memory) and leaves the open list.
    let mammo =
        f.ws.worklist(&WorklistQuery {
            measure: Some("BreastCancerScreeningFHIR".into()),
            ..Default::default()
        })
        .unwrap()
        .rows[0]
            .clone();
    let gaps = f.ws.patient_gaps(&mammo.patient_id).unwrap();
    let req = gaps
        .gaps
        .iter()
        .find(|g| g.measure_id == mammo.measure_id && g.group_id == mammo.group_id)
        .unwrap()
        .closes_with
        .iter()
        .find(|r| r.value_set.as_deref() == Some("Mammography"))
        .unwrap()
        .clone();
    let (start, _) = req.window.clone().unwrap();
    let (system, code) = mammography_code();
    let outcome =
        f.ws.worklist_action(&ActionRequest {
            targets: vec![GapRef {
                patient_id: mammo.patient_id.clone(),
                measure_id: mammo.measure_id.clone(),
                group_id: mammo.group_id.clone(),
            }],
            action: WorklistAction::Closure {
                evidence: ClosureEvidence {
                    requirement: req.index,
                    system,
                    code,
                    display: None,
                    date: start,
                    value: None,
                    unit: None,
                    source: "outside-record".into(),
                    category: Some("imaging".into()),
                },
            },
        })
        .unwrap();
    assert_eq!(outcome[0].status, "closed");
    let fresh = Cache::open(&f.path, &f.key).unwrap();
    for (sort, closed) in sorts.into_iter().flat_map(|s| [(s, false), (s, true)]) {
        for descending in [false, true] {
            let mine: Vec<(String, String, String)> =
                f.ws.worklist(&WorklistQuery {
                    sort,
                    descending,
                    closed,
                    limit: 1000,
                    ..Default::default()
                })
                .unwrap()
                .rows
                .into_iter()
                .map(|r| (r.patient_id, r.measure_id, r.state))
                .collect();
            let dir = if descending {
                cache::SortDir::Desc
            } else {
                cache::SortDir::Asc
            };
            let cache_sort = match sort {
                K::Priority => cache::WorklistSort::Priority,
                K::Patient => cache::WorklistSort::Patient,
                K::LastOutreach => cache::WorklistSort::LastOutreach,
                K::State => cache::WorklistSort::State,
                K::Assignee => cache::WorklistSort::Assignee,
                _ => cache::WorklistSort::Gaps,
            };
            let theirs: Vec<(String, String, String)> = fresh
                .worklist(
                    &cache::WorklistQuery {
                        sort: cache_sort,
                        dir,
                        closed,
                        limit: 1000,
                        ..Default::default()
                    },
                    None,
                )
                .unwrap()
                .rows
                .into_iter()
                .map(|r| (r.patient_id, r.measure_id, r.state))
                .collect();
            assert!(
                closed
                    || !mine
                        .iter()
                        .any(|r| r.0 == mammo.patient_id && r.1 == mammo.measure_id)
            );
            assert_eq!(
                mine, theirs,
                "{sort:?} descending={descending} closed={closed}"
            );
        }
    }
}
