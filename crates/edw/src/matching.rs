//! Patient matching across sources (enterprise master patient index).
//!
//! 1. exact: records sharing an identifier (system + value) are linked;
//! 2. probabilistic (Fellegi–Sunter): candidate pairs from blocking keys
//!    (birth year + Soundex of either name part, full birth date, phone) are scored
//!    with agreement/disagreement log2 weights on name (Jaro–Winkler, swapped
//!    given/family tolerated), birth date, sex, address and phone.
//!    score >= upper and different sources: auto-link; lower <= score < upper (or
//!    same-source pairs >= upper): review queue; below lower: non-link.
//! 3. clusters (union–find over links) become persons; person ids are kept stable
//!    (a cluster keeps the smallest person id it already had).

use crate::Result;
use std::collections::HashMap;

#[derive(Debug, Clone)]
pub struct Params {
    pub upper: f64,
    pub lower: f64,
    /// Blocks larger than this are skipped (reported), to bound pair counts.
    pub max_block: usize,
    /// A phone number shared by more records than this is not identifying
    /// (switchboards, test numbers): its block is skipped.
    pub max_phone_block: usize,
    /// Phase timings and counts on stderr.
    pub progress: bool,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            upper: 14.0,
            lower: 6.0,
            max_block: 500,
            max_phone_block: 20,
            progress: false,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub records: usize,
    pub candidate_pairs: usize,
    pub identifier_links: usize,
    pub probabilistic_links: usize,
    pub review_pairs: usize,
    pub skipped_blocks: usize,
    pub persons: usize,
    pub new_persons: usize,
    pub reassigned_records: usize,
}

impl Report {
    pub fn summary(&self) -> String {
        format!(
            "{{\"records\":{},\"candidate_pairs\":{},\"identifier_links\":{},\"probabilistic_links\":{},\
             \"review_pairs\":{},\"skipped_blocks\":{},\"persons\":{},\"new_persons\":{},\"reassigned_records\":{}}}",
            self.records,
            self.candidate_pairs,
            self.identifier_links,
            self.probabilistic_links,
            self.review_pairs,
            self.skipped_blocks,
            self.persons,
            self.new_persons,
            self.reassigned_records
        )
    }
}

#[derive(Debug, Clone, Default)]
pub struct Rec {
    pub id: i64,
    pub source: String,
    pub person_id: Option<i64>,
    pub family: String,
    pub given: String,
    pub birth_date: String,
    pub sex: String,
    pub address: String,
    pub postal: String,
    pub phone: String,
    pub identifiers: Vec<String>,
}

pub fn normalize(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_uppercase)
        .collect()
}

fn digits_only(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

/// American Soundex (letter + 3 digits); "" for an empty input.
pub fn soundex(s: &str) -> String {
    let s: Vec<char> = normalize(s)
        .chars()
        .filter(|c| c.is_ascii_alphabetic())
        .collect();
    let Some(&first) = s.first() else {
        return String::new();
    };
    let code = |c: char| match c {
        'B' | 'F' | 'P' | 'V' => '1',
        'C' | 'G' | 'J' | 'K' | 'Q' | 'S' | 'X' | 'Z' => '2',
        'D' | 'T' => '3',
        'L' => '4',
        'M' | 'N' => '5',
        'R' => '6',
        'H' | 'W' => 'h',
        _ => '0',
    };
    let mut out = String::from(first);
    let mut last = code(first);
    for &c in &s[1..] {
        let k = code(c);
        if k == 'h' {
            continue;
        }
        if k != '0' && k != last {
            out.push(k);
            if out.len() == 4 {
                break;
            }
        }
        last = k;
    }
    while out.len() < 4 {
        out.push('0');
    }
    out
}

/// Jaro–Winkler similarity in [0, 1]. Called for every candidate pair (tens of
/// millions at 1 M patients): strings up to 64 characters stay on the stack.
pub fn jaro_winkler(a: &str, b: &str) -> f64 {
    const N: usize = 64;
    let (mut ab, mut bb) = (['\0'; N], ['\0'; N]);
    match (fill(a, &mut ab), fill(b, &mut bb)) {
        (Some(la), Some(lb)) => jw(&ab[..la], &bb[..lb], &mut [false; N], &mut [false; N]),
        _ => {
            let a: Vec<char> = a.chars().collect();
            let b: Vec<char> = b.chars().collect();
            jw(&a, &b, &mut vec![false; a.len()], &mut vec![false; b.len()])
        }
    }
}

/// The characters of `s` into `buf`; `None` when they do not fit.
fn fill(s: &str, buf: &mut [char]) -> Option<usize> {
    let mut n = 0;
    for c in s.chars() {
        *buf.get_mut(n)? = c;
        n += 1;
    }
    Some(n)
}

fn jw(a: &[char], b: &[char], am: &mut [bool], bm: &mut [bool]) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let window = (a.len().max(b.len()) / 2).saturating_sub(1);
    let mut m = 0usize;
    for i in 0..a.len() {
        let lo = i.saturating_sub(window);
        let hi = (i + window + 1).min(b.len());
        for j in lo..hi {
            if !bm[j] && a[i] == b[j] {
                am[i] = true;
                bm[j] = true;
                m += 1;
                break;
            }
        }
    }
    if m == 0 {
        return 0.0;
    }
    let (mut t, mut k) = (0usize, 0usize);
    for i in 0..a.len() {
        if am[i] {
            while !bm[k] {
                k += 1;
            }
            if a[i] != b[k] {
                t += 1;
            }
            k += 1;
        }
    }
    let m = m as f64;
    let jaro = (m / a.len() as f64 + m / b.len() as f64 + (m - t as f64 / 2.0) / m) / 3.0;
    let prefix = a.iter().zip(b).take(4).take_while(|(x, y)| x == y).count() as f64;
    jaro + prefix * 0.1 * (1.0 - jaro)
}

fn w(m: f64, u: f64) -> (f64, f64) {
    ((m / u).log2(), ((1.0 - m) / (1.0 - u)).log2())
}

/// Graded name-part weight: full agreement, partial (typo), disagreement.
fn name_weight(a: &str, b: &str, m: f64, u: f64) -> f64 {
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let (agree, disagree) = w(m, u);
    let s = jaro_winkler(a, b);
    if s >= 0.94 {
        agree
    } else if s >= 0.85 {
        agree * 0.5
    } else {
        disagree
    }
}

/// Fellegi–Sunter match weight of two records (sum of log2 likelihood ratios).
pub fn score(a: &Rec, b: &Rec) -> f64 {
    let mut total = 0.0;
    // Names: best of direct and swapped (given <-> family) orientation.
    let direct =
        name_weight(&a.family, &b.family, 0.95, 0.02) + name_weight(&a.given, &b.given, 0.93, 0.03);
    let swapped = name_weight(&a.family, &b.given, 0.95, 0.02)
        + name_weight(&a.given, &b.family, 0.93, 0.03)
        - 1.0;
    total += direct.max(swapped);
    // Birth date: exact; or one component differs / day-month transposed (typo).
    if !a.birth_date.is_empty() && !b.birth_date.is_empty() {
        let (agree, disagree) = w(0.97, 0.003);
        if a.birth_date == b.birth_date {
            total += agree;
        } else {
            let pa: Vec<&str> = a.birth_date.split('-').collect();
            let pb: Vec<&str> = b.birth_date.split('-').collect();
            let same = pa.iter().zip(&pb).filter(|(x, y)| x == y).count();
            let transposed = pa.len() == 3
                && pb.len() == 3
                && pa[0] == pb[0]
                && pa[1] == pb[2]
                && pa[2] == pb[1];
            if same == 2 || transposed {
                total += 3.0;
            } else {
                total += disagree;
            }
        }
    }
    if !a.sex.is_empty() && !b.sex.is_empty() {
        let (agree, disagree) = w(0.98, 0.5);
        total += if a.sex == b.sex { agree } else { disagree };
    }
    if !a.address.is_empty() && !b.address.is_empty() {
        let (agree, disagree) = w(0.75, 0.001);
        if a.address == b.address {
            total += agree;
        } else if jaro_winkler(&a.address, &b.address) >= 0.95 {
            total += agree * 0.5;
        } else if a.postal == b.postal && !a.postal.is_empty() {
            total += 0.5;
        } else {
            total += disagree;
        }
    }
    if !a.phone.is_empty() && !b.phone.is_empty() {
        let (agree, disagree) = w(0.8, 0.001);
        total += if a.phone == b.phone { agree } else { disagree };
    }
    total
}

pub fn blocking_keys(r: &Rec) -> Vec<String> {
    let mut keys = Vec::new();
    let year = r.birth_date.get(0..4).unwrap_or("");
    if !year.is_empty() {
        for part in [&r.family, &r.given] {
            let sx = soundex(part);
            if !sx.is_empty() {
                keys.push(format!("y{year}:{sx}"));
            }
        }
    }
    if r.birth_date.len() == 10 {
        keys.push(format!("d{}", r.birth_date));
    }
    if r.phone.len() >= 7 {
        keys.push(format!("p{}", r.phone));
    }
    keys.sort();
    keys.dedup();
    keys
}

struct Dsu(Vec<usize>);
impl Dsu {
    fn find(&mut self, x: usize) -> usize {
        let mut r = x;
        while self.0[r] != r {
            r = self.0[r];
        }
        let mut y = x;
        while self.0[y] != r {
            let n = self.0[y];
            self.0[y] = r;
            y = n;
        }
        r
    }
    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
            self.0[hi] = lo;
        }
    }
}

/// Every record. `distributed`: the warehouse's Citus form, where a record's history rows
/// are joined on its person too (the shard key: otherwise a join between shards).
pub fn load_records<C: postgres::GenericClient>(c: &mut C, distributed: bool) -> Result<Vec<Rec>> {
    records(c, "", &[], distributed)
}

/// The records with these ids (the review queue shows how a pair agrees).
pub fn load_records_by_id(c: &mut postgres::Client, ids: &[i64]) -> Result<Vec<Rec>> {
    let distributed = crate::migrate::is_distributed(c)?;
    records(c, "WHERE sp.id = ANY($1)", &[&ids], distributed)
}

fn records<C: postgres::GenericClient>(
    c: &mut C,
    filter: &str,
    params: &[&(dyn postgres::types::ToSql + Sync)],
    distributed: bool,
) -> Result<Vec<Rec>> {
    let same_person = if distributed {
        " AND x.person_id = sp.person_id"
    } else {
        ""
    };
    let rows = c.query(
        &format!("SELECT sp.id, sp.source, sp.person_id, coalesce(sp.birth_date::text, ''), coalesce(sp.sex, ''),
           coalesce(n.family, ''), coalesce(n.given, ''),
           coalesce(a.line || ' ' || a.city || ' ' || a.state, ''), coalesce(a.postal_code, ''),
           coalesce(t.value, ''),
           coalesce((SELECT array_agg(x.system || '|' || x.value ORDER BY x.system, x.value)
                     FROM edw.patient_identifier x WHERE x.source_patient_id = sp.id{same_person}
                       AND x.valid_to IS NULL), '{{}}')
         FROM edw.source_patient sp
         LEFT JOIN LATERAL (SELECT family, given FROM edw.patient_name x
              WHERE x.source_patient_id = sp.id{same_person} AND x.valid_to IS NULL
              ORDER BY (x.use = 'official') DESC, x.family, x.given LIMIT 1) n ON true
         LEFT JOIN LATERAL (SELECT line, city, state, postal_code FROM edw.patient_address x
              WHERE x.source_patient_id = sp.id{same_person} AND x.valid_to IS NULL
              ORDER BY x.line, x.postal_code LIMIT 1) a ON true
         LEFT JOIN LATERAL (SELECT value FROM edw.patient_telecom x
              WHERE x.source_patient_id = sp.id{same_person} AND x.valid_to IS NULL AND x.system = 'phone'
              ORDER BY x.value LIMIT 1) t ON true
         {filter}
         ORDER BY sp.id"),
        params,
    )?;
    Ok(rows
        .iter()
        .map(|r| Rec {
            id: r.get(0),
            source: r.get(1),
            person_id: r.get(2),
            birth_date: r.get(3),
            sex: r.get(4),
            family: normalize(r.get(5)),
            given: normalize(r.get(6)),
            address: normalize(r.get(7)),
            postal: normalize(r.get(8)),
            phone: digits_only(r.get(9)),
            identifiers: r.get(10),
        })
        .collect())
}

/// A person no record, attribution, result, gap or panel refers to (co-located with
/// the person on Citus).
const PERSON_UNREFERENCED: &str = "
    AND NOT EXISTS (SELECT 1 FROM edw.source_patient x WHERE x.person_id = p.id)
    AND NOT EXISTS (SELECT 1 FROM edw.attribution x WHERE x.person_id = p.id)
    AND NOT EXISTS (SELECT 1 FROM edw.measure_result x WHERE x.person_id = p.id)
    AND NOT EXISTS (SELECT 1 FROM edw.care_gap x WHERE x.person_id = p.id)
    AND NOT EXISTS (SELECT 1 FROM edw.patient_group_member x WHERE x.person_id = p.id)";

/// Run matching over all source patients and (re)assign persons.
pub fn run(c: &mut postgres::Client, p: &Params) -> Result<Report> {
    let distributed = crate::migrate::is_distributed(c)?;
    let mut tx = c.transaction()?;
    // Moves records between persons: a source change `measure` must see (see
    // measure::SOURCE_WRITE_LOCK).
    tx.execute(
        "SELECT pg_advisory_xact_lock_shared($1)",
        &[&crate::measure::SOURCE_WRITE_LOCK],
    )?;
    // One matcher at a time.
    tx.execute("SELECT pg_advisory_xact_lock(7419002)", &[])?;
    let t0 = std::time::Instant::now();
    // Fresh statistics on the tables just loaded (autovacuum lags behind a bulk load):
    // with none, the per-record lookups below were planned as scans of whole tables,
    // 43 s instead of 1 s to read 50,000 records.
    tx.batch_execute(
        "ANALYZE edw.source_patient, edw.patient_name, edw.patient_address, edw.patient_telecom,
                 edw.patient_identifier",
    )?;
    let phase = |what: std::fmt::Arguments| {
        if p.progress {
            eprintln!("match: {what} ({:.1}s)", t0.elapsed().as_secs_f64());
        }
    };
    let recs = load_records(&mut tx, distributed)?;
    phase(format_args!("{} records loaded", recs.len()));
    let mut rep = Report {
        records: recs.len(),
        ..Default::default()
    };
    let n = recs.len();
    let mut dsu = Dsu((0..n).collect());
    let mut links: Vec<(i64, i64, &'static str, Option<f64>)> = Vec::new();
    let mut review: Vec<(i64, i64, f64)> = Vec::new();

    // 1. exact identifier links.
    let mut by_ident: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, r) in recs.iter().enumerate() {
        for id in &r.identifiers {
            by_ident.entry(id.as_str()).or_default().push(i);
        }
    }
    let mut ident_pairs: std::collections::HashSet<(usize, usize)> = Default::default();
    for members in by_ident.values() {
        for w in members.windows(2) {
            let (a, b) = (w[0].min(w[1]), w[0].max(w[1]));
            if ident_pairs.insert((a, b)) {
                dsu.union(a, b);
                links.push((recs[a].id, recs[b].id, "identifier", None));
            }
        }
    }
    rep.identifier_links = links.len();

    // 2. blocking + Fellegi–Sunter.
    let mut blocks: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, r) in recs.iter().enumerate() {
        for k in blocking_keys(r) {
            blocks.entry(k).or_default().push(i);
        }
    }
    let mut pairs: Vec<(usize, usize)> = Vec::new();
    let mut keys: Vec<&String> = blocks.keys().collect();
    keys.sort();
    for k in keys {
        let members = &blocks[k];
        let cap = if k.starts_with('p') {
            p.max_phone_block
        } else {
            p.max_block
        };
        if members.len() > cap {
            rep.skipped_blocks += 1;
            continue;
        }
        for x in 0..members.len() {
            for y in x + 1..members.len() {
                pairs.push((members[x], members[y]));
            }
        }
    }
    // Members are pushed in index order, so each pair is (low, high).
    pairs.sort_unstable();
    pairs.dedup();
    rep.candidate_pairs = pairs.len();
    phase(format_args!(
        "{} candidate pairs from {} blocks ({} skipped)",
        pairs.len(),
        blocks.len(),
        rep.skipped_blocks
    ));
    let scored: Vec<(usize, usize, f64)> = {
        use rayon::prelude::*;
        pairs
            .par_iter()
            .filter(|p| !ident_pairs.contains(p))
            .map(|&(a, b)| (a, b, score(&recs[a], &recs[b])))
            .collect()
    };
    drop(pairs);
    for (a, b, s) in scored {
        if s >= p.upper && recs[a].source != recs[b].source {
            dsu.union(a, b);
            links.push((recs[a].id, recs[b].id, "probabilistic", Some(s)));
            rep.probabilistic_links += 1;
        } else if s >= p.lower {
            review.push((recs[a].id, recs[b].id, s));
        }
    }
    rep.review_pairs = review.len();
    phase(format_args!(
        "scored: {} probabilistic links, {} for review",
        rep.probabilistic_links, rep.review_pairs
    ));

    // Manual decisions are kept and honoured.
    let idx: HashMap<i64, usize> = recs.iter().enumerate().map(|(i, r)| (r.id, i)).collect();
    for row in tx.query(
        "SELECT a_id, b_id FROM edw.match_link WHERE method = 'manual'",
        &[],
    )? {
        if let (Some(&a), Some(&b)) = (idx.get(&row.get(0)), idx.get(&row.get(1))) {
            dsu.union(a, b);
        }
    }

    tx.execute("DELETE FROM edw.match_link WHERE method <> 'manual'", &[])?;
    let la: Vec<i64> = links.iter().map(|l| l.0.min(l.1)).collect();
    let lb: Vec<i64> = links.iter().map(|l| l.0.max(l.1)).collect();
    let lm: Vec<&str> = links.iter().map(|l| l.2).collect();
    let ls: Vec<Option<f64>> = links.iter().map(|l| l.3).collect();
    tx.execute(
        "INSERT INTO edw.match_link (a_id, b_id, method, score)
         SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::float8[]) ON CONFLICT DO NOTHING",
        &[&la, &lb, &lm, &ls],
    )?;
    tx.execute("DELETE FROM edw.match_review WHERE status = 'open'", &[])?;
    let ra: Vec<i64> = review.iter().map(|r| r.0.min(r.1)).collect();
    let rb: Vec<i64> = review.iter().map(|r| r.0.max(r.1)).collect();
    let rs: Vec<f64> = review.iter().map(|r| r.2).collect();
    tx.execute(
        "INSERT INTO edw.match_review (a_id, b_id, score)
         SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::float8[])
         ON CONFLICT (a_id, b_id) DO UPDATE SET score = EXCLUDED.score",
        &[&ra, &rb, &rs],
    )?;

    phase(format_args!("links and review queue written"));
    // 3. clusters -> persons (stable ids).
    let mut clusters: HashMap<usize, Vec<usize>> = HashMap::new();
    for i in 0..n {
        let r = dsu.find(i);
        clusters.entry(r).or_default().push(i);
    }
    let mut roots: Vec<usize> = clusters.keys().copied().collect();
    roots.sort_unstable();
    let mut used = std::collections::HashSet::new();
    // Pass 1: keep an existing person id per cluster where possible; count new ones.
    let mut assigned: Vec<(usize, Option<i64>)> = Vec::with_capacity(roots.len());
    for root in roots {
        let members = &clusters[&root];
        let mut existing: Vec<i64> = members.iter().filter_map(|&i| recs[i].person_id).collect();
        existing.sort_unstable();
        existing.dedup();
        let pid = existing.into_iter().find(|x| !used.contains(x));
        if let Some(x) = pid {
            used.insert(x);
        }
        assigned.push((root, pid));
    }
    // Pass 2: allocate all new person ids in one statement (in cluster order).
    let need = assigned.iter().filter(|a| a.1.is_none()).count() as i64;
    let new_ids: Vec<i64> = tx
        .query(
            "INSERT INTO edw.person (id)
             SELECT nextval(pg_get_serial_sequence('edw.person', 'id')) FROM generate_series(1, $1::bigint)
             RETURNING id",
            &[&need],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut new_ids = {
        let mut v = new_ids;
        v.sort_unstable();
        v.into_iter()
    };
    rep.new_persons = need as usize;
    let (mut upd_ids, mut upd_pids) = (Vec::new(), Vec::new());
    let mut left: Vec<i64> = Vec::new(); // persons that lost a record
    for (root, pid) in assigned {
        let pid = match pid {
            Some(p) => p,
            None => new_ids.next().expect("allocated above"),
        };
        used.insert(pid);
        for &i in &clusters[&root] {
            if recs[i].person_id != Some(pid) {
                upd_ids.push(recs[i].id);
                upd_pids.push(pid);
                if let Some(old) = recs[i].person_id {
                    rep.reassigned_records += 1;
                    left.push(old);
                }
            }
        }
    }
    if distributed {
        // Rows move to the new person's shard (`edw.move_records`, migration 1002); the
        // kept records' change number is one per statement, taken on the coordinator.
        tx.execute("SELECT edw.move_records($1, $2)", &[&upd_ids, &upd_pids])?;
        tx.execute(
            "UPDATE edw.source_patient s SET change_no = (SELECT nextval('edw.change_seq'))
             WHERE s.person_id = ANY($1) AND NOT s.id = ANY($2)",
            &[&left, &upd_ids],
        )?;
    } else {
        tx.execute(
            "UPDATE edw.source_patient s SET person_id = u.pid, change_no = nextval('edw.change_seq')
             FROM unnest($1::bigint[], $2::bigint[]) AS u(id, pid) WHERE s.id = u.id",
            &[&upd_ids, &upd_pids],
        )?;
        // The records a person keeps are changed too, as far as their measures go.
        tx.execute(
            "UPDATE edw.source_patient s SET change_no = nextval('edw.change_seq')
             WHERE s.person_id = ANY($1) AND NOT s.id = ANY($2)",
            &[&left, &upd_ids],
        )?;
    }
    rep.persons = used.len();
    phase(format_args!(
        "{} persons ({} new), {} records reassigned",
        rep.persons, rep.new_persons, rep.reassigned_records
    ));
    // Persons left without records and not referenced elsewhere are removed.
    if distributed {
        // Only persons that lost a record can be left without one here (each record got a
        // person when it was loaded). worklist_action stays on the coordinator: read first,
        // so the rest is co-located with the person and runs on its shard.
        let kept: Vec<i64> = tx
            .query(
                "SELECT DISTINCT person_id FROM edw.worklist_action WHERE person_id = ANY($1)",
                &[&left],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect();
        tx.execute(
            &format!(
                "DELETE FROM edw.person p WHERE p.id = ANY($1) AND NOT p.id = ANY($2) {}",
                PERSON_UNREFERENCED
            ),
            &[&left, &kept],
        )?;
    } else {
        tx.execute(
            &format!(
                "DELETE FROM edw.person p WHERE true {}
                   AND NOT EXISTS (SELECT 1 FROM edw.worklist_action x WHERE x.person_id = p.id)",
                PERSON_UNREFERENCED
            ),
            &[],
        )?;
    }
    tx.commit()?;
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn soundex_and_jw() {
        assert_eq!(soundex("Robert"), "R163");
        assert_eq!(soundex("Rupert"), "R163");
        assert_eq!(soundex("Tymczak"), "T522");
        assert_eq!(soundex("Ashcraft"), "A261");
        assert!((jaro_winkler("MARTHA", "MARHTA") - 0.961).abs() < 0.01);
        assert!((jaro_winkler("DIXON", "DICKSONX") - 0.813).abs() < 0.01);
        assert_eq!(jaro_winkler("", ""), 1.0);
    }
}
