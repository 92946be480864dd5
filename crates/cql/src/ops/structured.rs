//! Structured values: property access, the `Tuple`, `Instance` and `Ratio` selectors.
//! `Children` and `Descendents` are recognized but not implemented (an error when evaluated).

use super::type_ops::local_type;
use super::{operand, Op};
use crate::datetime::Prec;
use crate::engine::{json_array, json_str, Compiler, Expr, Scope};
use crate::fhir;
use crate::value::{as_decimal, Code, Concept, Quantity, Value, ValueSetData};
use crate::{CqlResult, EvalContext};
use serde_json::Value as Json;
use std::sync::Arc;

pub(super) use super::compile_operands as compile;

pub(super) fn apply(
    _cx: &EvalContext,
    op: Op,
    args: &[Value],
    _prec: Option<Prec>,
) -> CqlResult<Value> {
    Ok(match (op, operand(args, 0), operand(args, 1)) {
        (Op::RatioSel, Value::Quantity(x), Value::Quantity(y)) => {
            Value::Ratio(Arc::new((x.clone(), y.clone())))
        }
        (Op::RatioSel, _, _) => Value::Null,
        _ => return super::not_implemented(op),
    })
}

/// A `Ratio` selector node.
pub(crate) fn compile_ratio(c: &mut Compiler, node: &Json, scope: &mut Scope) -> CqlResult<Expr> {
    let n = c.expr_or_null(node.get("numerator"), scope)?;
    let d = c.expr_or_null(node.get("denominator"), scope)?;
    Ok(Expr::Op {
        op: Op::RatioSel,
        args: vec![n, d],
        prec: None,
    })
}

/// The named elements of a `Tuple` or `Instance` node.
fn elements(c: &mut Compiler, node: &Json, scope: &mut Scope) -> CqlResult<Vec<(Arc<str>, Expr)>> {
    let mut out = Vec::new();
    for e in json_array(node, "element") {
        out.push((
            Arc::from(json_str(e, "name").unwrap_or("")),
            c.expr_or_null(e.get("value"), scope)?,
        ));
    }
    Ok(out)
}

/// A `Tuple` selector node.
pub(crate) fn compile_tuple(c: &mut Compiler, node: &Json, scope: &mut Scope) -> CqlResult<Expr> {
    Ok(Expr::Tuple(elements(c, node, scope)?))
}

/// An `Instance` selector node.
pub(crate) fn compile_instance(
    c: &mut Compiler,
    node: &Json,
    scope: &mut Scope,
) -> CqlResult<Expr> {
    let elems = elements(c, node, scope)?;
    let (_, class) = local_type(json_str(node, "classType").unwrap_or(""));
    Ok(Expr::Instance { class, elems })
}

/// The `Instance` selector on evaluated elements: System structured types (`Quantity`, `Code`,
/// `Concept`, `Ratio`, `ValueSet`, `CodeSystem`) become their values, anything else a tuple.
pub fn instance(class: &str, elems: Vec<(Arc<str>, Value)>) -> CqlResult<Value> {
    let get = |n: &str| {
        elems
            .iter()
            .find(|(k, _)| &**k == n)
            .map(|(_, v)| v.clone())
            .unwrap_or(Value::Null)
    };
    let string_of = |v: Value| match v {
        Value::String(s) => Some(s),
        _ => None,
    };
    Ok(match class {
        "Quantity" => {
            let v = as_decimal(&get("value"));
            match v {
                Some(v) => Value::Quantity(Quantity {
                    value: v,
                    unit: string_of(get("unit")).unwrap_or_else(|| Arc::from("1")),
                }),
                None => Value::Null,
            }
        }
        "Code" => Value::Code(Arc::new(Code {
            code: string_of(get("code")).unwrap_or_else(|| Arc::from("")),
            system: string_of(get("system")),
            version: string_of(get("version")),
            display: string_of(get("display")),
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
                display: string_of(get("display")),
            }))
        }
        "Ratio" => match (get("numerator"), get("denominator")) {
            (Value::Quantity(a), Value::Quantity(b)) => Value::Ratio(Arc::new((a, b))),
            _ => Value::Null,
        },
        "ValueSet" | "CodeSystem" => Value::ValueSet(Arc::new(ValueSetData {
            url: string_of(get("id")).unwrap_or_else(|| Arc::from("")),
            ..Default::default()
        })),
        _ => Value::Tuple(Arc::new(elems)),
    })
}

/// A `Property` node: `path` (dotted paths one step per part) of its `scope` alias or its
/// `source`.
pub(crate) fn compile_property(
    c: &mut Compiler,
    node: &Json,
    scope: &mut Scope,
) -> CqlResult<Expr> {
    let path: Arc<str> = Arc::from(json_str(node, "path").unwrap_or(""));
    let src = if let Some(alias) = json_str(node, "scope") {
        match scope.lookup(alias) {
            Some(slot) => Expr::Slot(slot),
            None => return Ok(c.unsupported(node, scope.lib, "unresolved property scope in")),
        }
    } else {
        c.expr_or_null(node.get("source"), scope)?
    };
    let mut e = src;
    for part in path.split('.') {
        e = Expr::Property {
            src: Box::new(e),
            path: Arc::from(part),
        };
    }
    Ok(e)
}

/// Property access on any value.
pub(crate) fn property(v: &Value, path: &str) -> Value {
    match v {
        Value::Null => Value::Null,
        Value::Resource(n) => fhir::property(n, path),
        Value::List(l) => {
            // implicit flatten over lists of elements
            let mut out = Vec::new();
            for x in l.iter() {
                match property(x, path) {
                    Value::Null => {}
                    Value::List(inner) => out.extend(inner.iter().cloned()),
                    other => out.push(other),
                }
            }
            Value::List(Arc::new(out))
        }
        Value::Tuple(t) => t
            .iter()
            .find(|(k, _)| &**k == path)
            .map(|(_, v)| v.clone())
            .unwrap_or(Value::Null),
        Value::Interval(i) => match path {
            "low" => i.low.clone(),
            "high" => i.high.clone(),
            "lowClosed" => Value::Boolean(i.low_closed),
            "highClosed" => Value::Boolean(i.high_closed),
            _ => Value::Null,
        },
        Value::Quantity(q) => match path {
            "value" => Value::Decimal(q.value),
            "unit" => Value::String(q.unit.clone()),
            _ => Value::Null,
        },
        Value::Ratio(r) => match path {
            "numerator" => Value::Quantity(r.0.clone()),
            "denominator" => Value::Quantity(r.1.clone()),
            _ => Value::Null,
        },
        Value::Code(c) => match path {
            "code" => Value::String(c.code.clone()),
            "system" => c.system.clone().map(Value::String).unwrap_or(Value::Null),
            "version" => c.version.clone().map(Value::String).unwrap_or(Value::Null),
            "display" => c.display.clone().map(Value::String).unwrap_or(Value::Null),
            _ => Value::Null,
        },
        Value::Concept(c) => match path {
            "codes" => Value::list(
                c.codes
                    .iter()
                    .map(|x| Value::Code(Arc::new(x.clone())))
                    .collect(),
            ),
            "display" => c.display.clone().map(Value::String).unwrap_or(Value::Null),
            _ => Value::Null,
        },
        _ => Value::Null,
    }
}
