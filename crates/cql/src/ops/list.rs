//! List operators: `exists`, `singleton from`, `First`, `Last`, `flatten`, `distinct`,
//! `IndexOf`, `Slice`, `Sort`, the cartesian product `Times` and the set operators `union`,
//! `intersect`, `except` (of intervals too).

use super::{compile_operands, int_arg, op_node, operand, Op};
use crate::datetime::Prec;
use crate::engine::{json_array, json_str, Compiler, Expr, Scope};
use crate::interval::{except, intersect, union};
use crate::value::{equal, equivalent, sort_cmp, Value};
use crate::{fail, CqlResult, EvalContext};
use serde_json::Value as Json;
use std::sync::Arc;

/// `IndexOf` and `Slice` name their operands; `Sort` takes its direction (the first `by`) as a
/// Boolean operand, true for descending.
pub(super) fn compile(c: &mut Compiler, op: Op, node: &Json, scope: &mut Scope) -> CqlResult<Expr> {
    let args = match op {
        Op::IndexOf => vec![
            c.expr_or_null(node.get("source"), scope)?,
            c.expr_or_null(node.get("element"), scope)?,
        ],
        Op::Slice => vec![
            c.expr_or_null(node.get("source"), scope)?,
            c.expr_or_null(node.get("startIndex"), scope)?,
            c.expr_or_null(node.get("endIndex"), scope)?,
        ],
        Op::ListSort => {
            let src = c.expr_or_null(node.get("source"), scope)?;
            let desc = json_array(node, "by")
                .first()
                .and_then(|b| json_str(b, "direction"))
                .is_some_and(|d| d.starts_with("desc"));
            vec![src, Expr::Lit(Value::Boolean(desc))]
        }
        _ => return compile_operands(c, op, node, scope),
    };
    Ok(op_node(op, args, node))
}

pub(super) fn apply(
    _cx: &EvalContext,
    op: Op,
    args: &[Value],
    _prec: Option<Prec>,
) -> CqlResult<Value> {
    use Value::*;
    let (a0, a1) = (operand(args, 0), operand(args, 1));
    Ok(match op {
        Op::Union | Op::Intersect | Op::Except => set_operation(op, a0, a1)?,
        Op::Exists => match a0 {
            List(l) => Boolean(l.iter().any(|v| !v.is_null())),
            Null => Boolean(false),
            _ => Boolean(true),
        },
        Op::SingletonFrom => match a0 {
            List(l) => match l.len() {
                0 => Null,
                1 => l[0].clone(),
                _ => return fail("SingletonFrom: the list has more than one element"),
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
                let end = args
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
                v.sort_by(sort_cmp);
                if a1.is_true() {
                    v.reverse();
                }
                Value::list(v)
            }
            _ => Null,
        },
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
        _ => return super::not_implemented(op),
    })
}

/// `Union`, `Intersect`, `Except` of two lists (without duplicates; a null list is empty) or of
/// two intervals.
fn set_operation(op: Op, a0: &Value, a1: &Value) -> CqlResult<Value> {
    use Value::*;
    Ok(match (a0, a1) {
        (List(x), List(y)) => match op {
            Op::Union => {
                let mut all: Vec<Value> = x.iter().cloned().collect();
                all.extend(y.iter().cloned());
                Value::list(distinct(&all))
            }
            Op::Intersect => Value::list(distinct(
                &x.iter()
                    .filter(|v| y.iter().any(|w| same_element(v, w)))
                    .cloned()
                    .collect::<Vec<_>>(),
            )),
            _ => Value::list(distinct(
                &x.iter()
                    .filter(|v| !y.iter().any(|w| same_element(v, w)))
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
                Op::Union => union(x, y),
                Op::Intersect => intersect(x, y),
                _ => except(x, y),
            };
            r.unwrap_or(Null)
        }
        (Null, _) | (_, Null) => Null,
        _ => {
            return fail(format!(
                "{op:?} is not defined for {} and {}",
                a0.type_name(),
                a1.type_name()
            ))
        }
    })
}

/// The items without duplicates (by [`same_element`]), in first-seen order.
pub fn distinct(items: &[Value]) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::with_capacity(items.len());
    for it in items {
        if !out.iter().any(|o| same_element(o, it)) {
            out.push(it.clone());
        }
    }
    out
}

/// Equality used for distinct/union: null equals null, otherwise `=` (true).
fn same_element(a: &Value, b: &Value) -> bool {
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

/// Is `x` in the list (`=`; a null `x` is in a list holding null)?
pub(super) fn list_contains(l: &[Value], x: &Value) -> Option<bool> {
    if x.is_null() {
        return Some(l.iter().any(|v| v.is_null()));
    }
    Some(l.iter().any(|v| equal(v, x) == Some(true)))
}
