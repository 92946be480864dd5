//! Quantities and UCUM unit conversion for the common units.

use crate::value::Quantity;
use rust_decimal::Decimal;
use std::cmp::Ordering;
use std::str::FromStr;
use std::sync::Arc;

/// (dimension, factor to the base unit of the dimension)
fn unit_info(u: &str) -> Option<(&'static str, Decimal)> {
    let d = |s: &str| Decimal::from_str(s).unwrap_or_default();
    Some(match u {
        "" | "1" => ("1", d("1")),
        "%" => ("1", d("0.01")),
        // mass
        "g" => ("g", d("1")),
        "mg" => ("g", d("0.001")),
        "ug" | "mcg" => ("g", d("0.000001")),
        "ng" => ("g", d("0.000000001")),
        "kg" => ("g", d("1000")),
        "[lb_av]" | "lb" | "lbs" => ("g", d("453.59237")),
        "[oz_av]" | "oz" => ("g", d("28.349523125")),
        // length
        "m" => ("m", d("1")),
        "cm" => ("m", d("0.01")),
        "mm" => ("m", d("0.001")),
        "km" => ("m", d("1000")),
        "[in_i]" | "in" => ("m", d("0.0254")),
        "[ft_i]" | "ft" => ("m", d("0.3048")),
        // volume
        "L" | "l" => ("L", d("1")),
        "dL" => ("L", d("0.1")),
        "mL" | "ml" => ("L", d("0.001")),
        "uL" => ("L", d("0.000001")),
        // time (UCUM and CQL calendar words)
        "ms" | "millisecond" | "milliseconds" => ("s", d("0.001")),
        "s" | "second" | "seconds" => ("s", d("1")),
        "min" | "minute" | "minutes" => ("s", d("60")),
        "h" | "hour" | "hours" => ("s", d("3600")),
        "d" | "day" | "days" => ("s", d("86400")),
        "wk" | "week" | "weeks" => ("s", d("604800")),
        "mo" => ("s", d("2629800")),
        "a" => ("s", d("31557600")),
        "month" | "months" => ("mo", d("1")),
        "year" | "years" => ("mo", d("12")),
        // pressure
        "mm[Hg]" => ("mm[Hg]", d("1")),
        // concentration
        "mg/dL" => ("g/L", d("0.01")),
        "g/dL" => ("g/L", d("10")),
        "g/L" => ("g/L", d("1")),
        "mg/L" => ("g/L", d("0.001")),
        "kg/m2" => ("kg/m2", d("1")),
        "mmol/L" => ("mmol/L", d("1")),
        "mg/mmol" => ("mg/mmol", d("1")),
        "mg/g" => ("mg/g", d("1")),
        "mg/kg" => ("mg/g", d("0.001")),
        "/min" | "{beats}/min" | "{breaths}/min" => ("/min", d("1")),
        "mL/min/{1.73_m2}" | "mL/min/1.73m2" | "mL/min/1.73_m2" => ("mL/min/1.73m2", d("1")),
        "ug/L" => ("g/L", d("0.000001")),
        "ng/mL" => ("g/L", d("0.000001")),
        "ug/mL" => ("g/L", d("0.001")),
        "mg/mL" => ("g/L", d("1")),
        "umol/L" => ("mmol/L", d("0.001")),
        "mmol/mol" => ("mmol/mol", d("1")),
        "[lb_av]/[in_i]2" => ("kg/m2", d("703.0695796")),
        "/d" => ("/d", d("1")),
        _ => return None,
    })
}

/// Convert `q` to `unit`, if possible.
pub fn convert(q: &Quantity, unit: &str) -> Option<Quantity> {
    if &*q.unit == unit {
        return Some(q.clone());
    }
    let (da, fa) = unit_info(&q.unit)?;
    let (db, fb) = unit_info(unit)?;
    if da != db {
        return None;
    }
    let v = q.value.checked_mul(fa)?.checked_div(fb)?;
    Some(Quantity {
        value: v.round_dp(8).normalize(),
        unit: Arc::from(unit),
    })
}

pub fn compare_quantities(a: &Quantity, b: &Quantity) -> Option<Ordering> {
    if a.unit == b.unit || (is_one(&a.unit) && is_one(&b.unit)) {
        return a.value.partial_cmp(&b.value);
    }
    // calendar durations: 1 year = 12 months; day-and-shorter convert exactly
    let c = convert(b, &a.unit)?;
    a.value.partial_cmp(&c.value)
}

fn is_one(u: &str) -> bool {
    u.is_empty() || u == "1"
}

/// Result unit and value of a / b when units are compatible or trivial.
pub fn quantity_div(a: &Quantity, b: &Quantity) -> Option<Quantity> {
    if b.value.is_zero() {
        return None;
    }
    if is_one(&b.unit) {
        return Some(Quantity {
            value: a.value.checked_div(b.value)?,
            unit: a.unit.clone(),
        });
    }
    let c = convert(b, &a.unit)?;
    if c.value.is_zero() {
        return None;
    }
    Some(Quantity {
        value: a.value.checked_div(c.value)?,
        unit: Arc::from("1"),
    })
}

pub fn quantity_mul(a: &Quantity, b: &Quantity) -> Option<Quantity> {
    let unit: Arc<str> = match (is_one(&a.unit), is_one(&b.unit)) {
        (true, true) => Arc::from("1"),
        (true, false) => b.unit.clone(),
        (false, true) => a.unit.clone(),
        (false, false) => {
            if a.unit == b.unit {
                Arc::from(format!("{}2", a.unit))
            } else {
                Arc::from(format!("{}.{}", a.unit, b.unit))
            }
        }
    };
    Some(Quantity {
        value: a.value.checked_mul(b.value)?,
        unit,
    })
}

/// Add or subtract quantities (b converted to a's unit).
pub fn quantity_add(a: &Quantity, b: &Quantity, sign: i32) -> Option<Quantity> {
    let (a, b) = if a.unit == b.unit {
        (a.clone(), b.clone())
    } else if let Some(c) = convert(b, &a.unit) {
        (a.clone(), c)
    } else {
        return None;
    };
    let v = if sign < 0 {
        a.value.checked_sub(b.value)?
    } else {
        a.value.checked_add(b.value)?
    };
    Some(Quantity {
        value: v,
        unit: a.unit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    fn q(v: &str, u: &str) -> Quantity {
        Quantity {
            value: Decimal::from_str(v).unwrap(),
            unit: Arc::from(u),
        }
    }
    #[test]
    fn conversions() {
        assert_eq!(
            convert(&q("1", "kg"), "g").unwrap().value,
            Decimal::from(1000)
        );
        assert_eq!(
            convert(&q("12", "[in_i]"), "cm").unwrap().value,
            Decimal::from_str("30.48").unwrap()
        );
        assert_eq!(
            compare_quantities(&q("1", "L"), &q("999", "mL")),
            Some(Ordering::Greater)
        );
        assert_eq!(compare_quantities(&q("1", "kg"), &q("1", "L")), None);
        assert_eq!(
            compare_quantities(&q("1", "year"), &q("12", "months")),
            Some(Ordering::Equal)
        );
    }
}
