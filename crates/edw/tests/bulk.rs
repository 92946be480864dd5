//! Bulk Data Group export, engine level (no HTTP): the export equals the EDW's
//! person-level view, row-level security keeps other organisations' patients out,
//! `_since` sends changes, new members whole and leavers in `deleted`; `_type` and
//! `_typeFilter`.
use edw::bulk::engine::{self, Export, Plan, Progress, Written};
use edw::ingest::{ingest, Options};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use testkit::pgharness::PgHarness;

fn one(c: &mut postgres::Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).unwrap().get(0)
}

struct Env {
    _pg: PgHarness,
    url: String,
    /// The server's login (member of edw_api, may SET ROLE to org1's role).
    api_url: String,
    data: PathBuf,
    out: PathBuf,
}

fn setup(name: &str, patients: usize) -> Env {
    let pg = PgHarness::start().unwrap();
    let url = pg.create_db(name).unwrap();
    let mut c = edw::connect(&url).unwrap();
    edw::migrate::migrate(&mut c).unwrap();
    let data = std::env::temp_dir().join(format!("edw-bulk-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    testkit::testdata::write_dataset(&data, patients, 11).unwrap();
    ingest(&mut c, std::slice::from_ref(&data), &Options::new("ehr")).unwrap();
    edw::matching::run(&mut c, &edw::matching::Params::default()).unwrap();
    edw::attribute::run(&mut c, Some("2025-12-31")).unwrap();
    c.batch_execute(
        "CREATE ROLE org1_bulk NOLOGIN IN ROLE edw_org_reader;
         INSERT INTO edw.org_role SELECT 'org1_bulk', id FROM edw.organization WHERE source_id = 'org1';
         GRANT org1_bulk TO edw_api;
         CREATE ROLE api_login LOGIN IN ROLE edw_api;",
    )
    .unwrap();
    let out = data.with_extension("out");
    let _ = std::fs::remove_dir_all(&out);
    Env {
        api_url: pg.url_as("api_login", name),
        _pg: pg,
        url,
        data,
        out,
    }
}

async fn client(url: &str) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    c
}

/// Kick-off clock, then the export as org1's role.
async fn run_export(
    env: &Env,
    dir: &str,
    group: i64,
    plan: &Plan,
    since: Option<&str>,
) -> (engine::Clock, Written, PathBuf) {
    let mut c = client(&env.api_url).await;
    let wm = match since {
        Some(s) => engine::since_watermark(&c, s).await.unwrap(),
        None => None,
    };
    let clock = engine::kickoff_clock(&mut c).await.unwrap();
    let tx = c.transaction().await.unwrap();
    tx.batch_execute("SET LOCAL ROLE org1_bulk").await.unwrap();
    let path = env.out.join(dir);
    let progress = Progress::default();
    let w = engine::export(
        &tx,
        &Export {
            group_id: group,
            plan,
            since: wm,
            dir: &path,
            chunk: 7,
            max_lines: 25,
            progress: &progress,
            distributed: false,
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        progress.done.load(std::sync::atomic::Ordering::Relaxed),
        progress.total.load(std::sync::atomic::Ordering::Relaxed)
    );
    (clock, w, path)
}

fn read(dir: &Path, files: &[engine::FileOut]) -> Vec<Value> {
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(dir.join(format!("{}.ndjson", f.name))).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len() as u64, f.count, "{}", f.name);
        assert!(lines.len() <= 25, "files split at max_lines");
        for l in &lines {
            assert_eq!(l["resourceType"], f.resource_type.as_str());
        }
        out.extend(lines);
    }
    out
}

fn keys(resources: &[Value]) -> BTreeSet<(String, String)> {
    resources
        .iter()
        .map(|v| {
            (
                v["resourceType"].as_str().unwrap().to_string(),
                v["id"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Every `reference` string in a resource.
fn references(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "reference" {
                    if let Some(s) = x.as_str() {
                        out.push(s.to_string());
                    }
                } else {
                    references(x, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| references(x, out)),
        _ => {}
    }
}

/// The person-level view of these persons' org1 records, from 3NF as the superuser:
/// (type, id) of every resource (Patient id = person id).
fn expected_view(c: &mut postgres::Client, persons: &[i64]) -> BTreeSet<(String, String)> {
    let mut want = BTreeSet::new();
    let tables = [
        ("encounter", "Encounter"),
        ("condition", "Condition"),
        ("observation", "Observation"),
        ("procedure", "Procedure"),
        ("medication_request", "MedicationRequest"),
        ("immunization", "Immunization"),
        ("coverage", "Coverage"),
    ];
    for p in persons {
        want.insert(("Patient".to_string(), p.to_string()));
    }
    for (t, ty) in tables {
        for r in c
            .query(
                &format!(
                    "SELECT t.source_id FROM edw.{t} t JOIN edw.source_patient sp ON sp.id = t.source_patient_id
                     JOIN edw.organization o ON o.id = sp.org_id
                     WHERE sp.person_id = ANY($1) AND o.source_id = 'org1'"
                ),
                &[&persons],
            )
            .unwrap()
        {
            want.insert((ty.to_string(), r.get(0)));
        }
    }
    for r in c
        .query(
            "SELECT t.resource_type, t.source_id FROM edw.resource t JOIN edw.source_patient sp ON sp.id = t.source_patient_id
             JOIN edw.organization o ON o.id = sp.org_id
             WHERE sp.person_id = ANY($1) AND o.source_id = 'org1'",
            &[&persons],
        )
        .unwrap()
    {
        want.insert((r.get(0), r.get(1)));
    }
    want
}

fn persons_of(c: &mut postgres::Client, group: i64, org: &str) -> Vec<i64> {
    c.query(
        "SELECT DISTINCT m.person_id FROM edw.patient_group_member m
         JOIN edw.source_patient sp ON sp.person_id = m.person_id
         JOIN edw.organization o ON o.id = sp.org_id
         WHERE m.group_id = $1 AND o.source_id = $2 ORDER BY 1",
        &[&group, &org],
    )
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

fn person_of(c: &mut postgres::Client, source_id: &str) -> i64 {
    c.query_one(
        "SELECT person_id FROM edw.source_patient WHERE source_id = $1",
        &[&source_id],
    )
    .unwrap()
    .get(0)
}

fn write_ndjson(dir: &Path, name: &str, lines: &[Value]) {
    std::fs::create_dir_all(dir).unwrap();
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(dir.join(format!("{name}.ndjson")), text).unwrap();
}

#[test]
fn group_export_full_since_rls_type_filter() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let env = setup("bulk_engine", 80);
    let mut c = edw::connect(&env.url).unwrap();
    // The care team Group of ct1 (pr1 + pr2): patients of both organisations.
    let group = one(
        &mut c,
        "SELECT g.id FROM edw.patient_group g JOIN edw.care_team ct ON ct.id = g.ref_id
         WHERE g.kind = 'care_team' AND ct.source_id = 'ct1'",
    );
    let org1 = persons_of(&mut c, group, "org1");
    let org2 = persons_of(&mut c, group, "org2");
    assert!(org1.len() > 5 && !org2.is_empty(), "{org1:?} {org2:?}");
    // An org2 person listed in the Group by mistake is still not exported.
    c.execute(
        "INSERT INTO edw.patient_group_member (group_id, person_id)
         SELECT $1, sp.person_id FROM edw.source_patient sp JOIN edw.organization o ON o.id = sp.org_id
         WHERE o.source_id = 'org2' ON CONFLICT DO NOTHING",
        &[&group],
    )
    .unwrap();

    // Full export.
    let all = Plan::new(&[], &[], false).unwrap();
    let (clock1, w, dir) = rt.block_on(run_export(&env, "full", group, &all, None));
    assert_eq!(w.patients, org1.len() as u64);
    assert!(w.deleted.is_empty() && w.error.is_empty());
    assert!(
        clock1.transaction_time.ends_with('Z'),
        "{}",
        clock1.transaction_time
    );
    let res = read(&dir, &w.output);
    assert!(
        w.output
            .iter()
            .filter(|f| f.resource_type == "Observation")
            .count()
            > 1
    );
    let got: BTreeSet<(String, String)> = keys(&res)
        .into_iter()
        .filter(|(t, _)| !matches!(t.as_str(), "Group" | "Practitioner" | "Organization"))
        .collect();
    assert_eq!(got, expected_view(&mut c, &org1));
    assert_eq!(res.len(), keys(&res).len(), "each resource once");
    // References: patients only Patient/{person} of org1 members; practitioners and
    // organisations referenced are exported.
    let org1_refs: BTreeSet<String> = org1.iter().map(|p| format!("Patient/{p}")).collect();
    let exported = keys(&res);
    for v in &res {
        let mut refs = Vec::new();
        references(v, &mut refs);
        for r in refs {
            if r.starts_with("Patient/") {
                assert!(org1_refs.contains(&r), "{r}");
            }
            if let Some(id) = r.strip_prefix("Practitioner/") {
                assert!(
                    exported.contains(&("Practitioner".into(), id.into())),
                    "{r}"
                );
            }
            if let Some(id) = r.strip_prefix("Organization/") {
                assert!(
                    exported.contains(&("Organization".into(), id.into())),
                    "{r}"
                );
            }
        }
    }
    for p in &org2 {
        assert!(!exported.contains(&("Patient".into(), p.to_string())));
    }
    let g: Vec<&Value> = res
        .iter()
        .filter(|v| v["resourceType"] == "Group")
        .collect();
    assert_eq!(g.len(), 1);
    assert_eq!(g[0]["id"], group.to_string());
    assert_eq!(
        (g[0]["type"].as_str(), g[0]["actual"].as_bool()),
        (Some("person"), Some(true))
    );
    assert_eq!(g[0]["managingEntity"]["reference"], "Organization/org1");
    let members: BTreeSet<String> = g[0]["member"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["entity"]["reference"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(members, org1_refs);
    // The exported resources are the source lines with the patient rewritten.
    let obs = res
        .iter()
        .find(|v| v["resourceType"] == "Observation")
        .unwrap();
    let raw: String = c
        .query_one(
            "SELECT l.raw FROM edw.observation o JOIN staging.raw_line l ON (l.batch_id, l.line_no) = (o.batch_id, o.line_no)
             WHERE o.source_id = $1",
            &[&obs["id"].as_str().unwrap()],
        )
        .unwrap()
        .get(0);
    let mut src: Value = serde_json::from_str(&raw).unwrap();
    src["subject"] = obs["subject"].clone();
    assert_eq!(&src, obs);
    // Files are private.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let f = dir.join(format!("{}.ndjson", w.output[0].name));
    assert_eq!(
        std::fs::metadata(f).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // _type and _typeFilter.
    let plan = Plan::new(
        &["Patient,Observation".into()],
        &["Observation?code=http://loinc.org|4548-4".into()],
        false,
    )
    .unwrap();
    let (_, wt, dirt) = rt.block_on(run_export(&env, "typed", group, &plan, None));
    let typed = read(&dirt, &wt.output);
    let types: BTreeSet<&str> = typed
        .iter()
        .map(|v| v["resourceType"].as_str().unwrap())
        .collect();
    assert_eq!(types, BTreeSet::from(["Observation", "Patient"]));
    let a1c = res
        .iter()
        .filter(|v| {
            v["resourceType"] == "Observation" && v["code"]["coding"][0]["code"] == "4548-4"
        })
        .count();
    assert!(a1c > 0);
    assert_eq!(
        typed
            .iter()
            .filter(|v| v["resourceType"] == "Observation")
            .count(),
        a1c
    );
    // category and status; two filters of a type are OR-ed.
    let plan = Plan::new(
        &["Observation".into()],
        &[
            "Observation?category=vital-signs&status=final".into(),
            "Observation?code=4548-4".into(),
        ],
        false,
    )
    .unwrap();
    let (_, wt, dirt) = rt.block_on(run_export(&env, "typed2", group, &plan, None));
    assert_eq!(
        read(&dirt, &wt.output).len(),
        res.iter()
            .filter(|v| v["resourceType"] == "Observation")
            .count()
    );
    // Lenient: an unsupported parameter is ignored and reported.
    let plan = Plan::new(
        &["Condition".into()],
        &["Condition?onset-date=gt2020-01-01".into()],
        true,
    )
    .unwrap();
    let (_, wt, dirt) = rt.block_on(run_export(&env, "lenient", group, &plan, None));
    assert_eq!(
        read(&dirt, &wt.output).len(),
        res.iter()
            .filter(|v| v["resourceType"] == "Condition")
            .count()
    );
    let errs = read(&dirt, &wt.error);
    assert_eq!(errs.len(), 1);
    assert!(errs[0]["issue"][0]["diagnostics"]
        .as_str()
        .unwrap()
        .contains("onset-date"));

    // Changes after the full export: a new observation for one member, a new member
    // (a new org1 patient with primary-care visits to pr1), a member who leaves (their
    // visits move to pr3, of care team ct2).
    let stay = org1[0];
    let stay_src: String = c
        .query_one(
            "SELECT source_id FROM edw.source_patient WHERE person_id = $1 ORDER BY id LIMIT 1",
            &[&stay],
        )
        .unwrap()
        .get(0);
    let leaver = *org1.last().unwrap();
    let leaver_src: String = c
        .query_one(
            "SELECT source_id FROM edw.source_patient WHERE person_id = $1 ORDER BY id LIMIT 1",
            &[&leaver],
        )
        .unwrap()
        .get(0);
    let upd = env.data.join("update");
    write_ndjson(
        &upd,
        "Patient",
        &[
            json!({"resourceType": "Patient", "id": "newbie", "gender": "female", "birthDate": "1980-02-02",
            "name": [{"family": "Newcomer", "given": ["Nia"]}],
            "identifier": [{"system": "https://ehr.example.org/mrn", "value": "MRN-newbie"}],
            "managingOrganization": {"reference": "Organization/org1"}}),
        ],
    );
    let enc = |id: String, pat: &str, pr: &str, day: u32| {
        json!({"resourceType": "Encounter", "id": id, "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "type": [{"coding": [{"system": "http://snomed.info/sct", "code": testkit::testdata::PCP_TYPE}]}],
            "subject": {"reference": format!("Patient/{pat}")},
            "participant": [{"individual": {"reference": format!("Practitioner/{pr}")}}],
            "period": {"start": format!("2025-11-{day:02}T09:00:00Z")}})
    };
    let mut encs: Vec<Value> = (1..=3)
        .map(|d| enc(format!("nb-{d}"), "newbie", "pr1", d))
        .collect();
    encs.extend((1..=12).map(|d| enc(format!("lv-{d}"), &leaver_src, "pr3", d)));
    write_ndjson(&upd, "Encounter", &encs);
    write_ndjson(
        &upd,
        "Observation",
        &[
            json!({"resourceType": "Observation", "id": "late-a1c", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
            "subject": {"reference": format!("Patient/{stay_src}")}, "effectiveDateTime": "2025-11-20",
            "valueQuantity": {"value": 7.1, "unit": "%"}}),
        ],
    );
    ingest(&mut c, std::slice::from_ref(&upd), &Options::new("ehr")).unwrap();
    edw::matching::run(&mut c, &edw::matching::Params::default()).unwrap();
    edw::attribute::run(&mut c, Some("2025-12-31")).unwrap();
    let newbie = person_of(&mut c, "newbie");
    let now1 = persons_of(&mut c, group, "org1");
    assert!(
        now1.contains(&newbie) && !now1.contains(&leaver),
        "{now1:?}"
    );
    assert!(now1.contains(&stay));

    let (clock2, w2, dir2) = rt.block_on(run_export(
        &env,
        "since",
        group,
        &all,
        Some(&clock1.transaction_time),
    ));
    assert!(clock2.watermark > clock1.watermark);
    let res2 = read(&dir2, &w2.output);
    let got2: BTreeSet<(String, String)> = keys(&res2)
        .into_iter()
        .filter(|(t, _)| !matches!(t.as_str(), "Group" | "Practitioner" | "Organization"))
        .collect();
    let mut want2 = expected_view(&mut c, &[newbie]);
    want2.insert(("Observation".into(), "late-a1c".into()));
    assert_eq!(got2, want2);
    let late = res2.iter().find(|v| v["id"] == "late-a1c").unwrap();
    assert_eq!(late["subject"]["reference"], format!("Patient/{stay}"));
    let g2 = res2.iter().find(|v| v["resourceType"] == "Group").unwrap();
    assert_eq!(g2["member"].as_array().unwrap().len(), now1.len());
    let del = read(&dir2, &w2.deleted);
    assert_eq!(
        del,
        vec![json!({"resourceType": "Bundle", "type": "transaction",
            "entry": [{"request": {"method": "DELETE", "url": format!("Patient/{leaver}")}}]})]
    );

    // `_since` at the second transactionTime: nothing changed, nothing sent (the Group
    // only when its membership changed).
    let (_, w3, dir3) = rt.block_on(run_export(
        &env,
        "since2",
        group,
        &all,
        Some(&clock2.transaction_time),
    ));
    let res3 = read(&dir3, &w3.output);
    assert!(keys(&res3).is_empty(), "{:?}", keys(&res3));
    assert!(w3.deleted.is_empty());
    // `_since` before any export clock: a full export.
    let (_, w4, dir4) = rt.block_on(run_export(
        &env,
        "early",
        group,
        &all,
        Some("2001-01-01T00:00:00Z"),
    ));
    let mut view_now = expected_view(&mut c, &now1);
    let got4: BTreeSet<(String, String)> = keys(&read(&dir4, &w4.output))
        .into_iter()
        .filter(|(t, _)| !matches!(t.as_str(), "Group" | "Practitioner" | "Organization"))
        .collect();
    assert_eq!(got4.len(), view_now.len());
    view_now.retain(|k| !got4.contains(k));
    assert!(view_now.is_empty());

    // Merged away: a member's records move to another person (manual link): the person
    // who lost their records is in `deleted`, the one who gained them arrives whole.
    let (a, b) = (org1[1], org1[2]);
    let (a_rec, b_rec): (i64, i64) = {
        let r = c
            .query_one(
                "SELECT (SELECT min(id) FROM edw.source_patient WHERE person_id = $1),
                        (SELECT min(id) FROM edw.source_patient WHERE person_id = $2)",
                &[&a, &b],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    c.execute(
        "INSERT INTO edw.match_link (a_id, b_id, method) VALUES ($1, $2, 'manual')",
        &[&a_rec.min(b_rec), &a_rec.max(b_rec)],
    )
    .unwrap();
    edw::matching::run(&mut c, &edw::matching::Params::default()).unwrap();
    let pa: Option<i64> = c
        .query_one(
            "SELECT person_id FROM edw.source_patient WHERE id = $1",
            &[&a_rec],
        )
        .unwrap()
        .get(0);
    let pb: Option<i64> = c
        .query_one(
            "SELECT person_id FROM edw.source_patient WHERE id = $1",
            &[&b_rec],
        )
        .unwrap()
        .get(0);
    assert_eq!(pa, pb, "the manual link merged the two persons");
    {
        let survivor = pa.unwrap();
        let gone = if survivor == a { b } else { a };
        let (_, w5, dir5) = rt.block_on(run_export(
            &env,
            "merged",
            group,
            &all,
            Some(&clock2.transaction_time),
        ));
        let del5: BTreeSet<String> = read(&dir5, &w5.deleted)
            .iter()
            .map(|b| {
                b["entry"][0]["request"]["url"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert!(del5.contains(&format!("Patient/{gone}")), "{del5:?}");
        let res5 = read(&dir5, &w5.output);
        let pats: BTreeMap<String, &Value> = res5
            .iter()
            .filter(|v| v["resourceType"] == "Patient")
            .map(|v| (v["id"].as_str().unwrap().to_string(), v))
            .collect();
        assert!(
            pats.contains_key(&survivor.to_string()),
            "{:?}",
            pats.keys()
        );
    }

    let _ = std::fs::remove_dir_all(&env.data);
    let _ = std::fs::remove_dir_all(&env.out);
}

#[test]
fn plan_checks_types_and_filters() {
    assert!(Plan::new(
        &["Patient".into(), "Observation,Condition".into()],
        &[],
        false
    )
    .is_ok());
    assert!(Plan::new(&["Foo".into()], &[], false).is_err());
    assert!(Plan::new(&["CareTeam".into()], &[], false).is_err());
    assert!(Plan::new(&[], &["Observation?date=gt2020".into()], false).is_err());
    let p = Plan::new(&[], &["Observation?date=gt2020&code=1".into()], true).unwrap();
    assert_eq!(p.ignored.len(), 1);
    assert!(Plan::new(&[], &["Observation".into()], false).is_err());
    assert!(Plan::new(&[], &["Nope?code=1".into()], false).is_err());
    assert!(Plan::new(
        &[],
        &["Observation?code=http%3A%2F%2Floinc.org%7C4548-4".into()],
        false
    )
    .is_ok());
    assert!(engine::check_since("2025-01-01T00:00:00Z").is_ok());
    assert!(engine::check_since("2025-01-01T00:00:00.123+02:00").is_ok());
    assert!(engine::check_since("2025-01-01").is_err());
    assert!(engine::check_since("yesterday").is_err());
}
