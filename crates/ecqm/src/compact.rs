//! A compact, self-contained form of a set of measure packages, for shipping inside an app.
//!
//! A published measure bundle carries each library three times (CQL, ELM XML, ELM JSON, the
//! latter two base64) and repeats the shared libraries (FHIRHelpers, QICoreCommon, ...) in every
//! measure: twelve CMS packages are 100 MB. The engine needs only the ELM JSON (without its
//! narrative annotations), each ValueSet's expansion codes and the Measure itself, each library
//! and value set once. Gzipped that is a few hundred kilobytes.
//!
//! Format (`phm-measure-packages/1`, gzip of one JSON object):
//! `{"format", "libraries": [{"url","version","name","elm"}], "valueSets": [{"url","version",
//! "name","title","codes": {system: [[code, display], ...]}}], "measures": [{"measure": <Measure>,
//! "libraries": [index...], "valueSets": [index...]}]}`.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::sync::Arc;

use base64::Engine as _;
use serde_json::{json, Map, Value as Json};

use crate::engine::MeasurePackage;
use crate::error::{EcqmError, Result};
use crate::package::{bundle_resources, parse_measure_bundle};
use crate::populations::check_supported;

/// The format tag of the current compact form.
pub const FORMAT: &str = "phm-measure-packages/1";

fn package_err(msg: impl Into<String>) -> EcqmError {
    EcqmError::Package(msg.into())
}

fn str_of<'a>(j: &'a Json, key: &str) -> Option<&'a str> {
    j.get(key).and_then(Json::as_str)
}

/// Removes the ELM's narrative (`annotation`: the CQL source and comments), which the engine
/// never reads and which is a third of the ELM's size.
fn strip_annotations(j: &mut Json) {
    match j {
        Json::Object(m) => {
            m.remove("annotation");
            m.values_mut().for_each(strip_annotations);
        }
        Json::Array(a) => a.iter_mut().for_each(strip_annotations),
        _ => {}
    }
}

fn elm_of_library(lib: &Json) -> Result<Option<Json>> {
    let contents = lib.get("content").and_then(Json::as_array);
    for c in contents.into_iter().flatten() {
        if str_of(c, "contentType") != Some("application/elm+json") {
            continue;
        }
        let data = str_of(c, "data").ok_or_else(|| package_err("Library content has no data"))?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map_err(|e| package_err(format!("Library content is not valid base64: {e}")))?;
        let mut elm: Json = serde_json::from_slice(&bytes)
            .map_err(|e| package_err(format!("Library ELM is not valid JSON: {e}")))?;
        strip_annotations(&mut elm);
        return Ok(Some(elm));
    }
    Ok(None)
}

/// `system → [[code, display]]` of a ValueSet's expansion (else its enumerated concepts).
fn expansion_codes(vs: &Json) -> BTreeMap<String, Vec<Json>> {
    fn entry(c: &Json) -> Option<Json> {
        Some(json!([str_of(c, "code")?, str_of(c, "display")]))
    }
    fn walk(j: &Json, out: &mut BTreeMap<String, Vec<Json>>) {
        for c in j
            .get("contains")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(e) = entry(c) {
                out.entry(str_of(c, "system").unwrap_or("").to_string())
                    .or_default()
                    .push(e);
            }
            walk(c, out);
        }
    }
    let mut out = BTreeMap::new();
    if let Some(exp) = vs.get("expansion") {
        walk(exp, &mut out);
    }
    if out.is_empty() {
        // No expansion: the enumerated concepts of compose.include, as the engine reads them.
        let includes = vs
            .get("compose")
            .and_then(|c| c.get("include"))
            .and_then(Json::as_array);
        for inc in includes.into_iter().flatten() {
            let system = str_of(inc, "system").unwrap_or("").to_string();
            for c in inc
                .get("concept")
                .and_then(Json::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(e) = entry(c) {
                    out.entry(system.clone()).or_default().push(e);
                }
            }
        }
    }
    out
}

/// Builds the compact form of measure bundles (each a FHIR Bundle as published). Libraries and
/// value sets are keyed by url and version and kept once. Each bundle is checked as the engine
/// would load it, so a package that does not load is refused here rather than in the app.
pub fn compact(bundles: &[Json]) -> Result<Json> {
    let mut libraries: Vec<Json> = Vec::new();
    let mut library_index: HashMap<(String, String), usize> = HashMap::new();
    let mut value_sets: Vec<Json> = Vec::new();
    let mut value_set_index: HashMap<(String, String), usize> = HashMap::new();
    let mut measures = Vec::new();
    for bundle in bundles {
        MeasurePackage::from_json(bundle)?;
        let mut measure = None;
        let mut libs = Vec::new();
        let mut sets = Vec::new();
        for r in bundle_resources(bundle)? {
            let key = || {
                (
                    str_of(r, "url").unwrap_or("").to_string(),
                    str_of(r, "version").unwrap_or("").to_string(),
                )
            };
            match str_of(r, "resourceType") {
                Some("Measure") => {
                    let mut m = r.clone();
                    if let Some(o) = m.as_object_mut() {
                        o.remove("text");
                    }
                    measure = Some(m);
                }
                Some("Library") => {
                    let k = key();
                    let i = match library_index.get(&k) {
                        Some(&i) => i,
                        None => {
                            let Some(elm) = elm_of_library(r)? else {
                                continue;
                            };
                            libraries.push(json!({
                                "url": k.0, "version": k.1,
                                "name": str_of(r, "name"), "elm": elm,
                            }));
                            library_index.insert(k, libraries.len() - 1);
                            libraries.len() - 1
                        }
                    };
                    libs.push(i);
                }
                Some("ValueSet") => {
                    let k = key();
                    let i = *value_set_index.entry(k.clone()).or_insert_with(|| {
                        value_sets.push(json!({
                            "url": k.0, "version": k.1,
                            "name": str_of(r, "name"), "title": str_of(r, "title"),
                            "codes": expansion_codes(r),
                        }));
                        value_sets.len() - 1
                    });
                    sets.push(i);
                }
                _ => {}
            }
        }
        let measure = measure.ok_or_else(|| package_err("the bundle holds no Measure"))?;
        measures.push(json!({"measure": measure, "libraries": libs, "valueSets": sets}));
    }
    Ok(json!({
        "format": FORMAT,
        "libraries": libraries,
        "valueSets": value_sets,
        "measures": measures,
    }))
}

/// Gzips the compact form.
pub fn to_gzip(compact: &Json) -> Result<Vec<u8>> {
    let bytes =
        serde_json::to_vec(compact).map_err(|e| package_err(format!("compact packages: {e}")))?;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(&bytes)
        .and_then(|_| enc.finish())
        .map_err(|e| package_err(format!("compact packages: gzip failed ({e})")))
}

fn index_list(m: &Json, key: &str, len: usize, what: &str) -> Result<Vec<usize>> {
    m.get(key)
        .and_then(Json::as_array)
        .ok_or_else(|| package_err(format!("compact packages: a measure has no {key}")))?
        .iter()
        .map(|i| {
            i.as_u64()
                .map(|i| i as usize)
                .filter(|&i| i < len)
                .ok_or_else(|| package_err(format!("compact packages: bad {what} index")))
        })
        .collect()
}

/// Loads every measure of a gzipped compact form (see [`to_gzip`]).
pub fn load_gzip(bytes: &[u8]) -> Result<Vec<MeasurePackage>> {
    let mut text = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut text)
        .map_err(|e| package_err(format!("compact packages: not valid gzip ({e})")))?;
    let doc: Json = serde_json::from_slice(&text)
        .map_err(|e| package_err(format!("compact packages: not valid JSON ({e})")))?;
    load(&doc)
}

/// Loads every measure of a compact form.
pub fn load(doc: &Json) -> Result<Vec<MeasurePackage>> {
    if str_of(doc, "format") != Some(FORMAT) {
        return Err(package_err(format!(
            "compact packages: format is not {FORMAT:?} (made by another version?)"
        )));
    }
    let array = |key: &str| {
        doc.get(key)
            .and_then(Json::as_array)
            .ok_or_else(|| package_err(format!("compact packages: no {key} array")))
    };
    let libraries = array("libraries")?;
    let value_sets = array("valueSets")?;
    let shared: Vec<(Option<String>, Arc<Json>)> = libraries
        .iter()
        .map(|l| {
            let elm = l.get("elm").cloned().unwrap_or(Json::Null);
            (str_of(l, "url").map(str::to_string), Arc::new(elm))
        })
        .collect();
    let value_set_resources: Vec<Json> = value_sets.iter().map(value_set_resource).collect();
    let mut out = Vec::new();
    for m in array("measures")? {
        let measure = m
            .get("measure")
            .ok_or_else(|| package_err("compact packages: a measure entry has no Measure"))?;
        let libs = index_list(m, "libraries", libraries.len(), "library")?;
        let sets = index_list(m, "valueSets", value_sets.len(), "value set")?;
        // The Measure with stubs of its libraries is all `parse_measure_bundle` reads.
        let mut entries = vec![json!({"resource": measure})];
        for &i in &libs {
            let l = &libraries[i];
            entries.push(json!({"resource": {
                "resourceType": "Library", "url": l["url"], "version": l["version"], "name": l["name"],
            }}));
        }
        let def = parse_measure_bundle(&json!({"resourceType": "Bundle", "entry": entries}))?;
        check_supported(&def)?;
        let lib_sources: Vec<_> = libs.iter().map(|&i| shared[i].clone()).collect();
        let set_resources: Vec<Json> = sets
            .iter()
            .map(|&i| value_set_resources[i].clone())
            .collect();
        let set = cql::LibrarySet::from_shared_elm(&lib_sources, &set_resources)
            .map_err(|e| EcqmError::Engine(e.to_string()))?;
        out.push(MeasurePackage::from_parts(def, set));
    }
    Ok(out)
}

/// The codes of a compact value set: `(system, code, display)`.
pub fn value_set_codes(v: &Json) -> Vec<(String, String, Option<String>)> {
    let mut out = Vec::new();
    if let Some(Json::Object(codes)) = v.get("codes") {
        for (system, list) in codes {
            for c in list.as_array().into_iter().flatten() {
                if let Some(code) = c.get(0).and_then(Json::as_str) {
                    let display = c.get(1).and_then(Json::as_str).map(str::to_string);
                    out.push((system.clone(), code.to_string(), display));
                }
            }
        }
    }
    out
}

fn value_set_resource(v: &Json) -> Json {
    let contains: Vec<Json> = value_set_codes(v)
        .into_iter()
        .map(|(system, code, display)| {
            let mut c = Map::new();
            if !system.is_empty() {
                c.insert("system".into(), Json::String(system));
            }
            c.insert("code".into(), Json::String(code));
            if let Some(d) = display {
                c.insert("display".into(), Json::String(d));
            }
            Json::Object(c)
        })
        .collect();
    json!({
        "resourceType": "ValueSet", "url": v["url"], "version": v["version"],
        "name": v["name"], "title": v["title"],
        "expansion": {"contains": contains},
    })
}
