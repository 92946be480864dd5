//! Arithmetic operators: `+ - * / div mod`, rounding, logarithms, powers, successor and
//! predecessor, precision and boundaries, and the minimum and maximum values of each type.

use super::date_time::temporal_unit_precision;
use super::type_ops::local_type;
use super::{compile_operands, int_arg, operand, Op};
use crate::datetime::{self, Date, DateTime, Prec, Time, DAY, HOUR, MONTH, MS, YEAR};
use crate::engine::{json_str, Compiler, Expr, Scope};
use crate::interval::{predecessor, successor};
use crate::value::{as_decimal, Quantity, Value};
use crate::{fail, CqlResult, EvalContext};
use rust_decimal::prelude::*;
use rust_decimal::Decimal as Dec;
use serde_json::Value as Json;
use std::sync::Arc;

/// `Negate` of a literal is folded into a negative literal; `Round` names its `precision`;
/// `MinValue` / `MaxValue` take their `valueType` as their only operand.
pub(super) fn compile(c: &mut Compiler, op: Op, node: &Json, scope: &mut Scope) -> CqlResult<Expr> {
    let args = match op {
        Op::Negate if node.get("operand").and_then(|o| json_str(o, "type")) == Some("Literal") => {
            let o = &node["operand"];
            let raw = match o.get("value") {
                Some(Json::String(v)) => format!("-{v}"),
                Some(v) => format!("-{v}"),
                None => String::new(),
            };
            let value_type = json_str(o, "valueType").unwrap_or("");
            return Ok(match super::literal(value_type, Some(&Json::String(raw))) {
                Some(v) => Expr::Lit(v),
                None => super::message::invalid_literal(),
            });
        }
        Op::Round => vec![
            c.expr_or_null(node.get("operand"), scope)?,
            match node.get("precision") {
                Some(p) => c.expr(p, scope)?,
                None => Expr::Lit(Value::Null),
            },
        ],
        Op::MinValue | Op::MaxValue => {
            let (_, ty) = local_type(json_str(node, "valueType").unwrap_or(""));
            vec![Expr::Lit(Value::String(ty))]
        }
        _ => return compile_operands(c, op, node, scope),
    };
    Ok(super::op_node(op, args, node))
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
        Op::Add | Op::Subtract | Op::Multiply | Op::Divide | Op::TruncatedDivide | Op::Modulo => {
            binary(op, a0, a1)?
        }
        Op::Negate
        | Op::Abs
        | Op::Ceiling
        | Op::Floor
        | Op::Truncate
        | Op::Round
        | Op::Ln
        | Op::Exp => unary(op, a0, args.get(1))?,
        Op::Log => match (as_decimal(a0), as_decimal(a1)) {
            (Some(x), Some(base)) => {
                if x <= Dec::ZERO || base <= Dec::ZERO || base == Dec::ONE {
                    Null
                } else {
                    match (x.checked_ln(), base.checked_ln()) {
                        (Some(p), Some(q)) if !q.is_zero() => decimal_result(p / q),
                        _ => Null,
                    }
                }
            }
            _ => Null,
        },
        Op::Power => power(a0, a1),
        Op::Successor => {
            if a0.is_null() {
                Null
            } else {
                match successor(a0) {
                    Some(v) => v,
                    None => return fail("Successor: value is the maximum of its type"),
                }
            }
        }
        Op::Predecessor => {
            if a0.is_null() {
                Null
            } else {
                match predecessor(a0) {
                    Some(v) => v,
                    None => return fail("Predecessor: value is the minimum of its type"),
                }
            }
        }
        Op::Precision => match a0 {
            Decimal(d) => Integer(d.scale() as i32),
            Date(d) => Integer([4, 6, 8][d.prec as usize]),
            DateTime(d) => Integer([4, 6, 8, 10, 12, 14, 17][d.prec as usize]),
            Time(t) => Integer([2, 4, 6, 9][(t.prec - 3) as usize]),
            _ => Null,
        },
        Op::LowBoundary | Op::HighBoundary => boundary(op == Op::HighBoundary, a0, a1),
        Op::MinValue | Op::MaxValue => match a0 {
            String(t) => match extreme_value(t, op == Op::MaxValue) {
                Some(v) => v,
                None => return fail(format!("MinValue/MaxValue not defined for type {t}")),
            },
            _ => Null,
        },
        _ => return super::not_implemented(op),
    })
}

/// The largest CQL Decimal: 10^28 - 1 over 10^8.
pub(super) fn max_decimal() -> Dec {
    Dec::from_str("99999999999999999999.99999999").unwrap_or(Dec::MAX)
}

/// A Decimal result at CQL's 8 decimal places; null when out of range.
pub(super) fn decimal_result(d: Dec) -> Value {
    let r = d.round_dp_with_strategy(8, RoundingStrategy::MidpointAwayFromZero);
    if r.abs() > max_decimal() {
        Value::Null
    } else {
        Value::Decimal(r)
    }
}

/// A Quantity result at CQL's 8 decimal places.
pub(super) fn decimal_quantity(v: Dec, unit: &Arc<str>) -> Value {
    Value::Quantity(Quantity {
        value: v.round_dp(8),
        unit: unit.clone(),
    })
}

/// The minimum value of `v`'s type (`MinValue`), for unbounded interval boundaries.
pub fn min_value_like(v: &Value) -> Option<Value> {
    extreme_value(ordered_type_name(v)?, false)
}

/// The maximum value of `v`'s type (`MaxValue`), for unbounded interval boundaries.
pub fn max_value_like(v: &Value) -> Option<Value> {
    extreme_value(ordered_type_name(v)?, true)
}

/// `b - a`, or `None` when not defined (interval widths).
pub fn subtract_values(a: &Value, b: &Value) -> Option<Value> {
    binary(Op::Subtract, a, b).ok()
}

/// The name of an ordered type (one with a minimum and a maximum value).
pub(super) fn ordered_type_name(v: &Value) -> Option<&'static str> {
    Some(match v {
        Value::Integer(_) => "Integer",
        Value::Long(_) => "Long",
        Value::Decimal(_) => "Decimal",
        Value::Date(_) => "Date",
        Value::DateTime(_) => "DateTime",
        Value::Time(_) => "Time",
        Value::Quantity(_) => "Quantity",
        _ => return None,
    })
}

/// `MaxValue` (when `max`) or `MinValue` of the type named `t`.
fn extreme_value(t: &str, max: bool) -> Option<Value> {
    Some(match (t, max) {
        ("Integer", false) => Value::Integer(i32::MIN),
        ("Integer", true) => Value::Integer(i32::MAX),
        ("Long", false) => Value::Long(i64::MIN),
        ("Long", true) => Value::Long(i64::MAX),
        ("Decimal", false) => Value::Decimal(-max_decimal()),
        ("Decimal", true) => Value::Decimal(max_decimal()),
        ("Date", false) => Value::Date(Date {
            c: [1, 1, 1],
            prec: DAY,
        }),
        ("Date", true) => Value::Date(Date {
            c: [9999, 12, 31],
            prec: DAY,
        }),
        ("DateTime", false) => Value::DateTime(DateTime::new([1, 1, 1, 0, 0, 0, 0], 0, MS)),
        ("DateTime", true) => {
            Value::DateTime(DateTime::new([9999, 12, 31, 23, 59, 59, 999], 0, MS))
        }
        ("Time", false) => Value::Time(Time {
            c: [0, 0, 0, 0],
            prec: MS,
        }),
        ("Time", true) => Value::Time(Time {
            c: [23, 59, 59, 999],
            prec: MS,
        }),
        ("Quantity", false) => Value::Quantity(Quantity {
            value: -max_decimal(),
            unit: Arc::from("1"),
        }),
        ("Quantity", true) => Value::Quantity(Quantity {
            value: max_decimal(),
            unit: Arc::from("1"),
        }),
        _ => return None,
    })
}

/// `Add`, `Subtract`, `Multiply`, `Divide`, `TruncatedDivide` and `Modulo`; also date/time plus
/// or minus a calendar quantity, and String + String.
pub(super) fn binary(op: Op, a: &Value, bv: &Value) -> CqlResult<Value> {
    use Value::*;
    if a.is_null() || bv.is_null() {
        return Ok(Null);
    }
    Ok(match (a, bv) {
        // uncertainty ranges (from durations between imprecise values)
        (Interval(_), _) | (_, Interval(_))
            if matches!(op, Op::Add | Op::Subtract | Op::Multiply) =>
        {
            uncertainty_arith(op, a, bv)?
        }
        (Integer(x), Integer(y)) => match op {
            Op::Add => x.checked_add(*y).map(Integer).unwrap_or(Null),
            Op::Subtract => x.checked_sub(*y).map(Integer).unwrap_or(Null),
            Op::Multiply => x.checked_mul(*y).map(Integer).unwrap_or(Null),
            Op::Divide => {
                if *y == 0 {
                    Null
                } else {
                    decimal_result(Dec::from(*x) / Dec::from(*y))
                }
            }
            Op::TruncatedDivide => {
                if *y == 0 {
                    Null
                } else {
                    x.checked_div(*y).map(Integer).unwrap_or(Null)
                }
            }
            Op::Modulo => {
                if *y == 0 {
                    Null
                } else {
                    x.checked_rem(*y).map(Integer).unwrap_or(Null)
                }
            }
            _ => Null,
        },
        (Long(_) | Integer(_), Long(_) | Integer(_)) => {
            let (x, y) = (int_arg(a).unwrap_or(0), int_arg(bv).unwrap_or(0));
            match op {
                Op::Add => x.checked_add(y).map(Long).unwrap_or(Null),
                Op::Subtract => x.checked_sub(y).map(Long).unwrap_or(Null),
                Op::Multiply => x.checked_mul(y).map(Long).unwrap_or(Null),
                Op::Divide => {
                    if y == 0 {
                        Null
                    } else {
                        decimal_result(Dec::from(x) / Dec::from(y))
                    }
                }
                Op::TruncatedDivide => {
                    if y == 0 {
                        Null
                    } else {
                        x.checked_div(y).map(Long).unwrap_or(Null)
                    }
                }
                Op::Modulo => {
                    if y == 0 {
                        Null
                    } else {
                        x.checked_rem(y).map(Long).unwrap_or(Null)
                    }
                }
                _ => Null,
            }
        }
        (Integer(_) | Long(_) | Decimal(_), Integer(_) | Long(_) | Decimal(_)) => {
            let (x, y) = (
                as_decimal(a).unwrap_or_default(),
                as_decimal(bv).unwrap_or_default(),
            );
            match op {
                Op::Add => x.checked_add(y).map(decimal_result).unwrap_or(Null),
                Op::Subtract => x.checked_sub(y).map(decimal_result).unwrap_or(Null),
                Op::Multiply => x.checked_mul(y).map(decimal_result).unwrap_or(Null),
                Op::Divide => {
                    if y.is_zero() {
                        Null
                    } else {
                        x.checked_div(y).map(decimal_result).unwrap_or(Null)
                    }
                }
                Op::TruncatedDivide => {
                    if y.is_zero() {
                        Null
                    } else {
                        x.checked_div(y)
                            .map(|d| decimal_result(d.trunc()))
                            .unwrap_or(Null)
                    }
                }
                Op::Modulo => {
                    if y.is_zero() {
                        Null
                    } else {
                        x.checked_rem(y).map(decimal_result).unwrap_or(Null)
                    }
                }
                _ => Null,
            }
        }
        (Quantity(x), Quantity(y)) => match op {
            Op::Add => crate::units::quantity_add(x, y, 1)
                .map(Quantity)
                .unwrap_or(Null),
            Op::Subtract => crate::units::quantity_add(x, y, -1)
                .map(Quantity)
                .unwrap_or(Null),
            Op::Multiply => crate::units::quantity_mul(x, y)
                .map(Quantity)
                .unwrap_or(Null),
            Op::Divide => crate::units::quantity_div(x, y)
                .map(Quantity)
                .unwrap_or(Null),
            Op::TruncatedDivide | Op::Modulo => {
                let y2 = crate::units::convert(y, &x.unit);
                match y2 {
                    Some(y2) if !y2.value.is_zero() => {
                        let v = if op == Op::Modulo {
                            x.value % y2.value
                        } else {
                            (x.value / y2.value).trunc()
                        };
                        Quantity(crate::value::Quantity {
                            value: v,
                            unit: x.unit.clone(),
                        })
                    }
                    _ => Null,
                }
            }
            _ => Null,
        },
        (Quantity(x), Integer(_) | Decimal(_) | Long(_)) => {
            let y = as_decimal(bv).unwrap_or_default();
            match op {
                Op::Multiply => Quantity(crate::value::Quantity {
                    value: x.value * y,
                    unit: x.unit.clone(),
                }),
                Op::Divide if !y.is_zero() => decimal_quantity(x.value / y, &x.unit),
                _ => Null,
            }
        }
        (Integer(_) | Decimal(_) | Long(_), Quantity(y)) => {
            let x = as_decimal(a).unwrap_or_default();
            match op {
                Op::Multiply => Quantity(crate::value::Quantity {
                    value: x * y.value,
                    unit: y.unit.clone(),
                }),
                _ => Null,
            }
        }
        (DateTime(_), Quantity(q)) | (Date(_), Quantity(q)) | (Time(_), Quantity(q))
            if matches!(op, Op::Add | Op::Subtract) =>
        {
            let Some(unit) = temporal_unit_precision(&q.unit) else {
                return fail(format!(
                    "invalid unit for date/time arithmetic: `{}`",
                    q.unit
                ));
            };
            let Some(amount) = q.value.trunc().to_i64() else {
                return fail("date/time arithmetic result out of range");
            };
            let amount = if op == Op::Subtract { -amount } else { amount };
            let r = match a {
                DateTime(d) => d.add(amount, unit).map(DateTime),
                Date(d) => d.add(amount, unit).map(Date),
                Time(t) => t.add(amount, unit).map(Time),
                _ => None,
            };
            match r {
                Some(v) => v,
                None => return fail("date/time arithmetic result out of range"),
            }
        }
        (String(x), String(y)) if op == Op::Add => Value::String(Arc::from(format!("{x}{y}"))),
        _ => {
            return fail(format!(
                "operator {op:?} is not defined for {} and {}",
                a.type_name(),
                bv.type_name()
            ))
        }
    })
}

/// The (low, high) range of an Integer or of an Integer uncertainty interval.
fn integer_range(v: &Value) -> Option<(i64, i64)> {
    match v {
        Value::Integer(n) => Some((*n as i64, *n as i64)),
        Value::Interval(i) => Some((int_arg(&i.low)?, int_arg(&i.high)?)),
        _ => None,
    }
}

/// `Add`, `Subtract` and `Multiply` over uncertainty ranges.
fn uncertainty_arith(op: Op, a: &Value, b: &Value) -> CqlResult<Value> {
    let (Some((al, ah)), Some((bl, bh))) = (integer_range(a), integer_range(b)) else {
        return fail(format!(
            "operator {op:?} is not defined for {} and {}",
            a.type_name(),
            b.type_name()
        ));
    };
    let (lo, hi) = match op {
        Op::Add => (al + bl, ah + bh),
        Op::Subtract => (al - bh, ah - bl),
        _ => {
            let p = [al * bl, al * bh, ah * bl, ah * bh];
            (*p.iter().min().unwrap_or(&0), *p.iter().max().unwrap_or(&0))
        }
    };
    let (Ok(lo), Ok(hi)) = (i32::try_from(lo), i32::try_from(hi)) else {
        return Ok(Value::Null);
    };
    Ok(if lo == hi {
        Value::Integer(lo)
    } else {
        Value::interval(Value::Integer(lo), Value::Integer(hi), true, true)
    })
}

/// `Negate`, `Abs`, `Ceiling`, `Floor`, `Truncate`, `Round` (to `precision` places), `Ln`, `Exp`.
fn unary(op: Op, v: &Value, precision: Option<&Value>) -> CqlResult<Value> {
    let Some(d) = as_decimal(v) else {
        return Ok(match v {
            Value::Quantity(q) if op == Op::Abs => Value::Quantity(Quantity {
                value: q.value.abs(),
                unit: q.unit.clone(),
            }),
            Value::Quantity(q) if op == Op::Negate => Value::Quantity(Quantity {
                value: -q.value,
                unit: q.unit.clone(),
            }),
            _ => Value::Null,
        });
    };
    Ok(match op {
        Op::Negate => match v {
            Value::Integer(i) => i.checked_neg().map(Value::Integer).unwrap_or(Value::Null),
            Value::Long(i) => i.checked_neg().map(Value::Long).unwrap_or(Value::Null),
            _ => Value::Decimal(-d),
        },
        Op::Abs => match v {
            Value::Integer(i) => i.checked_abs().map(Value::Integer).unwrap_or(Value::Null),
            Value::Long(i) => i.checked_abs().map(Value::Long).unwrap_or(Value::Null),
            _ => Value::Decimal(d.abs()),
        },
        Op::Ceiling => d.ceil().to_i32().map(Value::Integer).unwrap_or(Value::Null),
        Op::Floor => d
            .floor()
            .to_i32()
            .map(Value::Integer)
            .unwrap_or(Value::Null),
        Op::Truncate => d
            .trunc()
            .to_i32()
            .map(Value::Integer)
            .unwrap_or(Value::Null),
        Op::Round => {
            let p = precision.and_then(int_arg).unwrap_or(0).clamp(0, 8) as u32;
            let r = if d.is_sign_negative() {
                // round half toward positive infinity
                let scaled = d * Dec::from(10i64.pow(p));
                let f = scaled.fract().abs();
                let t = scaled.trunc();
                let t = if f > Dec::new(5, 1) { t - Dec::ONE } else { t };
                t / Dec::from(10i64.pow(p))
            } else {
                d.round_dp_with_strategy(p, RoundingStrategy::MidpointAwayFromZero)
            };
            Value::Decimal(r)
        }
        Op::Ln => {
            if d.is_zero() {
                return fail("Ln(0) is undefined");
            } else if d < Dec::ZERO {
                Value::Null
            } else {
                d.checked_ln().map(decimal_result).unwrap_or(Value::Null)
            }
        }
        Op::Exp => match d.checked_exp() {
            Some(x) => decimal_result(x),
            None => return fail("Exp result out of range"),
        },
        _ => return super::not_implemented(op),
    })
}

/// `Power`: Integer and Long powers stay exact; a negative Integer exponent gives a Decimal.
fn power(a0: &Value, a1: &Value) -> Value {
    use Value::*;
    match (a0, a1) {
        (Integer(x), Integer(y)) => {
            if *y >= 0 {
                x.checked_pow(*y as u32).map(Integer).unwrap_or(Null)
            } else {
                decimal_result(
                    Dec::ONE / Dec::from(x.checked_pow(y.unsigned_abs()).unwrap_or(0).max(1)),
                )
            }
        }
        (Long(x), Long(y)) if *y >= 0 => x.checked_pow(*y as u32).map(Long).unwrap_or(Null),
        (Long(x), Integer(y)) if *y >= 0 => x.checked_pow(*y as u32).map(Long).unwrap_or(Null),
        _ => match (as_decimal(a0), as_decimal(a1)) {
            (Some(x), Some(y)) => {
                if y.fract().is_zero() {
                    x.checked_powi(y.to_i64().unwrap_or(0))
                        .map(decimal_result)
                        .unwrap_or(Null)
                } else {
                    x.checked_powd(y).map(decimal_result).unwrap_or(Null)
                }
            }
            _ => Null,
        },
    }
}

/// `LowBoundary` / `HighBoundary` (when `high`) of `v` at precision `p` (digits).
fn boundary(high: bool, v: &Value, p: &Value) -> Value {
    match v {
        Value::Decimal(d) => {
            let p = int_arg(p).unwrap_or(8);
            if !(0..=8).contains(&p) {
                return Value::Null;
            }
            let s = d.scale() as i64;
            if p < s {
                return Value::Null;
            }
            let mut r = *d;
            r.rescale(p as u32);
            if high {
                // add 9s beyond the current scale (a negative value's high boundary is itself)
                let extra = p - s;
                if extra > 0 {
                    let nines = Dec::new(10i64.pow(extra as u32) - 1, p as u32);
                    r += if d.is_sign_negative() {
                        Dec::ZERO
                    } else {
                        nines
                    };
                }
            } else if d.is_sign_negative() {
                let extra = p - s;
                if extra > 0 {
                    r -= Dec::new(10i64.pow(extra as u32) - 1, p as u32);
                }
            }
            Value::Decimal(r)
        }
        Value::Date(d) => {
            let pr = match int_arg(p) {
                Some(4) => YEAR,
                Some(6) => MONTH,
                _ => DAY,
            };
            let mut x = *d;
            for i in (d.prec as usize + 1)..=(pr as usize) {
                x.c[i] = if high {
                    if i == 1 {
                        12
                    } else {
                        datetime::days_in_month(x.c[0], x.c[1] as u8) as i32
                    }
                } else {
                    1
                };
            }
            x.prec = pr.max(d.prec);
            Value::Date(x)
        }
        Value::DateTime(d) => {
            let pr = match int_arg(p) {
                Some(4) => YEAR,
                Some(6) => MONTH,
                Some(8) => DAY,
                Some(10) => HOUR,
                Some(12) => datetime::MINUTE,
                Some(14) => datetime::SECOND,
                _ => MS,
            };
            let full = if high { d.fill_max() } else { d.fill_min() };
            let mut x = full.truncate(pr);
            if high {
                x = full;
                x.prec = pr;
            }
            if pr < d.prec {
                return Value::Null;
            }
            Value::DateTime(x)
        }
        Value::Time(t) => {
            let pr = match int_arg(p) {
                Some(2) => HOUR,
                Some(4) => datetime::MINUTE,
                Some(6) => datetime::SECOND,
                _ => MS,
            };
            let mut x = *t;
            let maxes = [23, 59, 59, 999];
            for i in ((t.prec - 3) as usize + 1)..=((pr - 3) as usize) {
                x.c[i] = if high { maxes[i] } else { 0 };
            }
            x.prec = pr.max(t.prec);
            Value::Time(x)
        }
        _ => Value::Null,
    }
}
