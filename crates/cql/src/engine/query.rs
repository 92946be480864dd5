//! Queries: compiled with their aliases, lets and relationship aliases bound to stack slots, and
//! evaluated over the cartesian product of their sources.

use super::compile::{json_array, json_str, Compiler, Scope};
use super::eval::Ctx;
use super::expr::Expr;
use crate::value::{sort_cmp, Value};
use crate::CqlResult;
use serde_json::Value as Json;
use std::cmp::Ordering;
use std::sync::Arc;

/// A query's `with` / `without` clause: rows are kept when some (or, `without`, no) item of
/// `source`, bound to `slot`, meets `such_that`.
#[derive(Debug)]
pub(crate) struct Relationship {
    pub(crate) with: bool,
    pub(crate) source: Expr,
    pub(crate) slot: usize,
    pub(crate) such_that: Expr,
}

/// A query's `aggregate` clause: `expression` folded over the rows with the running value
/// in `slot`, from `starting` (null when absent), over distinct rows when `distinct`.
#[derive(Debug)]
pub(crate) struct Aggregate {
    pub(crate) slot: usize,
    pub(crate) starting: Option<Expr>,
    pub(crate) expression: Expr,
    pub(crate) distinct: bool,
}

#[derive(Debug)]
pub(crate) struct Query {
    /// (source, its alias's slot, its alias)
    pub(crate) sources: Vec<(Expr, usize, Arc<str>)>,
    pub(crate) lets: Vec<(Expr, usize)>,
    pub(crate) rels: Vec<Relationship>,
    pub(crate) where_: Option<Expr>,
    /// (return expression, distinct)
    pub(crate) ret: Option<(Expr, bool)>,
    pub(crate) agg: Option<Aggregate>,
    /// (slot of the row for `$this`, (key or the row itself, descending) per `by`)
    pub(crate) sort: Option<(usize, Vec<(Option<Expr>, bool)>)>,
}

impl Compiler<'_> {
    /// A `Query` node.
    pub(super) fn query(&mut self, j: &Json, sc: &mut Scope) -> CqlResult<Expr> {
        let mark = sc.names.len();
        let next = sc.next;
        let mut sources = Vec::new();
        for src in json_array(j, "source") {
            let e = self.expr_or_null(src.get("expression"), sc)?;
            let alias = json_str(src, "alias").unwrap_or("");
            let slot = sc.push(alias);
            sources.push((e, slot, Arc::from(alias)));
        }
        let mut lets = Vec::new();
        for l in json_array(j, "let") {
            let e = self.expr_or_null(l.get("expression"), sc)?;
            let slot = sc.push(json_str(l, "identifier").unwrap_or(""));
            lets.push((e, slot));
        }
        let mut rels = Vec::new();
        for r in json_array(j, "relationship") {
            let e = self.expr_or_null(r.get("expression"), sc)?;
            let m = sc.names.len();
            let slot = sc.push(json_str(r, "alias").unwrap_or(""));
            let cond = self.expr_or_null(r.get("suchThat"), sc)?;
            sc.names.truncate(m);
            let with = match json_str(r, "type") {
                Some("With") => true,
                Some("Without") => false,
                _ => return Ok(self.unsupported(r, sc.lib, "unsupported relationship")),
            };
            rels.push(Relationship {
                with,
                source: e,
                slot,
                such_that: cond,
            });
        }
        let where_ = match j.get("where") {
            Some(w) => Some(self.expr(w, sc)?),
            None => None,
        };
        let ret = match j.get("return") {
            Some(r) => Some((
                self.expr_or_null(r.get("expression"), sc)?,
                r.get("distinct").and_then(|d| d.as_bool()).unwrap_or(true),
            )),
            None => None,
        };
        let agg = match j.get("aggregate") {
            Some(a) => {
                let slot = sc.push(json_str(a, "identifier").unwrap_or(""));
                let start = match a.get("starting") {
                    Some(st) => Some(self.expr(st, sc)?),
                    None => None,
                };
                let e = self.expr_or_null(a.get("expression"), sc)?;
                Some(Aggregate {
                    slot,
                    starting: start,
                    expression: e,
                    distinct: a.get("distinct").and_then(|d| d.as_bool()).unwrap_or(false),
                })
            }
            None => None,
        };
        let sort = match j.get("sort") {
            Some(so) => {
                let slot = sc.push("$this");
                let mut by = Vec::new();
                for b in json_array(so, "by") {
                    let desc = json_str(b, "direction").is_some_and(|d| d.starts_with("desc"));
                    let e = match b.get("expression") {
                        Some(e) => Some(self.expr(e, sc)?),
                        None => json_str(b, "path").map(|p| Expr::Property {
                            src: Box::new(Expr::Slot(slot)),
                            path: Arc::from(p),
                        }),
                    };
                    by.push((e, desc));
                }
                Some((slot, by))
            }
            None => None,
        };
        sc.names.truncate(mark);
        sc.next = next.max(sc.next);
        Ok(Expr::Query(Box::new(Query {
            sources,
            lets,
            rels,
            where_,
            ret,
            agg,
            sort,
        })))
    }
}

impl Ctx<'_> {
    /// Evaluates a query: a list of rows, or one row when its single source is not a list.
    pub(super) fn query(&self, q: &Query, lib: usize) -> CqlResult<Value> {
        // evaluate sources
        let mut srcs = Vec::with_capacity(q.sources.len());
        let mut singleton = false;
        for (e, _, _) in &q.sources {
            let v = self.eval(e, lib)?;
            match v {
                Value::List(l) => srcs.push(l),
                Value::Null if q.sources.len() == 1 => {
                    singleton = true;
                    srcs.push(Arc::new(vec![]));
                }
                other => {
                    if q.sources.len() == 1 {
                        singleton = true;
                    }
                    srcs.push(Arc::new(vec![other]));
                }
            }
        }
        let mut rows: Vec<Value> = Vec::new();
        let n = srcs.len();
        let mut idx = vec![0usize; n];
        if srcs.iter().all(|s| !s.is_empty()) {
            'outer: loop {
                for (k, (_, slot, _)) in q.sources.iter().enumerate() {
                    self.set_slot(*slot, srcs[k][idx[k]].clone());
                }
                if self.row_kept(q, lib)? {
                    let v = match &q.ret {
                        Some((e, _)) => self.eval(e, lib)?,
                        None => {
                            if n == 1 {
                                self.slot(q.sources[0].1)
                            } else {
                                Value::Tuple(Arc::new(
                                    q.sources
                                        .iter()
                                        .map(|(_, s, name)| (name.clone(), self.slot(*s)))
                                        .collect(),
                                ))
                            }
                        }
                    };
                    rows.push(v);
                }
                // advance
                let mut k = n;
                loop {
                    if k == 0 {
                        break 'outer;
                    }
                    k -= 1;
                    idx[k] += 1;
                    if idx[k] < srcs[k].len() {
                        break;
                    }
                    idx[k] = 0;
                }
            }
        }
        if let Some(Aggregate {
            slot,
            starting: start,
            expression: e,
            distinct,
        }) = &q.agg
        {
            let mut acc = match start {
                Some(s) => self.eval(s, lib)?,
                None => Value::Null,
            };
            let rows = if *distinct {
                crate::ops::distinct(&rows)
            } else {
                rows
            };
            for r in rows {
                match (&r, n > 1) {
                    (Value::Tuple(t), true) => {
                        for (k, (_, sl, _)) in q.sources.iter().enumerate() {
                            self.set_slot(
                                *sl,
                                t.get(k).map(|x| x.1.clone()).unwrap_or(Value::Null),
                            );
                        }
                    }
                    _ => self.set_slot(q.sources[0].1, r),
                }
                self.set_slot(*slot, acc.clone());
                acc = self.eval(e, lib)?;
            }
            return Ok(acc);
        }
        let distinct = match &q.ret {
            Some((_, d)) => *d,
            None => n > 1,
        };
        if distinct && rows.len() > 1 {
            rows = crate::ops::distinct(&rows);
        }
        if let Some((slot, by)) = &q.sort {
            let mut keyed: Vec<(Vec<Value>, Value)> = Vec::with_capacity(rows.len());
            for r in rows {
                self.set_slot(*slot, r.clone());
                let mut keys = Vec::new();
                for (e, _) in by {
                    keys.push(match e {
                        Some(e) => self.eval(e, lib)?,
                        None => r.clone(),
                    });
                }
                keyed.push((keys, r));
            }
            keyed.sort_by(|a, b| {
                for (i, (_, desc)) in by.iter().enumerate() {
                    let o = sort_cmp(&a.0[i], &b.0[i]);
                    let o = if *desc { o.reverse() } else { o };
                    if o != Ordering::Equal {
                        return o;
                    }
                }
                Ordering::Equal
            });
            rows = keyed.into_iter().map(|(_, r)| r).collect();
        }
        if singleton {
            return Ok(rows.into_iter().next().unwrap_or(Value::Null));
        }
        Ok(Value::List(Arc::new(rows)))
    }

    /// Binds the current row's lets; is the row kept by the relationships and `where`?
    fn row_kept(&self, q: &Query, lib: usize) -> CqlResult<bool> {
        for (e, slot) in &q.lets {
            let v = self.eval(e, lib)?;
            self.set_slot(*slot, v);
        }
        for Relationship {
            with,
            source: e,
            slot,
            such_that: cond,
        } in &q.rels
        {
            let v = self.eval(e, lib)?;
            let items: Vec<Value> = match v {
                Value::List(l) => l.iter().cloned().collect(),
                Value::Null => vec![],
                other => vec![other],
            };
            let mut any = false;
            for it in items {
                self.set_slot(*slot, it);
                if self.eval(cond, lib)?.is_true() {
                    any = true;
                    break;
                }
            }
            if any != *with {
                return Ok(false);
            }
        }
        if let Some(w) = &q.where_ {
            return Ok(self.eval(w, lib)?.is_true());
        }
        Ok(true)
    }
}
