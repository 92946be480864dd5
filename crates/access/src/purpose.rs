//! Purpose of use: codes from HL7 v3 ActReason (the `PurposeOfUse` value set).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

use crate::UnknownId;

/// Code system of every [`PurposeOfUse`] code.
pub const PURPOSE_OF_USE_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";

/// Why a user is accessing data; recorded in every audit record.
/// Serialized as the HL7 code (e.g. `"TREAT"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ts_rs::TS)]
pub enum PurposeOfUse {
    /// TREAT: treatment.
    #[serde(rename = "TREAT")]
    Treatment,
    /// ETREAT: emergency treatment.
    #[serde(rename = "ETREAT")]
    EmergencyTreatment,
    /// CAREMGT: care management.
    #[serde(rename = "CAREMGT")]
    CareManagement,
    /// POPHLTH: population health.
    #[serde(rename = "POPHLTH")]
    PopulationHealth,
    /// HQUALIMP: health quality improvement.
    #[serde(rename = "HQUALIMP")]
    QualityImprovement,
    /// HPRGRP: health program reporting (e.g. eCQM submission).
    #[serde(rename = "HPRGRP")]
    ProgramReporting,
    /// HOPERAT: healthcare operations.
    #[serde(rename = "HOPERAT")]
    Operations,
    /// HSYSADMIN: health system administration.
    #[serde(rename = "HSYSADMIN")]
    SystemAdministration,
}

impl PurposeOfUse {
    /// Every supported purpose.
    pub const ALL: [PurposeOfUse; 8] = [
        PurposeOfUse::Treatment,
        PurposeOfUse::EmergencyTreatment,
        PurposeOfUse::CareManagement,
        PurposeOfUse::PopulationHealth,
        PurposeOfUse::QualityImprovement,
        PurposeOfUse::ProgramReporting,
        PurposeOfUse::Operations,
        PurposeOfUse::SystemAdministration,
    ];

    /// The HL7 v3 ActReason code.
    pub const fn code(self) -> &'static str {
        match self {
            PurposeOfUse::Treatment => "TREAT",
            PurposeOfUse::EmergencyTreatment => "ETREAT",
            PurposeOfUse::CareManagement => "CAREMGT",
            PurposeOfUse::PopulationHealth => "POPHLTH",
            PurposeOfUse::QualityImprovement => "HQUALIMP",
            PurposeOfUse::ProgramReporting => "HPRGRP",
            PurposeOfUse::Operations => "HOPERAT",
            PurposeOfUse::SystemAdministration => "HSYSADMIN",
        }
    }

    /// The code system's display text.
    pub const fn display(self) -> &'static str {
        match self {
            PurposeOfUse::Treatment => "treatment",
            PurposeOfUse::EmergencyTreatment => "Emergency Treatment",
            PurposeOfUse::CareManagement => "care management",
            PurposeOfUse::PopulationHealth => "population health",
            PurposeOfUse::QualityImprovement => "health quality improvement",
            PurposeOfUse::ProgramReporting => "health program reporting",
            PurposeOfUse::Operations => "healthcare operations",
            PurposeOfUse::SystemAdministration => "health system administration",
        }
    }

    /// Code system URI (always [`PURPOSE_OF_USE_SYSTEM`]).
    pub const fn system(self) -> &'static str {
        PURPOSE_OF_USE_SYSTEM
    }

    /// Parses an HL7 code (exact, case-sensitive).
    pub fn from_code(code: &str) -> Option<PurposeOfUse> {
        PurposeOfUse::ALL.into_iter().find(|p| p.code() == code)
    }
}

impl fmt::Display for PurposeOfUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for PurposeOfUse {
    type Err = UnknownId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PurposeOfUse::from_code(s).ok_or(UnknownId {
            kind: "purpose of use",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for p in PurposeOfUse::ALL {
            assert_eq!(PurposeOfUse::from_code(p.code()), Some(p));
            assert_eq!(
                serde_json::to_string(&p).unwrap(),
                format!("\"{}\"", p.code())
            );
            assert_eq!(p.system(), PURPOSE_OF_USE_SYSTEM);
        }
        assert_eq!(PurposeOfUse::Treatment.code(), "TREAT");
        assert_eq!(PurposeOfUse::Operations.code(), "HOPERAT");
        assert_eq!(PurposeOfUse::from_code("treat"), None);
        assert!("NOPE".parse::<PurposeOfUse>().is_err());
    }
}
