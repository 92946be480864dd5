//! The care-gap rule (DEQM gaps-status) and the improvement-notation
//! overrides: the one place that decides a patient's gap status for a group
//! and which improvement notation applies to a measure.

use std::collections::BTreeMap;

use crate::package::{GroupDef, ImprovementNotation, MeasureDef, PopulationCode};
use crate::populations::Memberships;

/// DEQM gap status of one patient for one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GapStatus {
    /// In the denominator (not excluded or excepted) and the measure's goal
    /// is not achieved; the measurement period is over.
    Open,
    /// In the denominator (not excluded or excepted) and the goal is achieved.
    Closed,
    /// Would be open, but the measurement period is still running.
    Prospective,
    /// Not in the denominator, or excluded or excepted from it.
    NotApplicable,
}

impl GapStatus {
    /// The code in `http://hl7.org/fhir/us/davinci-deqm/CodeSystem/gaps-status`
    /// (`not-applicable` for [`GapStatus::NotApplicable`], which has no DEQM
    /// code: no DetectedIssue is reported for it).
    pub fn code(self) -> &'static str {
        match self {
            GapStatus::Open => "open-gap",
            GapStatus::Closed => "closed-gap",
            GapStatus::Prospective => "prospective-gap",
            GapStatus::NotApplicable => "not-applicable",
        }
    }

    pub fn display(self) -> &'static str {
        match self {
            GapStatus::Open => "Open Gap",
            GapStatus::Closed => "Closed Gap",
            GapStatus::Prospective => "Prospective Gap",
            GapStatus::NotApplicable => "Not Applicable",
        }
    }
}

/// Gap status per DEQM, aware of the improvement notation. Only patients in
/// the denominator and in neither the exclusions nor the exceptions have a
/// gap (`NotApplicable` otherwise). The numerator is met when the patient is
/// in the numerator and not in the numerator exclusions. For an `increase`
/// measure the gap is open when the numerator is not met; for a `decrease`
/// (inverse) measure it is open when it is met. An open gap is reported as
/// prospective while the period is still running (`period_over` false): it
/// can still be closed in time.
pub fn gap_status(m: &Memberships, notation: ImprovementNotation, period_over: bool) -> GapStatus {
    use PopulationCode::*;
    let eligible = m.is(Denominator) && !m.is(DenominatorExclusion) && !m.is(DenominatorException);
    if !eligible {
        return GapStatus::NotApplicable;
    }
    let met = m.is(Numerator) && !m.is(NumeratorExclusion);
    let open = match notation {
        ImprovementNotation::Increase => !met,
        ImprovementNotation::Decrease => met,
    };
    match (open, period_over) {
        (false, _) => GapStatus::Closed,
        (true, true) => GapStatus::Open,
        (true, false) => GapStatus::Prospective,
    }
}

/// Improvement-notation overrides, for packages whose coded notation is
/// missing or wrong (see `MeasureDef::warnings`). Text form:
/// comma-separated `[MEASURE=]increase|decrease` items, where `MEASURE` is
/// the Measure's name, id or CMS id (such as `122FHIR`) and an item without
/// `MEASURE=` applies to every measure.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImprovementOverrides {
    /// Applies to every measure without a per-measure override.
    pub global: Option<ImprovementNotation>,
    /// By Measure name, id or CMS id; wins over `global`.
    pub by_measure: BTreeMap<String, ImprovementNotation>,
}

impl ImprovementOverrides {
    /// Parses comma-separated `[MEASURE=]increase|decrease` items (empty
    /// items are ignored; a later item for the same key wins).
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut o = ImprovementOverrides::default();
        o.push_arg(spec)?;
        Ok(o)
    }

    /// Adds the value of one (repeatable) command-line flag: one
    /// `[MEASURE=]increase|decrease` item, or several separated by commas.
    /// Later items win.
    pub fn push_arg(&mut self, item: &str) -> Result<(), String> {
        for part in item.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let bad =
                || format!("improvement notation {part:?}: expected [MEASURE=]increase|decrease");
            let (who, what) = match part.split_once('=') {
                Some((w, n)) => (Some(w.trim()), n),
                None => (None, part),
            };
            let n = ImprovementNotation::parse(what).ok_or_else(bad)?;
            match who {
                Some("") => return Err(bad()),
                Some(w) => {
                    self.by_measure.insert(w.to_string(), n);
                }
                None => self.global = Some(n),
            }
        }
        Ok(())
    }

    /// True when nothing is overridden.
    pub fn is_empty(&self) -> bool {
        self.global.is_none() && self.by_measure.is_empty()
    }

    /// The override for a measure, if any: by name, id or CMS id (first found
    /// in that order), else the global one.
    pub fn override_for(&self, m: &MeasureDef) -> Option<ImprovementNotation> {
        [Some(&m.name), Some(&m.id), m.cms_id.as_ref()]
            .into_iter()
            .flatten()
            .find_map(|k| self.by_measure.get(k).copied())
            .or(self.global)
    }

    /// The notation for a group's gaps: the measure's override (per-measure,
    /// then global), else the group's own, else `increase`.
    pub fn notation(&self, m: &MeasureDef, g: &GroupDef) -> ImprovementNotation {
        self.override_for(m)
            .or(g.improvement_notation)
            .unwrap_or(ImprovementNotation::Increase)
    }

    /// The MeasureReport-level `improvementNotation`: the measure's override,
    /// else the first group's notation (`None` when neither is known).
    pub fn measure_level(&self, m: &MeasureDef) -> Option<ImprovementNotation> {
        self.override_for(m)
            .or_else(|| m.groups.first().and_then(|g| g.improvement_notation))
    }

    /// Stable text for run fingerprints: the global notation (if any) first,
    /// then the sorted `MEASURE=notation` items, comma-separated (empty when
    /// nothing is overridden). [`ImprovementOverrides::parse`] reads it back.
    pub fn fingerprint(&self) -> String {
        let mut items: Vec<String> = self
            .by_measure
            .iter()
            .map(|(k, v)| format!("{k}={}", v.code()))
            .collect();
        items.sort();
        if let Some(g) = self.global {
            items.insert(0, g.code().to_string());
        }
        items.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::populations::tests::{full_group, measure};
    use ImprovementNotation::{Decrease, Increase};
    use PopulationCode::*;

    /// Memberships of a group with all six populations; `on` lists those the
    /// patient is in.
    fn mem(on: &[PopulationCode]) -> Memberships {
        Memberships(
            [
                InitialPopulation,
                Denominator,
                DenominatorExclusion,
                DenominatorException,
                Numerator,
                NumeratorExclusion,
            ]
            .into_iter()
            .map(|c| (c, on.contains(&c)))
            .collect(),
        )
    }

    #[test]
    fn gap_status_table() {
        use GapStatus::{Closed as C, NotApplicable as N, Open as O, Prospective as P};
        const IP: PopulationCode = InitialPopulation;
        const DEN: PopulationCode = Denominator;
        const DENEX: PopulationCode = DenominatorExclusion;
        const DENEXCEP: PopulationCode = DenominatorException;
        const NUM: PopulationCode = Numerator;
        const NUMEX: PopulationCode = NumeratorExclusion;
        // memberships; increase (period over, running); decrease (over, running)
        let table: &[(&[PopulationCode], [GapStatus; 4])] = &[
            (&[], [N, N, N, N]),
            (&[IP], [N, N, N, N]),
            (&[IP, DEN], [O, P, C, C]),
            (&[IP, DEN, NUM], [C, C, O, P]),
            (&[IP, DEN, NUM, NUMEX], [O, P, C, C]),
            (&[IP, DEN, DENEX], [N, N, N, N]),
            (&[IP, DEN, DENEX, NUM], [N, N, N, N]),
            (&[IP, DEN, DENEXCEP], [N, N, N, N]),
            (&[IP, DEN, DENEXCEP, NUM], [N, N, N, N]),
            (&[IP, DEN, DENEX, DENEXCEP], [N, N, N, N]),
            (&[IP, NUM], [N, N, N, N]),
            (&[IP, DEN, NUMEX], [O, P, C, C]),
        ];
        for (on, [inc_over, inc_running, dec_over, dec_running]) in table {
            let m = mem(on);
            let got = [
                gap_status(&m, Increase, true),
                gap_status(&m, Increase, false),
                gap_status(&m, Decrease, true),
                gap_status(&m, Decrease, false),
            ];
            assert_eq!(
                got,
                [*inc_over, *inc_running, *dec_over, *dec_running],
                "memberships {on:?}"
            );
        }
    }

    #[test]
    fn gap_status_absent_populations_count_as_not_in() {
        // a group defining only IP, DENOM and NUMER
        let m = Memberships(vec![
            (InitialPopulation, true),
            (Denominator, true),
            (Numerator, false),
        ]);
        assert_eq!(gap_status(&m, Increase, true), GapStatus::Open);
        // a cohort group
        let m = Memberships(vec![(InitialPopulation, true)]);
        assert_eq!(gap_status(&m, Increase, true), GapStatus::NotApplicable);
        assert_eq!(
            gap_status(&Memberships::default(), Decrease, false),
            GapStatus::NotApplicable
        );
    }

    #[test]
    fn gap_status_codes() {
        use GapStatus::*;
        let codes: Vec<_> = [Open, Closed, Prospective, NotApplicable]
            .into_iter()
            .map(|s| (s.code(), s.display()))
            .collect();
        assert_eq!(
            codes,
            [
                ("open-gap", "Open Gap"),
                ("closed-gap", "Closed Gap"),
                ("prospective-gap", "Prospective Gap"),
                ("not-applicable", "Not Applicable"),
            ]
        );
    }

    fn cbp(group_notation: Option<ImprovementNotation>) -> (MeasureDef, GroupDef) {
        let mut g = full_group();
        g.improvement_notation = group_notation;
        let mut m = measure(vec![g.clone()]);
        m.name = "ControllingHighBloodPressureFHIR".into();
        m.id = "cbp-id".into();
        m.cms_id = Some("165FHIR".into());
        (m, g)
    }

    #[test]
    fn override_resolution_order() {
        let (m, g) = cbp(Some(Increase));
        let o = |s: &str| ImprovementOverrides::parse(s).unwrap();
        // per-measure, by each key
        for key in ["ControllingHighBloodPressureFHIR", "cbp-id", "165FHIR"] {
            let ov = o(&format!("{key}=decrease"));
            assert_eq!(ov.notation(&m, &g), Decrease, "{key}");
            assert_eq!(ov.measure_level(&m), Some(Decrease), "{key}");
        }
        // another measure's override does not apply
        assert_eq!(o("122FHIR=decrease").notation(&m, &g), Increase);
        // per-measure wins over global, whatever the order given
        assert_eq!(o("decrease,165FHIR=increase").notation(&m, &g), Increase);
        assert_eq!(o("165FHIR=increase,decrease").notation(&m, &g), Increase);
        // name is looked up before id and CMS id
        assert_eq!(
            o("165FHIR=increase,ControllingHighBloodPressureFHIR=decrease").notation(&m, &g),
            Decrease
        );
        // global wins over the group's
        assert_eq!(o("decrease").notation(&m, &g), Decrease);
        assert_eq!(o("decrease").measure_level(&m), Some(Decrease));
        // no override: the group's
        let none = ImprovementOverrides::default();
        let (md, gd) = cbp(Some(Decrease));
        assert_eq!(none.notation(&md, &gd), Decrease);
        assert_eq!(none.measure_level(&md), Some(Decrease));
        // nothing stated: increase for gaps, none at measure level
        let (mn, gn) = cbp(None);
        assert_eq!(none.notation(&mn, &gn), Increase);
        assert_eq!(none.measure_level(&mn), None);
        assert_eq!(none.override_for(&mn), None);
        assert_eq!(o("decrease").override_for(&mn), Some(Decrease));
    }

    #[test]
    fn parse_and_push_arg() {
        let o =
            ImprovementOverrides::parse(" 122FHIR = Decrease , ,increase,CMS2=increase").unwrap();
        assert_eq!(o.global, Some(Increase));
        assert_eq!(o.by_measure.get("122FHIR"), Some(&Decrease));
        assert_eq!(o.by_measure.get("CMS2"), Some(&Increase));
        assert!(ImprovementOverrides::parse("").unwrap().is_empty());
        for bad in ["122FHIR=sideways", "sideways", "=decrease", "a=b=decrease"] {
            assert!(ImprovementOverrides::parse(bad).is_err(), "{bad}");
        }
        // repeated flags accumulate; later items win
        let mut o = ImprovementOverrides::default();
        o.push_arg("122FHIR=decrease").unwrap();
        o.push_arg("increase").unwrap();
        o.push_arg("122FHIR=increase").unwrap();
        o.push_arg("165FHIR=decrease").unwrap();
        assert_eq!(o.global, Some(Increase));
        assert_eq!(o.by_measure.get("122FHIR"), Some(&Increase));
        assert_eq!(o.by_measure.get("165FHIR"), Some(&Decrease));
        assert!(o.push_arg("165FHIR=").is_err());
    }

    #[test]
    fn fingerprint_is_stable_and_round_trips() {
        assert_eq!(ImprovementOverrides::default().fingerprint(), "");
        let a = ImprovementOverrides::parse("b=decrease,A=increase,a-b=decrease,decrease").unwrap();
        let b = ImprovementOverrides::parse("decrease,a-b=decrease,A=increase,b=decrease").unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_eq!(
            a.fingerprint(),
            "decrease,A=increase,a-b=decrease,b=decrease"
        );
        assert_eq!(ImprovementOverrides::parse(&a.fingerprint()).unwrap(), a);
    }
}
