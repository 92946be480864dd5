//! Focused operator tests where the spec corpus is thin: null propagation, interval boundaries,
//! date/time precision and uncertainty, calendar arithmetic, unit conversion, FHIR model access.

use cql::datetime::{parse_date, parse_datetime, DAY, MONTH, YEAR};
use cql::ops::{apply, Op};
use cql::value::{equivalent, Quantity};
use cql::Value;
use rust_decimal::Decimal;
use std::str::FromStr;
use std::sync::Arc;

fn dt(s: &str) -> Value {
    Value::DateTime(parse_datetime(s, 0).unwrap())
}
fn d(s: &str) -> Value {
    Value::Date(parse_date(s).unwrap())
}
fn i(n: i32) -> Value {
    Value::Integer(n)
}
fn q(v: &str, u: &str) -> Value {
    Value::Quantity(Quantity {
        value: Decimal::from_str(v).unwrap(),
        unit: Arc::from(u),
    })
}
fn iv(l: Value, h: Value, lc: bool, hc: bool) -> Value {
    Value::interval(l, h, lc, hc)
}
fn t() -> Value {
    Value::Boolean(true)
}
fn f() -> Value {
    Value::Boolean(false)
}
fn cx() -> cql::EvalContext {
    cql::EvalContext::from_clock()
}
fn ap(op: Op, args: &[Value]) -> Value {
    apply(&cx(), op, args, None).unwrap()
}
fn ap_p(op: Op, args: &[Value], p: u8) -> Value {
    apply(&cx(), op, args, Some(p)).unwrap()
}
fn assert_eqv(a: Value, b: Value) {
    assert!(equivalent(&a, &b), "{} !~ {}", a.to_json(), b.to_json());
}

#[test]
fn null_propagation() {
    for op in [
        Op::Add,
        Op::Subtract,
        Op::Multiply,
        Op::Divide,
        Op::Equal,
        Op::Less,
        Op::Concatenate,
    ] {
        assert!(ap(op, &[Value::Null, i(1)]).is_null(), "{op:?}");
    }
    assert_eqv(ap(Op::Equivalent, &[Value::Null, Value::Null]), t());
    assert_eqv(ap(Op::Not, &[Value::Null]), Value::Null);
    assert_eqv(ap(Op::Implies, &[f(), Value::Null]), t());
    assert_eqv(ap(Op::Exists, &[Value::list(vec![Value::Null])]), f());
    assert_eqv(ap(Op::Count, &[Value::list(vec![Value::Null, i(1)])]), i(1));
    assert_eqv(ap(Op::In, &[i(1), Value::Null]), f());
}

#[test]
fn integer_overflow_and_division() {
    assert!(ap(Op::Add, &[i(i32::MAX), i(1)]).is_null());
    assert!(ap(Op::Divide, &[i(1), i(0)]).is_null());
    assert_eqv(
        ap(Op::Divide, &[i(1), i(3)]),
        Value::Decimal(Decimal::from_str("0.33333333").unwrap()),
    );
    assert_eqv(ap(Op::TruncatedDivide, &[i(-7), i(2)]), i(-3));
}

#[test]
fn interval_boundaries() {
    let closed = iv(i(1), i(10), true, true);
    let open = iv(i(1), i(10), false, false);
    assert_eqv(ap(Op::In, &[i(1), closed.clone()]), t());
    assert_eqv(ap(Op::In, &[i(1), open.clone()]), f());
    assert_eqv(ap(Op::Start, std::slice::from_ref(&open)), i(2));
    assert_eqv(ap(Op::End, &[open]), i(9));
    // open null low = unknown start; closed null high = unbounded
    let unknown_low = iv(Value::Null, i(10), false, true);
    assert!(ap(Op::In, &[i(5), unknown_low.clone()]).is_null());
    assert_eqv(ap(Op::In, &[i(11), unknown_low]), f());
    let unbounded = iv(i(1), Value::Null, true, true);
    assert_eqv(ap(Op::In, &[i(1_000_000), unbounded.clone()]), t());
    assert_eqv(ap(Op::End, &[unbounded]), i(i32::MAX));
    assert_eqv(
        ap(
            Op::Meets,
            &[iv(i(1), i(5), true, true), iv(i(6), i(9), true, true)],
        ),
        t(),
    );
    assert_eqv(
        ap(
            Op::Overlaps,
            &[iv(i(1), i(5), true, false), iv(i(5), i(9), true, true)],
        ),
        f(),
    );
    assert_eqv(
        ap(
            Op::Union,
            &[iv(i(1), i(5), true, true), iv(i(6), i(9), true, true)],
        ),
        iv(i(1), i(9), true, true),
    );
    assert!(ap(
        Op::Union,
        &[iv(i(1), i(3), true, true), iv(i(6), i(9), true, true)]
    )
    .is_null());
    assert_eqv(
        ap(
            Op::Except,
            &[iv(i(1), i(10), true, true), iv(i(5), i(10), true, true)],
        ),
        iv(i(1), i(4), true, true),
    );
    let c = ap(
        Op::Collapse,
        &[
            Value::list(vec![
                iv(i(1), i(3), true, true),
                iv(i(4), i(6), true, true),
                iv(i(9), i(9), true, true),
            ]),
            Value::Null,
        ],
    );
    assert_eqv(
        c,
        Value::list(vec![iv(i(1), i(6), true, true), iv(i(9), i(9), true, true)]),
    );
}

#[test]
fn measurement_period_inclusion() {
    let mp = iv(
        dt("2025-01-01T00:00:00.000Z"),
        dt("2025-12-31T23:59:59.999Z"),
        true,
        true,
    );
    // a day-precision event on the last day is in the period at day precision and uncertain at ms precision
    let ev = iv(dt("2025-12-31"), dt("2025-12-31"), true, true);
    assert_eqv(ap_p(Op::IncludedIn, &[ev.clone(), mp.clone()], DAY), t());
    // a second-precision timestamp compares with milliseconds as a decimal
    assert_eqv(ap(Op::In, &[dt("2025-12-31T23:59:59Z"), mp.clone()]), t());
    assert_eqv(
        ap(Op::In, &[dt("2026-01-01T00:00:00.000Z"), mp.clone()]),
        f(),
    );
    // timezone offsets are normalized
    assert_eqv(ap(Op::In, &[dt("2025-12-31T20:00:00.000-05:00"), mp]), f());
}

#[test]
fn date_precision_and_uncertainty() {
    assert!(ap(Op::Less, &[dt("2012-01"), dt("2012-01-15")]).is_null());
    assert_eqv(ap(Op::Less, &[dt("2012-01"), dt("2012-02-15")]), t());
    assert_eqv(
        ap_p(
            Op::SameAs,
            &[dt("2012-01-01T10:00"), dt("2012-01-01T23:00")],
            DAY,
        ),
        t(),
    );
    assert_eqv(
        ap_p(
            Op::SameOrBefore,
            &[dt("2012-01-02"), dt("2012-01-01T23:00")],
            DAY,
        ),
        f(),
    );
    assert!(ap(Op::Equal, &[dt("2012-01-01"), dt("2012-01-01T10:00")]).is_null());
    assert_eqv(
        ap(Op::Equivalent, &[dt("2012-01-01"), dt("2012-01-01T10:00")]),
        f(),
    );
    // uncertain difference: months between 2005 and 2006-07 is 7..18
    let diff = ap_p(Op::DifferenceBetween, &[dt("2005"), dt("2006-07")], MONTH);
    assert_eqv(ap(Op::Greater, &[diff.clone(), i(5)]), t());
    assert!(ap(Op::Greater, &[diff, i(10)]).is_null());
}

#[test]
fn calendar_arithmetic() {
    assert_eqv(
        ap(Op::Add, &[d("2024-01-31"), q("1", "month")]),
        d("2024-02-29"),
    );
    assert_eqv(
        ap(Op::Add, &[d("2023-01-31"), q("1", "month")]),
        d("2023-02-28"),
    );
    assert_eqv(
        ap(Op::Subtract, &[d("2024-02-29"), q("1", "year")]),
        d("2023-02-28"),
    );
    assert_eqv(
        ap(
            Op::Add,
            &[dt("2025-12-31T23:59:59.999Z"), q("1", "millisecond")],
        ),
        dt("2026-01-01T00:00:00.000Z"),
    );
    assert_eqv(
        ap(Op::Add, &[dt("2025-01-01T00:00:00.000Z"), q("6", "months")]),
        dt("2025-07-01T00:00:00.000Z"),
    );
    assert_eqv(
        ap(Op::Add, &[d("2024-02-28"), q("2", "days")]),
        d("2024-03-01"),
    );
    assert_eqv(
        ap(Op::Add, &[d("2024-02-28"), q("1", "week")]),
        d("2024-03-06"),
    );
    // precision below the value's precision is truncated
    assert_eqv(ap(Op::Add, &[d("2014-01"), q("45", "days")]), d("2014-02"));
    assert!(apply(&cx(), Op::Add, &[d("9999-12-31"), q("1", "day")], None).is_err());
}

#[test]
fn ages_and_durations() {
    assert_eqv(
        ap_p(
            Op::CalculateAgeAt,
            &[d("2000-02-29"), d("2025-02-28")],
            YEAR,
        ),
        i(24),
    );
    assert_eqv(
        ap_p(
            Op::CalculateAgeAt,
            &[d("2000-02-29"), d("2025-03-01")],
            YEAR,
        ),
        i(25),
    );
    assert_eqv(
        ap_p(
            Op::CalculateAgeAt,
            &[d("2007-12-31"), d("2025-12-31")],
            YEAR,
        ),
        i(18),
    );
    assert_eqv(
        ap_p(
            Op::CalculateAgeAt,
            &[d("2007-12-31"), d("2025-12-30")],
            YEAR,
        ),
        i(17),
    );
    assert_eqv(
        ap_p(
            Op::DurationBetween,
            &[
                dt("2025-01-01T00:00:00.000Z"),
                dt("2025-01-31T23:59:59.999Z"),
            ],
            DAY,
        ),
        i(30),
    );
    assert_eqv(
        ap_p(
            Op::DifferenceBetween,
            &[
                dt("2025-01-01T23:00:00.000Z"),
                dt("2025-01-02T01:00:00.000Z"),
            ],
            DAY,
        ),
        i(1),
    );
    assert_eqv(
        ap_p(
            Op::DurationBetween,
            &[
                dt("2025-01-01T23:00:00.000Z"),
                dt("2025-01-02T01:00:00.000Z"),
            ],
            DAY,
        ),
        i(0),
    );
}

#[test]
fn unit_conversion() {
    assert_eqv(ap(Op::Equal, &[q("1", "kg"), q("1000", "g")]), t());
    assert_eqv(ap(Op::Less, &[q("5", "mg/dL"), q("1", "g/L")]), t());
    assert_eqv(
        ap(Op::ConvertQuantity, &[q("12", "[in_i]"), Value::str("cm")]),
        q("30.48", "cm"),
    );
    assert_eqv(ap(Op::Add, &[q("1", "L"), q("250", "mL")]), q("1.25", "L"));
    assert!(ap(Op::Less, &[q("1", "kg"), q("1", "m")]).is_null());
    assert!(apply(
        &cx(),
        Op::ConvertQuantity,
        &[q("1", "kg"), Value::str("m")],
        None
    )
    .is_err());
    assert_eqv(ap(Op::Greater, &[q("9.5", "%"), q("9", "%")]), t());
}

#[test]
fn fhir_model_access() {
    use cql::PatientData;
    let p = PatientData::from_resources(vec![serde_json::json!({
        "resourceType": "Observation", "id": "o1",
        "effectivePeriod": {"start": "2025-03-01T10:00:00Z"},
        "valueQuantity": {"value": 7.5, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]}
    })])
    .unwrap();
    let obs = &p.resources("Observation").unwrap()[0];
    let Value::Resource(n) = obs else { panic!() };
    let eff = cql::fhir::property(n, "effective");
    let Value::Resource(effn) = &eff else {
        panic!("choice element not found")
    };
    assert_eq!(effn.ty.as_deref(), Some("Period"));
    let interval = cql::fhir::fhirhelpers_call("ToInterval", &eff)
        .unwrap()
        .unwrap();
    // open end = unbounded, closed start
    assert_eqv(ap(Op::In, &[dt("2030-01-01T00:00:00.000Z"), interval]), t());
    let v = cql::fhir::fhirhelpers_call("ToValue", &cql::fhir::property(n, "value"))
        .unwrap()
        .unwrap();
    assert_eqv(v, q("7.5", "%"));
    // choice type tags and FHIR specializations
    let p3 = PatientData::from_resources(vec![serde_json::json!({"resourceType": "Condition", "onsetAge": {"value": 40, "unit": "a"}, "code": {"text": "x"}})]).unwrap();
    let Value::Resource(c) = &p3.resources("Condition").unwrap()[0] else {
        panic!()
    };
    let Value::Resource(onset) = cql::fhir::property(c, "onset") else {
        panic!()
    };
    assert_eq!(cql::fhir::is_type(&onset, "Age"), Some(true));
    assert_eq!(cql::fhir::is_type(&onset, "Quantity"), Some(true));
    assert_eq!(cql::fhir::is_type(&onset, "Period"), Some(false));
    assert_eqv(
        cql::fhir::fhirhelpers_call("ToValue", &Value::Resource(onset))
            .unwrap()
            .unwrap(),
        q("40", "year"),
    );
    // Quantity with a comparator cannot be converted
    let p2 = PatientData::from_resources(vec![serde_json::json!({"resourceType": "Observation", "valueQuantity": {"value": 5, "comparator": "<"}})]).unwrap();
    let Value::Resource(n2) = &p2.resources("Observation").unwrap()[0] else {
        panic!()
    };
    assert!(
        cql::fhir::fhirhelpers_call("ToQuantity", &cql::fhir::property(n2, "value"))
            .unwrap()
            .is_err()
    );
}

#[test]
fn lists_and_strings() {
    let l = Value::list(vec![i(3), i(1), i(3), Value::Null]);
    assert_eqv(
        ap(Op::Distinct, std::slice::from_ref(&l)),
        Value::list(vec![i(3), i(1), Value::Null]),
    );
    assert_eqv(
        ap(
            Op::Union,
            &[Value::list(vec![i(1), i(2)]), Value::list(vec![i(2), i(3)])],
        ),
        Value::list(vec![i(1), i(2), i(3)]),
    );
    assert_eqv(ap(Op::Max, std::slice::from_ref(&l)), i(3));
    assert_eqv(ap(Op::IndexOf, &[l, i(1)]), i(1));
    assert!(apply(
        &cx(),
        Op::SingletonFrom,
        &[Value::list(vec![i(1), i(2)])],
        None
    )
    .is_err());
    assert_eqv(
        ap(Op::Split, &[Value::str("a/b/c"), Value::str("/")]),
        Value::list(vec![Value::str("a"), Value::str("b"), Value::str("c")]),
    );
    assert_eqv(
        ap(Op::Equivalent, &[Value::str("Abc  d"), Value::str("abc d")]),
        t(),
    );
}
