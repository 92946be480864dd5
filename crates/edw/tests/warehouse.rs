//! Attribution, star ETL (counts reconcile, SCD2), row-level security.
use edw::ingest::{ingest, Options};
use serde_json::json;
use testkit::pgharness::PgHarness;

fn one(c: &mut postgres::Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).unwrap().get(0)
}

fn setup(pg: &PgHarness, name: &str, patients: usize) -> (String, std::path::PathBuf) {
    let url = pg.create_db(name).unwrap();
    let mut c = edw::connect(&url).unwrap();
    edw::migrate::migrate(&mut c).unwrap();
    let tmp = std::env::temp_dir().join(format!("edw-wh-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    testkit::testdata::write_dataset(&tmp, patients, 11).unwrap();
    ingest(&mut c, std::slice::from_ref(&tmp), &Options::new("ehr")).unwrap();
    edw::matching::run(&mut c, &edw::matching::Params::default()).unwrap();
    (url, tmp)
}

#[test]
fn star_etl_reconciles_and_scd2_adds_a_version() {
    let pg = PgHarness::start().unwrap();
    let (url, tmp) = setup(&pg, "etl", 150);
    let mut c = edw::connect(&url).unwrap();
    let r = edw::etl::run(&mut c).unwrap();
    let persons = one(&mut c, "SELECT count(*) FROM edw.person");
    assert_eq!(persons, 150);
    assert_eq!(r.patient_versions_added, persons);
    assert_eq!(
        one(
            &mut c,
            "SELECT count(*) FROM mart.dim_patient WHERE is_current"
        ),
        persons
    );
    assert_eq!(
        one(&mut c, "SELECT count(*) FROM mart.fact_encounter"),
        one(&mut c, "SELECT count(*) FROM edw.encounter")
    );
    assert_eq!(
        one(&mut c, "SELECT count(*) FROM mart.fact_observation"),
        one(&mut c, "SELECT count(*) FROM edw.observation")
    );
    assert_eq!(one(&mut c, "SELECT count(*) FROM mart.dim_provider"), 6);
    assert_eq!(one(&mut c, "SELECT count(*) FROM mart.fact_encounter WHERE provider_key IS NULL OR date_key IS NULL OR org_key IS NULL"), 0);
    // A reconciling analytic: encounters per org equal in 3NF and star.
    assert_eq!(
        one(&mut c, "SELECT count(*) FROM mart.fact_encounter f JOIN mart.dim_organization o USING (org_key) WHERE o.name = 'Clinic 1'"),
        one(&mut c, "SELECT count(*) FROM edw.encounter e JOIN edw.organization o ON o.id = e.organization_id WHERE o.name = 'Clinic 1'")
    );

    // Second run: incremental, nothing to do.
    let r2 = edw::etl::run(&mut c).unwrap();
    assert_eq!(
        (r2.patient_versions_added, r2.encounters, r2.observations),
        (0, 0, 0),
        "{}",
        r2.summary()
    );
    assert_eq!(
        one(&mut c, "SELECT count(*) FROM mart.dim_patient"),
        persons
    );

    // p3 moves: a new Patient file with the changed address.
    let line = std::fs::read_to_string(tmp.join("Patient.ndjson")).unwrap();
    let mut p3: serde_json::Value = line
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["id"] == "p3")
        .unwrap();
    p3["address"] = json!([{"line": ["77 Elsewhere Rd"], "city": "Dover", "state": "DE", "postalCode": "19901"}]);
    let upd = tmp.join("update");
    std::fs::create_dir_all(&upd).unwrap();
    std::fs::write(upd.join("Patient.ndjson"), format!("{p3}\n")).unwrap();
    ingest(&mut c, &[upd], &Options::new("ehr")).unwrap();
    edw::matching::run(&mut c, &edw::matching::Params::default()).unwrap();
    let r3 = edw::etl::run(&mut c).unwrap();
    assert_eq!(r3.patient_versions_added, 1, "{}", r3.summary());
    assert_eq!(
        one(&mut c, "SELECT count(*) FROM mart.dim_patient"),
        persons + 1
    );
    assert_eq!(
        one(
            &mut c,
            "SELECT count(*) FROM mart.dim_patient WHERE is_current"
        ),
        persons
    );
    let row = c
        .query_one(
            "SELECT d.version, d.city, (SELECT count(*) FROM mart.dim_patient x WHERE x.person_id = d.person_id AND NOT x.is_current AND x.valid_to IS NOT NULL)
             FROM mart.dim_patient d JOIN edw.source_patient sp ON sp.person_id = d.person_id
             WHERE sp.source_id = 'p3' AND d.is_current",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 2);
    assert_eq!(row.get::<_, Option<String>>(1).as_deref(), Some("Dover"));
    assert_eq!(row.get::<_, i64>(2), 1);
    // p3's facts now point to the new version; fact counts unchanged.
    assert_eq!(
        one(&mut c, "SELECT count(*) FROM mart.fact_encounter f JOIN mart.dim_patient d USING (patient_key) WHERE NOT d.is_current"),
        0
    );
    assert_eq!(
        one(&mut c, "SELECT count(*) FROM mart.fact_encounter"),
        one(&mut c, "SELECT count(*) FROM edw.encounter")
    );
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn attribution_plurality_with_tie_to_most_recent() {
    let pg = PgHarness::start().unwrap();
    let url = pg.create_db("attr").unwrap();
    let mut c = edw::connect(&url).unwrap();
    edw::migrate::migrate(&mut c).unwrap();
    let tmp = std::env::temp_dir().join(format!("edw-attr-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let mut lines = String::new();
    for i in 1..=4 {
        lines += &format!(
            "{}\n",
            json!({"resourceType": "Practitioner", "id": format!("pr{i}")})
        );
    }
    std::fs::write(tmp.join("Practitioner.ndjson"), lines).unwrap();
    std::fs::write(
        tmp.join("CareTeam.ndjson"),
        format!(
            "{}\n",
            json!({"resourceType": "CareTeam", "id": "ct1", "name": "Blue",
            "participant": [{"member": {"reference": "Practitioner/pr2"}}]})
        ),
    )
    .unwrap();
    let mut pats = String::new();
    for p in ["tie", "old", "er"] {
        pats += &format!(
            "{}\n",
            json!({"resourceType": "Patient", "id": p, "birthDate": "1970-01-01"})
        );
    }
    std::fs::write(tmp.join("Patient.ndjson"), pats).unwrap();
    let enc = |id: &str, pat: &str, pr: &str, date: &str, code: &str| {
        json!({"resourceType": "Encounter", "id": id, "status": "finished", "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "type": [{"coding": [{"system": "http://snomed.info/sct", "code": code}]}],
            "subject": {"reference": format!("Patient/{pat}")},
            "participant": [{"individual": {"reference": format!("Practitioner/{pr}")}}],
            "period": {"start": format!("{date}T10:00:00Z")}})
        .to_string()
            + "\n"
    };
    let pcp = testkit::testdata::PCP_TYPE;
    let mut e = String::new();
    // "tie": 2 visits each with pr1 and pr2; pr2 more recent -> pr2.
    e += &enc("t1", "tie", "pr1", "2025-01-05", pcp);
    e += &enc("t2", "tie", "pr1", "2025-02-05", pcp);
    e += &enc("t3", "tie", "pr2", "2025-03-05", pcp);
    e += &enc("t4", "tie", "pr2", "2025-06-05", pcp);
    // "old": 3 visits with pr3 older than 24 months, 1 recent with pr4 -> pr4.
    e += &enc("o1", "old", "pr3", "2022-01-05", pcp);
    e += &enc("o2", "old", "pr3", "2022-02-05", pcp);
    e += &enc("o3", "old", "pr3", "2022-03-05", pcp);
    e += &enc("o4", "old", "pr4", "2025-03-05", pcp);
    // "er": only non-primary-care visits -> unattributed.
    e += &enc("x1", "er", "pr1", "2025-03-05", "50849002");
    e += &enc("x2", "er", "pr1", "2025-04-05", "50849002");
    std::fs::write(tmp.join("Encounter.ndjson"), e).unwrap();
    ingest(&mut c, std::slice::from_ref(&tmp), &Options::new("s")).unwrap();
    edw::matching::run(&mut c, &edw::matching::Params::default()).unwrap();
    let r = edw::attribute::run(&mut c, Some("2025-12-31")).unwrap();
    assert_eq!((r.attributed, r.unattributed), (2, 1));
    let who = |c: &mut postgres::Client, p: &str| -> String {
        c.query_one(
            "SELECT pr.source_id FROM edw.attribution a JOIN edw.practitioner pr ON pr.id = a.practitioner_id
             JOIN edw.source_patient sp ON sp.person_id = a.person_id WHERE sp.source_id = $1",
            &[&p],
        )
        .unwrap()
        .get(0)
    };
    assert_eq!(who(&mut c, "tie"), "pr2");
    assert_eq!(who(&mut c, "old"), "pr4");
    // Groups: one per attributed practitioner, one for care team ct1 (pr2's team).
    assert_eq!((r.practitioner_groups, r.care_team_groups), (2, 1));
    assert_eq!(
        one(&mut c, "SELECT count(*) FROM edw.patient_group_member m JOIN edw.patient_group g ON g.id = m.group_id WHERE g.kind = 'care_team'"),
        1
    );
    // Idempotent.
    let r2 = edw::attribute::run(&mut c, Some("2025-12-31")).unwrap();
    assert_eq!(r2.attributed, 2);
    assert_eq!(one(&mut c, "SELECT count(*) FROM edw.attribution"), 2);
    assert!(edw::attribute::run(&mut c, Some("2025-02-30")).is_err());
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn rls_org_role_sees_only_its_patients() {
    let pg = PgHarness::start().unwrap();
    let (url, tmp) = setup(&pg, "rls", 40);
    let mut c = edw::connect(&url).unwrap();
    c.batch_execute(
        "CREATE ROLE org1_reader LOGIN IN ROLE edw_org_reader;
         CREATE ROLE nobody_reader LOGIN IN ROLE edw_org_reader;
         INSERT INTO edw.org_role SELECT 'org1_reader', id FROM edw.organization WHERE source_id = 'org1';",
    )
    .unwrap();
    let org1_patients = one(&mut c, "SELECT count(*) FROM edw.source_patient sp JOIN edw.organization o ON o.id = sp.org_id WHERE o.source_id = 'org1'");
    let org1_enc = one(&mut c, "SELECT count(*) FROM edw.encounter e JOIN edw.source_patient sp ON sp.id = e.source_patient_id JOIN edw.organization o ON o.id = sp.org_id WHERE o.source_id = 'org1'");
    let all = one(&mut c, "SELECT count(*) FROM edw.source_patient");
    assert!(org1_patients > 0 && org1_patients < all);

    let mut r = edw::connect(&pg.url_as("org1_reader", "rls")).unwrap();
    assert_eq!(
        one(&mut r, "SELECT count(*) FROM edw.source_patient"),
        org1_patients
    );
    assert_eq!(
        one(&mut r, "SELECT count(*) FROM edw.source_patient sp JOIN edw.organization o ON o.id = sp.org_id WHERE o.source_id = 'org2'"),
        0
    );
    assert_eq!(one(&mut r, "SELECT count(*) FROM edw.encounter"), org1_enc);
    assert_eq!(
        one(&mut r, "SELECT count(*) FROM edw.person"),
        org1_patients
    );
    assert_eq!(
        one(&mut r, "SELECT count(*) FROM edw.patient_name n JOIN edw.source_patient sp ON sp.id = n.source_patient_id"),
        org1_patients
    );
    // Direct lookup of an org2 patient by id returns nothing.
    let org2_id = one(&mut c, "SELECT min(sp.id) FROM edw.source_patient sp JOIN edw.organization o ON o.id = sp.org_id WHERE o.source_id = 'org2'");
    assert_eq!(
        r.query(
            "SELECT 1 FROM edw.observation WHERE source_patient_id = $1",
            &[&org2_id]
        )
        .unwrap()
        .len(),
        0
    );
    // The reader cannot write.
    assert!(r.execute("DELETE FROM edw.encounter", &[]).is_err());
    // A reader role without a mapping sees nothing.
    let mut n = edw::connect(&pg.url_as("nobody_reader", "rls")).unwrap();
    assert_eq!(one(&mut n, "SELECT count(*) FROM edw.source_patient"), 0);
    assert_eq!(one(&mut n, "SELECT count(*) FROM edw.encounter"), 0);
    let _ = std::fs::remove_dir_all(&tmp);
}
