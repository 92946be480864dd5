//! Merge of the resource types without a typed table (`edw.resource`): the line is
//! kept whole in staging, the row records its type, id and patient. A resource about
//! a patient who is not loaded from this source is quarantined; one about no patient
//! (Medication, Location) is stored with no patient.

/// Temp table the chunk's rows are COPYed into.
pub(super) const CREATE_TEMP: &str = "CREATE TEMP TABLE IF NOT EXISTS mt_resource (
    line_no bigint NOT NULL, rtype text NOT NULL, rid text NOT NULL, hash text NOT NULL,
    pref text, ppath text) ON COMMIT DELETE ROWS";

pub(super) const COPY: &str =
    "COPY mt_resource (line_no, rtype, rid, hash, pref, ppath) FROM STDIN";

/// Upsert + quarantine of unresolved patients. $1 source, $2 batch id, $3 file name.
/// The statement's row count is the number of lines quarantined. `distributed`: the Citus
/// form (`typed::TypedSpec::merge_sql`); a resource about no patient goes to person 0.
pub(super) fn merge_sql(distributed: bool) -> String {
    let (probe, from, cols, vals, key) = if distributed {
        (
            "k.source_patient_id AS spid, CASE WHEN m.pref IS NULL THEN 0 ELSE k.person_id END AS person_id, k.org_id",
            "mt_resource m LEFT JOIN edw.patient_key k ON m.pref IS NOT NULL AND k.source = $1 AND k.source_id = m.pref",
            ", person_id, org_id",
            ", person_id, org_id",
            ", person_id",
        )
    } else {
        (
            "CASE WHEN m.pref IS NOT NULL THEN
                (SELECT sp.id FROM edw.source_patient sp WHERE sp.source = $1 AND sp.source_id = m.pref) END AS spid",
            "mt_resource m",
            "",
            "",
            "",
        )
    };
    format!(
        "WITH r AS MATERIALIZED (SELECT m.*, {probe} FROM {from}),
ins AS (
    INSERT INTO edw.resource AS t (source, resource_type, source_id, source_patient_id, content_hash, batch_id, line_no{cols})
    SELECT $1, rtype, rid, spid, hash, $2, line_no{vals} FROM r WHERE pref IS NULL OR spid IS NOT NULL
    ON CONFLICT (source, resource_type, source_id{key}) DO UPDATE
      SET source_patient_id = EXCLUDED.source_patient_id, content_hash = EXCLUDED.content_hash,
          batch_id = EXCLUDED.batch_id, line_no = EXCLUDED.line_no, change_no = EXCLUDED.change_no
      WHERE t.content_hash <> EXCLUDED.content_hash)
INSERT INTO edw.quarantine (batch_id, line_no, source, file_name, resource_type, resource_id, reason)
SELECT $2, line_no, $1, $3, rtype, rid,
       'unresolved reference ' || ppath || ': no such resource from this source'
FROM r WHERE pref IS NOT NULL AND spid IS NULL
ON CONFLICT (batch_id, line_no) DO NOTHING"
    )
}

/// Citus form only, before [`merge_sql`]: see `typed::TypedSpec::unlink_moved_sql`. $1 source.
pub(super) fn unlink_moved_sql() -> String {
    super::typed::moved_rows_sql(
        "edw.resource",
        "mt_resource",
        "AND t.resource_type = m.rtype",
    )
}

/// One-node form only, before [`merge_sql`]: see `typed::moved_from_sql`. $1 source.
pub(super) fn log_moved_sql() -> String {
    super::typed::moved_from_sql(
        "edw.resource",
        "mt_resource",
        "AND t.resource_type = m.rtype",
    )
}

/// One COPY row for `mt_resource`.
pub(super) fn copy_row(
    line_no: i64,
    rtype: &str,
    rid: &str,
    hash: &str,
    body: &serde_json::Value,
    out: &mut Vec<u8>,
) {
    let patient = crate::validate::patient_of(body);
    super::copy_row(
        out,
        line_no,
        [
            Some(rtype),
            Some(rid),
            Some(hash),
            patient.as_ref().map(|p| p.1.as_str()),
            patient.as_ref().map(|p| p.0),
        ],
    );
}
