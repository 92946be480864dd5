//! Evaluation of the expression tree for one evaluation request: a value stack of frames
//! (function operands, query aliases), and memoized definition values per library.

use super::expr::{Expr, Prepared};
use crate::ops::type_ops::{self, matches_type};
use crate::ops::{self, structured::property};
use crate::value::{equal, Value};
use crate::{fail, fhir, CqlResult, EvalContext, PatientData};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

/// One library's memoized definition values (by [`super::expr::Def`]'s `memo_slot`).
pub(super) type Memo = Rc<RefCell<Vec<Option<Value>>>>;

pub(crate) struct Ctx<'a> {
    pub(crate) prepared: &'a Prepared,
    pub(super) patient: Option<&'a PatientData>,
    /// per library (same index as `prepared.libs`); shared with other `Prepared`s through a
    /// [`super::PatientMemo`]
    memo: Vec<Memo>,
    stack: RefCell<Vec<Value>>,
    /// start of the current frame in `stack`
    base: Cell<usize>,
    depth: Cell<usize>,
    /// the evaluation request's context (see [`EvalContext`] for what one request is)
    pub(super) cx: EvalContext,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(
        p: &'a Prepared,
        patient: Option<&'a PatientData>,
        cx: EvalContext,
    ) -> Ctx<'a> {
        let memo = p
            .libs
            .iter()
            .map(|l| Rc::new(RefCell::new(vec![None; l.memo_len])))
            .collect();
        Ctx::with_memo(p, patient, memo, cx)
    }

    pub(super) fn with_memo(
        p: &'a Prepared,
        patient: Option<&'a PatientData>,
        memo: Vec<Memo>,
        cx: EvalContext,
    ) -> Ctx<'a> {
        Ctx {
            prepared: p,
            patient,
            memo,
            cx,
            stack: RefCell::new(Vec::with_capacity(64)),
            base: Cell::new(0),
            depth: Cell::new(0),
        }
    }

    pub(super) fn slot(&self, i: usize) -> Value {
        self.stack
            .borrow()
            .get(self.base.get() + i)
            .cloned()
            .unwrap_or(Value::Null)
    }

    pub(super) fn set_slot(&self, i: usize, v: Value) {
        let mut st = self.stack.borrow_mut();
        let idx = self.base.get() + i;
        if st.len() <= idx {
            st.resize(idx + 1, Value::Null);
        }
        st[idx] = v;
    }

    /// Runs `f` in a new frame of `nslots` slots, the first ones holding `args`.
    pub(crate) fn call_frame(
        &self,
        nslots: usize,
        args: Vec<Value>,
        f: impl FnOnce() -> CqlResult<Value>,
    ) -> CqlResult<Value> {
        let d = self.depth.get();
        if d > 100 {
            return fail("evaluation recursion too deep");
        }
        let old_base = self.base.get();
        let new_base;
        {
            let mut st = self.stack.borrow_mut();
            new_base = st.len();
            st.extend(args);
            st.resize(new_base + nslots.max(1), Value::Null);
        }
        self.base.set(new_base);
        self.depth.set(d + 1);
        let r = f();
        self.depth.set(d);
        self.base.set(old_base);
        self.stack.borrow_mut().truncate(new_base);
        r
    }

    /// The value of expression definition `def` of library `lib`, memoized.
    pub(crate) fn eval_def(&self, lib: usize, def: usize) -> CqlResult<Value> {
        let d = &self.prepared.libs[lib].defs[def];
        if let Some(Some(v)) = self.memo[lib].borrow().get(d.memo_slot) {
            return Ok(v.clone());
        }
        let Some(e) = &d.expr else {
            return fail(format!(
                "expression `{}` in library {} has no body",
                d.name, self.prepared.libs[lib].name
            ));
        };
        if d.patient_context && self.patient.is_none() && d.name == "Patient" {
            return Ok(Value::Null);
        }
        let v = self
            .call_frame(d.nslots, Vec::new(), || self.eval(e, lib))
            .map_err(|mut err| {
                // name the innermost definition being evaluated (never data values)
                if !err.msg.contains(" [in `") {
                    err.msg = format!(
                        "{} [in `{}` of library {}]",
                        err.msg, d.name, self.prepared.libs[lib].name
                    );
                }
                err
            })?;
        if let Some(m) = self.memo[lib].borrow_mut().get_mut(d.memo_slot) {
            *m = Some(v.clone());
        }
        Ok(v)
    }

    /// Evaluates `e`, compiled in library `lib`, in the current frame.
    pub(crate) fn eval(&self, e: &Expr, lib: usize) -> CqlResult<Value> {
        Ok(match e {
            Expr::Lit(v) => v.clone(),
            Expr::Def { lib: l, def } => self.eval_def(*l, *def)?,
            Expr::Param { lib: l, idx } => self.prepared.libs[*l].params[*idx].1.clone(),
            Expr::ValueSetRef(v) => Value::ValueSet(v.clone()),
            Expr::Slot(i) => self.slot(*i),
            Expr::Property { src, path } => {
                let v = self.eval(src, lib)?;
                property(&v, path)
            }
            Expr::Native { name, arg } => {
                let v = self.eval(arg, lib)?;
                match fhir::fhirhelpers_call(name, &v) {
                    Some(Ok(v)) => v,
                    Some(Err(m)) => return fail(format!("FHIRHelpers.{name}: {m}")),
                    None => {
                        return fail(format!(
                            "FHIRHelpers.{name} not implemented for a {}",
                            v.type_name()
                        ))
                    }
                }
            }
            Expr::Func {
                lib: l,
                cands,
                args,
            } => {
                let mut vals = Vec::with_capacity(args.len());
                for a in args {
                    vals.push(self.eval(a, lib)?);
                }
                self.call_function(*l, cands, vals)?
            }
            Expr::And(a, b) => {
                let x = self.eval(a, lib)?;
                if matches!(x, Value::Boolean(false)) {
                    return Ok(x);
                }
                let y = self.eval(b, lib)?;
                match (x, y) {
                    (_, Value::Boolean(false)) => Value::Boolean(false),
                    (Value::Boolean(true), Value::Boolean(true)) => Value::Boolean(true),
                    _ => Value::Null,
                }
            }
            Expr::Or(a, b) => {
                let x = self.eval(a, lib)?;
                if matches!(x, Value::Boolean(true)) {
                    return Ok(x);
                }
                let y = self.eval(b, lib)?;
                match (x, y) {
                    (_, Value::Boolean(true)) => Value::Boolean(true),
                    (Value::Boolean(false), Value::Boolean(false)) => Value::Boolean(false),
                    _ => Value::Null,
                }
            }
            Expr::If(c, t, f) => {
                if self.eval(c, lib)?.is_true() {
                    self.eval(t, lib)?
                } else {
                    self.eval(f, lib)?
                }
            }
            Expr::Case {
                comparand,
                items,
                els,
            } => {
                match comparand {
                    Some(c) => {
                        let cv = self.eval(c, lib)?;
                        for (w, t) in items {
                            let wv = self.eval(w, lib)?;
                            if equal(&cv, &wv) == Some(true) {
                                return self.eval(t, lib);
                            }
                        }
                    }
                    None => {
                        for (w, t) in items {
                            if self.eval(w, lib)?.is_true() {
                                return self.eval(t, lib);
                            }
                        }
                    }
                }
                self.eval(els, lib)?
            }
            Expr::Coalesce(args) => {
                if args.len() == 1 {
                    // Coalesce(list)
                    let v = self.eval(&args[0], lib)?;
                    if let Value::List(l) = &v {
                        return Ok(l
                            .iter()
                            .find(|x| !x.is_null())
                            .cloned()
                            .unwrap_or(Value::Null));
                    }
                    return Ok(v);
                }
                for a in args {
                    let v = self.eval(a, lib)?;
                    if !v.is_null() {
                        return Ok(v);
                    }
                }
                Value::Null
            }
            Expr::List(items) => {
                let mut out = Vec::with_capacity(items.len());
                for i in items {
                    out.push(self.eval(i, lib)?);
                }
                Value::List(Arc::new(out))
            }
            Expr::Tuple(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (k, i) in items {
                    out.push((k.clone(), self.eval(i, lib)?));
                }
                Value::Tuple(Arc::new(out))
            }
            Expr::Instance { class, elems } => {
                let mut out = Vec::with_capacity(elems.len());
                for (k, i) in elems {
                    out.push((k.clone(), self.eval(i, lib)?));
                }
                ops::instance(class, out)?
            }
            Expr::Interval { low, high, lc, hc } => {
                let l = self.eval(low, lib)?;
                let h = self.eval(high, lib)?;
                let lcv = self.eval(lc, lib)?.is_true();
                let hcv = self.eval(hc, lib)?.is_true();
                ops::make_interval(l, h, lcv, hcv)?
            }
            Expr::As {
                operand,
                ty,
                strict,
            } => type_ops::as_type(self.eval(operand, lib)?, ty, *strict)?,
            Expr::Is { operand, ty } => type_ops::is_type(&self.eval(operand, lib)?, ty),
            Expr::Message {
                source,
                cond,
                code,
                severity,
                message: _,
            } => {
                let v = self.eval(source, lib)?;
                if self.eval(cond, lib)?.is_true() {
                    let sev = self.eval(severity, lib)?;
                    if let Value::String(sv) = &sev {
                        if sv.eq_ignore_ascii_case("error") {
                            // the message text may embed data values: only the (constant) code is reported
                            let cs = match self.eval(code, lib)? {
                                Value::String(s) => s.to_string(),
                                _ => String::new(),
                            };
                            return fail(format!("Message error {cs} (severity Error)"));
                        }
                    }
                }
                v
            }
            Expr::Retrieve {
                data_type,
                code_path,
                codes,
                profile,
                template,
            } => self.retrieve(
                data_type,
                code_path.as_deref(),
                codes.as_deref(),
                profile,
                template.as_deref(),
                lib,
            )?,
            Expr::Query(q) => self.query(q, lib)?,
            Expr::Op { op, args, prec } => match args.len() {
                0 => ops::apply(&self.cx, *op, &[], *prec)?,
                1 => {
                    let a = self.eval(&args[0], lib)?;
                    ops::apply(&self.cx, *op, std::slice::from_ref(&a), *prec)?
                }
                2 => {
                    let a = [self.eval(&args[0], lib)?, self.eval(&args[1], lib)?];
                    ops::apply(&self.cx, *op, &a, *prec)?
                }
                _ => {
                    let mut v = Vec::with_capacity(args.len());
                    for a in args {
                        v.push(self.eval(a, lib)?);
                    }
                    ops::apply(&self.cx, *op, &v, *prec)?
                }
            },
            Expr::Unsupported(m) => return fail(m.to_string()),
        })
    }

    /// Calls the function of library `lib` among the overloads `cands` whose operand types
    /// match `vals` (null matching any type; then, types that cannot be told matching too).
    fn call_function(&self, lib: usize, cands: &[usize], vals: Vec<Value>) -> CqlResult<Value> {
        let clib = &self.prepared.libs[lib];
        let pick = if cands.len() == 1 {
            cands[0]
        } else {
            let mut chosen = None;
            for &c in cands {
                let d = &clib.defs[c];
                if d.operand_types
                    .iter()
                    .zip(vals.iter())
                    .all(|(t, v)| v.is_null() || matches_type(v, t) == Some(true))
                {
                    chosen = Some(c);
                    break;
                }
            }
            if chosen.is_none() {
                for &c in cands {
                    let d = &clib.defs[c];
                    if d.operand_types
                        .iter()
                        .zip(vals.iter())
                        .all(|(t, v)| matches_type(v, t) != Some(false))
                    {
                        chosen = Some(c);
                        break;
                    }
                }
            }
            match chosen {
                Some(c) => c,
                None => {
                    return fail(format!(
                    "no overload of function `{}` in library {} matches the argument types ({})",
                    clib.defs[cands[0]].name,
                    clib.name,
                    vals.iter()
                        .map(|v| v.type_name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
                }
            }
        };
        let d = &clib.defs[pick];
        debug_assert!(d.is_function);
        let Some(body) = &d.expr else {
            return fail(format!(
                "external function `{}` in library {} is not available",
                d.name, clib.name
            ));
        };
        self.call_frame(d.nslots, vals, || self.eval(body, lib))
    }
}
