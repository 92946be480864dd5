//! Interval semantics: boundaries normalized to closed points, null boundaries as unknown or unbounded.

use crate::datetime::{Prec, MS};
use crate::value::{Interval, Value};
use rust_decimal::Decimal;
use std::cmp::Ordering;

#[derive(Clone, Debug)]
pub enum Pt {
    V(Value),
    NegInf,
    PosInf,
    Unknown,
}

/// The next value of the point type (None when not defined or overflow).
pub fn successor(v: &Value) -> Option<Value> {
    step(v, 1)
}
pub fn predecessor(v: &Value) -> Option<Value> {
    step(v, -1)
}

fn step(v: &Value, dir: i64) -> Option<Value> {
    Some(match v {
        Value::Integer(i) => Value::Integer(i.checked_add(dir as i32)?),
        Value::Long(i) => Value::Long(i.checked_add(dir)?),
        Value::Decimal(d) => {
            let s = Decimal::new(dir, 8);
            Value::Decimal(d.checked_add(s)?)
        }
        Value::Quantity(q) => {
            let mut q = q.clone();
            q.value = q.value.checked_add(Decimal::new(dir, 8))?;
            Value::Quantity(q)
        }
        Value::DateTime(d) => {
            if d.prec == MS
                && ((dir > 0 && d.c == [9999, 12, 31, 23, 59, 59, 999])
                    || (dir < 0 && d.c == [1, 1, 1, 0, 0, 0, 0]))
            {
                return None;
            }
            Value::DateTime(d.add(dir, d.prec)?)
        }
        Value::Date(d) => Value::Date(d.add(dir, d.prec)?),
        Value::Time(t) => {
            if (dir > 0 && t.ms_of_day() == 86_399_999) || (dir < 0 && t.ms_of_day() == 0) {
                return None;
            }
            Value::Time(t.add(dir, t.prec)?)
        }
        _ => return None,
    })
}

pub fn low_pt(i: &Interval) -> Pt {
    match (&i.low, i.low_closed) {
        (Value::Null, true) => Pt::NegInf,
        (Value::Null, false) => Pt::Unknown,
        (v, true) => Pt::V(v.clone()),
        (v, false) => successor(v).map(Pt::V).unwrap_or(Pt::PosInf),
    }
}
pub fn high_pt(i: &Interval) -> Pt {
    match (&i.high, i.high_closed) {
        (Value::Null, true) => Pt::PosInf,
        (Value::Null, false) => Pt::Unknown,
        (v, true) => Pt::V(v.clone()),
        (v, false) => predecessor(v).map(Pt::V).unwrap_or(Pt::NegInf),
    }
}

pub fn vcmp(a: &Value, b: &Value, prec: Option<Prec>) -> Option<Ordering> {
    match (a, b, prec) {
        (Value::DateTime(x), Value::DateTime(y), Some(p)) => x.compare(y, Some(p)),
        (Value::Date(x), Value::Date(y), Some(p)) => x.compare(y, Some(p)),
        (Value::Date(x), Value::DateTime(y), Some(p)) => x.to_datetime().compare(y, Some(p)),
        (Value::DateTime(x), Value::Date(y), Some(p)) => x.compare(&y.to_datetime(), Some(p)),
        (Value::Time(x), Value::Time(y), Some(p)) => x.compare(y, Some(p)),
        _ => crate::value::compare(a, b),
    }
}

pub fn pcmp(a: &Pt, b: &Pt, prec: Option<Prec>) -> Option<Ordering> {
    match (a, b) {
        (Pt::Unknown, _) | (_, Pt::Unknown) => None,
        (Pt::NegInf, Pt::NegInf) | (Pt::PosInf, Pt::PosInf) => Some(Ordering::Equal),
        (Pt::NegInf, _) | (_, Pt::PosInf) => Some(Ordering::Less),
        (Pt::PosInf, _) | (_, Pt::NegInf) => Some(Ordering::Greater),
        (Pt::V(x), Pt::V(y)) => vcmp(x, y, prec),
    }
}

pub fn le(a: &Pt, b: &Pt, p: Option<Prec>) -> Option<bool> {
    pcmp(a, b, p).map(|o| o != Ordering::Greater)
}
pub fn lt(a: &Pt, b: &Pt, p: Option<Prec>) -> Option<bool> {
    pcmp(a, b, p).map(|o| o == Ordering::Less)
}
pub fn eqp(a: &Pt, b: &Pt, p: Option<Prec>) -> Option<bool> {
    pcmp(a, b, p).map(|o| o == Ordering::Equal)
}

pub fn and3(a: Option<bool>, b: Option<bool>) -> Option<bool> {
    match (a, b) {
        (Some(false), _) | (_, Some(false)) => Some(false),
        (Some(true), Some(true)) => Some(true),
        _ => None,
    }
}
pub fn or3(a: Option<bool>, b: Option<bool>) -> Option<bool> {
    match (a, b) {
        (Some(true), _) | (_, Some(true)) => Some(true),
        (Some(false), Some(false)) => Some(false),
        _ => None,
    }
}

pub fn interval_equal(a: &Interval, b: &Interval) -> Option<bool> {
    and3(
        eqp(&low_pt(a), &low_pt(b), None),
        eqp(&high_pt(a), &high_pt(b), None),
    )
}

pub fn interval_equivalent(a: &Interval, b: &Interval) -> bool {
    let same_point = |x: &Pt, y: &Pt| match (x, y) {
        (Pt::Unknown, Pt::Unknown) => true,
        (Pt::V(p), Pt::V(q)) => crate::value::equivalent(p, q),
        _ => pcmp(x, y, None) == Some(Ordering::Equal),
    };
    same_point(&low_pt(a), &low_pt(b)) && same_point(&high_pt(a), &high_pt(b))
}

/// point in interval
pub fn contains_point(i: &Interval, p: &Value, prec: Option<Prec>) -> Option<bool> {
    if p.is_null() {
        return None;
    }
    let pt = Pt::V(p.clone());
    // with an open bound compare strictly against the bound itself (no successor needed)
    let lo = match (&i.low, i.low_closed) {
        (Value::Null, true) => Some(true),
        (Value::Null, false) => None,
        (l, true) => le(&Pt::V(l.clone()), &pt, prec),
        (l, false) => lt(&Pt::V(l.clone()), &pt, prec),
    };
    let hi = match (&i.high, i.high_closed) {
        (Value::Null, true) => Some(true),
        (Value::Null, false) => None,
        (h, true) => le(&pt, &Pt::V(h.clone()), prec),
        (h, false) => lt(&pt, &Pt::V(h.clone()), prec),
    };
    and3(lo, hi)
}

/// a includes b
pub fn includes(a: &Interval, b: &Interval, prec: Option<Prec>) -> Option<bool> {
    and3(
        le(&low_pt(a), &low_pt(b), prec),
        le(&high_pt(b), &high_pt(a), prec),
    )
}

pub fn proper_includes(a: &Interval, b: &Interval, prec: Option<Prec>) -> Option<bool> {
    let inc = includes(a, b, prec);
    let eq = and3(
        eqp(&low_pt(a), &low_pt(b), prec),
        eqp(&high_pt(a), &high_pt(b), prec),
    );
    and3(inc, eq.map(|e| !e))
}

pub fn overlaps(a: &Interval, b: &Interval, prec: Option<Prec>) -> Option<bool> {
    and3(
        le(&low_pt(a), &high_pt(b), prec),
        le(&low_pt(b), &high_pt(a), prec),
    )
}

pub fn before(a: &Interval, b: &Interval, prec: Option<Prec>) -> Option<bool> {
    lt(&high_pt(a), &low_pt(b), prec)
}

pub fn meets_before(a: &Interval, b: &Interval, prec: Option<Prec>) -> Option<bool> {
    // successor(a.high) = b.low
    match (high_pt(a), low_pt(b)) {
        (Pt::V(h), Pt::V(l)) => {
            let h = match prec {
                Some(p) => match h {
                    Value::DateTime(d) => Value::DateTime(d.truncate(p)),
                    other => other,
                },
                None => h,
            };
            let s = match (&h, prec) {
                (Value::DateTime(d), Some(p)) => d.add(1, p).map(Value::DateTime),
                _ => successor(&h),
            };
            match s {
                Some(s) => vcmp(&s, &l, prec).map(|o| o == Ordering::Equal),
                None => Some(false),
            }
        }
        (Pt::Unknown, _) | (_, Pt::Unknown) => {
            // an unknown a.high is at least a.low; an unknown b.low is at most b.high: if even the
            // smallest possible a.high lies at or beyond the largest possible b.low, they cannot meet
            let a_high_min = match high_pt(a) {
                Pt::Unknown => low_pt(a),
                p => p,
            };
            let b_low_max = match low_pt(b) {
                Pt::Unknown => high_pt(b),
                p => p,
            };
            match pcmp(&a_high_min, &b_low_max, prec) {
                Some(Ordering::Greater) | Some(Ordering::Equal) => Some(false),
                _ => None,
            }
        }
        _ => Some(false),
    }
}

pub fn starts(a: &Interval, b: &Interval, prec: Option<Prec>) -> Option<bool> {
    and3(
        eqp(&low_pt(a), &low_pt(b), prec),
        le(&high_pt(a), &high_pt(b), prec),
    )
}

pub fn ends(a: &Interval, b: &Interval, prec: Option<Prec>) -> Option<bool> {
    and3(
        le(&low_pt(b), &low_pt(a), prec),
        eqp(&high_pt(a), &high_pt(b), prec),
    )
}

fn pt_value(p: &Pt, other: &Value, is_low: bool) -> Value {
    match p {
        Pt::V(v) => v.clone(),
        Pt::NegInf => crate::ops::min_value_like(other).unwrap_or(Value::Null),
        Pt::PosInf => crate::ops::max_value_like(other).unwrap_or(Value::Null),
        Pt::Unknown => {
            let _ = is_low;
            Value::Null
        }
    }
}

/// `start of` an interval
pub fn start(i: &Interval) -> Value {
    match (&i.low, i.low_closed) {
        (Value::Null, true) => crate::ops::min_value_like(&i.high).unwrap_or(Value::Null),
        (Value::Null, false) => Value::Null,
        (v, true) => v.clone(),
        (v, false) => successor(v).unwrap_or(Value::Null),
    }
}
pub fn end(i: &Interval) -> Value {
    match (&i.high, i.high_closed) {
        (Value::Null, true) => crate::ops::max_value_like(&i.low).unwrap_or(Value::Null),
        (Value::Null, false) => Value::Null,
        (v, true) => v.clone(),
        (v, false) => predecessor(v).unwrap_or(Value::Null),
    }
}

fn min_pt(a: Pt, b: Pt) -> Option<Pt> {
    match pcmp(&a, &b, None)? {
        Ordering::Greater => Some(b),
        _ => Some(a),
    }
}
fn max_pt(a: Pt, b: Pt) -> Option<Pt> {
    match pcmp(&a, &b, None)? {
        Ordering::Less => Some(b),
        _ => Some(a),
    }
}

fn interval_from_points(lo: Pt, hi: Pt, sample: &Value) -> Value {
    let low_closed = !matches!(lo, Pt::Unknown);
    let high_closed = !matches!(hi, Pt::Unknown);
    let low = match &lo {
        Pt::NegInf => Value::Null,
        _ => pt_value(&lo, sample, true),
    };
    let high = match &hi {
        Pt::PosInf => Value::Null,
        _ => pt_value(&hi, sample, false),
    };
    Value::interval(low, high, low_closed, high_closed)
}

fn sample(a: &Interval) -> Value {
    if a.low.is_null() {
        a.high.clone()
    } else {
        a.low.clone()
    }
}

pub fn union(a: &Interval, b: &Interval) -> Option<Value> {
    // defined only when they overlap or meet
    let ov = overlaps(a, b, None);
    let m = or3(meets_before(a, b, None), meets_before(b, a, None));
    match or3(ov, m) {
        Some(true) => {}
        Some(false) => return Some(Value::Null),
        None => return None,
    }
    let lo = min_pt(low_pt(a), low_pt(b))?;
    let hi = max_pt(high_pt(a), high_pt(b))?;
    Some(interval_from_points(lo, hi, &sample(a)))
}

pub fn intersect(a: &Interval, b: &Interval) -> Option<Value> {
    match overlaps(a, b, None) {
        Some(true) => {}
        Some(false) => return Some(Value::Null),
        None => {
            // partially known: compute with unknowns
        }
    }
    let lo = match pcmp(&low_pt(a), &low_pt(b), None) {
        Some(Ordering::Less) => low_pt(b),
        Some(_) => low_pt(a),
        None => Pt::Unknown,
    };
    let hi = match pcmp(&high_pt(a), &high_pt(b), None) {
        Some(Ordering::Greater) => high_pt(b),
        Some(_) => high_pt(a),
        None => Pt::Unknown,
    };
    Some(interval_from_points(lo, hi, &sample(a)))
}

pub fn except(a: &Interval, b: &Interval) -> Option<Value> {
    match overlaps(a, b, None) {
        Some(false) => return Some(Value::Interval(std::sync::Arc::new(a.clone()))),
        None => return None,
        _ => {}
    }
    let (al, ah, bl, bh) = (low_pt(a), high_pt(a), low_pt(b), high_pt(b));
    let b_starts_after = lt(&al, &bl, None)?;
    let b_ends_before = lt(&bh, &ah, None)?;
    match (b_starts_after, b_ends_before) {
        (true, true) => Some(Value::Null),
        (true, false) => {
            let hi = match &bl {
                Pt::V(v) => Pt::V(predecessor(v)?),
                other => other.clone(),
            };
            Some(interval_from_points(al, hi, &sample(a)))
        }
        (false, true) => {
            let lo = match &bh {
                Pt::V(v) => Pt::V(successor(v)?),
                other => other.clone(),
            };
            Some(interval_from_points(lo, ah, &sample(a)))
        }
        (false, false) => Some(Value::Null),
    }
}

/// Width of an interval (high - low).
pub fn width(i: &Interval) -> Value {
    match (low_pt(i), high_pt(i)) {
        (Pt::V(l), Pt::V(h)) => crate::ops::subtract_values(&h, &l).unwrap_or(Value::Null),
        _ => Value::Null,
    }
}
