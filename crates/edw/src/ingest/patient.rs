//! Patients, extracted in Rust: the source_patient row and the demographic history
//! rows (identifiers, names, addresses, telecom) are COPYed into temp tables keyed by
//! line number. Done in SQL from jsonb (paths, array expansion, a regex per
//! reference) a patient cost about 80 µs, ten times a clinical line.

use super::copy_row as row;
use super::typed::{reference_id, str_at};
use serde_json::Value;

/// (temp table, columns) in the order of [`Rows`]' buffers.
pub(super) const TABLES: [(&str, &str); 5] = [
    (
        "mt_patient",
        "line_no bigint NOT NULL, rid text NOT NULL, hash text NOT NULL, org text, \
         birth_date date, sex text, deceased boolean, active boolean",
    ),
    (
        "mt_patient_identifier",
        "line_no bigint NOT NULL, sys text NOT NULL, val text NOT NULL, tc text",
    ),
    (
        "mt_patient_name",
        "line_no bigint NOT NULL, use text NOT NULL, family text NOT NULL, given text NOT NULL",
    ),
    (
        "mt_patient_address",
        "line_no bigint NOT NULL, line text NOT NULL, city text NOT NULL, state text NOT NULL, \
         postal text NOT NULL",
    ),
    (
        "mt_patient_telecom",
        "line_no bigint NOT NULL, sys text NOT NULL, val text NOT NULL",
    ),
];

/// COPY text rows for [`TABLES`], one buffer per table.
#[derive(Default)]
pub(super) struct Rows(pub [Vec<u8>; 5]);

impl Rows {
    pub fn is_empty(&self) -> bool {
        self.0[0].is_empty()
    }

    pub fn append(&mut self, other: &mut Rows) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter_mut()) {
            a.append(b);
        }
    }

    /// One valid Patient line (FHIR checks already passed).
    pub fn extract(line_no: i64, rid: &str, hash: &str, b: &Value) -> Rows {
        let mut r = Rows::default();
        let s = |p: &[&str]| str_at(b, p);
        let bool_at = |k: &str| b.get(k).and_then(Value::as_bool).map(pg_bool);
        // Like edw.fhir_date: a partial date is its first day.
        let birth = s(&["birthDate"]).map(|d| match d.len() {
            4 => format!("{d}-01-01"),
            7 => format!("{d}-01"),
            _ => d.chars().take(10).collect(),
        });
        let deceased = if b.get("deceasedDateTime").is_some() {
            Some("t")
        } else {
            bool_at("deceasedBoolean")
        };
        let org = reference_id(s(&["managingOrganization", "reference"]));
        row(
            &mut r.0[0],
            line_no,
            [
                Some(rid),
                Some(hash),
                org.as_deref(),
                birth.as_deref(),
                s(&["gender"]).as_deref(),
                deceased,
                bool_at("active"),
            ],
        );
        // An identifier sent twice keeps the type of its first occurrence.
        let mut seen: Vec<(String, String)> = Vec::new();
        for x in elements(b, "identifier") {
            if let Some(val) = str_at(x, &["value"]) {
                let sys = str_at(x, &["system"]).unwrap_or_default();
                if seen.iter().any(|(s, v)| *s == sys && *v == val) {
                    continue;
                }
                seen.push((sys.clone(), val.clone()));
                let tc = str_at(x, &["type", "coding", "0", "code"]);
                row(
                    &mut r.0[1],
                    line_no,
                    [Some(sys.as_str()), Some(val.as_str()), tc.as_deref()],
                );
            }
        }
        for x in elements(b, "name") {
            let use_ = str_at(x, &["use"]).unwrap_or_default();
            let family = str_at(x, &["family"]).unwrap_or_default();
            let given = join_strings(x.get("given"));
            row(
                &mut r.0[2],
                line_no,
                [
                    Some(use_.as_str()),
                    Some(family.as_str()),
                    Some(given.as_str()),
                ],
            );
        }
        for x in elements(b, "address") {
            let line = join_strings(x.get("line"));
            let [city, state, postal] =
                ["city", "state", "postalCode"].map(|k| str_at(x, &[k]).unwrap_or_default());
            row(
                &mut r.0[3],
                line_no,
                [
                    Some(line.as_str()),
                    Some(city.as_str()),
                    Some(state.as_str()),
                    Some(postal.as_str()),
                ],
            );
        }
        for x in elements(b, "telecom") {
            if let Some(val) = str_at(x, &["value"]) {
                let sys = str_at(x, &["system"]).unwrap_or_default();
                row(
                    &mut r.0[4],
                    line_no,
                    [Some(sys.as_str()), Some(val.as_str())],
                );
            }
        }
        r
    }
}

fn pg_bool(b: bool) -> &'static str {
    if b {
        "t"
    } else {
        "f"
    }
}

/// The elements of an array member (none when absent or not an array: edw.jarr).
fn elements<'a>(b: &'a Value, key: &str) -> &'a [Value] {
    b.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// Like edw.jjoin: the array's non-null elements as text, joined by a space.
fn join_strings(v: Option<&Value>) -> String {
    let Some(a) = v.and_then(Value::as_array) else {
        return String::new();
    };
    let parts: Vec<String> = a
        .iter()
        .filter_map(|e| match e {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        })
        .collect();
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(rows: &[u8]) -> Vec<String> {
        String::from_utf8(rows.to_vec())
            .unwrap()
            .lines()
            .map(String::from)
            .collect()
    }

    #[test]
    fn patient_rows_follow_the_sql_helpers() {
        let b: Value = serde_json::from_str(
            r#"{"resourceType":"Patient","id":"p1","birthDate":"1980-05","deceasedDateTime":null,
                "active":"yes","managingOrganization":{"reference":"Organization/o1/_history/2"},
                "identifier":[{"system":"urn:a","value":"1","type":{"coding":[{"code":"MR"}]}},
                              {"system":"urn:a","value":"1","type":{"coding":[{"code":"SS"}]}},
                              {"value":"2"},{"system":"urn:b"}],
                "name":[{"use":"official","family":"Doe","given":["Ann",null,"B\tC"]},{"given":"x"}],
                "address":[{"line":["1 Main St","Apt 2"],"city":"Springfield","postalCode":"01101"}],
                "telecom":[{"system":"phone","value":"555"},{"system":"email"}]}"#,
        )
        .unwrap();
        let r = Rows::extract(7, "p1", "h", &b);
        assert_eq!(text(&r.0[0]), ["7\tp1\th\to1\t1980-05-01\t\\N\tt\t\\N"]);
        assert_eq!(text(&r.0[1]), ["7\turn:a\t1\tMR", "7\t\t2\t\\N"]);
        assert_eq!(text(&r.0[2]), ["7\tofficial\tDoe\tAnn B\\tC", "7\t\t\t"]);
        assert_eq!(text(&r.0[3]), ["7\t1 Main St Apt 2\tSpringfield\t\t01101"]);
        assert_eq!(text(&r.0[4]), ["7\tphone\t555"]);

        let b: Value = serde_json::from_str(
            r#"{"resourceType":"Patient","id":"p2","birthDate":"1970","deceasedBoolean":false,"name":{"family":"x"}}"#,
        )
        .unwrap();
        let r = Rows::extract(8, "p2", "h", &b);
        assert_eq!(text(&r.0[0]), ["8\tp2\th\t\\N\t1970-01-01\t\\N\tf\t\\N"]);
        assert!(r.0[1..].iter().all(Vec::is_empty));
    }
}
