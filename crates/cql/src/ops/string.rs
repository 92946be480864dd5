//! String operators (`Length` and `Indexer` also take lists).

use super::{bool_value, compile_operands, int_arg, op_node, Op};
use crate::datetime::Prec;
use crate::engine::{json_str, Compiler, Expr, Scope};
use crate::value::Value;
use crate::{CqlResult, EvalContext};
use serde_json::Value as Json;
use std::sync::Arc;

/// Most string operators name their operands (`Substring`'s `stringToSub`, `startIndex`,
/// `length`, ...); `Length` of a list is 0 for a null list.
pub(super) fn compile(c: &mut Compiler, op: Op, node: &Json, scope: &mut Scope) -> CqlResult<Expr> {
    let named = |names: &[&str], c: &mut Compiler, scope: &mut Scope| {
        names
            .iter()
            .map(|n| c.expr_or_null(node.get(*n), scope))
            .collect::<CqlResult<Vec<Expr>>>()
    };
    let args = match op {
        Op::Length if node.get("operand").is_some_and(is_list_typed) => {
            let list = c.expr_or_null(node.get("operand"), scope)?;
            return Ok(Expr::Coalesce(vec![
                Expr::Op {
                    op: Op::Length,
                    args: vec![list],
                    prec: None,
                },
                Expr::Lit(Value::Integer(0)),
            ]));
        }
        Op::PositionOf | Op::LastPositionOf => named(&["pattern", "string"], c, scope)?,
        Op::Substring => vec![
            c.expr_or_null(node.get("stringToSub"), scope)?,
            c.expr_or_null(node.get("startIndex"), scope)?,
            match node.get("length") {
                Some(l) => c.expr(l, scope)?,
                None => Expr::Lit(Value::Null),
            },
        ],
        Op::Combine => named(&["source", "separator"], c, scope)?,
        Op::Split => named(&["stringToSplit", "separator"], c, scope)?,
        Op::SplitOnMatches => named(&["stringToSplit", "separatorPattern"], c, scope)?,
        _ => return compile_operands(c, op, node, scope),
    };
    Ok(op_node(op, args, node))
}

/// Is an ELM operand typed (cast or inferred) as a list?
fn is_list_typed(operand: &Json) -> bool {
    let type_of = |key: &str| operand.get(key).and_then(|t| json_str(t, "type"));
    type_of("asTypeSpecifier") == Some("ListTypeSpecifier")
        || type_of("resultTypeSpecifier") == Some("ListTypeSpecifier")
}

pub(super) fn apply(
    _cx: &EvalContext,
    op: Op,
    args: &[Value],
    _prec: Option<Prec>,
) -> CqlResult<Value> {
    use Value::*;
    let string_arg = |i: usize| match args.get(i) {
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
            let Some(List(l)) = args.first() else {
                return Ok(Null);
            };
            let sep = string_arg(1).map(|s| s.to_string()).unwrap_or_default();
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
            let Some(s) = string_arg(0) else {
                return Ok(Null);
            };
            match string_arg(1) {
                None => Value::list(vec![String(s)]),
                Some(sep) if sep.is_empty() => Value::list(vec![String(s)]),
                Some(sep) => Value::list(s.split(&*sep).map(Value::str).collect()),
            }
        }
        Op::Length => match args.first() {
            Some(String(s)) => Integer(s.chars().count() as i32),
            Some(List(l)) => Integer(l.len() as i32),
            _ => Null,
        },
        Op::Upper => string_arg(0)
            .map(|s| Value::str(&s.to_uppercase()))
            .unwrap_or(Null),
        Op::Lower => string_arg(0)
            .map(|s| Value::str(&s.to_lowercase()))
            .unwrap_or(Null),
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
        Op::PositionOf | Op::LastPositionOf => match (string_arg(0), string_arg(1)) {
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
            let Some(s) = string_arg(0) else {
                return Ok(Null);
            };
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
        Op::StartsWith => match (string_arg(0), string_arg(1)) {
            (Some(s), Some(p)) => Boolean(s.starts_with(&*p)),
            _ => Null,
        },
        Op::EndsWith => match (string_arg(0), string_arg(1)) {
            (Some(s), Some(p)) => Boolean(s.ends_with(&*p)),
            _ => Null,
        },
        Op::Matches => match (string_arg(0), string_arg(1)) {
            (Some(s), Some(p)) => bool_value(crate::regex::full_match(&p, &s)),
            _ => Null,
        },
        Op::ReplaceMatches => match (string_arg(0), string_arg(1), string_arg(2)) {
            (Some(s), Some(p), Some(r)) => crate::regex::replace_all(&p, &s, &r)
                .map(|x| Value::str(&x))
                .unwrap_or(Null),
            _ => Null,
        },
        Op::SplitOnMatches => match (string_arg(0), string_arg(1)) {
            (Some(s), Some(p)) => crate::regex::split(&p, &s)
                .map(|v| Value::list(v.iter().map(|x| Value::str(x)).collect()))
                .unwrap_or(Null),
            _ => Null,
        },
        _ => return super::not_implemented(op),
    })
}
