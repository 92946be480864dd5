//! `POST /api/audit`: a segment of a workstation's hash-chained audit trail as a FHIR
//! Bundle of AuditEvents (IHE Basic Audit Log Patterns), the chain hashes in extensions.
//! The answer is the head the EDW now holds.

use serde::{Deserialize, Serialize};

/// Extension URLs carrying the chain on each AuditEvent.
pub const EXT_SEQ: &str = "https://phm.example.org/fhir/StructureDefinition/audit-chain-seq";
pub const EXT_PREV_HASH: &str =
    "https://phm.example.org/fhir/StructureDefinition/audit-chain-prev-hash";
pub const EXT_HASH: &str = "https://phm.example.org/fhir/StructureDefinition/audit-chain-hash";
/// The workstation whose chain a segment belongs to (Bundle.identifier.system).
pub const WORKSTATION_SYSTEM: &str = "https://phm.example.org/fhir/workstation";

/// The chain position the EDW holds for a workstation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditHead {
    pub workstation_id: String,
    /// 0 when nothing is held yet.
    pub seq: i64,
    pub hash: String,
}
