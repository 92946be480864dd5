//! The public evaluation API: [`Prepared`] evaluations and sessions, and [`PatientMemo`] for
//! sharing memoized definitions between the sessions of one patient.

use super::eval::{Ctx, Memo};
use super::expr::{Expr, LibKey, Prepared};
use super::library::LibrarySet;
use crate::value::Value;
use crate::{fail, CqlResult, EvalContext, PatientData};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

impl Prepared {
    /// Evaluate expression definitions of the main library for one patient (memoized per call).
    /// One evaluation request: `Now()` is the system clock when the call starts.
    pub fn evaluate(&self, patient: &PatientData, expressions: &[&str]) -> CqlResult<Vec<Value>> {
        self.evaluate_in(patient, expressions, EvalContext::from_clock())
    }

    /// [`Prepared::evaluate`] in the given context (e.g. a fixed `Now()`).
    pub fn evaluate_in(
        &self,
        patient: &PatientData,
        expressions: &[&str],
        cx: EvalContext,
    ) -> CqlResult<Vec<Value>> {
        let ctx = Ctx::new(self, Some(patient), cx);
        evaluate_main(&ctx, expressions)
    }

    /// An evaluation session for one patient: definitions stay memoized across `evaluate` calls
    /// (e.g. population criteria, then stratifiers and supplemental data). Not `Send`; one per thread.
    /// One evaluation request: `Now()` is the system clock when the session is created.
    pub fn session<'a>(&'a self, patient: &'a PatientData) -> Session<'a> {
        self.session_in(patient, EvalContext::from_clock())
    }

    /// [`Prepared::session`] in the given context (e.g. a fixed `Now()`).
    pub fn session_in<'a>(&'a self, patient: &'a PatientData, cx: EvalContext) -> Session<'a> {
        Session {
            ctx: Ctx::new(self, Some(patient), cx),
        }
    }

    /// A session whose memoized definitions are shared, through `memo`, with every other session of
    /// the same patient on any `Prepared` that uses an identical library (same name, ELM content,
    /// value sets, parameter values and included libraries), e.g. FHIRHelpers or a shared
    /// measure library across measures. Not `Send`; one per thread. Its context (`Now()`) is the
    /// memo's: every session sharing a memo is one evaluation request.
    pub fn session_shared<'a>(&'a self, memo: &PatientMemo<'a>) -> Session<'a> {
        let mut libs = memo.libs.borrow_mut();
        let m = self
            .libs
            .iter()
            .map(|l| {
                libs.entry(l.key.clone())
                    .or_insert_with(|| Rc::new(RefCell::new(vec![None; l.memo_len])))
                    .clone()
            })
            .collect();
        Session {
            ctx: Ctx::with_memo(self, Some(memo.patient), m, memo.cx),
        }
    }

    /// Evaluate one definition without patient data (context Unfiltered; spec tests). One
    /// evaluation request: `Now()` is the system clock when the call starts.
    pub fn evaluate_unfiltered(&self, name: &str) -> CqlResult<Value> {
        self.evaluate_unfiltered_in(name, EvalContext::from_clock())
    }

    /// [`Prepared::evaluate_unfiltered`] in the given context (e.g. a fixed `Now()`).
    pub fn evaluate_unfiltered_in(&self, name: &str, cx: EvalContext) -> CqlResult<Value> {
        let ctx = Ctx::new(self, None, cx);
        let def = self.main_def(name)?;
        ctx.eval_def(self.main, def)
    }

    /// The value of a parameter of the main library (provided or default).
    pub fn parameter(&self, name: &str) -> Option<Value> {
        self.libs[self.main]
            .params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }

    /// Messages of every ELM node that compiled to an evaluation-time error (unsupported node types,
    /// unresolved references), across all libraries. Empty when everything is supported.
    pub fn unsupported_nodes(&self) -> Vec<String> {
        let mut out = Vec::new();
        for l in &self.libs {
            for d in &l.defs {
                if let Some(e) = &d.expr {
                    collect_unsupported(e, &mut out);
                }
            }
            for e in l.param_defaults.iter().flatten() {
                collect_unsupported(e, &mut out);
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// Names of the main library's expression definitions.
    pub fn expression_names(&self) -> Vec<String> {
        self.libs[self.main]
            .defs
            .iter()
            .filter(|d| !d.is_function)
            .map(|d| d.name.clone())
            .collect()
    }

    /// Names of all libraries in this prepared set (main first).
    pub fn library_names(&self) -> Vec<String> {
        self.libs.iter().map(|l| l.name.clone()).collect()
    }

    /// The index of the main library's expression definition `name`.
    fn main_def(&self, name: &str) -> CqlResult<usize> {
        let lib = &self.libs[self.main];
        match lib.def_index.get(name) {
            Some(&def) => Ok(def),
            None => fail(format!(
                "expression `{name}` not found in library {}",
                lib.name
            )),
        }
    }
}

/// Evaluates expression definitions of the main library in `ctx`.
fn evaluate_main(ctx: &Ctx<'_>, expressions: &[&str]) -> CqlResult<Vec<Value>> {
    let p = ctx.prepared;
    let mut out = Vec::with_capacity(expressions.len());
    for name in expressions {
        let def = p.main_def(name)?;
        out.push(ctx.eval_def(p.main, def)?);
    }
    Ok(out)
}

fn collect_unsupported(e: &Expr, out: &mut Vec<String>) {
    if let Expr::Unsupported(m) = e {
        out.push(m.to_string());
    }
    crate::analysis::children(e, &mut |c| collect_unsupported(c, out));
}

/// One patient's memoized definition values, shared by the sessions of several [`Prepared`]s
/// (see [`Prepared::session_shared`]). Keyed by library identity and parameter values, so only
/// identical libraries share. Not `Send`; one per patient and thread.
/// All sessions sharing one memo are one evaluation request (one `Now()`; see [`EvalContext`]).
pub struct PatientMemo<'a> {
    patient: &'a PatientData,
    libs: RefCell<HashMap<LibKey, Memo>>,
    cx: EvalContext,
}

impl<'a> PatientMemo<'a> {
    /// A memo whose `Now()` is the system clock when it is created.
    pub fn new(patient: &'a PatientData) -> PatientMemo<'a> {
        PatientMemo::new_in(patient, EvalContext::from_clock())
    }

    /// A memo in the given context (e.g. a fixed `Now()`, or one timestamp for a whole batch).
    pub fn new_in(patient: &'a PatientData, cx: EvalContext) -> PatientMemo<'a> {
        PatientMemo {
            patient,
            libs: RefCell::new(HashMap::new()),
            cx,
        }
    }

    /// The evaluation request's context.
    pub fn context(&self) -> &EvalContext {
        &self.cx
    }
}

/// See [`Prepared::session`].
pub struct Session<'a> {
    pub(crate) ctx: Ctx<'a>,
}

impl Session<'_> {
    /// The evaluation request's context (`Now()` for every `evaluate` call of this session).
    pub fn context(&self) -> &EvalContext {
        &self.ctx.cx
    }

    /// Evaluate expression definitions of the main library (memoized for the session's lifetime).
    pub fn evaluate(&self, expressions: &[&str]) -> CqlResult<Vec<Value>> {
        evaluate_main(&self.ctx, expressions)
    }
}

/// `Prepared` and `LibrarySet` are shared across threads (checked at compile time).
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Prepared>();
    assert_send_sync::<LibrarySet>();
};
