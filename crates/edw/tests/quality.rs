//! The five quality-team queries (migration 0008) on a small known dataset: the
//! testdata population (2 care teams, 6 practitioners), attribution, and care gaps
//! written by the test itself. Expected figures are computed here, in Rust, from the
//! gaps the test wrote and the 3NF rows; never copied from the queries.
use std::collections::{BTreeMap, BTreeSet, HashMap};

#[test]
fn quality_queries_return_independently_computed_figures() {
    let pg = testkit::pgharness::PgHarness::start().unwrap();
    let url = pg.create_db("q").unwrap();
    let mut c = edw::connect(&url).unwrap();
    edw::migrate::migrate(&mut c).unwrap();
    let tmp = std::env::temp_dir().join(format!("edw-quality-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    testkit::testdata::write_dataset(&tmp, 60, 11).unwrap();
    let mut opts = edw::ingest::Options::new("t");
    opts.progress = false;
    edw::ingest::ingest(&mut c, std::slice::from_ref(&tmp), &opts).unwrap();
    let _ = std::fs::remove_dir_all(&tmp);
    edw::matching::run(&mut c, &edw::matching::Params::default()).unwrap();
    edw::attribute::run(&mut c, Some("2025-12-31")).unwrap();
    // An older period too: queries must use each person's latest period only.
    edw::attribute::run(&mut c, Some("2024-06-30")).unwrap();

    // Care gaps: 5 measures, status and month from a fixed pattern over person ids.
    let persons: Vec<i64> = c
        .query("SELECT id FROM edw.person ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(persons.len() >= 50);
    let months = ["2024-12-20", "2025-01-05", "2025-11-15", "2025-12-10"];
    let mut gaps: Vec<(i64, String, &str, &str)> = Vec::new(); // person, measure, status, day
    for &p in &persons {
        for m in 0..5i64 {
            let status = match (p * 7 + m * 3) % 4 {
                // Left the denominator: neither eligible nor open.
                0 if p % 2 == 0 => "not-applicable",
                0 => continue,
                1 => "closed",
                _ => "open",
            };
            gaps.push((p, format!("M{m}"), status, months[((p + m) % 4) as usize]));
        }
    }
    for (p, m, s, d) in &gaps {
        c.execute(
            "INSERT INTO edw.care_gap (person_id, measure_id, group_id, period_start, status, detected_at)
             VALUES ($1, $2, 'g1', '2025-01-01', $3, ($4::text || ' 12:00:00+00')::timestamptz)",
            &[p, m, s, d],
        )
        .unwrap();
    }
    edw::etl::run(&mut c).unwrap();

    // Independent inputs: current attribution per person (rows in period order, so the
    // latest period wins) and teams.
    let attr: HashMap<i64, (i64, Option<i64>)> = c
        .query(
            "SELECT person_id, practitioner_id, care_team_id FROM edw.attribution
             ORDER BY period_end, id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect();
    let periods: i64 = c
        .query_one(
            "SELECT count(DISTINCT period_end) FROM edw.attribution",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(periods, 2);
    assert!(attr.len() >= 20, "attributed: {}", attr.len());
    let prov_key: HashMap<i64, i64> = c
        .query(
            "SELECT provider_key, practitioner_id FROM mart.dim_provider",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();

    // (a) rate by provider by month: (practitioner, measure, year, month) -> (met, eligible)
    let mut want_a: BTreeMap<(i64, String, i32, i32), (i64, i64)> = BTreeMap::new();
    for (p, m, s, d) in &gaps {
        if *s == "not-applicable" {
            continue;
        }
        if let Some((pr, _)) = attr.get(p) {
            let y: i32 = d[0..4].parse().unwrap();
            let mo: i32 = d[5..7].parse().unwrap();
            let e = want_a.entry((*pr, m.clone(), y, mo)).or_default();
            e.0 += (*s == "closed") as i64;
            e.1 += 1;
        }
    }
    let mut got_a = BTreeMap::new();
    for r in c
        .query(
            "SELECT provider_key, measure_id, year::int, month::int, met, eligible, rate::float8
             FROM mart.q_measure_rate_provider_month",
            &[],
        )
        .unwrap()
    {
        let (met, elig, rate): (i64, i64, f64) = (r.get(4), r.get(5), r.get(6));
        assert!((rate - met as f64 / elig as f64).abs() < 1e-4);
        let y: i32 = r.get(2);
        let mo: i32 = r.get(3);
        got_a.insert(
            (prov_key[&r.get::<_, i64>(0)], r.get(1), y, mo),
            (met, elig),
        );
    }
    assert!(!want_a.is_empty());
    assert_eq!(got_a, want_a);

    // (b) open gaps by care team: team -> (open gaps, distinct persons)
    let mut want_b: BTreeMap<i64, (i64, BTreeSet<i64>)> = BTreeMap::new();
    for (p, _, s, _) in &gaps {
        if let (Some((_, Some(team))), "open") = (attr.get(p), *s) {
            let e = want_b.entry(*team).or_default();
            e.0 += 1;
            e.1.insert(*p);
        }
    }
    let want_b: BTreeMap<i64, (i64, i64)> = want_b
        .into_iter()
        .map(|(k, (n, ps))| (k, (n, ps.len() as i64)))
        .collect();
    let got_b: BTreeMap<i64, (i64, i64)> = c
        .query(
            "SELECT care_team_id, open_gaps, patients FROM mart.q_open_gaps_care_team",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect();
    assert!(!want_b.is_empty(), "no attributed person has a care team");
    assert_eq!(got_b, want_b);

    // (c) 12-month trend as of 2025-12-31: Jan..Dec 2025 per measure; Dec 2024 falls out.
    let mut want_c: BTreeMap<(String, String), (i64, i64)> = BTreeMap::new();
    for m in 0..5 {
        for mo in 1..=12 {
            want_c.insert((format!("M{m}"), format!("2025-{mo:02}-01")), (0, 0));
        }
    }
    for (_, m, s, d) in &gaps {
        if d.starts_with("2025") && *s != "not-applicable" {
            let e = want_c
                .get_mut(&(m.clone(), format!("{}-01", &d[0..7])))
                .unwrap();
            e.0 += (*s == "closed") as i64;
            e.1 += 1;
        }
    }
    let got_c: BTreeMap<(String, String), (i64, i64)> = c
        .query(
            "SELECT measure_id, month::text, met, eligible FROM mart.q_measure_trend('2025-12-31')",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| ((r.get(0), r.get(1)), (r.get(2), r.get(3))))
        .collect();
    assert_eq!(got_c, want_c);

    // (d) top conditions in the largest panel.
    let mut panel_size: BTreeMap<i64, usize> = BTreeMap::new();
    for (pr, _) in attr.values() {
        *panel_size.entry(*pr).or_default() += 1;
    }
    let (&prac, _) = panel_size
        .iter()
        .max_by_key(|(pr, n)| (**n, -**pr))
        .unwrap();
    let panel: BTreeSet<i64> = attr
        .iter()
        .filter(|(_, v)| v.0 == prac)
        .map(|(p, _)| *p)
        .collect();
    let mut per_code: BTreeMap<(String, String), BTreeSet<i64>> = BTreeMap::new();
    for r in c
        .query(
            "SELECT sp.person_id, c.code_system, c.code, c.clinical_status
             FROM edw.condition c JOIN edw.source_patient sp ON sp.id = c.source_patient_id",
            &[],
        )
        .unwrap()
    {
        let status: Option<String> = r.get(3);
        let active = matches!(
            status.as_deref(),
            None | Some("active") | Some("recurrence") | Some("relapse")
        );
        let person: Option<i64> = r.get(0);
        if let (true, Some(p)) = (active, person) {
            if panel.contains(&p) {
                per_code.entry((r.get(1), r.get(2))).or_default().insert(p);
            }
        }
    }
    let mut want_d: Vec<(String, String, i64)> = per_code
        .into_iter()
        .map(|((s, k), ps)| (s, k, ps.len() as i64))
        .collect();
    want_d.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)).then(a.1.cmp(&b.1)));
    want_d.truncate(3);
    let pkey = prov_key.iter().find(|(_, v)| **v == prac).unwrap().0;
    let got_d: Vec<(String, String, i64)> = c
        .query(
            "SELECT code_system, code, patients FROM mart.q_panel_top_conditions($1, 3)",
            &[pkey],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert!(!want_d.is_empty());
    assert_eq!(got_d, want_d);

    // (e) persons with >= 3 open gaps.
    let mut open: BTreeMap<i64, i64> = BTreeMap::new();
    for (p, _, s, _) in &gaps {
        if *s == "open" {
            *open.entry(*p).or_default() += 1;
        }
    }
    let want_e: BTreeMap<i64, i64> = open.into_iter().filter(|(_, n)| *n >= 3).collect();
    let got_e: BTreeMap<i64, i64> = c
        .query(
            "SELECT person_id, open_gaps FROM mart.q_patients_3_open_gaps",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(!want_e.is_empty() && want_e.len() < persons.len());
    assert_eq!(got_e, want_e);

    // The (a)/(b) summaries follow later changes: close one attributed person's open
    // gaps; a run with nothing new leaves them alone.
    let (p, n) = gaps
        .iter()
        .filter(|g| g.2 == "open" && attr.contains_key(&g.0))
        .map(|g| {
            (
                g.0,
                gaps.iter().filter(|h| h.0 == g.0 && h.2 == "open").count() as i64,
            )
        })
        .next()
        .unwrap();
    let sums = |c: &mut postgres::Client| -> (i64, i64) {
        let a: i64 = c
            .query_one(
                "SELECT sum(met)::bigint FROM mart.q_measure_rate_provider_month",
                &[],
            )
            .unwrap()
            .get(0);
        let b: i64 = c
            .query_one(
                "SELECT coalesce(sum(open_gaps), 0)::bigint FROM mart.q_open_gaps_care_team",
                &[],
            )
            .unwrap()
            .get(0);
        (a, b)
    };
    let (met0, open0) = sums(&mut c);
    c.execute(
        "UPDATE edw.care_gap SET status = 'closed', change_no = nextval('edw.change_seq')
         WHERE person_id = $1 AND status = 'open'",
        &[&p],
    )
    .unwrap();
    assert!(edw::etl::run(&mut c).unwrap().summaries_rebuilt);
    let (met1, open1) = sums(&mut c);
    assert_eq!(met1, met0 + n);
    let has_team = attr[&p].1.is_some();
    assert_eq!(open1, open0 - if has_team { n } else { 0 });
    assert!(!edw::etl::run(&mut c).unwrap().summaries_rebuilt);

    // The bench's query list runs on this database too.
    for (name, sql) in edw::quality::queries(&mut c).unwrap() {
        let (_, rows) = edw::quality::time_query(&mut c, &sql, 1).unwrap();
        assert!(rows > 0, "{name}: no rows");
        assert!(!edw::quality::explain(&mut c, &sql).unwrap().is_empty());
    }
}
