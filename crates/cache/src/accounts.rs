//! User accounts: Argon2id passphrases, lockout, administration, and the
//! per-installation secret behind [`access::unknown_user_label`].
//!
//! The cache only hashes passphrases; their strength is the service layer's
//! check ([`access::check_new_passphrase`]). No function here logs anything.

use access::{LockoutPolicy, Role};
use rusqlite::{OptionalExtension, Row};
use serde::{Deserialize, Serialize};

use crate::{Cache, CacheError};

/// An account as shown to administrators (never the passphrase hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub failed_count: u32,
    /// Unix ms; locked while now < locked_until.
    pub locked_until: Option<i64>,
    pub disabled: bool,
    pub created_at: String,
    pub last_login_at: Option<String>,
    /// The user must choose a new passphrase at the next sign-in (set by
    /// [`Cache::reset_passphrase`] and [`Cache::create_account_must_change`],
    /// cleared by [`Cache::change_passphrase`]).
    pub must_change_passphrase: bool,
}

/// Result of [`Cache::authenticate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginResult {
    /// Passphrase correct; failures reset. The account may have
    /// `must_change_passphrase` set: the service layer then forces the change.
    Success(Account),
    /// Wrong passphrase; `locked_until` is set if this failure locked the account.
    WrongPassphrase {
        locked_until: Option<i64>,
    },
    /// The account is locked until this time (Unix ms); the passphrase was not checked.
    Locked {
        until: i64,
    },
    Disabled,
    UnknownUser,
}

const ACCOUNT_COLUMNS: &str =
    "username, display_name, role, failed_count, locked_until, disabled, \
     created_at, last_login_at, must_change_passphrase";

/// The `settings` key of the per-installation secret (64 hex digits).
const INSTALL_SECRET_KEY: &str = "install_secret";
/// Length of the per-installation secret, in bytes.
const INSTALL_SECRET_LEN: usize = 32;

fn account(r: &Row<'_>) -> rusqlite::Result<Account> {
    let role: String = r.get(2)?;
    Ok(Account {
        username: r.get(0)?,
        display_name: r.get(1)?,
        role: Role::from_id(&role).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                2,
                rusqlite::types::Type::Text,
                "unknown role".into(),
            )
        })?,
        failed_count: r.get(3)?,
        locked_until: r.get(4)?,
        disabled: r.get(5)?,
        created_at: r.get(6)?,
        last_login_at: r.get(7)?,
        must_change_passphrase: r.get(8)?,
    })
}

fn valid_username(u: &str) -> bool {
    (1..=64).contains(&u.len())
        && u.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'))
}

/// Display names: 1–200 characters after trimming (stored trimmed), no control characters.
fn check_display_name(name: &str) -> Result<(), CacheError> {
    let n = name.trim().chars().count();
    if n == 0 || n > 200 || name.chars().any(char::is_control) {
        return Err(CacheError::Account(
            "display names are 1-200 characters without control characters".into(),
        ));
    }
    Ok(())
}

fn no_such_account() -> CacheError {
    CacheError::Account("no such account".into())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// A PHC string for a fixed dummy passphrase, so that unknown usernames cost
/// as much time as known ones.
fn dummy_phc() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| access::hash_passphrase("dummy passphrase for timing").unwrap_or_default())
}

impl Cache {
    /// Creates an account. Usernames: 1–64 of `A-Z a-z 0-9 . _ - @`; display
    /// names 1–200 characters. The passphrase is only hashed (at least
    /// [`access::MIN_PASSPHRASE_LEN`] characters); its strength is the caller's check.
    pub fn create_account(
        &self,
        username: &str,
        display_name: &str,
        role: Role,
        passphrase: &str,
    ) -> Result<Account, CacheError> {
        self.insert_account(username, display_name, role, passphrase, false)
    }

    /// Like [`Cache::create_account`], but the user must choose a new
    /// passphrase at the first sign-in (an administrator set this one).
    pub fn create_account_must_change(
        &self,
        username: &str,
        display_name: &str,
        role: Role,
        passphrase: &str,
    ) -> Result<Account, CacheError> {
        self.insert_account(username, display_name, role, passphrase, true)
    }

    fn insert_account(
        &self,
        username: &str,
        display_name: &str,
        role: Role,
        passphrase: &str,
        must_change: bool,
    ) -> Result<Account, CacheError> {
        if !valid_username(username) {
            return Err(CacheError::Account(
                "usernames are 1-64 characters of letters, digits, '.', '_', '-', '@'".into(),
            ));
        }
        check_display_name(display_name)?;
        let phc = access::hash_passphrase(passphrase)?;
        let now = access::time::rfc3339_from_unix_ms(access::time::now_unix_ms());
        let n = self.conn.execute(
            "INSERT INTO accounts(username, display_name, role, phc, created_at,
                                  must_change_passphrase)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(username) DO NOTHING",
            (
                username,
                display_name.trim(),
                role.id(),
                &phc,
                &now,
                must_change,
            ),
        )?;
        if n == 0 {
            return Err(CacheError::Account("the username is already taken".into()));
        }
        self.account(username)?
            .ok_or_else(|| CacheError::Account("account vanished".into()))
    }

    /// How many accounts exist (0 on a fresh installation: the first-run screen).
    pub fn account_count(&self) -> Result<u64, CacheError> {
        Ok(self
            .conn
            .query_row("SELECT count(*) FROM accounts", [], |r| r.get(0))?)
    }

    pub fn account(&self, username: &str) -> Result<Option<Account>, CacheError> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE username = ?1"),
                [username],
                account,
            )
            .optional()?)
    }

    pub fn list_accounts(&self) -> Result<Vec<Account>, CacheError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY username"
        ))?;
        let v = stmt
            .query_map([], account)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(v)
    }

    fn update_account(
        &self,
        username: &str,
        sql: &str,
        value: &dyn rusqlite::ToSql,
    ) -> Result<(), CacheError> {
        let n = self.conn.execute(sql, rusqlite::params![value, username])?;
        if n == 0 {
            return Err(no_such_account());
        }
        Ok(())
    }

    /// Gives the account another role.
    pub fn set_account_role(&self, username: &str, role: Role) -> Result<(), CacheError> {
        self.update_account(
            username,
            "UPDATE accounts SET role = ?1 WHERE username = ?2",
            &role.id(),
        )
    }

    /// Same as [`Cache::set_account_role`].
    pub fn set_role(&self, username: &str, role: Role) -> Result<(), CacheError> {
        self.set_account_role(username, role)
    }

    /// Renames the account as shown (1–200 characters, stored trimmed); the
    /// username stays.
    pub fn set_display_name(&self, username: &str, display_name: &str) -> Result<(), CacheError> {
        check_display_name(display_name)?;
        self.update_account(
            username,
            "UPDATE accounts SET display_name = ?1 WHERE username = ?2",
            &display_name.trim(),
        )
    }

    /// Disables (refuses every sign-in) or re-enables the account. Its
    /// failures and lock are kept.
    pub fn set_account_disabled(&self, username: &str, disabled: bool) -> Result<(), CacheError> {
        self.update_account(
            username,
            "UPDATE accounts SET disabled = ?1 WHERE username = ?2",
            &disabled,
        )
    }

    /// Same as [`Cache::set_account_disabled`].
    pub fn set_disabled(&self, username: &str, disabled: bool) -> Result<(), CacheError> {
        self.set_account_disabled(username, disabled)
    }

    /// Replaces the passphrase hash and nothing else (no flag, no lock change).
    /// Prefer [`Cache::reset_passphrase`] (administrator) or
    /// [`Cache::change_passphrase`] (the user).
    pub fn set_passphrase(&self, username: &str, passphrase: &str) -> Result<(), CacheError> {
        let phc = access::hash_passphrase(passphrase)?;
        self.update_account(
            username,
            "UPDATE accounts SET phc = ?1 WHERE username = ?2",
            &phc,
        )
    }

    /// An administrator's reset: a new passphrase that the user must change at
    /// the next sign-in; failures and any lock are cleared.
    pub fn reset_passphrase(&self, username: &str, new_passphrase: &str) -> Result<(), CacheError> {
        let phc = access::hash_passphrase(new_passphrase)?;
        self.update_account(
            username,
            "UPDATE accounts SET phc = ?1, must_change_passphrase = 1, failed_count = 0,
                locked_until = NULL WHERE username = ?2",
            &phc,
        )
    }

    /// The user's own change: a new passphrase, and no change required any more.
    pub fn change_passphrase(
        &self,
        username: &str,
        new_passphrase: &str,
    ) -> Result<(), CacheError> {
        let phc = access::hash_passphrase(new_passphrase)?;
        self.update_account(
            username,
            "UPDATE accounts SET phc = ?1, must_change_passphrase = 0 WHERE username = ?2",
            &phc,
        )
    }

    /// An administrator's unlock: failures and any lock cleared.
    pub fn unlock_account(&self, username: &str) -> Result<(), CacheError> {
        self.reset_login_failures(username)
    }

    /// This installation's secret: 32 random bytes made on first use, stored
    /// in the (encrypted) cache's settings as hex and returned unchanged
    /// thereafter. It keys [`access::unknown_user_label`]. A stored value
    /// that is not 64 hex digits is an error, never silently replaced (the
    /// labels already in the audit trail would stop matching).
    pub fn install_secret(&self) -> Result<Vec<u8>, CacheError> {
        if let Some(stored) = self.setting(INSTALL_SECRET_KEY)? {
            return parse_secret(&stored);
        }
        let mut secret = [0u8; INSTALL_SECRET_LEN];
        getrandom::fill(&mut secret).map_err(|_| crate::KeyError::Random)?;
        // Another connection may have stored one meanwhile: keep the first.
        self.conn.execute(
            "INSERT INTO settings(key, value) VALUES (?1, ?2) ON CONFLICT(key) DO NOTHING",
            (INSTALL_SECRET_KEY, hex(&secret)),
        )?;
        let stored = self
            .setting(INSTALL_SECRET_KEY)?
            .ok_or_else(|| CacheError::Db("the installation secret was not stored".into()))?;
        parse_secret(&stored)
    }

    pub fn delete_account(&self, username: &str) -> Result<(), CacheError> {
        let n = self
            .conn
            .execute("DELETE FROM accounts WHERE username = ?1", [username])?;
        if n == 0 {
            return Err(no_such_account());
        }
        Ok(())
    }

    /// Records one failed login at `now_ms` under `policy`; returns the new state.
    pub fn record_login_failure(
        &self,
        username: &str,
        now_ms: i64,
        policy: &LockoutPolicy,
    ) -> Result<access::FailureOutcome, CacheError> {
        let tx = self.conn.unchecked_transaction()?;
        let count: u32 = tx
            .query_row(
                "SELECT failed_count FROM accounts WHERE username = ?1",
                [username],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(no_such_account)?;
        let out = policy.after_failure(count, now_ms);
        tx.execute(
            "UPDATE accounts SET failed_count = ?1,
                locked_until = coalesce(?2, locked_until) WHERE username = ?3",
            (out.failed_count, out.locked_until, username),
        )?;
        tx.commit()?;
        Ok(out)
    }

    /// Clears the failure count and any lockout (successful login or admin unlock).
    pub fn reset_login_failures(&self, username: &str) -> Result<(), CacheError> {
        let n = self.conn.execute(
            "UPDATE accounts SET failed_count = 0, locked_until = NULL WHERE username = ?1",
            [username],
        )?;
        if n == 0 {
            return Err(no_such_account());
        }
        Ok(())
    }

    /// Checks a login at `now_ms`: disabled first, then lockout, then the
    /// passphrase; records the failure (the counter grows across lockouts, see
    /// [`LockoutPolicy`]) or resets the counter and stamps `last_login_at`.
    /// A locked or disabled account's passphrase is not checked and the attempt
    /// is not counted.
    pub fn authenticate(
        &self,
        username: &str,
        passphrase: &str,
        now_ms: i64,
        policy: &LockoutPolicy,
    ) -> Result<LoginResult, CacheError> {
        let row: Option<(String, Option<i64>, bool)> = self
            .conn
            .query_row(
                "SELECT phc, locked_until, disabled FROM accounts WHERE username = ?1",
                [username],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((phc, locked_until, disabled)) = row else {
            let _ = access::verify_passphrase(passphrase, dummy_phc());
            return Ok(LoginResult::UnknownUser);
        };
        if disabled {
            return Ok(LoginResult::Disabled);
        }
        if policy.is_locked(locked_until, now_ms) {
            return Ok(LoginResult::Locked {
                until: locked_until.unwrap_or(now_ms),
            });
        }
        if access::verify_passphrase(passphrase, &phc)? {
            self.conn.execute(
                "UPDATE accounts SET failed_count = 0, locked_until = NULL, last_login_at = ?1
                 WHERE username = ?2",
                (access::time::rfc3339_from_unix_ms(now_ms), username),
            )?;
            let acc = self
                .account(username)?
                .ok_or_else(|| CacheError::Account("account vanished".into()))?;
            Ok(LoginResult::Success(acc))
        } else {
            let out = self.record_login_failure(username, now_ms, policy)?;
            Ok(LoginResult::WrongPassphrase {
                locked_until: out.locked_until,
            })
        }
    }
}

fn parse_secret(stored: &str) -> Result<Vec<u8>, CacheError> {
    match unhex(stored) {
        Some(bytes) if bytes.len() == INSTALL_SECRET_LEN => Ok(bytes),
        _ => Err(CacheError::Db(
            "the stored installation secret is malformed".into(),
        )),
    }
}
