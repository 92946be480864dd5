//! A Citus cluster on this machine: a coordinator and N workers, each an ordinary
//! [`PgHarness`] server on 127.0.0.1 with Citus preloaded. Node-to-node connections use TLS
//! (`sslmode=require`; every node has its own self-signed certificate). On the workers the
//! EDW's organisation roles must give a password (`scram-sha-256`); other roles are trusted.
//!
//! Citus keeps its metadata per database, so [`CitusCluster::create_db`] creates the database
//! on every node, creates the extension in each, and registers the nodes in the new
//! database. Needs Citus installed into Debian's PostgreSQL (`../shared/citus/install`).
//!
//! ```no_run
//! let mut cluster = testkit::citus::CitusCluster::start(2).unwrap();
//! let url = cluster.create_db("edw").unwrap();
//! ```

use crate::pgharness::{find_bin_dir, HarnessError, PgHarness};

const NODE_SETTINGS: &[(&str, &str)] = &[
    ("shared_preload_libraries", "citus"),
    // Node-to-node connections: TLS. No client certificate (sslcert/sslkey point at none, so
    // libpq does not look in the server user's home directory).
    (
        "citus.node_conninfo",
        "sslmode=require sslcert=/nonexistent/client.crt sslkey=/nonexistent/client.key",
    ),
    // Rebalancing moves shards with logical replication, so writes go on meanwhile.
    ("wal_level", "logical"),
    // Citus opens several connections per worker and statement.
    ("max_connections", "120"),
    ("max_prepared_transactions", "120"),
];

pub struct CitusCluster {
    pub coordinator: PgHarness,
    pub workers: Vec<PgHarness>,
    databases: Vec<String>,
}

/// Whether Citus is installed into the PostgreSQL the harness starts.
pub fn citus_installed() -> bool {
    find_bin_dir()
        .and_then(|bin| {
            let out = std::process::Command::new(bin.join("pg_config"))
                .arg("--pkglibdir")
                .output()
                .ok()?;
            let lib = String::from_utf8(out.stdout).ok()?;
            Some(std::path::Path::new(lib.trim()).join("citus.so").exists())
        })
        .unwrap_or(false)
}

/// On a worker, organisation roles (members of `edw_org_reader`) log in only with their
/// password, which only Citus holds (the EDW's migration 1005); every other role, and every
/// role on the coordinator, is trusted, as on one node.
const ORG_ROLES_BY_PASSWORD: &str = "local all +edw_org_reader scram-sha-256
host all +edw_org_reader 127.0.0.1/32 scram-sha-256
";

fn node() -> Result<PgHarness, HarnessError> {
    PgHarness::start_with_settings(true, true, NODE_SETTINGS)
}

fn worker() -> Result<PgHarness, HarnessError> {
    let h = node()?;
    let hba = h.socket_dir().join("data/pg_hba.conf");
    let rest = std::fs::read_to_string(&hba).map_err(|e| HarnessError(format!("pg_hba: {e}")))?;
    std::fs::write(&hba, format!("{ORG_ROLES_BY_PASSWORD}{rest}"))
        .map_err(|e| HarnessError(format!("pg_hba: {e}")))?;
    sql(&h.url("postgres"), "SELECT pg_reload_conf()")?;
    Ok(h)
}

fn sql(url: &str, statements: &str) -> Result<(), HarnessError> {
    let mut c = postgres::Client::connect(url, postgres::NoTls)
        .map_err(|e| HarnessError(format!("connect: {e}")))?;
    c.batch_execute(statements)
        .map_err(|e| HarnessError(format!("{statements}: {e}")))
}

fn port(h: &PgHarness) -> u16 {
    h.port().expect("Citus nodes listen on TCP")
}

impl CitusCluster {
    /// Starts a coordinator and `workers` workers.
    pub fn start(workers: usize) -> Result<CitusCluster, HarnessError> {
        if !citus_installed() {
            return Err(HarnessError(
                "Citus is not installed into PostgreSQL (run ../shared/citus/install as root)"
                    .into(),
            ));
        }
        let coordinator = node()?;
        let workers = (0..workers).map(|_| worker()).collect::<Result<_, _>>()?;
        Ok(CitusCluster {
            coordinator,
            workers,
            databases: Vec::new(),
        })
    }

    /// Creates database `name` on every node with the Citus extension, registers the
    /// coordinator and the workers in it, and returns the coordinator's connection string.
    pub fn create_db(&mut self, name: &str) -> Result<String, HarnessError> {
        for n in std::iter::once(&self.coordinator).chain(&self.workers) {
            n.create_db(name)?;
            sql(&n.url(name), "CREATE EXTENSION citus")?;
        }
        let url = self.coordinator.url(name);
        // 127.0.0.1, not localhost: the workers must reach the coordinator by this name.
        sql(
            &url,
            &format!(
                "SELECT citus_set_coordinator_host('127.0.0.1', {})",
                port(&self.coordinator)
            ),
        )?;
        for w in &self.workers {
            sql(
                &url,
                &format!("SELECT citus_add_node('127.0.0.1', {})", port(w)),
            )?;
        }
        self.databases.push(name.to_string());
        Ok(url)
    }

    /// Starts one more worker, gives it every database created so far (with the extension),
    /// and adds it to each database's cluster. Its shards come only with a rebalance
    /// (`citus_rebalance_start`). Returns the new worker's index.
    pub fn add_worker(&mut self) -> Result<usize, HarnessError> {
        let w = worker()?;
        for db in &self.databases {
            w.create_db(db)?;
            sql(&w.url(db), "CREATE EXTENSION citus")?;
            sql(
                &self.coordinator.url(db),
                &format!("SELECT citus_add_node('127.0.0.1', {})", port(&w)),
            )?;
        }
        self.workers.push(w);
        Ok(self.workers.len() - 1)
    }

    /// Connection string of database `db` on the coordinator, as superuser `app`.
    pub fn url(&self, db: &str) -> String {
        self.coordinator.url(db)
    }
}
