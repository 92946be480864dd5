//! Row counts and content checksums of the warehouse, independent of surrogate ids,
//! sequence values and load timestamps: two loads of the same data compare equal.

use crate::Result;

pub const TABLES: &[&str] = &[
    "staging.load_batch",
    "staging.raw_line",
    "edw.organization",
    "edw.practitioner",
    "edw.practitioner_specialty",
    "edw.care_team",
    "edw.care_team_member",
    "edw.source_group",
    "edw.source_group_member",
    "edw.person",
    "edw.source_patient",
    "edw.patient_identifier",
    "edw.patient_name",
    "edw.patient_address",
    "edw.patient_telecom",
    "edw.match_link",
    "edw.match_review",
    "edw.coverage",
    "edw.encounter",
    "edw.condition",
    "edw.observation",
    "edw.procedure",
    "edw.medication_request",
    "edw.immunization",
    "edw.quarantine",
];

pub fn table_counts(c: &mut postgres::Client) -> Result<Vec<(String, i64)>> {
    let mut out = Vec::new();
    for t in TABLES {
        let n: i64 = c
            .query_one(&format!("SELECT count(*) FROM {t}"), &[])?
            .get(0);
        out.push((t.to_string(), n));
    }
    Ok(out)
}

/// Content checksum per table: md5 over rows rendered as JSON without surrogate ids,
/// sequence numbers and timestamps; foreign keys replaced by natural keys.
/// On the distributed (Citus) form a row is joined to its record on the person too (the
/// shard key), and the columns only that form has are left out.
pub fn checksums(c: &mut postgres::Client) -> Result<Vec<(String, String)>> {
    let same_person = if crate::migrate::is_distributed(c)? {
        " AND sp.person_id = t.person_id"
    } else {
        ""
    };
    const DROP: &str =
        "- 'id' - 'change_no' - 'batch_id' - 'source_patient_id' - 'practitioner_id' \
        - 'organization_id' - 'org_id' - 'person_id' - 'valid_from' - 'valid_to' - 'created_at' \
        - 'started_at' - 'completed_at' - 'care_team_id' - 'a_id' - 'b_id' - 'org_ids'";
    let mut queries: Vec<(String, String)> = Vec::new();
    for t in ["organization", "practitioner", "care_team", "source_group"] {
        queries.push((
            format!("edw.{t}"),
            format!("SELECT to_jsonb(t) {DROP} FROM edw.{t} t"),
        ));
    }
    for t in crate::CLINICAL_TABLES.iter().chain(&[
        "patient_identifier",
        "patient_name",
        "patient_address",
        "patient_telecom",
    ]) {
        queries.push((
            format!("edw.{t}"),
            format!(
                "SELECT to_jsonb(t) {DROP} || jsonb_build_object('p', sp.source || '/' || sp.source_id,
                   'current', to_jsonb(t) -> 'valid_to' IS NULL OR to_jsonb(t) -> 'valid_to' = 'null')
                 FROM edw.{t} t JOIN edw.source_patient sp ON sp.id = t.source_patient_id{same_person}"
            ),
        ));
    }
    queries.push((
        "edw.resource".into(),
        format!(
            "SELECT to_jsonb(t) {DROP} || jsonb_build_object('p', sp.source || '/' || sp.source_id)
             FROM edw.resource t LEFT JOIN edw.source_patient sp ON sp.id = t.source_patient_id{same_person}"
        ),
    ));
    queries.push((
        "edw.source_patient".into(),
        format!(
            "SELECT to_jsonb(t) {DROP} || jsonb_build_object('org', o.source_id) FROM edw.source_patient t
             LEFT JOIN edw.organization o ON o.id = t.org_id"
        ),
    ));
    // Persons as sets of their source records (ids differ between runs; clusters must not).
    queries.push((
        "edw.person(clusters)".into(),
        "SELECT to_jsonb(array_agg(source || '/' || source_id ORDER BY source, source_id))
         FROM edw.source_patient GROUP BY person_id"
            .into(),
    ));
    queries.push((
        "edw.quarantine".into(),
        format!(
            "SELECT to_jsonb(t) {DROP} || jsonb_build_object('sha', b.file_sha256) FROM edw.quarantine t
             JOIN staging.load_batch b ON b.id = t.batch_id"
        ),
    ));
    queries.push((
        "staging.raw_line".into(),
        "SELECT jsonb_build_object('sha', b.file_sha256, 'l', r.line_no, 'h', md5(r.raw))
         FROM staging.raw_line r JOIN staging.load_batch b ON b.id = r.batch_id"
            .into(),
    ));
    let mut out = Vec::new();
    for (name, q) in queries {
        let sum: Option<String> = c
            .query_one(
                &format!("SELECT md5(string_agg(x::text, '|' ORDER BY x::text)) FROM ({q}) s(x)"),
                &[],
            )?
            .get(0);
        out.push((name, sum.unwrap_or_default()));
    }
    Ok(out)
}

/// Rows whose reference columns point at no row (the bulk-loaded columns carry no
/// foreign key constraints, migrations 0011 to 0013): (table.column, count), only non-zero.
/// On the distributed (Citus) form a record is looked up on its person's shard, and a batch
/// (on the coordinator) in one list rather than per row.
pub fn orphans(c: &mut postgres::Client) -> Result<Vec<(String, i64)>> {
    let distributed = crate::migrate::is_distributed(c)?;
    // (table, column, referenced table)
    let mut keys: Vec<(String, &str, &str)> = vec![
        ("staging.raw_line".into(), "batch_id", "staging.load_batch"),
        (
            "edw.encounter".into(),
            "practitioner_id",
            "edw.practitioner",
        ),
        (
            "edw.encounter".into(),
            "organization_id",
            "edw.organization",
        ),
    ];
    for t in crate::CLINICAL_TABLES {
        keys.push((
            format!("edw.{t}"),
            "source_patient_id",
            "edw.source_patient",
        ));
        keys.push((format!("edw.{t}"), "batch_id", "staging.load_batch"));
    }
    for (t, col, target) in [
        ("resource", "source_patient_id", "edw.source_patient"),
        ("resource", "batch_id", "staging.load_batch"),
        ("source_group_member", "group_id", "edw.source_group"),
        (
            "source_group_member",
            "source_patient_id",
            "edw.source_patient",
        ),
        (
            "patient_identifier",
            "source_patient_id",
            "edw.source_patient",
        ),
        ("patient_name", "source_patient_id", "edw.source_patient"),
        ("patient_address", "source_patient_id", "edw.source_patient"),
        ("patient_telecom", "source_patient_id", "edw.source_patient"),
        ("source_patient", "org_id", "edw.organization"),
        ("source_patient", "batch_id", "staging.load_batch"),
    ] {
        keys.push((format!("edw.{t}"), col, target));
    }
    let checks = keys.into_iter().map(|(t, col, target)| {
        let missing = match (distributed, target) {
            (true, "edw.source_patient") => format!(
                "NOT EXISTS (SELECT 1 FROM {target} p WHERE p.id = x.{col} AND p.person_id = x.person_id)"
            ),
            (true, "staging.load_batch") if t.starts_with("edw.") => {
                format!("x.{col} NOT IN (SELECT id FROM {target})")
            }
            _ => format!("NOT EXISTS (SELECT 1 FROM {target} p WHERE p.id = x.{col})"),
        };
        (
            format!("{t}.{col}"),
            format!("SELECT count(*) FROM {t} x WHERE x.{col} IS NOT NULL AND {missing}"),
        )
    });
    let mut out = Vec::new();
    for (name, q) in checks {
        let n: i64 = c.query_one(&q, &[])?.get(0);
        if n != 0 {
            out.push((name, n));
        }
    }
    Ok(out)
}
