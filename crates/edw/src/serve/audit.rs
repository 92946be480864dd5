//! `POST /api/audit`: a segment of a workstation's audit hash chain (a FHIR Bundle of
//! AuditEvents, `protocol::audit::segment_bundle`), and `GET /api/audit/head`.
//!
//! The workstation is the client: the Bundle's workstation id must be the caller's
//! client id. The segment must continue the chain the EDW holds for it
//! (`audit.workstation_chain`): its first new record is seq = head + 1 with prev_hash =
//! the head's hash, and every record's hash must match its content
//! (`access::audit::verify_chain_from`). Records the EDW already holds may be sent
//! again: with identical hashes they are accepted (idempotent retry). A segment that
//! breaks the chain (bad hash, gap) or rewinds it (a held seq with another hash) is
//! refused with 409 and an OperationOutcome, and flagged in `audit.chain_alert` for the
//! privacy officer. The answer is `protocol::audit::AuditHead`: the head now held.

use super::{audit_access, begin_as, json, AppState, Caller, Peer};
use access::audit::{verify_chain_from, AuditRecord, GENESIS_HASH};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use protocol::audit::AuditHead;
use std::sync::Arc;

struct Alert {
    kind: &'static str,
    seq: i64,
    reason: String,
    received_hash: Option<String>,
}

enum Outcome {
    Stored(i64, String),
    Refused(Alert, i64, String),
}

async fn head(
    tx: &deadpool_postgres::Transaction<'_>,
    ws: &str,
) -> Result<(i64, String), tokio_postgres::Error> {
    Ok(tx
        .query_opt(
            "SELECT seq, hash FROM audit.workstation_chain WHERE workstation_id = $1
             ORDER BY seq DESC LIMIT 1",
            &[&ws],
        )
        .await?
        .map(|r| (r.get(0), r.get(1)))
        .unwrap_or((0, GENESIS_HASH.to_string())))
}

pub async fn post_audit(
    State(app): State<Arc<AppState>>,
    Peer(peer): Peer,
    caller: Caller,
    body: axum::body::Bytes,
) -> Response {
    let parsed = serde_json::from_slice::<serde_json::Value>(&body)
        .map_err(|_| "the body is not JSON".to_string())
        .and_then(|v| {
            let (ws, recs) = protocol::audit::parse_segment(&v)?;
            let events: Vec<String> = v["entry"]
                .as_array()
                .map(|a| a.iter().map(|e| e["resource"].to_string()).collect())
                .unwrap_or_default();
            Ok((ws, recs, events))
        });
    let (ws, records, events) = match parsed {
        Ok(x) => x,
        Err(m) => {
            return super::refuse(
                &app,
                &caller,
                "write",
                "AuditEvent",
                None,
                peer,
                StatusCode::BAD_REQUEST,
                "invalid",
                &format!("not an audit segment: {m}"),
            )
            .await
        }
    };
    if ws != caller.client_id {
        return super::refuse(
            &app,
            &caller,
            "write",
            "AuditEvent",
            None,
            peer,
            StatusCode::FORBIDDEN,
            "forbidden",
            "the segment's workstation must be the client id of the access token",
        )
        .await;
    }
    let Ok(mut c) = app.pool.get().await else {
        return super::unavailable();
    };
    let r = async {
        let tx = begin_as(&mut c, &caller).await?;
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext('audit-chain:' || $1))",
            &[&ws],
        )
        .await?;
        let (hs, hh) = head(&tx, &ws).await?;
        let out = check(&tx, &ws, &records, hs, &hh).await?;
        if let Outcome::Stored(..) = out {
            for (r, ev) in records.iter().zip(&events).filter(|(r, _)| r.seq > hs) {
                tx.execute(
                    "INSERT INTO audit.workstation_chain (workstation_id, seq, prev_hash, hash, event)
                     VALUES ($1, $2, $3, $4, $5::text::jsonb)",
                    &[&ws, &r.seq, &r.prev_hash, &r.hash, ev],
                )
                .await?;
            }
            audit_access(
                &tx,
                &caller.client_id,
                "write",
                "AuditEvent",
                None,
                StatusCode::OK,
                peer,
            )
            .await?;
            tx.commit().await?;
        }
        Ok::<_, tokio_postgres::Error>(out)
    }
    .await;
    match r {
        Ok(Outcome::Stored(seq, hash)) => json(
            StatusCode::OK,
            serde_json::to_value(AuditHead {
                workstation_id: ws,
                seq,
                hash,
            })
            .unwrap_or_default(),
        ),
        Ok(Outcome::Refused(alert, held_seq, held_hash)) => {
            // The refused transaction was rolled back; the alert and the refusal are
            // written on their own.
            let w = async {
                let tx = begin_as(&mut c, &caller).await?;
                tx.execute(
                    "INSERT INTO audit.chain_alert (workstation_id, kind, seq, reason, held_seq,
                                                    held_hash, received_hash)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    &[
                        &ws,
                        &alert.kind,
                        &alert.seq,
                        &alert.reason,
                        &held_seq,
                        &held_hash,
                        &alert.received_hash,
                    ],
                )
                .await?;
                audit_access(
                    &tx,
                    &caller.client_id,
                    "write",
                    "AuditEvent",
                    Some(&alert.seq.to_string()),
                    StatusCode::CONFLICT,
                    peer,
                )
                .await?;
                tx.commit().await
            }
            .await;
            if w.is_err() {
                return super::audit_failed();
            }
            super::outcome(
                StatusCode::CONFLICT,
                "conflict",
                &format!(
                    "audit chain {} at seq {}: {} (the EDW holds the chain up to seq {held_seq}); flagged for the privacy officer",
                    alert.kind, alert.seq, alert.reason
                ),
            )
        }
        Err(e) => super::query_failed(&e),
    }
}

/// Decides whether `records` continue the held chain (head `hs`, `hh`).
async fn check(
    tx: &deadpool_postgres::Transaction<'_>,
    ws: &str,
    records: &[AuditRecord],
    hs: i64,
    hh: &str,
) -> Result<Outcome, tokio_postgres::Error> {
    let Some(first) = records.first() else {
        return Ok(Outcome::Stored(hs, hh.to_string()));
    };
    let refused = |kind, seq, reason: String, received: Option<&str>| {
        Outcome::Refused(
            Alert {
                kind,
                seq,
                reason,
                received_hash: received.map(str::to_owned),
            },
            hs,
            hh.to_string(),
        )
    };
    // Rewound: a position the EDW holds, with another hash.
    let held: Vec<&AuditRecord> = records.iter().filter(|r| r.seq <= hs).collect();
    if !held.is_empty() {
        let seqs: Vec<i64> = held.iter().map(|r| r.seq).collect();
        let rows = tx
            .query(
                "SELECT seq, hash FROM audit.workstation_chain
                 WHERE workstation_id = $1 AND seq = ANY($2)",
                &[&ws, &seqs],
            )
            .await?;
        let stored: std::collections::HashMap<i64, String> =
            rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        for r in &held {
            if stored.get(&r.seq) != Some(&r.hash) {
                return Ok(refused(
                    "rewound",
                    r.seq,
                    "a chain position the EDW already holds arrived with another hash".into(),
                    Some(&r.hash),
                ));
            }
        }
    }
    // The segment itself, from its first record.
    if let Err(b) = verify_chain_from(&first.prev_hash, first.seq, records) {
        let h = records
            .iter()
            .find(|r| r.seq == b.seq)
            .map(|r| r.hash.as_str());
        return Ok(refused("broken", b.seq, b.reason.to_string(), h));
    }
    // Continuity with the held head.
    let new: Vec<AuditRecord> = records.iter().filter(|r| r.seq > hs).cloned().collect();
    if let Err(b) = verify_chain_from(hh, hs + 1, &new) {
        let h = new.iter().find(|r| r.seq == b.seq).map(|r| r.hash.as_str());
        return Ok(refused("broken", b.seq, b.reason.to_string(), h));
    }
    Ok(match new.last() {
        Some(l) => Outcome::Stored(l.seq, l.hash.clone()),
        None => Outcome::Stored(hs, hh.to_string()),
    })
}

/// `GET /api/audit/head`: the head the EDW holds for the caller's workstation.
pub async fn get_head(State(app): State<Arc<AppState>>, caller: Caller) -> Response {
    let Ok(mut c) = app.pool.get().await else {
        return super::unavailable();
    };
    let r = async {
        let tx = begin_as(&mut c, &caller).await?;
        let h = head(&tx, &caller.client_id).await?;
        tx.commit().await?;
        Ok::<_, tokio_postgres::Error>(h)
    }
    .await;
    match r {
        Ok((seq, hash)) => json(
            StatusCode::OK,
            serde_json::to_value(AuditHead {
                workstation_id: caller.client_id,
                seq,
                hash,
            })
            .unwrap_or_default(),
        ),
        Err(e) => super::query_failed(&e),
    }
}
