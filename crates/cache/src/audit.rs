//! The audit trail: append (hash-chained via the access crate), list, verify.

use access::{
    Action, AuditEntry, AuditRecord, BreakReason, ChainBreak, Outcome, PurposeOfUse, Role,
};
use rusqlite::types::Value;
use rusqlite::{params_from_iter, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::{Cache, CacheError};

/// Settings key holding the chain head `"<seq> <hash>"`, updated with each append.
const HEAD_KEY: &str = "audit_head";

/// Filters for [`Cache::audit_list`]; all optional, combined with AND.
/// Results are newest first.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AuditFilter {
    pub user: Option<String>,
    /// Records whose patient list contains this id.
    pub patient_id: Option<String>,
    pub action: Option<Action>,
    pub outcome: Option<Outcome>,
    /// Inclusive lower bound, RFC 3339 (any offset; compared in UTC).
    pub from: Option<String>,
    /// Exclusive upper bound, RFC 3339.
    pub to: Option<String>,
    /// Default 500, at most 10 000.
    pub limit: Option<u32>,
    pub offset: u32,
}

/// Raw row as stored (strings), so that altered values still verify as altered.
struct RawRow {
    seq: i64,
    at: String,
    user: String,
    role: Option<String>,
    purpose: Option<String>,
    action: String,
    patient_ids: String,
    query: Option<String>,
    outcome: String,
    detail: Option<String>,
    prev_hash: String,
    hash: String,
}

impl RawRow {
    fn parse(self) -> Option<AuditRecord> {
        Some(AuditRecord {
            seq: self.seq,
            at: self.at,
            user: self.user,
            role: match self.role {
                None => None,
                Some(r) => Some(Role::from_id(&r)?),
            },
            purpose: match self.purpose {
                None => None,
                Some(p) => Some(PurposeOfUse::from_code(&p)?),
            },
            action: Action::from_id(&self.action)?,
            patient_ids: serde_json::from_str(&self.patient_ids).ok()?,
            query: self.query,
            outcome: Outcome::from_id(&self.outcome)?,
            detail: self.detail,
            prev_hash: self.prev_hash,
            hash: self.hash,
        })
    }
}

const AUDIT_COLUMNS: &str =
    "seq, at, user, role, purpose, action, patient_ids, query, outcome, detail, prev_hash, hash";

fn raw_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawRow> {
    Ok(RawRow {
        seq: r.get(0)?,
        at: r.get(1)?,
        user: r.get(2)?,
        role: r.get(3)?,
        purpose: r.get(4)?,
        action: r.get(5)?,
        patient_ids: r.get(6)?,
        query: r.get(7)?,
        outcome: r.get(8)?,
        detail: r.get(9)?,
        prev_hash: r.get(10)?,
        hash: r.get(11)?,
    })
}

fn normalize_time(s: &str) -> Result<String, CacheError> {
    access::time::parse_rfc3339_ms(s)
        .map(access::time::rfc3339_from_unix_ms)
        .ok_or_else(|| CacheError::InvalidQuery("dates must be RFC 3339 (or YYYY-MM-DD)".into()))
}

impl Cache {
    /// Appends one record, chained to the current head, in one transaction.
    pub fn audit_append(&self, entry: AuditEntry) -> Result<AuditRecord, CacheError> {
        if access::time::parse_rfc3339_ms(&entry.at).is_none() {
            return Err(CacheError::InvalidQuery(
                "audit time must be RFC 3339".into(),
            ));
        }
        let tx = self.conn.unchecked_transaction()?;
        let last: Option<(i64, String)> = tx
            .query_row(
                "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let (seq, prev) = match last {
            Some((s, h)) => (s + 1, h),
            None => (1, access::GENESIS_HASH.to_owned()),
        };
        let rec = entry.seal(seq, &prev);
        let ids = serde_json::to_string(&rec.patient_ids)
            .map_err(|_| CacheError::Db("could not encode patient ids".into()))?;
        tx.execute(
            &format!("INSERT INTO audit({AUDIT_COLUMNS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12)"),
            rusqlite::params![
                rec.seq,
                rec.at,
                rec.user,
                rec.role.map(Role::id),
                rec.purpose.map(PurposeOfUse::code),
                rec.action.id(),
                ids,
                rec.query,
                rec.outcome.id(),
                rec.detail,
                rec.prev_hash,
                rec.hash,
            ],
        )?;
        tx.execute(
            "INSERT INTO settings(key, value) VALUES (?1, ?2)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [HEAD_KEY, &format!("{} {}", rec.seq, rec.hash)],
        )?;
        tx.commit()?;
        Ok(rec)
    }

    /// Audit records matching `filter`, newest first. Rows that no longer
    /// parse (tampered) are skipped here and reported by [`Cache::audit_verify`].
    pub fn audit_list(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, CacheError> {
        let limit = filter.limit.unwrap_or(500);
        if limit == 0 || limit > 10_000 {
            return Err(CacheError::InvalidQuery(
                "limit must be between 1 and 10000".into(),
            ));
        }
        let mut cond = Vec::new();
        let mut params: Vec<Value> = Vec::new();
        if let Some(u) = &filter.user {
            cond.push("user = ?");
            params.push(Value::Text(u.clone()));
        }
        if let Some(p) = &filter.patient_id {
            cond.push("EXISTS (SELECT 1 FROM json_each(audit.patient_ids) WHERE value = ?)");
            params.push(Value::Text(p.clone()));
        }
        if let Some(a) = filter.action {
            cond.push("action = ?");
            params.push(Value::Text(a.id().into()));
        }
        if let Some(o) = filter.outcome {
            cond.push("outcome = ?");
            params.push(Value::Text(o.id().into()));
        }
        if let Some(f) = &filter.from {
            cond.push("at >= ?");
            params.push(Value::Text(normalize_time(f)?));
        }
        if let Some(t) = &filter.to {
            cond.push("at < ?");
            params.push(Value::Text(normalize_time(t)?));
        }
        let where_sql = if cond.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", cond.join(" AND "))
        };
        params.push(Value::Integer(i64::from(limit)));
        params.push(Value::Integer(i64::from(filter.offset)));
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {AUDIT_COLUMNS} FROM audit{where_sql} ORDER BY seq DESC LIMIT ? OFFSET ?"
        ))?;
        let rows = stmt
            .query_map(params_from_iter(params.iter()), raw_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows.into_iter().filter_map(RawRow::parse).collect())
    }

    /// Number of audit records.
    pub fn audit_count(&self) -> Result<u64, CacheError> {
        let n: i64 = self
            .conn
            .query_row("SELECT count(*) FROM audit", [], |r| r.get(0))?;
        Ok(n as u64)
    }

    /// Verifies the whole chain and its recorded head. `Ok(n)` = n rows
    /// verified; a break is [`CacheError::AuditChain`] naming the first bad seq.
    pub fn audit_verify(&self) -> Result<u64, CacheError> {
        self.audit_verify_anchored(None)
    }

    /// [`Self::audit_verify`], and the chain must still hold the head the EDW
    /// acknowledged (kept in the cache) and `anchor` (the same head kept outside the
    /// cache, e.g. in the OS keyring, so restoring an older cache file is detected).
    pub fn audit_verify_anchored(&self, anchor: Option<(i64, String)>) -> Result<u64, CacheError> {
        let tx = self.conn.unchecked_transaction()?;
        let mut records = Vec::new();
        {
            let mut stmt =
                tx.prepare(&format!("SELECT {AUDIT_COLUMNS} FROM audit ORDER BY seq"))?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let raw = raw_row(r)?;
                let seq = raw.seq;
                match raw.parse() {
                    Some(rec) => records.push(rec),
                    // A value we never write: the row was altered.
                    None => {
                        // Report an earlier break first, if any.
                        access::verify_chain(&records)?;
                        return Err(ChainBreak {
                            seq,
                            reason: BreakReason::HashMismatch,
                        }
                        .into());
                    }
                }
            }
        }
        let head: Option<String> = tx
            .query_row(
                "SELECT value FROM settings WHERE key = ?1",
                [HEAD_KEY],
                |r| r.get(0),
            )
            .optional()?;
        tx.commit()?;
        let head = match head.as_deref() {
            None => None,
            Some(h) => {
                let (s, hash) = h.split_once(' ').unwrap_or((h, ""));
                Some((s.parse::<i64>().unwrap_or(-1), hash.to_owned()))
            }
        };
        access::verify_chain_with_head(&records, head.as_ref().map(|(s, h)| (*s, h.as_str())))?;
        let edw_head = self.audit_edw_head()?;
        for (seq, hash) in edw_head.iter().chain(anchor.as_ref()) {
            check_anchor(&records, *seq, hash)?;
        }
        Ok(records.len() as u64)
    }

    /// Records after `after_seq`, oldest first, at most `limit` (for shipping to the EDW).
    pub fn audit_after(&self, after_seq: i64, limit: u32) -> Result<Vec<AuditRecord>, CacheError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {AUDIT_COLUMNS} FROM audit WHERE seq > ?1 ORDER BY seq LIMIT ?2"
        ))?;
        let mut rows = stmt.query(rusqlite::params![after_seq, limit])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let raw = raw_row(r)?;
            let seq = raw.seq;
            out.push(raw.parse().ok_or(ChainBreak {
                seq,
                reason: BreakReason::HashMismatch,
            })?);
        }
        Ok(out)
    }

    /// The chain position the EDW last acknowledged, `(seq, hash)`.
    pub fn audit_edw_head(&self) -> Result<Option<(i64, String)>, CacheError> {
        Ok(self.setting(EDW_HEAD_KEY)?.and_then(|h| parse_head(&h)))
    }

    /// Records the EDW's acknowledgement of the chain up to `seq`.
    pub fn set_audit_edw_head(&self, seq: i64, hash: &str) -> Result<(), CacheError> {
        self.set_setting(EDW_HEAD_KEY, &format!("{seq} {hash}"))
    }
}

/// Settings key holding the head the EDW acknowledged, `"<seq> <hash>"`.
const EDW_HEAD_KEY: &str = "audit_edw_head";

fn parse_head(h: &str) -> Option<(i64, String)> {
    let (s, hash) = h.split_once(' ')?;
    Some((s.parse().ok()?, hash.to_owned()))
}

/// The chain must still hold an acknowledged position: a cache restored from an older
/// copy, or a trail cut below what the EDW holds, fails here.
fn check_anchor(records: &[AuditRecord], seq: i64, hash: &str) -> Result<(), ChainBreak> {
    if seq <= 0 {
        return Ok(());
    }
    match records.get((seq - 1) as usize) {
        None => Err(ChainBreak {
            seq: records.last().map_or(0, |r| r.seq),
            reason: BreakReason::Truncated { expected_last: seq },
        }),
        Some(r) if r.seq != seq || r.hash != hash => Err(ChainBreak {
            seq,
            reason: BreakReason::HashMismatch,
        }),
        Some(_) => Ok(()),
    }
}
