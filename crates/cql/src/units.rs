//! Quantities and UCUM unit conversion for the common units.

use crate::value::Quantity;
use rust_decimal::Decimal;
use std::cmp::Ordering;
use std::str::FromStr;
use std::sync::Arc;

/// (dimension, factor to the base unit of the dimension)
fn unit_info(u: &str) -> Option<(&'static str, Decimal)> {
    let factor = |s: &str| Decimal::from_str(s).unwrap_or_default();
    Some(match u {
        "" | "1" => ("1", factor("1")),
        "%" => ("1", factor("0.01")),
        // mass
        "g" => ("g", factor("1")),
        "mg" => ("g", factor("0.001")),
        "ug" | "mcg" => ("g", factor("0.000001")),
        "ng" => ("g", factor("0.000000001")),
        "kg" => ("g", factor("1000")),
        "[lb_av]" | "lb" | "lbs" => ("g", factor("453.59237")),
        "[oz_av]" | "oz" => ("g", factor("28.349523125")),
        // length
        "m" => ("m", factor("1")),
        "cm" => ("m", factor("0.01")),
        "mm" => ("m", factor("0.001")),
        "km" => ("m", factor("1000")),
        "[in_i]" | "in" => ("m", factor("0.0254")),
        "[ft_i]" | "ft" => ("m", factor("0.3048")),
        // volume
        "L" | "l" => ("L", factor("1")),
        "dL" => ("L", factor("0.1")),
        "mL" | "ml" => ("L", factor("0.001")),
        "uL" => ("L", factor("0.000001")),
        // time (UCUM and CQL calendar words)
        "ms" | "millisecond" | "milliseconds" => ("s", factor("0.001")),
        "s" | "second" | "seconds" => ("s", factor("1")),
        "min" | "minute" | "minutes" => ("s", factor("60")),
        "h" | "hour" | "hours" => ("s", factor("3600")),
        "d" | "day" | "days" => ("s", factor("86400")),
        "wk" | "week" | "weeks" => ("s", factor("604800")),
        "mo" => ("s", factor("2629800")),
        "a" => ("s", factor("31557600")),
        "month" | "months" => ("mo", factor("1")),
        "year" | "years" => ("mo", factor("12")),
        // pressure
        "mm[Hg]" => ("mm[Hg]", factor("1")),
        // concentration
        "mg/dL" => ("g/L", factor("0.01")),
        "g/dL" => ("g/L", factor("10")),
        "g/L" => ("g/L", factor("1")),
        "mg/L" => ("g/L", factor("0.001")),
        "kg/m2" => ("kg/m2", factor("1")),
        "mmol/L" => ("mmol/L", factor("1")),
        "mg/mmol" => ("mg/mmol", factor("1")),
        "mg/g" => ("mg/g", factor("1")),
        "mg/kg" => ("mg/g", factor("0.001")),
        "/min" | "{beats}/min" | "{breaths}/min" => ("/min", factor("1")),
        "mL/min/{1.73_m2}" | "mL/min/1.73m2" | "mL/min/1.73_m2" => ("mL/min/1.73m2", factor("1")),
        "ug/L" => ("g/L", factor("0.000001")),
        "ng/mL" => ("g/L", factor("0.000001")),
        "ug/mL" => ("g/L", factor("0.001")),
        "mg/mL" => ("g/L", factor("1")),
        "umol/L" => ("mmol/L", factor("0.001")),
        "mmol/mol" => ("mmol/mol", factor("1")),
        "[lb_av]/[in_i]2" => ("kg/m2", factor("703.0695796")),
        "/d" => ("/d", factor("1")),
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
    fn quantity(v: &str, u: &str) -> Quantity {
        Quantity {
            value: Decimal::from_str(v).unwrap(),
            unit: Arc::from(u),
        }
    }
    #[test]
    fn conversions() {
        assert_eq!(
            convert(&quantity("1", "kg"), "g").unwrap().value,
            Decimal::from(1000)
        );
        assert_eq!(
            convert(&quantity("12", "[in_i]"), "cm").unwrap().value,
            Decimal::from_str("30.48").unwrap()
        );
        assert_eq!(
            compare_quantities(&quantity("1", "L"), &quantity("999", "mL")),
            Some(Ordering::Greater)
        );
        assert_eq!(
            compare_quantities(&quantity("1", "kg"), &quantity("1", "L")),
            None
        );
        assert_eq!(
            compare_quantities(&quantity("1", "year"), &quantity("12", "months")),
            Some(Ordering::Equal)
        );
    }
}
