//! Population shape on 2,000 patients, checked from the generated resources.

use fhir::{age_in_years, Date, Resource};
use synth::{codes, Generator, SynthConfig};

struct Person {
    age: i32,
    female: bool,
    conditions: Vec<String>,
    observation_codes: Vec<(String, Date)>,
    procedure_codes: Vec<String>,
    statin: bool,
}

fn population(n: u64) -> (Vec<Person>, Generator) {
    let g = Generator::new(SynthConfig::new(n, 2024)).unwrap();
    let as_of = g.config().as_of;
    let people = (0..n)
        .map(|i| {
            let rs = g.patient(i);
            let Resource::Patient(p) = &rs[0] else {
                panic!()
            };
            let birth: Date = p.birth_date.as_deref().unwrap().parse().unwrap();
            let mut person = Person {
                age: age_in_years(birth, as_of),
                female: p.gender.as_deref() == Some("female"),
                conditions: vec![],
                observation_codes: vec![],
                procedure_codes: vec![],
                statin: false,
            };
            for r in &rs {
                match r {
                    Resource::Condition(c) => person
                        .conditions
                        .push(c.code.as_ref().unwrap().coding[0].code.clone().unwrap()),
                    Resource::Observation(o) => {
                        let when = fhir::parse_date_time(o.effective_date_time.as_deref().unwrap())
                            .unwrap()
                            .date();
                        person.observation_codes.push((
                            o.code.as_ref().unwrap().coding[0].code.clone().unwrap(),
                            when,
                        ));
                    }
                    Resource::Procedure(p) => person
                        .procedure_codes
                        .push(p.code.as_ref().unwrap().coding[0].code.clone().unwrap()),
                    Resource::MedicationRequest(m) => {
                        let code = m.medication_codeable_concept.as_ref().unwrap().coding[0]
                            .code
                            .as_deref()
                            .unwrap();
                        person.statin |= [
                            &codes::HIGH_INTENSITY_STATIN,
                            &codes::MODERATE_INTENSITY_STATIN,
                        ]
                        .iter()
                        .any(|vs| vs.codes.iter().any(|c| c.code == code));
                    }
                    _ => {}
                }
            }
            person
        })
        .collect();
    (people, g)
}

fn share(people: &[&Person], f: impl Fn(&Person) -> bool) -> f64 {
    people.iter().filter(|p| f(p)).count() as f64 / people.len() as f64
}

fn assert_within(what: &str, value: f64, lo: f64, hi: f64) {
    eprintln!("{what}: {value:.3}");
    assert!(
        (lo..=hi).contains(&value),
        "{what}: {value:.3} not in [{lo}, {hi}]"
    );
}

#[test]
fn prevalence_and_measure_mix_within_tolerance() {
    let (people, g) = population(2000);
    let all: Vec<&Person> = people.iter().collect();
    let adults: Vec<&Person> = people.iter().filter(|p| p.age >= 18).collect();
    assert_within("children", 1.0 - adults.len() as f64 / 2000.0, 0.14, 0.24);
    assert_within("female", share(&all, |p| p.female), 0.46, 0.56);
    assert_within("65 and over", share(&all, |p| p.age >= 65), 0.16, 0.26);

    let has = |p: &Person, code: &str| p.conditions.iter().any(|c| c == code);
    assert_within(
        "hypertension (adults)",
        share(&adults, |p| has(p, "I10")),
        0.25,
        0.36,
    );
    assert_within(
        "diabetes (adults)",
        share(&adults, |p| has(p, "E11.9") || has(p, "E10.9")),
        0.07,
        0.14,
    );
    assert_within(
        "depression (adults)",
        share(&adults, |p| has(p, "F32.A")),
        0.05,
        0.11,
    );
    assert_within(
        "hyperlipidemia (adults)",
        share(&adults, |p| has(p, "E78.5")),
        0.15,
        0.28,
    );
    assert_within(
        "ASCVD (adults)",
        share(&adults, |p| {
            has(p, "I25.10") || has(p, "I21.9") || has(p, "I63.9")
        }),
        0.03,
        0.10,
    );
    assert_within(
        "children with hypertension",
        share(&all, |p| p.age < 18 && has(p, "I10")),
        0.0,
        0.0,
    );

    // Breast cancer screening: women 52–74 with a mammogram in the 27-month window.
    let as_of = g.config().as_of;
    let window_start = Date {
        year: as_of.year - 2,
        month: 10,
        day: 1,
    };
    let women: Vec<&Person> = people
        .iter()
        .filter(|p| p.female && (52..=74).contains(&p.age))
        .collect();
    assert!(women.len() > 150);
    let mammo = |p: &Person| {
        p.observation_codes.iter().any(|(c, d)| {
            codes::MAMMOGRAPHY.codes.iter().any(|m| m.code == c) && *d >= window_start
        })
    };
    assert_within("mammography in window", share(&women, mammo), 0.6, 0.85);

    // Colorectal screening (45–75): colonoscopy, FIT or sDNA.
    let crc: Vec<&Person> = people
        .iter()
        .filter(|p| (46..=75).contains(&p.age))
        .collect();
    let screened = |p: &Person| {
        p.procedure_codes
            .iter()
            .any(|c| codes::COLONOSCOPY.codes.iter().any(|m| m.code == c))
            || p.observation_codes
                .iter()
                .any(|(c, _)| c == codes::FOBT.codes[0].code || c == codes::SDNA_FIT.codes[0].code)
    };
    assert_within("colorectal screening", share(&crc, screened), 0.6, 0.85);

    // Glycemic status: some diabetics above 9% or untested, most not.
    let diabetics: Vec<&Person> = adults
        .iter()
        .copied()
        .filter(|p| has(p, "E11.9") || has(p, "E10.9"))
        .collect();
    assert!(diabetics.len() > 80);
    let tested = |p: &Person| {
        p.observation_codes
            .iter()
            .any(|(c, d)| c == "4548-4" && d.year == as_of.year)
    };
    assert_within(
        "diabetics with HbA1c this year",
        share(&diabetics, tested),
        0.8,
        0.95,
    );

    // Statins for ASCVD patients.
    let ascvd: Vec<&Person> = adults
        .iter()
        .copied()
        .filter(|p| has(p, "I25.10") || has(p, "I21.9") || has(p, "I63.9"))
        .collect();
    assert_within("statin with ASCVD", share(&ascvd, |p| p.statin), 0.6, 0.92);

    // Depression screening among 12+ with a visit: most screened, not all.
    let teens_and_adults: Vec<&Person> = people.iter().filter(|p| p.age >= 12).collect();
    let screened = |p: &Person| {
        p.observation_codes
            .iter()
            .any(|(c, _)| c == "73832-8" || c == "73831-0")
    };
    assert_within(
        "depression screening",
        share(&teens_and_adults, screened),
        0.6,
        0.8,
    );
}
