//! Merge of the clinical types: columns are extracted in Rust from the JSON the
//! validator already parsed and COPYed as typed rows into a per-type temp table, so
//! PostgreSQL neither parses jsonb nor runs JSON extraction for the bulk of the lines.
//! The upsert resolves the patient with one index probe per row and quarantines the
//! rows whose patient is unknown in the same statement.

use crate::validate::{check_date, check_datetime};
use serde_json::Value;

/// Column types of the temp tables (and the target columns).
#[derive(Clone, Copy)]
pub(super) enum Ty {
    Text,
    Ts,
    Num,
}

impl Ty {
    fn sql(self) -> &'static str {
        match self {
            Ty::Text => "text",
            Ty::Ts => "timestamptz",
            Ty::Num => "numeric",
        }
    }
}

pub(super) struct TypedSpec {
    pub rtype: &'static str,
    pub table: &'static str,
    /// Element holding the patient reference (required).
    pub patient_path: &'static str,
    /// Target columns filled from the resource, in `extract` order.
    pub cols: &'static [(&'static str, Ty)],
    /// Optional lookups: (target column, reference id column of the temp table, table).
    /// A reference column not among `cols` is extracted after them.
    pub lookups: &'static [(&'static str, &'static str, &'static str)],
    pub extract: fn(&Value, &mut Vec<Option<String>>) -> Result<(), String>,
}

impl TypedSpec {
    pub fn temp_table(&self) -> String {
        format!("mt_{}", self.table)
    }

    /// Temp-only reference columns (extracted after `cols`).
    fn extra_cols(&self) -> Vec<&'static str> {
        self.lookups
            .iter()
            .map(|l| l.1)
            .filter(|c| !self.cols.iter().any(|(n, _)| n == c))
            .collect()
    }

    pub fn create_temp_sql(&self) -> String {
        let mut cols = vec![
            "line_no bigint NOT NULL".to_string(),
            "rid text NOT NULL".into(),
            "hash text NOT NULL".into(),
            "pref text".into(),
        ];
        cols.extend(self.cols.iter().map(|(n, t)| format!("{n} {}", t.sql())));
        cols.extend(self.extra_cols().iter().map(|n| format!("{n} text")));
        format!(
            "CREATE TEMP TABLE IF NOT EXISTS {} ({}) ON COMMIT DELETE ROWS",
            self.temp_table(),
            cols.join(", ")
        )
    }

    pub fn copy_sql(&self) -> String {
        let mut cols = vec!["line_no", "rid", "hash", "pref"];
        cols.extend(self.cols.iter().map(|c| c.0));
        cols.extend(self.extra_cols());
        format!(
            "COPY {} ({}) FROM STDIN",
            self.temp_table(),
            cols.join(", ")
        )
    }

    /// Upsert + quarantine of unresolved patients. $1 source, $2 batch id, $3 file name.
    /// Returns (as the statement's row count) the number of lines quarantined.
    /// `distributed`: the Citus form, where the patient is found in `edw.patient_key` on the
    /// coordinator and every row carries its person (the shard key) and organisation.
    pub fn merge_sql(&self, distributed: bool) -> String {
        // Scalar subqueries: one index probe per row whatever the (lagging) statistics
        // of tables being loaded say; a join could be planned as a scan per chunk.
        let patient = if distributed {
            "k.source_patient_id AS spid, k.person_id, k.org_id"
        } else {
            "(SELECT sp.id FROM edw.source_patient sp WHERE sp.source = $1 AND sp.source_id = m.pref) AS spid"
        };
        let mut probes = vec![patient.to_string()];
        // On Citus a reference table is read in a CTE of its own: Citus plans no direct
        // join of one with the session's temp tables.
        let mut ctes = String::new();
        for (target, refcol, table) in self.lookups {
            if distributed {
                ctes.push_str(&format!(
                    "ref_{table} AS MATERIALIZED (SELECT id, source_id FROM edw.{table} WHERE source = $1), "
                ));
                probes.push(format!(
                    "(SELECT x.id FROM ref_{table} x WHERE x.source_id = m.{refcol}) AS {target}"
                ));
            } else {
                probes.push(format!(
                    "(SELECT x.id FROM edw.{table} x WHERE x.source = $1 AND x.source_id = m.{refcol}) AS {target}"
                ));
            }
        }
        let mut target_cols = vec!["source_patient_id"];
        let mut values = vec!["spid"];
        for (n, _) in self.cols {
            target_cols.push(n);
            values.push(n);
        }
        for (target, _, _) in self.lookups {
            target_cols.push(target);
            values.push(target);
        }
        let mut key = "source, source_id";
        let mut from = format!("{} m", self.temp_table());
        if distributed {
            target_cols.extend(["person_id", "org_id"]);
            values.extend(["person_id", "org_id"]);
            key = "source, source_id, person_id";
            from.push_str(" LEFT JOIN edw.patient_key k ON k.source = $1 AND k.source_id = m.pref");
        }
        let updates: Vec<String> = target_cols
            .iter()
            .chain(["content_hash", "batch_id", "line_no", "change_no"].iter())
            .map(|c| format!("{c} = EXCLUDED.{c}"))
            .collect();
        // The change number is the proposed row's (its column default), taken on the
        // coordinator: Citus refuses nextval() in an update on the shards.
        format!(
            "WITH {ctes}r AS MATERIALIZED (SELECT m.*, {probes} FROM {from}),
             ins AS (INSERT INTO edw.{table} AS t (source, source_id, {tcols}, content_hash, batch_id, line_no)
                     SELECT $1, rid, {vals}, hash, $2, line_no FROM r WHERE spid IS NOT NULL
                     ON CONFLICT ({key}) DO UPDATE SET {updates}
                     WHERE t.content_hash <> EXCLUDED.content_hash)
             INSERT INTO edw.quarantine (batch_id, line_no, source, file_name, resource_type, resource_id, reason)
             SELECT $2, line_no, $1, $3, '{rtype}', rid,
                    'unresolved reference {path}: no such resource from this source'
             FROM r WHERE spid IS NULL
             ON CONFLICT (batch_id, line_no) DO NOTHING",
            probes = probes.join(", "),
            table = self.table,
            tcols = target_cols.join(", "),
            vals = values.join(", "),
            updates = updates.join(", "),
            rtype = self.rtype,
            path = self.patient_path,
        )
    }

    /// Citus form only, before [`Self::merge_sql`]: a resource that now refers to a patient
    /// of another person is removed from its old person's shard (the upsert's key holds the
    /// person, and Citus does not move a row by updating its shard key), and the old person
    /// is logged in `edw.resource_move`. $1 source.
    pub fn unlink_moved_sql(&self) -> String {
        moved_rows_sql(&format!("edw.{}", self.table), &self.temp_table(), "")
    }

    /// One-node form only, before [`Self::merge_sql`]: see [`moved_from_sql`]. $1 source.
    pub fn log_moved_sql(&self) -> String {
        moved_from_sql(&format!("edw.{}", self.table), &self.temp_table(), "")
    }

    /// One COPY text row for the temp table.
    pub fn copy_row(
        &self,
        line_no: i64,
        rid: &str,
        hash: &str,
        body: &Value,
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        let mut vals = Vec::with_capacity(self.cols.len() + 2);
        (self.extract)(body, &mut vals)?;
        debug_assert_eq!(vals.len(), self.cols.len() + self.extra_cols().len());
        let pref = reference_id(str_at(body, &[self.patient_path, "reference"]));
        super::copy_row(
            out,
            line_no,
            [Some(rid), Some(hash), pref.as_deref()]
                .into_iter()
                .chain(vals.iter().map(|v| v.as_deref())),
        );
        Ok(())
    }
}

/// Deletes the rows of `table` (Citus form) whose resource, sent again in `temp`, now belongs
/// to another person than the row's. $1 source.
///
/// The chunk's rows are joined to their patients' keys on the coordinator first (a
/// `MATERIALIZED` CTE), and each shard finds its candidates by index (`source_id = ANY`).
/// Measured at 100,000 patients: as a plain join, Citus shipped every key of the source
/// (100,000 rows) to each of the 32 shards and each shard hash-joined its whole table, for
/// every chunk of every file: seconds per chunk, growing with the warehouse.
pub(super) fn moved_rows_sql(table: &str, temp: &str, extra: &str) -> String {
    format!(
        "WITH m AS MATERIALIZED (
             SELECT m.*, k.person_id AS key_person
             FROM (SELECT rid, {cols} FROM {temp}) m
             JOIN edw.patient_key k ON k.source = $1 AND k.source_id = m.pref),
         gone AS (
             DELETE FROM {table} t USING m
             WHERE t.source = $1{by_type} AND t.source_id = ANY (ARRAY(SELECT rid FROM m))
               AND t.source_id = m.rid {extra} AND t.person_id <> m.key_person
             RETURNING t.person_id)
         INSERT INTO edw.resource_move (person_id) SELECT DISTINCT person_id FROM gone",
        cols = if extra.is_empty() {
            "pref"
        } else {
            "pref, rtype"
        },
        // edw.resource's key is (source, type, id): the type too, or the index is read for
        // the whole source (measured: 10 s per chunk at 100,000 patients).
        by_type = if extra.is_empty() {
            ""
        } else {
            " AND t.resource_type = ANY (ARRAY(SELECT DISTINCT rtype FROM m))"
        }
    )
}

/// One-node form, before the upsert that re-points them: the persons whose resources in the
/// chunk ({temp}) are now sent about another patient record, logged in
/// `edw.resource_move` for the incremental measure. $1 source. Each row is an index
/// probe (`OFFSET 0` keeps the planner from a scan of the table per chunk).
pub(super) fn moved_from_sql(table: &str, temp: &str, extra: &str) -> String {
    format!(
        "INSERT INTO edw.resource_move (person_id)
         SELECT DISTINCT o.person_id FROM {temp} m
         CROSS JOIN LATERAL (SELECT sp.person_id FROM {table} t
                             JOIN edw.source_patient sp ON sp.id = t.source_patient_id
                             WHERE t.source = $1 AND t.source_id = m.rid {extra}
                               AND sp.source_id IS DISTINCT FROM m.pref AND sp.person_id IS NOT NULL
                             OFFSET 0) o"
    )
}

/// The value at a path of object keys and array indexes ("0").
pub(super) fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut v = v;
    for p in path {
        v = match v {
            Value::Object(m) => m.get(*p)?,
            Value::Array(a) => a.get(p.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(v)
}

/// PostgreSQL's `->>`: strings as they are, other scalars and structures as JSON text.
pub(super) fn str_at(v: &Value, path: &[&str]) -> Option<String> {
    match at(v, path)? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// A JSON number (only numbers: like `edw.jnum`).
fn num_at(v: &Value, path: &[&str]) -> Option<String> {
    match at(v, path)? {
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// FHIR date or dateTime (possibly partial) as a timestamptz literal, UTC when no zone
/// (like `edw.fhir_ts`). Invalid text is a reason to quarantine the line.
fn ts_at(v: &Value, path: &[&str]) -> Result<Option<String>, String> {
    let Some(s) = str_at(v, path) else {
        return Ok(None);
    };
    fhir_ts(&s)
        .map(Some)
        .ok_or_else(|| format!("{}: not a FHIR date or dateTime", path.join(".")))
}

fn fhir_ts(s: &str) -> Option<String> {
    match s.len() {
        4 | 7 | 10 => {
            check_date(s).ok()?;
            Some(match s.len() {
                4 => format!("{s}-01-01T00:00:00Z"),
                7 => format!("{s}-01T00:00:00Z"),
                _ => format!("{s}T00:00:00Z"),
            })
        }
        _ => check_datetime(s).ok().map(|_| s.to_string()),
    }
}

/// Ids of a Group's `member[].entity` references to a Patient (others are not
/// members of a panel); nothing when `member` is not an array.
pub(crate) fn group_member_patients(group: &Value) -> Vec<String> {
    let Some(ms) = group.get("member").and_then(Value::as_array) else {
        return Vec::new();
    };
    ms.iter()
        .filter_map(|m| m.get("entity")?.get("reference")?.as_str())
        .filter(|r| r.starts_with("Patient/"))
        .filter_map(|r| reference_id(Some(r.to_string())))
        .collect()
}

/// The id part of a reference (like `edw.ref_id`): "Patient/1", "urn:uuid:1", an
/// absolute URL, with or without "/_history/n".
pub(super) fn reference_id(r: Option<String>) -> Option<String> {
    let r = r?;
    if let Some(u) = r.strip_prefix("urn:uuid:") {
        return Some(u.to_string());
    }
    let r = match r.find("/_history/") {
        Some(i) => &r[..i],
        None => &r[..],
    };
    Some(r.rsplit('/').next().unwrap_or("").to_string())
}

fn coding(v: &Value, concept: &[&str], out: &mut Vec<Option<String>>) {
    let mut p: Vec<&str> = concept.to_vec();
    p.extend(["coding", "0", "system"]);
    out.push(str_at(v, &p));
    *p.last_mut().expect("path") = "code";
    out.push(str_at(v, &p));
    *p.last_mut().expect("path") = "display";
    out.push(str_at(v, &p));
}

fn first_of(v: &Value, a: &[&str], b: &[&str]) -> Option<String> {
    str_at(v, a).or_else(|| str_at(v, b))
}

fn ts_first(v: &Value, a: &[&str], b: &[&str]) -> Result<Option<String>, String> {
    match ts_at(v, a)? {
        Some(t) => Ok(Some(t)),
        None => ts_at(v, b),
    }
}

pub(super) static SPECS: &[TypedSpec] = &[
    TypedSpec {
        rtype: "Coverage",
        table: "coverage",
        patient_path: "beneficiary",
        cols: &[
            ("status", Ty::Text),
            ("type_code", Ty::Text),
            ("payor", Ty::Text),
            ("period_start", Ty::Ts),
            ("period_end", Ty::Ts),
        ],
        lookups: &[],
        extract: |b, o| {
            o.push(str_at(b, &["status"]));
            o.push(str_at(b, &["type", "coding", "0", "code"]));
            o.push(
                str_at(b, &["payor", "0", "display"])
                    .or_else(|| reference_id(str_at(b, &["payor", "0", "reference"]))),
            );
            o.push(ts_at(b, &["period", "start"])?);
            o.push(ts_at(b, &["period", "end"])?);
            Ok(())
        },
    },
    TypedSpec {
        rtype: "Encounter",
        table: "encounter",
        patient_path: "subject",
        cols: &[
            ("status", Ty::Text),
            ("class_code", Ty::Text),
            ("type_system", Ty::Text),
            ("type_code", Ty::Text),
            ("type_display", Ty::Text),
            ("period_start", Ty::Ts),
            ("period_end", Ty::Ts),
            ("practitioner_ref", Ty::Text),
        ],
        lookups: &[
            ("practitioner_id", "practitioner_ref", "practitioner"),
            ("organization_id", "organization_ref", "organization"),
        ],
        extract: |b, o| {
            o.push(str_at(b, &["status"]));
            o.push(str_at(b, &["class", "code"]));
            coding(b, &["type", "0"], o);
            o.push(ts_at(b, &["period", "start"])?);
            o.push(ts_at(b, &["period", "end"])?);
            o.push(reference_id(str_at(
                b,
                &["participant", "0", "individual", "reference"],
            )));
            o.push(reference_id(str_at(b, &["serviceProvider", "reference"])));
            Ok(())
        },
    },
    TypedSpec {
        rtype: "Condition",
        table: "condition",
        patient_path: "subject",
        cols: &[
            ("encounter_ref", Ty::Text),
            ("clinical_status", Ty::Text),
            ("verification_status", Ty::Text),
            ("category", Ty::Text),
            ("code_system", Ty::Text),
            ("code", Ty::Text),
            ("display", Ty::Text),
            ("onset", Ty::Ts),
            ("abatement", Ty::Ts),
            ("recorded_date", Ty::Ts),
        ],
        lookups: &[],
        extract: |b, o| {
            o.push(reference_id(str_at(b, &["encounter", "reference"])));
            o.push(str_at(b, &["clinicalStatus", "coding", "0", "code"]));
            o.push(str_at(b, &["verificationStatus", "coding", "0", "code"]));
            o.push(str_at(b, &["category", "0", "coding", "0", "code"]));
            coding(b, &["code"], o);
            o.push(ts_at(b, &["onsetDateTime"])?);
            o.push(ts_at(b, &["abatementDateTime"])?);
            o.push(ts_at(b, &["recordedDate"])?);
            Ok(())
        },
    },
    TypedSpec {
        rtype: "Observation",
        table: "observation",
        patient_path: "subject",
        cols: &[
            ("encounter_ref", Ty::Text),
            ("status", Ty::Text),
            ("category", Ty::Text),
            ("code_system", Ty::Text),
            ("code", Ty::Text),
            ("display", Ty::Text),
            ("effective", Ty::Ts),
            ("value_num", Ty::Num),
            ("value_unit", Ty::Text),
            ("value_code_system", Ty::Text),
            ("value_code", Ty::Text),
            ("value_string", Ty::Text),
            ("ref_low", Ty::Num),
            ("ref_high", Ty::Num),
            ("interpretation", Ty::Text),
        ],
        lookups: &[],
        extract: |b, o| {
            o.push(reference_id(str_at(b, &["encounter", "reference"])));
            o.push(str_at(b, &["status"]));
            o.push(str_at(b, &["category", "0", "coding", "0", "code"]));
            coding(b, &["code"], o);
            o.push(ts_first(
                b,
                &["effectiveDateTime"],
                &["effectivePeriod", "start"],
            )?);
            o.push(num_at(b, &["valueQuantity", "value"]));
            o.push(first_of(
                b,
                &["valueQuantity", "unit"],
                &["valueQuantity", "code"],
            ));
            o.push(str_at(
                b,
                &["valueCodeableConcept", "coding", "0", "system"],
            ));
            o.push(str_at(b, &["valueCodeableConcept", "coding", "0", "code"]));
            o.push(str_at(b, &["valueString"]));
            o.push(num_at(b, &["referenceRange", "0", "low", "value"]));
            o.push(num_at(b, &["referenceRange", "0", "high", "value"]));
            o.push(str_at(b, &["interpretation", "0", "coding", "0", "code"]));
            Ok(())
        },
    },
    TypedSpec {
        rtype: "Procedure",
        table: "procedure",
        patient_path: "subject",
        cols: &[
            ("encounter_ref", Ty::Text),
            ("status", Ty::Text),
            ("code_system", Ty::Text),
            ("code", Ty::Text),
            ("display", Ty::Text),
            ("performed_start", Ty::Ts),
            ("performed_end", Ty::Ts),
        ],
        lookups: &[],
        extract: |b, o| {
            o.push(reference_id(str_at(b, &["encounter", "reference"])));
            o.push(str_at(b, &["status"]));
            coding(b, &["code"], o);
            o.push(ts_first(
                b,
                &["performedDateTime"],
                &["performedPeriod", "start"],
            )?);
            o.push(ts_at(b, &["performedPeriod", "end"])?);
            Ok(())
        },
    },
    TypedSpec {
        rtype: "MedicationRequest",
        table: "medication_request",
        patient_path: "subject",
        cols: &[
            ("status", Ty::Text),
            ("intent", Ty::Text),
            ("code_system", Ty::Text),
            ("code", Ty::Text),
            ("display", Ty::Text),
            ("authored_on", Ty::Ts),
        ],
        lookups: &[],
        extract: |b, o| {
            o.push(str_at(b, &["status"]));
            o.push(str_at(b, &["intent"]));
            coding(b, &["medicationCodeableConcept"], o);
            o.push(ts_at(b, &["authoredOn"])?);
            Ok(())
        },
    },
    TypedSpec {
        rtype: "Immunization",
        table: "immunization",
        patient_path: "patient",
        cols: &[
            ("status", Ty::Text),
            ("code_system", Ty::Text),
            ("code", Ty::Text),
            ("display", Ty::Text),
            ("occurrence", Ty::Ts),
        ],
        lookups: &[],
        extract: |b, o| {
            o.push(str_at(b, &["status"]));
            coding(b, &["vaccineCode"], o);
            o.push(ts_at(b, &["occurrenceDateTime"])?);
            Ok(())
        },
    },
];

pub(super) fn spec(rtype: &str) -> Option<&'static TypedSpec> {
    SPECS.iter().find(|s| s.rtype == rtype)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_typed_spec_per_clinical_table() {
        let mut tables: Vec<&str> = SPECS.iter().map(|s| s.table).collect();
        let mut clinical = crate::CLINICAL_TABLES.to_vec();
        tables.sort();
        clinical.sort();
        assert_eq!(tables, clinical);
    }

    #[test]
    fn references_and_dates_like_the_sql_helpers() {
        let r = |s: &str| reference_id(Some(s.to_string())).unwrap();
        assert_eq!(r("Patient/p1"), "p1");
        assert_eq!(r("urn:uuid:abc"), "abc");
        assert_eq!(r("https://x.org/fhir/Patient/p2/_history/3"), "p2");
        assert_eq!(fhir_ts("2024").unwrap(), "2024-01-01T00:00:00Z");
        assert_eq!(fhir_ts("2024-03").unwrap(), "2024-03-01T00:00:00Z");
        assert_eq!(fhir_ts("2024-03-05").unwrap(), "2024-03-05T00:00:00Z");
        assert_eq!(
            fhir_ts("2024-03-05T10:00:00+02:00").unwrap(),
            "2024-03-05T10:00:00+02:00"
        );
        assert!(fhir_ts("2024-02-30").is_none());
        assert!(fhir_ts("yesterday").is_none());
    }

    #[test]
    fn observation_columns() {
        let b: Value = serde_json::from_str(
            r#"{"resourceType":"Observation","id":"o1","status":"final",
                "code":{"coding":[{"system":"http://loinc.org","code":"4548-4","display":"HbA1c"}]},
                "subject":{"reference":"Patient/p1"},"encounter":{"reference":"Encounter/e1"},
                "effectivePeriod":{"start":"2025-02-01"},
                "valueQuantity":{"value":7.25,"code":"%"},
                "referenceRange":[{"high":{"value":5.7}}]}"#,
        )
        .unwrap();
        let spec = spec("Observation").unwrap();
        let mut out = Vec::new();
        spec.copy_row(3, "o1", "h", &b, &mut out).unwrap();
        let row = String::from_utf8(out).unwrap();
        assert_eq!(
            row,
            "3\to1\th\tp1\te1\tfinal\t\\N\thttp://loinc.org\t4548-4\tHbA1c\t2025-02-01T00:00:00Z\t7.25\t%\t\\N\t\\N\t\\N\t\\N\t5.7\t\\N\n"
        );
        let bad: Value = serde_json::from_str(
            r#"{"status":"final","subject":{"reference":"Patient/p1"},"effectivePeriod":{"start":"soon"}}"#,
        )
        .unwrap();
        let e = spec
            .copy_row(4, "o2", "h", &bad, &mut Vec::new())
            .unwrap_err();
        assert_eq!(e, "effectivePeriod.start: not a FHIR date or dateTime");
    }
}
