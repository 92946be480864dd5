//! `POST /api/audit`: a segment of a workstation's hash-chained audit trail as a FHIR
//! Bundle of AuditEvents (IHE Basic Audit Log Patterns), the chain hashes in extensions.
//! The answer is the head the EDW now holds.

use serde::{Deserialize, Serialize};

/// Extension URLs carrying the chain on each AuditEvent.
pub const EXT_SEQ: &str = "https://phm.example.org/fhir/StructureDefinition/audit-chain-seq";
pub const EXT_PREV_HASH: &str =
    "https://phm.example.org/fhir/StructureDefinition/audit-chain-prev-hash";
pub const EXT_HASH: &str = "https://phm.example.org/fhir/StructureDefinition/audit-chain-hash";
/// The workstation whose chain a segment belongs to (Bundle.identifier.system).
pub const WORKSTATION_SYSTEM: &str = "https://phm.example.org/fhir/workstation";

/// The chain position the EDW holds for a workstation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditHead {
    pub workstation_id: String,
    /// 0 when nothing is held yet.
    pub seq: i64,
    pub hash: String,
}

/// Code system of the workstation's own action ids (`access::role::Action::id`), carried
/// as a subtype so the record round-trips exactly.
pub const ACTION_SYSTEM: &str = "https://phm.example.org/fhir/CodeSystem/workstation-action";
/// Code system of the workstation roles (`access::role::Role::id`).
pub const ROLE_SYSTEM: &str = "https://phm.example.org/fhir/CodeSystem/workstation-role";

const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";
const REST_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-event-type";
const RESTFUL: &str = "http://hl7.org/fhir/restful-interaction";
const ENTITY_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-entity-type";
const OBJECT_ROLE: &str = "http://terminology.hl7.org/CodeSystem/object-role";
const PARTICIPATION: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";
const SOURCE_TYPE: &str = "http://terminology.hl7.org/CodeSystem/security-source-type";
const BALP: &str = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/";

use access::audit::{AuditRecord, Outcome};
use access::purpose::{PurposeOfUse, PURPOSE_OF_USE_SYSTEM};
use access::role::{Action, Role};
use serde_json::{json, Value};

/// (type coding, restful subtype, AuditEvent.action, BALP profile) of a workstation action.
fn shape(
    a: Action,
) -> (
    Value,
    Option<&'static str>,
    &'static str,
    Option<&'static str>,
) {
    let rest = json!({"system": REST_TYPE, "code": "rest", "display": "Restful Operation"});
    match a {
        Action::ViewTimeline => (rest, Some("read"), "R", Some("IHE.BasicAudit.PatientRead")),
        Action::ViewPanel | Action::ViewWorklist | Action::ViewMeasures | Action::ViewAudit => (
            rest,
            Some("search-type"),
            "E",
            Some("IHE.BasicAudit.PatientQuery"),
        ),
        Action::UpdateWorklist => (
            rest,
            Some("update"),
            "U",
            Some("IHE.BasicAudit.PatientUpdate"),
        ),
        Action::VerifyAudit => (rest, Some("operation"), "E", Some("IHE.BasicAudit.Query")),
        Action::ExportReports => (
            json!({"system": DCM, "code": "110106", "display": "Export"}),
            None,
            "R",
            Some("IHE.BasicAudit.PatientRead"),
        ),
        Action::ImportData | Action::Sync => (
            json!({"system": DCM, "code": "110107", "display": "Import"}),
            None,
            "C",
            Some("IHE.BasicAudit.PatientCreate"),
        ),
        Action::ManageAccounts => (
            json!({"system": DCM, "code": "110113", "display": "Security Alert"}),
            None,
            "E",
            None,
        ),
        Action::Login => (
            json!({"system": DCM, "code": "110114", "display": "User Authentication"}),
            None,
            "E",
            None,
        ),
    }
}

fn outcome_code(o: Outcome) -> &'static str {
    match o {
        Outcome::Allowed => "0",
        Outcome::Denied => "4",
        Outcome::Error => "8",
    }
}

fn seq_ext(seq: i64) -> Value {
    match i32::try_from(seq) {
        Ok(s) => json!({"url": EXT_SEQ, "valueInteger": s}),
        Err(_) => json!({"url": EXT_SEQ, "valueString": seq.to_string()}),
    }
}

/// One chain record as a FHIR R4 AuditEvent (IHE Basic Audit Log Patterns): type and
/// subtype from the action (the workstation's action id as a second subtype coding),
/// `recorded` = `at`, outcome 0/4/8 with `outcomeDesc` = detail, the user as the
/// requesting agent with role and purposeOfUse, the workstation as source observer and
/// source agent, one entity per patient (`Patient/{id}`) and one for the query
/// (base64), the chain position and hashes in extensions.
pub fn to_audit_event(workstation_id: &str, r: &AuditRecord) -> Value {
    let (type_coding, restful, action, profile) = shape(r.action);
    let mut subtype = Vec::new();
    if let Some(code) = restful {
        subtype.push(json!({"system": RESTFUL, "code": code}));
    }
    if r.action == Action::Login {
        subtype.push(json!({"system": DCM, "code": "110122", "display": "Login"}));
    }
    subtype.push(json!({"system": ACTION_SYSTEM, "code": r.action.id()}));
    let ws = json!({"identifier": {"system": WORKSTATION_SYSTEM, "value": workstation_id}});
    let mut user = json!({
        "type": {"coding": [{"system": PARTICIPATION, "code": "IRCP", "display": "information recipient"}]},
        "who": {"identifier": {"value": r.user}},
        "requestor": true
    });
    if let Some(role) = r.role {
        user["role"] = json!([{"coding": [{"system": ROLE_SYSTEM, "code": role.id(),
            "display": role.display_name()}]}]);
    }
    if let Some(p) = r.purpose {
        user["purposeOfUse"] = json!([{"coding": [{"system": PURPOSE_OF_USE_SYSTEM,
            "code": p.code(), "display": p.display()}]}]);
    }
    let source_agent = json!({
        "type": {"coding": [{"system": DCM, "code": "110153", "display": "Source Role ID"}]},
        "who": ws.clone(),
        "requestor": false
    });
    let mut entity: Vec<Value> = r
        .patient_ids
        .iter()
        .map(|id| {
            json!({
                "what": {"reference": format!("Patient/{id}")},
                "type": {"system": ENTITY_TYPE, "code": "1", "display": "Person"},
                "role": {"system": OBJECT_ROLE, "code": "1", "display": "Patient"}
            })
        })
        .collect();
    if let Some(q) = &r.query {
        entity.push(json!({
            "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
            "role": {"system": OBJECT_ROLE, "code": "24", "display": "Query"},
            "query": b64_encode(q.as_bytes())
        }));
    }
    let mut ev = json!({
        "resourceType": "AuditEvent",
        "extension": [
            seq_ext(r.seq),
            {"url": EXT_PREV_HASH, "valueString": r.prev_hash},
            {"url": EXT_HASH, "valueString": r.hash}
        ],
        "type": type_coding,
        "subtype": subtype,
        "action": action,
        "recorded": r.at,
        "outcome": outcome_code(r.outcome),
        "agent": [user, source_agent],
        "source": {
            "observer": ws,
            "type": [{"system": SOURCE_TYPE, "code": "1", "display": "End-user display device"}]
        }
    });
    if let Some(p) = profile {
        ev["meta"] = json!({"profile": [format!("{BALP}{p}")]});
    }
    if let Some(d) = &r.detail {
        ev["outcomeDesc"] = json!(d);
    }
    if !entity.is_empty() {
        ev["entity"] = Value::Array(entity);
    }
    ev
}

/// The record an AuditEvent made by [`to_audit_event`] carries, and its workstation.
pub fn from_audit_event(ev: &Value) -> Result<(String, AuditRecord), String> {
    if ev.get("resourceType").and_then(Value::as_str) != Some("AuditEvent") {
        return Err("not an AuditEvent".into());
    }
    let ext = |url: &str| {
        ev.get("extension").and_then(Value::as_array).and_then(|a| {
            a.iter()
                .find(|e| e.get("url").and_then(Value::as_str) == Some(url))
        })
    };
    let seq = ext(EXT_SEQ)
        .and_then(|e| {
            e.get("valueInteger")
                .and_then(Value::as_i64)
                .or_else(|| e.get("valueString").and_then(Value::as_str)?.parse().ok())
        })
        .ok_or("no chain seq extension")?;
    let ext_str = |url: &str, what: &str| {
        ext(url)
            .and_then(|e| e.get("valueString").and_then(Value::as_str))
            .map(str::to_owned)
            .ok_or(format!("no chain {what} extension"))
    };
    let prev_hash = ext_str(EXT_PREV_HASH, "prev-hash")?;
    let hash = ext_str(EXT_HASH, "hash")?;
    let action_id = ev
        .get("subtype")
        .and_then(Value::as_array)
        .and_then(|a| {
            a.iter()
                .find(|c| c.get("system").and_then(Value::as_str) == Some(ACTION_SYSTEM))
        })
        .and_then(|c| c.get("code").and_then(Value::as_str))
        .ok_or("no workstation action subtype")?;
    let action = Action::from_id(action_id).ok_or("unknown workstation action")?;
    let at = ev
        .get("recorded")
        .and_then(Value::as_str)
        .ok_or("no recorded")?
        .to_string();
    let outcome = match ev.get("outcome").and_then(Value::as_str) {
        Some("0") => Outcome::Allowed,
        Some("4") => Outcome::Denied,
        Some("8") => Outcome::Error,
        _ => return Err("outcome must be 0, 4 or 8".into()),
    };
    let detail = ev
        .get("outcomeDesc")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let agents = ev
        .get("agent")
        .and_then(Value::as_array)
        .ok_or("no agent")?;
    let user_agent = agents
        .iter()
        .find(|a| a.get("requestor").and_then(Value::as_bool) == Some(true))
        .ok_or("no requesting agent")?;
    let user = user_agent
        .pointer("/who/identifier/value")
        .and_then(Value::as_str)
        .ok_or("the requesting agent has no who.identifier.value")?
        .to_string();
    let code_in = |v: Option<&Value>, system: &str| -> Option<String> {
        v?.as_array()?.iter().find_map(|cc| {
            cc.get("coding")?.as_array()?.iter().find_map(|c| {
                (c.get("system")?.as_str()? == system)
                    .then(|| c.get("code")?.as_str().map(str::to_owned))
                    .flatten()
            })
        })
    };
    let role = match code_in(user_agent.get("role"), ROLE_SYSTEM) {
        Some(c) => Some(Role::from_id(&c).ok_or("unknown role")?),
        None => None,
    };
    let purpose = match code_in(user_agent.get("purposeOfUse"), PURPOSE_OF_USE_SYSTEM) {
        Some(c) => Some(PurposeOfUse::from_code(&c).ok_or("unknown purpose of use")?),
        None => None,
    };
    let workstation = ev
        .pointer("/source/observer/identifier")
        .filter(|i| i.get("system").and_then(Value::as_str) == Some(WORKSTATION_SYSTEM))
        .and_then(|i| i.get("value").and_then(Value::as_str))
        .ok_or("no source.observer workstation identifier")?
        .to_string();
    let mut patient_ids = Vec::new();
    let mut query = None;
    for e in ev
        .get("entity")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let role = e.pointer("/role/code").and_then(Value::as_str);
        match role {
            Some("1") => {
                let r = e
                    .pointer("/what/reference")
                    .and_then(Value::as_str)
                    .and_then(|r| r.strip_prefix("Patient/"))
                    .ok_or("a patient entity without what.reference Patient/{id}")?;
                patient_ids.push(r.to_string());
            }
            Some("24") => {
                let q = e
                    .get("query")
                    .and_then(Value::as_str)
                    .and_then(b64_decode)
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or("a query entity without a base64 query")?;
                if query.replace(q).is_some() {
                    return Err("more than one query entity".into());
                }
            }
            _ => return Err("an entity that is neither a patient nor a query".into()),
        }
    }
    Ok((
        workstation,
        AuditRecord {
            seq,
            at,
            user,
            role,
            purpose,
            action,
            patient_ids,
            query,
            outcome,
            detail,
            prev_hash,
            hash,
        },
    ))
}

/// A segment of a workstation's chain: a FHIR Bundle (type collection) identified by
/// the workstation, one AuditEvent per record in chain order.
pub fn segment_bundle(workstation_id: &str, records: &[AuditRecord]) -> Value {
    json!({
        "resourceType": "Bundle",
        "type": "collection",
        "identifier": {"system": WORKSTATION_SYSTEM, "value": workstation_id},
        "entry": records
            .iter()
            .map(|r| json!({"resource": to_audit_event(workstation_id, r)}))
            .collect::<Vec<_>>()
    })
}

/// The workstation and records of a segment Bundle. Every AuditEvent must name the
/// Bundle's workstation as its observer. Errors are PHI-free (entry numbers only).
pub fn parse_segment(v: &Value) -> Result<(String, Vec<AuditRecord>), String> {
    if v.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err("the segment must be a FHIR Bundle".into());
    }
    let ws = v
        .get("identifier")
        .filter(|i| i.get("system").and_then(Value::as_str) == Some(WORKSTATION_SYSTEM))
        .and_then(|i| i.get("value").and_then(Value::as_str))
        .filter(|s| !s.is_empty())
        .ok_or("the Bundle's identifier must name the workstation")?
        .to_string();
    let mut out = Vec::new();
    for (i, e) in v
        .get("entry")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let res = e.get("resource").ok_or(format!("entry {i}: no resource"))?;
        let (w, r) = from_audit_event(res).map_err(|m| format!("entry {i}: {m}"))?;
        if w != ws {
            return Err(format!("entry {i}: observed by another workstation"));
        }
        out.push(r);
    }
    Ok((ws, out))
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn b64_encode(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len().div_ceil(3) * 4);
    for ch in b.chunks(3) {
        let n = (u32::from(ch[0]) << 16)
            | (u32::from(*ch.get(1).unwrap_or(&0)) << 8)
            | u32::from(*ch.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= ch.len() {
                s.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

fn b64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = B64.iter().position(|&x| x == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use access::audit::{verify_chain, AuditEntry, GENESIS_HASH};

    fn chain() -> Vec<AuditRecord> {
        let mut out: Vec<AuditRecord> = Vec::new();
        for (i, action) in Action::ALL.iter().enumerate() {
            let seq = i as i64 + 1;
            let prev = out
                .last()
                .map_or(GENESIS_HASH.to_owned(), |r| r.hash.clone());
            let e = AuditEntry {
                at: format!("2026-03-0{}T10:00:0{}.123Z", i % 9 + 1, i % 10),
                user: if i == 3 {
                    "unknown üser".into()
                } else {
                    format!("user{i}")
                },
                role: (i % 5 != 0).then(|| Role::ALL[i % 4]),
                purpose: (i % 3 != 0).then(|| PurposeOfUse::ALL[i % 8]),
                action: *action,
                patient_ids: (0..i % 3).map(|k| format!("p-{i}/{k}")).collect(),
                query: (i % 2 == 0).then(|| format!("{{\"filter\":\"é{i}\",\"n\":{i}}}")),
                outcome: Outcome::ALL[i % 3],
                detail: (i % 4 == 1).then(|| "not in panel".to_string()),
            };
            out.push(e.seal(seq, &prev));
        }
        out
    }

    #[test]
    fn segment_round_trip_is_exact() {
        let c = chain();
        let b = segment_bundle("ws-1", &c);
        // Through text, as on the wire.
        let b: Value = serde_json::from_str(&b.to_string()).unwrap();
        let (ws, back) = parse_segment(&b).unwrap();
        assert_eq!(ws, "ws-1");
        assert_eq!(back, c);
        for (a, o) in back.iter().zip(&c) {
            assert_eq!(a.compute_hash(), o.hash);
        }
        assert_eq!(verify_chain(&back), Ok(()));
        let ev = &b["entry"][1]["resource"];
        assert_eq!(ev["resourceType"], "AuditEvent");
        assert_eq!(ev["source"]["observer"]["identifier"]["value"], "ws-1");
        assert_eq!(ev["agent"][0]["requestor"], true);
        // A big seq survives as a string.
        let mut r = c[0].clone();
        r.seq = 5_000_000_000;
        let (_, back) = from_audit_event(&to_audit_event("w", &r)).unwrap();
        assert_eq!(back.seq, 5_000_000_000);
    }

    #[test]
    fn malformed_segments_are_refused() {
        let c = chain();
        let mut b = segment_bundle("ws-1", &c);
        b["entry"][2]["resource"]["source"]["observer"]["identifier"]["value"] = json!("other");
        assert!(parse_segment(&b).unwrap_err().contains("entry 2"));
        assert!(parse_segment(&json!({"resourceType": "Patient"})).is_err());
        let mut b = segment_bundle("ws-1", &c);
        b["entry"][0]["resource"]["outcome"] = json!("12");
        assert!(parse_segment(&b).is_err());
        for s in ["", "a", "ab", "abc", "abcd", "\u{e9}x\n"] {
            assert_eq!(b64_decode(&b64_encode(s.as_bytes())).unwrap(), s.as_bytes());
        }
        assert_eq!(b64_encode(b"hello"), "aGVsbG8=");
    }
}
