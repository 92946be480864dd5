//! The hash-chained audit record.
//!
//! Each record's `hash` is `hex(SHA-256(canonical_bytes))`, where the
//! canonical encoding is a fixed-order, length-prefixed byte string that
//! includes `seq` and `prev_hash` (see [`AuditRecord::canonical_bytes`]).
//! The first record (seq 1) chains from [`GENESIS_HASH`] (32 zero bytes).
//! Altering any field, deleting a row, or reordering rows breaks the chain
//! at the first affected row; [`verify_chain`] reports its seq.
//!
//! Limitation: the chain is unkeyed, so someone who can write the store and
//! recompute every later hash can rewrite history, and truncating the tail is
//! only detectable against a head (seq, hash) kept elsewhere. The stores are
//! encrypted (cache) or access-controlled (EDW), which the chain complements.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

use crate::purpose::PurposeOfUse;
use crate::role::{Action, Role};
use crate::UnknownId;

/// Hex of 32 zero bytes: the `prev_hash` of the first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

const DOMAIN: &[u8] = b"phm-audit-v1\0";

/// Result of an audited command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Allowed,
    Denied,
    Error,
}

impl Outcome {
    pub const ALL: [Outcome; 3] = [Outcome::Allowed, Outcome::Denied, Outcome::Error];

    /// Stable id: `allowed`, `denied`, `error`.
    pub const fn id(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Denied => "denied",
            Outcome::Error => "error",
        }
    }

    pub fn from_id(id: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.id() == id)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

impl std::str::FromStr for Outcome {
    type Err = UnknownId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Outcome::from_id(s).ok_or(UnknownId { kind: "outcome" })
    }
}

/// What the caller supplies for one audit event; the store assigns `seq`
/// and chains it with [`AuditEntry::seal`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// RFC 3339 UTC timestamp (see [`crate::time::rfc3339_from_unix_ms`]).
    pub at: String,
    /// Username (as typed, for failed logins of unknown users).
    pub user: String,
    /// The session's role; `None` before authentication.
    pub role: Option<Role>,
    pub purpose: Option<PurposeOfUse>,
    pub action: Action,
    /// Patients whose data the command returned or changed.
    pub patient_ids: Vec<String>,
    /// Query text / filter for list commands (e.g. the panel filter as JSON).
    pub query: Option<String>,
    pub outcome: Outcome,
    /// Short non-PHI reason for a denial or error.
    pub detail: Option<String>,
}

impl AuditEntry {
    /// An entry timestamped now with no patients, query or detail.
    pub fn now(
        user: impl Into<String>,
        role: Option<Role>,
        purpose: Option<PurposeOfUse>,
        action: Action,
        outcome: Outcome,
    ) -> AuditEntry {
        AuditEntry {
            at: crate::time::rfc3339_from_unix_ms(crate::time::now_unix_ms()),
            user: user.into(),
            role,
            purpose,
            action,
            patient_ids: Vec::new(),
            query: None,
            outcome,
            detail: None,
        }
    }

    pub fn with_patients<I, S>(mut self, ids: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.patient_ids = ids.into_iter().map(Into::into).collect();
        self
    }

    pub fn with_query(mut self, query: impl Into<String>) -> Self {
        self.query = Some(query.into());
        self
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Makes the record with number `seq` following a record whose hash is
    /// `prev_hash` ([`GENESIS_HASH`] for seq 1).
    pub fn seal(self, seq: i64, prev_hash: &str) -> AuditRecord {
        let mut r = AuditRecord {
            seq,
            at: self.at,
            user: self.user,
            role: self.role,
            purpose: self.purpose,
            action: self.action,
            patient_ids: self.patient_ids,
            query: self.query,
            outcome: self.outcome,
            detail: self.detail,
            prev_hash: prev_hash.to_owned(),
            hash: String::new(),
        };
        r.hash = r.compute_hash();
        r
    }
}

/// One audit row as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub seq: i64,
    pub at: String,
    pub user: String,
    pub role: Option<Role>,
    pub purpose: Option<PurposeOfUse>,
    pub action: Action,
    pub patient_ids: Vec<String>,
    pub query: Option<String>,
    pub outcome: Outcome,
    pub detail: Option<String>,
    /// Lowercase hex SHA-256 of the previous record ([`GENESIS_HASH`] for the first).
    pub prev_hash: String,
    /// Lowercase hex SHA-256 of this record's canonical bytes.
    pub hash: String,
}

impl AuditRecord {
    /// Canonical encoding: domain tag `phm-audit-v1\0`, then in order
    /// prev_hash (raw 32 bytes, or the text if not valid hex), seq (i64 BE),
    /// at, user, role id?, purpose code?, action id, patient_ids
    /// (u32 BE count + each), query?, outcome id, detail?. Each string is a
    /// u32 BE length followed by its UTF-8 bytes; each optional value is a
    /// 0 byte (absent) or a 1 byte followed by the string.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(256);
        b.extend_from_slice(DOMAIN);
        match decode_hex32(&self.prev_hash) {
            Some(raw) => {
                b.push(0);
                b.extend_from_slice(&raw);
            }
            None => {
                b.push(1);
                put_str(&mut b, &self.prev_hash);
            }
        }
        b.extend_from_slice(&self.seq.to_be_bytes());
        put_str(&mut b, &self.at);
        put_str(&mut b, &self.user);
        put_opt(&mut b, self.role.map(Role::id));
        put_opt(&mut b, self.purpose.map(PurposeOfUse::code));
        put_str(&mut b, self.action.id());
        b.extend_from_slice(&(self.patient_ids.len() as u32).to_be_bytes());
        for id in &self.patient_ids {
            put_str(&mut b, id);
        }
        put_opt(&mut b, self.query.as_deref());
        put_str(&mut b, self.outcome.id());
        put_opt(&mut b, self.detail.as_deref());
        b
    }

    /// Lowercase hex SHA-256 of [`Self::canonical_bytes`].
    pub fn compute_hash(&self) -> String {
        hex(&Sha256::digest(self.canonical_bytes()))
    }
}

fn put_str(b: &mut Vec<u8>, s: &str) {
    b.extend_from_slice(&(s.len() as u32).to_be_bytes());
    b.extend_from_slice(s.as_bytes());
}

fn put_opt(b: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => b.push(0),
        Some(s) => {
            b.push(1);
            put_str(b, s);
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &x in bytes {
        s.push(DIGITS[usize::from(x >> 4)] as char);
        s.push(DIGITS[usize::from(x & 15)] as char);
    }
    s
}

fn decode_hex32(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let val = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = (val(b[2 * i])? << 4) | val(b[2 * i + 1])?;
    }
    Some(out)
}

/// Why the chain broke at a row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum BreakReason {
    /// The row's seq is not the next one: a row before it was deleted or rows were reordered.
    SeqMismatch { expected: i64 },
    /// `prev_hash` does not equal the previous row's hash: a row was deleted, inserted or moved.
    PrevHashMismatch,
    /// The stored hash does not match the row's content: a field was altered.
    HashMismatch,
    /// `hash` or `prev_hash` is not 64 lowercase hex digits.
    MalformedHash,
    /// Rows after the reported seq are missing: the chain ends before the
    /// head recorded elsewhere (`expected_last`).
    Truncated { expected_last: i64 },
}

impl fmt::Display for BreakReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BreakReason::SeqMismatch { expected } => write!(
                f,
                "expected seq {expected} (a row is missing or rows are out of order)"
            ),
            BreakReason::PrevHashMismatch => f.write_str(
                "its previous-hash link does not match the preceding row (a row was deleted, inserted or moved)",
            ),
            BreakReason::HashMismatch => {
                f.write_str("its content does not match its hash (the row was altered)")
            }
            BreakReason::MalformedHash => f.write_str("its hash is malformed"),
            BreakReason::Truncated { expected_last } => write!(
                f,
                "rows up to seq {expected_last} are missing (the trail was truncated)"
            ),
        }
    }
}

/// The first row at which the audit chain fails verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("audit chain broken at seq {seq}: {reason}")]
pub struct ChainBreak {
    pub seq: i64,
    pub reason: BreakReason,
}

/// Verifies a complete chain: the first record must be seq 1 chained from
/// [`GENESIS_HASH`], each next record seq+1 chained from its predecessor's
/// hash, and every hash must match its record's content. An empty slice is valid.
pub fn verify_chain(records: &[AuditRecord]) -> Result<(), ChainBreak> {
    verify_chain_from(GENESIS_HASH, 1, records)
}

/// Like [`verify_chain`], and also checks that the chain ends at the head
/// `(seq, hash)` recorded elsewhere (e.g. the store's head pointer, updated
/// with each append), which detects deletion of the last rows.
/// `head = None` means the trail should be empty.
pub fn verify_chain_with_head(
    records: &[AuditRecord],
    head: Option<(i64, &str)>,
) -> Result<(), ChainBreak> {
    verify_chain(records)?;
    let last = records.last().map(|r| (r.seq, r.hash.as_str()));
    match (last, head) {
        (None, None) => Ok(()),
        (Some((s, h)), Some((hs, hh))) if s == hs && h == hh => Ok(()),
        (Some((s, _)), Some((hs, _))) if s < hs => Err(ChainBreak {
            seq: s + 1,
            reason: BreakReason::Truncated { expected_last: hs },
        }),
        (None, Some((hs, _))) => Err(ChainBreak {
            seq: 1,
            reason: BreakReason::Truncated { expected_last: hs },
        }),
        (Some((s, _)), _) => Err(ChainBreak {
            seq: s,
            reason: BreakReason::HashMismatch,
        }),
    }
}

/// Verifies a contiguous segment starting at `first_seq` whose first record
/// chains from `prev_hash` (e.g. the last verified head).
pub fn verify_chain_from(
    prev_hash: &str,
    first_seq: i64,
    records: &[AuditRecord],
) -> Result<(), ChainBreak> {
    let mut expected_prev = prev_hash;
    let mut expected_seq = first_seq;
    for r in records {
        let brk = |reason| Err(ChainBreak { seq: r.seq, reason });
        if r.seq != expected_seq {
            return brk(BreakReason::SeqMismatch {
                expected: expected_seq,
            });
        }
        if decode_hex32(&r.hash).is_none() || decode_hex32(&r.prev_hash).is_none() {
            return brk(BreakReason::MalformedHash);
        }
        if r.prev_hash != expected_prev {
            return brk(BreakReason::PrevHashMismatch);
        }
        if r.compute_hash() != r.hash {
            return brk(BreakReason::HashMismatch);
        }
        expected_prev = &r.hash;
        expected_seq = expected_seq.saturating_add(1);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<AuditRecord> {
        let mut out: Vec<AuditRecord> = Vec::new();
        for seq in 1..=n {
            let prev = out
                .last()
                .map_or(GENESIS_HASH.to_owned(), |r| r.hash.clone());
            let e = AuditEntry {
                at: format!("2026-11-23T20:{:02}:00.000Z", seq % 60),
                user: format!("user{}", seq % 3),
                role: Some(Role::ALL[(seq % 4) as usize]),
                purpose: Some(PurposeOfUse::Treatment),
                action: Action::ALL[(seq % 12) as usize],
                patient_ids: (0..seq % 3).map(|i| format!("pat-{seq}-{i}")).collect(),
                query: (seq % 2 == 0).then(|| format!("{{\"name\":\"q{seq}\"}}")),
                outcome: Outcome::ALL[(seq % 3) as usize],
                detail: None,
            };
            out.push(e.seal(seq, &prev));
        }
        out
    }

    #[test]
    fn intact_chain_verifies() {
        assert_eq!(verify_chain(&[]), Ok(()));
        let c = chain(10);
        assert_eq!(c[0].prev_hash, GENESIS_HASH);
        assert_eq!(c[0].hash.len(), 64);
        assert_eq!(verify_chain(&c), Ok(()));
        // Segment verification from a known head.
        assert_eq!(verify_chain_from(&c[4].hash, 6, &c[5..]), Ok(()));
    }

    #[test]
    fn known_answer_hash_is_stable() {
        // Pins the canonical encoding: changing it invalidates every stored chain.
        let r = AuditEntry {
            at: "2026-01-01T00:00:00.000Z".into(),
            user: "alice".into(),
            role: Some(Role::Clinician),
            purpose: Some(PurposeOfUse::Treatment),
            action: Action::ViewTimeline,
            patient_ids: vec!["p1".into()],
            query: None,
            outcome: Outcome::Allowed,
            detail: None,
        }
        .seal(1, GENESIS_HASH);
        let mut expected = Vec::new();
        expected.extend_from_slice(b"phm-audit-v1\0\0");
        expected.extend_from_slice(&[0u8; 32]);
        expected.extend_from_slice(&1i64.to_be_bytes());
        for s in ["2026-01-01T00:00:00.000Z", "alice"] {
            expected.extend_from_slice(&(s.len() as u32).to_be_bytes());
            expected.extend_from_slice(s.as_bytes());
        }
        for s in ["clinician", "TREAT"] {
            expected.push(1);
            expected.extend_from_slice(&(s.len() as u32).to_be_bytes());
            expected.extend_from_slice(s.as_bytes());
        }
        expected.extend_from_slice(&13u32.to_be_bytes());
        expected.extend_from_slice(b"view_timeline");
        expected.extend_from_slice(&1u32.to_be_bytes());
        expected.extend_from_slice(&2u32.to_be_bytes());
        expected.extend_from_slice(b"p1");
        expected.push(0);
        expected.extend_from_slice(&7u32.to_be_bytes());
        expected.extend_from_slice(b"allowed");
        expected.push(0);
        assert_eq!(r.canonical_bytes(), expected);
        assert_eq!(r.hash, hex(&Sha256::digest(&expected)));
    }

    #[test]
    fn every_field_alteration_is_detected_at_its_seq() {
        let base = chain(8);
        type Alter = fn(&mut AuditRecord);
        let alterations: Vec<(&str, Alter)> = vec![
            ("at", |r| r.at.push('1')),
            ("user", |r| r.user = "mallory".into()),
            ("role", |r| r.role = None),
            ("purpose", |r| r.purpose = Some(PurposeOfUse::Operations)),
            ("action", |r| r.action = Action::Login),
            ("patients", |r| r.patient_ids.push("extra".into())),
            ("patients-removed", |r| r.patient_ids.clear()),
            ("query", |r| r.query = Some("other".into())),
            ("outcome", |r| r.outcome = Outcome::Denied),
            ("detail", |r| r.detail = Some("x".into())),
        ];
        for (name, alter) in alterations {
            let mut c = base.clone();
            let before = c[4].clone();
            alter(&mut c[4]);
            if c[4] == before {
                // e.g. clearing an already empty list: alter a different way.
                c[4].patient_ids.push("p".into());
            }
            assert_eq!(
                verify_chain(&c),
                Err(ChainBreak {
                    seq: 5,
                    reason: BreakReason::HashMismatch
                }),
                "{name}"
            );
        }
        // Field boundary shifting ("ab"+"c" vs "a"+"bc") changes the hash.
        let mut c = base.clone();
        c[2].user = "ab".into();
        c[2].at = "c".into();
        let h1 = c[2].compute_hash();
        c[2].user = "a".into();
        c[2].at = "bc".into();
        assert_ne!(h1, c[2].compute_hash());
    }

    #[test]
    fn altered_and_rehashed_row_breaks_the_next_link() {
        let mut c = chain(6);
        c[2].user = "mallory".into();
        c[2].hash = c[2].compute_hash();
        assert_eq!(
            verify_chain(&c),
            Err(ChainBreak {
                seq: 4,
                reason: BreakReason::PrevHashMismatch
            })
        );
    }

    #[test]
    fn deleted_row_is_detected() {
        let mut c = chain(6);
        c.remove(2); // seq 3
        assert_eq!(
            verify_chain(&c),
            Err(ChainBreak {
                seq: 4,
                reason: BreakReason::SeqMismatch { expected: 3 }
            })
        );
        // Deleted and renumbered (without recomputing hashes).
        let mut c = chain(6);
        c.remove(2);
        for (i, r) in c.iter_mut().enumerate() {
            r.seq = i as i64 + 1;
        }
        assert_eq!(
            verify_chain(&c),
            Err(ChainBreak {
                seq: 3,
                reason: BreakReason::PrevHashMismatch
            })
        );
        // First row deleted.
        let c = chain(3);
        assert_eq!(
            verify_chain(&c[1..]),
            Err(ChainBreak {
                seq: 2,
                reason: BreakReason::SeqMismatch { expected: 1 }
            })
        );
    }

    #[test]
    fn reordered_rows_are_detected() {
        let mut c = chain(6);
        c.swap(1, 3);
        assert_eq!(
            verify_chain(&c),
            Err(ChainBreak {
                seq: 4,
                reason: BreakReason::SeqMismatch { expected: 2 }
            })
        );
        // Swapped contents but seq numbers kept in order.
        let mut c = chain(6);
        c.swap(1, 3);
        c[1].seq = 2;
        c[3].seq = 4;
        let e = verify_chain(&c).unwrap_err();
        assert_eq!(e.seq, 2);
        assert_eq!(e.reason, BreakReason::PrevHashMismatch);
    }

    #[test]
    fn truncated_tail_detected_against_head() {
        let c = chain(5);
        let head = Some((5, c[4].hash.as_str()));
        assert_eq!(verify_chain_with_head(&c, head), Ok(()));
        assert_eq!(verify_chain_with_head(&[], None), Ok(()));
        assert_eq!(
            verify_chain_with_head(&c[..3], head),
            Err(ChainBreak {
                seq: 4,
                reason: BreakReason::Truncated { expected_last: 5 }
            })
        );
        assert_eq!(verify_chain_with_head(&[], head).unwrap_err().seq, 1);
        // Head that does not match the last row (e.g. last row replaced).
        let other = "ab".repeat(32);
        assert_eq!(
            verify_chain_with_head(&c, Some((5, other.as_str()))),
            Err(ChainBreak {
                seq: 5,
                reason: BreakReason::HashMismatch
            })
        );
        // Rows beyond the head (head pointer rolled back) also fail.
        assert!(verify_chain_with_head(&c, Some((3, c[2].hash.as_str()))).is_err());
        assert!(verify_chain_with_head(&c, None).is_err());
    }

    #[test]
    fn malformed_and_genesis() {
        let mut c = chain(3);
        c[1].hash = "zz".into();
        assert_eq!(
            verify_chain(&c),
            Err(ChainBreak {
                seq: 2,
                reason: BreakReason::MalformedHash
            })
        );
        let mut c = chain(3);
        c[0].prev_hash = "11".repeat(32);
        assert_eq!(verify_chain(&c).unwrap_err().seq, 1);
        let e = verify_chain(&c).unwrap_err();
        assert!(
            e.to_string().starts_with("audit chain broken at seq 1:"),
            "{e}"
        );
    }

    #[test]
    fn serde_round_trip() {
        let c = chain(3);
        let json = serde_json::to_string(&c).unwrap();
        let back: Vec<AuditRecord> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
        assert_eq!(verify_chain(&back), Ok(()));
    }
}
