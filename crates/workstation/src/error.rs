use serde::Serialize;

/// An error the UI shows as it is: a stable `code` for the screen's logic and a
/// plain sentence. Never carries PHI, key material or a stack trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{message}")]
pub struct WsError {
    pub code: &'static str,
    pub message: String,
}

impl WsError {
    pub fn new(code: &'static str, message: impl Into<String>) -> WsError {
        WsError {
            code,
            message: message.into(),
        }
    }

    pub fn starting() -> WsError {
        WsError::new(
            "starting",
            "The workstation is still opening its cache. Please wait a moment.",
        )
    }

    pub fn not_signed_in() -> WsError {
        WsError::new("not_signed_in", "Please sign in.")
    }

    pub fn locked() -> WsError {
        WsError::new(
            "session_locked",
            "The session was locked after a period of inactivity. Sign in again to continue.",
        )
    }

    pub fn no_purpose() -> WsError {
        WsError::new(
            "no_purpose",
            "Choose the purpose of use for this session first.",
        )
    }

    pub fn denied(role: access::Role, action: access::Action) -> WsError {
        WsError::new(
            "denied",
            format!(
                "Your role ({}) does not allow this: {}.",
                role.display_name(),
                action_label(action)
            ),
        )
    }

    pub fn must_change_passphrase() -> WsError {
        WsError::new(
            "must_change_passphrase",
            "Choose a new passphrase of your own before continuing.",
        )
    }

    pub fn bad_credentials() -> WsError {
        WsError::new("bad_credentials", "Wrong user name or passphrase.")
    }

    pub fn not_found(what: &str) -> WsError {
        WsError::new("not_found", format!("No such {what} in the cache."))
    }

    pub fn invalid(message: impl Into<String>) -> WsError {
        WsError::new("invalid", message)
    }
}

impl From<cache::CacheError> for WsError {
    fn from(e: cache::CacheError) -> WsError {
        use cache::CacheError as C;
        match e {
            C::WrongKey => WsError::new(
                "wrong_key",
                "The local cache could not be opened with the key stored in this computer's keyring. \
                 The cache file was left untouched.",
            ),
            C::InvalidQuery(m) => WsError::invalid(format!("Invalid query: {m}.")),
            // The cache's messages are already free of PHI (file, line, category).
            other => WsError::new("cache", format!("Local cache error: {other}.")),
        }
    }
}

/// What an action is, in the words of the refusal message.
pub fn action_label(action: access::Action) -> &'static str {
    use access::Action as A;
    match action {
        A::ViewPanel => "viewing the panel",
        A::ViewTimeline => "viewing a patient's record",
        A::ViewWorklist => "viewing the worklist",
        A::UpdateWorklist => "changing the worklist",
        A::ViewMeasures => "viewing measures",
        A::ExportReports => "exporting reports",
        A::ViewAudit => "viewing the audit trail",
        A::VerifyAudit => "verifying the audit trail",
        A::ImportData => "importing data",
        A::Sync => "syncing",
        _ => "this action",
    }
}
