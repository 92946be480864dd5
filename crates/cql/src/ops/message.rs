//! The `Error` operator. `Message` is an expression node of the engine: it evaluates its
//! severity and code only when its condition holds.

use super::{operand, to_string, Op};
use crate::datetime::Prec;
use crate::engine::Expr;
use crate::value::Value;
use crate::{fail, CqlResult, EvalContext};

pub(super) use super::compile_operands as compile;

pub(super) fn apply(
    _cx: &EvalContext,
    op: Op,
    args: &[Value],
    _prec: Option<Prec>,
) -> CqlResult<Value> {
    match op {
        Op::Error => fail(format!(
            "evaluation error: {}",
            to_string(operand(args, 0)).to_json()
        )),
        _ => super::not_implemented(op),
    }
}

/// What a literal that does not parse as its type compiles to: an error when evaluated.
pub(crate) fn invalid_literal() -> Expr {
    Expr::Op {
        op: Op::Error,
        args: vec![Expr::Lit(Value::str("invalid literal"))],
        prec: None,
    }
}
