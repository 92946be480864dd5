//! Short human-readable renderings of CQL values (for explanations such as care-gap evidence),
//! and the FHIR resources a value holds. Generic by value type; knows no measure.

use crate::fhir::{Node, J};
use crate::value::{Quantity, Value};

/// How many list items [`short`] shows before summarising the rest.
const LIST_ITEMS: usize = 3;

/// A short rendering of `v`, at most `max` characters (cut with `…`):
/// Boolean → `yes`/`no`; null or an empty list → `none`; Quantity → value and unit;
/// Date/DateTime → ISO date; Interval → `start – end`; a FHIR resource → its type, its most
/// telling code, its value and its clinically relevant date (see [`resource`]); a list → its
/// count and first items (resources most recent first).
pub fn short(v: &Value, max: usize) -> String {
    clip(render(v, max), max)
}

fn render(v: &Value, max: usize) -> String {
    match v {
        Value::Null => "none".into(),
        Value::Boolean(b) => if *b { "yes" } else { "no" }.into(),
        Value::Integer(i) => i.to_string(),
        Value::Long(i) => i.to_string(),
        Value::Decimal(d) => d.normalize().to_string(),
        Value::String(s) => s.to_string(),
        Value::Date(_) | Value::DateTime(_) => iso_date(v).unwrap_or_default(),
        Value::Time(t) => t.to_string(),
        Value::Quantity(q) => quantity(q),
        Value::Ratio(r) => format!("{} : {}", quantity(&r.0), quantity(&r.1)),
        Value::Code(c) => c.display.as_deref().unwrap_or(&c.code).to_string(),
        Value::Concept(c) => c
            .display
            .as_deref()
            .or_else(|| {
                c.codes
                    .iter()
                    .find_map(|x| x.display.as_deref())
                    .or_else(|| c.codes.first().map(|x| &*x.code))
            })
            .unwrap_or("none")
            .to_string(),
        Value::Interval(i) => {
            let bound = |x: &Value| {
                if x.is_null() {
                    "…".to_string()
                } else {
                    render(x, max / 2)
                }
            };
            format!("{} – {}", bound(&i.low), bound(&i.high))
        }
        Value::List(l) => list(l, max),
        Value::Tuple(t) => {
            let mut out = String::new();
            for (k, x) in t.iter() {
                if !out.is_empty() {
                    out.push_str(", ");
                }
                out.push_str(k);
                out.push_str(": ");
                out.push_str(&clip(render(x, max), max / 2));
                if out.chars().count() > max {
                    break;
                }
            }
            out
        }
        Value::Resource(n) => match n.resource_type() {
            Some(_) => resource_within(n, max),
            None => node(n),
        },
        Value::ValueSet(vs) => vs.url.to_string(),
    }
}

fn list(l: &[Value], max: usize) -> String {
    let items: Vec<&Value> = l.iter().filter(|x| !x.is_null()).collect();
    if items.is_empty() {
        return "none".into();
    }
    let mut shown: Vec<&Value> = items.clone();
    if shown
        .iter()
        .all(|x| matches!(x, Value::Resource(n) if n.resource_type().is_some()))
    {
        // most recent first (stable for undated resources)
        shown.sort_by_cached_key(|x| match x {
            Value::Resource(n) => std::cmp::Reverse(clinical_date(&n.j).unwrap_or_default()),
            _ => std::cmp::Reverse(String::new()),
        });
    }
    let n = items.len();
    let mut out = format!("{n} {}: ", if n == 1 { "item" } else { "items" });
    let mut count = 0;
    for x in shown.iter().take(LIST_ITEMS) {
        // the first item gets all the room left (cut if need be); later ones only when they fit
        let used = out.chars().count() + if count > 0 { 2 } else { 0 };
        let reserve = if count + 1 < n { 12 } else { 0 };
        let room = max.saturating_sub(used + reserve).max(20);
        let s = render(x, room);
        let s = if count == 0 {
            clip(s, room)
        } else if s.chars().count() > room {
            break;
        } else {
            s
        };
        if count > 0 {
            out.push_str("; ");
        }
        out.push_str(&s);
        count += 1;
    }
    if count < n {
        out.push_str(&format!("; +{} more", n - count));
    }
    out
}

/// The ISO date (`YYYY-MM-DD`, or coarser when the value is) of a Date or DateTime.
pub fn iso_date(v: &Value) -> Option<String> {
    match v {
        Value::Date(d) => Some(d.to_string()),
        Value::DateTime(d) => Some(d.date().to_string()),
        _ => None,
    }
}

fn quantity(q: &Quantity) -> String {
    let v = q.value.normalize().to_string();
    if q.unit.is_empty() || &*q.unit == "1" {
        v
    } else {
        format!("{v} {}", q.unit)
    }
}

/// Cuts `s` to at most `max` characters, ending with `…` when cut.
pub fn clip(s: String, max: usize) -> String {
    if s.chars().count() <= max {
        return s;
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn str_of(j: Option<&J>) -> Option<&str> {
    j.and_then(J::str)
}

fn num_text(s: &str) -> String {
    match s.parse::<rust_decimal::Decimal>() {
        Ok(d) => d.normalize().to_string(),
        Err(_) => s.to_string(),
    }
}

/// The text of a CodeableConcept (its `text`, else the first coding display, else the first
/// code), a Coding, or the first of a list of them.
fn concept_text(j: &J) -> Option<String> {
    match j {
        J::Arr(a) => a.iter().find_map(concept_text),
        J::Obj(_) => {
            if let Some(t) = str_of(j.get("text")) {
                return Some(t.to_string());
            }
            if let Some(J::Arr(codings)) = j.get("coding") {
                return codings
                    .iter()
                    .find_map(|c| str_of(c.get("display")))
                    .or_else(|| codings.iter().find_map(|c| str_of(c.get("code"))))
                    .map(str::to_string);
            }
            str_of(j.get("display"))
                .or_else(|| str_of(j.get("code")))
                .map(str::to_string)
        }
        J::Str(s) => Some(s.to_string()),
        _ => None,
    }
}

fn json_quantity(j: &J) -> Option<(String, Option<String>)> {
    let v = match j.get("value")? {
        J::Num(n) => num_text(n),
        _ => return None,
    };
    let unit = str_of(j.get("code"))
        .or_else(|| str_of(j.get("unit")))
        .filter(|u| !u.is_empty() && *u != "1")
        .map(str::to_string);
    Some((v, unit))
}

fn join_quantity((v, u): &(String, Option<String>)) -> String {
    match u {
        Some(u) => format!("{v} {u}"),
        None => v.clone(),
    }
}

/// A resource's value: `value[x]`, else its components' quantities (`152/96 mm[Hg]` when they
/// share a unit).
fn resource_value(j: &J) -> Option<String> {
    if let J::Obj(o) = j {
        for (k, v) in o.iter() {
            let Some(suffix) = k.strip_prefix("value") else {
                continue;
            };
            let text = match (suffix, v) {
                ("Quantity", _) => json_quantity(v).map(|q| join_quantity(&q)),
                ("CodeableConcept" | "Coding", _) => concept_text(v),
                ("Boolean", J::Bool(b)) => Some(if *b { "yes" } else { "no" }.to_string()),
                ("Integer" | "Decimal", J::Num(n)) => Some(num_text(n)),
                ("DateTime" | "Date" | "Instant", J::Str(s)) => Some(date_only(s).to_string()),
                ("String", J::Str(s)) => Some(s.to_string()),
                ("Period", _) => period_text(v),
                _ => None,
            };
            if text.is_some() {
                return text;
            }
        }
    }
    let comps: Vec<(String, Option<String>)> = match j.get("component") {
        Some(J::Arr(a)) => a
            .iter()
            .filter_map(|c| c.get("valueQuantity").and_then(json_quantity))
            .collect(),
        _ => Vec::new(),
    };
    match comps.as_slice() {
        [] => None,
        [first, ..] if comps.iter().all(|c| c.1 == first.1) => {
            let vals: Vec<&str> = comps.iter().map(|c| c.0.as_str()).collect();
            Some(join_quantity(&(vals.join("/"), first.1.clone())))
        }
        _ => Some(
            comps
                .iter()
                .map(join_quantity)
                .collect::<Vec<_>>()
                .join(", "),
        ),
    }
}

fn date_only(s: &str) -> &str {
    s.split('T').next().unwrap_or(s)
}

fn period_text(j: &J) -> Option<String> {
    let s = str_of(j.get("start")).map(date_only);
    let e = str_of(j.get("end")).map(date_only);
    match (s, e) {
        (None, None) => None,
        (s, e) => Some(format!("{} – {}", s.unwrap_or("…"), e.unwrap_or("…"))),
    }
}

/// The clinically relevant date of a resource (date part only): `effective[x]`,
/// `performed[x]`, `onset[x]`, `authoredOn`, `period` start, then `occurrence[x]`,
/// `recordedDate`, `issued`, `date`.
fn clinical_date(j: &J) -> Option<String> {
    let J::Obj(o) = j else { return None };
    let choice = |prefix: &str| -> Option<String> {
        o.iter().find_map(|(k, v)| {
            let rest = k.strip_prefix(prefix)?;
            if !rest.starts_with(|c: char| c.is_ascii_uppercase()) {
                return None;
            }
            match v {
                J::Str(s) => Some(date_only(s).to_string()),
                J::Obj(_) => str_of(v.get("start"))
                    .or_else(|| str_of(v.get("end")))
                    .map(|s| date_only(s).to_string()),
                _ => None,
            }
        })
    };
    let field = |k: &str| str_of(j.get(k)).map(|s| date_only(s).to_string());
    choice("effective")
        .or_else(|| choice("performed"))
        .or_else(|| choice("onset"))
        .or_else(|| field("authoredOn"))
        .or_else(|| {
            j.get("period").and_then(|p| {
                str_of(p.get("start"))
                    .or_else(|| str_of(p.get("end")))
                    .map(|s| date_only(s).to_string())
            })
        })
        .or_else(|| choice("occurrence"))
        .or_else(|| field("recordedDate"))
        .or_else(|| field("issued"))
        .or_else(|| field("date"))
}

/// A short description of a FHIR resource: `Type code-display: value on date` (parts left out
/// when absent), e.g. `Observation Blood pressure panel: 152/96 mm[Hg] on 2025-06-03`.
pub fn resource(n: &Node) -> String {
    resource_within(n, 160)
}

/// [`resource`] in at most about `max` characters: the code display is shortened first, so
/// that the value and the date stay whole.
fn resource_within(n: &Node, max: usize) -> String {
    let j = &n.j;
    let ty = n.resource_type().unwrap_or("Resource");
    let code = [
        "code",
        "vaccineCode",
        "medicationCodeableConcept",
        "type",
        "event",
    ]
    .iter()
    .find_map(|k| j.get(k).and_then(concept_text));
    let value = resource_value(j).map(|v| format!(": {}", clip(v, 40)));
    let date = clinical_date(j).map(|d| format!(" on {d}"));
    let fixed = ty.chars().count()
        + value.as_ref().map_or(0, |v| v.chars().count())
        + date.as_ref().map_or(0, |d| d.chars().count());
    let mut out = ty.to_string();
    if let Some(c) = code {
        out.push(' ');
        out.push_str(&clip(c, max.saturating_sub(fixed + 1).clamp(12, 60)));
    }
    out.push_str(value.as_deref().unwrap_or(""));
    out.push_str(date.as_deref().unwrap_or(""));
    out
}

/// A FHIR element (resource or not).
fn node(n: &Node) -> String {
    if n.resource_type().is_some() {
        return resource(n);
    }
    let j = &n.j;
    match j {
        J::Null => "none".into(),
        J::Bool(b) => if *b { "yes" } else { "no" }.into(),
        J::Num(s) => num_text(s),
        J::Str(s) => match n.ty.as_deref() {
            Some("dateTime" | "date" | "instant") => date_only(s).to_string(),
            _ => s.to_string(),
        },
        J::Arr(a) => a
            .iter()
            .map(|x| node(&Node::new(x.clone(), n.ty.clone())))
            .collect::<Vec<_>>()
            .join(", "),
        J::Obj(_) => {
            if j.get("coding").is_some() || j.get("text").is_some() {
                return concept_text(j).unwrap_or_default();
            }
            if let Some(q) = json_quantity(j) {
                return join_quantity(&q);
            }
            if let Some(p) = period_text(j) {
                return p;
            }
            if let Some(r) = str_of(j.get("reference")) {
                return r.to_string();
            }
            if let Some(c) = concept_text(j) {
                return c;
            }
            String::new()
        }
    }
}

/// The `(resourceType, id)` of every FHIR resource in `v` (itself, list items, tuple elements,
/// recursively; not resources nested inside resources' JSON), in order, without repeats.
pub fn resource_ids(v: &Value) -> Vec<(String, String)> {
    fn walk<'v>(v: &'v Value, out: &mut Vec<(&'v str, &'v str)>) {
        match v {
            Value::Resource(n) => {
                if let (Some(t), Some(id)) = (n.resource_type(), str_of(n.j.get("id"))) {
                    out.push((t, id));
                }
            }
            Value::List(l) => l.iter().for_each(|x| walk(x, out)),
            Value::Tuple(t) => t.iter().for_each(|(_, x)| walk(x, out)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    walk(v, &mut found);
    let mut seen = std::collections::HashSet::with_capacity(found.len());
    found
        .into_iter()
        .filter(|k| seen.insert(*k))
        .map(|(t, id)| (t.to_string(), id.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn res(j: serde_json::Value) -> Value {
        Value::Resource(Node::new(J::from_json(&j), None))
    }

    #[test]
    fn scalars() {
        assert_eq!(short(&Value::Boolean(true), 80), "yes");
        assert_eq!(short(&Value::Boolean(false), 80), "no");
        assert_eq!(short(&Value::Null, 80), "none");
        assert_eq!(short(&Value::list(vec![]), 80), "none");
        let q = Value::Quantity(Quantity {
            value: "152.0".parse().unwrap(),
            unit: "mm[Hg]".into(),
        });
        assert_eq!(short(&q, 80), "152 mm[Hg]");
        let d =
            Value::DateTime(crate::datetime::parse_datetime("2025-06-03T10:00:00Z", 0).unwrap());
        assert_eq!(short(&d, 80), "2025-06-03");
        let i = Value::interval(d.clone(), Value::Null, true, true);
        assert_eq!(short(&i, 80), "2025-06-03 – …");
        assert_eq!(clip("abcdef".into(), 4), "abc…");
    }

    #[test]
    fn resources_and_lists() {
        let blood_pressure = |id: &str, s: i32, d: i32, day: &str| {
            res(json!({"resourceType":"Observation","id":id,
                "code":{"coding":[{"code":"85354-9","display":"Blood pressure panel"}]},
                "effectiveDateTime": format!("{day}T08:00:00Z"),
                "component":[
                    {"code":{"text":"sys"},"valueQuantity":{"value":s,"unit":"mmHg","code":"mm[Hg]"}},
                    {"code":{"text":"dia"},"valueQuantity":{"value":d,"unit":"mmHg","code":"mm[Hg]"}}]}))
        };
        assert_eq!(
            short(&blood_pressure("o1", 152, 96, "2025-06-03"), 160),
            "Observation Blood pressure panel: 152/96 mm[Hg] on 2025-06-03"
        );
        let l = Value::list(vec![
            blood_pressure("o1", 130, 80, "2025-02-01"),
            blood_pressure("o2", 152, 96, "2025-06-03"),
            blood_pressure("o3", 120, 70, "2025-01-01"),
            blood_pressure("o4", 125, 75, "2024-01-01"),
        ]);
        let s = short(&l, 160);
        assert!(
            s.starts_with("4 items: Observation Blood pressure panel: 152/96"),
            "{s}"
        );
        assert!(s.chars().count() <= 160, "{s}");
        assert!(s.contains("more"), "{s}");
        let twice = Value::list(vec![l.clone(), l.clone()]);
        let ids = resource_ids(&twice);
        assert_eq!(ids.len(), 4);
        assert_eq!(ids[0], ("Observation".to_string(), "o1".to_string()));
        let enc = res(json!({"resourceType":"Encounter","id":"e",
            "type":[{"coding":[{"code":"x","display":"Office visit"}]}],
            "period":{"start":"2025-03-01T10:00:00Z"}}));
        assert_eq!(short(&enc, 160), "Encounter Office visit on 2025-03-01");
    }
}
