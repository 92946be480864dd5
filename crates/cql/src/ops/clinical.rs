//! Clinical operators: value set and code system membership, `ExpandValueSet`, and age
//! (`CalculateAge`, `CalculateAgeAt`); also the code matching behind retrieves by codes.

use super::date_time::between;
use super::structured::property;
use super::{bool_value, compile_operands, op_node, operand, Op};
use crate::datetime::{Prec, YEAR};
use crate::engine::{Compiler, Expr, Scope};
use crate::fhir;
use crate::value::{equivalent, Value, ValueSetData};
use crate::{fail, CqlResult, EvalContext};
use serde_json::Value as Json;
use std::sync::Arc;

/// Membership operators take `code` (or `codes`) and a `valueset` / `codesystem` reference or
/// an expression giving one.
pub(super) fn compile(c: &mut Compiler, op: Op, node: &Json, scope: &mut Scope) -> CqlResult<Expr> {
    let li = scope.lib;
    let args = match op {
        Op::InValueSet | Op::AnyInValueSet => {
            let code = c.expr_or_null(node.get("code").or(node.get("codes")), scope)?;
            let vs = match (node.get("valueset"), node.get("valuesetExpression")) {
                (Some(v), _) => match c.value_set(v, li)? {
                    Some(d) => Expr::ValueSetRef(d),
                    None => return Ok(c.unsupported(node, li, "unknown value set in")),
                },
                (None, Some(e)) => c.expr(e, scope)?,
                _ => return Ok(c.unsupported(node, li, "malformed")),
            };
            vec![code, vs]
        }
        Op::InCodeSystem | Op::AnyInCodeSystem => {
            let code = c.expr_or_null(node.get("code").or(node.get("codes")), scope)?;
            let cs = match (node.get("codesystem"), node.get("codesystemExpression")) {
                (Some(Json::Object(o)), _) => {
                    let mut o = o.clone();
                    o.insert("type".into(), Json::String("CodeSystemRef".into()));
                    c.expr(&Json::Object(o), scope)?
                }
                (None, Some(e)) => c.expr(e, scope)?,
                _ => return Ok(c.unsupported(node, li, "malformed")),
            };
            vec![code, cs]
        }
        _ => return compile_operands(c, op, node, scope),
    };
    Ok(op_node(op, args, node))
}

pub(super) fn apply(
    cx: &EvalContext,
    op: Op,
    args: &[Value],
    prec: Option<Prec>,
) -> CqlResult<Value> {
    use Value::*;
    let (a0, a1) = (operand(args, 0), operand(args, 1));
    Ok(match op {
        Op::InValueSet | Op::AnyInValueSet => match a1 {
            ValueSet(vs) => {
                if a0.is_null() {
                    Boolean(false)
                } else {
                    bool_value(in_valueset(a0, vs).or(Some(false)))
                }
            }
            _ => return fail("value set membership requires a value set"),
        },
        Op::ExpandValueSet => match a0 {
            ValueSet(vs) => {
                Value::list(vs.list.iter().map(|c| Code(Arc::new(c.clone()))).collect())
            }
            Null => Null,
            _ => return fail("ExpandValueSet requires a value set"),
        },
        Op::InCodeSystem | Op::AnyInCodeSystem => {
            let id = match property(a1, "id") {
                String(s) => s,
                _ => return fail("code system membership requires a code system"),
            };
            Boolean(in_code_system(a0, &id))
        }
        Op::CalculateAgeAt => between(Op::DurationBetween, a0, a1, prec.or(Some(YEAR)))?,
        Op::CalculateAge => {
            let today = Date(cx.today());
            between(Op::DurationBetween, a0, &today, prec.or(Some(YEAR)))?
        }
        _ => return super::not_implemented(op),
    })
}

/// Is a code, concept or list of them in the code system `id`?
fn in_code_system(v: &Value, id: &str) -> bool {
    match v {
        Value::Code(c) => c.system.as_deref() == Some(id),
        Value::Concept(c) => c.codes.iter().any(|x| x.system.as_deref() == Some(id)),
        Value::List(l) => l.iter().any(|x| in_code_system(x, id)),
        _ => false,
    }
}

/// Is a code, concept, string, list of them or FHIR coded element in the value set? `None` for
/// null.
pub(crate) fn in_valueset(v: &Value, vs: &Arc<ValueSetData>) -> Option<bool> {
    match v {
        Value::Null => None,
        Value::Code(c) => Some(vs.contains(c.system.as_deref(), &c.code)),
        Value::Concept(c) => Some(
            c.codes
                .iter()
                .any(|x| vs.contains(x.system.as_deref(), &x.code)),
        ),
        Value::String(s) => Some(vs.contains(None, s)),
        Value::List(l) => Some(l.iter().any(|x| in_valueset(x, vs) == Some(true))),
        Value::Resource(_) => Some(code_matches(v, &Value::ValueSet(vs.clone()))),
        _ => Some(false),
    }
}

/// Does a code-bearing value match a retrieve filter (value set, code, list of codes, concept)?
pub(crate) fn code_matches(v: &Value, filter: &Value) -> bool {
    // fast path: FHIR CodeableConcept / Coding against a value set, straight from the JSON
    if let (Value::Resource(n), Value::ValueSet(vs)) = (v, filter) {
        let coding_in = |c: &fhir::J| match (
            c.get("code").and_then(|x| x.str()),
            c.get("system").and_then(|x| x.str()),
        ) {
            (Some(code), system) => vs.contains(system, code),
            _ => false,
        };
        match (&n.j, n.j.get("coding")) {
            (fhir::J::Obj(_), Some(fhir::J::Arr(codings))) => return codings.iter().any(coding_in),
            (fhir::J::Obj(_), _) => return coding_in(&n.j),
            (fhir::J::Str(code), _) => return vs.contains(None, code),
            _ => return false,
        }
    }
    match v {
        Value::Null => false,
        Value::List(l) => l.iter().any(|x| code_matches(x, filter)),
        Value::Resource(n) => match &n.j {
            fhir::J::Obj(_) => {
                if n.j.get("coding").is_some() {
                    code_matches(&fhir::to_concept(&n.j), filter)
                } else if n.j.get("code").is_some() {
                    code_matches(&fhir::to_code(&n.j), filter)
                } else {
                    false
                }
            }
            fhir::J::Str(_) => code_matches(&fhir::to_code(&n.j), filter),
            _ => false,
        },
        Value::Concept(c) => c
            .codes
            .iter()
            .any(|x| code_matches(&Value::Code(Arc::new(x.clone())), filter)),
        Value::Code(c) => match filter {
            Value::ValueSet(vs) => vs.contains(c.system.as_deref(), &c.code),
            Value::List(l) => l.iter().any(|f| code_matches(v, f)),
            Value::Code(_) | Value::Concept(_) => equivalent(v, filter),
            _ => false,
        },
        Value::String(s) => match filter {
            Value::ValueSet(vs) => vs.contains(None, s),
            _ => false,
        },
        _ => false,
    }
}
