//! Logical operators `not`, `xor` and `implies`. `and` and `or` are expression nodes of the
//! engine: they skip their second operand when the first decides.

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
    use Value::*;
    let (a0, a1) = (operand(args, 0), operand(args, 1));
    Ok(match op {
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
        _ => return super::not_implemented(op),
    })
}
