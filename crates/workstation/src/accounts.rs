//! Accounts: the first administrator of a new installation, the administrator's account
//! commands (create, change, disable and re-enable, unlock, reset a passphrase), and a user
//! changing their own passphrase (forced after a reset or for a new account).
//!
//! Rules, each checked here in Rust: only the administrator role manages accounts
//! ([`Action::ManageAccounts`]; a refusal is audited by the session gate); the first
//! administrator can be created only while the cache has no account at all and never in demo
//! mode; a new passphrase has at least 12 characters and passes the strength estimator
//! ([`access::check_new_passphrase`], with the user's own names as weak inputs); an
//! administrator cannot disable or demote themselves (an installation keeps one); every change
//! and every refused change is audited (account names, never passphrases).

use serde::{Deserialize, Serialize};

use access::{Action, AuditEntry, Outcome, Role};
use cache::Cache;

use crate::{Choice, Workstation, WsError};

/// What the app is running as: shown before anyone signs in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct AppMode {
    /// Demo mode: known demo accounts and synthetic patients (a DEMO marker on every screen).
    pub demo: bool,
    /// A new installation: no account yet, the first administrator must be created.
    pub needs_first_administrator: bool,
    pub version: String,
}

/// An account as the administrator sees it (never a passphrase or its hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct AccountRow {
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub role_label: String,
    pub disabled: bool,
    /// Locked now by failed sign-ins.
    pub locked: bool,
    pub failed_sign_ins: u32,
    pub must_change_passphrase: bool,
    pub practitioner_id: Option<String>,
    pub care_teams: Vec<String>,
    pub created_at: String,
    pub last_sign_in_at: Option<String>,
}

/// What the account form offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase")]
pub struct AccountOptions {
    pub roles: Vec<Choice>,
    pub practitioners: Vec<Choice>,
    pub care_teams: Vec<Choice>,
}

/// A new account: the passphrase is temporary (the user changes it at first sign-in).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase", default)]
pub struct NewAccount {
    pub username: String,
    pub display_name: String,
    #[ts(as = "Option<Role>")]
    pub role: Option<Role>,
    pub passphrase: String,
    /// A clinician's practitioner (their attributed patients).
    pub practitioner_id: Option<String>,
    /// A care manager's care teams (their panels).
    pub care_teams: Vec<String>,
}

/// Changes to an account; `None` leaves a field as it is.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "camelCase", default)]
pub struct AccountChange {
    pub username: String,
    pub display_name: Option<String>,
    pub role: Option<Role>,
    /// `Some("")` removes the link.
    pub practitioner_id: Option<String>,
    pub care_teams: Option<Vec<String>>,
}

fn role_choices() -> Vec<Choice> {
    Role::ALL
        .into_iter()
        .map(|r| Choice {
            id: r.id().into(),
            label: r.display_name().into(),
        })
        .collect()
}

/// The new passphrase's problem, in the user's words, or `None` when it may be used.
fn passphrase_problem(passphrase: &str, username: &str, display_name: &str) -> Option<WsError> {
    access::check_new_passphrase(passphrase, &[username, display_name])
        .err()
        .map(|p| WsError::new("weak_passphrase", p.to_string()))
}

fn display_name_ok(name: &str) -> Result<String, WsError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 120 {
        return Err(WsError::invalid(
            "Give the account a display name of 1 to 120 characters.",
        ));
    }
    Ok(name.to_string())
}

impl Workstation {
    /// Demo mode and whether the first administrator must be created. No session needed.
    pub fn app_mode(&self) -> Result<AppMode, WsError> {
        Ok(AppMode {
            demo: self.demo,
            needs_first_administrator: !self.demo && self.cache().account_count()? == 0,
            version: env!("CARGO_PKG_VERSION").into(),
        })
    }

    /// Creates the first administrator of a new installation: only while there is no
    /// account at all, never in demo mode. Audited as the new administrator.
    pub fn create_first_administrator(
        &self,
        username: &str,
        display_name: &str,
        passphrase: &str,
    ) -> Result<AppMode, WsError> {
        if self.demo {
            return Err(WsError::new(
                "demo",
                "The demo has its own accounts; there is no first administrator to create.",
            ));
        }
        let display_name = display_name_ok(display_name)?;
        if let Some(e) = passphrase_problem(passphrase, username, &display_name) {
            return Err(e);
        }
        {
            // The count and the insert under one lock: two windows cannot both create one.
            let cache = self.cache();
            if cache.account_count()? > 0 {
                return Err(WsError::new(
                    "already_set_up",
                    "This installation already has accounts: sign in, or ask its administrator.",
                ));
            }
            cache.create_account(username, &display_name, Role::Administrator, passphrase)?;
            cache.audit_append(
                AuditEntry::now(
                    username,
                    Some(Role::Administrator),
                    None,
                    Action::ManageAccounts,
                    Outcome::Allowed,
                )
                .with_detail("first administrator created"),
            )?;
        }
        tracing::info!("first administrator created");
        self.app_mode()
    }

    /// Runs one account command as the administrator: the role gate, then `run`, then one
    /// audit record (`detail` on success, the error's code on a refusal).
    fn account_command<T>(
        &self,
        detail: String,
        run: impl FnOnce(&Cache, &str) -> Result<T, WsError>,
    ) -> Result<T, WsError> {
        let s = self.authorize(Action::ManageAccounts)?;
        let result = run(&self.cache(), &s.username);
        let (outcome, text) = match &result {
            Ok(_) => (Outcome::Allowed, detail),
            Err(e) => (Outcome::Denied, format!("{detail}: refused ({})", e.code)),
        };
        self.audit(
            AuditEntry::now(
                &s.username,
                Some(s.role),
                s.purpose,
                Action::ManageAccounts,
                outcome,
            )
            .with_detail(text),
        )?;
        result
    }

    pub fn list_accounts(&self) -> Result<Vec<AccountRow>, WsError> {
        self.account_command("listed accounts".into(), |c, _| self.account_rows(c))
    }

    fn account_rows(&self, c: &Cache) -> Result<Vec<AccountRow>, WsError> {
        let now = (self.clock)();
        let mut out = Vec::new();
        for a in c.list_accounts()? {
            let (practitioner_id, care_teams) = c.account_links(&a.username)?;
            out.push(AccountRow {
                role_label: a.role.display_name().into(),
                locked: self.lockout.is_locked(a.locked_until, now),
                username: a.username,
                display_name: a.display_name,
                role: a.role,
                disabled: a.disabled,
                failed_sign_ins: a.failed_count,
                must_change_passphrase: a.must_change_passphrase,
                practitioner_id,
                care_teams,
                created_at: a.created_at,
                last_sign_in_at: a.last_login_at,
            });
        }
        Ok(out)
    }

    pub fn account_options(&self) -> Result<AccountOptions, WsError> {
        self.account_command("read account options".into(), |c, _| {
            Ok(AccountOptions {
                roles: role_choices(),
                practitioners: c
                    .panel_providers()?
                    .into_iter()
                    .map(|(id, name, _)| Choice {
                        label: name.unwrap_or_else(|| id.clone()),
                        id,
                    })
                    .collect(),
                care_teams: c
                    .groups()?
                    .into_iter()
                    .map(|g| Choice {
                        label: format!(
                            "{} · {} patients",
                            g.name.unwrap_or_else(|| g.id.clone()),
                            g.size
                        ),
                        id: g.id,
                    })
                    .collect(),
            })
        })
    }

    /// Creates an account whose user must choose a new passphrase at first sign-in.
    pub fn create_account(&self, a: &NewAccount) -> Result<AccountRow, WsError> {
        let username = a.username.trim().to_string();
        self.account_command(
            format!(
                "created account {username} ({})",
                a.role.map_or("no role", Role::id)
            ),
            |c, _| {
                let role = a
                    .role
                    .ok_or_else(|| WsError::invalid("Choose the account's role."))?;
                let display_name = display_name_ok(&a.display_name)?;
                if let Some(e) = passphrase_problem(&a.passphrase, &username, &display_name) {
                    return Err(e);
                }
                check_links(c, a.practitioner_id.as_deref(), &a.care_teams)?;
                c.create_account_must_change(&username, &display_name, role, &a.passphrase)?;
                let practitioner = a.practitioner_id.as_deref().filter(|p| !p.is_empty());
                c.set_account_links(&username, practitioner, &a.care_teams)?;
                Ok(())
            },
        )?;
        self.account_row(&username)
    }

    /// Changes an account's name, role or links. The administrator cannot change their own
    /// role (an installation keeps its administrator).
    pub fn update_account(&self, ch: &AccountChange) -> Result<AccountRow, WsError> {
        let mut what = Vec::new();
        if ch.display_name.is_some() {
            what.push("name".to_string());
        }
        if let Some(r) = ch.role {
            what.push(format!("role {}", r.id()));
        }
        if ch.practitioner_id.is_some() || ch.care_teams.is_some() {
            what.push("links".into());
        }
        self.account_command(
            format!("changed account {}: {}", ch.username, what.join(", ")),
            |c, me| {
                let current = c
                    .account(&ch.username)?
                    .ok_or_else(|| WsError::not_found("account"))?;
                if let Some(name) = &ch.display_name {
                    c.set_display_name(&ch.username, &display_name_ok(name)?)?;
                }
                if let Some(role) = ch.role {
                    if ch.username == me && role != current.role {
                        return Err(WsError::new(
                            "own_account",
                            "You cannot change your own role; another administrator can.",
                        ));
                    }
                    c.set_account_role(&ch.username, role)?;
                }
                if ch.practitioner_id.is_some() || ch.care_teams.is_some() {
                    let (p, g) = c.account_links(&ch.username)?;
                    let practitioner = match &ch.practitioner_id {
                        Some(p) if p.is_empty() => None,
                        Some(p) => Some(p.clone()),
                        None => p,
                    };
                    let teams = ch.care_teams.clone().unwrap_or(g);
                    check_links(c, practitioner.as_deref(), &teams)?;
                    c.set_account_links(&ch.username, practitioner.as_deref(), &teams)?;
                }
                Ok(())
            },
        )?;
        self.account_row(&ch.username)
    }

    /// Disables (or re-enables) an account; a disabled account cannot sign in. The
    /// administrator cannot disable themselves.
    pub fn set_account_disabled(
        &self,
        username: &str,
        disabled: bool,
    ) -> Result<AccountRow, WsError> {
        let verb = if disabled { "disabled" } else { "re-enabled" };
        self.account_command(format!("{verb} account {username}"), |c, me| {
            if disabled && username == me {
                return Err(WsError::new(
                    "own_account",
                    "You cannot disable your own account.",
                ));
            }
            c.set_account_disabled(username, disabled)?;
            Ok(())
        })?;
        self.account_row(username)
    }

    /// Clears an account's failed sign-ins and lock.
    pub fn unlock_account(&self, username: &str) -> Result<AccountRow, WsError> {
        self.account_command(format!("unlocked account {username}"), |c, _| {
            c.unlock_account(username)?;
            Ok(())
        })?;
        self.account_row(username)
    }

    /// Gives an account a temporary passphrase; the user must change it at next sign-in.
    pub fn reset_account_passphrase(
        &self,
        username: &str,
        temporary: &str,
    ) -> Result<AccountRow, WsError> {
        self.account_command(format!("reset the passphrase of {username}"), |c, _| {
            let a = c
                .account(username)?
                .ok_or_else(|| WsError::not_found("account"))?;
            if let Some(e) = passphrase_problem(temporary, username, &a.display_name) {
                return Err(e);
            }
            c.reset_passphrase(username, temporary)?;
            Ok(())
        })?;
        self.account_row(username)
    }

    /// The signed-in user changes their own passphrase (also while a change is forced).
    pub fn change_own_passphrase(
        &self,
        current: &str,
        new: &str,
    ) -> Result<crate::SessionInfo, WsError> {
        let (username, role, display_name) = {
            let slot = self.session_slot();
            let s = slot.as_ref().ok_or_else(WsError::not_signed_in)?;
            (s.username.clone(), s.role, s.display_name.clone())
        };
        let audit = |outcome, detail: &str| {
            self.audit(
                AuditEntry::now(&username, Some(role), None, Action::ManageAccounts, outcome)
                    .with_detail(detail),
            )
        };
        // The current passphrase proves it is the user at the keyboard (and counts as a
        // sign-in attempt for the lockout).
        let now = (self.clock)();
        let checked = self
            .cache()
            .authenticate(&username, current, now, &self.lockout)?;
        match checked {
            cache::LoginResult::Success(_) => {}
            _ => {
                audit(
                    Outcome::Denied,
                    "own passphrase change: current passphrase wrong",
                )?;
                return Err(WsError::new(
                    "bad_credentials",
                    "The current passphrase is not right.",
                ));
            }
        }
        if current == new {
            audit(Outcome::Denied, "own passphrase change: same passphrase")?;
            return Err(WsError::new(
                "weak_passphrase",
                "Choose a passphrase different from the current one.",
            ));
        }
        if let Some(e) = passphrase_problem(new, &username, &display_name) {
            audit(Outcome::Denied, "own passphrase change: too weak")?;
            return Err(e);
        }
        self.cache().change_passphrase(&username, new)?;
        audit(Outcome::Allowed, "changed own passphrase")?;
        let mut slot = self.session_slot();
        let s = slot.as_mut().ok_or_else(WsError::not_signed_in)?;
        s.must_change = false;
        s.last_activity_ms = (self.monotonic)();
        Ok(self.info(s))
    }

    /// One account as listed (no audit record of its own: the command that changed it wrote
    /// one).
    fn account_row(&self, username: &str) -> Result<AccountRow, WsError> {
        let cache = self.cache();
        self.account_rows(&cache)?
            .into_iter()
            .find(|a| a.username == username)
            .ok_or_else(|| WsError::not_found("account"))
    }
}

/// A practitioner and care teams that exist in the panel.
fn check_links(c: &Cache, practitioner: Option<&str>, teams: &[String]) -> Result<(), WsError> {
    if let Some(p) = practitioner.filter(|p| !p.is_empty()) {
        if !c.panel_providers()?.iter().any(|(id, _, _)| id == p) {
            return Err(WsError::invalid("That practitioner is not in the panel."));
        }
    }
    if !teams.is_empty() {
        let groups = c.groups()?;
        if let Some(t) = teams.iter().find(|t| !groups.iter().any(|g| &g.id == *t)) {
            return Err(WsError::invalid(format!(
                "There is no care team {t:?} in the panel."
            )));
        }
    }
    Ok(())
}
