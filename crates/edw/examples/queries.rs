//! The five quality-team queries timed on an existing EDW (median of N runs after a
//! warm-up), with plans, database size and the largest relations, as Markdown:
//!
//!   cargo run --release -p edw --example queries -- --db URL [--runs 5]
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let get = |k: &str| {
        args.iter()
            .position(|a| a == k)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let url = get("--db").expect("--db URL");
    let runs: usize = get("--runs")
        .map(|v| v.parse().expect("--runs N"))
        .unwrap_or(5);
    let mut c = edw::connect(&url).expect("connect");
    let q = edw::quality::measure_all(&mut c, runs).expect("queries");
    println!(
        "Median of {runs} runs after one warm-up.\n\n| query | rows | median |\n|---|---|---|\n{}\n\
         Database size: {}\n\nLargest relations:\n\n{}\n## Plans (EXPLAIN, costs off)\n\n{}",
        q.rows, q.database_size, q.largest, q.plans
    );
}
