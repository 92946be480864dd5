//! Date and time operators: `Today()`, `Now()`, `TimeOfDay()`, components, durations and
//! differences, `same as`, `before` / `after` (of points and intervals) and the `Date`,
//! `DateTime` and `Time` selectors.

use super::interval::{as_interval, point_interval};
use super::{bool_value, int_arg, operand, Op};
use crate::datetime::{self, Between, Date, DateTime, Prec, Time, DAY, HOUR, MS, YEAR};
use crate::engine::{Compiler, Expr, Scope};
use crate::interval::{and3, before, eqp, high_pt, le, low_pt, vcmp};
use crate::value::{as_decimal, Value};
use crate::{fail, CqlResult, EvalContext};
use rust_decimal::prelude::*;
use rust_decimal::Decimal as Dec;
use serde_json::Value as Json;
use std::cmp::Ordering;

pub(super) use super::compile_operands as compile;

/// A `Date`, `DateTime` or `Time` selector node (`node_type`). Its components are operands in
/// order; its `prec` is not a precision but the bit set of the components the node gives.
pub(crate) fn compile_selector(
    c: &mut Compiler,
    node_type: &str,
    node: &Json,
    scope: &mut Scope,
) -> CqlResult<Expr> {
    let (op, names): (Op, &[&str]) = match node_type {
        "Date" => (Op::DateSel, &["year", "month", "day"]),
        "DateTime" => (
            Op::DateTimeSel,
            &[
                "year",
                "month",
                "day",
                "hour",
                "minute",
                "second",
                "millisecond",
                "timezoneOffset",
            ],
        ),
        _ => (Op::TimeSel, &["hour", "minute", "second", "millisecond"]),
    };
    let mut args = Vec::new();
    for n in names {
        args.push(match node.get(*n) {
            Some(e) => c.expr(e, scope)?,
            None => Expr::Lit(Value::Null),
        });
    }
    let mut present = 0u8;
    for (i, n) in names.iter().enumerate() {
        if node.get(*n).is_some() {
            present |= 1 << i;
        }
    }
    Ok(Expr::Op {
        op,
        args,
        prec: Some(present),
    })
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
        Op::Today => Date(cx.today()),
        Op::Now => DateTime(cx.now()),
        Op::TimeOfDay => Time(cx.time_of_day()),
        Op::DateFrom => match a0 {
            DateTime(d) => Date(d.date()),
            Date(_) => a0.clone(),
            _ => Null,
        },
        Op::TimeFrom => match a0 {
            DateTime(d) => d.time().map(Time).unwrap_or(Null),
            _ => Null,
        },
        Op::TimezoneOffsetFrom => match a0 {
            DateTime(d) => Decimal(Dec::from(d.off as i64) / Dec::from(60)),
            _ => Null,
        },
        Op::DateTimeComponentFrom => {
            let p = prec.unwrap_or(YEAR);
            match a0 {
                DateTime(d) if p <= d.prec => Integer(d.c[p as usize]),
                Date(d) if p <= d.prec => Integer(d.c[p as usize]),
                Time(t) if p >= HOUR && p <= t.prec => Integer(t.c[(p - 3) as usize]),
                _ => Null,
            }
        }
        Op::DurationBetween | Op::DifferenceBetween => between(op, a0, a1, prec)?,
        Op::SameAs | Op::SameOrBefore | Op::SameOrAfter => same_as(op, a0, a1, prec),
        Op::Before | Op::After => before_or_after(op == Op::Before, a0, a1, prec),
        Op::DateSel | Op::DateTimeSel | Op::TimeSel => selector(op, args, prec.unwrap_or(0))?,
        _ => return super::not_implemented(op),
    })
}

/// The date/time precision of a calendar quantity's unit (`year`, `days`, `ms`, ...); `None` for
/// UCUM's `a` and `mo`, which are not calendar units.
pub(super) fn temporal_unit_precision(u: &str) -> Option<Prec> {
    match u {
        "a" | "mo" => None,
        _ => datetime::parse_precision(u),
    }
}

fn as_datetime(v: &Value) -> Option<DateTime> {
    match v {
        Value::DateTime(d) => Some(*d),
        Value::Date(d) => Some(d.to_datetime()),
        _ => None,
    }
}

/// `DurationBetween` / `DifferenceBetween` (`op`) at precision `prec` (days when absent).
pub(super) fn between(op: Op, a: &Value, c: &Value, prec: Option<Prec>) -> CqlResult<Value> {
    let p = prec.unwrap_or(DAY);
    match (a, c) {
        (Value::Null, _) | (_, Value::Null) => Ok(Value::Null),
        (Value::Time(x), Value::Time(y)) => {
            let per: i64 = match p {
                HOUR => 3_600_000,
                datetime::MINUTE => 60_000,
                datetime::SECOND => 1000,
                _ => 1,
            };
            let (mx, my) = if op == Op::DifferenceBetween {
                (x.ms_of_day() / per * per, y.ms_of_day() / per * per)
            } else {
                (x.ms_of_day(), y.ms_of_day())
            };
            Ok(Value::Integer(((my - mx) / per) as i32))
        }
        _ => {
            let (Some(x), Some(y)) = (as_datetime(a), as_datetime(c)) else {
                return fail(format!(
                    "{op:?} is not defined for {} and {}",
                    a.type_name(),
                    c.type_name()
                ));
            };
            let type_prec = if matches!((a, c), (Value::Date(_), Value::Date(_))) {
                DAY
            } else {
                MS
            };
            let r = if op == Op::DurationBetween {
                datetime::duration_between_in(&x, &y, p, type_prec)
            } else {
                datetime::difference_between(&x, &y, p)
            };
            Ok(match r {
                Between::Exact(n) => i32::try_from(n).map(Value::Integer).unwrap_or(Value::Null),
                Between::Range(lo, hi) => Value::interval(
                    Value::Integer(lo as i32),
                    Value::Integer(hi as i32),
                    true,
                    true,
                ),
            })
        }
    }
}

/// `SameAs`, `SameOrBefore`, `SameOrAfter` of points, or of intervals (a point taken as a unit
/// interval).
fn same_as(op: Op, a0: &Value, a1: &Value, prec: Option<Prec>) -> Value {
    if a0.is_null() || a1.is_null() {
        Value::Null
    } else if as_interval(a0).is_some() || as_interval(a1).is_some() {
        let x = as_interval(a0)
            .cloned()
            .unwrap_or_else(|| point_interval(a0));
        let y = as_interval(a1)
            .cloned()
            .unwrap_or_else(|| point_interval(a1));
        match op {
            Op::SameOrBefore => bool_value(le(&high_pt(&x), &low_pt(&y), prec)),
            Op::SameOrAfter => bool_value(le(&high_pt(&y), &low_pt(&x), prec)),
            _ => bool_value(and3(
                eqp(&low_pt(&x), &low_pt(&y), prec),
                eqp(&high_pt(&x), &high_pt(&y), prec),
            )),
        }
    } else {
        let o = vcmp(a0, a1, prec);
        bool_value(o.map(|o| match op {
            Op::SameAs => o == Ordering::Equal,
            Op::SameOrBefore => o != Ordering::Greater,
            _ => o != Ordering::Less,
        }))
    }
}

/// `Before` (when `is_before`) or `After`, of points or intervals.
fn before_or_after(is_before: bool, a0: &Value, a1: &Value, prec: Option<Prec>) -> Value {
    if a0.is_null() || a1.is_null() {
        return Value::Null;
    }
    match (as_interval(a0), as_interval(a1)) {
        (None, None) => {
            let o = vcmp(a0, a1, prec);
            bool_value(o.map(|o| {
                if is_before {
                    o == Ordering::Less
                } else {
                    o == Ordering::Greater
                }
            }))
        }
        (x, y) => {
            let x = x.cloned().unwrap_or_else(|| point_interval(a0));
            let y = y.cloned().unwrap_or_else(|| point_interval(a1));
            if is_before {
                bool_value(before(&x, &y, prec))
            } else {
                bool_value(before(&y, &x, prec))
            }
        }
    }
}

/// The `Date`, `DateTime` and `Time` selectors (`op`); `present` has bit `i` set when the
/// node gives component `i`. Components stop at the first absent or null one.
fn selector(op: Op, a: &[Value], present: u8) -> CqlResult<Value> {
    let mut c = [0i32, 1, 1, 0, 0, 0, 0];
    let n = match op {
        Op::DateSel => 3,
        Op::DateTimeSel => 7,
        _ => 4,
    };
    let mut prec: i32 = -1;
    for i in 0..n {
        let v = a.get(i).unwrap_or(&Value::Null);
        if present & (1 << i) == 0 || v.is_null() {
            break;
        }
        let Some(x) = int_arg(v) else {
            return fail("date/time component is not an integer");
        };
        let idx = if op == Op::TimeSel { i + 3 } else { i };
        c[idx] = x as i32;
        prec = idx as i32;
    }
    if prec < 0 {
        return Ok(Value::Null);
    }
    let p = prec as Prec;
    let valid = |c: &[i32; 7]| {
        (1..=9999).contains(&c[0])
            && (1..=12).contains(&c[1])
            && c[2] >= 1
            && c[2] <= datetime::days_in_month(c[0], c[1] as u8) as i32
            && (0..=23).contains(&c[3])
            && (0..=59).contains(&c[4])
            && (0..=59).contains(&c[5])
            && (0..=999).contains(&c[6])
    };
    let mut check = c;
    if op == Op::TimeSel {
        check[0] = 2000;
    }
    if !valid(&check) {
        return fail("invalid date/time components");
    }
    Ok(match op {
        Op::DateSel => Value::Date(Date {
            c: [c[0], c[1], c[2]],
            prec: p,
        }),
        Op::DateTimeSel => {
            let off = match a.get(7) {
                Some(v) if present & (1 << 7) != 0 && !v.is_null() => match as_decimal(v) {
                    Some(d) => (d * Dec::from(60)).round().to_i16().unwrap_or(0),
                    None => 0,
                },
                _ => 0,
            };
            Value::DateTime(DateTime::new(c, off, p))
        }
        _ => Value::Time(Time {
            c: [c[3], c[4], c[5], c[6]],
            prec: p.max(HOUR),
        }),
    })
}
