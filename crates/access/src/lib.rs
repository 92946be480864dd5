//! Access control for PHM Workstation and the EDW: roles, the role matrix,
//! HL7 purpose-of-use codes, Argon2id passphrase hashing, lockout and idle
//! policies, and the SHA-256 hash-chained audit record.
//!
//! Pure logic: no I/O, no clock reads except [`time::now_unix_ms`]. Every
//! policy takes timestamps as arguments so it can be tested at its
//! boundaries.
//!
//! # Role matrix
//!
//! One const table, [`role::MATRIX`], decides every permission; see
//! [`allows`]. `Y` = allowed.
//!
//! | Action           | care_manager | clinician | quality_analyst | privacy_officer | returns PHI |
//! |------------------|:---:|:---:|:---:|:---:|:---:|
//! | `view_panel`     | Y | Y | Y | - | yes |
//! | `view_timeline`  | Y | Y | Y (measure drill-down) | - | yes |
//! | `view_worklist`  | Y | Y | - | - | yes |
//! | `update_worklist`| Y | - | - | - | yes |
//! | `view_measures`  | Y | Y | Y | - | no (aggregates) |
//! | `export_reports` | - | - | Y | - | yes |
//! | `view_audit`     | - | - | - | Y | yes (patient ids) |
//! | `verify_audit`   | - | - | - | Y | no |
//! | `import_data`    | - | - | Y | - | no |
//! | `sync`           | Y | Y | Y | - | no |
//! | `manage_accounts`| - | - | - | Y | no |
//! | `login`          | Y | Y | Y | Y | no |
//!
//! The privacy officer never sees clinical data: only the audit trail and
//! account administration.

pub mod audit;
pub mod passphrase;
pub mod policy;
pub mod purpose;
pub mod role;
pub mod time;
pub mod unknown_user;

pub use audit::{
    verify_chain, verify_chain_from, verify_chain_with_head, AuditEntry, AuditRecord, BreakReason,
    ChainBreak, Outcome, GENESIS_HASH,
};
pub use passphrase::{
    check_new_passphrase, hash_passphrase, verify_passphrase, PassphraseError, PassphraseProblem,
    MAX_PASSPHRASE_LEN, MIN_PASSPHRASE_LEN, MIN_PASSPHRASE_SCORE,
};
pub use policy::{FailureOutcome, IdlePolicy, LockoutPolicy};
pub use purpose::{PurposeOfUse, PURPOSE_OF_USE_SYSTEM};
pub use role::{allows, Action, Role};
pub use unknown_user::unknown_user_label;

/// A string id that does not name a known value (role, action, purpose, outcome).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} id")]
pub struct UnknownId {
    /// What kind of id was expected ("role", "action", ...).
    pub kind: &'static str,
}
