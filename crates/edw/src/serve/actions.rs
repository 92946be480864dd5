//! `POST /api/actions`: worklist actions written back from a workstation's outbox
//! (`protocol::actions::ActionBatch` -> `ActionBatchResponse`).
//!
//! Per action, as the client's organisation role (row-level security applies):
//! * an action id already stored with the same payload (SHA-256 of its canonical JSON)
//!   by the same client is `duplicate` (no second row); with another payload, or by
//!   another client, it is `conflict`;
//! * otherwise the patient must be a person the organisation sees and a member of one
//!   of the client's Groups, else `refused` with a plain reason; then `created`.
//!
//! 200 when no action conflicts, 409 when any does (the body lists every result).
//! `workstation_id` must be the caller's client id (403 otherwise). Each action's
//! outcome is a row of `audit.phi_access`, in the same transaction.

use super::{audit_access, begin_as, json, AppState, Caller, Peer};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use protocol::actions::{Action, ActionBatch, ActionBatchResponse, ActionResult, ActionStatus};
use std::sync::Arc;

/// Most actions in one batch.
pub const MAX_BATCH: usize = 1000;

/// JSON with object keys sorted at every level, no whitespace.
pub fn canonical_json(v: &serde_json::Value) -> String {
    fn write(v: &serde_json::Value, out: &mut String) {
        match v {
            serde_json::Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::Value::String((*k).clone()).to_string());
                    out.push(':');
                    write(&m[k.as_str()], out);
                }
                out.push('}');
            }
            serde_json::Value::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(x, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut s = String::new();
    write(v, &mut s);
    s
}

/// Hex SHA-256 of the action's canonical JSON.
pub fn payload_sha256(a: &Action) -> String {
    let v = serde_json::to_value(a).unwrap_or(serde_json::Value::Null);
    crate::migrate::hex(&super::sha256(canonical_json(&v).as_bytes()))
}

fn result(id: &str, status: ActionStatus, reason: Option<&str>) -> ActionResult {
    ActionResult {
        id: id.to_string(),
        status,
        reason: reason.map(str::to_owned),
    }
}

/// Checks that need no database; the reason is PHI-free.
fn check(a: &Action) -> Result<(uuid::Uuid, i64), &'static str> {
    let id = uuid::Uuid::parse_str(&a.id).map_err(|_| "the action id is not a UUID")?;
    let pid = a
        .patient_id
        .parse::<i64>()
        .map_err(|_| "patient_id is not a Patient id of this server")?;
    if a.kind.trim().is_empty() || a.kind.len() > 64 {
        return Err("kind must be a short non-empty text");
    }
    if a.username.trim().is_empty() || a.username.len() > 128 {
        return Err("username must be a short non-empty text");
    }
    if crate::validate::check_datetime(&a.created_at).is_err()
        || !a.created_at.contains('T')
        || !(a.created_at.ends_with('Z')
            || a.created_at.get(10..).unwrap_or("").contains(['+', '-']))
    {
        return Err("created_at must be a FHIR dateTime with a time zone");
    }
    Ok((id, pid))
}

pub async fn post_actions(
    State(app): State<Arc<AppState>>,
    Peer(peer): Peer,
    caller: Caller,
    body: axum::body::Bytes,
) -> Response {
    let batch: ActionBatch = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            // Only the category and position: serde's message can quote values.
            let msg = format!(
                "the body is not an action batch ({:?} error at line {} column {})",
                e.classify(),
                e.line(),
                e.column()
            );
            return super::refuse(
                &app,
                &caller,
                "write",
                "WorklistAction",
                None,
                peer,
                StatusCode::BAD_REQUEST,
                "invalid",
                &msg,
            )
            .await;
        }
    };
    if batch.workstation_id != caller.client_id {
        return super::refuse(
            &app,
            &caller,
            "write",
            "WorklistAction",
            None,
            peer,
            StatusCode::FORBIDDEN,
            "forbidden",
            "workstation_id must be the client id of the access token",
        )
        .await;
    }
    if batch.actions.len() > MAX_BATCH {
        return super::refuse(
            &app,
            &caller,
            "write",
            "WorklistAction",
            None,
            peer,
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-costly",
            &format!("at most {MAX_BATCH} actions per batch"),
        )
        .await;
    }
    let Ok(mut c) = app.pool.get().await else {
        return super::unavailable();
    };
    let r = async {
        let mut tx = begin_as(&mut c, &caller).await?;
        let mut results = Vec::with_capacity(batch.actions.len());
        for a in &batch.actions {
            let r = one(&mut tx, &caller, a).await?;
            let status = match r.status {
                ActionStatus::Created => StatusCode::CREATED,
                ActionStatus::Duplicate => StatusCode::OK,
                ActionStatus::Refused => StatusCode::FORBIDDEN,
                ActionStatus::Conflict => StatusCode::CONFLICT,
            };
            let rid: String = a.id.chars().take(64).collect();
            audit_access(
                &tx,
                &caller.client_id,
                "write",
                "WorklistAction",
                Some(&rid),
                status,
                peer,
            )
            .await?;
            results.push(r);
        }
        tx.commit().await?;
        Ok::<_, tokio_postgres::Error>(results)
    }
    .await;
    match r {
        Ok(results) => {
            let status = if results.iter().any(|r| r.status == ActionStatus::Conflict) {
                StatusCode::CONFLICT
            } else {
                StatusCode::OK
            };
            json(
                status,
                serde_json::to_value(ActionBatchResponse { results }).unwrap_or_default(),
            )
        }
        Err(_) => super::query_failed(),
    }
}

async fn held(
    tx: &deadpool_postgres::Transaction<'_>,
    uid: &str,
) -> Result<Option<tokio_postgres::Row>, tokio_postgres::Error> {
    tx.query_opt(
        "SELECT payload_sha256, client_id FROM edw.worklist_action WHERE action_id = $1::text::uuid",
        &[&uid],
    )
    .await
}

async fn one(
    tx: &mut deadpool_postgres::Transaction<'_>,
    caller: &Caller,
    a: &Action,
) -> Result<ActionResult, tokio_postgres::Error> {
    let (uid, pid) = match check(a) {
        Ok(x) => x,
        Err(reason) => return Ok(result(&a.id, ActionStatus::Refused, Some(reason))),
    };
    let uid_s = uid.to_string();
    let hash = payload_sha256(a);
    let same = |h: Option<String>, cl: Option<String>| {
        if h.as_deref() == Some(hash.as_str()) && cl.as_deref() == Some(caller.client_id.as_str()) {
            result(&a.id, ActionStatus::Duplicate, None)
        } else {
            result(
                &a.id,
                ActionStatus::Conflict,
                Some("an action with this id was already received with different content"),
            )
        }
    };
    if let Some(r) = held(tx, &uid_s).await? {
        return Ok(same(r.get(0), r.get(1)));
    }
    let visible = tx
        .query_opt(
            "SELECT 1 FROM edw.person p
             WHERE p.id = $1 AND EXISTS (SELECT 1 FROM edw.patient_group_member m
                                         WHERE m.person_id = p.id AND m.group_id = ANY($2))",
            &[&pid, &caller.groups],
        )
        .await?
        .is_some();
    if !visible {
        return Ok(result(
            &a.id,
            ActionStatus::Refused,
            Some("the patient is not in a Group granted to this client"),
        ));
    }
    let note = a
        .body
        .get("note")
        .and_then(|n| n.as_str())
        .map(str::to_owned);
    let body = a.body.to_string();
    let sp = tx.savepoint("action").await?;
    let ins = sp
        .execute(
            "INSERT INTO edw.worklist_action (workstation_id, event_id, person_id, action, note,
                 acted_at, action_id, payload_sha256, client_id, username, measure_id, group_id, body)
             VALUES ($1, $2, $3, $4, $5, $6::text::timestamptz, $2::text::uuid, $7, $1, $8, $9, $10,
                     $11::text::jsonb)
             ON CONFLICT DO NOTHING",
            &[
                &caller.client_id,
                &uid_s,
                &pid,
                &a.kind,
                &note,
                &a.created_at,
                &hash,
                &a.username,
                &a.measure_id,
                &a.group_id,
                &body,
            ],
        )
        .await;
    match ins {
        Ok(1) => {
            sp.commit().await?;
            Ok(result(&a.id, ActionStatus::Created, None))
        }
        Ok(_) => {
            sp.commit().await?;
            // Stored meanwhile by a concurrent request, or held for a patient this
            // organisation does not see.
            Ok(match held(tx, &uid_s).await? {
                Some(r) => same(r.get(0), r.get(1)),
                None => result(
                    &a.id,
                    ActionStatus::Conflict,
                    Some("an action with this id was already received with different content"),
                ),
            })
        }
        Err(_) => {
            sp.rollback().await?;
            Ok(result(
                &a.id,
                ActionStatus::Refused,
                Some("the action could not be stored (invalid values)"),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let a: serde_json::Value =
            serde_json::from_str(r#"{"b":1,"a":{"y":[1,{"d":2,"c":3}],"x":"é\n"}}"#).unwrap();
        assert_eq!(
            canonical_json(&a),
            r#"{"a":{"x":"é\n","y":[1,{"c":3,"d":2}]},"b":1}"#
        );
    }
}
