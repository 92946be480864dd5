//! User accounts: Argon2id passphrases, lockout.

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
}

/// Result of [`Cache::authenticate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginResult {
    /// Passphrase correct; failures reset.
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
    "username, display_name, role, failed_count, locked_until, disabled, created_at, last_login_at";

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
    })
}

fn valid_username(u: &str) -> bool {
    (1..=64).contains(&u.len())
        && u.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'))
}

/// A PHC string for a fixed dummy passphrase, so that unknown usernames cost
/// as much time as known ones.
fn dummy_phc() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| access::hash_passphrase("dummy passphrase for timing").unwrap_or_default())
}

impl Cache {
    /// Creates an account. Usernames: 1–64 of `A-Z a-z 0-9 . _ - @`.
    pub fn create_account(
        &self,
        username: &str,
        display_name: &str,
        role: Role,
        passphrase: &str,
    ) -> Result<Account, CacheError> {
        if !valid_username(username) {
            return Err(CacheError::Account(
                "usernames are 1-64 characters of letters, digits, '.', '_', '-', '@'".into(),
            ));
        }
        let phc = access::hash_passphrase(passphrase)?;
        let now = access::time::rfc3339_from_unix_ms(access::time::now_unix_ms());
        let n = self.conn.execute(
            "INSERT INTO accounts(username, display_name, role, phc, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(username) DO NOTHING",
            (username, display_name, role.id(), &phc, &now),
        )?;
        if n == 0 {
            return Err(CacheError::Account("the username is already taken".into()));
        }
        self.account(username)?
            .ok_or_else(|| CacheError::Account("account vanished".into()))
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
            return Err(CacheError::Account("no such account".into()));
        }
        Ok(())
    }

    pub fn set_role(&self, username: &str, role: Role) -> Result<(), CacheError> {
        self.update_account(
            username,
            "UPDATE accounts SET role = ?1 WHERE username = ?2",
            &role.id(),
        )
    }

    pub fn set_disabled(&self, username: &str, disabled: bool) -> Result<(), CacheError> {
        self.update_account(
            username,
            "UPDATE accounts SET disabled = ?1 WHERE username = ?2",
            &disabled,
        )
    }

    pub fn set_passphrase(&self, username: &str, passphrase: &str) -> Result<(), CacheError> {
        let phc = access::hash_passphrase(passphrase)?;
        self.update_account(
            username,
            "UPDATE accounts SET phc = ?1 WHERE username = ?2",
            &phc,
        )
    }

    pub fn delete_account(&self, username: &str) -> Result<(), CacheError> {
        let n = self
            .conn
            .execute("DELETE FROM accounts WHERE username = ?1", [username])?;
        if n == 0 {
            return Err(CacheError::Account("no such account".into()));
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
            .ok_or_else(|| CacheError::Account("no such account".into()))?;
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
            return Err(CacheError::Account("no such account".into()));
        }
        Ok(())
    }

    /// Checks a login at `now_ms`: lockout first, then the passphrase; records
    /// the failure or resets the counter and stamps `last_login_at`.
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
