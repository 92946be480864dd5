//! Lockout and idle-timeout policies as pure functions over timestamps
//! (milliseconds since the Unix epoch, UTC).

use std::time::Duration;

/// Account lockout that slows guessing for good: a delay that grows with
/// consecutive failed logins.
///
/// The first `free_failures` consecutive failures cost nothing (typos). Each
/// further failure locks the account, the first time for `first_delay`, then
/// for twice as long as the time before, up to `max_delay`
/// (see [`LockoutPolicy::delay_after`]). A lockout does **not** reset the
/// failure counter: only a successful sign-in or an administrator's unlock or
/// passphrase reset does, so a guesser never gets a fresh set of free tries.
///
/// A locked account is locked while `now < locked_until` and unlocked from
/// `locked_until` on (inclusive). While it is locked a sign-in is refused
/// without checking the passphrase, so it does not count as a failure.
///
/// With the default (3 free, 30 s doubling, capped at 1 h), 100 guesses
/// take more than 3 days; 1,000 take more than 40 days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Consecutive failures that do not lock the account.
    pub free_failures: u32,
    /// The lock after the first failure beyond `free_failures`.
    pub first_delay: Duration,
    /// The longest lock (the doubling stops here).
    pub max_delay: Duration,
}

impl Default for LockoutPolicy {
    /// 3 free failures, then 30 s, 1 min, 2 min, 4 min, ... capped at 1 hour.
    fn default() -> Self {
        LockoutPolicy {
            free_failures: 3,
            first_delay: Duration::from_secs(30),
            max_delay: Duration::from_secs(60 * 60),
        }
    }
}

/// New account state after one failed login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureOutcome {
    /// Consecutive failures to store (this one included; never reset by a lockout).
    pub failed_count: u32,
    /// Set when this failure locked the account: locked while `now < locked_until`.
    pub locked_until: Option<i64>,
}

impl LockoutPolicy {
    /// Whether the account is locked at `now_ms`.
    pub fn is_locked(&self, locked_until: Option<i64>, now_ms: i64) -> bool {
        matches!(locked_until, Some(until) if now_ms < until)
    }

    /// The lock that the `failed_count`-th consecutive failure causes: `None`
    /// for the free ones, else `first_delay * 2^(failed_count - free_failures - 1)`,
    /// at most `max_delay`.
    pub fn delay_after(&self, failed_count: u32) -> Option<Duration> {
        let beyond = failed_count.checked_sub(self.free_failures)?;
        if beyond == 0 {
            return None;
        }
        let doublings = beyond - 1;
        let delay = if doublings >= 64 {
            self.max_delay
        } else {
            self.first_delay
                .checked_mul(1u32.checked_shl(doublings).unwrap_or(u32::MAX))
                .unwrap_or(self.max_delay)
        };
        Some(delay.min(self.max_delay))
    }

    /// State after a failed login at `now_ms`, given the stored count of
    /// consecutive failures before it.
    pub fn after_failure(&self, failed_count: u32, now_ms: i64) -> FailureOutcome {
        let n = failed_count.saturating_add(1);
        FailureOutcome {
            failed_count: n,
            locked_until: self
                .delay_after(n)
                .map(|d| now_ms.saturating_add(duration_ms(d))),
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

    const SEC: i64 = 1000;
    const HOUR: i64 = 60 * MIN;

    #[test]
    fn defaults() {
        let l = LockoutPolicy::default();
        assert_eq!(l.free_failures, 3);
        assert_eq!(l.first_delay, Duration::from_secs(30));
        assert_eq!(l.max_delay, Duration::from_secs(3600));
        assert_eq!(IdlePolicy::default().timeout, Duration::from_secs(900));
    }

    /// The default schedule: (failures so far, lock after this one in ms or None).
    const DEFAULT_SCHEDULE: &[(u32, Option<i64>)] = &[
        (1, None),
        (2, None),
        (3, None),
        (4, Some(30 * SEC)),
        (5, Some(MIN)),
        (6, Some(2 * MIN)),
        (7, Some(4 * MIN)),
        (8, Some(8 * MIN)),
        (9, Some(16 * MIN)),
        (10, Some(32 * MIN)),
        (11, Some(HOUR)),
        (12, Some(HOUR)),
        (20, Some(HOUR)),
        (40, Some(HOUR)),
        (100, Some(HOUR)),
        (u32::MAX, Some(HOUR)),
    ];

    #[test]
    fn default_schedule_table() {
        let p = LockoutPolicy::default();
        for &(n, lock) in DEFAULT_SCHEDULE {
            assert_eq!(
                p.delay_after(n).map(|d| d.as_millis() as i64),
                lock,
                "failure {n}"
            );
            let o = p.after_failure(n - 1, T0);
            assert_eq!(o.failed_count, n, "failure {n}");
            assert_eq!(o.locked_until, lock.map(|ms| T0 + ms), "failure {n}");
        }
        assert_eq!(p.delay_after(0), None);
    }

    #[test]
    fn a_lockout_never_resets_the_counter() {
        // Guessing as fast as the locks allow: the counter only grows, and
        // each lock is at least as long as the one before.
        let p = LockoutPolicy::default();
        let (mut count, mut now, mut last_lock) = (0u32, T0, 0i64);
        for i in 1..=30u32 {
            assert!(!p.is_locked(None, now));
            let o = p.after_failure(count, now);
            assert_eq!(o.failed_count, i);
            if let Some(until) = o.locked_until {
                let lock = until - now;
                assert!(lock >= last_lock, "failure {i}: {lock} < {last_lock}");
                assert!(p.is_locked(o.locked_until, until - 1));
                last_lock = lock;
                now = until;
            }
            count = o.failed_count;
        }
        // 30 guesses cost 30 s + (1 + 2 + ... + 32) min + 20 h.
        assert_eq!(now - T0, 30 * SEC + 63 * MIN + 20 * HOUR);
    }

    #[test]
    fn custom_schedules_table() {
        let s = Duration::from_secs;
        // (policy, failure number, expected lock in ms)
        let cases: &[(LockoutPolicy, u32, Option<i64>)] = &[
            // No free failures: the first one locks.
            (
                LockoutPolicy {
                    free_failures: 0,
                    first_delay: s(10),
                    max_delay: s(60),
                },
                1,
                Some(10 * SEC),
            ),
            (
                LockoutPolicy {
                    free_failures: 0,
                    first_delay: s(10),
                    max_delay: s(60),
                },
                2,
                Some(20 * SEC),
            ),
            (
                LockoutPolicy {
                    free_failures: 0,
                    first_delay: s(10),
                    max_delay: s(60),
                },
                3,
                Some(40 * SEC),
            ),
            (
                LockoutPolicy {
                    free_failures: 0,
                    first_delay: s(10),
                    max_delay: s(60),
                },
                4,
                Some(60 * SEC),
            ),
            (
                LockoutPolicy {
                    free_failures: 5,
                    first_delay: s(60),
                    max_delay: s(900),
                },
                5,
                None,
            ),
            (
                LockoutPolicy {
                    free_failures: 5,
                    first_delay: s(60),
                    max_delay: s(900),
                },
                6,
                Some(MIN),
            ),
            (
                LockoutPolicy {
                    free_failures: 5,
                    first_delay: s(60),
                    max_delay: s(900),
                },
                10,
                Some(15 * MIN),
            ),
            // A first delay above the cap is cut to the cap.
            (
                LockoutPolicy {
                    free_failures: 1,
                    first_delay: s(7200),
                    max_delay: s(3600),
                },
                2,
                Some(HOUR),
            ),
            // A constant delay (first = max) never grows.
            (
                LockoutPolicy {
                    free_failures: 2,
                    first_delay: s(300),
                    max_delay: s(300),
                },
                9,
                Some(5 * MIN),
            ),
            // Huge counts and free counts saturate instead of overflowing.
            (
                LockoutPolicy {
                    free_failures: u32::MAX,
                    first_delay: s(1),
                    max_delay: s(2),
                },
                u32::MAX,
                None,
            ),
            (
                LockoutPolicy {
                    free_failures: 0,
                    first_delay: Duration::MAX,
                    max_delay: Duration::MAX,
                },
                3,
                Some(i64::MAX - T0),
            ),
        ];
        for (i, &(p, n, lock)) in cases.iter().enumerate() {
            let o = p.after_failure(n - 1, T0);
            assert_eq!(o.failed_count, n, "case {i}");
            assert_eq!(
                o.locked_until,
                lock.map(|ms| T0.saturating_add(ms)),
                "case {i}"
            );
        }
        // The stored count saturates.
        let o = LockoutPolicy::default().after_failure(u32::MAX, T0);
        assert_eq!(o.failed_count, u32::MAX);
        assert_eq!(o.locked_until, Some(T0 + HOUR));
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
        assert_eq!(p.remaining_ms(until, T0), 15 * MIN);
        assert_eq!(p.remaining_ms(until, T0 + 15 * MIN - 1), 1);
        assert_eq!(p.remaining_ms(until, T0 + 15 * MIN), 0);
        assert_eq!(p.remaining_ms(None, T0), 0);
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
