//! Static analysis of a [`Prepared`] library set, for explaining results: which expression
//! definitions a definition depends on ([`DefineGraph`]), which data (retrieves) an expression
//! needs and within which date window ([`Prepared::data_requirements`]), and evaluation of a
//! definition by id inside a patient's [`Session`] (memoized like every other evaluation).
//!
//! Everything here is read from the compiled ELM; nothing knows any particular library.

use std::collections::HashSet;

use crate::engine::{Ctx, Expr, Prepared, Session};
use crate::interval;
use crate::ops::Op;
use crate::value::{Code, Value};
use crate::CqlError;

/// An expression or function definition of a [`Prepared`] library set (main library or an
/// included one). Only meaningful for the `Prepared` that produced it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DefId {
    pub(crate) lib: usize,
    pub(crate) def: usize,
}

/// Calls `f` on each direct sub-expression of `e`, in source order.
pub(crate) fn children<'e>(e: &'e Expr, f: &mut dyn FnMut(&'e Expr)) {
    match e {
        Expr::Lit(_)
        | Expr::Def { .. }
        | Expr::Param { .. }
        | Expr::ValueSetRef(_)
        | Expr::Slot(_)
        | Expr::Unsupported(_) => {}
        Expr::Func { args, .. }
        | Expr::Op { args, .. }
        | Expr::Coalesce(args)
        | Expr::List(args) => args.iter().for_each(f),
        Expr::Native { arg, .. } => f(arg),
        Expr::Property { src, .. } => f(src),
        Expr::And(a, b) | Expr::Or(a, b) => {
            f(a);
            f(b);
        }
        Expr::If(a, b, c) => {
            f(a);
            f(b);
            f(c);
        }
        Expr::Case {
            comparand,
            items,
            els,
        } => {
            if let Some(c) = comparand {
                f(c);
            }
            for (w, t) in items {
                f(w);
                f(t);
            }
            f(els);
        }
        Expr::Query(q) => {
            q.sources.iter().for_each(|(x, _, _)| f(x));
            q.lets.iter().for_each(|(x, _)| f(x));
            for r in &q.rels {
                f(&r.source);
                f(&r.such_that);
            }
            if let Some(w) = &q.where_ {
                f(w);
            }
            if let Some((r, _)) = &q.ret {
                f(r);
            }
            if let Some(a) = &q.agg {
                if let Some(st) = &a.starting {
                    f(st);
                }
                f(&a.expression);
            }
            if let Some((_, by)) = &q.sort {
                by.iter().filter_map(|(x, _)| x.as_ref()).for_each(f);
            }
        }
        Expr::Retrieve { codes, .. } => {
            if let Some(c) = codes {
                f(c);
            }
        }
        Expr::Tuple(items) | Expr::Instance { elems: items, .. } => {
            items.iter().for_each(|(_, x)| f(x))
        }
        Expr::Interval { low, high, lc, hc } => {
            f(low);
            f(high);
            f(lc);
            f(hc);
        }
        Expr::As { operand, .. } | Expr::Is { operand, .. } => f(operand),
        Expr::Message {
            source,
            cond,
            code,
            severity,
            message,
        } => {
            f(source);
            f(cond);
            f(code);
            f(severity);
            f(message);
        }
    }
}

/// What a definition's own expression mentions (function bodies not entered).
#[derive(Default)]
struct Own {
    /// definition references and function calls, in source order: `(lib, defs, is_call)`
    refs: Vec<(usize, Vec<usize>, bool)>,
    retrieve: bool,
}

fn own_items(e: &Expr, out: &mut Own) {
    match e {
        Expr::Def { lib, def } => out.refs.push((*lib, vec![*def], false)),
        Expr::Func { lib, cands, .. } => out.refs.push((*lib, cands.clone(), true)),
        Expr::Retrieve { .. } => out.retrieve = true,
        _ => {}
    }
    children(e, &mut |c| own_items(c, out));
}

/// The dependency graph of the definitions of a [`Prepared`] library set (see
/// [`Prepared::define_graph`]).
#[derive(Debug, Clone)]
pub struct DefineGraph {
    /// per library, per definition: the expression definitions it references, in order, with
    /// calls to functions of the same library expanded to what their bodies reference
    refs: Vec<Vec<Vec<DefId>>>,
    /// per library, per definition: a retrieve is reachable (through any reference or call)
    retrieve: Vec<Vec<bool>>,
    /// per library, per definition: `SingletonFrom([X])` without codes, i.e. the definition
    /// the translator generates for `context X`
    context: Vec<Vec<bool>>,
    function: Vec<Vec<bool>>,
}

impl DefineGraph {
    fn new(p: &Prepared) -> DefineGraph {
        let own: Vec<Vec<Own>> = p
            .libs
            .iter()
            .map(|l| {
                l.defs
                    .iter()
                    .map(|d| {
                        let mut o = Own::default();
                        if let Some(e) = &d.expr {
                            own_items(e, &mut o);
                        }
                        o
                    })
                    .collect()
            })
            .collect();
        // reachability of a retrieve: iterate to a fixpoint (handles recursion)
        let mut retrieve: Vec<Vec<bool>> = own
            .iter()
            .map(|l| l.iter().map(|o| o.retrieve).collect())
            .collect();
        loop {
            let mut changed = false;
            for li in 0..own.len() {
                for di in 0..own[li].len() {
                    if retrieve[li][di] {
                        continue;
                    }
                    let hit = own[li][di]
                        .refs
                        .iter()
                        .any(|(l, ds, _)| ds.iter().any(|d| retrieve[*l][*d]));
                    if hit {
                        retrieve[li][di] = true;
                        changed = true;
                    }
                }
            }
            if !changed {
                break;
            }
        }
        // references, expanding same-library function calls
        fn expand(
            own: &[Vec<Own>],
            lib: usize,
            def: usize,
            stack: &mut Vec<(usize, usize)>,
            out: &mut Vec<DefId>,
        ) {
            if stack.contains(&(lib, def)) || stack.len() > 64 {
                return;
            }
            stack.push((lib, def));
            for (l, ds, call) in &own[lib][def].refs {
                if *call {
                    if *l == lib {
                        for d in ds {
                            expand(own, *l, *d, stack, out);
                        }
                    }
                } else {
                    let id = DefId {
                        lib: *l,
                        def: ds[0],
                    };
                    if !out.contains(&id) {
                        out.push(id);
                    }
                }
            }
            stack.pop();
        }
        let refs = (0..own.len())
            .map(|li| {
                (0..own[li].len())
                    .map(|di| {
                        let mut out = Vec::new();
                        expand(&own, li, di, &mut Vec::new(), &mut out);
                        out
                    })
                    .collect()
            })
            .collect();
        let context = p
            .libs
            .iter()
            .map(|l| {
                l.defs
                    .iter()
                    .map(|d| {
                        matches!(&d.expr, Some(Expr::Op { op: Op::SingletonFrom, args, .. })
                            if matches!(args.as_slice(), [Expr::Retrieve { codes: None, .. }]))
                    })
                    .collect()
            })
            .collect();
        let function = p
            .libs
            .iter()
            .map(|l| l.defs.iter().map(|d| d.is_function).collect())
            .collect();
        DefineGraph {
            refs,
            retrieve,
            context,
            function,
        }
    }

    fn valid(&self, id: DefId) -> bool {
        self.refs.get(id.lib).is_some_and(|l| id.def < l.len())
    }

    /// The expression definitions `id` references directly (calls of functions of its own
    /// library are expanded to what their bodies reference), in source order, without repeats.
    pub fn references(&self, id: DefId) -> &[DefId] {
        if !self.valid(id) {
            return &[];
        }
        &self.refs[id.lib][id.def]
    }

    /// True when evaluating `id` may retrieve patient data (a retrieve is reachable through any
    /// reference or function call). False means its value does not depend on the patient.
    pub fn reaches_retrieve(&self, id: DefId) -> bool {
        self.valid(id) && self.retrieve[id.lib][id.def]
    }

    /// True for the definition the translator generates for `context Patient`
    /// (`SingletonFrom` of a retrieve without codes).
    pub fn is_context_define(&self, id: DefId) -> bool {
        self.valid(id) && self.context[id.lib][id.def]
    }

    pub fn is_function(&self, id: DefId) -> bool {
        self.valid(id) && self.function[id.lib][id.def]
    }

    /// The expression definitions of `root`'s library that `root` depends on, transitively
    /// through that library's definitions only (references into other libraries are neither
    /// listed nor followed), depth-first in reference order, without repeats; `root` excluded.
    pub fn dependencies_within_library(&self, root: DefId) -> Vec<DefId> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        seen.insert(root);
        self.dfs(root, &mut seen, &mut out);
        out
    }

    fn dfs(&self, id: DefId, seen: &mut HashSet<DefId>, out: &mut Vec<DefId>) {
        for r in self.references(id) {
            if r.lib == id.lib && !self.is_function(*r) && seen.insert(*r) {
                out.push(*r);
                self.dfs(*r, seen, out);
            }
        }
    }
}

/// A value set named in a library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedValueSet {
    /// the `valueset` declaration's name, when found
    pub name: Option<String>,
    pub url: String,
}

/// A direct-reference code, with the name of its `code` declaration when found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedCode {
    pub name: Option<String>,
    pub code: Code,
}

/// The date window a query puts on the rows of one of its sources.
#[derive(Debug, Clone)]
pub enum DateWindow {
    /// The date lies in (or, with `overlaps`, the period overlaps) the closed interval
    /// `[low, high]` (Date or DateTime values, computed from parameters only).
    Dates {
        low: Value,
        high: Value,
        overlaps: bool,
    },
    /// The interval is the named parameter, whose value could not be used as dates.
    Parameter { name: String, overlaps: bool },
}

impl DateWindow {
    fn same(&self, o: &DateWindow) -> bool {
        match (self, o) {
            (
                DateWindow::Dates { low, high, .. },
                DateWindow::Dates {
                    low: l2, high: h2, ..
                },
            ) => {
                crate::value::equal(low, l2) == Some(true)
                    && crate::value::equal(high, h2) == Some(true)
            }
            (DateWindow::Parameter { name, .. }, DateWindow::Parameter { name: n2, .. }) => {
                name == n2
            }
            _ => false,
        }
    }
    fn overlaps(&self) -> bool {
        match self {
            DateWindow::Dates { overlaps, .. } | DateWindow::Parameter { overlaps, .. } => {
                *overlaps
            }
        }
    }
    fn with_overlaps(self, o: bool) -> DateWindow {
        match self {
            DateWindow::Dates { low, high, .. } => DateWindow::Dates {
                low,
                high,
                overlaps: o,
            },
            DateWindow::Parameter { name, .. } => DateWindow::Parameter { name, overlaps: o },
        }
    }
    fn key(&self) -> String {
        format!("{self:?}")
    }
}

/// One retrieve an expression needs (see [`Prepared::data_requirements`]).
#[derive(Debug, Clone)]
pub struct DataRequirement {
    /// FHIR resource type (`Observation`)
    pub data_type: String,
    /// the retrieve's profile (templateId)
    pub template: Option<String>,
    /// the property the codes filter (`code`), when the retrieve has codes
    pub code_property: Option<String>,
    /// the value set the retrieve's codes are, when they are one
    pub value_set: Option<NamedValueSet>,
    /// the direct-reference codes the retrieve's codes are, when they are codes
    pub codes: Vec<NamedCode>,
    /// the date window of the query consuming the retrieve, when it restricts one by a
    /// patient-independent interval
    pub window: Option<DateWindow>,
}

struct ReqWalk<'p> {
    p: &'p Prepared,
    g: &'p DefineGraph,
    ctx: Ctx<'p>,
    visited: HashSet<(usize, usize, String)>,
    calls: Vec<(usize, usize)>,
    out: Vec<DataRequirement>,
}

impl Prepared {
    /// The id of an expression definition of the main library.
    pub fn def_id(&self, name: &str) -> Option<DefId> {
        let l = &self.libs[self.main];
        l.defs
            .iter()
            .position(|d| !d.is_function && d.name == name)
            .map(|def| DefId {
                lib: self.main,
                def,
            })
    }

    /// The name of a definition.
    pub fn def_name(&self, id: DefId) -> &str {
        self.libs
            .get(id.lib)
            .and_then(|l| l.defs.get(id.def))
            .map(|d| d.name.as_str())
            .unwrap_or("")
    }

    /// The name of the library holding a definition.
    pub fn def_library(&self, id: DefId) -> &str {
        self.libs.get(id.lib).map(|l| l.name.as_str()).unwrap_or("")
    }

    /// True when the definition is in the main library.
    pub fn is_main(&self, id: DefId) -> bool {
        id.lib == self.main
    }

    /// The definition dependency graph of every library of the set.
    pub fn define_graph(&self) -> DefineGraph {
        DefineGraph::new(self)
    }

    /// Evaluates an expression that does not depend on the patient (no retrieve reachable, no
    /// query alias or operand) with the prepared parameters and no patient data. `None` when it
    /// depends on the patient or fails.
    fn constant(&self, g: &DefineGraph, ctx: &Ctx<'_>, e: &Expr, lib: usize) -> Option<Value> {
        if !independent(g, e) {
            return None;
        }
        ctx.call_frame(0, Vec::new(), || ctx.eval(e, lib)).ok()
    }

    /// The retrieves the definition `root` needs, read from the ELM: retrieves reached through
    /// the sources of queries (including `with` relationships and `let`s), through definition
    /// references into any library, and through operands of functions (a function's body is
    /// entered only when its operands hold no retrieve). Query conditions (`where`,
    /// `such that`), `return`, `sort` and `without` sources are not followed: they filter rows
    /// rather than supply them. Retrieves of the patient context resource (`[Patient]`) are
    /// left out, and so are `with` relationships that only resolve a reference of the row (their
    /// condition equates the related resource's `id`), and retrieves without codes of a type
    /// that is also retrieved with codes. Each requirement carries the date window of the nearest query that restricts
    /// its rows' date by an interval that does not depend on the patient (evaluated here with
    /// the prepared parameters): a `where` / `such that` conjunct such as
    /// `X.effective during day of Interval[start of "Measurement Period" - 2 years, end of "Measurement Period"]`.
    /// In source order, without repeats.
    pub fn data_requirements(&self, graph: &DefineGraph, root: DefId) -> Vec<DataRequirement> {
        let Some(Some(e)) = self
            .libs
            .get(root.lib)
            .and_then(|l| l.defs.get(root.def))
            .map(|d| d.expr.as_ref())
        else {
            return Vec::new();
        };
        let mut w = ReqWalk {
            p: self,
            g: graph,
            ctx: Ctx::new(self, None, crate::EvalContext::from_clock()),
            visited: HashSet::new(),
            calls: Vec::new(),
            out: Vec::new(),
        };
        w.visited.insert((root.lib, root.def, String::new()));
        w.walk(e, root.lib, None);
        let coded: HashSet<String> = w
            .out
            .iter()
            .filter(|r| r.code_property.is_some())
            .map(|r| r.data_type.clone())
            .collect();
        w.out
            .retain(|r| r.code_property.is_some() || !coded.contains(&r.data_type));
        let mut out: Vec<DataRequirement> = Vec::new();
        for r in w.out {
            let dup = out.iter().any(|o| {
                o.data_type == r.data_type
                    && o.template == r.template
                    && o.code_property == r.code_property
                    && o.value_set == r.value_set
                    && o.codes == r.codes
                    && o.window.as_ref().map(DateWindow::key)
                        == r.window.as_ref().map(DateWindow::key)
            });
            if !dup {
                out.push(r);
            }
        }
        out
    }
}

impl Session<'_> {
    /// Evaluates one definition (of the main library or an included one) by id, memoized with
    /// the session's other evaluations.
    pub fn evaluate_def(&self, id: DefId) -> Result<Value, CqlError> {
        let ok = self
            .ctx
            .prepared
            .libs
            .get(id.lib)
            .and_then(|l| l.defs.get(id.def))
            .is_some_and(|d| !d.is_function);
        if !ok {
            return Err(CqlError::new("no such expression definition"));
        }
        self.ctx.eval_def(id.lib, id.def)
    }
}

/// True when `e` cannot depend on the patient: no retrieve, no query alias / operand / let,
/// no definition or function that reaches a retrieve.
fn independent(g: &DefineGraph, e: &Expr) -> bool {
    match e {
        Expr::Slot(_) | Expr::Retrieve { .. } | Expr::Unsupported(_) | Expr::Query(_) => false,
        Expr::Def { lib, def } => !g.reaches_retrieve(DefId {
            lib: *lib,
            def: *def,
        }),
        Expr::Func { lib, cands, args } => {
            cands
                .iter()
                .all(|d| !g.reaches_retrieve(DefId { lib: *lib, def: *d }))
                && args.iter().all(|a| independent(g, a))
        }
        _ => {
            let mut ok = true;
            children(e, &mut |c| ok = ok && independent(g, c));
            ok
        }
    }
}

/// Slots referenced by `e` (function bodies not entered), and slots bound by queries in `e`.
fn slots(e: &Expr, used: &mut Vec<usize>, bound: &mut Vec<usize>) {
    match e {
        Expr::Slot(s) if !used.contains(s) => used.push(*s),
        Expr::Query(q) => {
            bound.extend(q.sources.iter().map(|(_, s, _)| *s));
            bound.extend(q.lets.iter().map(|(_, s)| *s));
            bound.extend(q.rels.iter().map(|r| r.slot));
            if let Some(a) = &q.agg {
                bound.push(a.slot);
            }
            if let Some((s, _)) = &q.sort {
                bound.push(*s);
            }
        }
        _ => {}
    }
    children(e, &mut |c| slots(c, used, bound));
}

/// True when `e` references the query alias in `slot` and no other alias, let or operand
/// (aliases of queries inside `e` aside).
fn only_slot(e: &Expr, slot: usize) -> bool {
    let (mut used, mut bound) = (Vec::new(), Vec::new());
    slots(e, &mut used, &mut bound);
    used.retain(|s| !bound.contains(s));
    used == [slot]
}

fn conjuncts<'e>(e: &'e Expr, out: &mut Vec<&'e Expr>) {
    match e {
        Expr::And(a, b) => {
            conjuncts(a, out);
            conjuncts(b, out);
        }
        _ => out.push(e),
    }
}

/// True when `cond` equates the `id` of the rows bound to `slot` with something: the
/// relationship resolves a reference of the outer row rather than adding data of its own.
fn id_join(cond: &Expr, slot: usize) -> bool {
    let is_id = |e: &Expr| matches!(e, Expr::Property { src, path } if &**path == "id" && matches!(**src, Expr::Slot(s) if s == slot));
    let mut cs = Vec::new();
    conjuncts(cond, &mut cs);
    cs.iter().any(|c| {
        matches!(c, Expr::Op { op: Op::Equal | Op::Equivalent, args, .. }
            if args.len() == 2 && (is_id(&args[0]) || is_id(&args[1])))
    })
}

impl ReqWalk<'_> {
    fn walk(&mut self, e: &Expr, lib: usize, inherited: Option<&DateWindow>) {
        if self.calls.len() > 64 {
            return;
        }
        match e {
            Expr::Retrieve {
                data_type,
                code_path,
                codes,
                template,
                ..
            } => {
                if &**data_type == "Patient" {
                    return;
                }
                let mut req = DataRequirement {
                    data_type: data_type.to_string(),
                    template: template.as_deref().map(str::to_string),
                    code_property: None,
                    value_set: None,
                    codes: Vec::new(),
                    window: inherited.cloned(),
                };
                if let Some(c) = codes {
                    req.code_property = Some(code_path.as_deref().unwrap_or("code").to_string());
                    if let Some(v) = self.p.constant(self.g, &self.ctx, c, lib) {
                        self.describe_codes(&v, lib, &mut req);
                    }
                }
                self.out.push(req);
            }
            Expr::Def { lib: l, def } => {
                let key = (*l, *def, inherited.map(DateWindow::key).unwrap_or_default());
                if !self.visited.insert(key) {
                    return;
                }
                if let Some(x) = self.p.libs[*l].defs[*def].expr.as_ref() {
                    self.walk(x, *l, inherited);
                }
            }
            Expr::Func {
                lib: l,
                cands,
                args,
            } => {
                let before = self.out.len();
                for a in args {
                    self.walk(a, lib, inherited);
                }
                if self.out.len() == before {
                    for c in cands {
                        if self.calls.contains(&(*l, *c)) {
                            continue;
                        }
                        self.calls.push((*l, *c));
                        if let Some(x) = self.p.libs[*l].defs[*c].expr.as_ref() {
                            self.walk(x, *l, inherited);
                        }
                        self.calls.pop();
                    }
                }
            }
            Expr::Query(q) => {
                let single = q.sources.len() == 1;
                for (src, slot, _) in &q.sources {
                    let w = q
                        .where_
                        .as_ref()
                        .and_then(|c| self.window_of(c, *slot, lib));
                    let w = w.or_else(|| if single { inherited.cloned() } else { None });
                    self.walk(src, lib, w.as_ref());
                }
                for (x, _) in &q.lets {
                    self.walk(x, lib, None);
                }
                for r in &q.rels {
                    if r.with && !id_join(&r.such_that, r.slot) {
                        let w = self.window_of(&r.such_that, r.slot, lib);
                        self.walk(&r.source, lib, w.as_ref());
                    }
                }
            }
            _ => children(e, &mut |c| self.walk(c, lib, inherited)),
        }
    }

    fn describe_codes(&self, v: &Value, lib: usize, req: &mut DataRequirement) {
        match v {
            Value::ValueSet(vs) => {
                let name = std::iter::once(&self.p.libs[lib])
                    .chain(self.p.libs.iter())
                    .flat_map(|l| l.valuesets.iter())
                    .find(|(_, d)| std::sync::Arc::ptr_eq(d, vs) || d.url == vs.url)
                    .map(|(n, _)| n.clone());
                req.value_set = Some(NamedValueSet {
                    name,
                    url: vs.url.to_string(),
                });
            }
            Value::Code(c) => {
                let name = std::iter::once(&self.p.libs[lib])
                    .chain(self.p.libs.iter())
                    .flat_map(|l| l.codes.iter())
                    .find(|(_, k)| k.code == c.code && k.system == c.system)
                    .map(|(n, _)| n.clone());
                let nc = NamedCode {
                    name,
                    code: (**c).clone(),
                };
                if !req.codes.contains(&nc) {
                    req.codes.push(nc);
                }
            }
            Value::Concept(c) => {
                for x in &c.codes {
                    self.describe_codes(&Value::Code(std::sync::Arc::new(x.clone())), lib, req);
                }
            }
            Value::List(l) => {
                for x in l.iter() {
                    self.describe_codes(x, lib, req);
                }
            }
            _ => {}
        }
    }

    /// The date window condition `cond` puts on the rows bound to `slot`: a conjunct comparing
    /// an expression of that alias alone with a patient-independent interval (`in`, `during`,
    /// `included in`, `includes`, `contains`, `overlaps`); a disjunction whose branches give the
    /// same window; `exists` of a query over the alias whose condition gives one.
    fn window_of(&self, cond: &Expr, slot: usize, lib: usize) -> Option<DateWindow> {
        match cond {
            Expr::And(a, b) => self
                .window_of(a, slot, lib)
                .or_else(|| self.window_of(b, slot, lib)),
            Expr::Or(a, b) => {
                let x = self.window_of(a, slot, lib)?;
                let y = self.window_of(b, slot, lib)?;
                if !x.same(&y) {
                    return None;
                }
                let o = x.overlaps() || y.overlaps();
                Some(x.with_overlaps(o))
            }
            Expr::Op {
                op: Op::Exists,
                args,
                ..
            } => match args.as_slice() {
                [Expr::Query(q)] if q.sources.len() == 1 && only_slot(&q.sources[0].0, slot) => {
                    self.window_of(q.where_.as_ref()?, q.sources[0].1, lib)
                }
                _ => None,
            },
            Expr::Op { op, args, .. } if args.len() == 2 => {
                let (row, win, overlaps) = match op {
                    Op::In | Op::IncludedIn | Op::ProperIn | Op::ProperIncludedIn => {
                        (&args[0], &args[1], false)
                    }
                    Op::Contains | Op::Includes | Op::ProperContains | Op::ProperIncludes => {
                        (&args[1], &args[0], false)
                    }
                    Op::Overlaps => {
                        if only_slot(&args[0], slot) {
                            (&args[0], &args[1], true)
                        } else {
                            (&args[1], &args[0], true)
                        }
                    }
                    _ => return None,
                };
                if !only_slot(row, slot) || !independent(self.g, win) {
                    return None;
                }
                let dates = match self.p.constant(self.g, &self.ctx, win, lib) {
                    Some(Value::Interval(i)) => {
                        let (lo, hi) = (interval::start(&i), interval::end(&i));
                        let date = |v: &Value| matches!(v, Value::Date(_) | Value::DateTime(_));
                        (date(&lo) && date(&hi)).then_some(DateWindow::Dates {
                            low: lo,
                            high: hi,
                            overlaps,
                        })
                    }
                    _ => None,
                };
                dates.or_else(|| match win {
                    Expr::Param { lib: l, idx } => Some(DateWindow::Parameter {
                        name: self.p.libs[*l].params[*idx].0.clone(),
                        overlaps,
                    }),
                    _ => None,
                })
            }
            _ => None,
        }
    }
}
