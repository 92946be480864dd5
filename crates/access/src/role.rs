//! Roles, actions and the single role matrix.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

use crate::UnknownId;

/// A user's role. Stable ids (`care_manager`, ...) are stored in the cache,
/// the EDW and the audit trail; never renumber or rename them.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ts_rs::TS,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    CareManager,
    Clinician,
    QualityAnalyst,
    PrivacyOfficer,
    /// Manages accounts; sees no patient data and no audit trail.
    Administrator,
}

impl Role {
    /// Every role, in matrix column order.
    pub const ALL: [Role; 5] = [
        Role::CareManager,
        Role::Clinician,
        Role::QualityAnalyst,
        Role::PrivacyOfficer,
        Role::Administrator,
    ];

    /// Stable string id.
    pub const fn id(self) -> &'static str {
        match self {
            Role::CareManager => "care_manager",
            Role::Clinician => "clinician",
            Role::QualityAnalyst => "quality_analyst",
            Role::PrivacyOfficer => "privacy_officer",
            Role::Administrator => "administrator",
        }
    }

    /// Human-readable name for the UI.
    pub const fn display_name(self) -> &'static str {
        match self {
            Role::CareManager => "Care manager",
            Role::Clinician => "Clinician",
            Role::QualityAnalyst => "Quality analyst",
            Role::PrivacyOfficer => "Privacy officer",
            Role::Administrator => "Administrator",
        }
    }

    /// Parses a stable id.
    pub fn from_id(id: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.id() == id)
    }

    const fn column(self) -> usize {
        self as usize
    }

    /// Every action this role may perform.
    pub fn allowed_actions(self) -> Vec<Action> {
        Action::ALL
            .into_iter()
            .filter(|a| allows(self, *a))
            .collect()
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

impl FromStr for Role {
    type Err = UnknownId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::from_id(s).ok_or(UnknownId { kind: "role" })
    }
}

/// Every app command that touches data (plus login), by stable id.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ts_rs::TS,
)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Panel list (patients with demographics).
    ViewPanel,
    /// One patient's timeline and summary.
    ViewTimeline,
    /// Care-gap worklist.
    ViewWorklist,
    /// Change a worklist item (status, note, assignment).
    UpdateWorklist,
    /// eCQM dashboard (aggregate rates).
    ViewMeasures,
    /// Export QRDA / CSV reports.
    ExportReports,
    /// Read the audit trail.
    ViewAudit,
    /// Verify the audit hash chain.
    VerifyAudit,
    /// Import NDJSON / generate the demo panel.
    ImportData,
    /// Sync the cache from the EDW.
    Sync,
    /// Create, change, disable, unlock accounts and reset their passphrases.
    ManageAccounts,
    /// Authenticate (audited whether it succeeds or not).
    Login,
}

impl Action {
    /// Every action, in matrix row order.
    pub const ALL: [Action; 12] = [
        Action::ViewPanel,
        Action::ViewTimeline,
        Action::ViewWorklist,
        Action::UpdateWorklist,
        Action::ViewMeasures,
        Action::ExportReports,
        Action::ViewAudit,
        Action::VerifyAudit,
        Action::ImportData,
        Action::Sync,
        Action::ManageAccounts,
        Action::Login,
    ];

    /// Stable string id.
    pub const fn id(self) -> &'static str {
        match self {
            Action::ViewPanel => "view_panel",
            Action::ViewTimeline => "view_timeline",
            Action::ViewWorklist => "view_worklist",
            Action::UpdateWorklist => "update_worklist",
            Action::ViewMeasures => "view_measures",
            Action::ExportReports => "export_reports",
            Action::ViewAudit => "view_audit",
            Action::VerifyAudit => "verify_audit",
            Action::ImportData => "import_data",
            Action::Sync => "sync",
            Action::ManageAccounts => "manage_accounts",
            Action::Login => "login",
        }
    }

    /// Parses a stable id.
    pub fn from_id(id: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.id() == id)
    }

    /// Whether the command's response contains PHI (names, birth dates,
    /// patient identifiers, clinical events). Every such command must write
    /// one audit record.
    pub const fn returns_phi(self) -> bool {
        MATRIX[self as usize].2
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

impl FromStr for Action {
    type Err = UnknownId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Action::from_id(s).ok_or(UnknownId { kind: "action" })
    }
}

const Y: bool = true;
const N: bool = false;

/// The role matrix: one row per action, in [`Action::ALL`] order:
/// `(action, [care_manager, clinician, quality_analyst, privacy_officer, administrator],
/// returns_phi)`.
pub const MATRIX: [(Action, [bool; 5], bool); 12] = [
    (Action::ViewPanel, [Y, Y, Y, N, N], true),
    (Action::ViewTimeline, [Y, Y, Y, N, N], true),
    (Action::ViewWorklist, [Y, Y, N, N, N], true),
    (Action::UpdateWorklist, [Y, N, N, N, N], true),
    (Action::ViewMeasures, [Y, Y, Y, N, N], false),
    (Action::ExportReports, [N, N, Y, N, N], true),
    (Action::ViewAudit, [N, N, N, Y, N], true),
    (Action::VerifyAudit, [N, N, N, Y, N], false),
    (Action::ImportData, [N, N, Y, N, N], false),
    (Action::Sync, [Y, Y, Y, N, N], false),
    (Action::ManageAccounts, [N, N, N, N, Y], false),
    (Action::Login, [Y, Y, Y, Y, Y], false),
];

/// Whether `role` may perform `action`, per [`MATRIX`].
pub const fn allows(role: Role, action: Action) -> bool {
    MATRIX[action as usize].1[role.column()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_rows_are_in_action_order() {
        for (i, (a, _, _)) in MATRIX.iter().enumerate() {
            assert_eq!(*a, Action::ALL[i]);
            assert_eq!(*a as usize, i);
        }
        for (i, r) in Role::ALL.iter().enumerate() {
            assert_eq!(r.column(), i);
        }
    }

    /// Table-driven over every (role, action): the expected set is written
    /// out independently of MATRIX.
    #[test]
    fn every_role_action_pair() {
        use Action::*;
        let expected: &[(Role, &[Action])] = &[
            (
                Role::CareManager,
                &[
                    ViewPanel,
                    ViewTimeline,
                    ViewWorklist,
                    UpdateWorklist,
                    ViewMeasures,
                    Sync,
                    Login,
                ],
            ),
            (
                Role::Clinician,
                &[
                    ViewPanel,
                    ViewTimeline,
                    ViewWorklist,
                    ViewMeasures,
                    Sync,
                    Login,
                ],
            ),
            (
                Role::QualityAnalyst,
                &[
                    ViewPanel,
                    ViewTimeline,
                    ViewMeasures,
                    ExportReports,
                    ImportData,
                    Sync,
                    Login,
                ],
            ),
            (Role::PrivacyOfficer, &[ViewAudit, VerifyAudit, Login]),
            (Role::Administrator, &[ManageAccounts, Login]),
        ];
        let mut checked = 0;
        for (role, allowed) in expected {
            for action in Action::ALL {
                assert_eq!(
                    allows(*role, action),
                    allowed.contains(&action),
                    "{role} / {action}"
                );
                checked += 1;
            }
        }
        assert_eq!(checked, Role::ALL.len() * Action::ALL.len());
    }

    #[test]
    fn privacy_officer_sees_no_clinical_data() {
        for action in Action::ALL {
            if allows(Role::PrivacyOfficer, action) && action.returns_phi() {
                assert_eq!(action, Action::ViewAudit);
            }
        }
    }

    #[test]
    fn the_administrator_sees_no_patient_data_and_no_audit_trail() {
        for action in Role::Administrator.allowed_actions() {
            assert!(!action.returns_phi(), "{action}");
            assert!(![Action::ViewAudit, Action::VerifyAudit].contains(&action));
        }
        // Only the administrator manages accounts.
        for role in Role::ALL {
            assert_eq!(
                allows(role, Action::ManageAccounts),
                role == Role::Administrator
            );
        }
    }

    #[test]
    fn phi_actions() {
        let phi: Vec<_> = Action::ALL
            .into_iter()
            .filter(|a| a.returns_phi())
            .collect();
        assert_eq!(
            phi,
            vec![
                Action::ViewPanel,
                Action::ViewTimeline,
                Action::ViewWorklist,
                Action::UpdateWorklist,
                Action::ExportReports,
                Action::ViewAudit
            ]
        );
    }

    #[test]
    fn ids_round_trip_and_are_stable() {
        assert_eq!(Role::CareManager.id(), "care_manager");
        assert_eq!(Role::PrivacyOfficer.display_name(), "Privacy officer");
        for r in Role::ALL {
            assert_eq!(Role::from_id(r.id()), Some(r));
            assert_eq!(r.id().parse::<Role>(), Ok(r));
            assert_eq!(
                serde_json::to_string(&r).unwrap(),
                format!("\"{}\"", r.id())
            );
        }
        for a in Action::ALL {
            assert_eq!(Action::from_id(a.id()), Some(a));
            assert_eq!(
                serde_json::to_string(&a).unwrap(),
                format!("\"{}\"", a.id())
            );
        }
        assert!("admin".parse::<Role>().is_err());
        assert_eq!(Action::from_id("VIEW_PANEL"), None);
    }
}
