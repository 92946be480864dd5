//! `phm-edw attribute`: patient -> provider attribution by plurality of primary-care
//! visits in the 24 months before the as-of date (ties: most recent visit, then
//! lowest practitioner id), plus FHIR Groups per provider and per care team.
//! Membership changes by difference: who leaves is logged in `edw.patient_group_left`,
//! who joins gets `joined_change_no` (the bulk export's `_since` reads both).

use crate::Result;

/// Encounter types counted as primary-care visits (SNOMED CT and CPT E/M codes).
pub const PCP_VISIT_CODES: &[&str] = &[
    "185349003", // Encounter for check up
    "185345009", // Encounter for symptom
    "390906007", // Follow-up encounter
    "410620009", // Well child visit
    "99202",
    "99203",
    "99204",
    "99205",
    "99211",
    "99212",
    "99213",
    "99214",
    "99215",
    "99385",
    "99386",
    "99387",
    "99395",
    "99396",
    "99397",
];

pub const METHOD: &str = "plurality-pcp-24m";

/// The statements of one form of the warehouse ($1 method, $2 as-of date, $3 visit codes).
struct Form {
    /// Settings of the transaction, first.
    settings: &'static str,
    /// Inserts the attribution of the period.
    attribute: &'static str,
    /// Group membership by difference, in order.
    membership: &'static [&'static str],
}

// SQL shared by both forms (macros, so that `concat!` joins them at compile time).

/// The primary-care visits of the 24 months before the as-of date (`e` the encounter).
macro_rules! counted_visit {
    () => {
        "e.practitioner_id IS NOT NULL
              AND e.status = 'finished' AND e.type_code = ANY($3)
              AND e.period_start >= ($2::text::date - interval '24 months')
              AND e.period_start < ($2::text::date + 1)"
    };
}

/// Each person's practitioner with the most visits (`ranked`, `rk = 1`), and each
/// practitioner's team (`team`), after a `visits` CTE.
macro_rules! ranked_and_team {
    () => {
        "ranked AS (
            SELECT *, row_number() OVER (PARTITION BY person_id
                ORDER BY n DESC, last_visit DESC, practitioner_id) AS rk
            FROM visits),
         -- A practitioner's team, computed once per practitioner (a per-person subquery
         -- scanned care_team_member for each of 500,000 persons).
         team AS (
            SELECT practitioner_id, min(care_team_id) AS care_team_id
            FROM edw.care_team_member GROUP BY practitioner_id)"
    };
}

/// The Groups of an attribution `a` of the period: its practitioner's and its team's.
macro_rules! groups_of_attribution {
    () => {
        "edw.attribution a
            JOIN edw.patient_group g ON (g.kind = 'practitioner' AND g.ref_id = a.practitioner_id)
                                     OR (g.kind = 'care_team' AND g.ref_id = a.care_team_id)"
    };
}

const SINGLE_NODE: Form = Form {
    settings: "",
    attribute: concat!(
        "WITH visits AS (
            SELECT sp.person_id, e.practitioner_id, count(*) AS n, max(e.period_start) AS last_visit
            FROM edw.encounter e JOIN edw.source_patient sp ON sp.id = e.source_patient_id
            WHERE sp.person_id IS NOT NULL AND ",
        counted_visit!(),
        "
            GROUP BY 1, 2),
         ",
        ranked_and_team!(),
        "
         INSERT INTO edw.attribution (person_id, practitioner_id, care_team_id, period_start, period_end,
                                      method, visit_count, last_visit)
         SELECT r.person_id, r.practitioner_id, t.care_team_id,
                ($2::text::date - interval '24 months')::date, $2::text::date, $1, r.n, r.last_visit
         FROM ranked r LEFT JOIN team t ON t.practitioner_id = r.practitioner_id
         WHERE rk = 1"
    ),
    membership: &[concat!(
        "WITH want AS (
            SELECT DISTINCT g.id AS group_id, a.person_id FROM ",
        groups_of_attribution!(),
        "
            WHERE a.method = $1 AND a.period_end = $2::text::date),
         gone AS (
            DELETE FROM edw.patient_group_member m
            WHERE NOT EXISTS (SELECT 1 FROM want w WHERE w.group_id = m.group_id AND w.person_id = m.person_id)
            RETURNING m.group_id, m.person_id),
         logged AS (
            INSERT INTO edw.patient_group_left (group_id, person_id)
            SELECT group_id, person_id FROM gone)
         INSERT INTO edw.patient_group_member (group_id, person_id)
         SELECT w.group_id, w.person_id FROM want w
         ON CONFLICT DO NOTHING"
    )],
};

/// A member `m` no longer in the Group by the period's attribution (on the distributed form:
/// co-located on the person).
macro_rules! no_longer_attributed {
    () => {
        concat!(
            "NOT EXISTS (
            SELECT 1 FROM ",
            groups_of_attribution!(),
            "
            WHERE a.person_id = m.person_id AND g.id = m.group_id
              AND a.method = $1 AND a.period_end = $2::text::date)"
        )
    };
}

/// On Citus (`migrate --citus`): every row carries its person, so a visit needs no join to
/// its record, and the rows about a person carry the organisations that may see them
/// (`org_ids`, copied from the person). The single node's one statement with data-modifying
/// CTEs would run here only as distributed subplans, its `want` and `gone` collected on the
/// coordinator; instead who leaves is logged, then deleted, then who joins is added, each one
/// statement co-located on the person that runs on the shards.
const DISTRIBUTED: Form = Form {
    // The Groups (a reference table) are written after statements over many shards: Citus
    // then needs one connection per node for the whole transaction.
    settings: "SET LOCAL citus.multi_shard_modify_mode TO 'sequential'",
    attribute: concat!(
        "WITH visits AS (
            SELECT e.person_id, e.practitioner_id, count(*) AS n, max(e.period_start) AS last_visit
            FROM edw.encounter e
            WHERE ",
        counted_visit!(),
        "
            GROUP BY 1, 2),
         ",
        ranked_and_team!(),
        "
         INSERT INTO edw.attribution (person_id, practitioner_id, care_team_id, period_start, period_end,
                                      method, visit_count, last_visit, org_ids)
         SELECT r.person_id, r.practitioner_id, t.care_team_id,
                ($2::text::date - interval '24 months')::date, $2::text::date, $1, r.n, r.last_visit,
                p.org_ids
         FROM ranked r JOIN edw.person p ON p.id = r.person_id
         LEFT JOIN team t ON t.practitioner_id = r.practitioner_id
         WHERE rk = 1"
    ),
    membership: &[
        concat!(
            "INSERT INTO edw.patient_group_left (group_id, person_id, org_ids)
         SELECT m.group_id, m.person_id, m.org_ids FROM edw.patient_group_member m
         WHERE ",
            no_longer_attributed!()
        ),
        concat!(
            "DELETE FROM edw.patient_group_member m WHERE ",
            no_longer_attributed!()
        ),
        concat!(
            "INSERT INTO edw.patient_group_member (group_id, person_id, org_ids)
         SELECT DISTINCT g.id, a.person_id, p.org_ids FROM ",
            groups_of_attribution!(),
            "
         JOIN edw.person p ON p.id = a.person_id
         WHERE a.method = $1 AND a.period_end = $2::text::date
         ON CONFLICT DO NOTHING"
        ),
    ],
};

#[derive(Debug, Default, Clone)]
pub struct Report {
    pub attributed: i64,
    pub unattributed: i64,
    pub practitioner_groups: i64,
    pub care_team_groups: i64,
}

/// as_of: 'YYYY-MM-DD' (None = today).
pub fn run(c: &mut postgres::Client, as_of: Option<&str>) -> Result<Report> {
    let form = if crate::migrate::is_distributed(c)? {
        &DISTRIBUTED
    } else {
        &SINGLE_NODE
    };
    let mut tx = c.transaction()?;
    tx.batch_execute(form.settings)?;
    // Membership changes take change numbers: a bulk export reads its watermark only
    // when no such write is in flight (see measure::SOURCE_WRITE_LOCK).
    tx.execute(
        "SELECT pg_advisory_xact_lock_shared($1)",
        &[&crate::measure::SOURCE_WRITE_LOCK],
    )?;
    tx.execute("SELECT pg_advisory_xact_lock(7419003)", &[])?;
    let as_of: String = match as_of {
        Some(d) => {
            crate::validate::check_date(d)
                .map_err(|e| crate::Error::msg(format!("--as-of: {e}")))?;
            if d.len() != 10 {
                return Err(crate::Error::msg("--as-of must be YYYY-MM-DD"));
            }
            d.to_string()
        }
        None => tx.query_one("SELECT current_date::text", &[])?.get(0),
    };
    let codes: Vec<String> = PCP_VISIT_CODES.iter().map(|s| s.to_string()).collect();
    tx.execute(
        "DELETE FROM edw.attribution WHERE method = $1 AND period_end = $2::text::date",
        &[&METHOD, &as_of],
    )?;
    let attributed = tx.execute(form.attribute, &[&METHOD, &as_of, &codes])? as i64;
    let persons: i64 = tx.query_one("SELECT count(*) FROM edw.person", &[])?.get(0);

    // Groups: one per practitioner and per care team with attributed persons.
    tx.execute(
        "INSERT INTO edw.patient_group (kind, ref_id, name)
         SELECT DISTINCT 'practitioner', a.practitioner_id,
                'Attributed panel of ' || coalesce(p.given || ' ', '') || coalesce(p.family, p.source_id)
         FROM edw.attribution a JOIN edw.practitioner p ON p.id = a.practitioner_id
         WHERE a.method = $1 AND a.period_end = $2::text::date
         ON CONFLICT (kind, ref_id) DO UPDATE SET name = EXCLUDED.name",
        &[&METHOD, &as_of],
    )?;
    tx.execute(
        "INSERT INTO edw.patient_group (kind, ref_id, name)
         SELECT DISTINCT 'care_team', a.care_team_id, 'Attributed panel of care team ' || coalesce(ct.name, ct.source_id)
         FROM edw.attribution a JOIN edw.care_team ct ON ct.id = a.care_team_id
         WHERE a.method = $1 AND a.period_end = $2::text::date
         ON CONFLICT (kind, ref_id) DO UPDATE SET name = EXCLUDED.name",
        &[&METHOD, &as_of],
    )?;
    // Membership by difference, so a bulk export knows who joined and who left after
    // its `_since`: members no longer attributed leave (logged with the change number
    // they left at), new members join with theirs, the others keep their rows.
    for sql in form.membership {
        tx.execute(*sql, &[&METHOD, &as_of])?;
    }
    let pg: i64 = tx
        .query_one(
            "SELECT count(*) FROM edw.patient_group WHERE kind = 'practitioner'",
            &[],
        )?
        .get(0);
    let cg: i64 = tx
        .query_one(
            "SELECT count(*) FROM edw.patient_group WHERE kind = 'care_team'",
            &[],
        )?
        .get(0);
    tx.commit()?;
    Ok(Report {
        attributed,
        unattributed: persons - attributed,
        practitioner_groups: pg,
        care_team_groups: cg,
    })
}
