//! Library loading, compilation of ELM JSON into an executable tree, and evaluation.

use crate::datetime::{parse_precision, Prec};
use crate::fhir;
use crate::ops::{self, Op};
use crate::value::{equivalent, Code, Concept, Value, ValueSetData};
use crate::{CqlError, EvalContext, Parameters, PatientData};
use base64::Engine as _;
use serde_json::Value as Json;
use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;

type R<T> = Result<T, CqlError>;

// ---------------------------------------------------------------------------
// Library set
// ---------------------------------------------------------------------------

struct LibSrc {
    name: String,
    version: Option<String>,
    url: Option<String>,
    elm: Arc<Json>,
}

/// All ELM libraries and value sets available for preparation.
pub struct LibrarySet {
    libs: Vec<LibSrc>,
    valuesets: HashMap<String, Arc<ValueSetData>>,
}

fn lib_identity(elm: &Json) -> R<(String, Option<String>)> {
    let id = elm
        .get("library")
        .and_then(|l| l.get("identifier"))
        .ok_or_else(|| CqlError::new("ELM JSON has no library.identifier"))?;
    let name = id
        .get("id")
        .and_then(|s| s.as_str())
        .ok_or_else(|| CqlError::new("ELM library identifier has no id"))?;
    let version = id
        .get("version")
        .and_then(|s| s.as_str())
        .map(|s| s.to_string());
    Ok((name.to_string(), version))
}

fn collect_contains(j: &Json, out: &mut Vec<Code>) {
    if let Some(arr) = j.get("contains").and_then(|c| c.as_array()) {
        for c in arr {
            if let Some(code) = c.get("code").and_then(|s| s.as_str()) {
                out.push(Code {
                    code: Arc::from(code),
                    system: c.get("system").and_then(|s| s.as_str()).map(Arc::from),
                    version: c.get("version").and_then(|s| s.as_str()).map(Arc::from),
                    display: c.get("display").and_then(|s| s.as_str()).map(Arc::from),
                });
            }
            collect_contains(c, out);
        }
    }
}

fn valueset_from_resource(r: &Json) -> Option<(String, ValueSetData)> {
    let url = r.get("url")?.as_str()?.to_string();
    let mut list = Vec::new();
    if let Some(exp) = r.get("expansion") {
        collect_contains(exp, &mut list);
    }
    if list.is_empty() {
        if let Some(inc) = r
            .get("compose")
            .and_then(|c| c.get("include"))
            .and_then(|i| i.as_array())
        {
            for i in inc {
                let system = i.get("system").and_then(|s| s.as_str()).map(Arc::from);
                for c in i
                    .get("concept")
                    .and_then(|c| c.as_array())
                    .into_iter()
                    .flatten()
                {
                    if let Some(code) = c.get("code").and_then(|s| s.as_str()) {
                        list.push(Code {
                            code: Arc::from(code),
                            system: system.clone(),
                            version: None,
                            display: None,
                        });
                    }
                }
            }
        }
    }
    Some((url.clone(), ValueSetData::new(&url, list)))
}

impl LibrarySet {
    /// From a FHIR measure bundle: every Library's `application/elm+json` content and every ValueSet.
    pub fn from_measure_bundle(bundle: &Json) -> R<LibrarySet> {
        let entries = bundle
            .get("entry")
            .and_then(|e| e.as_array())
            .ok_or_else(|| CqlError::new("bundle has no entry array"))?;
        let mut libs = Vec::new();
        let mut valuesets = HashMap::new();
        for e in entries {
            let Some(r) = e.get("resource") else { continue };
            match r.get("resourceType").and_then(|t| t.as_str()) {
                Some("Library") => {
                    let url = r.get("url").and_then(|u| u.as_str()).map(|s| s.to_string());
                    let Some(contents) = r.get("content").and_then(|c| c.as_array()) else {
                        continue;
                    };
                    for c in contents {
                        if c.get("contentType").and_then(|t| t.as_str())
                            != Some("application/elm+json")
                        {
                            continue;
                        }
                        let data = c
                            .get("data")
                            .and_then(|d| d.as_str())
                            .ok_or_else(|| CqlError::new("Library content has no data"))?;
                        let bytes = base64::engine::general_purpose::STANDARD
                            .decode(data.trim())
                            .map_err(|e| {
                                CqlError::new(format!("Library content is not valid base64: {e}"))
                            })?;
                        let elm: Json = serde_json::from_slice(&bytes).map_err(|e| {
                            CqlError::new(format!("Library ELM is not valid JSON: {e}"))
                        })?;
                        let (name, version) = lib_identity(&elm)?;
                        libs.push(LibSrc {
                            name,
                            version,
                            url: url.clone(),
                            elm: Arc::new(elm),
                        });
                    }
                }
                Some("ValueSet") => {
                    if let Some((url, vs)) = valueset_from_resource(r) {
                        valuesets.insert(url, Arc::new(vs));
                    }
                }
                _ => {}
            }
        }
        Ok(LibrarySet { libs, valuesets })
    }

    /// From ELM JSON library documents (no value sets).
    pub fn from_elm_json(libs: &[Json]) -> R<LibrarySet> {
        let mut out = Vec::new();
        for elm in libs {
            let (name, version) = lib_identity(elm)?;
            out.push(LibSrc {
                name,
                version,
                url: None,
                elm: Arc::new(elm.clone()),
            });
        }
        Ok(LibrarySet {
            libs: out,
            valuesets: HashMap::new(),
        })
    }

    /// From already decoded ELM JSON libraries, each with its Library url when known, shared
    /// (`Arc`) so that one library used by many measures is held once; plus ValueSet resources.
    pub fn from_shared_elm(
        libs: &[(Option<String>, Arc<Json>)],
        valuesets: &[Json],
    ) -> R<LibrarySet> {
        let mut out = Vec::with_capacity(libs.len());
        for (url, elm) in libs {
            let (name, version) = lib_identity(elm)?;
            out.push(LibSrc {
                name,
                version,
                url: url.clone(),
                elm: elm.clone(),
            });
        }
        let mut set = LibrarySet {
            libs: out,
            valuesets: HashMap::new(),
        };
        set.add_valuesets(valuesets);
        Ok(set)
    }

    /// Add value sets (FHIR ValueSet resources with expansions).
    pub fn add_valuesets(&mut self, resources: &[Json]) {
        for r in resources {
            if let Some((url, vs)) = valueset_from_resource(r) {
                self.valuesets.insert(url, Arc::new(vs));
            }
        }
    }

    fn find(&self, key: &str, version: Option<&str>) -> Option<usize> {
        let last = key.rsplit('/').next().unwrap_or(key);
        let matches = |l: &LibSrc| l.url.as_deref() == Some(key) || l.name == key || l.name == last;
        self.libs
            .iter()
            .position(|l| matches(l) && (version.is_none() || l.version.as_deref() == version))
            .or_else(|| self.libs.iter().position(matches))
    }

    /// The FHIR resource types (`dataType` of every `Retrieve`, namespace stripped:
    /// `{http://hl7.org/fhir}Encounter` -> `Encounter`) that the main library (by Library url or
    /// name) and every library it includes, transitively, retrieve. Read from the ELM itself, so
    /// it includes retrieves the engine does not support.
    pub fn retrieved_types(&self, main: &str) -> R<BTreeSet<String>> {
        let main_idx = self
            .find(main, None)
            .ok_or_else(|| CqlError::new(format!("library `{main}` not found")))?;
        let mut seen = HashSet::new();
        let mut todo = vec![main_idx];
        let mut out = BTreeSet::new();
        while let Some(i) = todo.pop() {
            if !seen.insert(i) {
                continue;
            }
            let elm = &self.libs[i].elm;
            collect_retrieves(elm, &mut out);
            let lib = elm.get("library").unwrap_or(&Json::Null);
            for inc in arr(lib, "includes") {
                let path = s(inc, "path").unwrap_or("");
                let found = self.find(path, s(inc, "version")).ok_or_else(|| {
                    CqlError::new(format!(
                        "library `{}` includes `{path}`, which is not available",
                        self.libs[i].name
                    ))
                })?;
                todo.push(found);
            }
        }
        Ok(out)
    }

    /// Compile the main library (by Library url or name) and everything it includes.
    pub fn prepare(&self, main: &str, params: Parameters) -> R<Prepared> {
        let main_idx = self
            .find(main, None)
            .ok_or_else(|| CqlError::new(format!("library `{main}` not found")))?;
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
        let libs: Vec<CLib> = c
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

    fn lib_content_hash(&self, p: &PreLib) -> u64 {
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

/// Adds the `dataType` (local name) of every `Retrieve` node under `j`.
fn collect_retrieves(j: &Json, out: &mut BTreeSet<String>) {
    match j {
        Json::Object(o) => {
            if o.get("type").and_then(|t| t.as_str()) == Some("Retrieve") {
                if let Some(dt) = o.get("dataType").and_then(|t| t.as_str()) {
                    out.insert(local_type(dt).1.to_string());
                }
            }
            o.values().for_each(|v| collect_retrieves(v, out));
        }
        Json::Array(a) => a.iter().for_each(|v| collect_retrieves(v, out)),
        _ => {}
    }
}

/// Identity of a compiled library for sharing memoized definitions across [`Prepared`]s:
/// (name, content hash including the included libraries, hash of parameter values).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct LibKey {
    name: String,
    content: u64,
    params: u64,
}

fn lib_key(
    li: usize,
    base: &[u64],
    includes: &[Vec<(String, usize)>],
    libs: &[CLib],
    keys: &mut Vec<Option<LibKey>>,
    depth: usize,
) -> R<LibKey> {
    use std::hash::{Hash, Hasher};
    if let Some(k) = &keys[li] {
        return Ok(k.clone());
    }
    if depth > 64 {
        return err("library includes are cyclic");
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

// ---------------------------------------------------------------------------
// Compiled form
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub(crate) enum TypeSpec {
    System(Arc<str>),
    Fhir(Arc<str>),
    List(Box<TypeSpec>),
    Interval(Box<TypeSpec>),
    Tuple,
    Choice(Vec<TypeSpec>),
    Any,
}

/// How a retrieve's templateId (QI-Core profile) restricts the resources of its type.
#[derive(Debug, Clone)]
pub(crate) enum ProfileFilter {
    None,
    /// a negation profile (e.g. MedicationNotRequested): doNotPerform = true, or tagged with the profile
    Negated(Arc<str>),
    /// ObservationNotDone / ...NotDone events: status cancelled, or tagged with the profile
    NotDone(Arc<str>),
    /// the positive request profile: excludes doNotPerform = true
    Positive,
}

fn profile_filter(template: Option<&str>, data_type: &str) -> ProfileFilter {
    let Some(t) = template else {
        return ProfileFilter::None;
    };
    let last = t.rsplit('/').next().unwrap_or(t).to_ascii_lowercase();
    if last.ends_with("notrequested") {
        ProfileFilter::Negated(Arc::from(t))
    } else if last.ends_with("notdone") {
        ProfileFilter::NotDone(Arc::from(t))
    } else if matches!(
        data_type,
        "MedicationRequest" | "ServiceRequest" | "DeviceRequest"
    ) {
        ProfileFilter::Positive
    } else {
        ProfileFilter::None
    }
}

fn profile_ok(r: &Value, f: &ProfileFilter, template: Option<&str>) -> bool {
    let Value::Resource(n) = r else { return true };
    let tagged = |t: &str| match n.j.get("meta").and_then(|m| m.get("profile")) {
        Some(fhir::J::Arr(a)) => a.iter().any(|p| p.str() == Some(t)),
        _ => false,
    };
    let dnp = matches!(n.j.get("doNotPerform"), Some(fhir::J::Bool(true)));
    // resources that declare their profiles must declare the retrieved one
    if let (Some(t), Some(fhir::J::Arr(a))) =
        (template, n.j.get("meta").and_then(|m| m.get("profile")))
    {
        if !a.is_empty() {
            return a.iter().any(|p| {
                p.str()
                    .is_some_and(|p| p == t || p.split('|').next() == Some(t))
            });
        }
    }
    match f {
        ProfileFilter::None => true,
        ProfileFilter::Negated(t) => dnp || tagged(t),
        ProfileFilter::NotDone(t) => {
            tagged(t) || n.j.get("status").and_then(|s| s.str()) == Some("cancelled")
        }
        ProfileFilter::Positive => !dnp,
    }
}

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
    pub(crate) sources: Vec<(Expr, usize, Arc<str>)>,
    pub(crate) lets: Vec<(Expr, usize)>,
    pub(crate) rels: Vec<Relationship>,
    pub(crate) where_: Option<Expr>,
    pub(crate) ret: Option<(Expr, bool)>,
    pub(crate) agg: Option<Aggregate>,
    pub(crate) sort: Option<(usize, Vec<(Option<Expr>, bool)>)>,
}

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
    Native {
        name: Arc<str>,
        arg: Box<Expr>,
    },
    Param {
        lib: usize,
        idx: usize,
    },
    ValueSetRef(Arc<ValueSetData>),
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
    Unsupported(Arc<str>),
}

#[derive(Debug)]
pub(crate) struct Def {
    pub(crate) name: String,
    pub(crate) expr: Option<Expr>,
    nslots: usize,
    operand_types: Vec<TypeSpec>,
    pub(crate) is_function: bool,
    patient_context: bool,
    /// index into its library's per-evaluation memo (expression definitions only)
    memo_slot: usize,
}

pub(crate) struct CLib {
    pub(crate) name: String,
    pub(crate) defs: Vec<Def>,
    def_index: HashMap<String, usize>,
    pub(crate) params: Vec<(String, Value)>,
    param_defaults: Vec<Option<Arc<Expr>>>,
    /// number of memoized definitions (expression definitions)
    memo_len: usize,
    key: LibKey,
    /// declared value sets (name, data) and codes (name, code), for describing retrieves
    pub(crate) valuesets: Vec<(String, Arc<ValueSetData>)>,
    pub(crate) codes: Vec<(String, Code)>,
}

/// A compiled library set, ready to evaluate. `Send + Sync`.
pub struct Prepared {
    pub(crate) libs: Vec<CLib>,
    pub(crate) main: usize,
}

struct PreLib {
    src: usize,
    includes: HashMap<String, usize>,
    def_index: HashMap<String, usize>,
    funcs: HashMap<String, Vec<usize>>,
    param_index: HashMap<String, usize>,
    vs_index: HashMap<String, Arc<ValueSetData>>,
    codesystems: HashMap<String, (String, Option<String>)>,
    codes: HashMap<String, Json>,
    concepts: HashMap<String, Json>,
    done: Option<CLib>,
}

struct Compiler<'a> {
    set: &'a LibrarySet,
    lib_map: HashMap<usize, usize>,
    libs: Vec<PreLib>,
}

fn arr<'a>(j: &'a Json, key: &str) -> &'a [Json] {
    match j.get(key) {
        Some(Json::Array(a)) => a,
        Some(Json::Object(o)) => match o.get("def") {
            Some(Json::Array(a)) => a,
            _ => &[],
        },
        _ => &[],
    }
}

fn s<'a>(j: &'a Json, key: &str) -> Option<&'a str> {
    j.get(key).and_then(|v| v.as_str())
}

fn local_type(name: &str) -> (bool, Arc<str>) {
    // "{urn:hl7-org:elm-types:r1}Integer" -> (system, "Integer"); "{http://hl7.org/fhir}Period" -> fhir
    if let Some(rest) = name.strip_prefix('{') {
        if let Some((ns, local)) = rest.split_once('}') {
            return (ns.contains("elm-types"), Arc::from(local));
        }
    }
    if let Some((ns, local)) = name.split_once('.') {
        return (ns == "System", Arc::from(local));
    }
    (true, Arc::from(name))
}

fn type_spec(j: &Json) -> TypeSpec {
    match s(j, "type") {
        Some("NamedTypeSpecifier") => named_type(s(j, "name").unwrap_or("")),
        Some("ListTypeSpecifier") => TypeSpec::List(Box::new(
            j.get("elementType").map(type_spec).unwrap_or(TypeSpec::Any),
        )),
        Some("IntervalTypeSpecifier") => TypeSpec::Interval(Box::new(
            j.get("pointType").map(type_spec).unwrap_or(TypeSpec::Any),
        )),
        Some("TupleTypeSpecifier") => TypeSpec::Tuple,
        Some("ChoiceTypeSpecifier") => {
            TypeSpec::Choice(arr(j, "choice").iter().map(type_spec).collect())
        }
        _ => {
            if j.get("choice").is_some() {
                TypeSpec::Choice(arr(j, "choice").iter().map(type_spec).collect())
            } else {
                TypeSpec::Any
            }
        }
    }
}

fn named_type(name: &str) -> TypeSpec {
    let (sys, local) = local_type(name);
    if sys {
        if &*local == "Any" {
            TypeSpec::Any
        } else {
            TypeSpec::System(local)
        }
    } else {
        TypeSpec::Fhir(local)
    }
}

struct Scope {
    names: Vec<(String, usize)>,
    next: usize,
    max: usize,
    lib: usize,
}

impl Scope {
    fn push(&mut self, name: &str) -> usize {
        let slot = self.next;
        self.next += 1;
        self.max = self.max.max(self.next);
        self.names.push((name.to_string(), slot));
        slot
    }
    fn lookup(&self, name: &str) -> Option<usize> {
        self.names
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, s)| *s)
    }
}

impl<'a> Compiler<'a> {
    fn load(&mut self, src: usize) -> R<usize> {
        if let Some(&i) = self.lib_map.get(&src) {
            return Ok(i);
        }
        let idx = self.libs.len();
        self.lib_map.insert(src, idx);
        let elm = self.set.libs[src].elm.clone();
        let lib = elm
            .get("library")
            .ok_or_else(|| CqlError::new("ELM JSON has no library"))?;
        self.libs.push(PreLib {
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
        for inc in arr(lib, "includes") {
            let alias = s(inc, "localIdentifier").unwrap_or("").to_string();
            let path = s(inc, "path").unwrap_or("");
            let version = s(inc, "version");
            let found = self
                .set
                .find(path, version)
                .ok_or_else(|| CqlError::new(format!("library `{libname}` includes `{path}` version {version:?}, which is not available")))?;
            let li = self.load(found)?;
            includes.insert(alias, li);
        }
        let mut def_index = HashMap::new();
        let mut funcs: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, d) in arr(lib.get("statements").unwrap_or(&Json::Null), "def")
            .iter()
            .enumerate()
        {
            let name = s(d, "name").unwrap_or("").to_string();
            if s(d, "type") == Some("FunctionDef") {
                funcs.entry(name).or_default().push(i);
            } else {
                def_index.insert(name, i);
            }
        }
        let mut param_index = HashMap::new();
        for (i, p) in arr(lib, "parameters").iter().enumerate() {
            param_index.insert(s(p, "name").unwrap_or("").to_string(), i);
        }
        let mut vs_index = HashMap::new();
        for v in arr(lib, "valueSets") {
            let name = s(v, "name").unwrap_or("").to_string();
            let id = s(v, "id").unwrap_or("");
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
        for c in arr(lib, "codeSystems") {
            codesystems.insert(
                s(c, "name").unwrap_or("").to_string(),
                (
                    s(c, "id").unwrap_or("").to_string(),
                    s(c, "version").map(|v| v.to_string()),
                ),
            );
        }
        let mut codes = HashMap::new();
        for c in arr(lib, "codes") {
            codes.insert(s(c, "name").unwrap_or("").to_string(), c.clone());
        }
        let mut concepts = HashMap::new();
        for c in arr(lib, "concepts") {
            concepts.insert(s(c, "name").unwrap_or("").to_string(), c.clone());
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

    fn compile_lib(&mut self, li: usize) -> R<()> {
        let src = self.libs[li].src;
        let elm = self.set.libs[src].elm.clone();
        let lib = elm
            .get("library")
            .ok_or_else(|| CqlError::new("ELM JSON has no library"))?;
        let mut defs = Vec::new();
        for d in arr(lib.get("statements").unwrap_or(&Json::Null), "def") {
            let is_function = s(d, "type") == Some("FunctionDef");
            let mut scope = Scope {
                names: Vec::new(),
                next: 0,
                max: 0,
                lib: li,
            };
            let mut operand_types = Vec::new();
            for o in arr(d, "operand") {
                scope.push(s(o, "name").unwrap_or(""));
                operand_types.push(
                    o.get("operandTypeSpecifier")
                        .map(type_spec)
                        .unwrap_or(TypeSpec::Any),
                );
            }
            let expr = match d.get("expression") {
                Some(e) => Some(self.expr(e, &mut scope)?),
                None => None, // external function
            };
            defs.push(Def {
                name: s(d, "name").unwrap_or("").to_string(),
                expr,
                nslots: scope.max,
                operand_types,
                is_function,
                patient_context: s(d, "context") != Some("Unfiltered"),
                memo_slot: usize::MAX,
            });
        }
        let mut params = Vec::new();
        let mut param_defaults = Vec::new();
        for p in arr(lib, "parameters") {
            params.push((s(p, "name").unwrap_or("").to_string(), Value::Null));
            let mut scope = Scope {
                names: Vec::new(),
                next: 0,
                max: 0,
                lib: li,
            };
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
        self.libs[li].done = Some(CLib {
            name,
            defs,
            def_index,
            params,
            param_defaults,
            memo_len: 0,
            key: LibKey {
                name: String::new(),
                content: 0,
                params: 0,
            },
            valuesets,
            codes,
        });
        Ok(())
    }

    fn lib_name(&self, li: usize) -> &str {
        &self.set.libs[self.libs[li].src].name
    }

    fn unsupported(&self, j: &Json, li: usize, what: &str) -> Expr {
        let t = s(j, "type").unwrap_or("?");
        let loc = s(j, "locator").unwrap_or("?");
        Expr::Unsupported(Arc::from(format!(
            "{what} ELM node `{t}` in library {} at {loc}",
            self.lib_name(li)
        )))
    }

    fn target_lib(&self, j: &Json, li: usize) -> R<usize> {
        match s(j, "libraryName") {
            None => Ok(li),
            Some(alias) => self.libs[li].includes.get(alias).copied().ok_or_else(|| {
                CqlError::new(format!(
                    "unknown library alias `{alias}` in library {} at {}",
                    self.lib_name(li),
                    s(j, "locator").unwrap_or("?")
                ))
            }),
        }
    }

    fn opt(&mut self, j: Option<&Json>, sc: &mut Scope) -> R<Expr> {
        match j {
            Some(j) if !j.is_null() => self.expr(j, sc),
            _ => Ok(Expr::Lit(Value::Null)),
        }
    }

    fn operands(&mut self, j: &Json, sc: &mut Scope) -> R<Vec<Expr>> {
        match j.get("operand") {
            Some(Json::Array(a)) => a.iter().map(|x| self.expr(x, sc)).collect(),
            Some(o @ Json::Object(_)) => Ok(vec![self.expr(o, sc)?]),
            _ => match j.get("source") {
                Some(src) => Ok(vec![self.expr(src, sc)?]),
                None => Ok(vec![]),
            },
        }
    }

    fn code_from_def(&self, c: &Json, li: usize) -> Code {
        let cs = c.get("codeSystem").and_then(|x| s(x, "name")).unwrap_or("");
        let lib = c
            .get("codeSystem")
            .and_then(|x| s(x, "libraryName"))
            .and_then(|a| self.libs[li].includes.get(a).copied())
            .unwrap_or(li);
        let (system, version) = self.libs[lib]
            .codesystems
            .get(cs)
            .cloned()
            .unwrap_or_default();
        Code {
            code: Arc::from(s(c, "id").or(s(c, "code")).unwrap_or("")),
            system: if system.is_empty() {
                None
            } else {
                Some(Arc::from(system.as_str()))
            },
            version: version.map(|v| Arc::from(v.as_str())),
            display: s(c, "display").map(Arc::from),
        }
    }

    fn expr(&mut self, j: &Json, sc: &mut Scope) -> R<Expr> {
        let li = sc.lib;
        let Some(t) = s(j, "type") else {
            return Ok(self.unsupported(j, li, "untyped"));
        };
        Ok(match t {
            "Null" => Expr::Lit(Value::Null),
            "Negate" if j.get("operand").and_then(|o| s(o, "type")) == Some("Literal") => {
                let o = &j["operand"];
                let raw = match o.get("value") {
                    Some(Json::String(v)) => format!("-{v}"),
                    Some(v) => format!("-{v}"),
                    None => String::new(),
                };
                match ops::literal(s(o, "valueType").unwrap_or(""), Some(&Json::String(raw))) {
                    Some(v) => Expr::Lit(v),
                    None => Expr::Op {
                        op: Op::Error,
                        args: vec![Expr::Lit(Value::str("invalid literal"))],
                        prec: None,
                    },
                }
            }
            "Length"
                if j.get("operand").is_some_and(|o| {
                    o.get("asTypeSpecifier").and_then(|t| s(t, "type")) == Some("ListTypeSpecifier")
                        || o.get("resultTypeSpecifier").and_then(|t| s(t, "type"))
                            == Some("ListTypeSpecifier")
                }) =>
            {
                let a = self.opt(j.get("operand"), sc)?;
                Expr::Coalesce(vec![
                    Expr::Op {
                        op: Op::Length,
                        args: vec![a],
                        prec: None,
                    },
                    Expr::Lit(Value::Integer(0)),
                ])
            }
            "Literal" => match ops::literal(s(j, "valueType").unwrap_or(""), j.get("value")) {
                Some(v) => v,
                None => {
                    return Ok(Expr::Op {
                        op: Op::Error,
                        args: vec![Expr::Lit(Value::str("invalid literal"))],
                        prec: None,
                    })
                }
            }
            .into_lit(),
            "Quantity" => {
                let v = j.get("value").map(|v| v.to_string()).unwrap_or_default();
                let d = v.trim_matches('"').parse::<rust_decimal::Decimal>().ok();
                match d {
                    Some(d) => Expr::Lit(Value::Quantity(crate::value::Quantity {
                        value: d,
                        unit: Arc::from(s(j, "unit").unwrap_or("1")),
                    })),
                    None => Expr::Lit(Value::Null),
                }
            }
            "Ratio" => {
                let n = self.opt(j.get("numerator"), sc)?;
                let d = self.opt(j.get("denominator"), sc)?;
                Expr::Op {
                    op: Op::RatioSel,
                    args: vec![n, d],
                    prec: None,
                }
            }
            "ExpressionRef" => {
                let lib = self.target_lib(j, li)?;
                let name = s(j, "name").unwrap_or("");
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
            "FunctionRef" => {
                let lib = self.target_lib(j, li)?;
                let name = s(j, "name").unwrap_or("");
                let args = self.operands(j, sc)?;
                let lib_name = self.lib_name(lib).to_string();
                if lib_name == "FHIRHelpers"
                    && args.len() == 1
                    && fhir::fhirhelpers_call(name, &Value::Null).is_some()
                {
                    let mut args = args;
                    return Ok(Expr::Native {
                        name: Arc::from(name),
                        arg: Box::new(args.remove(0)),
                    });
                }
                let elm = self.set.libs[self.libs[lib].src].elm.clone();
                let stmts = arr(
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
                            .filter(|&i| arr(&stmts[i], "operand").len() == args.len())
                            .collect()
                    })
                    .unwrap_or_default();
                if cands.is_empty() {
                    // system functions invoked as FunctionRef (rare)
                    return Ok(self.unsupported(
                        j,
                        li,
                        &format!("unresolved function `{name}` in"),
                    ));
                }
                Expr::Func { lib, cands, args }
            }
            "ParameterRef" => {
                let lib = self.target_lib(j, li)?;
                let name = s(j, "name").unwrap_or("");
                match self.libs[lib].param_index.get(name) {
                    Some(&idx) => Expr::Param { lib, idx },
                    None => return Ok(self.unsupported(j, li, "unknown parameter in")),
                }
            }
            "ValueSetRef" => {
                let lib = self.target_lib(j, li)?;
                match self.libs[lib].vs_index.get(s(j, "name").unwrap_or("")) {
                    Some(v) => Expr::ValueSetRef(v.clone()),
                    None => return Ok(self.unsupported(j, li, "unknown value set in")),
                }
            }
            "CodeRef" => {
                let lib = self.target_lib(j, li)?;
                match self.libs[lib]
                    .codes
                    .get(s(j, "name").unwrap_or(""))
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
                    .get(s(j, "name").unwrap_or(""))
                    .cloned()
                {
                    Some(c) => {
                        let mut codes = Vec::new();
                        for cr in arr(&c, "code") {
                            if let Some(cd) = self.libs[lib]
                                .codes
                                .get(s(cr, "name").unwrap_or(""))
                                .cloned()
                            {
                                codes.push(self.code_from_def(&cd, lib));
                            }
                        }
                        Expr::Lit(Value::Concept(Arc::new(Concept {
                            codes,
                            display: s(&c, "display").map(Arc::from),
                        })))
                    }
                    None => return Ok(self.unsupported(j, li, "unknown concept in")),
                }
            }
            "CodeSystemRef" => {
                let lib = self.target_lib(j, li)?;
                let (id, ver) = self.libs[lib]
                    .codesystems
                    .get(s(j, "name").unwrap_or(""))
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
                let sys = j.get("system").and_then(|x| s(x, "name")).unwrap_or("");
                let lib = j
                    .get("system")
                    .map(|x| self.target_lib(x, li))
                    .transpose()?
                    .unwrap_or(li);
                let (system, version) = self.libs[lib]
                    .codesystems
                    .get(sys)
                    .cloned()
                    .unwrap_or_default();
                Expr::Lit(Value::Code(Arc::new(Code {
                    code: Arc::from(s(j, "code").unwrap_or("")),
                    system: if system.is_empty() {
                        None
                    } else {
                        Some(Arc::from(system.as_str()))
                    },
                    version: version.map(|v| Arc::from(v.as_str())),
                    display: s(j, "display").map(Arc::from),
                })))
            }
            "Concept" => {
                let mut codes = Vec::new();
                for c in arr(j, "code") {
                    if let Expr::Lit(Value::Code(c)) = self.expr(c, sc)? {
                        codes.push((*c).clone());
                    }
                }
                Expr::Lit(Value::Concept(Arc::new(Concept {
                    codes,
                    display: s(j, "display").map(Arc::from),
                })))
            }
            "OperandRef" | "AliasRef" | "QueryLetRef" => {
                let name = s(j, "name").unwrap_or("");
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
                let name = s(j, "name").unwrap_or("");
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
            "Property" => {
                let path: Arc<str> = Arc::from(s(j, "path").unwrap_or(""));
                let src = if let Some(scope) = s(j, "scope") {
                    match sc.lookup(scope) {
                        Some(slot) => Expr::Slot(slot),
                        None => return Ok(self.unsupported(j, li, "unresolved property scope in")),
                    }
                } else {
                    self.opt(j.get("source"), sc)?
                };
                // dotted paths
                let mut e = src;
                for part in path.split('.') {
                    e = Expr::Property {
                        src: Box::new(e),
                        path: Arc::from(part),
                    };
                }
                e
            }
            "And" | "Or" => {
                let mut ops = self.operands(j, sc)?;
                if ops.len() != 2 {
                    return Ok(self.unsupported(j, li, "malformed"));
                }
                let b = ops.pop().unwrap_or(Expr::Lit(Value::Null));
                let a = ops.pop().unwrap_or(Expr::Lit(Value::Null));
                if t == "And" {
                    Expr::And(Box::new(a), Box::new(b))
                } else {
                    Expr::Or(Box::new(a), Box::new(b))
                }
            }
            "If" => Expr::If(
                Box::new(self.opt(j.get("condition"), sc)?),
                Box::new(self.opt(j.get("then"), sc)?),
                Box::new(self.opt(j.get("else"), sc)?),
            ),
            "Case" => {
                let comparand = match j.get("comparand") {
                    Some(c) => Some(Box::new(self.expr(c, sc)?)),
                    None => None,
                };
                let mut items = Vec::new();
                for it in arr(j, "caseItem") {
                    items.push((self.opt(it.get("when"), sc)?, self.opt(it.get("then"), sc)?));
                }
                Expr::Case {
                    comparand,
                    items,
                    els: Box::new(self.opt(j.get("else"), sc)?),
                }
            }
            "Coalesce" => Expr::Coalesce(self.operands(j, sc)?),
            "List" => Expr::List(
                arr(j, "element")
                    .iter()
                    .map(|e| self.expr(e, sc))
                    .collect::<R<_>>()?,
            ),
            "Tuple" => {
                let mut el = Vec::new();
                for e in arr(j, "element") {
                    el.push((
                        Arc::from(s(e, "name").unwrap_or("")),
                        self.opt(e.get("value"), sc)?,
                    ));
                }
                Expr::Tuple(el)
            }
            "Instance" => {
                let mut el = Vec::new();
                for e in arr(j, "element") {
                    el.push((
                        Arc::from(s(e, "name").unwrap_or("")),
                        self.opt(e.get("value"), sc)?,
                    ));
                }
                let (_, class) = local_type(s(j, "classType").unwrap_or(""));
                Expr::Instance { class, elems: el }
            }
            "Interval" => {
                let low = self.opt(j.get("low"), sc)?;
                let high = self.opt(j.get("high"), sc)?;
                let lc = match j.get("lowClosedExpression") {
                    Some(e) => self.expr(e, sc)?,
                    None => Expr::Lit(Value::Boolean(
                        j.get("lowClosed").and_then(|b| b.as_bool()).unwrap_or(true),
                    )),
                };
                let hc = match j.get("highClosedExpression") {
                    Some(e) => self.expr(e, sc)?,
                    None => Expr::Lit(Value::Boolean(
                        j.get("highClosed")
                            .and_then(|b| b.as_bool())
                            .unwrap_or(true),
                    )),
                };
                Expr::Interval {
                    low: Box::new(low),
                    high: Box::new(high),
                    lc: Box::new(lc),
                    hc: Box::new(hc),
                }
            }
            "As" => {
                let ty = match (j.get("asTypeSpecifier"), s(j, "asType")) {
                    (Some(ts), _) => type_spec(ts),
                    (None, Some(n)) => named_type(n),
                    _ => TypeSpec::Any,
                };
                let operand = self.opt(j.get("operand"), sc)?;
                Expr::As {
                    operand: Box::new(operand),
                    ty,
                    strict: j.get("strict").and_then(|b| b.as_bool()).unwrap_or(false),
                }
            }
            "Is" => {
                let ty = match (j.get("isTypeSpecifier"), s(j, "isType")) {
                    (Some(ts), _) => type_spec(ts),
                    (None, Some(n)) => named_type(n),
                    _ => TypeSpec::Any,
                };
                Expr::Is {
                    operand: Box::new(self.opt(j.get("operand"), sc)?),
                    ty,
                }
            }
            "Message" => Expr::Message {
                source: Box::new(self.opt(j.get("source"), sc)?),
                cond: Box::new(self.opt(j.get("condition"), sc)?),
                code: Box::new(self.opt(j.get("code"), sc)?),
                severity: Box::new(self.opt(j.get("severity"), sc)?),
                message: Box::new(self.opt(j.get("message"), sc)?),
            },
            "Retrieve" => {
                let (_, dt) = local_type(s(j, "dataType").unwrap_or(""));
                let codes = match j.get("codes") {
                    Some(c) => Some(Box::new(self.expr(c, sc)?)),
                    None => None,
                };
                if !arr(j, "dateFilter").is_empty()
                    || !arr(j, "codeFilter").is_empty()
                    || !arr(j, "otherFilter").is_empty()
                    || j.get("context").is_some()
                {
                    return Ok(self.unsupported(j, li, "filtered"));
                }
                let profile = profile_filter(s(j, "templateId"), &dt);
                Expr::Retrieve {
                    data_type: dt,
                    code_path: s(j, "codeProperty").map(Arc::from),
                    codes,
                    profile,
                    template: s(j, "templateId").map(Arc::from),
                }
            }
            "Query" => self.query(j, sc)?,
            "Date" | "DateTime" | "Time" => {
                let names: &[&str] = match t {
                    "Date" => &["year", "month", "day"],
                    "DateTime" => &[
                        "year",
                        "month",
                        "day",
                        "hour",
                        "minute",
                        "second",
                        "millisecond",
                        "timezoneOffset",
                    ],
                    _ => &["hour", "minute", "second", "millisecond"],
                };
                let mut args = Vec::new();
                for n in names {
                    args.push(match j.get(*n) {
                        Some(e) => self.expr(e, sc)?,
                        None => Expr::Lit(Value::Null),
                    });
                }
                let mut present = 0u8;
                for (i, n) in names.iter().enumerate() {
                    if j.get(*n).is_some() {
                        present |= 1 << i;
                    }
                }
                let op = match t {
                    "Date" => Op::DateSel,
                    "DateTime" => Op::DateTimeSel,
                    _ => Op::TimeSel,
                };
                Expr::Op {
                    op,
                    args,
                    prec: Some(present),
                }
            }
            _ => {
                let Some(op) = Op::from_name(t) else {
                    return Ok(self.unsupported(j, li, "unsupported"));
                };
                let mut args = match op {
                    Op::InValueSet | Op::AnyInValueSet => {
                        let code = self.opt(j.get("code").or(j.get("codes")), sc)?;
                        let vs = match (j.get("valueset"), j.get("valuesetExpression")) {
                            (Some(v), _) => {
                                let lib = self.target_lib(v, li)?;
                                match self.libs[lib].vs_index.get(s(v, "name").unwrap_or("")) {
                                    Some(d) => Expr::ValueSetRef(d.clone()),
                                    None => {
                                        return Ok(self.unsupported(j, li, "unknown value set in"))
                                    }
                                }
                            }
                            (None, Some(e)) => self.expr(e, sc)?,
                            _ => return Ok(self.unsupported(j, li, "malformed")),
                        };
                        vec![code, vs]
                    }
                    Op::InCodeSystem | Op::AnyInCodeSystem => {
                        let code = self.opt(j.get("code").or(j.get("codes")), sc)?;
                        let cs = match (j.get("codesystem"), j.get("codesystemExpression")) {
                            (Some(Json::Object(o)), _) => {
                                let mut o = o.clone();
                                o.insert("type".into(), Json::String("CodeSystemRef".into()));
                                self.expr(&Json::Object(o), sc)?
                            }
                            (None, Some(e)) => self.expr(e, sc)?,
                            _ => return Ok(self.unsupported(j, li, "malformed")),
                        };
                        vec![code, cs]
                    }
                    Op::IndexOf => vec![
                        self.opt(j.get("source"), sc)?,
                        self.opt(j.get("element"), sc)?,
                    ],
                    Op::PositionOf | Op::LastPositionOf => vec![
                        self.opt(j.get("pattern"), sc)?,
                        self.opt(j.get("string"), sc)?,
                    ],
                    Op::Substring => vec![
                        self.opt(j.get("stringToSub"), sc)?,
                        self.opt(j.get("startIndex"), sc)?,
                        match j.get("length") {
                            Some(l) => self.expr(l, sc)?,
                            None => Expr::Lit(Value::Null),
                        },
                    ],
                    Op::Combine => vec![
                        self.opt(j.get("source"), sc)?,
                        self.opt(j.get("separator"), sc)?,
                    ],
                    Op::Split => vec![
                        self.opt(j.get("stringToSplit"), sc)?,
                        self.opt(j.get("separator"), sc)?,
                    ],
                    Op::SplitOnMatches => vec![
                        self.opt(j.get("stringToSplit"), sc)?,
                        self.opt(j.get("separatorPattern"), sc)?,
                    ],
                    Op::Round => vec![
                        self.opt(j.get("operand"), sc)?,
                        match j.get("precision") {
                            Some(p) => self.expr(p, sc)?,
                            None => Expr::Lit(Value::Null),
                        },
                    ],
                    Op::Slice => vec![
                        self.opt(j.get("source"), sc)?,
                        self.opt(j.get("startIndex"), sc)?,
                        self.opt(j.get("endIndex"), sc)?,
                    ],
                    Op::MinValue | Op::MaxValue => {
                        let (_, ty) = local_type(s(j, "valueType").unwrap_or(""));
                        vec![Expr::Lit(Value::String(ty))]
                    }
                    Op::ListSort => {
                        let src = self.opt(j.get("source"), sc)?;
                        let desc = arr(j, "by")
                            .first()
                            .and_then(|b| s(b, "direction"))
                            .is_some_and(|d| d.starts_with("desc"));
                        vec![src, Expr::Lit(Value::Boolean(desc))]
                    }
                    _ => self.operands(j, sc)?,
                };
                if op.is_aggregate() {
                    if let Some(p) = s(j, "path") {
                        let src = args.pop().unwrap_or(Expr::Lit(Value::Null));
                        args.push(Expr::Op {
                            op: Op::PluckPath,
                            args: vec![src, Expr::Lit(Value::str(p))],
                            prec: None,
                        });
                    }
                }
                let prec = s(j, "precision").and_then(parse_precision);
                Expr::Op { op, args, prec }
            }
        })
    }

    fn query(&mut self, j: &Json, sc: &mut Scope) -> R<Expr> {
        let mark = sc.names.len();
        let next = sc.next;
        let mut sources = Vec::new();
        for src in arr(j, "source") {
            let e = self.opt(src.get("expression"), sc)?;
            let alias = s(src, "alias").unwrap_or("");
            let slot = sc.push(alias);
            sources.push((e, slot, Arc::from(alias)));
        }
        let mut lets = Vec::new();
        for l in arr(j, "let") {
            let e = self.opt(l.get("expression"), sc)?;
            let slot = sc.push(s(l, "identifier").unwrap_or(""));
            lets.push((e, slot));
        }
        let mut rels = Vec::new();
        for r in arr(j, "relationship") {
            let e = self.opt(r.get("expression"), sc)?;
            let m = sc.names.len();
            let slot = sc.push(s(r, "alias").unwrap_or(""));
            let cond = self.opt(r.get("suchThat"), sc)?;
            sc.names.truncate(m);
            let with = match s(r, "type") {
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
                self.opt(r.get("expression"), sc)?,
                r.get("distinct").and_then(|d| d.as_bool()).unwrap_or(true),
            )),
            None => None,
        };
        let agg = match j.get("aggregate") {
            Some(a) => {
                let slot = sc.push(s(a, "identifier").unwrap_or(""));
                let start = match a.get("starting") {
                    Some(st) => Some(self.expr(st, sc)?),
                    None => None,
                };
                let e = self.opt(a.get("expression"), sc)?;
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
                for b in arr(so, "by") {
                    let desc = s(b, "direction").is_some_and(|d| d.starts_with("desc"));
                    let e = match b.get("expression") {
                        Some(e) => Some(self.expr(e, sc)?),
                        None => s(b, "path").map(|p| Expr::Property {
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

trait IntoLit {
    fn into_lit(self) -> Expr;
}
impl IntoLit for Value {
    fn into_lit(self) -> Expr {
        Expr::Lit(self)
    }
}

// ---------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------

pub(crate) struct Ctx<'a> {
    pub(crate) p: &'a Prepared,
    patient: Option<&'a PatientData>,
    /// per library (same index as `p.libs`); shared with other `Prepared`s through a [`PatientMemo`]
    memo: Vec<Memo>,
    stack: RefCell<Vec<Value>>,
    base: std::cell::Cell<usize>,
    depth: std::cell::Cell<usize>,
    /// the evaluation request's context (see [`EvalContext`] for what one request is)
    cx: EvalContext,
}

fn err<T>(msg: impl Into<String>) -> R<T> {
    Err(CqlError::new(msg))
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

    fn with_memo(
        p: &'a Prepared,
        patient: Option<&'a PatientData>,
        memo: Vec<Memo>,
        cx: EvalContext,
    ) -> Ctx<'a> {
        Ctx {
            p,
            patient,
            memo,
            cx,
            stack: RefCell::new(Vec::with_capacity(64)),
            base: std::cell::Cell::new(0),
            depth: std::cell::Cell::new(0),
        }
    }

    fn slot(&self, i: usize) -> Value {
        self.stack
            .borrow()
            .get(self.base.get() + i)
            .cloned()
            .unwrap_or(Value::Null)
    }
    fn set_slot(&self, i: usize, v: Value) {
        let mut st = self.stack.borrow_mut();
        let idx = self.base.get() + i;
        if st.len() <= idx {
            st.resize(idx + 1, Value::Null);
        }
        st[idx] = v;
    }

    pub(crate) fn call_frame(
        &self,
        nslots: usize,
        args: Vec<Value>,
        f: impl FnOnce() -> R<Value>,
    ) -> R<Value> {
        let d = self.depth.get();
        if d > 100 {
            return err("evaluation recursion too deep");
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

    pub(crate) fn eval_def(&self, lib: usize, def: usize) -> R<Value> {
        let d = &self.p.libs[lib].defs[def];
        if let Some(Some(v)) = self.memo[lib].borrow().get(d.memo_slot) {
            return Ok(v.clone());
        }
        let Some(e) = &d.expr else {
            return err(format!(
                "expression `{}` in library {} has no body",
                d.name, self.p.libs[lib].name
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
                        err.msg, d.name, self.p.libs[lib].name
                    );
                }
                err
            })?;
        if let Some(m) = self.memo[lib].borrow_mut().get_mut(d.memo_slot) {
            *m = Some(v.clone());
        }
        Ok(v)
    }

    pub(crate) fn eval(&self, e: &Expr, lib: usize) -> R<Value> {
        Ok(match e {
            Expr::Lit(v) => v.clone(),
            Expr::Def { lib: l, def } => self.eval_def(*l, *def)?,
            Expr::Param { lib: l, idx } => self.p.libs[*l].params[*idx].1.clone(),
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
                    Some(Err(m)) => return err(format!("FHIRHelpers.{name}: {m}")),
                    None => {
                        return err(format!(
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
                let clib = &self.p.libs[*l];
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
                            return err(format!(
                                "no overload of function `{}` in library {} matches the argument types ({})",
                                clib.defs[cands[0]].name,
                                clib.name,
                                vals.iter().map(|v| v.type_name()).collect::<Vec<_>>().join(", ")
                            ))
                        }
                    }
                };
                let d = &clib.defs[pick];
                debug_assert!(d.is_function);
                let Some(body) = &d.expr else {
                    return err(format!(
                        "external function `{}` in library {} is not available",
                        d.name, clib.name
                    ));
                };
                self.call_frame(d.nslots, vals, || self.eval(body, *l))?
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
                            if crate::value::equal(&cv, &wv) == Some(true) {
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
            } => {
                let v = self.eval(operand, lib)?;
                if v.is_null() {
                    return Ok(Value::Null);
                }
                match matches_type(&v, ty) {
                    Some(true) | None => v,
                    Some(false) => {
                        if *strict {
                            return err(format!("strict cast of a {} value failed", v.type_name()));
                        }
                        Value::Null
                    }
                }
            }
            Expr::Is { operand, ty } => {
                let v = self.eval(operand, lib)?;
                if v.is_null() {
                    return Ok(Value::Boolean(false));
                }
                Value::Boolean(matches_type(&v, ty) == Some(true))
            }
            Expr::Message {
                source,
                cond,
                code,
                severity,
                message,
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
                            let _ = message;
                            return err(format!("Message error {cs} (severity Error)"));
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
            } => {
                let v = self.retrieve(data_type, code_path.as_deref(), codes.as_deref(), lib)?;
                match (profile, v) {
                    (ProfileFilter::None, v) if template.is_none() => v,
                    (f, Value::List(l)) => Value::List(Arc::new(
                        l.iter()
                            .filter(|r| profile_ok(r, f, template.as_deref()))
                            .cloned()
                            .collect(),
                    )),
                    (_, v) => v,
                }
            }
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
            Expr::Unsupported(m) => return err(m.to_string()),
        })
    }

    fn retrieve(
        &self,
        data_type: &str,
        code_path: Option<&str>,
        codes: Option<&Expr>,
        lib: usize,
    ) -> R<Value> {
        let Some(p) = self.patient else {
            return Ok(Value::list(vec![]));
        };
        let Some(all) = p.by_type.get(data_type) else {
            return Ok(Value::list(vec![]));
        };
        let Some(codes) = codes else {
            return Ok(Value::List(all.clone()));
        };
        let filter = self.eval(codes, lib)?;
        let path = code_path.unwrap_or("code");
        let mut out = Vec::new();
        for r in all.iter() {
            let v = property(r, path);
            if code_matches(&v, &filter) {
                out.push(r.clone());
            }
        }
        Ok(Value::List(Arc::new(out)))
    }

    fn query(&self, q: &Query, lib: usize) -> R<Value> {
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
                if self.row(q, lib)? {
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
                ops::distinct(&rows)
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
            rows = ops::distinct(&rows);
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
                    let o = crate::value::sort_cmp(&a.0[i], &b.0[i]);
                    let o = if *desc { o.reverse() } else { o };
                    if o != std::cmp::Ordering::Equal {
                        return o;
                    }
                }
                std::cmp::Ordering::Equal
            });
            rows = keyed.into_iter().map(|(_, r)| r).collect();
        }
        if singleton {
            return Ok(rows.into_iter().next().unwrap_or(Value::Null));
        }
        Ok(Value::List(Arc::new(rows)))
    }

    fn row(&self, q: &Query, lib: usize) -> R<bool> {
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

/// Property access on any value.
pub(crate) fn property(v: &Value, path: &str) -> Value {
    match v {
        Value::Null => Value::Null,
        Value::Resource(n) => fhir::property(n, path),
        Value::List(l) => {
            // implicit flatten over lists of elements
            let mut out = Vec::new();
            for x in l.iter() {
                match property(x, path) {
                    Value::Null => {}
                    Value::List(inner) => out.extend(inner.iter().cloned()),
                    other => out.push(other),
                }
            }
            Value::List(Arc::new(out))
        }
        Value::Tuple(t) => t
            .iter()
            .find(|(k, _)| &**k == path)
            .map(|(_, v)| v.clone())
            .unwrap_or(Value::Null),
        Value::Interval(i) => match path {
            "low" => i.low.clone(),
            "high" => i.high.clone(),
            "lowClosed" => Value::Boolean(i.low_closed),
            "highClosed" => Value::Boolean(i.high_closed),
            _ => Value::Null,
        },
        Value::Quantity(q) => match path {
            "value" => Value::Decimal(q.value),
            "unit" => Value::String(q.unit.clone()),
            _ => Value::Null,
        },
        Value::Ratio(r) => match path {
            "numerator" => Value::Quantity(r.0.clone()),
            "denominator" => Value::Quantity(r.1.clone()),
            _ => Value::Null,
        },
        Value::Code(c) => match path {
            "code" => Value::String(c.code.clone()),
            "system" => c.system.clone().map(Value::String).unwrap_or(Value::Null),
            "version" => c.version.clone().map(Value::String).unwrap_or(Value::Null),
            "display" => c.display.clone().map(Value::String).unwrap_or(Value::Null),
            _ => Value::Null,
        },
        Value::Concept(c) => match path {
            "codes" => Value::list(
                c.codes
                    .iter()
                    .map(|x| Value::Code(Arc::new(x.clone())))
                    .collect(),
            ),
            "display" => c.display.clone().map(Value::String).unwrap_or(Value::Null),
            _ => Value::Null,
        },
        _ => Value::Null,
    }
}

/// Does a code-bearing value match a retrieve filter (value set, code, list of codes, concept)?
fn code_matches(v: &Value, filter: &Value) -> bool {
    // fast path: FHIR CodeableConcept / Coding against a value set, straight from the JSON
    if let (Value::Resource(n), Value::ValueSet(vs)) = (v, filter) {
        let coding_in = |c: &fhir::J| match (
            c.get("code").and_then(|x| x.str()),
            c.get("system").and_then(|x| x.str()),
        ) {
            (Some(code), system) => vs.contains(system, code),
            _ => false,
        };
        match (&n.j, n.j.get("coding")) {
            (fhir::J::Obj(_), Some(fhir::J::Arr(codings))) => return codings.iter().any(coding_in),
            (fhir::J::Obj(_), _) => return coding_in(&n.j),
            (fhir::J::Str(code), _) => return vs.contains(None, code),
            _ => return false,
        }
    }
    match v {
        Value::Null => false,
        Value::List(l) => l.iter().any(|x| code_matches(x, filter)),
        Value::Resource(n) => match &n.j {
            fhir::J::Obj(_) => {
                if n.j.get("coding").is_some() {
                    code_matches(&fhir::to_concept(&n.j), filter)
                } else if n.j.get("code").is_some() {
                    code_matches(&fhir::to_code(&n.j), filter)
                } else {
                    false
                }
            }
            fhir::J::Str(_) => code_matches(&fhir::to_code(&n.j), filter),
            _ => false,
        },
        Value::Concept(c) => c
            .codes
            .iter()
            .any(|x| code_matches(&Value::Code(Arc::new(x.clone())), filter)),
        Value::Code(c) => match filter {
            Value::ValueSet(vs) => vs.contains(c.system.as_deref(), &c.code),
            Value::List(l) => l.iter().any(|f| code_matches(v, f)),
            Value::Code(_) | Value::Concept(_) => equivalent(v, filter),
            _ => false,
        },
        Value::String(s) => match filter {
            Value::ValueSet(vs) => vs.contains(None, s),
            _ => false,
        },
        _ => false,
    }
}

pub(crate) fn in_valueset(v: &Value, vs: &Arc<ValueSetData>) -> Option<bool> {
    match v {
        Value::Null => None,
        Value::Code(c) => Some(vs.contains(c.system.as_deref(), &c.code)),
        Value::Concept(c) => Some(
            c.codes
                .iter()
                .any(|x| vs.contains(x.system.as_deref(), &x.code)),
        ),
        Value::String(s) => Some(vs.contains(None, s)),
        Value::List(l) => Some(l.iter().any(|x| in_valueset(x, vs) == Some(true))),
        Value::Resource(_) => Some(code_matches(v, &Value::ValueSet(vs.clone()))),
        _ => Some(false),
    }
}

/// Runtime type test. `None` = cannot tell.
pub(crate) fn matches_type(v: &Value, t: &TypeSpec) -> Option<bool> {
    match t {
        TypeSpec::Any => Some(true),
        TypeSpec::Choice(c) => {
            let mut unknown = false;
            for x in c {
                match matches_type(v, x) {
                    Some(true) => return Some(true),
                    None => unknown = true,
                    _ => {}
                }
            }
            if unknown {
                None
            } else {
                Some(false)
            }
        }
        TypeSpec::List(el) => match v {
            Value::List(l) => match l.iter().find(|x| !x.is_null()) {
                Some(first) => Some(matches_type(first, el) != Some(false)),
                None => Some(true),
            },
            _ => Some(false),
        },
        TypeSpec::Interval(p) => match v {
            Value::Interval(i) => {
                let s = if i.low.is_null() { &i.high } else { &i.low };
                if s.is_null() {
                    Some(true)
                } else {
                    matches_type(s, p)
                }
            }
            _ => Some(false),
        },
        TypeSpec::Tuple => Some(matches!(v, Value::Tuple(_))),
        TypeSpec::System(n) => Some(match (&**n, v) {
            ("Boolean", Value::Boolean(_)) => true,
            ("Integer", Value::Integer(_)) => true,
            ("Long", Value::Long(_)) => true,
            ("Decimal", Value::Decimal(_)) => true,
            ("String", Value::String(_)) => true,
            ("Date", Value::Date(_)) => true,
            ("DateTime", Value::DateTime(_)) => true,
            ("Time", Value::Time(_)) => true,
            ("Quantity", Value::Quantity(_)) => true,
            ("Ratio", Value::Ratio(_)) => true,
            ("Code", Value::Code(_)) => true,
            ("Concept", Value::Concept(_)) => true,
            ("Vocabulary" | "ValueSet", Value::ValueSet(_)) => true,
            (_, Value::Resource(_)) => return None,
            _ => false,
        }),
        TypeSpec::Fhir(n) => match v {
            Value::Resource(node) => fhir::is_type(node, n),
            // System values where a FHIR type is expected (e.g. after conversion)
            _ => Some(false),
        },
    }
}

// ---------------------------------------------------------------------------
// Public evaluation API
// ---------------------------------------------------------------------------

impl Prepared {
    /// Evaluate expression definitions of the main library for one patient (memoized per call).
    /// One evaluation request: `Now()` is the system clock when the call starts.
    pub fn evaluate(&self, patient: &PatientData, expressions: &[&str]) -> R<Vec<Value>> {
        self.evaluate_in(patient, expressions, EvalContext::from_clock())
    }

    /// [`Prepared::evaluate`] in the given context (e.g. a fixed `Now()`).
    pub fn evaluate_in(
        &self,
        patient: &PatientData,
        expressions: &[&str],
        cx: EvalContext,
    ) -> R<Vec<Value>> {
        let ctx = Ctx::new(self, Some(patient), cx);
        let mut out = Vec::with_capacity(expressions.len());
        for name in expressions {
            let lib = &self.libs[self.main];
            let Some(&def) = lib.def_index.get(*name) else {
                return err(format!(
                    "expression `{name}` not found in library {}",
                    lib.name
                ));
            };
            out.push(ctx.eval_def(self.main, def)?);
        }
        Ok(out)
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
    pub fn evaluate_unfiltered(&self, name: &str) -> R<Value> {
        self.evaluate_unfiltered_in(name, EvalContext::from_clock())
    }

    /// [`Prepared::evaluate_unfiltered`] in the given context (e.g. a fixed `Now()`).
    pub fn evaluate_unfiltered_in(&self, name: &str, cx: EvalContext) -> R<Value> {
        let ctx = Ctx::new(self, None, cx);
        let lib = &self.libs[self.main];
        let Some(&def) = lib.def_index.get(name) else {
            return err(format!(
                "expression `{name}` not found in library {}",
                lib.name
            ));
        };
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
}

fn collect_unsupported(e: &Expr, out: &mut Vec<String>) {
    if let Expr::Unsupported(m) = e {
        out.push(m.to_string());
    }
    crate::analysis::children(e, &mut |c| collect_unsupported(c, out));
}

type Memo = Rc<RefCell<Vec<Option<Value>>>>;

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
    pub fn evaluate(&self, expressions: &[&str]) -> R<Vec<Value>> {
        let p = self.ctx.p;
        let lib = &p.libs[p.main];
        let mut out = Vec::with_capacity(expressions.len());
        for name in expressions {
            let Some(&def) = lib.def_index.get(*name) else {
                return err(format!(
                    "expression `{name}` not found in library {}",
                    lib.name
                ));
            };
            out.push(self.ctx.eval_def(p.main, def)?);
        }
        Ok(out)
    }
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn f<T: Send + Sync>() {}
    f::<Prepared>();
    f::<LibrarySet>();
    let _: HashSet<u8> = HashSet::new();
}
