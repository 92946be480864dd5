//! CQL runtime values.

use crate::datetime::{Date, DateTime, Time};
use crate::fhir::Node;
use rust_decimal::Decimal;
use std::cmp::Ordering;
use std::sync::Arc;

/// A CQL value. Cloning is cheap (reference counted payloads).
#[derive(Clone, Debug, Default)]
pub enum Value {
    #[default]
    Null,
    Boolean(bool),
    Integer(i32),
    Long(i64),
    Decimal(Decimal),
    String(Arc<str>),
    Date(Date),
    DateTime(DateTime),
    Time(Time),
    Quantity(Quantity),
    Ratio(Arc<(Quantity, Quantity)>),
    Code(Arc<Code>),
    Concept(Arc<Concept>),
    Interval(Arc<Interval>),
    List(Arc<Vec<Value>>),
    Tuple(Arc<Vec<(Arc<str>, Value)>>),
    /// Any FHIR element (a resource, a complex element or a primitive), as in the patient data.
    Resource(Node),
    /// A value set reference evaluated as a value (index into the prepared value sets).
    ValueSet(Arc<ValueSetData>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Quantity {
    pub value: Decimal,
    pub unit: Arc<str>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Code {
    pub code: Arc<str>,
    pub system: Option<Arc<str>>,
    pub version: Option<Arc<str>>,
    pub display: Option<Arc<str>>,
}

#[derive(Clone, Debug)]
pub struct Concept {
    pub codes: Vec<Code>,
    pub display: Option<Arc<str>>,
}

#[derive(Clone, Debug)]
pub struct Interval {
    pub low: Value,
    pub high: Value,
    pub low_closed: bool,
    pub high_closed: bool,
}

/// A prepared value set: its url and the (system, code) pairs of its expansion.
#[derive(Debug, Default)]
pub struct ValueSetData {
    pub url: Arc<str>,
    /// system -> codes
    pub codes: std::collections::HashMap<Arc<str>, std::collections::HashSet<Arc<str>>>,
    pub list: Vec<Code>,
}

impl ValueSetData {
    pub fn new(url: &str, list: Vec<Code>) -> ValueSetData {
        let mut codes: std::collections::HashMap<Arc<str>, std::collections::HashSet<Arc<str>>> =
            Default::default();
        for c in &list {
            if let Some(s) = &c.system {
                codes.entry(s.clone()).or_default().insert(c.code.clone());
            }
        }
        ValueSetData {
            url: Arc::from(url),
            codes,
            list,
        }
    }
    pub fn contains(&self, system: Option<&str>, code: &str) -> bool {
        match system {
            Some(s) => self.codes.get(s).is_some_and(|set| set.contains(code)),
            None => self.list.iter().any(|c| &*c.code == code),
        }
    }
}

impl Value {
    pub fn is_true(&self) -> bool {
        matches!(self, Value::Boolean(true))
    }
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
    pub fn str(s: &str) -> Value {
        Value::String(Arc::from(s))
    }
    pub fn list(v: Vec<Value>) -> Value {
        Value::List(Arc::new(v))
    }
    pub fn interval(low: Value, high: Value, low_closed: bool, high_closed: bool) -> Value {
        Value::Interval(Arc::new(Interval {
            low,
            high,
            low_closed,
            high_closed,
        }))
    }
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "Null",
            Value::Boolean(_) => "Boolean",
            Value::Integer(_) => "Integer",
            Value::Long(_) => "Long",
            Value::Decimal(_) => "Decimal",
            Value::String(_) => "String",
            Value::Date(_) => "Date",
            Value::DateTime(_) => "DateTime",
            Value::Time(_) => "Time",
            Value::Quantity(_) => "Quantity",
            Value::Ratio(_) => "Ratio",
            Value::Code(_) => "Code",
            Value::Concept(_) => "Concept",
            Value::Interval(_) => "Interval",
            Value::List(_) => "List",
            Value::Tuple(_) => "Tuple",
            Value::Resource(_) => "FHIR element",
            Value::ValueSet(_) => "ValueSet",
        }
    }

    /// JSON rendering (for reports and debugging).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Boolean(b) => json!(b),
            Value::Integer(i) => json!(i),
            Value::Long(i) => json!(i),
            Value::Decimal(d) => {
                let f: f64 = d.to_string().parse().unwrap_or(0.0);
                json!(f)
            }
            Value::String(s) => json!(&**s),
            Value::Date(d) => json!(d.to_string()),
            Value::DateTime(d) => json!(d.to_string()),
            Value::Time(t) => json!(t.to_string()),
            Value::Quantity(q) => {
                json!({"value": q.value.to_string().parse::<f64>().unwrap_or(0.0), "unit": &*q.unit})
            }
            Value::Ratio(r) => {
                json!({"numerator": Value::Quantity(r.0.clone()).to_json(), "denominator": Value::Quantity(r.1.clone()).to_json()})
            }
            Value::Code(c) => code_json(c),
            Value::Concept(c) => {
                json!({"codes": c.codes.iter().map(code_json).collect::<Vec<_>>(), "display": c.display.as_deref()})
            }
            Value::Interval(i) => {
                json!({"low": i.low.to_json(), "high": i.high.to_json(), "lowClosed": i.low_closed, "highClosed": i.high_closed})
            }
            Value::List(l) => serde_json::Value::Array(l.iter().map(|v| v.to_json()).collect()),
            Value::Tuple(t) => {
                let mut m = serde_json::Map::new();
                for (k, v) in t.iter() {
                    m.insert(k.to_string(), v.to_json());
                }
                serde_json::Value::Object(m)
            }
            Value::Resource(n) => n.to_json(),
            Value::ValueSet(v) => json!({"valueset": &*v.url}),
        }
    }
}

fn code_json(c: &Code) -> serde_json::Value {
    serde_json::json!({"code": &*c.code, "system": c.system.as_deref(), "version": c.version.as_deref(), "display": c.display.as_deref()})
}

// ---------------------------------------------------------------------------
// Equality, equivalence and ordering
// ---------------------------------------------------------------------------

/// Numeric view of Integer/Long/Decimal.
pub fn as_decimal(v: &Value) -> Option<Decimal> {
    match v {
        Value::Integer(i) => Some(Decimal::from(*i)),
        Value::Long(i) => Some(Decimal::from(*i)),
        Value::Decimal(d) => Some(*d),
        _ => None,
    }
}

/// CQL `=`: three-valued. `None` = null.
pub fn equal(a: &Value, b: &Value) -> Option<bool> {
    use Value::*;
    match (a, b) {
        (Null, _) | (_, Null) => None,
        (Boolean(x), Boolean(y)) => Some(x == y),
        (Integer(x), Integer(y)) => Some(x == y),
        (String(x), String(y)) => Some(x == y),
        (Integer(_) | Long(_) | Decimal(_), Integer(_) | Long(_) | Decimal(_)) => {
            Some(as_decimal(a)? == as_decimal(b)?)
        }
        (Date(x), Date(y)) => x.compare(y, None).map(|o| o == Ordering::Equal),
        (DateTime(x), DateTime(y)) => x.compare(y, None).map(|o| o == Ordering::Equal),
        (Date(x), DateTime(y)) => x
            .to_datetime()
            .compare(y, None)
            .map(|o| o == Ordering::Equal),
        (DateTime(x), Date(y)) => x
            .compare(&y.to_datetime(), None)
            .map(|o| o == Ordering::Equal),
        (Time(x), Time(y)) => x.compare(y, None).map(|o| o == Ordering::Equal),
        (Quantity(x), Quantity(y)) => {
            crate::units::compare_quantities(x, y).map(|o| o == Ordering::Equal)
        }
        (Ratio(x), Ratio(y)) => {
            let n = crate::units::compare_quantities(&x.0, &y.0).map(|o| o == Ordering::Equal);
            let d = crate::units::compare_quantities(&x.1, &y.1).map(|o| o == Ordering::Equal);
            and3(n, d)
        }
        (Code(x), Code(y)) => Some(
            x.code == y.code
                && x.system == y.system
                && x.version == y.version
                && x.display == y.display,
        ),
        (Concept(x), Concept(y)) => {
            if x.codes.len() != y.codes.len() {
                return Some(false);
            }
            let mut r = Some(true);
            for (c, d) in x.codes.iter().zip(y.codes.iter()) {
                r = and3(
                    r,
                    Some(c.code == d.code && c.system == d.system && c.version == d.version),
                );
            }
            and3(r, Some(x.display == y.display))
        }
        (Interval(x), Interval(y)) => crate::interval::interval_equal(x, y),
        (List(x), List(y)) => {
            if x.len() != y.len() {
                return Some(false);
            }
            let mut r = Some(true);
            for (p, q) in x.iter().zip(y.iter()) {
                match equal(p, q) {
                    Some(false) => return Some(false),
                    None => r = None,
                    _ => {}
                }
            }
            r
        }
        (Tuple(x), Tuple(y)) => {
            if x.len() != y.len() {
                return Some(false);
            }
            let mut r = Some(true);
            for (k, v) in x.iter() {
                let Some((_, w)) = y.iter().find(|(k2, _)| k2 == k) else {
                    return Some(false);
                };
                if v.is_null() && w.is_null() {
                    continue;
                }
                match equal(v, w) {
                    Some(false) => return Some(false),
                    None => r = None,
                    _ => {}
                }
            }
            r
        }
        (Resource(x), Resource(y)) => Some(x.json_eq(y)),
        _ => Some(false),
    }
}

fn and3(a: Option<bool>, b: Option<bool>) -> Option<bool> {
    match (a, b) {
        (Some(false), _) | (_, Some(false)) => Some(false),
        (Some(true), Some(true)) => Some(true),
        _ => None,
    }
}

/// CQL `~`: never null.
pub fn equivalent(a: &Value, b: &Value) -> bool {
    use Value::*;
    match (a, b) {
        (Null, Null) => true,
        (Null, _) | (_, Null) => false,
        (String(x), String(y)) => normalize_str(x) == normalize_str(y),
        (Integer(_) | Long(_) | Decimal(_), Integer(_) | Long(_) | Decimal(_)) => {
            match (a, b) {
                (Decimal(_), _) | (_, Decimal(_)) => {
                    let (x, y) = (
                        as_decimal(a).unwrap_or_default(),
                        as_decimal(b).unwrap_or_default(),
                    );
                    // equivalent at the precision of the least precise operand
                    let s = x.scale().min(y.scale());
                    x.round_dp(s) == y.round_dp(s)
                }
                _ => as_decimal(a) == as_decimal(b),
            }
        }
        (Date(x), Date(y)) => x.prec == y.prec && x.compare(y, None) == Some(Ordering::Equal),
        (DateTime(x), DateTime(y)) => {
            x.prec == y.prec && x.compare(y, None) == Some(Ordering::Equal)
        }
        (Time(x), Time(y)) => x.prec == y.prec && x.compare(y, None) == Some(Ordering::Equal),
        (Quantity(x), Quantity(y)) => {
            crate::units::compare_quantities(x, y) == Some(Ordering::Equal)
        }
        (Ratio(x), Ratio(y)) => {
            // equivalent ratios: same proportion
            match (
                crate::units::quantity_div(&x.0, &x.1),
                crate::units::quantity_div(&y.0, &y.1),
            ) {
                (Some(p), Some(q)) => {
                    crate::units::compare_quantities(&p, &q) == Some(Ordering::Equal)
                }
                _ => false,
            }
        }
        (Code(x), Code(y)) => x.code == y.code && x.system == y.system,
        (Concept(x), Concept(y)) => x.codes.iter().any(|c| {
            y.codes
                .iter()
                .any(|d| c.code == d.code && c.system == d.system)
        }),
        (Code(x), Concept(y)) | (Concept(y), Code(x)) => y
            .codes
            .iter()
            .any(|d| x.code == d.code && x.system == d.system),
        (Interval(x), Interval(y)) => crate::interval::interval_equivalent(x, y),
        (List(x), List(y)) => {
            x.len() == y.len() && x.iter().zip(y.iter()).all(|(p, q)| equivalent(p, q))
        }
        (Tuple(x), Tuple(y)) => {
            x.len() == y.len()
                && x.iter().all(|(k, v)| {
                    y.iter()
                        .find(|(k2, _)| k2 == k)
                        .is_some_and(|(_, w)| equivalent(v, w))
                })
        }
        _ => equal(a, b) == Some(true),
    }
}

fn normalize_str(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// Ordering comparison for `<` etc.; `None` = null/uncertain.
pub fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    use Value::*;
    match (a, b) {
        (Integer(x), Integer(y)) => Some(x.cmp(y)),
        (Integer(_) | Long(_) | Decimal(_), Integer(_) | Long(_) | Decimal(_)) => {
            as_decimal(a)?.partial_cmp(&as_decimal(b)?)
        }
        (String(x), String(y)) => Some(x.cmp(y)),
        (Date(x), Date(y)) => x.compare(y, None),
        (DateTime(x), DateTime(y)) => x.compare(y, None),
        (Date(x), DateTime(y)) => x.to_datetime().compare(y, None),
        (DateTime(x), Date(y)) => x.compare(&y.to_datetime(), None),
        (Time(x), Time(y)) => x.compare(y, None),
        (Quantity(x), Quantity(y)) => crate::units::compare_quantities(x, y),
        (Boolean(x), Boolean(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// Total order used for sorting (nulls first).
pub fn sort_cmp(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Less,
        (_, Value::Null) => Ordering::Greater,
        _ => compare(a, b).unwrap_or_else(|| match (a, b) {
            (Value::DateTime(x), Value::DateTime(y)) => x.sort_key().cmp(&y.sort_key()),
            (Value::Date(x), Value::Date(y)) => x.sort_key().cmp(&y.sort_key()),
            _ => Ordering::Equal,
        }),
    }
}
