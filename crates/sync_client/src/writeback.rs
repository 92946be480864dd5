//! What the workstation sends back: worklist actions from the outbox (`POST /api/actions`,
//! exactly once by action id) and its audit chain (`POST /api/audit`, as FHIR AuditEvents).
//! Both are this project's own API beside the FHIR one, at the server's origin.

use std::sync::atomic::AtomicBool;

use cache::Cache;
use protocol::actions::{Action, ActionBatch, ActionBatchResponse, ActionStatus};
use protocol::audit::AuditHead;

use crate::engine::{discover, origin_of};
use crate::http::{status_error, Http, Method};
use crate::keys::KeyPair;
use crate::{SyncConfig, SyncError};

/// Actions per request.
const ACTION_BATCH: usize = 500;
/// Audit records per request.
const AUDIT_SEGMENT: u32 = 1000;

/// What one drain of the outbox did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ActionsReport {
    /// Stored by the server now.
    pub created: u64,
    /// The server already had them (an earlier attempt's answer was lost).
    pub duplicate: u64,
    /// Refused, with the server's reason kept on the action for the user.
    pub refused: u64,
}

fn api_url(cfg: &SyncConfig, path: &str) -> String {
    format!("{}{path}", origin_of(&cfg.fhir_base()))
}

fn connect<'a>(
    cfg: &'a SyncConfig,
    key: &'a KeyPair,
    cancel: &'a AtomicBool,
) -> Result<Http<'a>, SyncError> {
    let http = Http::new(cfg, key, cancel)?;
    discover(&http, cfg, &cfg.fhir_base())?;
    Ok(http)
}

/// Sends every unsent action, oldest first, in batches. Transport failures and server
/// errors are retried inside each request; if a request still fails, the remaining
/// actions stay queued for the next run. The workstation id is the client id (the server
/// accepts actions only for the caller itself).
pub fn send_actions(
    cache: &Cache,
    cfg: &SyncConfig,
    key: &KeyPair,
    cancel: &AtomicBool,
) -> Result<ActionsReport, SyncError> {
    let pending = cache.outbox_pending()?;
    let mut report = ActionsReport::default();
    if pending.is_empty() {
        return Ok(report);
    }
    let http = connect(cfg, key, cancel)?;
    let url = api_url(cfg, "/api/actions");
    for chunk in pending.chunks(ACTION_BATCH) {
        let batch = ActionBatch {
            workstation_id: cfg.client_id.clone(),
            actions: chunk
                .iter()
                .map(|(e, _, _)| Action {
                    id: e.id.clone(),
                    patient_id: e.patient_id.clone(),
                    kind: e.kind.clone(),
                    measure_id: e.measure_id.clone(),
                    group_id: e.group_id.clone(),
                    created_at: e.created_at.clone(),
                    username: e.username.clone(),
                    body: serde_json::from_str(&e.body).unwrap_or(serde_json::Value::Null),
                })
                .collect(),
        };
        let body = serde_json::to_vec(&batch)
            .map_err(|_| SyncError::Protocol("an action could not be encoded".into()))?;
        // Idempotent by action id: a retry after a lost answer is answered `duplicate`.
        let (status, bytes) = http.send_read(
            &Method::Post(&body, "application/json"),
            &url,
            &[("Accept", "application/json")],
            true,
        )?;
        crate::testhook::point("actions_answered");
        // 409: some action conflicts; the body still answers for each one.
        if status != 200 && status != 409 {
            return Err(status_error(status, &bytes));
        }
        let answer: ActionBatchResponse = serde_json::from_slice(&bytes)
            .map_err(|_| SyncError::Protocol("the answer to the actions is not valid".into()))?;
        let mut delivered = Vec::new();
        for r in &answer.results {
            if !chunk.iter().any(|(e, _, _)| e.id == r.id) {
                return Err(SyncError::Protocol(
                    "the server answered for an action it was not sent".into(),
                ));
            }
            match r.status {
                ActionStatus::Created => {
                    report.created += 1;
                    delivered.push(r.id.clone());
                }
                ActionStatus::Duplicate => {
                    report.duplicate += 1;
                    delivered.push(r.id.clone());
                }
                ActionStatus::Refused | ActionStatus::Conflict => {
                    report.refused += 1;
                    let why = r.reason.as_deref().unwrap_or("no reason given");
                    let what = if r.status == ActionStatus::Conflict {
                        "The server holds a different action with this id"
                    } else {
                        "The server refused it"
                    };
                    cache.outbox_mark_failed(&r.id, &format!("{what}: {why}"))?;
                }
            }
        }
        cache.outbox_mark_sent(&delivered, &now_rfc3339())?;
        crate::testhook::point("actions_marked");
    }
    Ok(report)
}

/// Sends the audit records the EDW does not hold yet and records the head it acknowledges.
/// A cache with no acknowledged head asks the server where its copy of the chain ends.
/// A chain the server refuses (broken, or rewound below what it holds) is an error: the
/// server flags it for the privacy officer.
pub fn ship_audit(
    cache: &Cache,
    cfg: &SyncConfig,
    key: &KeyPair,
    cancel: &AtomicBool,
) -> Result<AuditHead, SyncError> {
    let http = connect(cfg, key, cancel)?;
    let mut head = match cache.audit_edw_head()? {
        Some((seq, hash)) => AuditHead {
            workstation_id: cfg.client_id.clone(),
            seq,
            hash,
        },
        None => {
            let (status, bytes) = http.send_read(
                &Method::Get,
                &api_url(cfg, "/api/audit/head"),
                &[("Accept", "application/json")],
                true,
            )?;
            if status != 200 {
                return Err(status_error(status, &bytes));
            }
            serde_json::from_slice(&bytes)
                .map_err(|_| SyncError::Protocol("the audit head is not valid".into()))?
        }
    };
    let url = api_url(cfg, "/api/audit");
    loop {
        let records = cache.audit_after(head.seq, AUDIT_SEGMENT)?;
        if records.is_empty() {
            break;
        }
        let bundle = protocol::audit::segment_bundle(&cfg.client_id, &records);
        let body = serde_json::to_vec(&bundle)
            .map_err(|_| SyncError::Protocol("the audit segment could not be encoded".into()))?;
        // Records the EDW already holds are accepted again with the same hashes.
        let (status, bytes) = http.send_read(
            &Method::Post(&body, "application/fhir+json"),
            &url,
            &[("Accept", "application/json")],
            true,
        )?;
        if status != 200 {
            return Err(status_error(status, &bytes));
        }
        crate::testhook::point("audit_answered");
        let acked: AuditHead = serde_json::from_slice(&bytes)
            .map_err(|_| SyncError::Protocol("the audit head is not valid".into()))?;
        if acked.seq <= head.seq {
            return Err(SyncError::Protocol(
                "the server did not take the audit records".into(),
            ));
        }
        cache.set_audit_edw_head(acked.seq, &acked.hash)?;
        head = acked;
    }
    Ok(head)
}

fn now_rfc3339() -> String {
    access::time::rfc3339_from_unix_ms(access::time::now_unix_ms())
}
