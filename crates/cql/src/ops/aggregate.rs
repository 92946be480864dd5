//! Aggregate functions: `Count`, `Sum`, `Min`, `Max`, `Avg`, `Median`, `Mode`, variances and
//! standard deviations, `AllTrue`, `AnyTrue`, `Product` and `GeometricMean`. Nulls are skipped.

use super::arithmetic::{binary, decimal_quantity};
use super::structured::property;
use super::type_ops::convert;
use super::{op_node, operand, Op};
use crate::datetime::Prec;
use crate::engine::{json_str, Compiler, Expr, Scope};
use crate::value::{as_decimal, compare, equal, sort_cmp, Quantity, Value};
use crate::{fail, CqlResult, EvalContext};
use rust_decimal::prelude::*;
use rust_decimal::Decimal as Dec;
use serde_json::Value as Json;
use std::cmp::Ordering;

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

/// An aggregate with a `path` aggregates that property of each item (`PluckPath`).
pub(super) fn compile(c: &mut Compiler, op: Op, node: &Json, scope: &mut Scope) -> CqlResult<Expr> {
    let mut args = c.operands(node, scope)?;
    if op.is_aggregate() {
        if let Some(p) = json_str(node, "path") {
            let src = args.pop().unwrap_or(Expr::Lit(Value::Null));
            args.push(Expr::Op {
                op: Op::PluckPath,
                args: vec![src, Expr::Lit(Value::str(p))],
                prec: None,
            });
        }
    }
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
        Op::PluckPath => match (a0, a1) {
            (List(l), String(p)) => Value::list(l.iter().map(|v| property(v, p)).collect()),
            _ => Null,
        },
        _ => match a0 {
            List(l) => aggregate(op, l)?,
            Null => match op {
                Op::Count => Integer(0),
                Op::AllTrue => Boolean(true),
                Op::AnyTrue => Boolean(false),
                _ => Null,
            },
            _ => return fail(format!("aggregate {op:?} requires a list")),
        },
    })
}

fn aggregate(op: Op, l: &[Value]) -> CqlResult<Value> {
    let vals: Vec<&Value> = l.iter().filter(|v| !v.is_null()).collect();
    Ok(match op {
        Op::Count => Value::Integer(vals.len() as i32),
        Op::AllTrue => Value::Boolean(vals.iter().all(|v| v.is_true())),
        Op::AnyTrue => Value::Boolean(vals.iter().any(|v| v.is_true())),
        _ if vals.is_empty() => Value::Null,
        Op::Sum | Op::Product => {
            let mut acc = vals[0].clone();
            for v in &vals[1..] {
                acc = binary(if op == Op::Sum { Op::Add } else { Op::Multiply }, &acc, v)?;
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
                acc = binary(Op::Add, &acc, v)?;
            }
            match acc {
                Value::Quantity(q) => decimal_quantity(q.value / Dec::from(vals.len()), &q.unit),
                other => binary(
                    Op::Divide,
                    &convert(Op::ToDecimal, &other)?,
                    &Value::Decimal(Dec::from(vals.len())),
                )?,
            }
        }
        Op::Median => {
            let mut v: Vec<Value> = vals.iter().map(|x| (*x).clone()).collect();
            v.sort_by(sort_cmp);
            let n = v.len();
            if n % 2 == 1 {
                v[n / 2].clone()
            } else {
                let s = binary(Op::Add, &v[n / 2 - 1], &v[n / 2])?;
                match s {
                    Value::Quantity(q) => decimal_quantity(q.value / Dec::TWO, &q.unit),
                    other => binary(Op::Divide, &other, &Value::Decimal(Dec::TWO))?,
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
        _ => return super::not_implemented(op),
    })
}
