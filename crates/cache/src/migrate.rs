//! Embedded schema migrations (`migrations/cache/NNNN_name.sql`).

use rusqlite::Connection;

use crate::CacheError;

/// `(version, name, sql)`, in order. Versions are 1, 2, 3, ...
pub const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../../../migrations/cache/0001_init.sql"),
    ),
    (
        2,
        "care_gaps",
        include_str!("../../../migrations/cache/0002_care_gaps.sql"),
    ),
    (
        3,
        "sync",
        include_str!("../../../migrations/cache/0003_sync.sql"),
    ),
    (
        4,
        "result_detail",
        include_str!("../../../migrations/cache/0004_result_detail.sql"),
    ),
    (
        5,
        "accounts",
        include_str!("../../../migrations/cache/0005_accounts.sql"),
    ),
];

/// The schema version this build creates and understands.
pub const SCHEMA_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// Applies every migration newer than `PRAGMA user_version`, each in its own
/// transaction together with the version bump. Returns the versions applied.
pub(crate) fn migrate(conn: &mut Connection) -> Result<Vec<i64>, CacheError> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current > SCHEMA_VERSION {
        return Err(CacheError::SchemaTooNew {
            found: current,
            supported: SCHEMA_VERSION,
        });
    }
    let mut applied = Vec::new();
    for &(version, _name, sql) in MIGRATIONS {
        if version <= current {
            continue;
        }
        let fail = |e: rusqlite::Error| CacheError::Migration {
            version,
            reason: crate::db_error_message(&e),
        };
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(fail)?;
        tx.execute_batch(sql).map_err(fail)?;
        tx.execute_batch(&format!("PRAGMA user_version = {version}"))
            .map_err(fail)?;
        tx.commit().map_err(fail)?;
        applied.push(version);
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_consecutive_from_one() {
        for (i, (v, name, sql)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*v, i as i64 + 1);
            assert!(!name.is_empty());
            assert!(!sql.trim().is_empty());
        }
    }
}
