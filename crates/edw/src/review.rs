//! The matching review queue: record pairs whose match weight fell between the
//! thresholds (`edw.match_review`), for a data steward to link or reject. A decision
//! is kept across re-runs of `phm-edw match`: a link is a manual `match_link` that
//! matching honours; a rejected pair is never shown again.
//!
//! The listing shows how the two records agree, field by field, not their values:
//! the steward opens the records themselves in the warehouse.

use crate::matching::{jaro_winkler, load_records_by_id, Rec};
use crate::{Error, Result};
use std::collections::HashMap;

#[derive(Debug, Clone)]
pub struct ReviewItem {
    pub a_id: i64,
    pub b_id: i64,
    pub score: f64,
    pub a_source: String,
    pub b_source: String,
    /// Field agreement: name, birth date, sex, address, phone.
    pub agreement: Vec<(&'static str, Agreement)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agreement {
    Same,
    Similar,
    Different,
    Missing,
}

impl Agreement {
    pub fn as_str(self) -> &'static str {
        match self {
            Agreement::Same => "same",
            Agreement::Similar => "similar",
            Agreement::Different => "different",
            Agreement::Missing => "missing",
        }
    }
}

fn compare(a: &str, b: &str, similar: impl Fn(&str, &str) -> bool) -> Agreement {
    if a.is_empty() || b.is_empty() {
        Agreement::Missing
    } else if a == b {
        Agreement::Same
    } else if similar(a, b) {
        Agreement::Similar
    } else {
        Agreement::Different
    }
}

fn agreement(a: &Rec, b: &Rec) -> Vec<(&'static str, Agreement)> {
    let name_a = format!("{} {}", a.given, a.family);
    let name_b = format!("{} {}", b.given, b.family);
    let swapped_b = format!("{} {}", b.family, b.given);
    vec![
        (
            "name",
            compare(name_a.trim(), name_b.trim(), |x, y| {
                jaro_winkler(x, y) >= 0.85 || x == swapped_b.trim()
            }),
        ),
        (
            "birth_date",
            compare(&a.birth_date, &b.birth_date, |x, y| {
                x.split('-')
                    .zip(y.split('-'))
                    .filter(|(p, q)| p == q)
                    .count()
                    == 2
            }),
        ),
        ("sex", compare(&a.sex, &b.sex, |_, _| false)),
        (
            "address",
            compare(&a.address, &b.address, |x, y| {
                jaro_winkler(x, y) >= 0.95 || (!a.postal.is_empty() && a.postal == b.postal)
            }),
        ),
        ("phone", compare(&a.phone, &b.phone, |_, _| false)),
    ]
}

/// Open pairs, highest weight first.
pub fn list(c: &mut postgres::Client, limit: i64) -> Result<Vec<ReviewItem>> {
    let rows = c.query(
        "SELECT a_id, b_id, score FROM edw.match_review WHERE status = 'open'
         ORDER BY score DESC, a_id, b_id LIMIT $1",
        &[&limit],
    )?;
    let mut ids: Vec<i64> = rows
        .iter()
        .flat_map(|r| [r.get::<_, i64>(0), r.get(1)])
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let recs: HashMap<i64, Rec> = load_records_by_id(c, &ids)?
        .into_iter()
        .map(|r| (r.id, r))
        .collect();
    Ok(rows
        .iter()
        .filter_map(|r| {
            let (a, b) = (recs.get(&r.get(0))?, recs.get(&r.get(1))?);
            Some(ReviewItem {
                a_id: a.id,
                b_id: b.id,
                score: r.get(2),
                a_source: a.source.clone(),
                b_source: b.source.clone(),
                agreement: agreement(a, b),
            })
        })
        .collect())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Link,
    Reject,
}

/// Records a steward's decision on an open pair. A link takes effect (the two
/// records become one person) at the next `phm-edw match`.
pub fn decide(c: &mut postgres::Client, a: i64, b: i64, d: Decision) -> Result<()> {
    let (a, b) = (a.min(b), a.max(b));
    let mut tx = c.transaction()?;
    let status = match d {
        Decision::Link => "linked",
        Decision::Reject => "rejected",
    };
    let n = tx.execute(
        "UPDATE edw.match_review SET status = $3 WHERE a_id = $1 AND b_id = $2 AND status = 'open'",
        &[&a, &b, &status],
    )?;
    if n == 0 {
        return Err(Error::msg(format!(
            "no open review pair ({a}, {b}): see `phm-edw review list`"
        )));
    }
    if d == Decision::Link {
        tx.execute(
            "INSERT INTO edw.match_link (a_id, b_id, method) VALUES ($1, $2, 'manual')
             ON CONFLICT (a_id, b_id) DO UPDATE SET method = 'manual', score = NULL",
            &[&a, &b],
        )?;
    }
    tx.commit()?;
    Ok(())
}
