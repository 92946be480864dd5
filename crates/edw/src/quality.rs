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
