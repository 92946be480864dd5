//! `POST /api/actions`: worklist actions written back from a workstation's outbox.
//! Idempotent by action id: the same id with the same payload is acknowledged again;
//! with a different payload it is refused (409).

use serde::{Deserialize, Serialize};

/// One worklist action as the workstation recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    /// UUID v4 made by the workstation when the action was taken.
    pub id: String,
    /// The patient as the EDW exported them (`Patient.id`, the EDW person id).
    pub patient_id: String,
    /// outreach, schedule, evidence, decline, exclude, assign, snooze, ...
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measure_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    /// FHIR dateTime with time zone, when it was taken.
    pub created_at: String,
    /// Who took it (workstation account name).
    pub username: String,
    /// The action's details as recorded (note, reason, due date, evidence resource...).
    pub body: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionBatch {
    pub workstation_id: String,
    pub actions: Vec<Action>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionStatus {
    /// Stored now.
    Created,
    /// Already stored with the same payload (a retry).
    Duplicate,
    /// Refused; `reason` says why. The workstation keeps it for the user to fix.
    Refused,
    /// Same id, different payload: refused (HTTP 409 when the whole batch is this).
    Conflict,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionResult {
    pub id: String,
    pub status: ActionStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionBatchResponse {
    pub results: Vec<ActionResult>,
}
