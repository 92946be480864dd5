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
        let results = batch_results(&mut tx, &caller, &batch.actions).await?;
        for (a, r) in batch.actions.iter().zip(&results) {
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
        Err(e) => super::query_failed(&e),
    }
}

/// The results of a batch, decided with a few set-based statements: under row-level
/// security every statement that reads a patient table re-derives what the organisation
/// sees, so one statement per batch (not per action) keeps a large organisation's
/// batches fast. A batch whose bulk insert fails (a value PostgreSQL refuses) falls back
/// to one action at a time, so only the bad action is refused.
async fn batch_results(
    tx: &mut deadpool_postgres::Transaction<'_>,
    caller: &Caller,
    actions: &[Action],
) -> Result<Vec<ActionResult>, tokio_postgres::Error> {
    let checked: Vec<Result<(uuid::Uuid, i64), &str>> = actions.iter().map(check).collect();
    let uids: Vec<String> = checked
        .iter()
        .filter_map(|c| c.as_ref().ok().map(|(u, _)| u.to_string()))
        .collect();
    let pids: Vec<i64> = checked
        .iter()
        .filter_map(|c| c.as_ref().ok().map(|(_, p)| *p))
        .collect();
    let held = held_many(tx, &uids).await?;
    let visible: std::collections::HashSet<i64> = tx
        .query(
            "SELECT p.id FROM edw.person p
             WHERE p.id = ANY($1) AND EXISTS (SELECT 1 FROM edw.patient_group_member m
                                              WHERE m.person_id = p.id AND m.group_id = ANY($2))",
            &[&pids, &caller.groups],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut results: Vec<Option<ActionResult>> = vec![None; actions.len()];
    let mut insert = Vec::new();
    for (i, (a, c)) in actions.iter().zip(&checked).enumerate() {
        let (uid, pid) = match c {
            Ok(x) => x,
            Err(reason) => {
                results[i] = Some(result(&a.id, ActionStatus::Refused, Some(reason)));
                continue;
            }
        };
        if let Some((h, cl)) = held.get(&uid.to_string()) {
            results[i] = Some(same_or_conflict(a, caller, h, cl));
        } else if !visible.contains(pid) {
            results[i] = Some(result(
                &a.id,
                ActionStatus::Refused,
                Some("the patient is not in a Group granted to this client"),
            ));
        } else {
            insert.push(i);
        }
    }
    if !insert.is_empty() {
        let sp = tx.savepoint("batch").await?;
        let col = |f: &dyn Fn(&Action) -> Option<String>| -> Vec<Option<String>> {
            insert.iter().map(|&i| f(&actions[i])).collect()
        };
        let pid_col: Vec<i64> = insert
            .iter()
            .map(|&i| checked[i].as_ref().map(|(_, p)| *p).unwrap_or_default())
            .collect();
        let inserted = sp
            .query(
                "INSERT INTO edw.worklist_action (workstation_id, event_id, person_id, action, note,
                     acted_at, action_id, payload_sha256, client_id, username, measure_id, group_id, body)
                 SELECT $1, u.id, u.pid, u.kind, u.note, u.at::timestamptz, u.id::uuid, u.hash, $1,
                        u.username, u.measure, u.grp, u.body::jsonb
                 FROM unnest($2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[],
                             $8::text[], $9::text[], $10::text[], $11::text[])
                      AS u(id, pid, kind, note, at, hash, username, measure, grp, body)
                 ON CONFLICT DO NOTHING
                 RETURNING event_id",
                &[
                    &caller.client_id,
                    &col(&|a| uuid::Uuid::parse_str(&a.id).ok().map(|u| u.to_string())),
                    &pid_col,
                    &col(&|a| Some(a.kind.clone())),
                    &col(&|a| a.body.get("note").and_then(|n| n.as_str()).map(str::to_owned)),
                    &col(&|a| Some(a.created_at.clone())),
                    &col(&|a| Some(payload_sha256(a))),
                    &col(&|a| Some(a.username.clone())),
                    &col(&|a| a.measure_id.clone()),
                    &col(&|a| a.group_id.clone()),
                    &col(&|a| Some(a.body.to_string())),
                ],
            )
            .await;
        match inserted {
            Ok(rows) => {
                sp.commit().await?;
                let created: std::collections::HashSet<String> =
                    rows.iter().map(|r| r.get(0)).collect();
                // Not inserted: the same id twice in this batch, or stored meanwhile.
                let missing: Vec<String> = insert
                    .iter()
                    .filter_map(|&i| checked[i].as_ref().ok().map(|(u, _)| u.to_string()))
                    .filter(|u| !created.contains(u))
                    .collect();
                let mut now_held = held_many(tx, &missing).await?;
                for &i in &insert {
                    let a = &actions[i];
                    let uid = checked[i]
                        .as_ref()
                        .map(|(u, _)| u.to_string())
                        .unwrap_or_default();
                    results[i] = Some(match now_held.get(&uid) {
                        // The same id twice in this batch answers like a retry.
                        Some((h, cl)) => same_or_conflict(a, caller, h, cl),
                        None if created.contains(&uid) => {
                            now_held.insert(
                                uid,
                                (Some(payload_sha256(a)), Some(caller.client_id.clone())),
                            );
                            result(&a.id, ActionStatus::Created, None)
                        }
                        None => conflict(a),
                    });
                }
            }
            Err(_) => {
                sp.rollback().await?;
                for &i in &insert {
                    results[i] = Some(one(tx, caller, &actions[i]).await?);
                }
            }
        }
    }
    Ok(results
        .into_iter()
        .map(|r| r.expect("every action answered"))
        .collect())
}

fn conflict(a: &Action) -> ActionResult {
    result(
        &a.id,
        ActionStatus::Conflict,
        Some("an action with this id was already received with different content"),
    )
}

fn same_or_conflict(
    a: &Action,
    caller: &Caller,
    hash: &Option<String>,
    client: &Option<String>,
) -> ActionResult {
    if hash.as_deref() == Some(payload_sha256(a).as_str())
        && client.as_deref() == Some(caller.client_id.as_str())
    {
        result(&a.id, ActionStatus::Duplicate, None)
    } else {
        conflict(a)
    }
}

/// Stored actions among `uids`: id -> (payload hash, client id).
async fn held_many(
    tx: &deadpool_postgres::Transaction<'_>,
    uids: &[String],
) -> Result<
    std::collections::HashMap<String, (Option<String>, Option<String>)>,
    tokio_postgres::Error,
> {
    if uids.is_empty() {
        return Ok(Default::default());
    }
    Ok(tx
        .query(
            "SELECT action_id::text, payload_sha256, client_id FROM edw.worklist_action
             WHERE action_id = ANY($1::text[]::uuid[])",
            &[&uids],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect())
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
    if let Some(r) = held(tx, &uid_s).await? {
        return Ok(same_or_conflict(a, caller, &r.get(0), &r.get(1)));
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
                Some(r) => same_or_conflict(a, caller, &r.get(0), &r.get(1)),
                None => conflict(a),
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
