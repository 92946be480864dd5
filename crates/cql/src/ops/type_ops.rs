//! Type operators: literals, conversions (`ToX`, `ConvertsToX`, `ConvertQuantity`), type
//! specifiers and the runtime type test behind `As`, `Is` and function overload resolution.

use super::arithmetic::max_decimal;
use super::{operand, Op};
use crate::datetime::{self, Prec};
use crate::engine::{json_array, json_str, Compiler, Expr, Scope};
use crate::fhir;
use crate::value::{as_decimal, Quantity, Value};
use crate::{fail, CqlResult, EvalContext};
use rust_decimal::prelude::*;
use rust_decimal::Decimal as Dec;
use serde_json::Value as Json;
use std::sync::Arc;

pub(super) use super::compile_operands as compile;

pub(super) fn apply(
    _cx: &EvalContext,
    op: Op,
    args: &[Value],
    _prec: Option<Prec>,
) -> CqlResult<Value> {
    let (a0, a1) = (operand(args, 0), operand(args, 1));
    Ok(match op {
        Op::ConvertQuantity => match (a0, a1) {
            (Value::Quantity(q), Value::String(u)) => match crate::units::convert(q, u) {
                Some(q) => Value::Quantity(q),
                None => {
                    return fail(format!(
                        "cannot convert a quantity from unit `{}` to `{u}`",
                        q.unit
                    ))
                }
            },
            _ => Value::Null,
        },
        Op::CanConvertQuantity => match (a0, a1) {
            (Value::Quantity(q), Value::String(u)) => {
                Value::Boolean(crate::units::convert(q, u).is_some())
            }
            _ => Value::Null,
        },
        _ => convert(op, a0)?,
    })
}

/// The value of an ELM `Literal` of type `vt` (e.g. `{urn:hl7-org:elm-types:r1}Integer`);
/// `None` when the text is not a valid value of that type.
pub fn literal(vt: &str, v: Option<&Json>) -> Option<Value> {
    let (_, t) = vt.rsplit_once('}').unwrap_or(("", vt));
    let raw = match v {
        None | Some(Json::Null) => return Some(Value::Null),
        Some(Json::String(s)) => s.clone(),
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

/// A CQL Decimal: at most 8 decimal places, magnitude below 10^20.
fn parse_decimal(s: &str) -> Option<Dec> {
    let d = Dec::from_str(s).or_else(|_| Dec::from_scientific(s)).ok()?;
    if d.scale() > 8 {
        return None;
    }
    if d.abs() > max_decimal() {
        return None;
    }
    Some(d)
}

fn quantity_to_string(q: &Quantity) -> String {
    format!("{} '{}'", q.value.normalize(), q.unit)
}

/// `ToString`.
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
            fhir::J::Str(s) => s.to_string(),
            _ => return Value::Null,
        },
        _ => return Value::Null,
    };
    Value::String(Arc::from(s))
}

/// A Quantity written as `5 'mg'` (or a bare number, of unit `1`).
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

/// `ToX` and `ConvertsToX`.
pub(super) fn convert(op: Op, v: &Value) -> CqlResult<Value> {
    use Value::*;
    if v.is_null() {
        return Ok(Null);
    }
    // a FHIR element reaching a System conversion: convert it to its System value first
    if let Resource(n) = v {
        if n.resource_type().is_none() {
            if let Ok(sys) = fhir::to_value(n) {
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
            Decimal(d) if *d == Dec::ONE => Boolean(true),
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
            Boolean(b) => Decimal(Dec::from(*b as i32)),
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
                _ => return super::not_implemented(op),
            };
            Boolean(!convert(target, v)?.is_null())
        }
    })
}

/// A compiled ELM type specifier.
#[derive(Debug, Clone)]
pub(crate) enum TypeSpec {
    System(Arc<str>),
    Fhir(Arc<str>),
    List(Box<TypeSpec>),
    Interval(Box<TypeSpec>),
    Tuple,
    Choice(Vec<TypeSpec>),
    Any,
}

/// Splits an ELM type name into (is a System type, local name):
/// `{urn:hl7-org:elm-types:r1}Integer` -> (true, `Integer`), `{http://hl7.org/fhir}Period` ->
/// (false, `Period`), `System.String` -> (true, `String`).
pub(crate) fn local_type(name: &str) -> (bool, Arc<str>) {
    if let Some(rest) = name.strip_prefix('{') {
        if let Some((ns, local)) = rest.split_once('}') {
            return (ns.contains("elm-types"), Arc::from(local));
        }
    }
    if let Some((ns, local)) = name.split_once('.') {
        return (ns == "System", Arc::from(local));
    }
    (true, Arc::from(name))
}

/// The type of an ELM type specifier node.
pub(crate) fn type_specifier(j: &Json) -> TypeSpec {
    match json_str(j, "type") {
        Some("NamedTypeSpecifier") => named_type(json_str(j, "name").unwrap_or("")),
        Some("ListTypeSpecifier") => TypeSpec::List(Box::new(
            j.get("elementType")
                .map(type_specifier)
                .unwrap_or(TypeSpec::Any),
        )),
        Some("IntervalTypeSpecifier") => TypeSpec::Interval(Box::new(
            j.get("pointType")
                .map(type_specifier)
                .unwrap_or(TypeSpec::Any),
        )),
        Some("TupleTypeSpecifier") => TypeSpec::Tuple,
        Some("ChoiceTypeSpecifier") => choice(j),
        _ => {
            if j.get("choice").is_some() {
                choice(j)
            } else {
                TypeSpec::Any
            }
        }
    }
}

fn choice(j: &Json) -> TypeSpec {
    TypeSpec::Choice(json_array(j, "choice").iter().map(type_specifier).collect())
}

/// The type of an ELM type name.
fn named_type(name: &str) -> TypeSpec {
    let (sys, local) = local_type(name);
    if sys {
        if &*local == "Any" {
            TypeSpec::Any
        } else {
            TypeSpec::System(local)
        }
    } else {
        TypeSpec::Fhir(local)
    }
}

/// The type an `As` or `Is` node tests for: its type specifier (`asTypeSpecifier` under
/// `spec_key`) or else its type name (`asType` under `name_key`).
fn tested_type(node: &Json, spec_key: &str, name_key: &str) -> TypeSpec {
    match (node.get(spec_key), json_str(node, name_key)) {
        (Some(ts), _) => type_specifier(ts),
        (None, Some(n)) => named_type(n),
        _ => TypeSpec::Any,
    }
}

/// An `As` node.
pub(crate) fn compile_as(c: &mut Compiler, node: &Json, scope: &mut Scope) -> CqlResult<Expr> {
    let ty = tested_type(node, "asTypeSpecifier", "asType");
    let operand = c.expr_or_null(node.get("operand"), scope)?;
    Ok(Expr::As {
        operand: Box::new(operand),
        ty,
        strict: node
            .get("strict")
            .and_then(|b| b.as_bool())
            .unwrap_or(false),
    })
}

/// An `Is` node.
pub(crate) fn compile_is(c: &mut Compiler, node: &Json, scope: &mut Scope) -> CqlResult<Expr> {
    let ty = tested_type(node, "isTypeSpecifier", "isType");
    Ok(Expr::Is {
        operand: Box::new(c.expr_or_null(node.get("operand"), scope)?),
        ty,
    })
}

/// `As`: `v` when it is of type `ty` (or when that cannot be told), else null; a `strict` cast
/// fails instead.
pub(crate) fn as_type(v: Value, ty: &TypeSpec, strict: bool) -> CqlResult<Value> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    match matches_type(&v, ty) {
        Some(true) | None => Ok(v),
        Some(false) => {
            if strict {
                return fail(format!("strict cast of a {} value failed", v.type_name()));
            }
            Ok(Value::Null)
        }
    }
}

/// `Is`: false for null.
pub(crate) fn is_type(v: &Value, ty: &TypeSpec) -> Value {
    if v.is_null() {
        return Value::Boolean(false);
    }
    Value::Boolean(matches_type(v, ty) == Some(true))
}

/// Runtime type test. `None` = cannot tell.
pub(crate) fn matches_type(v: &Value, t: &TypeSpec) -> Option<bool> {
    match t {
        TypeSpec::Any => Some(true),
        TypeSpec::Choice(c) => {
            let mut unknown = false;
            for x in c {
                match matches_type(v, x) {
                    Some(true) => return Some(true),
                    None => unknown = true,
                    _ => {}
                }
            }
            if unknown {
                None
            } else {
                Some(false)
            }
        }
        TypeSpec::List(el) => match v {
            Value::List(l) => match l.iter().find(|x| !x.is_null()) {
                Some(first) => Some(matches_type(first, el) != Some(false)),
                None => Some(true),
            },
            _ => Some(false),
        },
        TypeSpec::Interval(p) => match v {
            Value::Interval(i) => {
                let s = if i.low.is_null() { &i.high } else { &i.low };
                if s.is_null() {
                    Some(true)
                } else {
                    matches_type(s, p)
                }
            }
            _ => Some(false),
        },
        TypeSpec::Tuple => Some(matches!(v, Value::Tuple(_))),
        TypeSpec::System(n) => Some(match (&**n, v) {
            ("Boolean", Value::Boolean(_)) => true,
            ("Integer", Value::Integer(_)) => true,
            ("Long", Value::Long(_)) => true,
            ("Decimal", Value::Decimal(_)) => true,
            ("String", Value::String(_)) => true,
            ("Date", Value::Date(_)) => true,
            ("DateTime", Value::DateTime(_)) => true,
            ("Time", Value::Time(_)) => true,
            ("Quantity", Value::Quantity(_)) => true,
            ("Ratio", Value::Ratio(_)) => true,
            ("Code", Value::Code(_)) => true,
            ("Concept", Value::Concept(_)) => true,
            ("Vocabulary" | "ValueSet", Value::ValueSet(_)) => true,
            (_, Value::Resource(_)) => return None,
            _ => false,
        }),
        TypeSpec::Fhir(n) => match v {
            Value::Resource(node) => fhir::is_type(node, n),
            // System values where a FHIR type is expected (e.g. after conversion)
            _ => Some(false),
        },
    }
}
