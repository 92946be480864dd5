//! The five quality-team queries timed on an existing EDW (median of N runs after a
//! warm-up), with plans, database size and the largest relations, as Markdown:
//!
//!   cargo run --release -p edw --example queries -- --db URL [--runs 5]
mod support;

fn main() {
    let args = support::Args::from_env();
    let url = args.get("--db").expect("--db URL");
    let runs: usize = args.num("--runs", 5);
    let mut c = edw::connect(&url).expect("connect");
    let q = edw::quality::measure_all(&mut c, runs).expect("queries");
    println!(
        "Median of {runs} runs after one warm-up.\n\n| query | rows | median |\n|---|---|---|\n{}\n\
         Database size: {}\n\nLargest relations:\n\n{}\n## Plans (EXPLAIN, costs off)\n\n{}",
        q.rows, q.database_size, q.largest, q.plans
    );
}
