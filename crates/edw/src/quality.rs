//! The five quality-team analytics queries (views/functions of migration 0008), as run by
//! the bench and checked by `tests/quality.rs`.

use crate::Result;
use std::time::Instant;

/// (name, SQL) of the five queries with representative parameters: (c) as of today,
/// (d) for the provider with the largest current panel.
pub fn queries(c: &mut postgres::Client) -> Result<Vec<(&'static str, String)>> {
    let provider: i64 = c
        .query_opt(
            "SELECT pr.provider_key FROM mart.current_attribution a
             JOIN mart.dim_provider pr ON pr.practitioner_id = a.practitioner_id
             GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1",
            &[],
        )?
        .map(|r| r.get(0))
        .unwrap_or(0);
    Ok(vec![
        (
            "(a) measure rate by provider by month",
            "SELECT * FROM mart.q_measure_rate_provider_month".to_string(),
        ),
        (
            "(b) open gaps by care team",
            "SELECT * FROM mart.q_open_gaps_care_team".to_string(),
        ),
        (
            "(c) 12-month trend per measure",
            "SELECT * FROM mart.q_measure_trend(current_date)".to_string(),
        ),
        (
            "(d) top 10 conditions in the largest panel",
            format!("SELECT * FROM mart.q_panel_top_conditions({provider}, 10)"),
        ),
        (
            "(e) patients with >= 3 open gaps",
            "SELECT * FROM mart.q_patients_3_open_gaps".to_string(),
        ),
    ])
}

/// One person's clinical read (`$1` the person): their patient records, names and encounters.
/// On the distributed form (`migrate --citus`) the joins also match on the shard key, which
/// every row there carries, so the read is routed to the person's shard alone.
pub fn person_read(distributed: bool) -> String {
    let on_person = |t: &str| {
        if distributed {
            format!(" AND {t}.person_id = sp.person_id")
        } else {
            String::new()
        }
    };
    format!(
        "SELECT sp.source, sp.source_id, sp.birth_date, n.family, n.given, e.source_id AS encounter,
                e.period_start, e.type_code
         FROM edw.source_patient sp
         JOIN edw.patient_name n ON n.source_patient_id = sp.id{}
         LEFT JOIN edw.encounter e ON e.source_patient_id = sp.id{}
         WHERE sp.person_id = $1",
        on_person("n"),
        on_person("e")
    )
}

/// Median wall time (s) of `runs` executions after one warm-up, and the row count.
pub fn time_query(c: &mut postgres::Client, sql: &str, runs: usize) -> Result<(f64, usize)> {
    let rows = c.query(sql, &[])?.len();
    let mut t: Vec<f64> = (0..runs.max(1))
        .map(|_| {
            let s = Instant::now();
            c.query(sql, &[]).map(|_| s.elapsed().as_secs_f64())
        })
        .collect::<std::result::Result<_, _>>()?;
    t.sort_by(f64::total_cmp);
    Ok((t[t.len() / 2], rows))
}

/// `EXPLAIN (COSTS OFF)` text.
pub fn explain(c: &mut postgres::Client, sql: &str) -> Result<String> {
    Ok(c.query(&format!("EXPLAIN (COSTS OFF) {sql}"), &[])?
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n"))
}

/// The five queries timed (Markdown table rows), their plans, the database size and
/// its largest relations (Markdown table), for the bench and `examples/queries.rs`.
pub struct Timings {
    pub rows: String,
    pub plans: String,
    pub database_size: String,
    pub largest: String,
}

pub fn measure_all(c: &mut postgres::Client, runs: usize) -> Result<Timings> {
    let mut rows = String::new();
    let mut plans = String::new();
    for (name, sql) in queries(c)? {
        let (median, n) = time_query(c, &sql, runs)?;
        rows.push_str(&format!("| {name} | {n} | {:.1} ms |\n", median * 1e3));
        let plan = explain(c, &sql)?;
        plans.push_str(&format!("### {name}\n\n`{sql}`\n\n```\n{plan}\n```\n\n"));
    }
    let database_size: String = c
        .query_one(
            "SELECT pg_size_pretty(pg_database_size(current_database()))",
            &[],
        )?
        .get(0);
    // Where the bytes are: the largest relations with their indexes and TOAST.
    let mut largest = String::from("| relation | total | of which indexes |\n|---|---|---|\n");
    for r in c.query(
        "SELECT n.nspname || '.' || c.relname, pg_size_pretty(pg_total_relation_size(c.oid)),
                pg_size_pretty(pg_indexes_size(c.oid))
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind IN ('r', 'p') AND n.nspname IN ('staging', 'edw', 'mart', 'audit')
         ORDER BY pg_total_relation_size(c.oid) DESC LIMIT 15",
        &[],
    )? {
        let (name, total, idx): (String, String, String) = (r.get(0), r.get(1), r.get(2));
        largest.push_str(&format!("| {name} | {total} | {idx} |\n"));
    }
    Ok(Timings {
        rows,
        plans,
        database_size,
        largest,
    })
}
