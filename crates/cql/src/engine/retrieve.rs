//! Retrieves: a patient's resources of one type, optionally filtered by codes and restricted by
//! the retrieve's profile (QI-Core `templateId`).

use super::compile::{json_array, json_str, Compiler, Scope};
use super::eval::Ctx;
use super::expr::Expr;
use crate::ops::clinical::code_matches;
use crate::ops::structured::property;
use crate::ops::type_ops::local_type;
use crate::value::Value;
use crate::{fhir, CqlResult};
use serde_json::Value as Json;
use std::collections::BTreeSet;
use std::sync::Arc;

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

/// Does resource `r` meet the retrieve's profile?
fn matches_profile(r: &Value, f: &ProfileFilter, template: Option<&str>) -> bool {
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

/// Adds the `dataType` (local name) of every `Retrieve` node under `j`.
pub(super) fn collect_retrieves(j: &Json, out: &mut BTreeSet<String>) {
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

impl Compiler<'_> {
    /// A `Retrieve` node; date, code and other filters and a `context` are not supported.
    pub(super) fn retrieve(&mut self, j: &Json, sc: &mut Scope) -> CqlResult<Expr> {
        let (_, dt) = local_type(json_str(j, "dataType").unwrap_or(""));
        let codes = match j.get("codes") {
            Some(c) => Some(Box::new(self.expr(c, sc)?)),
            None => None,
        };
        if !json_array(j, "dateFilter").is_empty()
            || !json_array(j, "codeFilter").is_empty()
            || !json_array(j, "otherFilter").is_empty()
            || j.get("context").is_some()
        {
            return Ok(self.unsupported(j, sc.lib, "filtered"));
        }
        let profile = profile_filter(json_str(j, "templateId"), &dt);
        Ok(Expr::Retrieve {
            data_type: dt,
            code_path: json_str(j, "codeProperty").map(Arc::from),
            codes,
            profile,
            template: json_str(j, "templateId").map(Arc::from),
        })
    }
}

impl Ctx<'_> {
    /// The patient's resources of `data_type` whose `code_path` (default `code`) matches
    /// `codes`, and that meet the profile. Empty without a patient.
    pub(super) fn retrieve(
        &self,
        data_type: &str,
        code_path: Option<&str>,
        codes: Option<&Expr>,
        profile: &ProfileFilter,
        template: Option<&str>,
        lib: usize,
    ) -> CqlResult<Value> {
        let v = self.retrieve_by_codes(data_type, code_path, codes, lib)?;
        Ok(match (profile, v) {
            (ProfileFilter::None, v) if template.is_none() => v,
            (f, Value::List(l)) => Value::List(Arc::new(
                l.iter()
                    .filter(|r| matches_profile(r, f, template))
                    .cloned()
                    .collect(),
            )),
            (_, v) => v,
        })
    }

    fn retrieve_by_codes(
        &self,
        data_type: &str,
        code_path: Option<&str>,
        codes: Option<&Expr>,
        lib: usize,
    ) -> CqlResult<Value> {
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
}
