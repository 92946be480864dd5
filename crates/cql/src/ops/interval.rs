//! Interval operators: the `Interval` selector, `start` / `end` / `width` / `size` / `point
//! from`, membership (`in`, `contains`, `includes`, `included in` and their proper forms, of
//! lists too), timing relations (`overlaps`, `meets`, `starts`, `ends`), `collapse` and
//! `expand`. The semantics of boundaries live in [`crate::interval`].

use super::arithmetic::{binary, ordered_type_name};
use super::date_time::temporal_unit_precision;
use super::list::list_contains;
use super::{bool_value, operand, Op};
use crate::datetime::{self, Prec, DAY, HOUR, MONTH, WEEK, YEAR};
use crate::engine::{Compiler, Expr, Scope};
use crate::interval::{
    and3, contains_point, end, ends, eqp, high_pt, includes, low_pt, lt, meets_before, or3,
    overlaps, pcmp, predecessor, proper_includes, start, starts, union, width, Pt,
};
use crate::value::{as_decimal, compare, equal, Interval, Quantity, Value};
use crate::{fail, CqlResult, EvalContext};
use rust_decimal::prelude::*;
use rust_decimal::Decimal as Dec;
use serde_json::Value as Json;
use std::cmp::Ordering;
use std::sync::Arc;

pub(super) use super::compile_operands as compile;

/// An `Interval` selector node; its closedness may be computed (`lowClosedExpression`).
pub(crate) fn compile_selector(
    c: &mut Compiler,
    node: &Json,
    scope: &mut Scope,
) -> CqlResult<Expr> {
    let low = c.expr_or_null(node.get("low"), scope)?;
    let high = c.expr_or_null(node.get("high"), scope)?;
    let mut closed = |expr_key: &str, flag_key: &str, c: &mut Compiler| match node.get(expr_key) {
        Some(e) => c.expr(e, scope),
        None => Ok(Expr::Lit(Value::Boolean(
            node.get(flag_key).and_then(|b| b.as_bool()).unwrap_or(true),
        ))),
    };
    let lc = closed("lowClosedExpression", "lowClosed", c)?;
    let hc = closed("highClosedExpression", "highClosed", c)?;
    Ok(Expr::Interval {
        low: Box::new(low),
        high: Box::new(high),
        lc: Box::new(lc),
        hc: Box::new(hc),
    })
}

/// The `Interval` selector on evaluated bounds: fails for a low bound above the high one, for an
/// empty integer interval and for bounds of different types.
pub fn make_interval(l: Value, h: Value, lc: bool, hc: bool) -> CqlResult<Value> {
    if !l.is_null() && !h.is_null() {
        let lv = match (&l, &h) {
            (Value::Integer(_), Value::Decimal(_)) => {
                Value::Decimal(as_decimal(&l).unwrap_or_default())
            }
            _ => l.clone(),
        };
        match compare(&lv, &h) {
            Some(Ordering::Greater) => {
                return fail("invalid interval: the low bound is greater than the high bound")
            }
            Some(Ordering::Equal)
                if !(lc && hc) && matches!(l, Value::Integer(_) | Value::Long(_)) =>
            {
                return fail("invalid interval: empty")
            }
            None if ordered_type_name(&l) != ordered_type_name(&h)
                && !matches!(
                    (&l, &h),
                    (Value::Date(_), Value::DateTime(_)) | (Value::DateTime(_), Value::Date(_))
                ) =>
            {
                return fail("invalid interval: bounds have different types");
            }
            _ => {}
        }
    }
    Ok(Value::interval(l, h, lc, hc))
}

pub(super) fn apply(
    _cx: &EvalContext,
    op: Op,
    args: &[Value],
    prec: Option<Prec>,
) -> CqlResult<Value> {
    use Value::*;
    let (a0, a1) = (operand(args, 0), operand(args, 1));
    Ok(match op {
        Op::Start => match a0 {
            Interval(i) => start(i),
            _ => Null,
        },
        Op::End => match a0 {
            Interval(i) => end(i),
            _ => Null,
        },
        Op::Width => match a0 {
            Interval(i)
                if matches!(i.low, Date(_) | DateTime(_) | Time(_))
                    || matches!(i.high, Date(_) | DateTime(_) | Time(_)) =>
            {
                return fail("Width is not defined for date/time intervals")
            }
            Interval(i) => width(i),
            _ => Null,
        },
        Op::Size => match a0 {
            Interval(i) => match width(i) {
                Null => Null,
                w => binary(Op::Add, &w, &one_like(&w)).unwrap_or(Null),
            },
            _ => Null,
        },
        Op::PointFrom => match a0 {
            Interval(i) => {
                let (s, en) = (start(i), end(i));
                if equal(&s, &en) == Some(true) {
                    s
                } else {
                    return fail("PointFrom requires a unit interval");
                }
            }
            _ => Null,
        },
        Op::In | Op::Contains | Op::ProperIn | Op::ProperContains => membership(op, a0, a1, prec)?,
        Op::Includes | Op::IncludedIn | Op::ProperIncludes | Op::ProperIncludedIn => {
            inclusion(op, a0, a1, prec)?
        }
        Op::Overlaps
        | Op::OverlapsBefore
        | Op::OverlapsAfter
        | Op::Meets
        | Op::MeetsBefore
        | Op::MeetsAfter
        | Op::Starts
        | Op::Ends => timing(op, a0, a1, prec),
        Op::Collapse => match a0 {
            List(l) => collapse(l, a1)?,
            _ => Null,
        },
        Op::Expand => expand(a0, a1)?,
        _ => return super::not_implemented(op),
    })
}

pub(super) fn as_interval(v: &Value) -> Option<&Interval> {
    match v {
        Value::Interval(i) => Some(i),
        _ => None,
    }
}

/// The closed unit interval `[v, v]`.
pub(super) fn point_interval(v: &Value) -> Interval {
    Interval {
        low: v.clone(),
        high: v.clone(),
        low_closed: true,
        high_closed: true,
    }
}

/// The step of a width's type, for `Size` (`width + 1`).
fn one_like(v: &Value) -> Value {
    match v {
        Value::Integer(_) => Value::Integer(1),
        Value::Long(_) => Value::Long(1),
        Value::Decimal(_) => Value::Decimal(Dec::new(1, 8)),
        Value::Quantity(q) => Value::Quantity(Quantity {
            value: Dec::new(1, 8),
            unit: q.unit.clone(),
        }),
        _ => Value::Null,
    }
}

/// `In`, `Contains`, `ProperIn`, `ProperContains`: an element in a list or an interval.
fn membership(op: Op, a0: &Value, a1: &Value, prec: Option<Prec>) -> CqlResult<Value> {
    use Value::*;
    let (elem, coll) = if matches!(op, Op::In | Op::ProperIn) {
        (a0, a1)
    } else {
        (a1, a0)
    };
    let proper = matches!(op, Op::ProperIn | Op::ProperContains);
    Ok(match coll {
        Null => Boolean(false),
        List(l) => {
            let r = list_contains(l, elem);
            if proper {
                bool_value(r.map(|r| r && l.len() > 1))
            } else {
                bool_value(r)
            }
        }
        Interval(i) => {
            if elem.is_null() {
                Null
            } else if let Interval(inner) = elem {
                if proper {
                    bool_value(proper_includes(i, inner, prec))
                } else {
                    bool_value(includes(i, inner, prec))
                }
            } else if proper {
                let c = contains_point(i, elem, prec);
                let not_bounds = and3(
                    eqp(&low_pt(i), &Pt::V(elem.clone()), prec).map(|x| !x),
                    eqp(&high_pt(i), &Pt::V(elem.clone()), prec).map(|x| !x),
                );
                bool_value(and3(c, not_bounds))
            } else {
                bool_value(contains_point(i, elem, prec))
            }
        }
        _ => return fail(format!("{op:?} is not defined for a {}", coll.type_name())),
    })
}

/// `Includes`, `IncludedIn`, `ProperIncludes`, `ProperIncludedIn`: of lists or intervals (or an
/// element, as a unit list or interval).
fn inclusion(op: Op, a0: &Value, a1: &Value, prec: Option<Prec>) -> CqlResult<Value> {
    use Value::*;
    let (big, small) = if matches!(op, Op::Includes | Op::ProperIncludes) {
        (a0, a1)
    } else {
        (a1, a0)
    };
    let proper = matches!(op, Op::ProperIncludes | Op::ProperIncludedIn);
    Ok(match (big, small) {
        (Null, List(_)) => Null,
        (Null, _) if matches!(op, Op::ProperIncludes) => Boolean(false),
        (Null, _) | (_, Null) => Null,
        (List(x), List(y)) => {
            let all = y.iter().all(|v| list_contains(x, v) == Some(true));
            if proper {
                Boolean(all && x.len() > y.len())
            } else {
                Boolean(all)
            }
        }
        (List(x), other) => bool_value(list_contains(x, other)),
        (Interval(x), Interval(y)) => {
            if proper {
                bool_value(proper_includes(x, y, prec))
            } else {
                bool_value(includes(x, y, prec))
            }
        }
        (Interval(x), p) => bool_value(contains_point(x, p, prec)),
        _ => {
            return fail(format!(
                "{op:?} is not defined for {} and {}",
                big.type_name(),
                small.type_name()
            ))
        }
    })
}

/// `Overlaps`, `Meets`, `Starts`, `Ends` and their before / after forms (a point taken as a unit
/// interval).
fn timing(op: Op, a0: &Value, a1: &Value, prec: Option<Prec>) -> Value {
    if a0.is_null() || a1.is_null() {
        return Value::Null;
    }
    let x = as_interval(a0)
        .cloned()
        .unwrap_or_else(|| point_interval(a0));
    let y = as_interval(a1)
        .cloned()
        .unwrap_or_else(|| point_interval(a1));
    bool_value(match op {
        Op::Overlaps => overlaps(&x, &y, prec),
        Op::OverlapsBefore => and3(overlaps(&x, &y, prec), lt(&low_pt(&x), &low_pt(&y), prec)),
        Op::OverlapsAfter => and3(overlaps(&x, &y, prec), lt(&high_pt(&y), &high_pt(&x), prec)),
        Op::Meets => or3(meets_before(&x, &y, prec), meets_before(&y, &x, prec)),
        Op::MeetsBefore => meets_before(&x, &y, prec),
        Op::MeetsAfter => meets_before(&y, &x, prec),
        Op::Starts => starts(&x, &y, prec),
        _ => ends(&x, &y, prec),
    })
}

/// `Collapse`: merges overlapping and meeting intervals, and those within `per` of each other.
fn collapse(list: &[Value], per: &Value) -> CqlResult<Value> {
    let mut ivs: Vec<Interval> = list
        .iter()
        .filter_map(|v| as_interval(v).cloned())
        .collect();
    if ivs.is_empty() {
        return Ok(Value::list(vec![]));
    }
    ivs.sort_by(|a, c| pcmp(&low_pt(a), &low_pt(c), None).unwrap_or(Ordering::Equal));
    let mut out: Vec<Interval> = vec![ivs[0].clone()];
    for i in ivs.into_iter().skip(1) {
        let last = out.last().cloned().unwrap_or_else(|| i.clone());
        let ov = overlaps(&last, &i, None) == Some(true);
        let meets = meets_before(&last, &i, None) == Some(true);
        let within_per = if !per.is_null() {
            // gap smaller than or equal to per
            match (end(&last), start(&i)) {
                (h, l) if !h.is_null() && !l.is_null() => match binary(Op::Add, &h, per) {
                    Ok(x) => compare(&x, &l).is_some_and(|o| o != Ordering::Less),
                    Err(_) => false,
                },
                _ => false,
            }
        } else {
            false
        };
        if ov || meets || within_per {
            if let Some(Value::Interval(u)) = union(&last, &i).or_else(|| {
                let hi = match pcmp(&high_pt(&last), &high_pt(&i), None) {
                    Some(Ordering::Less) => i.clone(),
                    _ => last.clone(),
                };
                Some(Value::interval(
                    last.low.clone(),
                    hi.high.clone(),
                    last.low_closed,
                    hi.high_closed,
                ))
            }) {
                let n = out.len();
                out[n - 1] = (*u).clone();
            } else {
                let hi = match pcmp(&high_pt(&last), &high_pt(&i), None) {
                    Some(Ordering::Less) => i.clone(),
                    _ => last.clone(),
                };
                let n = out.len();
                out[n - 1] = Interval {
                    low: last.low.clone(),
                    high: hi.high.clone(),
                    low_closed: last.low_closed,
                    high_closed: hi.high_closed,
                };
            }
        } else {
            out.push(i);
        }
    }
    Ok(Value::list(
        out.into_iter()
            .map(|i| Value::Interval(Arc::new(i)))
            .collect(),
    ))
}

/// `Expand`: an interval's points, or a list of intervals' unit intervals, `per` apart (by
/// default 1 or the points' own precision).
fn expand(v: &Value, per: &Value) -> CqlResult<Value> {
    let (ivs, as_points): (Vec<Interval>, bool) = match v {
        Value::List(l) => (
            l.iter().filter_map(|x| as_interval(x).cloned()).collect(),
            false,
        ),
        Value::Interval(i) => (vec![(**i).clone()], true),
        _ => return Ok(Value::Null),
    };
    let mut out = Vec::new();
    for i in ivs {
        let (lo, hi) = (start(&i), end(&i));
        if lo.is_null() || hi.is_null() {
            continue;
        }
        let point_prec = match &lo {
            Value::Date(d) => Some(d.prec),
            Value::DateTime(d) => Some(d.prec),
            Value::Time(t) => Some(t.prec),
            _ => None,
        };
        let step = match per {
            Value::Null => match &lo {
                Value::Integer(_) | Value::Long(_) => Value::Integer(1),
                Value::Decimal(_) => Value::Decimal(Dec::ONE),
                Value::Date(d) => Value::Quantity(Quantity {
                    value: Dec::ONE,
                    unit: Arc::from(unit_name(d.prec)),
                }),
                Value::DateTime(d) => Value::Quantity(Quantity {
                    value: Dec::ONE,
                    unit: Arc::from(unit_name(d.prec)),
                }),
                Value::Time(t) => Value::Quantity(Quantity {
                    value: Dec::ONE,
                    unit: Arc::from(unit_name(t.prec)),
                }),
                _ => return fail("expand: unsupported point type"),
            },
            Value::Quantity(q) => match &lo {
                Value::Integer(_) if q.value.fract().is_zero() => {
                    Value::Integer(q.value.to_i32().unwrap_or(1))
                }
                Value::Integer(_) | Value::Decimal(_) => Value::Decimal(q.value),
                _ => {
                    if let (Some(pp), Some(up)) = (point_prec, temporal_unit_precision(&q.unit)) {
                        if up > pp && up != WEEK {
                            continue;
                        }
                    }
                    per.clone()
                }
            },
            other => other.clone(),
        };
        // temporal points are taken at the precision of the per unit when it is coarser
        let (lo, hi) = match (&step, point_prec) {
            (Value::Quantity(q), Some(pp)) => match temporal_unit_precision(&q.unit) {
                Some(up) if up < pp && up != WEEK => {
                    (truncate_temporal(&lo, up), truncate_temporal(&hi, up))
                }
                _ => (lo, hi),
            },
            _ => (lo, hi),
        };
        let mut cur = match (&lo, &step) {
            (Value::Integer(x), Value::Decimal(_)) => Value::Decimal(Dec::from(*x)),
            _ => lo.clone(),
        };
        let mut n = 0;
        loop {
            let next = binary(Op::Add, &cur, &step)?;
            if next.is_null() {
                break;
            }
            let last = match (&next, &step) {
                (Value::Decimal(x), Value::Decimal(st)) => {
                    Value::Decimal(*x - Dec::new(1, st.scale()))
                }
                _ => match predecessor(&next) {
                    Some(p) => p,
                    None => break,
                },
            };
            if compare(&last, &hi).is_none_or(|o| o == Ordering::Greater) {
                break;
            }
            if as_points {
                out.push(cur.clone());
            } else {
                out.push(Value::interval(cur.clone(), last, true, true));
            }
            cur = next;
            n += 1;
            if n > 100_000 {
                return fail("expand: too many points");
            }
        }
    }
    Ok(Value::list(out))
}

/// A date/time value cut to precision `p`.
fn truncate_temporal(v: &Value, p: Prec) -> Value {
    match v {
        Value::DateTime(d) => Value::DateTime(d.truncate(p)),
        Value::Date(d) => Value::Date(d.to_datetime().truncate(p).date()),
        Value::Time(t) => {
            let mut t = *t;
            if p < t.prec && p >= HOUR {
                for i in (p as usize - 2)..4 {
                    t.c[i] = 0;
                }
                t.prec = p;
            }
            Value::Time(t)
        }
        other => other.clone(),
    }
}

/// The calendar unit of a precision.
fn unit_name(p: Prec) -> &'static str {
    match p {
        YEAR => "year",
        MONTH => "month",
        DAY => "day",
        HOUR => "hour",
        datetime::MINUTE => "minute",
        datetime::SECOND => "second",
        _ => "millisecond",
    }
}
