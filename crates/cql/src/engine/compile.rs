//! Compilation of ELM JSON into the expression tree ([`Expr`]), once per [`Prepared`]: names
//! are resolved to indices (definitions, parameters, stack slots), declarations to values.
//! Operators are compiled by their family in [`crate::ops`].

use super::eval::Ctx;
use super::expr::{CompiledLibrary, Def, Expr, LibKey, Prepared};
use super::library::LibrarySet;
use crate::ops::type_ops::{self, TypeSpec};
use crate::ops::{self, structured, Op};
use crate::value::{Code, Concept, Value, ValueSetData};
use crate::{fail, fhir, CqlError, CqlResult, EvalContext, Parameters};
use serde_json::Value as Json;
use std::collections::HashMap;
use std::sync::Arc;

/// The elements of an ELM list property (`key: [...]`, or `key: {def: [...]}`); empty when
/// absent.
pub(crate) fn json_array<'a>(j: &'a Json, key: &str) -> &'a [Json] {
    match j.get(key) {
        Some(Json::Array(a)) => a,
        Some(Json::Object(o)) => match o.get("def") {
            Some(Json::Array(a)) => a,
            _ => &[],
        },
        _ => &[],
    }
}

/// A string property of an ELM node.
pub(crate) fn json_str<'a>(j: &'a Json, key: &str) -> Option<&'a str> {
    j.get(key).and_then(|v| v.as_str())
}

/// A library's declarations, indexed by name for compiling references to them.
struct LoadedLibrary {
    /// index into [`LibrarySet::libs`]
    src: usize,
    includes: HashMap<String, usize>,
    def_index: HashMap<String, usize>,
    funcs: HashMap<String, Vec<usize>>,
    param_index: HashMap<String, usize>,
    vs_index: HashMap<String, Arc<ValueSetData>>,
    codesystems: HashMap<String, (String, Option<String>)>,
    codes: HashMap<String, Json>,
    concepts: HashMap<String, Json>,
    done: Option<CompiledLibrary>,
}

pub(crate) struct Compiler<'a> {
    set: &'a LibrarySet,
    /// library set index -> index in `libs`
    lib_map: HashMap<usize, usize>,
    libs: Vec<LoadedLibrary>,
}

/// The names in scope while compiling one definition: operands, query aliases and lets, each
/// bound to a stack slot of the definition's frame.
pub(crate) struct Scope {
    pub(super) names: Vec<(String, usize)>,
    pub(super) next: usize,
    max: usize,
    /// the library being compiled
    pub(crate) lib: usize,
}

impl Scope {
    fn new(lib: usize) -> Scope {
        Scope {
            names: Vec::new(),
            next: 0,
            max: 0,
            lib,
        }
    }

    pub(super) fn push(&mut self, name: &str) -> usize {
        let slot = self.next;
        self.next += 1;
        self.max = self.max.max(self.next);
        self.names.push((name.to_string(), slot));
        slot
    }

    pub(crate) fn lookup(&self, name: &str) -> Option<usize> {
        self.names
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, s)| *s)
    }
}

impl LibrarySet {
    /// Compile the main library (by Library url or name) and everything it includes.
    pub fn prepare(&self, main: &str, params: Parameters) -> CqlResult<Prepared> {
        let main_idx = self.find_main(main)?;
        let mut c = Compiler {
            set: self,
            lib_map: HashMap::new(),
            libs: Vec::new(),
        };
        c.load(main_idx)?;
        let nlibs = c.libs.len();
        for li in 0..nlibs {
            c.compile_lib(li)?;
        }
        // content identity of each library (before parameters): name, version, the ELM itself,
        // the value sets it declares (with their expansions) and what it includes
        let base: Vec<u64> = c.libs.iter().map(|p| self.lib_content_hash(p)).collect();
        let includes: Vec<Vec<(String, usize)>> = c
            .libs
            .iter()
            .map(|p| {
                let mut v: Vec<(String, usize)> =
                    p.includes.iter().map(|(a, i)| (a.clone(), *i)).collect();
                v.sort();
                v
            })
            .collect();
        let libs: Vec<CompiledLibrary> = c
            .libs
            .into_iter()
            .map(|p| p.done.expect("compiled"))
            .collect();
        let mut prepared = Prepared { libs, main: 0 };
        for l in prepared.libs.iter_mut() {
            let mut n = 0;
            for d in l.defs.iter_mut().filter(|d| !d.is_function) {
                d.memo_slot = n;
                n += 1;
            }
            l.memo_len = n;
        }
        // parameters: provided values (by name, for every library) else defaults; the main library
        // (index 0) is resolved first
        for li in 0..prepared.libs.len() {
            for pi in 0..prepared.libs[li].params.len() {
                let name = prepared.libs[li].params[pi].0.clone();
                let v = match params.get(&name) {
                    Some(v) => v.clone(),
                    None => match prepared.libs[li].param_defaults[pi].clone() {
                        Some(e) => {
                            // defaults are fixed once, at prepare time (their own request)
                            let ctx = Ctx::new(&prepared, None, EvalContext::from_clock());
                            ctx.eval(&e, li)?
                        }
                        // an included library without a default takes the main library's value
                        None => prepared.libs[0]
                            .params
                            .iter()
                            .find(|(n, _)| *n == name)
                            .map(|(_, v)| v.clone())
                            .unwrap_or(Value::Null),
                    },
                };
                prepared.libs[li].params[pi].1 = v;
            }
        }
        // a library's definitions have the same values for one patient wherever its key is equal:
        // same content, same parameter values, and the same for everything it includes
        let mut keys: Vec<Option<LibKey>> = vec![None; prepared.libs.len()];
        for li in 0..prepared.libs.len() {
            lib_key(li, &base, &includes, &prepared.libs, &mut keys, 0)?;
        }
        for (l, k) in prepared.libs.iter_mut().zip(keys) {
            l.key = k.expect("keyed");
        }
        Ok(prepared)
    }

    fn lib_content_hash(&self, p: &LoadedLibrary) -> u64 {
        use std::hash::{Hash, Hasher};
        let src = &self.libs[p.src];
        let mut h = std::collections::hash_map::DefaultHasher::new();
        src.name.hash(&mut h);
        src.version.hash(&mut h);
        serde_json::to_vec(&*src.elm)
            .unwrap_or_default()
            .hash(&mut h);
        let mut vs: Vec<(&String, &Arc<ValueSetData>)> = p.vs_index.iter().collect();
        vs.sort_by(|a, b| a.0.cmp(b.0));
        for (name, d) in vs {
            name.hash(&mut h);
            d.url.hash(&mut h);
            d.list.len().hash(&mut h);
            for c in &d.list {
                (&c.code, &c.system, &c.version).hash(&mut h);
            }
        }
        h.finish()
    }
}

/// The key of library `li` (computing those of its includes first).
fn lib_key(
    li: usize,
    base: &[u64],
    includes: &[Vec<(String, usize)>],
    libs: &[CompiledLibrary],
    keys: &mut Vec<Option<LibKey>>,
    depth: usize,
) -> CqlResult<LibKey> {
    use std::hash::{Hash, Hasher};
    if let Some(k) = &keys[li] {
        return Ok(k.clone());
    }
    if depth > 64 {
        return fail("library includes are cyclic");
    }
    let mut content = std::collections::hash_map::DefaultHasher::new();
    let mut params = std::collections::hash_map::DefaultHasher::new();
    base[li].hash(&mut content);
    for (n, v) in &libs[li].params {
        n.hash(&mut params);
        format!("{v:?}").hash(&mut params);
    }
    for (alias, i) in &includes[li] {
        let k = lib_key(*i, base, includes, libs, keys, depth + 1)?;
        alias.hash(&mut content);
        k.hash(&mut content);
        k.hash(&mut params);
    }
    let k = LibKey {
        name: libs[li].name.clone(),
        content: content.finish(),
        params: params.finish(),
    };
    keys[li] = Some(k.clone());
    Ok(k)
}

impl Compiler<'_> {
    /// Loads library `src` of the set and, first, everything it includes; its index in `libs`.
    fn load(&mut self, src: usize) -> CqlResult<usize> {
        if let Some(&i) = self.lib_map.get(&src) {
            return Ok(i);
        }
        let idx = self.libs.len();
        self.lib_map.insert(src, idx);
        let elm = self.set.libs[src].elm.clone();
        let lib = elm
            .get("library")
            .ok_or_else(|| CqlError::new("ELM JSON has no library"))?;
        self.libs.push(LoadedLibrary {
            src,
            includes: HashMap::new(),
            def_index: HashMap::new(),
            funcs: HashMap::new(),
            param_index: HashMap::new(),
            vs_index: HashMap::new(),
            codesystems: HashMap::new(),
            codes: HashMap::new(),
            concepts: HashMap::new(),
            done: None,
        });
        let libname = self.set.libs[src].name.clone();
        let mut includes = HashMap::new();
        for inc in json_array(lib, "includes") {
            let alias = json_str(inc, "localIdentifier").unwrap_or("").to_string();
            let path = json_str(inc, "path").unwrap_or("");
            let version = json_str(inc, "version");
            let found = self
                .set
                .find(path, version)
                .ok_or_else(|| CqlError::new(format!("library `{libname}` includes `{path}` version {version:?}, which is not available")))?;
            let li = self.load(found)?;
            includes.insert(alias, li);
        }
        let mut def_index = HashMap::new();
        let mut funcs: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, d) in json_array(lib.get("statements").unwrap_or(&Json::Null), "def")
            .iter()
            .enumerate()
        {
            let name = json_str(d, "name").unwrap_or("").to_string();
            if json_str(d, "type") == Some("FunctionDef") {
                funcs.entry(name).or_default().push(i);
            } else {
                def_index.insert(name, i);
            }
        }
        let mut param_index = HashMap::new();
        for (i, p) in json_array(lib, "parameters").iter().enumerate() {
            param_index.insert(json_str(p, "name").unwrap_or("").to_string(), i);
        }
        let mut vs_index = HashMap::new();
        for v in json_array(lib, "valueSets") {
            let name = json_str(v, "name").unwrap_or("").to_string();
            let id = json_str(v, "id").unwrap_or("");
            let data = self
                .set
                .valuesets
                .get(id)
                .or_else(|| self.set.valuesets.get(id.split('|').next().unwrap_or(id)))
                .cloned()
                .unwrap_or_else(|| {
                    Arc::new(ValueSetData {
                        url: Arc::from(id),
                        ..Default::default()
                    })
                });
            vs_index.insert(name, data);
        }
        let mut codesystems = HashMap::new();
        for c in json_array(lib, "codeSystems") {
            codesystems.insert(
                json_str(c, "name").unwrap_or("").to_string(),
                (
                    json_str(c, "id").unwrap_or("").to_string(),
                    json_str(c, "version").map(|v| v.to_string()),
                ),
            );
        }
        let mut codes = HashMap::new();
        for c in json_array(lib, "codes") {
            codes.insert(json_str(c, "name").unwrap_or("").to_string(), c.clone());
        }
        let mut concepts = HashMap::new();
        for c in json_array(lib, "concepts") {
            concepts.insert(json_str(c, "name").unwrap_or("").to_string(), c.clone());
        }
        let p = &mut self.libs[idx];
        p.includes = includes;
        p.def_index = def_index;
        p.funcs = funcs;
        p.param_index = param_index;
        p.vs_index = vs_index;
        p.codesystems = codesystems;
        p.codes = codes;
        p.concepts = concepts;
        Ok(idx)
    }

    /// Compiles the definitions and parameter defaults of loaded library `li`.
    fn compile_lib(&mut self, li: usize) -> CqlResult<()> {
        let src = self.libs[li].src;
        let elm = self.set.libs[src].elm.clone();
        let lib = elm
            .get("library")
            .ok_or_else(|| CqlError::new("ELM JSON has no library"))?;
        let mut defs = Vec::new();
        for d in json_array(lib.get("statements").unwrap_or(&Json::Null), "def") {
            let is_function = json_str(d, "type") == Some("FunctionDef");
            let mut scope = Scope::new(li);
            let mut operand_types = Vec::new();
            for o in json_array(d, "operand") {
                scope.push(json_str(o, "name").unwrap_or(""));
                operand_types.push(
                    o.get("operandTypeSpecifier")
                        .map(type_ops::type_specifier)
                        .unwrap_or(TypeSpec::Any),
                );
            }
            let expr = match d.get("expression") {
                Some(e) => Some(self.expr(e, &mut scope)?),
                None => None, // external function
            };
            defs.push(Def {
                name: json_str(d, "name").unwrap_or("").to_string(),
                expr,
                nslots: scope.max,
                operand_types,
                is_function,
                patient_context: json_str(d, "context") != Some("Unfiltered"),
                memo_slot: usize::MAX,
            });
        }
        let mut params = Vec::new();
        let mut param_defaults = Vec::new();
        for p in json_array(lib, "parameters") {
            params.push((json_str(p, "name").unwrap_or("").to_string(), Value::Null));
            let mut scope = Scope::new(li);
            param_defaults.push(match p.get("default") {
                Some(e) => Some(Arc::new(self.expr(e, &mut scope)?)),
                None => None,
            });
        }
        let name = self.set.libs[src].name.clone();
        let def_index = self.libs[li].def_index.clone();
        let mut valuesets: Vec<(String, Arc<ValueSetData>)> = self.libs[li]
            .vs_index
            .iter()
            .map(|(n, d)| (n.clone(), d.clone()))
            .collect();
        valuesets.sort_by(|a, b| a.0.cmp(&b.0));
        let mut codes: Vec<(String, Code)> = self.libs[li]
            .codes
            .iter()
            .map(|(n, c)| (n.clone(), self.code_from_def(c, li)))
            .collect();
        codes.sort_by(|a, b| a.0.cmp(&b.0));
        self.libs[li].done = Some(CompiledLibrary {
            name,
            defs,
            def_index,
            params,
            param_defaults,
            memo_len: 0,
            key: LibKey::default(),
            valuesets,
            codes,
        });
        Ok(())
    }

    fn lib_name(&self, li: usize) -> &str {
        &self.set.libs[self.libs[li].src].name
    }

    /// An [`Expr::Unsupported`] naming the node `j` of library `li`: `what` ELM node `type`.
    pub(crate) fn unsupported(&self, j: &Json, li: usize, what: &str) -> Expr {
        let t = json_str(j, "type").unwrap_or("?");
        let loc = json_str(j, "locator").unwrap_or("?");
        Expr::Unsupported(Arc::from(format!(
            "{what} ELM node `{t}` in library {} at {loc}",
            self.lib_name(li)
        )))
    }

    /// The library a reference node in library `li` points into (its `libraryName` alias).
    fn target_lib(&self, j: &Json, li: usize) -> CqlResult<usize> {
        match json_str(j, "libraryName") {
            None => Ok(li),
            Some(alias) => self.libs[li].includes.get(alias).copied().ok_or_else(|| {
                CqlError::new(format!(
                    "unknown library alias `{alias}` in library {} at {}",
                    self.lib_name(li),
                    json_str(j, "locator").unwrap_or("?")
                ))
            }),
        }
    }

    /// The value set a `ValueSetRef`-shaped node in library `li` names; `None` when undeclared.
    pub(crate) fn value_set(&self, j: &Json, li: usize) -> CqlResult<Option<Arc<ValueSetData>>> {
        let lib = self.target_lib(j, li)?;
        Ok(self.libs[lib]
            .vs_index
            .get(json_str(j, "name").unwrap_or(""))
            .cloned())
    }

    /// Compiles an optional node; absent (or JSON null) is the null literal.
    pub(crate) fn expr_or_null(&mut self, j: Option<&Json>, sc: &mut Scope) -> CqlResult<Expr> {
        match j {
            Some(j) if !j.is_null() => self.expr(j, sc),
            _ => Ok(Expr::Lit(Value::Null)),
        }
    }

    /// The operands of a node in ELM's usual shape: an `operand` list or object, else `source`.
    pub(crate) fn operands(&mut self, j: &Json, sc: &mut Scope) -> CqlResult<Vec<Expr>> {
        match j.get("operand") {
            Some(Json::Array(a)) => a.iter().map(|x| self.expr(x, sc)).collect(),
            Some(o @ Json::Object(_)) => Ok(vec![self.expr(o, sc)?]),
            _ => match j.get("source") {
                Some(src) => Ok(vec![self.expr(src, sc)?]),
                None => Ok(vec![]),
            },
        }
    }

    /// The code of a code declaration (`codes` of library `li`).
    fn code_from_def(&self, c: &Json, li: usize) -> Code {
        let cs = c
            .get("codeSystem")
            .and_then(|x| json_str(x, "name"))
            .unwrap_or("");
        let lib = c
            .get("codeSystem")
            .and_then(|x| json_str(x, "libraryName"))
            .and_then(|a| self.libs[li].includes.get(a).copied())
            .unwrap_or(li);
        self.code(c, lib, cs, json_str(c, "id").or(json_str(c, "code")))
    }

    /// A code of code system `cs` (declared in library `lib`) with the code and display of `j`.
    fn code(&self, j: &Json, lib: usize, cs: &str, code: Option<&str>) -> Code {
        let (system, version) = self.libs[lib]
            .codesystems
            .get(cs)
            .cloned()
            .unwrap_or_default();
        Code {
            code: Arc::from(code.unwrap_or("")),
            system: if system.is_empty() {
                None
            } else {
                Some(Arc::from(system.as_str()))
            },
            version: version.map(|v| Arc::from(v.as_str())),
            display: json_str(j, "display").map(Arc::from),
        }
    }

    /// Compiles one ELM expression node.
    pub(crate) fn expr(&mut self, j: &Json, sc: &mut Scope) -> CqlResult<Expr> {
        let li = sc.lib;
        let Some(t) = json_str(j, "type") else {
            return Ok(self.unsupported(j, li, "untyped"));
        };
        Ok(match t {
            "Null" => Expr::Lit(Value::Null),
            "Literal" => {
                match ops::literal(json_str(j, "valueType").unwrap_or(""), j.get("value")) {
                    Some(v) => Expr::Lit(v),
                    None => ops::message::invalid_literal(),
                }
            }
            "Quantity" => {
                let v = j.get("value").map(|v| v.to_string()).unwrap_or_default();
                let d = v.trim_matches('"').parse::<rust_decimal::Decimal>().ok();
                match d {
                    Some(d) => Expr::Lit(Value::Quantity(crate::value::Quantity {
                        value: d,
                        unit: Arc::from(json_str(j, "unit").unwrap_or("1")),
                    })),
                    None => Expr::Lit(Value::Null),
                }
            }
            "Ratio" => structured::compile_ratio(self, j, sc)?,
            "ExpressionRef" => {
                let lib = self.target_lib(j, li)?;
                let name = json_str(j, "name").unwrap_or("");
                match self.libs[lib].def_index.get(name) {
                    Some(&def) => Expr::Def { lib, def },
                    None => {
                        return Ok(self.unsupported(
                            j,
                            li,
                            &format!("unknown expression `{name}` referenced by"),
                        ))
                    }
                }
            }
            "FunctionRef" => self.function_ref(j, sc)?,
            "ParameterRef" => {
                let lib = self.target_lib(j, li)?;
                let name = json_str(j, "name").unwrap_or("");
                match self.libs[lib].param_index.get(name) {
                    Some(&idx) => Expr::Param { lib, idx },
                    None => return Ok(self.unsupported(j, li, "unknown parameter in")),
                }
            }
            "ValueSetRef" => match self.value_set(j, li)? {
                Some(v) => Expr::ValueSetRef(v),
                None => return Ok(self.unsupported(j, li, "unknown value set in")),
            },
            "CodeRef" => {
                let lib = self.target_lib(j, li)?;
                match self.libs[lib]
                    .codes
                    .get(json_str(j, "name").unwrap_or(""))
                    .cloned()
                {
                    Some(c) => Expr::Lit(Value::Code(Arc::new(self.code_from_def(&c, lib)))),
                    None => return Ok(self.unsupported(j, li, "unknown code in")),
                }
            }
            "ConceptRef" => {
                let lib = self.target_lib(j, li)?;
                match self.libs[lib]
                    .concepts
                    .get(json_str(j, "name").unwrap_or(""))
                    .cloned()
                {
                    Some(c) => {
                        let mut codes = Vec::new();
                        for cr in json_array(&c, "code") {
                            if let Some(cd) = self.libs[lib]
                                .codes
                                .get(json_str(cr, "name").unwrap_or(""))
                                .cloned()
                            {
                                codes.push(self.code_from_def(&cd, lib));
                            }
                        }
                        Expr::Lit(Value::Concept(Arc::new(Concept {
                            codes,
                            display: json_str(&c, "display").map(Arc::from),
                        })))
                    }
                    None => return Ok(self.unsupported(j, li, "unknown concept in")),
                }
            }
            "CodeSystemRef" => {
                let lib = self.target_lib(j, li)?;
                let (id, ver) = self.libs[lib]
                    .codesystems
                    .get(json_str(j, "name").unwrap_or(""))
                    .cloned()
                    .unwrap_or_default();
                Expr::Lit(Value::Tuple(Arc::new(vec![
                    (Arc::from("id"), Value::str(&id)),
                    (
                        Arc::from("version"),
                        ver.map(|v| Value::str(&v)).unwrap_or(Value::Null),
                    ),
                ])))
            }
            "Code" => {
                let sys = j
                    .get("system")
                    .and_then(|x| json_str(x, "name"))
                    .unwrap_or("");
                let lib = j
                    .get("system")
                    .map(|x| self.target_lib(x, li))
                    .transpose()?
                    .unwrap_or(li);
                Expr::Lit(Value::Code(Arc::new(self.code(
                    j,
                    lib,
                    sys,
                    json_str(j, "code"),
                ))))
            }
            "Concept" => {
                let mut codes = Vec::new();
                for c in json_array(j, "code") {
                    if let Expr::Lit(Value::Code(c)) = self.expr(c, sc)? {
                        codes.push((*c).clone());
                    }
                }
                Expr::Lit(Value::Concept(Arc::new(Concept {
                    codes,
                    display: json_str(j, "display").map(Arc::from),
                })))
            }
            "OperandRef" | "AliasRef" | "QueryLetRef" => {
                let name = json_str(j, "name").unwrap_or("");
                match sc.lookup(name) {
                    Some(slot) => Expr::Slot(slot),
                    None => {
                        return Ok(self.unsupported(
                            j,
                            li,
                            &format!("unresolved reference `{name}` in"),
                        ))
                    }
                }
            }
            "IdentifierRef" => {
                let name = json_str(j, "name").unwrap_or("");
                match sc.lookup("$this") {
                    Some(slot) => Expr::Property {
                        src: Box::new(Expr::Slot(slot)),
                        path: Arc::from(name),
                    },
                    None => match sc.lookup(name) {
                        Some(slot) => Expr::Slot(slot),
                        None => return Ok(self.unsupported(j, li, "unresolved identifier in")),
                    },
                }
            }
            "Property" => structured::compile_property(self, j, sc)?,
            "And" | "Or" => {
                let mut operands = self.operands(j, sc)?;
                if operands.len() != 2 {
                    return Ok(self.unsupported(j, li, "malformed"));
                }
                let b = operands.pop().unwrap_or(Expr::Lit(Value::Null));
                let a = operands.pop().unwrap_or(Expr::Lit(Value::Null));
                if t == "And" {
                    Expr::And(Box::new(a), Box::new(b))
                } else {
                    Expr::Or(Box::new(a), Box::new(b))
                }
            }
            "If" => Expr::If(
                Box::new(self.expr_or_null(j.get("condition"), sc)?),
                Box::new(self.expr_or_null(j.get("then"), sc)?),
                Box::new(self.expr_or_null(j.get("else"), sc)?),
            ),
            "Case" => {
                let comparand = match j.get("comparand") {
                    Some(c) => Some(Box::new(self.expr(c, sc)?)),
                    None => None,
                };
                let mut items = Vec::new();
                for it in json_array(j, "caseItem") {
                    items.push((
                        self.expr_or_null(it.get("when"), sc)?,
                        self.expr_or_null(it.get("then"), sc)?,
                    ));
                }
                Expr::Case {
                    comparand,
                    items,
                    els: Box::new(self.expr_or_null(j.get("else"), sc)?),
                }
            }
            "Coalesce" => Expr::Coalesce(self.operands(j, sc)?),
            "List" => Expr::List(
                json_array(j, "element")
                    .iter()
                    .map(|e| self.expr(e, sc))
                    .collect::<CqlResult<_>>()?,
            ),
            "Tuple" => structured::compile_tuple(self, j, sc)?,
            "Instance" => structured::compile_instance(self, j, sc)?,
            "Interval" => ops::interval::compile_selector(self, j, sc)?,
            "As" => type_ops::compile_as(self, j, sc)?,
            "Is" => type_ops::compile_is(self, j, sc)?,
            "Message" => Expr::Message {
                source: Box::new(self.expr_or_null(j.get("source"), sc)?),
                cond: Box::new(self.expr_or_null(j.get("condition"), sc)?),
                code: Box::new(self.expr_or_null(j.get("code"), sc)?),
                severity: Box::new(self.expr_or_null(j.get("severity"), sc)?),
                message: Box::new(self.expr_or_null(j.get("message"), sc)?),
            },
            "Retrieve" => self.retrieve(j, sc)?,
            "Query" => self.query(j, sc)?,
            "Date" | "DateTime" | "Time" => ops::date_time::compile_selector(self, t, j, sc)?,
            _ => match Op::from_name(t) {
                Some(op) => ops::compile(self, op, j, sc)?,
                None => self.unsupported(j, li, "unsupported"),
            },
        })
    }

    /// A `FunctionRef`: a FHIRHelpers function evaluated natively, or the candidate overloads
    /// (by operand count) of a library function.
    fn function_ref(&mut self, j: &Json, sc: &mut Scope) -> CqlResult<Expr> {
        let li = sc.lib;
        let lib = self.target_lib(j, li)?;
        let name = json_str(j, "name").unwrap_or("");
        let mut args = self.operands(j, sc)?;
        if self.lib_name(lib) == "FHIRHelpers"
            && args.len() == 1
            && fhir::fhirhelpers_call(name, &Value::Null).is_some()
        {
            return Ok(Expr::Native {
                name: Arc::from(name),
                arg: Box::new(args.remove(0)),
            });
        }
        let elm = self.set.libs[self.libs[lib].src].elm.clone();
        let stmts = json_array(
            elm.get("library")
                .and_then(|l| l.get("statements"))
                .unwrap_or(&Json::Null),
            "def",
        );
        let cands: Vec<usize> = self.libs[lib]
            .funcs
            .get(name)
            .map(|v| {
                v.iter()
                    .copied()
                    .filter(|&i| json_array(&stmts[i], "operand").len() == args.len())
                    .collect()
            })
            .unwrap_or_default();
        if cands.is_empty() {
            // system functions invoked as FunctionRef (rare)
            return Ok(self.unsupported(j, li, &format!("unresolved function `{name}` in")));
        }
        Ok(Expr::Func { lib, cands, args })
    }
}
