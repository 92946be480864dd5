//! Lockout and idle-timeout policies as pure functions over timestamps
//! (milliseconds since the Unix epoch, UTC).

use std::time::Duration;

/// Account lockout after repeated failed logins.
///
/// The `max_failures`-th consecutive failure locks the account until
/// `now + lockout`; the failure counter then restarts from zero. A locked
/// account is locked while `now < locked_until` and unlocked from
/// `locked_until` on (inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    pub max_failures: u32,
    pub lockout: Duration,
}

impl Default for LockoutPolicy {
    /// 5 failures, 15 minutes.
    fn default() -> Self {
        LockoutPolicy {
            max_failures: 5,
            lockout: Duration::from_secs(15 * 60),
        }
    }
}

/// New account state after one failed login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureOutcome {
    /// Consecutive failures to store (0 after a lockout starts).
    pub failed_count: u32,
    /// Set when this failure locked the account.
    pub locked_until: Option<i64>,
}

impl LockoutPolicy {
    /// Whether the account is locked at `now_ms`.
    pub fn is_locked(&self, locked_until: Option<i64>, now_ms: i64) -> bool {
        matches!(locked_until, Some(until) if now_ms < until)
    }

    /// State after a failed login at `now_ms`, given the stored count.
    pub fn after_failure(&self, failed_count: u32, now_ms: i64) -> FailureOutcome {
        let n = failed_count.saturating_add(1);
        if n >= self.max_failures.max(1) {
            FailureOutcome {
                failed_count: 0,
                locked_until: Some(now_ms.saturating_add(duration_ms(self.lockout))),
            }
        } else {
            FailureOutcome {
                failed_count: n,
                locked_until: None,
            }
        }
    }

    /// Milliseconds left until unlock (0 if not locked).
    pub fn remaining_ms(&self, locked_until: Option<i64>, now_ms: i64) -> i64 {
        match locked_until {
            Some(until) if now_ms < until => until - now_ms,
            _ => 0,
        }
    }
}

/// Session idle timeout: a session whose last activity is `timeout` or more
/// ago is expired (the boundary itself is expired).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdlePolicy {
    pub timeout: Duration,
}

impl Default for IdlePolicy {
    /// 15 minutes.
    fn default() -> Self {
        IdlePolicy {
            timeout: Duration::from_secs(15 * 60),
        }
    }
}

impl IdlePolicy {
    /// Whether a session last active at `last_activity_ms` has expired at `now_ms`.
    /// A clock that went backwards (now < last activity) is treated as expired.
    pub fn is_expired(&self, last_activity_ms: i64, now_ms: i64) -> bool {
        if now_ms < last_activity_ms {
            return true;
        }
        now_ms - last_activity_ms >= duration_ms(self.timeout)
    }

    /// Timestamp at which a session last active at `last_activity_ms` expires.
    pub fn expires_at(&self, last_activity_ms: i64) -> i64 {
        last_activity_ms.saturating_add(duration_ms(self.timeout))
    }
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_795_000_000_000;
    const MIN: i64 = 60_000;

    #[test]
    fn defaults() {
        let l = LockoutPolicy::default();
        assert_eq!(l.max_failures, 5);
        assert_eq!(l.lockout, Duration::from_secs(900));
        assert_eq!(IdlePolicy::default().timeout, Duration::from_secs(900));
    }

    #[test]
    fn lockout_on_fifth_failure_not_fourth() {
        let p = LockoutPolicy::default();
        let mut count = 0;
        for i in 1..=4 {
            let o = p.after_failure(count, T0);
            assert_eq!(o.failed_count, i);
            assert_eq!(o.locked_until, None, "failure {i}");
            count = o.failed_count;
        }
        let o = p.after_failure(count, T0);
        assert_eq!(o.locked_until, Some(T0 + 15 * MIN));
        assert_eq!(o.failed_count, 0);
    }

    #[test]
    fn lockout_boundaries() {
        let p = LockoutPolicy::default();
        let until = Some(T0 + 15 * MIN);
        assert!(!p.is_locked(None, T0));
        assert!(p.is_locked(until, T0));
        assert!(p.is_locked(until, T0 + 15 * MIN - 1));
        assert!(!p.is_locked(until, T0 + 15 * MIN));
        assert!(!p.is_locked(until, T0 + 15 * MIN + 1));
        assert_eq!(p.remaining_ms(until, T0 + 15 * MIN - 1), 1);
        assert_eq!(p.remaining_ms(until, T0 + 15 * MIN), 0);
    }

    #[test]
    fn custom_lockout_policy() {
        let p = LockoutPolicy {
            max_failures: 3,
            lockout: Duration::from_secs(60),
        };
        assert_eq!(p.after_failure(1, T0).locked_until, None);
        assert_eq!(p.after_failure(2, T0).locked_until, Some(T0 + MIN));
        // max_failures = 0 behaves like 1 instead of never locking.
        let p0 = LockoutPolicy {
            max_failures: 0,
            lockout: Duration::from_secs(60),
        };
        assert!(p0.after_failure(0, T0).locked_until.is_some());
        // Counter saturates instead of overflowing.
        let big = LockoutPolicy {
            max_failures: u32::MAX,
            lockout: Duration::from_secs(1),
        };
        assert!(big.after_failure(u32::MAX, T0).locked_until.is_some());
    }

    #[test]
    fn idle_boundaries() {
        let p = IdlePolicy::default();
        assert!(!p.is_expired(T0, T0));
        assert!(!p.is_expired(T0, T0 + 15 * MIN - 1));
        assert!(p.is_expired(T0, T0 + 15 * MIN));
        assert!(p.is_expired(T0, T0 + 15 * MIN + 1));
        assert!(p.is_expired(T0, T0 - 1), "clock went backwards");
        assert_eq!(p.expires_at(T0), T0 + 15 * MIN);
    }
}
