//! Comparison operators: `=`, `!=`, `~`, `<`, `>`, `<=`, `>=`.

use super::{bool_value, operand, Op};
use crate::datetime::Prec;
use crate::value::{compare, equal, equivalent, Value};
use crate::{CqlResult, EvalContext};
use std::cmp::Ordering;

pub(super) use super::compile_operands as compile;

pub(super) fn apply(
    _cx: &EvalContext,
    op: Op,
    args: &[Value],
    _prec: Option<Prec>,
) -> CqlResult<Value> {
    let (a0, a1) = (operand(args, 0), operand(args, 1));
    Ok(match op {
        Op::Equal => bool_value(equal(a0, a1)),
        Op::NotEqual => bool_value(equal(a0, a1).map(|x| !x)),
        Op::Equivalent => Value::Boolean(equivalent(a0, a1)),
        _ => ordering(op, a0, a1),
    })
}

/// `Less`, `Greater`, `LessOrEqual`, `GreaterOrEqual`.
fn ordering(op: Op, a: &Value, c: &Value) -> Value {
    if a.is_null() || c.is_null() {
        return Value::Null;
    }
    // uncertainty (an Integer range from a duration/difference with imprecise operands)
    if let Value::Interval(i) = a {
        if !matches!(c, Value::Interval(_)) {
            let lo = ordering(op, &i.low, c);
            let hi = ordering(op, &i.high, c);
            return if equal(&lo, &hi) == Some(true) {
                lo
            } else {
                Value::Null
            };
        }
    }
    if let Value::Interval(i) = c {
        if !matches!(a, Value::Interval(_)) {
            let lo = ordering(op, a, &i.low);
            let hi = ordering(op, a, &i.high);
            return if equal(&lo, &hi) == Some(true) {
                lo
            } else {
                Value::Null
            };
        }
    }
    let o = compare(a, c);
    bool_value(o.map(|o| match op {
        Op::Less => o == Ordering::Less,
        Op::Greater => o == Ordering::Greater,
        Op::LessOrEqual => o != Ordering::Greater,
        _ => o != Ordering::Less,
    }))
}
