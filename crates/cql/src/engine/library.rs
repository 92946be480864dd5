//! Library loading: ELM JSON libraries and FHIR ValueSets, from measure bundles or directly.

use super::compile::{json_array, json_str};
use super::retrieve::collect_retrieves;
use crate::value::{Code, ValueSetData};
use crate::{fail, CqlError, CqlResult};
use base64::Engine as _;
use serde_json::Value as Json;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

/// One ELM library as loaded, before compilation.
pub(super) struct LibrarySource {
    pub(super) name: String,
    pub(super) version: Option<String>,
    pub(super) url: Option<String>,
    pub(super) elm: Arc<Json>,
}

/// All ELM libraries and value sets available for preparation.
pub struct LibrarySet {
    pub(super) libs: Vec<LibrarySource>,
    pub(super) valuesets: HashMap<String, Arc<ValueSetData>>,
}

/// The (name, version) of an ELM library.
fn lib_identity(elm: &Json) -> CqlResult<(String, Option<String>)> {
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

/// Adds the codes of a ValueSet expansion's `contains` (nested ones too).
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

/// A ValueSet resource's url and codes: its expansion, else the concepts its compose includes.
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
    pub fn from_measure_bundle(bundle: &Json) -> CqlResult<LibrarySet> {
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
                        libs.push(LibrarySource {
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
    pub fn from_elm_json(libs: &[Json]) -> CqlResult<LibrarySet> {
        let mut out = Vec::new();
        for elm in libs {
            let (name, version) = lib_identity(elm)?;
            out.push(LibrarySource {
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
    ) -> CqlResult<LibrarySet> {
        let mut out = Vec::with_capacity(libs.len());
        for (url, elm) in libs {
            let (name, version) = lib_identity(elm)?;
            out.push(LibrarySource {
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

    /// The library with Library url or name `key` (or the last segment of a url), preferably of
    /// `version`.
    pub(super) fn find(&self, key: &str, version: Option<&str>) -> Option<usize> {
        let last = key.rsplit('/').next().unwrap_or(key);
        let matches =
            |l: &LibrarySource| l.url.as_deref() == Some(key) || l.name == key || l.name == last;
        self.libs
            .iter()
            .position(|l| matches(l) && (version.is_none() || l.version.as_deref() == version))
            .or_else(|| self.libs.iter().position(matches))
    }

    /// The library `main` (by Library url or name); an error when not available.
    pub(super) fn find_main(&self, main: &str) -> CqlResult<usize> {
        match self.find(main, None) {
            Some(i) => Ok(i),
            None => fail(format!("library `{main}` not found")),
        }
    }

    /// The FHIR resource types (`dataType` of every `Retrieve`, namespace stripped:
    /// `{http://hl7.org/fhir}Encounter` -> `Encounter`) that the main library (by Library url or
    /// name) and every library it includes, transitively, retrieve. Read from the ELM itself, so
    /// it includes retrieves the engine does not support.
    pub fn retrieved_types(&self, main: &str) -> CqlResult<BTreeSet<String>> {
        let main_idx = self.find_main(main)?;
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
            for inc in json_array(lib, "includes") {
                let path = json_str(inc, "path").unwrap_or("");
                let found = self.find(path, json_str(inc, "version")).ok_or_else(|| {
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
}
