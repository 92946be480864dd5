//! System operators.

use crate::datetime::{
    self, Between, Date, DateTime, Prec, Time, DAY, HOUR, MONTH, MS, WEEK, YEAR,
};
use crate::interval::{self as iv, and3, or3};
use crate::value::{
    as_decimal, compare, equal, equivalent, Code, Concept, Interval, Quantity, Value,
};
use crate::CqlError;
use rust_decimal::prelude::*;
use rust_decimal::Decimal as Dec;
use std::cmp::Ordering;
use std::sync::Arc;

type R<T> = Result<T, CqlError>;

macro_rules! ops {
    ($($name:ident),* $(,)?) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Op { $($name),* , DateSel, DateTimeSel, TimeSel, RatioSel, PluckPath, ListSort }
        impl Op {
            pub fn from_name(s: &str) -> Option<Op> {
                match s {
                    $(stringify!($name) => Some(Op::$name),)*
                    "Sort" => Some(Op::ListSort),
                    _ => None,
                }
            }
        }
    };
}

ops!(
    Add,
    Subtract,
    Multiply,
    Divide,
    TruncatedDivide,
    Modulo,
    Negate,
    Abs,
    Ceiling,
    Floor,
    Truncate,
    Round,
    Ln,
    Exp,
    Log,
    Power,
    Successor,
    Predecessor,
    Precision,
    LowBoundary,
    HighBoundary,
    MinValue,
    MaxValue,
    Equal,
    NotEqual,
    Equivalent,
    Less,
    Greater,
    LessOrEqual,
    GreaterOrEqual,
    Not,
    Xor,
    Implies,
    IsNull,
    IsTrue,
    IsFalse,
    Concatenate,
    Combine,
    Split,
    SplitOnMatches,
    Length,
    Upper,
    Lower,
    Indexer,
    PositionOf,
    LastPositionOf,
    Substring,
    StartsWith,
    EndsWith,
    Matches,
    ReplaceMatches,
    ToBoolean,
    ToInteger,
    ToLong,
    ToDecimal,
    ToString,
    ToDate,
    ToDateTime,
    ToTime,
    ToQuantity,
    ToConcept,
    ToList,
    ToRatio,
    ToChars,
    ConvertQuantity,
    CanConvertQuantity,
    ConvertsToBoolean,
    ConvertsToInteger,
    ConvertsToLong,
    ConvertsToDecimal,
    ConvertsToString,
    ConvertsToDate,
    ConvertsToDateTime,
    ConvertsToTime,
    ConvertsToQuantity,
    Today,
    Now,
    TimeOfDay,
    DateFrom,
    TimeFrom,
    DateTimeComponentFrom,
    TimezoneOffsetFrom,
    DurationBetween,
    DifferenceBetween,
    CalculateAge,
    CalculateAgeAt,
    SameAs,
    SameOrBefore,
    SameOrAfter,
    Before,
    After,
    Start,
    End,
    Width,
    Size,
    PointFrom,
    Contains,
    In,
    Includes,
    IncludedIn,
    ProperIncludes,
    ProperIncludedIn,
    ProperContains,
    ProperIn,
    Overlaps,
    OverlapsBefore,
    OverlapsAfter,
    Meets,
    MeetsBefore,
    MeetsAfter,
    Starts,
    Ends,
    Union,
    Intersect,
    Except,
    Collapse,
    Expand,
    Exists,
    SingletonFrom,
    First,
    Last,
    Flatten,
    Distinct,
    IndexOf,
    Slice,
    Count,
    Sum,
    Min,
    Max,
    Avg,
    Median,
    Mode,
    Variance,
    StdDev,
    PopulationVariance,
    PopulationStdDev,
    AllTrue,
    AnyTrue,
    Product,
    GeometricMean,
    InValueSet,
    AnyInValueSet,
    ExpandValueSet,
    InCodeSystem,
    AnyInCodeSystem,
    Times,
    Error,
    Descendents,
    Children,
);

impl Op {
    pub fn is_aggregate(self) -> bool {
        matches!(
            self,
            Op::Count
                | Op::Sum
                | Op::Min
                | Op::Max
                | Op::Avg
                | Op::Median
                | Op::Mode
                | Op::Variance
                | Op::StdDev
                | Op::PopulationVariance
                | Op::PopulationStdDev
                | Op::AllTrue
                | Op::AnyTrue
                | Op::Product
                | Op::GeometricMean
        )
    }
}

fn e<T>(m: impl Into<String>) -> R<T> {
    Err(CqlError::new(m))
}

pub fn literal(vt: &str, v: Option<&serde_json::Value>) -> Option<Value> {
    let (_, t) = vt.rsplit_once('}').unwrap_or(("", vt));
    let raw = match v {
        None | Some(serde_json::Value::Null) => return Some(Value::Null),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    Some(match t {
        "Integer" => Value::Integer(raw.parse().ok()?),
        "Long" => Value::Long(raw.trim_end_matches('L').parse().ok()?),
        "Decimal" => Value::Decimal(parse_decimal(&raw)?),
        "String" => Value::String(Arc::from(raw.as_str())),
        "Boolean" => Value::Boolean(raw == "true"),
        "Date" => Value::Date(datetime::parse_date(&raw)?),
        "DateTime" => Value::DateTime(datetime::parse_datetime(&raw, 0)?),
        "Time" => Value::Time(datetime::parse_time(&raw)?),
        _ => Value::String(Arc::from(raw.as_str())),
    })
}

fn parse_decimal(s: &str) -> Option<Dec> {
    let d = Dec::from_str(s).or_else(|_| Dec::from_scientific(s)).ok()?;
    // CQL Decimal: at most 8 decimal places
    if d.scale() > 8 {
        return None;
    }
    // max magnitude 10^28 - 1 over 10^8
    if d.abs() > max_decimal() {
        return None;
    }
    Some(d)
}

fn max_decimal() -> Dec {
    Dec::from_str("99999999999999999999.99999999").unwrap_or(Dec::MAX)
}

fn dec_result(d: Dec) -> Value {
    let r = d.round_dp_with_strategy(8, RoundingStrategy::MidpointAwayFromZero);
    if r.abs() > max_decimal() {
        Value::Null
    } else {
        Value::Decimal(r)
    }
}

pub fn min_value_like(v: &Value) -> Option<Value> {
    min_max(type_of(v)?, false)
}
pub fn max_value_like(v: &Value) -> Option<Value> {
    min_max(type_of(v)?, true)
}
fn type_of(v: &Value) -> Option<&'static str> {
    Some(match v {
        Value::Integer(_) => "Integer",
        Value::Long(_) => "Long",
        Value::Decimal(_) => "Decimal",
        Value::Date(_) => "Date",
        Value::DateTime(_) => "DateTime",
        Value::Time(_) => "Time",
        Value::Quantity(_) => "Quantity",
        _ => return None,
    })
}

fn min_max(t: &str, max: bool) -> Option<Value> {
    Some(match (t, max) {
        ("Integer", false) => Value::Integer(i32::MIN),
        ("Integer", true) => Value::Integer(i32::MAX),
        ("Long", false) => Value::Long(i64::MIN),
        ("Long", true) => Value::Long(i64::MAX),
        ("Decimal", false) => Value::Decimal(-max_decimal()),
        ("Decimal", true) => Value::Decimal(max_decimal()),
        ("Date", false) => Value::Date(Date {
            c: [1, 1, 1],
            prec: DAY,
        }),
        ("Date", true) => Value::Date(Date {
            c: [9999, 12, 31],
            prec: DAY,
        }),
        ("DateTime", false) => Value::DateTime(DateTime::new([1, 1, 1, 0, 0, 0, 0], 0, MS)),
        ("DateTime", true) => {
            Value::DateTime(DateTime::new([9999, 12, 31, 23, 59, 59, 999], 0, MS))
        }
        ("Time", false) => Value::Time(Time {
            c: [0, 0, 0, 0],
            prec: MS,
        }),
        ("Time", true) => Value::Time(Time {
            c: [23, 59, 59, 999],
            prec: MS,
        }),
        ("Quantity", false) => Value::Quantity(Quantity {
            value: -max_decimal(),
            unit: Arc::from("1"),
        }),
        ("Quantity", true) => Value::Quantity(Quantity {
            value: max_decimal(),
            unit: Arc::from("1"),
        }),
        _ => return None,
    })
}

pub fn make_interval(l: Value, h: Value, lc: bool, hc: bool) -> R<Value> {
    if !l.is_null() && !h.is_null() {
        let lv = match (&l, &h) {
            (Value::Integer(_), Value::Decimal(_)) => {
                Value::Decimal(as_decimal(&l).unwrap_or_default())
            }
            _ => l.clone(),
        };
        match compare(&lv, &h) {
            Some(Ordering::Greater) => {
                return e("invalid interval: the low bound is greater than the high bound")
            }
            Some(Ordering::Equal)
                if !(lc && hc) && matches!(l, Value::Integer(_) | Value::Long(_)) =>
            {
                return e("invalid interval: empty")
            }
            None if type_of(&l) != type_of(&h)
                && !matches!(
                    (&l, &h),
                    (Value::Date(_), Value::DateTime(_)) | (Value::DateTime(_), Value::Date(_))
                ) =>
            {
                return e("invalid interval: bounds have different types");
            }
            _ => {}
        }
    }
    Ok(Value::interval(l, h, lc, hc))
}

pub fn instance(class: &str, elems: Vec<(Arc<str>, Value)>) -> R<Value> {
    let get = |n: &str| {
        elems
            .iter()
            .find(|(k, _)| &**k == n)
            .map(|(_, v)| v.clone())
            .unwrap_or(Value::Null)
    };
    let st = |v: Value| match v {
        Value::String(s) => Some(s),
        _ => None,
    };
    Ok(match class {
        "Quantity" => {
            let v = as_decimal(&get("value"));
            match v {
                Some(v) => Value::Quantity(Quantity {
                    value: v,
                    unit: st(get("unit")).unwrap_or_else(|| Arc::from("1")),
                }),
                None => Value::Null,
            }
        }
        "Code" => Value::Code(Arc::new(Code {
            code: st(get("code")).unwrap_or_else(|| Arc::from("")),
            system: st(get("system")),
            version: st(get("version")),
            display: st(get("display")),
        })),
        "Concept" => {
            let codes = match get("codes") {
                Value::List(l) => l
                    .iter()
                    .filter_map(|c| match c {
                        Value::Code(c) => Some((**c).clone()),
                        _ => None,
                    })
                    .collect(),
                _ => vec![],
            };
            Value::Concept(Arc::new(Concept {
                codes,
                display: st(get("display")),
            }))
        }
        "Ratio" => match (get("numerator"), get("denominator")) {
            (Value::Quantity(a), Value::Quantity(b)) => Value::Ratio(Arc::new((a, b))),
            _ => Value::Null,
        },
        "ValueSet" | "CodeSystem" => Value::ValueSet(Arc::new(crate::value::ValueSetData {
            url: st(get("id")).unwrap_or_else(|| Arc::from("")),
            ..Default::default()
        })),
        _ => Value::Tuple(Arc::new(elems)),
    })
}

pub fn distinct(items: &[Value]) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::with_capacity(items.len());
    for it in items {
        if !out.iter().any(|o| same(o, it)) {
            out.push(it.clone());
        }
    }
    out
}

/// Equality used for distinct/union: null equals null, otherwise `=` (true).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Resource(x), Value::Resource(y)) => {
            // resources: same resource identity when both have type and id
            match (x.resource_type(), y.resource_type()) {
                (Some(t1), Some(t2)) => {
                    t1 == t2
                        && x.j.get("id").and_then(|i| i.str())
                            == y.j.get("id").and_then(|i| i.str())
                        && x.json_eq(y)
                }
                _ => x.json_eq(y),
            }
        }
        _ => equal(a, b) == Some(true) || (equal(a, b).is_none() && equivalent(a, b)),
    }
}

fn b(v: Option<bool>) -> Value {
    match v {
        Some(x) => Value::Boolean(x),
        None => Value::Null,
    }
}

fn list_of(v: &Value) -> Option<&Arc<Vec<Value>>> {
    match v {
        Value::List(l) => Some(l),
        _ => None,
    }
}

fn int_arg(v: &Value) -> Option<i64> {
    match v {
        Value::Integer(i) => Some(*i as i64),
        Value::Long(i) => Some(*i),
        _ => None,
    }
}

pub fn subtract_values(a: &Value, b: &Value) -> Option<Value> {
    arith(Op::Subtract, a, b).ok()
}

fn quantity_unit_prec(u: &str) -> Option<Prec> {
    match u {
        "a" | "mo" => None,
        _ => datetime::parse_precision(u),
    }
}

fn arith(op: Op, a: &Value, bv: &Value) -> R<Value> {
    use Value::*;
    if a.is_null() || bv.is_null() {
        return Ok(Null);
    }
    Ok(match (a, bv) {
        // uncertainty ranges (from durations between imprecise values)
        (Interval(_), _) | (_, Interval(_))
            if matches!(op, Op::Add | Op::Subtract | Op::Multiply) =>
        {
            uncertainty_arith(op, a, bv)?
        }
        (Integer(x), Integer(y)) => match op {
            Op::Add => x.checked_add(*y).map(Integer).unwrap_or(Null),
            Op::Subtract => x.checked_sub(*y).map(Integer).unwrap_or(Null),
            Op::Multiply => x.checked_mul(*y).map(Integer).unwrap_or(Null),
            Op::Divide => {
                if *y == 0 {
                    Null
                } else {
                    dec_result(Dec::from(*x) / Dec::from(*y))
                }
            }
            Op::TruncatedDivide => {
                if *y == 0 {
                    Null
                } else {
                    x.checked_div(*y).map(Integer).unwrap_or(Null)
                }
            }
            Op::Modulo => {
                if *y == 0 {
                    Null
                } else {
                    x.checked_rem(*y).map(Integer).unwrap_or(Null)
                }
            }
            _ => Null,
        },
        (Long(_) | Integer(_), Long(_) | Integer(_)) => {
            let (x, y) = (int_arg(a).unwrap_or(0), int_arg(bv).unwrap_or(0));
            match op {
                Op::Add => x.checked_add(y).map(Long).unwrap_or(Null),
                Op::Subtract => x.checked_sub(y).map(Long).unwrap_or(Null),
                Op::Multiply => x.checked_mul(y).map(Long).unwrap_or(Null),
                Op::Divide => {
                    if y == 0 {
                        Null
                    } else {
                        dec_result(Dec::from(x) / Dec::from(y))
                    }
                }
                Op::TruncatedDivide => {
                    if y == 0 {
                        Null
                    } else {
                        x.checked_div(y).map(Long).unwrap_or(Null)
                    }
                }
                Op::Modulo => {
                    if y == 0 {
                        Null
                    } else {
                        x.checked_rem(y).map(Long).unwrap_or(Null)
                    }
                }
                _ => Null,
            }
        }
        (Integer(_) | Long(_) | Decimal(_), Integer(_) | Long(_) | Decimal(_)) => {
            let (x, y) = (
                as_decimal(a).unwrap_or_default(),
                as_decimal(bv).unwrap_or_default(),
            );
            match op {
                Op::Add => x.checked_add(y).map(dec_result).unwrap_or(Null),
                Op::Subtract => x.checked_sub(y).map(dec_result).unwrap_or(Null),
                Op::Multiply => x.checked_mul(y).map(dec_result).unwrap_or(Null),
                Op::Divide => {
                    if y.is_zero() {
                        Null
                    } else {
                        x.checked_div(y).map(dec_result).unwrap_or(Null)
                    }
                }
                Op::TruncatedDivide => {
                    if y.is_zero() {
                        Null
                    } else {
                        x.checked_div(y)
                            .map(|d| dec_result(d.trunc()))
                            .unwrap_or(Null)
                    }
                }
                Op::Modulo => {
                    if y.is_zero() {
                        Null
                    } else {
                        x.checked_rem(y).map(dec_result).unwrap_or(Null)
                    }
                }
                _ => Null,
            }
        }
        (Quantity(x), Quantity(y)) => match op {
            Op::Add => crate::units::quantity_add(x, y, 1)
                .map(Quantity)
                .unwrap_or(Null),
            Op::Subtract => crate::units::quantity_add(x, y, -1)
                .map(Quantity)
                .unwrap_or(Null),
            Op::Multiply => crate::units::quantity_mul(x, y)
                .map(Quantity)
                .unwrap_or(Null),
            Op::Divide => crate::units::quantity_div(x, y)
                .map(Quantity)
                .unwrap_or(Null),
            Op::TruncatedDivide | Op::Modulo => {
                let y2 = crate::units::convert(y, &x.unit);
                match y2 {
                    Some(y2) if !y2.value.is_zero() => {
                        let v = if op == Op::Modulo {
                            x.value % y2.value
                        } else {
                            (x.value / y2.value).trunc()
                        };
                        Quantity(crate::value::Quantity {
                            value: v,
                            unit: x.unit.clone(),
                        })
                    }
                    _ => Null,
                }
            }
            _ => Null,
        },
        (Quantity(x), Integer(_) | Decimal(_) | Long(_)) => {
            let y = as_decimal(bv).unwrap_or_default();
            match op {
                Op::Multiply => Quantity(crate::value::Quantity {
                    value: x.value * y,
                    unit: x.unit.clone(),
                }),
                Op::Divide if !y.is_zero() => dec_q(x.value / y, &x.unit),
                _ => Null,
            }
        }
        (Integer(_) | Decimal(_) | Long(_), Quantity(y)) => {
            let x = as_decimal(a).unwrap_or_default();
            match op {
                Op::Multiply => Quantity(crate::value::Quantity {
                    value: x * y.value,
                    unit: y.unit.clone(),
                }),
                _ => Null,
            }
        }
        (DateTime(_), Quantity(q)) | (Date(_), Quantity(q)) | (Time(_), Quantity(q))
            if matches!(op, Op::Add | Op::Subtract) =>
        {
            let Some(unit) = quantity_unit_prec(&q.unit) else {
                return e(format!(
                    "invalid unit for date/time arithmetic: `{}`",
                    q.unit
                ));
            };
            let Some(amount) = q.value.trunc().to_i64() else {
                return e("date/time arithmetic result out of range");
            };
            let amount = if op == Op::Subtract { -amount } else { amount };
            let r = match a {
                DateTime(d) => d.add(amount, unit).map(DateTime),
                Date(d) => d.add(amount, unit).map(Date),
                Time(t) => t.add(amount, unit).map(Time),
                _ => None,
            };
            match r {
                Some(v) => v,
                None => return e("date/time arithmetic result out of range"),
            }
        }
        (String(x), String(y)) if op == Op::Add => Value::String(Arc::from(format!("{x}{y}"))),
        _ => {
            return e(format!(
                "operator {op:?} is not defined for {} and {}",
                a.type_name(),
                bv.type_name()
            ))
        }
    })
}

fn range_of(v: &Value) -> Option<(i64, i64)> {
    match v {
        Value::Integer(n) => Some((*n as i64, *n as i64)),
        Value::Interval(i) => Some((int_arg(&i.low)?, int_arg(&i.high)?)),
        _ => None,
    }
}

fn uncertainty_arith(op: Op, a: &Value, b: &Value) -> R<Value> {
    let (Some((al, ah)), Some((bl, bh))) = (range_of(a), range_of(b)) else {
        return e(format!(
            "operator {op:?} is not defined for {} and {}",
            a.type_name(),
            b.type_name()
        ));
    };
    let (lo, hi) = match op {
        Op::Add => (al + bl, ah + bh),
        Op::Subtract => (al - bh, ah - bl),
        _ => {
            let p = [al * bl, al * bh, ah * bl, ah * bh];
            (*p.iter().min().unwrap_or(&0), *p.iter().max().unwrap_or(&0))
        }
    };
    let (Ok(lo), Ok(hi)) = (i32::try_from(lo), i32::try_from(hi)) else {
        return Ok(Value::Null);
    };
    Ok(if lo == hi {
        Value::Integer(lo)
    } else {
        Value::interval(Value::Integer(lo), Value::Integer(hi), true, true)
    })
}

fn dec_q(v: Dec, unit: &Arc<str>) -> Value {
    Value::Quantity(Quantity {
        value: v.round_dp(8),
        unit: unit.clone(),
    })
}

fn cmp_op(op: Op, a: &Value, c: &Value) -> Value {
    if a.is_null() || c.is_null() {
        return Value::Null;
    }
    // uncertainty (an Integer range from a duration/difference with imprecise operands)
    if let Value::Interval(i) = a {
        if !matches!(c, Value::Interval(_)) {
            let lo = cmp_op(op, &i.low, c);
            let hi = cmp_op(op, &i.high, c);
            return if equal(&lo, &hi) == Some(true) {
                lo
            } else {
                Value::Null
            };
        }
    }
    if let Value::Interval(i) = c {
        if !matches!(a, Value::Interval(_)) {
            let lo = cmp_op(op, a, &i.low);
            let hi = cmp_op(op, a, &i.high);
            return if equal(&lo, &hi) == Some(true) {
                lo
            } else {
                Value::Null
            };
        }
    }
    let o = compare(a, c);
    b(o.map(|o| match op {
        Op::Less => o == Ordering::Less,
        Op::Greater => o == Ordering::Greater,
        Op::LessOrEqual => o != Ordering::Greater,
        _ => o != Ordering::Less,
    }))
}

fn to_dt(v: &Value) -> Option<DateTime> {
    match v {
        Value::DateTime(d) => Some(*d),
        Value::Date(d) => Some(d.to_datetime()),
        _ => None,
    }
}

/// Point comparisons with precision (SameAs, SameOrBefore, ...). `None` = null.
fn same_cmp(a: &Value, c: &Value, prec: Option<Prec>) -> Option<Ordering> {
    iv::vcmp(a, c, prec)
}

fn as_interval(v: &Value) -> Option<&Interval> {
    match v {
        Value::Interval(i) => Some(i),
        _ => None,
    }
}

fn point_interval(v: &Value) -> Interval {
    Interval {
        low: v.clone(),
        high: v.clone(),
        low_closed: true,
        high_closed: true,
    }
}

fn list_contains(l: &[Value], x: &Value) -> Option<bool> {
    if x.is_null() {
        return Some(l.iter().any(|v| v.is_null()));
    }
    Some(l.iter().any(|v| equal(v, x) == Some(true)))
}

fn quantity_to_string(q: &Quantity) -> String {
    format!("{} '{}'", q.value.normalize(), q.unit)
}

pub fn to_string(v: &Value) -> Value {
    let s = match v {
        Value::Null => return Value::Null,
        Value::String(s) => return Value::String(s.clone()),
        Value::Boolean(b) => b.to_string(),
        Value::Integer(i) => i.to_string(),
        Value::Long(i) => i.to_string(),
        Value::Decimal(d) => d.to_string(),
        Value::Quantity(q) => quantity_to_string(q),
        Value::Ratio(r) => format!("{}:{}", quantity_to_string(&r.0), quantity_to_string(&r.1)),
        Value::Date(d) => d.to_string(),
        Value::DateTime(d) => d.to_string(),
        Value::Time(t) => t.to_string(),
        Value::Resource(n) => match &n.j {
            crate::fhir::J::Str(s) => s.to_string(),
            _ => return Value::Null,
        },
        _ => return Value::Null,
    };
    Value::String(Arc::from(s))
}

fn parse_quantity_string(s: &str) -> Option<Quantity> {
    let s = s.trim();
    let (num, unit) = match s.find(' ') {
        Some(i) => (&s[..i], s[i..].trim()),
        None => (s, "1"),
    };
    let value = parse_decimal(num)?;
    let unit = unit.trim_matches('\'');
    Some(Quantity {
        value,
        unit: Arc::from(if unit.is_empty() { "1" } else { unit }),
    })
}

fn convert(op: Op, v: &Value) -> R<Value> {
    use Value::*;
    if v.is_null() {
        return Ok(Null);
    }
    // a FHIR element reaching a System conversion: convert it to its System value first
    if let Resource(n) = v {
        if n.resource_type().is_none() {
            if let Ok(sys) = crate::fhir::to_value(n) {
                if !matches!(sys, Resource(_)) {
                    return convert(op, &sys);
                }
            }
        }
    }
    Ok(match op {
        Op::ToBoolean => match v {
            Boolean(_) => v.clone(),
            String(s) => match s.to_lowercase().as_str() {
                "true" | "t" | "yes" | "y" | "1" => Boolean(true),
                "false" | "f" | "no" | "n" | "0" => Boolean(false),
                _ => Null,
            },
            Integer(1) | Long(1) => Boolean(true),
            Integer(0) | Long(0) => Boolean(false),
            Decimal(d) if *d == rust_decimal::Decimal::ONE => Boolean(true),
            Decimal(d) if d.is_zero() => Boolean(false),
            _ => Null,
        },
        Op::ToInteger => match v {
            Integer(_) => v.clone(),
            Long(l) => i32::try_from(*l).map(Integer).unwrap_or(Null),
            Boolean(b) => Integer(*b as i32),
            String(s) => s.parse::<i32>().map(Integer).unwrap_or(Null),
            Decimal(d) => d.trunc().to_i32().map(Integer).unwrap_or(Null),
            _ => Null,
        },
        Op::ToLong => match v {
            Long(_) => v.clone(),
            Integer(i) => Long(*i as i64),
            Boolean(b) => Long(*b as i64),
            String(s) => s.parse::<i64>().map(Long).unwrap_or(Null),
            _ => Null,
        },
        Op::ToDecimal => match v {
            Decimal(_) => v.clone(),
            Integer(_) | Long(_) => Decimal(as_decimal(v).unwrap_or_default()),
            Boolean(b) => Decimal(rust_decimal::Decimal::from(*b as i32)),
            String(s) => parse_decimal(s.trim()).map(Decimal).unwrap_or(Null),
            _ => Null,
        },
        Op::ToString => to_string(v),
        Op::ToDate => match v {
            Date(_) => v.clone(),
            DateTime(d) => Date(d.date()),
            String(s) => datetime::parse_datetime(s, 0)
                .map(|d| Date(d.date()))
                .unwrap_or(Null),
            _ => Null,
        },
        Op::ToDateTime => match v {
            DateTime(_) => v.clone(),
            Date(d) => DateTime(d.to_datetime()),
            String(s) => datetime::parse_datetime(s, 0).map(DateTime).unwrap_or(Null),
            _ => Null,
        },
        Op::ToTime => match v {
            Time(_) => v.clone(),
            String(s) => datetime::parse_time(s).map(Time).unwrap_or(Null),
            _ => Null,
        },
        Op::ToQuantity => match v {
            Quantity(_) => v.clone(),
            Integer(_) | Long(_) | Decimal(_) => Quantity(crate::value::Quantity {
                value: as_decimal(v).unwrap_or_default(),
                unit: Arc::from("1"),
            }),
            String(s) => parse_quantity_string(s).map(Quantity).unwrap_or(Null),
            Ratio(r) => crate::units::quantity_div(&r.0, &r.1)
                .map(Quantity)
                .unwrap_or(Null),
            _ => Null,
        },
        Op::ToRatio => match v {
            Ratio(_) => v.clone(),
            String(s) => match s.split_once(':') {
                Some((a, c)) => match (parse_quantity_string(a), parse_quantity_string(c)) {
                    (Some(x), Some(y)) => Ratio(Arc::new((x, y))),
                    _ => Null,
                },
                None => Null,
            },
            _ => Null,
        },
        Op::ToConcept => match v {
            Concept(_) => v.clone(),
            Code(c) => Concept(Arc::new(crate::value::Concept {
                codes: vec![(**c).clone()],
                display: None,
            })),
            List(l) => Concept(Arc::new(crate::value::Concept {
                codes: l
                    .iter()
                    .filter_map(|c| match c {
                        Code(c) => Some((**c).clone()),
                        _ => None,
                    })
                    .collect(),
                display: None,
            })),
            _ => Null,
        },
        Op::ToList => match v {
            Null => List(Arc::new(vec![])),
            other => List(Arc::new(vec![other.clone()])),
        },
        Op::ToChars => match v {
            String(s) => List(Arc::new(
                s.chars().map(|c| Value::str(&c.to_string())).collect(),
            )),
            _ => Null,
        },
        _ => {
            // ConvertsToX
            let target = match op {
                Op::ConvertsToBoolean => Op::ToBoolean,
                Op::ConvertsToInteger => Op::ToInteger,
                Op::ConvertsToLong => Op::ToLong,
                Op::ConvertsToDecimal => Op::ToDecimal,
                Op::ConvertsToString => Op::ToString,
                Op::ConvertsToDate => Op::ToDate,
                Op::ConvertsToDateTime => Op::ToDateTime,
                Op::ConvertsToTime => Op::ToTime,
                Op::ConvertsToQuantity => Op::ToQuantity,
                _ => return e(format!("conversion {op:?} not supported")),
            };
            Boolean(!convert(target, v)?.is_null())
        }
    })
}

fn aggregate(op: Op, l: &[Value]) -> R<Value> {
    let vals: Vec<&Value> = l.iter().filter(|v| !v.is_null()).collect();
    Ok(match op {
        Op::Count => Value::Integer(vals.len() as i32),
        Op::AllTrue => Value::Boolean(vals.iter().all(|v| v.is_true())),
        Op::AnyTrue => Value::Boolean(vals.iter().any(|v| v.is_true())),
        _ if vals.is_empty() => Value::Null,
        Op::Sum | Op::Product => {
            let mut acc = vals[0].clone();
            for v in &vals[1..] {
                acc = arith(if op == Op::Sum { Op::Add } else { Op::Multiply }, &acc, v)?;
            }
            acc
        }
        Op::Min | Op::Max => {
            let mut best = vals[0].clone();
            for v in &vals[1..] {
                let o = compare(v, &best);
                if (op == Op::Min && o == Some(Ordering::Less))
                    || (op == Op::Max && o == Some(Ordering::Greater))
                {
                    best = (*v).clone();
                }
            }
            best
        }
        Op::Avg => {
            let mut acc = vals[0].clone();
            for v in &vals[1..] {
                acc = arith(Op::Add, &acc, v)?;
            }
            match acc {
                Value::Quantity(q) => dec_q(q.value / Dec::from(vals.len()), &q.unit),
                other => arith(
                    Op::Divide,
                    &convert(Op::ToDecimal, &other)?,
                    &Value::Decimal(Dec::from(vals.len())),
                )?,
            }
        }
        Op::Median => {
            let mut v: Vec<Value> = vals.iter().map(|x| (*x).clone()).collect();
            v.sort_by(crate::value::sort_cmp);
            let n = v.len();
            if n % 2 == 1 {
                v[n / 2].clone()
            } else {
                let s = arith(Op::Add, &v[n / 2 - 1], &v[n / 2])?;
                match s {
                    Value::Quantity(q) => dec_q(q.value / Dec::TWO, &q.unit),
                    other => arith(Op::Divide, &other, &Value::Decimal(Dec::TWO))?,
                }
            }
        }
        Op::Mode => {
            let mut best = vals[0].clone();
            let mut best_n = 0;
            for v in &vals {
                let n = vals.iter().filter(|w| equal(v, w) == Some(true)).count();
                if n > best_n {
                    best_n = n;
                    best = (*v).clone();
                }
            }
            best
        }
        Op::Variance | Op::StdDev | Op::PopulationVariance | Op::PopulationStdDev => {
            let unit = match vals[0] {
                Value::Quantity(q) => Some(q.unit.clone()),
                _ => None,
            };
            let nums: Vec<f64> = vals
                .iter()
                .filter_map(|v| match v {
                    Value::Quantity(q) => q.value.to_f64(),
                    other => as_decimal(other).and_then(|d| d.to_f64()),
                })
                .collect();
            let n = nums.len() as f64;
            let mean = nums.iter().sum::<f64>() / n;
            let ss: f64 = nums.iter().map(|x| (x - mean) * (x - mean)).sum();
            let pop = matches!(op, Op::PopulationVariance | Op::PopulationStdDev);
            if !pop && nums.len() < 2 {
                return Ok(Value::Null);
            }
            let var = ss / if pop { n } else { n - 1.0 };
            let r = if matches!(op, Op::StdDev | Op::PopulationStdDev) {
                var.sqrt()
            } else {
                var
            };
            let d = Dec::from_f64(r).map(|d| d.round_dp(8)).unwrap_or_default();
            match unit {
                Some(u) => Value::Quantity(Quantity { value: d, unit: u }),
                None => Value::Decimal(d),
            }
        }
        Op::GeometricMean => {
            let nums: Vec<f64> = vals
                .iter()
                .filter_map(|v| as_decimal(v).and_then(|d| d.to_f64()))
                .collect();
            let p: f64 = nums.iter().map(|x| x.ln()).sum::<f64>() / nums.len() as f64;
            Dec::from_f64(p.exp())
                .map(|d| Value::Decimal(d.round_dp(8)))
                .unwrap_or(Value::Null)
        }
        _ => return e(format!("aggregate {op:?} not supported")),
    })
}

fn collapse(list: &[Value], per: &Value) -> R<Value> {
    let mut ivs: Vec<Interval> = list
        .iter()
        .filter_map(|v| as_interval(v).cloned())
        .collect();
    if ivs.is_empty() {
        return Ok(Value::list(vec![]));
    }
    ivs.sort_by(|a, c| iv::pcmp(&iv::low_pt(a), &iv::low_pt(c), None).unwrap_or(Ordering::Equal));
    let mut out: Vec<Interval> = vec![ivs[0].clone()];
    for i in ivs.into_iter().skip(1) {
        let last = out.last().cloned().unwrap_or_else(|| i.clone());
        let ov = iv::overlaps(&last, &i, None) == Some(true);
        let meets = iv::meets_before(&last, &i, None) == Some(true);
        let within_per = if !per.is_null() {
            // gap smaller than or equal to per
            match (iv::end(&last), iv::start(&i)) {
                (h, l) if !h.is_null() && !l.is_null() => match arith(Op::Add, &h, per) {
                    Ok(x) => compare(&x, &l).is_some_and(|o| o != Ordering::Less),
                    Err(_) => false,
                },
                _ => false,
            }
        } else {
            false
        };
        if ov || meets || within_per {
            if let Some(Value::Interval(u)) = iv::union(&last, &i).or_else(|| {
                let hi = match iv::pcmp(&iv::high_pt(&last), &iv::high_pt(&i), None) {
                    Some(Ordering::Less) => i.clone(),
                    _ => last.clone(),
                };
                Some(Value::interval(
                    last.low.clone(),
                    hi.high.clone(),
                    last.low_closed,
                    hi.high_closed,
                ))
            }) {
                let n = out.len();
                out[n - 1] = (*u).clone();
            } else {
                let hi = match iv::pcmp(&iv::high_pt(&last), &iv::high_pt(&i), None) {
                    Some(Ordering::Less) => i.clone(),
                    _ => last.clone(),
                };
                let n = out.len();
                out[n - 1] = Interval {
                    low: last.low.clone(),
                    high: hi.high.clone(),
                    low_closed: last.low_closed,
                    high_closed: hi.high_closed,
                };
            }
        } else {
            out.push(i);
        }
    }
    Ok(Value::list(
        out.into_iter()
            .map(|i| Value::Interval(Arc::new(i)))
            .collect(),
    ))
}

fn expand(v: &Value, per: &Value) -> R<Value> {
    let (ivs, as_points): (Vec<Interval>, bool) = match v {
        Value::List(l) => (
            l.iter().filter_map(|x| as_interval(x).cloned()).collect(),
            false,
        ),
        Value::Interval(i) => (vec![(**i).clone()], true),
        _ => return Ok(Value::Null),
    };
    let mut out = Vec::new();
    for i in ivs {
        let (lo, hi) = (iv::start(&i), iv::end(&i));
        if lo.is_null() || hi.is_null() {
            continue;
        }
        let point_prec = match &lo {
            Value::Date(d) => Some(d.prec),
            Value::DateTime(d) => Some(d.prec),
            Value::Time(t) => Some(t.prec),
            _ => None,
        };
        let step = match per {
            Value::Null => match &lo {
                Value::Integer(_) | Value::Long(_) => Value::Integer(1),
                Value::Decimal(_) => Value::Decimal(Dec::ONE),
                Value::Date(d) => Value::Quantity(Quantity {
                    value: Dec::ONE,
                    unit: Arc::from(unit_name(d.prec)),
                }),
                Value::DateTime(d) => Value::Quantity(Quantity {
                    value: Dec::ONE,
                    unit: Arc::from(unit_name(d.prec)),
                }),
                Value::Time(t) => Value::Quantity(Quantity {
                    value: Dec::ONE,
                    unit: Arc::from(unit_name(t.prec)),
                }),
                _ => return e("expand: unsupported point type"),
            },
            Value::Quantity(q) => match &lo {
                Value::Integer(_) if q.value.fract().is_zero() => {
                    Value::Integer(q.value.to_i32().unwrap_or(1))
                }
                Value::Integer(_) | Value::Decimal(_) => Value::Decimal(q.value),
                _ => {
                    if let (Some(pp), Some(up)) = (point_prec, quantity_unit_prec(&q.unit)) {
                        if up > pp && up != WEEK {
                            continue;
                        }
                    }
                    per.clone()
                }
            },
            other => other.clone(),
        };
        // temporal points are taken at the precision of the per unit when it is coarser
        let (lo, hi) = match (&step, point_prec) {
            (Value::Quantity(q), Some(pp)) => match quantity_unit_prec(&q.unit) {
                Some(up) if up < pp && up != WEEK => {
                    (truncate_temporal(&lo, up), truncate_temporal(&hi, up))
                }
                _ => (lo, hi),
            },
            _ => (lo, hi),
        };
        let mut cur = match (&lo, &step) {
            (Value::Integer(x), Value::Decimal(_)) => Value::Decimal(Dec::from(*x)),
            _ => lo.clone(),
        };
        let mut n = 0;
        loop {
            let next = arith(Op::Add, &cur, &step)?;
            if next.is_null() {
                break;
            }
            let last = match (&next, &step) {
                (Value::Decimal(x), Value::Decimal(st)) => {
                    Value::Decimal(*x - Dec::new(1, st.scale()))
                }
                _ => match iv::predecessor(&next) {
                    Some(p) => p,
                    None => break,
                },
            };
            if compare(&last, &hi).is_none_or(|o| o == Ordering::Greater) {
                break;
            }
            if as_points {
                out.push(cur.clone());
            } else {
                out.push(Value::interval(cur.clone(), last, true, true));
            }
            cur = next;
            n += 1;
            if n > 100_000 {
                return e("expand: too many points");
            }
        }
    }
    Ok(Value::list(out))
}

fn truncate_temporal(v: &Value, p: Prec) -> Value {
    match v {
        Value::DateTime(d) => Value::DateTime(d.truncate(p)),
        Value::Date(d) => Value::Date(d.to_datetime().truncate(p).date()),
        Value::Time(t) => {
            let mut t = *t;
            if p < t.prec && p >= HOUR {
                for i in (p as usize - 2)..4 {
                    t.c[i] = 0;
                }
                t.prec = p;
            }
            Value::Time(t)
        }
        other => other.clone(),
    }
}

fn unit_name(p: Prec) -> &'static str {
    match p {
        YEAR => "year",
        MONTH => "month",
        DAY => "day",
        HOUR => "hour",
        datetime::MINUTE => "minute",
        datetime::SECOND => "second",
        _ => "millisecond",
    }
}

fn between(op: Op, a: &Value, c: &Value, prec: Option<Prec>) -> R<Value> {
    let p = prec.unwrap_or(DAY);
    match (a, c) {
        (Value::Null, _) | (_, Value::Null) => Ok(Value::Null),
        (Value::Time(x), Value::Time(y)) => {
            let per: i64 = match p {
                HOUR => 3_600_000,
                datetime::MINUTE => 60_000,
                datetime::SECOND => 1000,
                _ => 1,
            };
            let (mx, my) = if op == Op::DifferenceBetween {
                (x.ms_of_day() / per * per, y.ms_of_day() / per * per)
            } else {
                (x.ms_of_day(), y.ms_of_day())
            };
            Ok(Value::Integer(((my - mx) / per) as i32))
        }
        _ => {
            let (Some(x), Some(y)) = (to_dt(a), to_dt(c)) else {
                return e(format!(
                    "{op:?} is not defined for {} and {}",
                    a.type_name(),
                    c.type_name()
                ));
            };
            let type_prec = if matches!((a, c), (Value::Date(_), Value::Date(_))) {
                DAY
            } else {
                MS
            };
            let r = if op == Op::DurationBetween {
                datetime::duration_between_in(&x, &y, p, type_prec)
            } else {
                datetime::difference_between(&x, &y, p)
            };
            Ok(match r {
                Between::Exact(n) => i32::try_from(n).map(Value::Integer).unwrap_or(Value::Null),
                Between::Range(lo, hi) => Value::interval(
                    Value::Integer(lo as i32),
                    Value::Integer(hi as i32),
                    true,
                    true,
                ),
            })
        }
    }
}

fn string_op(op: Op, args: &[Value]) -> R<Value> {
    use Value::*;
    let st = |i: usize| match args.get(i) {
        Some(String(s)) => Some(s.clone()),
        _ => None,
    };
    Ok(match op {
        Op::Concatenate => {
            let mut out = std::string::String::new();
            for a in args {
                match a {
                    String(s) => out.push_str(s),
                    _ => return Ok(Null),
                }
            }
            String(Arc::from(out))
        }
        Op::Combine => {
            let Some(l) = args.first().and_then(list_of) else {
                return Ok(Null);
            };
            let sep = st(1).map(|s| s.to_string()).unwrap_or_default();
            let parts: Vec<&str> = l
                .iter()
                .filter_map(|v| match v {
                    String(s) => Some(&**s),
                    _ => None,
                })
                .collect();
            if parts.is_empty() {
                return Ok(Null);
            }
            String(Arc::from(parts.join(&sep)))
        }
        Op::Split => {
            let Some(s) = st(0) else { return Ok(Null) };
            match st(1) {
                None => Value::list(vec![String(s)]),
                Some(sep) if sep.is_empty() => Value::list(vec![String(s)]),
                Some(sep) => Value::list(s.split(&*sep).map(Value::str).collect()),
            }
        }
        Op::Length => match args.first() {
            Some(String(s)) => Integer(s.chars().count() as i32),
            Some(List(l)) => Integer(l.len() as i32),
            Some(Null) => {
                return Ok(Null);
            }
            _ => Null,
        },
        Op::Upper => st(0).map(|s| Value::str(&s.to_uppercase())).unwrap_or(Null),
        Op::Lower => st(0).map(|s| Value::str(&s.to_lowercase())).unwrap_or(Null),
        Op::Indexer => match (args.first(), args.get(1).and_then(int_arg)) {
            (Some(String(s)), Some(i)) => {
                if i < 0 {
                    Null
                } else {
                    s.chars()
                        .nth(i as usize)
                        .map(|c| Value::str(&c.to_string()))
                        .unwrap_or(Null)
                }
            }
            (Some(List(l)), Some(i)) => {
                if i < 0 {
                    Null
                } else {
                    l.get(i as usize).cloned().unwrap_or(Null)
                }
            }
            _ => Null,
        },
        Op::PositionOf | Op::LastPositionOf => match (st(0), st(1)) {
            (Some(p), Some(s)) => {
                let r = if op == Op::PositionOf {
                    s.find(&*p)
                } else {
                    s.rfind(&*p)
                };
                Integer(r.map(|i| s[..i].chars().count() as i32).unwrap_or(-1))
            }
            _ => Null,
        },
        Op::Substring => {
            let Some(s) = st(0) else { return Ok(Null) };
            let Some(start) = args.get(1).and_then(int_arg) else {
                return Ok(Null);
            };
            let chars: Vec<char> = s.chars().collect();
            if start < 0 || start as usize >= chars.len() {
                return Ok(Null);
            }
            let end = match args.get(2) {
                Some(Null) | None => chars.len(),
                Some(v) => match int_arg(v) {
                    Some(l) if l >= 0 => (start as usize + l as usize).min(chars.len()),
                    _ => return Ok(Null),
                },
            };
            String(Arc::from(
                chars[start as usize..end]
                    .iter()
                    .collect::<std::string::String>(),
            ))
        }
        Op::StartsWith => match (st(0), st(1)) {
            (Some(s), Some(p)) => Boolean(s.starts_with(&*p)),
            _ => Null,
        },
        Op::EndsWith => match (st(0), st(1)) {
            (Some(s), Some(p)) => Boolean(s.ends_with(&*p)),
            _ => Null,
        },
        Op::Matches => match (st(0), st(1)) {
            (Some(s), Some(p)) => b(crate::regex::full_match(&p, &s)),
            _ => Null,
        },
        Op::ReplaceMatches => match (st(0), st(1), st(2)) {
            (Some(s), Some(p), Some(r)) => crate::regex::replace_all(&p, &s, &r)
                .map(|x| Value::str(&x))
                .unwrap_or(Null),
            _ => Null,
        },
        Op::SplitOnMatches => match (st(0), st(1)) {
            (Some(s), Some(p)) => crate::regex::split(&p, &s)
                .map(|v| Value::list(v.iter().map(|x| Value::str(x)).collect()))
                .unwrap_or(Null),
            _ => Null,
        },
        _ => return e(format!("string operator {op:?} not supported")),
    })
}

fn round_op(op: Op, v: &Value, arg: Option<&Value>) -> R<Value> {
    let Some(d) = as_decimal(v) else {
        return Ok(match v {
            Value::Quantity(q) if op == Op::Abs => Value::Quantity(Quantity {
                value: q.value.abs(),
                unit: q.unit.clone(),
            }),
            Value::Quantity(q) if op == Op::Negate => Value::Quantity(Quantity {
                value: -q.value,
                unit: q.unit.clone(),
            }),
            _ => Value::Null,
        });
    };
    Ok(match op {
        Op::Negate => match v {
            Value::Integer(i) => i.checked_neg().map(Value::Integer).unwrap_or(Value::Null),
            Value::Long(i) => i.checked_neg().map(Value::Long).unwrap_or(Value::Null),
            _ => Value::Decimal(-d),
        },
        Op::Abs => match v {
            Value::Integer(i) => i.checked_abs().map(Value::Integer).unwrap_or(Value::Null),
            Value::Long(i) => i.checked_abs().map(Value::Long).unwrap_or(Value::Null),
            _ => Value::Decimal(d.abs()),
        },
        Op::Ceiling => d.ceil().to_i32().map(Value::Integer).unwrap_or(Value::Null),
        Op::Floor => d
            .floor()
            .to_i32()
            .map(Value::Integer)
            .unwrap_or(Value::Null),
        Op::Truncate => d
            .trunc()
            .to_i32()
            .map(Value::Integer)
            .unwrap_or(Value::Null),
        Op::Round => {
            let p = arg.and_then(int_arg).unwrap_or(0).clamp(0, 8) as u32;
            let r = if d.is_sign_negative() {
                // round half toward positive infinity
                let scaled = d * Dec::from(10i64.pow(p));
                let f = scaled.fract().abs();
                let t = scaled.trunc();
                let t = if f > Dec::new(5, 1) { t - Dec::ONE } else { t };
                t / Dec::from(10i64.pow(p))
            } else {
                d.round_dp_with_strategy(p, RoundingStrategy::MidpointAwayFromZero)
            };
            Value::Decimal(r)
        }
        Op::Ln => {
            if d.is_zero() {
                return e("Ln(0) is undefined");
            } else if d < Dec::ZERO {
                Value::Null
            } else {
                d.checked_ln().map(dec_result).unwrap_or(Value::Null)
            }
        }
        Op::Exp => match d.checked_exp() {
            Some(x) => dec_result(x),
            None => return e("Exp result out of range"),
        },
        _ => return e(format!("operator {op:?} not supported")),
    })
}

/// Evaluates one operator on evaluated operands; `cx` is the evaluation request's context (the
/// timestamp of `Now()`, `Today()`, `TimeOfDay()` and `CalculateAge`).
pub fn apply(cx: &crate::EvalContext, op: Op, a: &[Value], prec: Option<Prec>) -> R<Value> {
    use Value::*;
    let a0 = a.first().unwrap_or(&Null);
    let a1 = a.get(1).unwrap_or(&Null);
    Ok(match op {
        Op::Add | Op::Subtract | Op::Multiply | Op::Divide | Op::TruncatedDivide | Op::Modulo => {
            arith(op, a0, a1)?
        }
        Op::Negate
        | Op::Abs
        | Op::Ceiling
        | Op::Floor
        | Op::Truncate
        | Op::Round
        | Op::Ln
        | Op::Exp => round_op(op, a0, a.get(1))?,
        Op::Log => match (as_decimal(a0), as_decimal(a1)) {
            (Some(x), Some(base)) => {
                if x <= Dec::ZERO || base <= Dec::ZERO || base == Dec::ONE {
                    Null
                } else {
                    match (x.checked_ln(), base.checked_ln()) {
                        (Some(p), Some(q)) if !q.is_zero() => dec_result(p / q),
                        _ => Null,
                    }
                }
            }
            _ => Null,
        },
        Op::Power => match (a0, a1) {
            (Integer(x), Integer(y)) => {
                if *y >= 0 {
                    x.checked_pow(*y as u32).map(Integer).unwrap_or(Null)
                } else {
                    dec_result(
                        Dec::ONE / Dec::from(x.checked_pow(y.unsigned_abs()).unwrap_or(0).max(1)),
                    )
                }
            }
            (Long(x), Long(y)) if *y >= 0 => x.checked_pow(*y as u32).map(Long).unwrap_or(Null),
            (Long(x), Integer(y)) if *y >= 0 => x.checked_pow(*y as u32).map(Long).unwrap_or(Null),
            _ => match (as_decimal(a0), as_decimal(a1)) {
                (Some(x), Some(y)) => {
                    if y.fract().is_zero() {
                        x.checked_powi(y.to_i64().unwrap_or(0))
                            .map(dec_result)
                            .unwrap_or(Null)
                    } else {
                        x.checked_powd(y).map(dec_result).unwrap_or(Null)
                    }
                }
                _ => Null,
            },
        },
        Op::Successor => {
            if a0.is_null() {
                Null
            } else {
                match iv::successor(a0) {
                    Some(v) => v,
                    None => return e("Successor: value is the maximum of its type"),
                }
            }
        }
        Op::Predecessor => {
            if a0.is_null() {
                Null
            } else {
                match iv::predecessor(a0) {
                    Some(v) => v,
                    None => return e("Predecessor: value is the minimum of its type"),
                }
            }
        }
        Op::Precision => match a0 {
            Decimal(d) => Integer(d.scale() as i32),
            Date(d) => Integer([4, 6, 8][d.prec as usize]),
            DateTime(d) => Integer([4, 6, 8, 10, 12, 14, 17][d.prec as usize]),
            Time(t) => Integer([2, 4, 6, 9][(t.prec - 3) as usize]),
            _ => Null,
        },
        Op::LowBoundary | Op::HighBoundary => boundary(op == Op::HighBoundary, a0, a1),
        Op::MinValue | Op::MaxValue => match a0 {
            String(t) => match min_max(t, op == Op::MaxValue) {
                Some(v) => v,
                None => return e(format!("MinValue/MaxValue not defined for type {t}")),
            },
            _ => Null,
        },
        Op::Equal => b(equal(a0, a1)),
        Op::NotEqual => b(equal(a0, a1).map(|x| !x)),
        Op::Equivalent => Boolean(equivalent(a0, a1)),
        Op::Less | Op::Greater | Op::LessOrEqual | Op::GreaterOrEqual => cmp_op(op, a0, a1),
        Op::Not => match a0 {
            Boolean(x) => Boolean(!x),
            _ => Null,
        },
        Op::Xor => match (a0, a1) {
            (Boolean(x), Boolean(y)) => Boolean(x != y),
            _ => Null,
        },
        Op::Implies => match (a0, a1) {
            (Boolean(false), _) => Boolean(true),
            (_, Boolean(true)) => Boolean(true),
            (Boolean(true), Boolean(false)) => Boolean(false),
            _ => Null,
        },
        Op::IsNull => Boolean(a0.is_null()),
        Op::IsTrue => Boolean(a0.is_true()),
        Op::IsFalse => Boolean(matches!(a0, Boolean(false))),
        Op::Concatenate
        | Op::Combine
        | Op::Split
        | Op::SplitOnMatches
        | Op::Length
        | Op::Upper
        | Op::Lower
        | Op::Indexer
        | Op::PositionOf
        | Op::LastPositionOf
        | Op::Substring
        | Op::StartsWith
        | Op::EndsWith
        | Op::Matches
        | Op::ReplaceMatches => string_op(op, a)?,
        Op::ToBoolean
        | Op::ToInteger
        | Op::ToLong
        | Op::ToDecimal
        | Op::ToString
        | Op::ToDate
        | Op::ToDateTime
        | Op::ToTime
        | Op::ToQuantity
        | Op::ToConcept
        | Op::ToList
        | Op::ToRatio
        | Op::ToChars
        | Op::ConvertsToBoolean
        | Op::ConvertsToInteger
        | Op::ConvertsToLong
        | Op::ConvertsToDecimal
        | Op::ConvertsToString
        | Op::ConvertsToDate
        | Op::ConvertsToDateTime
        | Op::ConvertsToTime
        | Op::ConvertsToQuantity => convert(op, a0)?,
        Op::ConvertQuantity => match (a0, a1) {
            (Quantity(q), String(u)) => match crate::units::convert(q, u) {
                Some(q) => Quantity(q),
                None => {
                    return e(format!(
                        "cannot convert a quantity from unit `{}` to `{u}`",
                        q.unit
                    ))
                }
            },
            _ => Null,
        },
        Op::CanConvertQuantity => match (a0, a1) {
            (Quantity(q), String(u)) => Boolean(crate::units::convert(q, u).is_some()),
            _ => Null,
        },
        Op::Today => Date(cx.today()),
        Op::Now => DateTime(cx.now()),
        Op::TimeOfDay => Time(cx.time_of_day()),
        Op::DateFrom => match a0 {
            DateTime(d) => Date(d.date()),
            Date(_) => a0.clone(),
            _ => Null,
        },
        Op::TimeFrom => match a0 {
            DateTime(d) => d.time().map(Time).unwrap_or(Null),
            _ => Null,
        },
        Op::TimezoneOffsetFrom => match a0 {
            DateTime(d) => {
                Decimal(rust_decimal::Decimal::from(d.off as i64) / rust_decimal::Decimal::from(60))
            }
            _ => Null,
        },
        Op::DateTimeComponentFrom => {
            let p = prec.unwrap_or(YEAR);
            match a0 {
                DateTime(d) if p <= d.prec => Integer(d.c[p as usize]),
                Date(d) if p <= d.prec => Integer(d.c[p as usize]),
                Time(t) if p >= HOUR && p <= t.prec => Integer(t.c[(p - 3) as usize]),
                _ => Null,
            }
        }
        Op::DurationBetween | Op::DifferenceBetween => between(op, a0, a1, prec)?,
        Op::CalculateAgeAt => between(Op::DurationBetween, a0, a1, prec.or(Some(YEAR)))?,
        Op::CalculateAge => {
            let today = Date(cx.today());
            between(Op::DurationBetween, a0, &today, prec.or(Some(YEAR)))?
        }
        Op::SameAs | Op::SameOrBefore | Op::SameOrAfter => {
            if a0.is_null() || a1.is_null() {
                Null
            } else if as_interval(a0).is_some() || as_interval(a1).is_some() {
                let x = as_interval(a0)
                    .cloned()
                    .unwrap_or_else(|| point_interval(a0));
                let y = as_interval(a1)
                    .cloned()
                    .unwrap_or_else(|| point_interval(a1));
                match op {
                    Op::SameOrBefore => b(iv::le(&iv::high_pt(&x), &iv::low_pt(&y), prec)),
                    Op::SameOrAfter => b(iv::le(&iv::high_pt(&y), &iv::low_pt(&x), prec)),
                    _ => b(and3(
                        iv::eqp(&iv::low_pt(&x), &iv::low_pt(&y), prec),
                        iv::eqp(&iv::high_pt(&x), &iv::high_pt(&y), prec),
                    )),
                }
            } else {
                let o = same_cmp(a0, a1, prec);
                b(o.map(|o| match op {
                    Op::SameAs => o == Ordering::Equal,
                    Op::SameOrBefore => o != Ordering::Greater,
                    _ => o != Ordering::Less,
                }))
            }
        }
        Op::Before | Op::After => {
            if a0.is_null() || a1.is_null() {
                return Ok(Null);
            }
            let before = op == Op::Before;
            match (as_interval(a0), as_interval(a1)) {
                (None, None) => {
                    let o = same_cmp(a0, a1, prec);
                    b(o.map(|o| {
                        if before {
                            o == Ordering::Less
                        } else {
                            o == Ordering::Greater
                        }
                    }))
                }
                (x, y) => {
                    let x = x.cloned().unwrap_or_else(|| point_interval(a0));
                    let y = y.cloned().unwrap_or_else(|| point_interval(a1));
                    if before {
                        b(iv::before(&x, &y, prec))
                    } else {
                        b(iv::before(&y, &x, prec))
                    }
                }
            }
        }
        Op::Start => match a0 {
            Interval(i) => iv::start(i),
            _ => Null,
        },
        Op::End => match a0 {
            Interval(i) => iv::end(i),
            _ => Null,
        },
        Op::Width => match a0 {
            Interval(i)
                if matches!(i.low, Date(_) | DateTime(_) | Time(_))
                    || matches!(i.high, Date(_) | DateTime(_) | Time(_)) =>
            {
                return e("Width is not defined for date/time intervals")
            }
            Interval(i) => iv::width(i),
            _ => Null,
        },
        Op::Size => match a0 {
            Interval(i) => match iv::width(i) {
                Null => Null,
                w => arith(Op::Add, &w, &one_like(&w)).unwrap_or(Null),
            },
            _ => Null,
        },
        Op::PointFrom => match a0 {
            Interval(i) => {
                let (s, en) = (iv::start(i), iv::end(i));
                if equal(&s, &en) == Some(true) {
                    s
                } else {
                    return e("PointFrom requires a unit interval");
                }
            }
            _ => Null,
        },
        Op::In | Op::Contains | Op::ProperIn | Op::ProperContains => {
            let (elem, coll) = if matches!(op, Op::In | Op::ProperIn) {
                (a0, a1)
            } else {
                (a1, a0)
            };
            let proper = matches!(op, Op::ProperIn | Op::ProperContains);
            match coll {
                Null => Boolean(false),
                List(l) => {
                    let r = list_contains(l, elem);
                    if proper {
                        b(r.map(|r| r && l.len() > 1))
                    } else {
                        b(r)
                    }
                }
                Interval(i) => {
                    if elem.is_null() {
                        Null
                    } else if let Interval(inner) = elem {
                        if proper {
                            b(iv::proper_includes(i, inner, prec))
                        } else {
                            b(iv::includes(i, inner, prec))
                        }
                    } else if proper {
                        let c = iv::contains_point(i, elem, prec);
                        let not_bounds = and3(
                            iv::eqp(&iv::low_pt(i), &iv::Pt::V(elem.clone()), prec).map(|x| !x),
                            iv::eqp(&iv::high_pt(i), &iv::Pt::V(elem.clone()), prec).map(|x| !x),
                        );
                        b(and3(c, not_bounds))
                    } else {
                        b(iv::contains_point(i, elem, prec))
                    }
                }
                _ => return e(format!("{op:?} is not defined for a {}", coll.type_name())),
            }
        }
        Op::Includes | Op::IncludedIn | Op::ProperIncludes | Op::ProperIncludedIn => {
            let (big, small) = if matches!(op, Op::Includes | Op::ProperIncludes) {
                (a0, a1)
            } else {
                (a1, a0)
            };
            let proper = matches!(op, Op::ProperIncludes | Op::ProperIncludedIn);
            match (big, small) {
                (Null, List(_)) => Null,
                (Null, _) if matches!(op, Op::ProperIncludes) => Boolean(false),
                (Null, _) | (_, Null) => Null,
                (List(x), List(y)) => {
                    let all = y.iter().all(|v| list_contains(x, v) == Some(true));
                    if proper {
                        Boolean(all && x.len() > y.len())
                    } else {
                        Boolean(all)
                    }
                }
                (List(x), other) => b(list_contains(x, other)),
                (Interval(x), Interval(y)) => {
                    if proper {
                        b(iv::proper_includes(x, y, prec))
                    } else {
                        b(iv::includes(x, y, prec))
                    }
                }
                (Interval(x), p) => b(iv::contains_point(x, p, prec)),
                _ => {
                    return e(format!(
                        "{op:?} is not defined for {} and {}",
                        big.type_name(),
                        small.type_name()
                    ))
                }
            }
        }
        Op::Overlaps
        | Op::OverlapsBefore
        | Op::OverlapsAfter
        | Op::Meets
        | Op::MeetsBefore
        | Op::MeetsAfter
        | Op::Starts
        | Op::Ends => {
            if a0.is_null() || a1.is_null() {
                return Ok(Null);
            }
            let x = as_interval(a0)
                .cloned()
                .unwrap_or_else(|| point_interval(a0));
            let y = as_interval(a1)
                .cloned()
                .unwrap_or_else(|| point_interval(a1));
            b(match op {
                Op::Overlaps => iv::overlaps(&x, &y, prec),
                Op::OverlapsBefore => and3(
                    iv::overlaps(&x, &y, prec),
                    iv::lt(&iv::low_pt(&x), &iv::low_pt(&y), prec),
                ),
                Op::OverlapsAfter => and3(
                    iv::overlaps(&x, &y, prec),
                    iv::lt(&iv::high_pt(&y), &iv::high_pt(&x), prec),
                ),
                Op::Meets => or3(
                    iv::meets_before(&x, &y, prec),
                    iv::meets_before(&y, &x, prec),
                ),
                Op::MeetsBefore => iv::meets_before(&x, &y, prec),
                Op::MeetsAfter => iv::meets_before(&y, &x, prec),
                Op::Starts => iv::starts(&x, &y, prec),
                _ => iv::ends(&x, &y, prec),
            })
        }
        Op::Union | Op::Intersect | Op::Except => match (a0, a1) {
            (List(x), List(y)) => match op {
                Op::Union => {
                    let mut all: Vec<Value> = x.iter().cloned().collect();
                    all.extend(y.iter().cloned());
                    Value::list(distinct(&all))
                }
                Op::Intersect => Value::list(distinct(
                    &x.iter()
                        .filter(|v| y.iter().any(|w| same(v, w)))
                        .cloned()
                        .collect::<Vec<_>>(),
                )),
                _ => Value::list(distinct(
                    &x.iter()
                        .filter(|v| !y.iter().any(|w| same(v, w)))
                        .cloned()
                        .collect::<Vec<_>>(),
                )),
            },
            (List(x), Null) => match op {
                Op::Union | Op::Except => Value::list(distinct(x)),
                _ => Value::list(vec![]),
            },
            (Null, List(y)) => match op {
                Op::Union => Value::list(distinct(y)),
                _ => Value::list(vec![]),
            },
            (Interval(x), Interval(y)) => {
                let r = match op {
                    Op::Union => iv::union(x, y),
                    Op::Intersect => iv::intersect(x, y),
                    _ => iv::except(x, y),
                };
                r.unwrap_or(Null)
            }
            (Null, _) | (_, Null) => Null,
            _ => {
                return e(format!(
                    "{op:?} is not defined for {} and {}",
                    a0.type_name(),
                    a1.type_name()
                ))
            }
        },
        Op::Collapse => match a0 {
            List(l) => collapse(l, a1)?,
            _ => Null,
        },
        Op::Expand => expand(a0, a1)?,
        Op::Exists => match a0 {
            List(l) => Boolean(l.iter().any(|v| !v.is_null())),
            Null => Boolean(false),
            _ => Boolean(true),
        },
        Op::SingletonFrom => match a0 {
            List(l) => match l.len() {
                0 => Null,
                1 => l[0].clone(),
                _ => return e("SingletonFrom: the list has more than one element"),
            },
            Null => Null,
            other => other.clone(),
        },
        Op::First => match a0 {
            List(l) => l.first().cloned().unwrap_or(Null),
            _ => Null,
        },
        Op::Last => match a0 {
            List(l) => l.last().cloned().unwrap_or(Null),
            _ => Null,
        },
        Op::Flatten => match a0 {
            List(l) => {
                let mut out = Vec::new();
                for v in l.iter() {
                    match v {
                        List(inner) => out.extend(inner.iter().cloned()),
                        other => out.push(other.clone()),
                    }
                }
                Value::list(out)
            }
            _ => Null,
        },
        Op::Distinct => match a0 {
            List(l) => Value::list(distinct(l)),
            _ => Null,
        },
        Op::IndexOf => match (a0, a1) {
            (List(l), x) if !x.is_null() => Integer(
                l.iter()
                    .position(|v| equal(v, x) == Some(true))
                    .map(|i| i as i32)
                    .unwrap_or(-1),
            ),
            _ => Null,
        },
        Op::Slice => match a0 {
            List(l) => {
                let start = int_arg(a1).unwrap_or(0).max(0) as usize;
                let end = a
                    .get(2)
                    .and_then(int_arg)
                    .map(|x| x.max(0) as usize)
                    .unwrap_or(l.len())
                    .min(l.len());
                if start >= end {
                    Value::list(vec![])
                } else {
                    Value::list(l[start..end].to_vec())
                }
            }
            _ => Null,
        },
        Op::ListSort => match a0 {
            List(l) => {
                let mut v: Vec<Value> = l.iter().cloned().collect();
                v.sort_by(crate::value::sort_cmp);
                if a1.is_true() {
                    v.reverse();
                }
                Value::list(v)
            }
            _ => Null,
        },
        Op::PluckPath => match (a0, a1) {
            (List(l), String(p)) => {
                Value::list(l.iter().map(|v| crate::engine::property(v, p)).collect())
            }
            _ => Null,
        },
        _ if op.is_aggregate() => match a0 {
            List(l) => aggregate(op, l)?,
            Null => match op {
                Op::Count => Integer(0),
                Op::AllTrue => Boolean(true),
                Op::AnyTrue => Boolean(false),
                _ => Null,
            },
            _ => return e(format!("aggregate {op:?} requires a list")),
        },
        Op::ExpandValueSet => match a0 {
            ValueSet(vs) => {
                Value::list(vs.list.iter().map(|c| Code(Arc::new(c.clone()))).collect())
            }
            Null => Null,
            _ => return e("ExpandValueSet requires a value set"),
        },
        Op::InCodeSystem | Op::AnyInCodeSystem => {
            let id = match crate::engine::property(a1, "id") {
                String(s) => s,
                _ => return e("code system membership requires a code system"),
            };
            fn in_cs(v: &Value, id: &str) -> bool {
                match v {
                    Value::Code(c) => c.system.as_deref() == Some(id),
                    Value::Concept(c) => c.codes.iter().any(|x| x.system.as_deref() == Some(id)),
                    Value::List(l) => l.iter().any(|x| in_cs(x, id)),
                    _ => false,
                }
            }
            Boolean(in_cs(a0, &id))
        }
        Op::Times => match (a0, a1) {
            (List(x), List(y)) => {
                let mut out = Vec::with_capacity(x.len() * y.len());
                for p in x.iter() {
                    for q in y.iter() {
                        let mut t: Vec<(Arc<str>, Value)> = match p {
                            Tuple(t) => (**t).clone(),
                            _ => vec![],
                        };
                        if let Tuple(u) = q {
                            t.extend(u.iter().cloned());
                        }
                        out.push(Tuple(Arc::new(t)));
                    }
                }
                Value::list(out)
            }
            _ => Null,
        },
        Op::InValueSet | Op::AnyInValueSet => match a1 {
            ValueSet(vs) => {
                if a0.is_null() {
                    Boolean(false)
                } else {
                    b(crate::engine::in_valueset(a0, vs).or(Some(false)))
                }
            }
            _ => return e("value set membership requires a value set"),
        },
        Op::DateSel | Op::DateTimeSel | Op::TimeSel => date_ctor(op, a, prec.unwrap_or(0))?,
        Op::RatioSel => match (a0, a1) {
            (Quantity(x), Quantity(y)) => Ratio(Arc::new((x.clone(), y.clone()))),
            _ => Null,
        },
        Op::Error => return e(format!("evaluation error: {}", to_string(a0).to_json())),
        _ => return e(format!("operator {op:?} is not implemented")),
    })
}

fn one_like(v: &Value) -> Value {
    match v {
        Value::Integer(_) => Value::Integer(1),
        Value::Long(_) => Value::Long(1),
        Value::Decimal(_) => Value::Decimal(Dec::new(1, 8)),
        Value::Quantity(q) => Value::Quantity(Quantity {
            value: Dec::new(1, 8),
            unit: q.unit.clone(),
        }),
        _ => Value::Null,
    }
}

fn boundary(high: bool, v: &Value, p: &Value) -> Value {
    match v {
        Value::Decimal(d) => {
            let p = int_arg(p).unwrap_or(8);
            if !(0..=8).contains(&p) {
                return Value::Null;
            }
            let s = d.scale() as i64;
            if p < s {
                return Value::Null;
            }
            let mut r = *d;
            r.rescale(p as u32);
            if high {
                // add 9s beyond the current scale
                let extra = p - s;
                if extra > 0 {
                    let nines = Dec::new(10i64.pow(extra as u32) - 1, p as u32);
                    let nines = if d.is_sign_negative() { -nines } else { nines };
                    let nines = if high && d.is_sign_negative() {
                        Dec::ZERO
                    } else {
                        nines
                    };
                    r += nines;
                }
            } else if d.is_sign_negative() {
                let extra = p - s;
                if extra > 0 {
                    r -= Dec::new(10i64.pow(extra as u32) - 1, p as u32);
                }
            }
            Value::Decimal(r)
        }
        Value::Date(d) => {
            let pr = match int_arg(p) {
                Some(4) => YEAR,
                Some(6) => MONTH,
                _ => DAY,
            };
            let mut x = *d;
            for i in (d.prec as usize + 1)..=(pr as usize) {
                x.c[i] = if high {
                    if i == 1 {
                        12
                    } else {
                        datetime::days_in_month(x.c[0], x.c[1] as u8) as i32
                    }
                } else {
                    1
                };
            }
            x.prec = pr.max(d.prec);
            Value::Date(x)
        }
        Value::DateTime(d) => {
            let pr = match int_arg(p) {
                Some(4) => YEAR,
                Some(6) => MONTH,
                Some(8) => DAY,
                Some(10) => HOUR,
                Some(12) => datetime::MINUTE,
                Some(14) => datetime::SECOND,
                _ => MS,
            };
            let full = if high { d.fill_max() } else { d.fill_min() };
            let mut x = full.truncate(pr);
            if high {
                x = full;
                x.prec = pr;
            }
            if pr < d.prec {
                return Value::Null;
            }
            Value::DateTime(x)
        }
        Value::Time(t) => {
            let pr = match int_arg(p) {
                Some(2) => HOUR,
                Some(4) => datetime::MINUTE,
                Some(6) => datetime::SECOND,
                _ => MS,
            };
            let mut x = *t;
            let maxes = [23, 59, 59, 999];
            for i in ((t.prec - 3) as usize + 1)..=((pr - 3) as usize) {
                x.c[i] = if high { maxes[i] } else { 0 };
            }
            x.prec = pr.max(t.prec);
            Value::Time(x)
        }
        _ => Value::Null,
    }
}

fn date_ctor(op: Op, a: &[Value], present: u8) -> R<Value> {
    let mut c = [0i32, 1, 1, 0, 0, 0, 0];
    let n = match op {
        Op::DateSel => 3,
        Op::DateTimeSel => 7,
        _ => 4,
    };
    let mut prec: i32 = -1;
    for i in 0..n {
        let v = a.get(i).unwrap_or(&Value::Null);
        if present & (1 << i) == 0 || v.is_null() {
            break;
        }
        let Some(x) = int_arg(v) else {
            return e("date/time component is not an integer");
        };
        let idx = if op == Op::TimeSel { i + 3 } else { i };
        c[idx] = x as i32;
        prec = idx as i32;
    }
    if prec < 0 {
        if op == Op::TimeSel {
            return Ok(Value::Null);
        }
        return Ok(Value::Null);
    }
    let p = prec as Prec;
    let valid = |c: &[i32; 7]| {
        (1..=9999).contains(&c[0])
            && (1..=12).contains(&c[1])
            && c[2] >= 1
            && c[2] <= datetime::days_in_month(c[0], c[1] as u8) as i32
            && (0..=23).contains(&c[3])
            && (0..=59).contains(&c[4])
            && (0..=59).contains(&c[5])
            && (0..=999).contains(&c[6])
    };
    let mut check = c;
    if op == Op::TimeSel {
        check[0] = 2000;
    }
    if !valid(&check) {
        return e("invalid date/time components");
    }
    Ok(match op {
        Op::DateSel => Value::Date(Date {
            c: [c[0], c[1], c[2]],
            prec: p,
        }),
        Op::DateTimeSel => {
            let off = match a.get(7) {
                Some(v) if present & (1 << 7) != 0 && !v.is_null() => match as_decimal(v) {
                    Some(d) => (d * Dec::from(60)).round().to_i16().unwrap_or(0),
                    None => 0,
                },
                _ => 0,
            };
            Value::DateTime(DateTime::new(c, off, p))
        }
        _ => Value::Time(Time {
            c: [c[3], c[4], c[5], c[6]],
            prec: p.max(HOUR),
        }),
    })
}
