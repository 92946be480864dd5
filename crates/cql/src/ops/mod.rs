//! System operators, one module per ELM operator family (as cql-execution's `src/elm/`).
//!
//! Each family module owns its operators both ways: `compile` turns the ELM node of one of its
//! operators into an expression node (most take ELM's usual `operand` list; some name their
//! operands, e.g. `Substring`'s `stringToSub`), and `apply` evaluates it on evaluated operands.
//! [`Op`] lists every operator once, under its family; the `operators!` macro derives from that
//! list the enum, the ELM name lookup and the two dispatching matches (plain `match`es, checked
//! exhaustive by the compiler), so every operator goes to exactly one family.
//!
//! Operators that take both lists and intervals sit with the family that holds most of their
//! logic: membership (`In`, `Contains`, `Includes`, ...) with intervals, set operators (`Union`,
//! `Intersect`, `Except`) with lists. Nodes that evaluate their operands lazily (`And`, `Or`,
//! `If`, `Case`, `Coalesce`, `Message`) or bind names (queries) are expression nodes of the
//! engine, not operators.

pub(crate) mod aggregate;
pub(crate) mod arithmetic;
pub(crate) mod clinical;
pub(crate) mod comparison;
pub(crate) mod date_time;
pub(crate) mod interval;
pub(crate) mod list;
pub(crate) mod logical;
pub(crate) mod message;
pub(crate) mod nullological;
pub(crate) mod string;
pub(crate) mod structured;
pub(crate) mod type_ops;

pub use arithmetic::{max_value_like, min_value_like, subtract_values};
pub use interval::make_interval;
pub use list::distinct;
pub use structured::instance;
pub use type_ops::{literal, to_string};

use crate::datetime::{parse_precision, Prec};
use crate::engine::{json_str, Compiler, Expr, Scope};
use crate::value::Value;
use crate::{CqlResult, EvalContext};
use serde_json::Value as Json;

/// Declares the operators by family: `family: [ELM-named operators] [compiler-made operators];`.
/// Compiler-made operators have no ELM node type of their own (e.g. `DateSel` for a `Date`
/// selector), so `Op::from_name` does not know them.
macro_rules! operators {
    ($($family:ident: [$($name:ident),* $(,)?] [$($internal:ident),* $(,)?];)*) => {
        /// A system operator; `Debug` gives its ELM name (compiler-made ones aside).
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Op {
            $($($name,)* $($internal,)*)*
        }

        impl Op {
            /// The operator of an ELM node type (e.g. `"Substring"`); `None` for anything else.
            pub fn from_name(s: &str) -> Option<Op> {
                match s {
                    $($(stringify!($name) => Some(Op::$name),)*)*
                    // `Sort` is also a query clause; as an operator it sorts a list
                    "Sort" => Some(Op::ListSort),
                    _ => None,
                }
            }
        }

        /// Evaluates one operator on evaluated operands; `cx` is the evaluation request's
        /// context (the timestamp of `Now()`, `Today()`, `TimeOfDay()` and `CalculateAge`).
        pub fn apply(
            cx: &EvalContext,
            op: Op,
            args: &[Value],
            prec: Option<Prec>,
        ) -> CqlResult<Value> {
            match op {
                $($(Op::$name)|* $(| Op::$internal)* => $family::apply(cx, op, args, prec),)*
            }
        }

        /// Compiles the ELM node `node` of operator `op`, as the operator's family reads it.
        pub(crate) fn compile(
            c: &mut Compiler,
            op: Op,
            node: &Json,
            scope: &mut Scope,
        ) -> CqlResult<Expr> {
            match op {
                $($(Op::$name)|* $(| Op::$internal)* => $family::compile(c, op, node, scope),)*
            }
        }
    };
}

operators! {
    arithmetic: [
        Add, Subtract, Multiply, Divide, TruncatedDivide, Modulo, Negate, Abs, Ceiling, Floor,
        Truncate, Round, Ln, Exp, Log, Power, Successor, Predecessor, Precision, LowBoundary,
        HighBoundary, MinValue, MaxValue,
    ] [];
    comparison: [Equal, NotEqual, Equivalent, Less, Greater, LessOrEqual, GreaterOrEqual] [];
    logical: [Not, Xor, Implies] [];
    nullological: [IsNull, IsTrue, IsFalse] [];
    string: [
        Concatenate, Combine, Split, SplitOnMatches, Length, Upper, Lower, Indexer, PositionOf,
        LastPositionOf, Substring, StartsWith, EndsWith, Matches, ReplaceMatches,
    ] [];
    type_ops: [
        ToBoolean, ToInteger, ToLong, ToDecimal, ToString, ToDate, ToDateTime, ToTime, ToQuantity,
        ToConcept, ToList, ToRatio, ToChars, ConvertQuantity, CanConvertQuantity,
        ConvertsToBoolean, ConvertsToInteger, ConvertsToLong, ConvertsToDecimal, ConvertsToString,
        ConvertsToDate, ConvertsToDateTime, ConvertsToTime, ConvertsToQuantity,
    ] [];
    date_time: [
        Today, Now, TimeOfDay, DateFrom, TimeFrom, DateTimeComponentFrom, TimezoneOffsetFrom,
        DurationBetween, DifferenceBetween, SameAs, SameOrBefore, SameOrAfter, Before, After,
    ] [DateSel, DateTimeSel, TimeSel];
    interval: [
        Start, End, Width, Size, PointFrom, Contains, In, Includes, IncludedIn, ProperIncludes,
        ProperIncludedIn, ProperContains, ProperIn, Overlaps, OverlapsBefore, OverlapsAfter, Meets,
        MeetsBefore, MeetsAfter, Starts, Ends, Collapse, Expand,
    ] [];
    list: [
        Union, Intersect, Except, Exists, SingletonFrom, First, Last, Flatten, Distinct, IndexOf,
        Slice, Times,
    ] [ListSort];
    aggregate: [
        Count, Sum, Min, Max, Avg, Median, Mode, Variance, StdDev, PopulationVariance,
        PopulationStdDev, AllTrue, AnyTrue, Product, GeometricMean,
    ] [PluckPath];
    clinical: [
        InValueSet, AnyInValueSet, ExpandValueSet, InCodeSystem, AnyInCodeSystem, CalculateAge,
        CalculateAgeAt,
    ] [];
    structured: [Descendents, Children] [RatioSel];
    message: [Error] [];
}

/// An operator node over `args`, at the node's `precision` (a date/time precision name) if any.
fn op_node(op: Op, args: Vec<Expr>, node: &Json) -> Expr {
    Expr::Op {
        op,
        args,
        prec: json_str(node, "precision").and_then(parse_precision),
    }
}

/// Compiles an operator whose operands are in ELM's usual `operand` list (or `source`).
fn compile_operands(c: &mut Compiler, op: Op, node: &Json, scope: &mut Scope) -> CqlResult<Expr> {
    let args = c.operands(node, scope)?;
    Ok(op_node(op, args, node))
}

/// The `i`th operand; null when absent.
fn operand(args: &[Value], i: usize) -> &Value {
    args.get(i).unwrap_or(&Value::Null)
}

/// A three-valued logic result: `None` is null.
fn bool_value(v: Option<bool>) -> Value {
    match v {
        Some(x) => Value::Boolean(x),
        None => Value::Null,
    }
}

/// An Integer or Long operand as `i64`.
fn int_arg(v: &Value) -> Option<i64> {
    match v {
        Value::Integer(i) => Some(*i as i64),
        Value::Long(i) => Some(*i),
        _ => None,
    }
}

/// The error for an operator that its family does not evaluate (never expected).
fn not_implemented<T>(op: Op) -> CqlResult<T> {
    crate::fail(format!("operator {op:?} is not implemented"))
}
