//! Record linkage on generated duplicates with known truth.
use std::collections::{HashMap, HashSet};
use testkit::testdata::{patient_json, random_person, Person, Rng};

fn typo(rng: &mut Rng, s: &str) -> String {
    let mut c: Vec<char> = s.chars().collect();
    if c.len() < 3 {
        return s.to_string();
    }
    let i = 1 + rng.below(c.len() as u64 - 2) as usize;
    match rng.below(3) {
        0 => c.swap(i, i + 1), // transposition
        1 => {
            c.remove(i); // deletion
        }
        _ => c[i] = if c[i] == 'e' { 'a' } else { 'e' }, // substitution
    }
    c.into_iter().collect()
}

#[test]
fn matching_precision_and_recall_on_known_duplicates() {
    let pg = testkit::pgharness::PgHarness::start().unwrap();
    let url = pg.create_db("m").unwrap();
    let mut c = edw::connect(&url).unwrap();
    edw::migrate::migrate(&mut c).unwrap();
    let tmp = std::env::temp_dir().join(format!("edw-match-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(tmp.join("a")).unwrap();
    std::fs::create_dir_all(tmp.join("b")).unwrap();

    let mut rng = Rng::seeded(2024);
    let n = 1500usize;
    let people: Vec<Person> = (0..n).map(|i| random_person(&mut rng, i as u64)).collect();
    let mut a_lines = String::new();
    let mut b_lines = String::new();
    let mut truth: HashSet<(String, String)> = HashSet::new();
    let (mut typos, mut swaps, mut moves) = (0, 0, 0);
    for (i, p) in people.iter().enumerate() {
        a_lines += &format!(
            "{}\n",
            patient_json(
                p,
                &format!("a{i}"),
                None,
                "https://a.example.org/mrn",
                rng.chance(0.3)
            )
        );
        if i % 5 < 3 {
            // 60% also in source B, perturbed.
            let mut q = p.clone();
            if rng.chance(0.3) {
                q.family = typo(&mut rng, &q.family);
                typos += 1;
            }
            if rng.chance(0.2) {
                q.given = typo(&mut rng, &q.given);
                typos += 1;
            }
            if rng.chance(0.1) {
                std::mem::swap(&mut q.family, &mut q.given);
                swaps += 1;
            }
            if rng.chance(0.3) {
                let other = random_person(&mut rng, 999_999);
                q.line = other.line;
                q.city = other.city;
                q.state = other.state;
                q.postal = other.postal;
                moves += 1;
                if rng.chance(0.5) {
                    q.phone = other.phone;
                }
            }
            if rng.chance(0.05) {
                // day/month transposition typo in the birth date
                let d: Vec<&str> = q.birth_date.split('-').collect();
                if d[2].parse::<u32>().unwrap() <= 12 {
                    q.birth_date = format!("{}-{}-{}", d[0], d[2], d[1]);
                }
            }
            b_lines += &format!(
                "{}\n",
                patient_json(
                    &q,
                    &format!("b{i}"),
                    None,
                    "https://b.example.org/mrn",
                    rng.chance(0.3)
                )
            );
            truth.insert((format!("a{i}"), format!("b{i}")));
        }
    }
    // 500 people only in B.
    for j in 0..500 {
        let p = random_person(&mut rng, 10_000 + j);
        b_lines += &format!(
            "{}\n",
            patient_json(
                &p,
                &format!("bx{j}"),
                None,
                "https://b.example.org/mrn",
                false
            )
        );
    }
    assert!(
        typos > 100 && swaps > 30 && moves > 100,
        "perturbations: {typos} {swaps} {moves}"
    );
    std::fs::write(tmp.join("a/Patient.ndjson"), a_lines).unwrap();
    std::fs::write(tmp.join("b/Patient.ndjson"), b_lines).unwrap();
    let mut o = edw::ingest::Options::new("A");
    edw::ingest::ingest(&mut c, &[tmp.join("a")], &o).unwrap();
    o.source = "B".into();
    edw::ingest::ingest(&mut c, &[tmp.join("b")], &o).unwrap();

    let rep = edw::matching::run(&mut c, &edw::matching::Params::default()).unwrap();
    assert!(
        rep.identifier_links > 0 && rep.probabilistic_links > 0,
        "{}",
        rep.summary()
    );

    let clusters = |c: &mut postgres::Client| -> HashSet<(String, String)> {
        let mut by_person: HashMap<i64, (Vec<String>, Vec<String>)> = HashMap::new();
        for r in c
            .query(
                "SELECT person_id, source, source_id FROM edw.source_patient",
                &[],
            )
            .unwrap()
        {
            let e = by_person.entry(r.get(0)).or_default();
            if r.get::<_, String>(1) == "A" {
                e.0.push(r.get(2));
            } else {
                e.1.push(r.get(2));
            }
        }
        let mut pairs = HashSet::new();
        for (a, b) in by_person.values() {
            for x in a {
                for y in b {
                    pairs.insert((x.clone(), y.clone()));
                }
            }
        }
        pairs
    };
    let predicted = clusters(&mut c);
    let tp = predicted.intersection(&truth).count() as f64;
    let precision = tp / predicted.len() as f64;
    let recall = tp / truth.len() as f64;
    eprintln!(
        "matching: {} | true pairs {} predicted {} tp {} precision {precision:.4} recall {recall:.4}",
        rep.summary(),
        truth.len(),
        predicted.len(),
        tp
    );
    assert!(precision >= 0.98, "precision {precision}");
    assert!(recall >= 0.9, "recall {recall}");
    let nulls: i64 = c
        .query_one(
            "SELECT count(*) FROM edw.source_patient WHERE person_id IS NULL",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(nulls, 0);

    // Re-running is stable: same persons, same links.
    let persons: Vec<(i64, String)> = c
        .query(
            "SELECT person_id, source || source_id FROM edw.source_patient ORDER BY 2",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let rep2 = edw::matching::run(&mut c, &edw::matching::Params::default()).unwrap();
    assert_eq!(rep2.new_persons, 0);
    assert_eq!(rep2.reassigned_records, 0);
    let persons2: Vec<(i64, String)> = c
        .query(
            "SELECT person_id, source || source_id FROM edw.source_patient ORDER BY 2",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(persons, persons2);

    // The review queue: grey-zone pairs, highest weight first, shown by how the
    // fields agree. A steward's link joins the two records at the next run; a
    // rejected pair leaves the queue for good.
    let params = edw::matching::Params::default();
    let items = edw::review::list(&mut c, 100_000).unwrap();
    assert_eq!(items.len(), rep2.review_pairs);
    assert!(items.len() >= 2, "{}", rep2.summary());
    assert!(items.windows(2).all(|w| w[0].score >= w[1].score));
    assert!(items
        .iter()
        .all(|i| i.score >= params.lower && i.score < params.upper && i.agreement.len() == 5));
    let person_of = |c: &mut postgres::Client, id: i64| -> i64 {
        c.query_one(
            "SELECT person_id FROM edw.source_patient WHERE id = $1",
            &[&id],
        )
        .unwrap()
        .get(0)
    };
    let (x, y) = (items[0].a_id, items[0].b_id);
    let (u, v) = (items[1].a_id, items[1].b_id);
    edw::review::decide(&mut c, x, y, edw::review::Decision::Link).unwrap();
    edw::review::decide(&mut c, v, u, edw::review::Decision::Reject).unwrap();
    assert!(edw::review::decide(&mut c, x, y, edw::review::Decision::Reject).is_err());
    edw::matching::run(&mut c, &params).unwrap();
    assert_eq!(person_of(&mut c, x), person_of(&mut c, y));
    let after = edw::review::list(&mut c, 100_000).unwrap();
    assert_eq!(after.len(), items.len() - 2);
    assert!(after
        .iter()
        .all(|i| (i.a_id, i.b_id) != (x, y) && (i.a_id, i.b_id) != (u, v)));
    let _ = std::fs::remove_dir_all(&tmp);
}
