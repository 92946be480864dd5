//! The engine: library loading ([`LibrarySet`]), compilation of ELM JSON into an expression
//! tree once per [`Prepared`], and its evaluation per patient ([`Session`], [`PatientMemo`]).
//!
//! - `library`: ELM libraries and value sets, from measure bundles or directly;
//! - `expr`: the compiled form (expression tree, definitions, compiled libraries);
//! - `compile`: ELM JSON to the expression tree (operators: their families in [`crate::ops`]);
//! - `query` and `retrieve`: those nodes, compiled and evaluated;
//! - `eval`: the evaluator (frames, memoized definitions);
//! - `api`: evaluations and sessions.

mod api;
mod compile;
mod eval;
mod expr;
mod library;
mod query;
mod retrieve;

pub use api::{PatientMemo, Session};
pub use expr::Prepared;
pub use library::LibrarySet;

pub(crate) use compile::{json_array, json_str, Compiler, Scope};
pub(crate) use eval::Ctx;
pub(crate) use expr::Expr;
