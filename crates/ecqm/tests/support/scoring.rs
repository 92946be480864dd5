//! Scoring a result against an expected file by the rules of
//! `shared/ecqm/score`: result groups are matched by id when the expected id
//! is among the result's group ids, otherwise by position; every expected
//! population must be present with the same count; extra populations are
//! ignored.

use serde_json::Value as Json;

use ecqm::populations::PatientResult;

/// `Ok(())` when the result matches, else a description of the first
/// mismatches (population codes and counts only).
pub fn compare(expected: &Json, result: &PatientResult) -> Result<(), String> {
    let groups = expected
        .get("groups")
        .and_then(Json::as_array)
        .ok_or_else(|| "expected file has no groups".to_string())?;
    let mut problems = Vec::new();
    for (i, eg) in groups.iter().enumerate() {
        let eid = eg.get("id").and_then(Json::as_str);
        let rg = eid
            .and_then(|id| result.groups.iter().find(|g| g.id == id))
            .or_else(|| result.groups.get(i));
        let Some(rg) = rg else {
            problems.push(format!("group {} missing", eid.unwrap_or("?")));
            continue;
        };
        let Some(pops) = eg.get("populations").and_then(Json::as_object) else {
            continue;
        };
        for (code, want) in pops {
            let got = rg
                .populations
                .0
                .iter()
                .find(|(c, _)| c.code() == code)
                .map(|(_, b)| u64::from(*b));
            if got != want.as_u64() {
                problems.push(format!(
                    "{}{code}: expected {want}, got {}",
                    if groups.len() > 1 {
                        format!("[{}] ", rg.id)
                    } else {
                        String::new()
                    },
                    got.map_or("none".to_string(), |g| g.to_string())
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ecqm::package::PopulationCode::*;
    use ecqm::populations::{GroupResult, Memberships};
    use serde_json::json;

    fn res(groups: &[(&str, [bool; 2])]) -> PatientResult {
        PatientResult {
            measure: "M".into(),
            patient_id: "c".into(),
            groups: groups
                .iter()
                .map(|(id, f)| GroupResult {
                    id: id.to_string(),
                    populations: Memberships(vec![(InitialPopulation, f[0]), (Numerator, f[1])]),
                    strata: vec![],
                })
                .collect(),
            sde: vec![],
        }
    }

    #[test]
    fn scorer_rules() {
        let exp =
            json!({"groups":[{"id":"a","populations":{"initial-population":1,"numerator":0}}]});
        assert!(compare(&exp, &res(&[("a", [true, false])])).is_ok());
        assert!(compare(&exp, &res(&[("a", [true, true])])).is_err());
        // matched by id, not position
        assert!(compare(&exp, &res(&[("b", [false, false]), ("a", [true, false])])).is_ok());
        // unknown id: by position
        assert!(compare(&exp, &res(&[("z", [true, false])])).is_ok());
        // missing population is a mismatch
        let exp2 = json!({"groups":[{"id":"a","populations":{"denominator":0}}]});
        assert!(compare(&exp2, &res(&[("a", [true, false])])).is_err());
        // missing group
        assert!(compare(&exp, &res(&[])).is_err());
    }
}
