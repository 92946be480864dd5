//! FHIR JSON as CQL values: an immutable, reference-counted tree with cheap sub-node handles.

use crate::datetime::{parse_date, parse_datetime, parse_time};
use crate::value::{Code, Concept, Quantity, Value};
use rust_decimal::Decimal;
use std::str::FromStr;
use std::sync::Arc;

#[derive(Clone, Debug)]
pub enum J {
    Null,
    Bool(bool),
    Num(Arc<str>),
    Str(Arc<str>),
    Arr(Arc<[J]>),
    Obj(Arc<[(Arc<str>, J)]>),
}

/// Parses JSON text straight into a [`J`], with the same result as `J::from_json` of a
/// `serde_json::Value` (object keys sorted, a repeated key keeps its last value, numbers rendered
/// as `serde_json::Number` renders them) but without building the intermediate value.
impl<'de> serde::Deserialize<'de> for J {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<J, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = J;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("JSON")
            }
            fn visit_unit<E>(self) -> Result<J, E> {
                Ok(J::Null)
            }
            fn visit_none<E>(self) -> Result<J, E> {
                Ok(J::Null)
            }
            fn visit_bool<E>(self, b: bool) -> Result<J, E> {
                Ok(J::Bool(b))
            }
            fn visit_i64<E>(self, n: i64) -> Result<J, E> {
                Ok(J::Num(Arc::from(serde_json::Number::from(n).to_string())))
            }
            fn visit_u64<E>(self, n: u64) -> Result<J, E> {
                Ok(J::Num(Arc::from(serde_json::Number::from(n).to_string())))
            }
            fn visit_f64<E>(self, n: f64) -> Result<J, E> {
                Ok(match serde_json::Number::from_f64(n) {
                    Some(n) => J::Num(Arc::from(n.to_string())),
                    None => J::Null,
                })
            }
            fn visit_str<E>(self, s: &str) -> Result<J, E> {
                Ok(J::Str(Arc::from(s)))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<J, A::Error> {
                let mut v = Vec::with_capacity(a.size_hint().unwrap_or(0));
                while let Some(x) = a.next_element::<J>()? {
                    v.push(x);
                }
                Ok(J::Arr(v.into()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<J, A::Error> {
                let mut v: Vec<(Arc<str>, J)> = Vec::new();
                while let Some(k) = a.next_key::<std::borrow::Cow<'de, str>>()? {
                    let x = a.next_value::<J>()?;
                    v.push((Arc::from(&*k), x));
                }
                // as serde_json's Map (a BTreeMap): sorted keys, the last of repeated keys wins
                v.reverse();
                v.sort_by(|a, b| a.0.cmp(&b.0));
                v.dedup_by(|later, earlier| later.0 == earlier.0);
                Ok(J::Obj(v.into()))
            }
        }
        d.deserialize_any(V)
    }
}

impl J {
    pub fn from_json(v: &serde_json::Value) -> J {
        match v {
            serde_json::Value::Null => J::Null,
            serde_json::Value::Bool(b) => J::Bool(*b),
            serde_json::Value::Number(n) => J::Num(Arc::from(n.to_string())),
            serde_json::Value::String(s) => J::Str(Arc::from(s.as_str())),
            serde_json::Value::Array(a) => J::Arr(a.iter().map(J::from_json).collect()),
            serde_json::Value::Object(o) => J::Obj(
                o.iter()
                    .map(|(k, v)| (Arc::from(k.as_str()), J::from_json(v)))
                    .collect(),
            ),
        }
    }
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            J::Null => serde_json::Value::Null,
            J::Bool(b) => serde_json::Value::Bool(*b),
            J::Num(n) => serde_json::from_str(n).unwrap_or(serde_json::Value::Null),
            J::Str(s) => serde_json::Value::String(s.to_string()),
            J::Arr(a) => serde_json::Value::Array(a.iter().map(|x| x.to_json()).collect()),
            J::Obj(o) => serde_json::Value::Object(
                o.iter()
                    .map(|(k, v)| (k.to_string(), v.to_json()))
                    .collect(),
            ),
        }
    }
    pub fn get(&self, key: &str) -> Option<&J> {
        match self {
            J::Obj(o) => o.iter().find(|(k, _)| &**k == key).map(|(_, v)| v),
            _ => None,
        }
    }
    pub fn str(&self) -> Option<&str> {
        match self {
            J::Str(s) => Some(s),
            _ => None,
        }
    }
    fn eq(&self, o: &J) -> bool {
        match (self, o) {
            (J::Null, J::Null) => true,
            (J::Bool(a), J::Bool(b)) => a == b,
            (J::Num(a), J::Num(b)) => a == b,
            (J::Str(a), J::Str(b)) => a == b,
            (J::Arr(a), J::Arr(b)) => {
                a.len() == b.len() && a.iter().zip(b.iter()).all(|(x, y)| x.eq(y))
            }
            (J::Obj(a), J::Obj(b)) => {
                a.len() == b.len()
                    && a.iter()
                        .all(|(k, v)| b.iter().any(|(k2, v2)| k == k2 && v.eq(v2)))
            }
            _ => false,
        }
    }
}

/// A FHIR element with its FHIR type when known (from `resourceType`, a choice suffix or the element name).
#[derive(Clone, Debug)]
pub struct Node {
    pub j: J,
    pub ty: Option<Arc<str>>,
}

impl Node {
    pub fn new(j: J, ty: Option<Arc<str>>) -> Node {
        Node { j, ty }
    }
    pub fn to_json(&self) -> serde_json::Value {
        self.j.to_json()
    }
    pub fn json_eq(&self, o: &Node) -> bool {
        self.j.eq(&o.j)
    }
    pub fn resource_type(&self) -> Option<&str> {
        self.j.get("resourceType").and_then(|j| j.str())
    }
    /// The FHIR type name if known.
    pub fn fhir_type(&self) -> Option<&str> {
        if let Some(t) = &self.ty {
            return Some(t);
        }
        self.resource_type()
    }
}

/// Known types of common non-choice elements (enough for overload selection and `is` tests).
fn element_type(key: &str, j: &J) -> Option<&'static str> {
    Some(match key {
        "birthDate" | "expirationDate" => "date",
        "period" | "effectivePeriod" | "validityPeriod" | "dispenseInterval" => match j {
            J::Obj(_) => "Period",
            _ => "decimal",
        },
        "frequency" | "frequencyMax" | "count" | "countMax" | "rank" | "sequence" => "positiveInt",
        "numberOfRepeatsAllowed" => "unsignedInt",
        "timeOfDay" => "time",
        "periodUnit" | "durationUnit" => "code",
        "code"
        | "type"
        | "category"
        | "class"
        | "reasonCode"
        | "valueCodeableConcept"
        | "medicationCodeableConcept"
        | "vaccineCode"
        | "clinicalStatus"
        | "verificationStatus"
        | "severity"
        | "bodySite"
        | "route"
        | "form" => match j {
            J::Obj(_) => "CodeableConcept",
            J::Str(_) => "code",
            _ => return None,
        },
        "coding" => "Coding",
        "quantity" | "doseQuantity" | "expectedSupplyDuration" | "daysSupply" => "Quantity",
        "status" | "intent" | "gender" => "code",
        "id" => "id",
        "reference" | "display" | "text" | "unit" => "string",
        "system" => "uri",
        "recordedDate" | "authoredOn" | "whenHandedOver" | "whenPrepared" | "start" | "end"
        | "date" | "occurrenceDateTime" => "dateTime",
        "issued" | "lastUpdated" => "instant",
        _ => return None,
    })
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

const PRIMITIVE_SUFFIXES: &[&str] = &[
    "Boolean",
    "Integer",
    "Decimal",
    "String",
    "Uri",
    "Url",
    "Canonical",
    "Code",
    "Id",
    "Date",
    "DateTime",
    "Time",
    "Instant",
    "Base64Binary",
    "Markdown",
    "Oid",
    "Uuid",
    "PositiveInt",
    "UnsignedInt",
];

/// `Property(path)` on a FHIR node. Lists of elements become CQL lists.
pub fn property(n: &Node, path: &str) -> Value {
    // primitive `.value`
    if path == "value" {
        match &n.j {
            J::Obj(_) => {}
            _ => return primitive_value(n),
        }
    }
    let J::Obj(o) = &n.j else {
        // extension/id on primitives are not represented
        return Value::Null;
    };
    for (k, v) in o.iter() {
        if &**k == path {
            let ty = element_type(k, v).map(Arc::from);
            return wrap(v, ty);
        }
    }
    // choice element: path + TypeSuffix
    for (k, v) in o.iter() {
        if k.len() > path.len() && k.starts_with(path) {
            let suffix = &k[path.len()..];
            if suffix
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_uppercase())
            {
                let ty = if PRIMITIVE_SUFFIXES.contains(&suffix) {
                    lower_first(suffix)
                } else {
                    suffix.to_string()
                };
                return wrap(v, Some(Arc::from(ty.as_str())));
            }
        }
    }
    Value::Null
}

fn wrap(v: &J, ty: Option<Arc<str>>) -> Value {
    match v {
        J::Null => Value::Null,
        J::Arr(a) => Value::List(Arc::new(
            a.iter()
                .filter(|x| !matches!(x, J::Null))
                .map(|x| Value::Resource(Node::new(x.clone(), ty.clone())))
                .collect(),
        )),
        _ => Value::Resource(Node::new(v.clone(), ty)),
    }
}

/// Convert a FHIR primitive node to the System value.
pub fn primitive_value(n: &Node) -> Value {
    let ty = n.ty.as_deref().unwrap_or("");
    match &n.j {
        J::Bool(b) => Value::Boolean(*b),
        J::Num(s) => {
            if matches!(ty, "integer" | "positiveInt" | "unsignedInt") {
                s.parse::<i32>().map(Value::Integer).unwrap_or(Value::Null)
            } else {
                Decimal::from_str(s)
                    .or_else(|_| Decimal::from_scientific(s))
                    .map(Value::Decimal)
                    .unwrap_or(Value::Null)
            }
        }
        J::Str(s) => match ty {
            "date" => parse_date(s).map(Value::Date).unwrap_or(Value::Null),
            "dateTime" | "instant" => parse_datetime(s, 0)
                .map(Value::DateTime)
                .unwrap_or(Value::Null),
            "time" => parse_time(s).map(Value::Time).unwrap_or(Value::Null),
            "integer" | "positiveInt" | "unsignedInt" => {
                s.parse::<i32>().map(Value::Integer).unwrap_or(Value::Null)
            }
            "decimal" => Decimal::from_str(s)
                .map(Value::Decimal)
                .unwrap_or(Value::Null),
            "boolean" => Value::Boolean(&**s == "true"),
            _ => Value::String(s.clone()),
        },
        _ => Value::Null,
    }
}

/// Does FHIR node `n` have FHIR type `t` (local name, e.g. `dateTime`, `Period`, `Observation`)?
pub fn is_type(n: &Node, t: &str) -> Option<bool> {
    if let Some(rt) = n.resource_type() {
        return Some(rt == t || t == "Resource" || t == "DomainResource");
    }
    if t == "Element" || t == "Base" {
        return Some(true);
    }
    if let Some(ty) = n.ty.as_deref() {
        // FHIR type specializations (profiles of Quantity, string and uri subtypes, integer subtypes)
        let sub = match t {
            "Quantity" => matches!(
                ty,
                "Age" | "Duration" | "Count" | "Distance" | "SimpleQuantity" | "MoneyQuantity"
            ),
            "string" => matches!(ty, "code" | "id" | "markdown"),
            "uri" => matches!(ty, "url" | "canonical" | "oid" | "uuid"),
            "integer" => matches!(ty, "positiveInt" | "unsignedInt"),
            _ => false,
        };
        return Some(ty == t || sub);
    }
    // infer from shape
    Some(match (&n.j, t) {
        (J::Obj(_), "Period") => n.j.get("start").is_some() || n.j.get("end").is_some(),
        (J::Obj(_), "Range") => n.j.get("low").is_some() || n.j.get("high").is_some(),
        (J::Obj(_), "Quantity" | "SimpleQuantity" | "Age" | "Duration") => {
            n.j.get("value").is_some() && n.j.get("coding").is_none()
        }
        (J::Obj(_), "CodeableConcept") => n.j.get("coding").is_some() || n.j.get("text").is_some(),
        (J::Obj(_), "Coding") => n.j.get("code").is_some() && n.j.get("coding").is_none(),
        (J::Obj(_), "Reference") => n.j.get("reference").is_some(),
        (J::Obj(_), "Ratio") => n.j.get("numerator").is_some(),
        (J::Str(_), "string" | "code" | "uri" | "id") => true,
        (J::Str(s), "dateTime") => parse_datetime(s, 0).is_some(),
        (J::Str(s), "date") => parse_date(s).is_some(),
        (J::Bool(_), "boolean") => true,
        (J::Num(_), "decimal" | "integer") => true,
        _ => return None,
    })
}

fn str_field(j: &J, k: &str) -> Option<Arc<str>> {
    match j.get(k) {
        Some(J::Str(s)) => Some(s.clone()),
        _ => None,
    }
}

pub fn to_code(j: &J) -> Value {
    match j {
        J::Obj(_) => match str_field(j, "code") {
            Some(code) => Value::Code(Arc::new(Code {
                code,
                system: str_field(j, "system"),
                version: str_field(j, "version"),
                display: str_field(j, "display"),
            })),
            None => Value::Code(Arc::new(Code {
                code: Arc::from(""),
                system: str_field(j, "system"),
                version: str_field(j, "version"),
                display: str_field(j, "display"),
            })),
        },
        J::Str(s) => Value::Code(Arc::new(Code {
            code: s.clone(),
            system: None,
            version: None,
            display: None,
        })),
        _ => Value::Null,
    }
}

pub fn to_concept(j: &J) -> Value {
    match j {
        J::Obj(_) => {
            let mut codes = Vec::new();
            if let Some(J::Arr(a)) = j.get("coding") {
                for c in a.iter() {
                    if let Value::Code(c) = to_code(c) {
                        codes.push((*c).clone());
                    }
                }
            }
            Value::Concept(Arc::new(Concept {
                codes,
                display: str_field(j, "text"),
            }))
        }
        _ => Value::Null,
    }
}

pub fn to_quantity(j: &J) -> Result<Value, &'static str> {
    let Some(v) = j.get("value") else {
        return Ok(Value::Null);
    };
    let J::Num(v) = v else { return Ok(Value::Null) };
    if j.get("comparator").is_some() {
        return Err("FHIR Quantity value has a comparator and cannot be converted to a System.Quantity value.");
    }
    let value = Decimal::from_str(v)
        .or_else(|_| Decimal::from_scientific(v))
        .map_err(|_| "invalid decimal")?;
    // FHIRHelpers.ToQuantity: unit = ToCalendarUnit(code ?? unit ?? '1'). FHIRHelpers raises an error for
    // systems other than UCUM / calendar units; like the reference engines' results on the official cases,
    // such quantities are read leniently (code, else unit) instead of failing the whole evaluation.
    let unit = str_field(j, "code")
        .or_else(|| str_field(j, "unit"))
        .unwrap_or_else(|| Arc::from("1"));
    Ok(Value::Quantity(Quantity {
        value,
        unit: calendar_unit(&unit),
    }))
}

/// FHIRHelpers.ToCalendarUnit
fn calendar_unit(u: &str) -> Arc<str> {
    Arc::from(match u {
        "ms" => "millisecond",
        "s" => "second",
        "min" => "minute",
        "h" => "hour",
        "d" => "day",
        "wk" => "week",
        "mo" => "month",
        "a" => "year",
        other => other,
    })
}

fn prim(j: Option<&J>, ty: &str) -> Value {
    match j {
        None | Some(J::Null) => Value::Null,
        Some(j) => primitive_value(&Node::new(j.clone(), Some(Arc::from(ty)))),
    }
}

pub fn to_interval(n: &Node) -> Result<Value, &'static str> {
    let j = &n.j;
    let ty = n.fhir_type();
    let is_range = ty == Some("Range")
        || (ty.is_none() && (j.get("low").is_some() || j.get("high").is_some()));
    if is_range {
        let low = j
            .get("low")
            .map(to_quantity)
            .transpose()?
            .unwrap_or(Value::Null);
        let high = j
            .get("high")
            .map(to_quantity)
            .transpose()?
            .unwrap_or(Value::Null);
        return Ok(Value::interval(low, high, true, true));
    }
    if ty.is_some_and(|t| matches!(t, "Quantity" | "Age" | "Duration" | "SimpleQuantity"))
        || j.get("value").is_some()
    {
        let q = to_quantity_ignoring_comparator(j)?;
        return Ok(match j.get("comparator").and_then(|c| c.str()) {
            Some("<") => Value::interval(Value::Null, q, true, false),
            Some("<=") => Value::interval(Value::Null, q, true, true),
            Some(">=") => Value::interval(q, Value::Null, true, true),
            Some(">") => Value::interval(q, Value::Null, false, true),
            _ => Value::interval(q.clone(), q, true, true),
        });
    }
    // Period
    let start = prim(j.get("start"), "dateTime");
    let end = prim(j.get("end"), "dateTime");
    if start.is_null() {
        Ok(Value::interval(start, end, false, true))
    } else {
        Ok(Value::interval(start, end, true, true))
    }
}

fn to_quantity_ignoring_comparator(j: &J) -> Result<Value, &'static str> {
    match j {
        J::Obj(o) => {
            let o2: Arc<[(Arc<str>, J)]> = o
                .iter()
                .filter(|(k, _)| &**k != "comparator")
                .cloned()
                .collect();
            to_quantity(&J::Obj(o2))
        }
        _ => Ok(Value::Null),
    }
}

/// FHIRHelpers.ToValue and friends: convert any FHIR element to its System representation.
pub fn to_value(n: &Node) -> Result<Value, &'static str> {
    let ty = n.fhir_type().map(|s| s.to_string());
    match ty.as_deref() {
        Some("Period") => to_interval(n),
        Some("Range") => to_interval(n),
        Some(
            "Quantity" | "Age" | "Duration" | "SimpleQuantity" | "Count" | "Distance"
            | "MoneyQuantity",
        ) => to_quantity(&n.j),
        Some("CodeableConcept") => Ok(to_concept(&n.j)),
        Some("Coding") => Ok(to_code(&n.j)),
        Some("Ratio") => to_ratio(&n.j),
        Some(_) | None => match &n.j {
            J::Obj(_) => {
                if n.resource_type().is_some() {
                    return Ok(Value::Resource(n.clone()));
                }
                if is_type(n, "Period") == Some(true) {
                    to_interval(n)
                } else if is_type(n, "CodeableConcept") == Some(true) {
                    Ok(to_concept(&n.j))
                } else if n.j.get("numerator").is_some() {
                    to_ratio(&n.j)
                } else if is_type(n, "Range") == Some(true) {
                    to_interval(n)
                } else if is_type(n, "Quantity") == Some(true) {
                    to_quantity(&n.j)
                } else if is_type(n, "Coding") == Some(true) {
                    Ok(to_code(&n.j))
                } else {
                    Ok(Value::Resource(n.clone()))
                }
            }
            J::Null => Ok(Value::Null),
            _ => {
                if n.ty.is_none() {
                    if let J::Str(s) = &n.j {
                        if s.len() >= 7 && s.as_bytes()[4] == b'-' {
                            if let Some(d) = parse_datetime(s, 0) {
                                return Ok(Value::DateTime(d));
                            }
                        }
                    }
                }
                Ok(primitive_value(n))
            }
        },
    }
}

pub fn to_ratio(j: &J) -> Result<Value, &'static str> {
    let n = j.get("numerator").map(to_quantity).transpose()?;
    let d = j.get("denominator").map(to_quantity).transpose()?;
    match (n, d) {
        (Some(Value::Quantity(a)), Some(Value::Quantity(b))) => Ok(Value::Ratio(Arc::new((a, b)))),
        _ => Ok(Value::Null),
    }
}

/// Implement a FHIRHelpers function natively; `None` when the name is not one of the known ones.
pub fn fhirhelpers_call(name: &str, arg: &Value) -> Option<Result<Value, &'static str>> {
    let n = match arg {
        Value::Null => return Some(Ok(Value::Null)),
        Value::Resource(n) => n,
        // already a System value (e.g. a choice that was converted earlier)
        other => {
            return match name {
                "ToValue" | "ToString" | "ToDateTime" | "ToDate" | "ToBoolean" | "ToDecimal"
                | "ToInteger" | "ToTime" | "ToQuantity" | "ToConcept" | "ToCode" | "ToInterval"
                | "ToRatio" => Some(Ok(other.clone())),
                _ => None,
            }
        }
    };
    Some(match name {
        "ToValue" => to_value(n),
        "ToString" => Ok(match &n.j {
            J::Str(s) => Value::String(s.clone()),
            J::Num(s) => Value::String(s.clone()),
            J::Bool(b) => Value::str(if *b { "true" } else { "false" }),
            _ => Value::Null,
        }),
        "ToDateTime" => Ok(prim(Some(&n.j), "dateTime")),
        "ToDate" => Ok(prim(Some(&n.j), "date")),
        "ToTime" => Ok(prim(Some(&n.j), "time")),
        "ToBoolean" => Ok(prim(Some(&n.j), "boolean")),
        "ToDecimal" => Ok(prim(Some(&n.j), "decimal")),
        "ToInteger" => Ok(prim(Some(&n.j), "integer")),
        "ToQuantity" => to_quantity(&n.j),
        "ToQuantityIgnoringComparator" => to_quantity_ignoring_comparator(&n.j),
        "ToConcept" => Ok(to_concept(&n.j)),
        "ToCode" => Ok(to_code(&n.j)),
        "ToInterval" => to_interval(n),
        "ToRatio" => to_ratio(&n.j),
        "ToCalendarUnit" => Ok(match &n.j {
            J::Str(u) => Value::String(calendar_unit(u)),
            _ => Value::Null,
        }),
        _ => return None,
    })
}

#[cfg(test)]
mod deserialize_tests {
    use super::J;

    #[test]
    fn direct_parse_equals_from_json() {
        for text in [
            r#"{"resourceType":"Observation","z":1,"a":[1.0,-2,3.5e2,18446744073709551615,1e300],"k":"x","k":"y","n":null,"b":true,"o":{"b":{},"a":[]}}"#,
            r#"[{"valueQuantity":{"value":0.1,"unit":"mg"}},"s\u00e9",false,12345678901234567890]"#,
        ] {
            let direct: J = serde_json::from_str(text).unwrap();
            let via: serde_json::Value = serde_json::from_str(text).unwrap();
            assert_eq!(
                format!("{direct:?}"),
                format!("{:?}", J::from_json(&via)),
                "{text}"
            );
        }
    }
}
