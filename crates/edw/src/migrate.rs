//! Forward-only, versioned schema migrations (`migrations/edw/NNNN_name.sql`).

use crate::{Error, Result};
use sha2::{Digest, Sha256};

/// (version, name, sql) in order; embedded at build time.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "schemas_staging",
        include_str!("../../../migrations/edw/0001_schemas_staging.sql"),
    ),
    (
        2,
        "edw_core",
        include_str!("../../../migrations/edw/0002_edw_core.sql"),
    ),
    (
        3,
        "row_level_security",
        include_str!("../../../migrations/edw/0003_row_level_security.sql"),
    ),
    (
        4,
        "mart_star",
        include_str!("../../../migrations/edw/0004_mart_star.sql"),
    ),
    (
        5,
        "audit",
        include_str!("../../../migrations/edw/0005_audit.sql"),
    ),
    (
        6,
        "source_group",
        include_str!("../../../migrations/edw/0006_source_group.sql"),
    ),
    (
        7,
        "inline_date_functions",
        include_str!("../../../migrations/edw/0007_inline_date_functions.sql"),
    ),
    (
        8,
        "quality_queries",
        include_str!("../../../migrations/edw/0008_quality_queries.sql"),
    ),
    (
        9,
        "panel_sized_top_conditions",
        include_str!("../../../migrations/edw/0009_panel_sized_top_conditions.sql"),
    ),
    (
        10,
        "incremental_measure_and_summaries",
        include_str!("../../../migrations/edw/0010_incremental_measure_and_summaries.sql"),
    ),
    (
        11,
        "parallel_chunked_ingest",
        include_str!("../../../migrations/edw/0011_parallel_chunked_ingest.sql"),
    ),
    (
        12,
        "ingest_write_cost",
        include_str!("../../../migrations/edw/0012_ingest_write_cost.sql"),
    ),
    (
        13,
        "patient_history_loader_keys",
        include_str!("../../../migrations/edw/0013_patient_history_loader_keys.sql"),
    ),
    (
        14,
        "every_resource_every_group",
        include_str!("../../../migrations/edw/0014_every_resource_every_group.sql"),
    ),
    (
        15,
        "smart_clients",
        include_str!("../../../migrations/edw/0015_smart_clients.sql"),
    ),
    (
        16,
        "bulk_export",
        include_str!("../../../migrations/edw/0016_bulk_export.sql"),
    ),
    (
        17,
        "ingest_history",
        include_str!("../../../migrations/edw/0017_ingest_history.sql"),
    ),
];

/// The distributed form on Citus (`phm-edw migrate --citus`), applied after [`MIGRATIONS`] on
/// the coordinator; numbered from 1001 so they never collide with the single-node ones.
pub const CITUS_MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1001,
        "citus_distribute",
        include_str!("../../../migrations/edw/citus/0001_distribute.sql"),
    ),
    (
        1002,
        "citus_writers",
        include_str!("../../../migrations/edw/citus/0002_writers.sql"),
    ),
    (
        1003,
        "citus_patient_key_backfill",
        include_str!("../../../migrations/edw/citus/0003_patient_key_backfill.sql"),
    ),
    (
        1004,
        "citus_record_move",
        include_str!("../../../migrations/edw/citus/0004_record_move.sql"),
    ),
    (
        1005,
        "citus_api",
        include_str!("../../../migrations/edw/citus/0005_api.sql"),
    ),
];

/// The version of the first Citus migration: a database that has it is distributed.
pub const CITUS_FIRST: i32 = 1001;

pub fn latest_version() -> i32 {
    MIGRATIONS.last().map(|m| m.0).unwrap_or(0)
}

fn checksum(sql: &str) -> String {
    hex(&Sha256::digest(sql.as_bytes()))
}

pub fn hex(b: &[u8]) -> String {
    // Called once per ingested line: no formatter per byte.
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(DIGITS[usize::from(x >> 4)] as char);
        s.push(DIGITS[usize::from(x & 15)] as char);
    }
    s
}

/// Apply all pending migrations, each in its own transaction. Returns the versions applied.
/// Already-applied migrations are skipped; a changed applied migration is an error.
pub fn migrate(client: &mut postgres::Client) -> Result<Vec<i32>> {
    apply(client, MIGRATIONS)
}

/// [`migrate`], then the Citus migrations that distribute the warehouse over the cluster's
/// workers (docs/scale-out.md). On the coordinator of a Citus cluster only; on a loaded
/// database every person must have been matched first (`phm-edw match`).
pub fn migrate_citus(client: &mut postgres::Client) -> Result<Vec<i32>> {
    let citus: Option<String> = client
        .query_opt(
            "SELECT extversion FROM pg_extension WHERE extname = 'citus'",
            &[],
        )?
        .map(|r| r.get(0));
    if citus.is_none() {
        return Err(Error::msg(
            "migrate --citus: this database has no Citus extension; connect to the coordinator \
             of a Citus cluster (CREATE EXTENSION citus, workers added with citus_add_node)",
        ));
    }
    let mut applied = apply(client, MIGRATIONS)?;
    applied.extend(apply(client, CITUS_MIGRATIONS)?);
    Ok(applied)
}

/// Whether the warehouse is in its distributed form (`migrate --citus` applied).
pub fn is_distributed(client: &mut postgres::Client) -> Result<bool> {
    Ok(current_version(client)?.is_some()
        && client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM public.schema_migrations WHERE version >= $1)",
                &[&CITUS_FIRST],
            )?
            .get(0))
}

fn apply(client: &mut postgres::Client, migrations: &[(i32, &str, &str)]) -> Result<Vec<i32>> {
    client.batch_execute(
        "CREATE TABLE IF NOT EXISTS public.schema_migrations (
            version    integer PRIMARY KEY,
            name       text NOT NULL,
            checksum   text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now())",
    )?;
    let mut applied = Vec::new();
    for (version, name, sql) in migrations {
        let mut tx = client.transaction()?;
        // Serialise concurrent migrators.
        tx.execute("SELECT pg_advisory_xact_lock(7419001)", &[])?;
        let row = tx.query_opt(
            "SELECT checksum FROM public.schema_migrations WHERE version = $1",
            &[version],
        )?;
        let sum = checksum(sql);
        match row {
            Some(r) => {
                let have: String = r.get(0);
                if have != sum {
                    return Err(Error::msg(format!(
                        "migration {version:04}_{name} was changed after being applied \
                         (checksum {have} in DB, {sum} in binary); migrations are forward-only: \
                         add a new migration instead"
                    )));
                }
            }
            None => {
                tx.batch_execute(sql).map_err(|e| {
                    Error::msg(format!(
                        "migration {version:04}_{name} failed: {}",
                        crate::db_err(&e)
                    ))
                })?;
                tx.execute(
                    "INSERT INTO public.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    &[version, name, &sum],
                )?;
                applied.push(*version);
            }
        }
        tx.commit()?;
    }
    Ok(applied)
}

/// Highest applied version, or None when the DB has never been migrated.
pub fn current_version(client: &mut postgres::Client) -> Result<Option<i32>> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('public.schema_migrations') IS NOT NULL",
            &[],
        )?
        .get(0);
    if !exists {
        return Ok(None);
    }
    Ok(client
        .query_one("SELECT max(version) FROM public.schema_migrations", &[])?
        .get(0))
}
