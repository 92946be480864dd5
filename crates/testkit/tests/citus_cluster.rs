//! The Citus cluster harness: a coordinator and two workers, a distributed table whose shards
//! sit on both workers, TLS between the nodes, and a third worker joining through a rebalance.

use testkit::citus::{citus_installed, CitusCluster};

#[test]
fn a_coordinator_and_two_workers_distribute_and_rebalance() {
    if !citus_installed() && std::env::var_os("CI").is_none() {
        eprintln!("skipping: Citus is not installed (../shared/citus/install)");
        return;
    }
    let mut cluster = CitusCluster::start(2).expect("cluster");
    let url = cluster.create_db("t").expect("database");
    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let workers: i64 = c
        .query_one("SELECT count(*) FROM citus_get_active_worker_nodes()", &[])
        .unwrap()
        .get(0);
    assert_eq!(workers, 2);
    c.batch_execute(
        "CREATE TABLE person (id bigint PRIMARY KEY, n int);
         SELECT create_distributed_table('person', 'id');
         INSERT INTO person SELECT g, g % 7 FROM generate_series(1, 1000) g;",
    )
    .unwrap();
    let per_node = |c: &mut postgres::Client| -> Vec<(i32, i64)> {
        c.query(
            "SELECT nodeport, count(*) FROM citus_shards WHERE table_name = 'person'::regclass
             GROUP BY nodeport ORDER BY nodeport",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
    };
    assert_eq!(per_node(&mut c).len(), 2, "{:?}", per_node(&mut c));
    // Node-to-node connections are TLS.
    let ssl: bool = c
        .query_one(
            "SELECT bool_and(result::bool) FROM run_command_on_workers(
               'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()')",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(ssl, "coordinator-to-worker connections without TLS");

    let before: (i64, i64) = {
        let r = c
            .query_one("SELECT count(*), sum(n) FROM person", &[])
            .unwrap();
        (r.get(0), r.get(1))
    };
    cluster.add_worker().expect("third worker");
    // Two statements: the background job must be committed before waiting on it.
    c.batch_execute("SELECT citus_rebalance_start()").unwrap();
    c.batch_execute("SELECT citus_rebalance_wait()").unwrap();
    assert_eq!(per_node(&mut c).len(), 3, "{:?}", per_node(&mut c));
    let after: (i64, i64) = {
        let r = c
            .query_one("SELECT count(*), sum(n) FROM person", &[])
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(before, after);
}
