//! Nullological operators `IsNull`, `IsTrue` and `IsFalse`. `Coalesce` is an expression node of
//! the engine: it stops at its first non-null operand.

use super::{operand, Op};
use crate::datetime::Prec;
use crate::value::Value;
use crate::{CqlResult, EvalContext};

pub(super) use super::compile_operands as compile;

pub(super) fn apply(
    _cx: &EvalContext,
    op: Op,
    args: &[Value],
    _prec: Option<Prec>,
) -> CqlResult<Value> {
    let a0 = operand(args, 0);
    Ok(match op {
        Op::IsNull => Value::Boolean(a0.is_null()),
        Op::IsTrue => Value::Boolean(a0.is_true()),
        Op::IsFalse => Value::Boolean(matches!(a0, Value::Boolean(false))),
        _ => return super::not_implemented(op),
    })
}
