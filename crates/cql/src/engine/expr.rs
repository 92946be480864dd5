//! The compiled form: an expression tree per definition, compiled once from ELM and evaluated
//! for every patient. Operators are [`Op`]s (their families are in [`crate::ops`]); the other
//! nodes are references, control flow, selectors, queries and retrieves.

use super::query::Query;
use super::retrieve::ProfileFilter;
use crate::datetime::Prec;
use crate::ops::type_ops::TypeSpec;
use crate::ops::Op;
use crate::value::{Code, Value, ValueSetData};
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug)]
pub(crate) enum Expr {
    Lit(Value),
    Def {
        lib: usize,
        def: usize,
    },
    Func {
        lib: usize,
        cands: Vec<usize>,
        args: Vec<Expr>,
    },
    /// a FHIRHelpers function, natively
    Native {
        name: Arc<str>,
        arg: Box<Expr>,
    },
    Param {
        lib: usize,
        idx: usize,
    },
    ValueSetRef(Arc<ValueSetData>),
    /// a function operand or query alias, by stack slot of the current frame
    Slot(usize),
    Property {
        src: Box<Expr>,
        path: Arc<str>,
    },
    Op {
        op: Op,
        args: Vec<Expr>,
        prec: Option<Prec>,
    },
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    If(Box<Expr>, Box<Expr>, Box<Expr>),
    Case {
        comparand: Option<Box<Expr>>,
        items: Vec<(Expr, Expr)>,
        els: Box<Expr>,
    },
    Coalesce(Vec<Expr>),
    Query(Box<Query>),
    Retrieve {
        data_type: Arc<str>,
        code_path: Option<Arc<str>>,
        codes: Option<Box<Expr>>,
        profile: ProfileFilter,
        template: Option<Arc<str>>,
    },
    List(Vec<Expr>),
    Tuple(Vec<(Arc<str>, Expr)>),
    Instance {
        class: Arc<str>,
        elems: Vec<(Arc<str>, Expr)>,
    },
    Interval {
        low: Box<Expr>,
        high: Box<Expr>,
        lc: Box<Expr>,
        hc: Box<Expr>,
    },
    As {
        operand: Box<Expr>,
        ty: TypeSpec,
        strict: bool,
    },
    Is {
        operand: Box<Expr>,
        ty: TypeSpec,
    },
    Message {
        source: Box<Expr>,
        cond: Box<Expr>,
        code: Box<Expr>,
        severity: Box<Expr>,
        message: Box<Expr>,
    },
    /// an ELM node the engine does not support: an error when evaluated
    Unsupported(Arc<str>),
}

/// An expression or function definition.
#[derive(Debug)]
pub(crate) struct Def {
    pub(crate) name: String,
    /// `None` for an external function
    pub(crate) expr: Option<Expr>,
    /// stack slots of its frame (operands, then query aliases and lets)
    pub(super) nslots: usize,
    pub(super) operand_types: Vec<TypeSpec>,
    pub(crate) is_function: bool,
    pub(super) patient_context: bool,
    /// index into its library's per-evaluation memo (expression definitions only)
    pub(super) memo_slot: usize,
}

/// One compiled library.
pub(crate) struct CompiledLibrary {
    pub(crate) name: String,
    pub(crate) defs: Vec<Def>,
    pub(super) def_index: HashMap<String, usize>,
    pub(crate) params: Vec<(String, Value)>,
    pub(super) param_defaults: Vec<Option<Arc<Expr>>>,
    /// number of memoized definitions (expression definitions)
    pub(super) memo_len: usize,
    pub(super) key: LibKey,
    /// declared value sets (name, data) and codes (name, code), for describing retrieves
    pub(crate) valuesets: Vec<(String, Arc<ValueSetData>)>,
    pub(crate) codes: Vec<(String, Code)>,
}

/// Identity of a compiled library for sharing memoized definitions across [`Prepared`]s:
/// (name, content hash including the included libraries, hash of parameter values).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(super) struct LibKey {
    pub(super) name: String,
    pub(super) content: u64,
    pub(super) params: u64,
}

/// A compiled library set, ready to evaluate. `Send + Sync`.
pub struct Prepared {
    pub(crate) libs: Vec<CompiledLibrary>,
    pub(crate) main: usize,
}
