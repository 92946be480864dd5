//! QRDA Category III exports against the CMS tooling and the engine's own counts.
//!
//! For each of the 12 measures in `shared/ecqm` and each program year (2025, 2026): the
//! measure's official test-case patients are evaluated with the real engine, a QRDA III
//! document is written, `shared/qrda/validate --year Y FILE` must end `1 passed, 0 failed`
//! (CDA SDTC XSD + the year's CMS schematron), and the file is parsed back: every population
//! count and every stratum count must equal the engine's summary MeasureReport for the same
//! patients, and every supplemental data count must equal a count made here from the
//! patients' SDE values. One document covering all 12 measures is validated per year too.
//! The invalid CMS samples must be rejected by the same validator (so these tests can fail),
//! and bad export requests must fail with a clear error and leave no file.
//!
//! `PHM_SHARED` overrides the location of `shared/`. Without `shared/qrda` the validator
//! checks are skipped with a message (it is present in development and CI).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use ecqm::engine::MeasurePackage;
use ecqm::patients::PatientItem;
use ecqm::qrda3::{ensure_cms_sde, write_qrda3_file, MeasureAggregate, ProgramYear, Qrda3Options};
use ecqm::report::{ReportContext, Summary};
use ecqm::{EvalOptions, PatientResult};
use quick_xml::events::Event;
use rayon::prelude::*;
use serde_json::Value as Json;

fn shared_dir() -> PathBuf {
    std::env::var_os("PHM_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
}

fn validator() -> Option<PathBuf> {
    let v = shared_dir().join("qrda/validate");
    if v.is_file() {
        Some(v)
    } else {
        eprintln!(
            "SKIPPED: {} is absent, so QRDA III files are not validated (set PHM_SHARED)",
            v.display()
        );
        None
    }
}

fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("json"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ecqm-qrda3-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs the validator; returns (exit code, full output, last line).
fn validate(v: &Path, year: ProgramYear, file: &Path) -> (i32, String, String) {
    let out = Command::new(v)
        .args(["--year", &year.to_string()])
        .arg(file)
        .output()
        .expect("run shared/qrda/validate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let last = String::from_utf8_lossy(&out.stdout)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string();
    (out.status.code().unwrap_or(-1), text, last)
}

// --- a small element tree over quick-xml's reader -------------------------------------

#[derive(Debug, Default)]
struct El {
    name: String,
    attrs: BTreeMap<String, String>,
    children: Vec<El>,
}

impl El {
    fn attr(&self, k: &str) -> Option<&str> {
        self.attrs.get(k).map(String::as_str)
    }
    fn kids<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a El> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }
    fn kid(&self, name: &str) -> Option<&El> {
        self.children.iter().find(|c| c.name == name)
    }
    fn path(&self, names: &[&str]) -> Option<&El> {
        names.iter().try_fold(self, |e, n| e.kid(n))
    }
    fn has_template(&self, root: &str) -> bool {
        self.kids("templateId")
            .any(|t| t.attr("root") == Some(root))
    }
    /// The Aggregate Count directly under this observation.
    fn aggregate_count(&self) -> Option<u64> {
        self.kids("entryRelationship")
            .filter(|r| r.attr("typeCode") == Some("SUBJ"))
            .filter_map(|r| r.kid("observation"))
            .find(|o| o.has_template("2.16.840.1.113883.10.20.27.3.3"))
            .and_then(|o| o.kid("value"))
            .and_then(|v| v.attr("value"))
            .map(|v| v.parse().expect("integer count"))
    }
    fn reference_id(&self) -> Option<&str> {
        self.path(&["reference", "externalObservation", "id"])?
            .attr("root")
    }
}

fn parse_xml(text: &str) -> El {
    let mut r = quick_xml::Reader::from_str(text);
    let mut stack = vec![El::default()];
    let element = |e: &quick_xml::events::BytesStart| El {
        name: e.local_name().as_ref().to_string(),
        attrs: e
            .attributes()
            .map(|a| {
                let a = a.expect("attribute");
                (a.key.as_ref().to_string(), a.value.to_string())
            })
            .collect(),
        children: vec![],
    };
    loop {
        match r.read_event().expect("well-formed XML") {
            Event::Start(e) => stack.push(element(&e)),
            Event::Empty(e) => {
                let el = element(&e);
                stack.last_mut().unwrap().children.push(el);
            }
            Event::End(_) => {
                let el = stack.pop().unwrap();
                stack.last_mut().unwrap().children.push(el);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    let mut root = stack.pop().unwrap();
    root.children.pop().expect("a root element")
}

/// What the file says for one measure: population id → (QRDA code, count, SDE counts
/// `(template, code)` → n, strata reference id → n).
#[derive(Debug)]
struct ParsedPopulation {
    code: String,
    count: u64,
    sde: BTreeMap<(String, String), u64>,
    strata: BTreeMap<String, u64>,
}

fn parsed_measures(doc: &El) -> BTreeMap<String, BTreeMap<String, ParsedPopulation>> {
    assert_eq!(doc.name, "ClinicalDocument");
    let section = doc
        .path(&["component", "structuredBody", "component", "section"])
        .expect("measure section");
    let mut out = BTreeMap::new();
    for entry in section.kids("entry") {
        let Some(org) = entry.kid("organizer") else {
            continue;
        };
        let mid = org
            .path(&["reference", "externalDocument", "id"])
            .and_then(|i| i.attr("extension"))
            .expect("measure id")
            .to_string();
        let mut pops = BTreeMap::new();
        for comp in org.kids("component") {
            let obs = comp.kid("observation").unwrap();
            if !obs.has_template("2.16.840.1.113883.10.20.27.3.5") {
                continue;
            }
            let code = obs.kid("value").unwrap().attr("code").unwrap().to_string();
            let count = obs.aggregate_count().expect("population count");
            let mut sde = BTreeMap::new();
            let mut strata = BTreeMap::new();
            for rel in obs.kids("entryRelationship") {
                if rel.attr("typeCode") != Some("COMP") {
                    continue;
                }
                let o = rel.kid("observation").unwrap();
                let n = o.aggregate_count().expect("SDE / stratum count");
                if o.has_template("2.16.840.1.113883.10.20.27.3.4") {
                    strata.insert(o.reference_id().unwrap().to_string(), n);
                    continue;
                }
                let template = [
                    ("2.16.840.1.113883.10.20.27.3.6", "sex"),
                    ("2.16.840.1.113883.10.20.27.3.7", "ethnicity"),
                    ("2.16.840.1.113883.10.20.27.3.8", "race"),
                    ("2.16.840.1.113883.10.20.27.3.9", "payer"),
                ]
                .into_iter()
                .find(|(t, _)| o.has_template(t))
                .map(|(_, k)| k)
                .expect("a supplemental data template");
                let v = o.kid("value").unwrap();
                let c = v
                    .attr("code")
                    .or_else(|| v.kid("translation").and_then(|t| t.attr("code")))
                    .unwrap();
                sde.insert((template.to_string(), c.to_string()), n);
            }
            let pid = obs.reference_id().expect("population id").to_string();
            let prev = pops.insert(
                pid.clone(),
                ParsedPopulation {
                    code,
                    count,
                    sde,
                    strata,
                },
            );
            assert!(prev.is_none(), "population id {pid} twice in {mid}");
        }
        out.insert(mid, pops);
    }
    out
}

// --- the engine side ---------------------------------------------------------------------

struct Evaluated {
    name: String,
    def: ecqm::MeasureDef,
    results: Vec<PatientResult>,
    summary: Json,
    period: ecqm::Period,
}

fn evaluate_measure(bundle: &Path) -> Evaluated {
    let name = bundle.file_stem().unwrap().to_string_lossy().to_string();
    let cases = json_files(&shared_dir().join("ecqm/cases").join(&name));
    assert!(!cases.is_empty(), "no cases for {name}");
    let pkg = MeasurePackage::load(bundle).unwrap();
    let period = pkg.default_period().unwrap();
    let mut prepared = pkg.prepare(&period).unwrap();
    ensure_cms_sde(&mut prepared).unwrap();
    let opts = EvalOptions {
        stratifiers: true,
        supplemental_data: true,
        single_pass: false,
    };
    let results: Vec<PatientResult> = cases
        .par_iter()
        .map(|c| {
            let rec = PatientItem::File(c.clone()).load().unwrap();
            prepared.evaluate(&rec, opts).unwrap()
        })
        .collect();
    let mut summary = Summary::new(&prepared.def, false);
    for r in &results {
        summary.add(r);
    }
    let ctx = ReportContext::new(period.clone(), "2026-01-15T00:00:00Z".into());
    Evaluated {
        name,
        summary: summary.report(&prepared.def, &ctx),
        def: prepared.def.clone(),
        results,
        period,
    }
}

fn aggregate(e: &Evaluated, year: ProgramYear) -> MeasureAggregate {
    let mut a = MeasureAggregate::new(&e.def, year).unwrap();
    for r in &e.results {
        a.add(r);
    }
    a
}

fn qrda_code(fhir: &str) -> &'static str {
    match fhir {
        "initial-population" => "IPOP",
        "denominator" => "DENOM",
        "denominator-exclusion" => "DENEX",
        "denominator-exception" => "DENEXCEP",
        "numerator" => "NUMER",
        "numerator-exclusion" => "NUMEX",
        other => panic!("unexpected population {other}"),
    }
}

/// SDE counts per population id, counted here from the patients' SDE values (a second,
/// simpler reading of the same rules: sex M/F, OMB race/ethnicity codes, payer by the
/// first digit of the Source of Payment Typology code).
fn expected_sde(
    e: &Evaluated,
    year: ProgramYear,
) -> BTreeMap<String, BTreeMap<(String, String), u64>> {
    let mut out: BTreeMap<String, BTreeMap<(String, String), u64>> = BTreeMap::new();
    let race = ["1002-5", "2028-9", "2054-5", "2076-8", "2106-3", "2131-1"];
    let eth = ["2135-2", "2186-5"];
    for r in &e.results {
        let mut mine: Vec<(String, String)> = Vec::new();
        for (id, v) in &r.sde {
            let s = v.to_string();
            match id.as_str() {
                "sde-sex" => {
                    let code = v.get("code").and_then(Json::as_str);
                    let c = match (code, year) {
                        (Some("M"), ProgramYear::Y2025) => Some("M"),
                        (Some("F"), ProgramYear::Y2025) => Some("F"),
                        (Some("M"), ProgramYear::Y2026) => Some("248153007"),
                        (Some("F"), ProgramYear::Y2026) => Some("248152002"),
                        _ => None,
                    };
                    if let Some(c) = c {
                        mine.push(("sex".into(), c.into()));
                    }
                }
                "sde-race" | "sde-ethnicity" => {
                    let (kind, set) = if id == "sde-race" {
                        ("race", &race[..])
                    } else {
                        ("ethnicity", &eth[..])
                    };
                    for c in set {
                        if s.contains(&format!("\"{c}\"")) {
                            mine.push((kind.into(), c.to_string()));
                        }
                    }
                }
                "sde-payer" => {
                    for p in v.as_array().into_iter().flatten() {
                        let code = p["code"]["codes"][0]["code"].as_str().unwrap_or("");
                        let g = match code.chars().next() {
                            Some('1') => "A",
                            Some('2') => "B",
                            Some('5') | Some('6') => "C",
                            Some(_) => "D",
                            None => continue,
                        };
                        if !mine.contains(&("payer".into(), g.into())) {
                            mine.push(("payer".into(), g.into()));
                        }
                    }
                }
                other => panic!("unexpected SDE {other}"),
            }
        }
        for g in &r.groups {
            let gdef = e.def.groups.iter().find(|x| x.id == g.id).unwrap();
            for (code, member) in &g.populations.0 {
                if !member {
                    continue;
                }
                let pid = gdef.population(*code).unwrap().id.clone().unwrap();
                let m = out.entry(pid).or_default();
                for k in &mine {
                    *m.entry(k.clone()).or_default() += 1;
                }
            }
        }
    }
    out
}

/// Compares one measure's parsed QRDA with the summary MeasureReport and the SDE counts.
/// Returns the number of checks made.
fn compare(
    e: &Evaluated,
    year: ProgramYear,
    parsed: &BTreeMap<String, BTreeMap<String, ParsedPopulation>>,
) -> usize {
    let vsid = e.def.version_specific_id.as_deref().unwrap();
    let pops = parsed
        .get(vsid)
        .unwrap_or_else(|| panic!("{}: measure {vsid} not in the file", e.name));
    let sde = expected_sde(e, year);
    let mut checks = 0;
    let mut seen = 0;
    for g in e.summary["group"].as_array().unwrap() {
        for p in g["population"].as_array().unwrap() {
            let code = p["code"]["coding"][0]["code"].as_str().unwrap();
            let pid = p["id"].as_str().unwrap();
            let q = pops
                .get(pid)
                .unwrap_or_else(|| panic!("{}: population {pid} ({code}) missing", e.name));
            seen += 1;
            assert_eq!(q.code, qrda_code(code), "{}: {pid}", e.name);
            assert_eq!(
                q.count,
                p["count"].as_u64().unwrap(),
                "{} {year}: {code} count of group {}",
                e.name,
                g["id"]
            );
            checks += 1;
            // every value of every element is reported; the counts are the patients'
            let want = sde.get(pid).cloned().unwrap_or_default();
            for ((kind, c), n) in &q.sde {
                assert_eq!(
                    *n,
                    want.get(&(kind.clone(), c.clone())).copied().unwrap_or(0),
                    "{} {year}: {code} {kind} {c}",
                    e.name
                );
                checks += 1;
            }
            for k in want.keys() {
                assert!(
                    q.sde.contains_key(k),
                    "{} {year}: {code}: {k:?} counted but not reported",
                    e.name
                );
            }
            for kind in ["sex", "race", "ethnicity", "payer"] {
                let total: u64 = q
                    .sde
                    .iter()
                    .filter(|((k, _), _)| k == kind)
                    .map(|(_, n)| n)
                    .sum();
                assert!(
                    q.sde.keys().any(|(k, _)| k == kind),
                    "{}: {code} has no {kind}",
                    e.name
                );
                if kind == "sex" {
                    assert!(
                        total <= q.count,
                        "{}: {code}: more sexes than patients",
                        e.name
                    );
                }
            }
            // strata: the summary's "true" stratum of each stratifier
            for s in g["stratifier"].as_array().into_iter().flatten() {
                let sid = s["id"].as_str().unwrap();
                let want = s["stratum"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|st| st["value"]["text"] == "true")
                    .and_then(|st| {
                        st["population"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .find(|x| x["code"]["coding"][0]["code"] == code)
                    })
                    .map(|x| x["count"].as_u64().unwrap())
                    .unwrap_or(0);
                assert_eq!(
                    q.strata.get(sid).copied(),
                    Some(want),
                    "{} {year}: {code} stratum {sid}",
                    e.name
                );
                checks += 1;
            }
        }
    }
    assert_eq!(
        seen,
        pops.len(),
        "{}: extra populations in the file",
        e.name
    );
    checks
}

#[test]
fn all_measures_both_years_validate_and_match_the_engine() {
    let t0 = std::time::Instant::now();
    let measures = json_files(&shared_dir().join("ecqm/measures"));
    assert_eq!(measures.len(), 12, "the 12 measure packages");
    let evaluated: Vec<Evaluated> = measures.iter().map(|m| evaluate_measure(m)).collect();
    let t_eval = t0.elapsed();
    let dir = tmp("all");
    let v = validator();
    let mut jobs: Vec<(ProgramYear, PathBuf, Vec<usize>)> = Vec::new();
    for year in ProgramYear::ALL {
        let mut opts = Qrda3Options::new(year);
        opts.created = "2026-01-15T10:30:00Z".into();
        let mut all = Vec::new();
        for (i, e) in evaluated.iter().enumerate() {
            let a = aggregate(e, year);
            let f = dir.join(format!("{}-{year}.xml", e.name));
            write_qrda3_file(&f, std::slice::from_ref(&a), &e.period, &opts).unwrap();
            jobs.push((year, f, vec![i]));
            all.push(a);
        }
        // one document covering every measure
        let f = dir.join(format!("all-measures-{year}.xml"));
        write_qrda3_file(&f, &all, &evaluated[0].period, &opts).unwrap();
        jobs.push((year, f, (0..evaluated.len()).collect()));
    }
    let checks: usize = jobs
        .par_iter()
        .map(|(year, f, which)| {
            if let Some(v) = &v {
                let (code, text, last) = validate(v, *year, f);
                assert_eq!(
                    last,
                    "1 passed, 0 failed",
                    "{} (year {year}) rejected:\n{text}",
                    f.display()
                );
                assert_eq!(code, 0);
            }
            let doc = parse_xml(&std::fs::read_to_string(f).unwrap());
            let tmpl = doc
                .kids("templateId")
                .find(|t| t.attr("root") == Some("2.16.840.1.113883.10.20.27.1.2"))
                .unwrap();
            assert_eq!(tmpl.attr("extension"), Some(year.document_extension()));
            let parsed = parsed_measures(&doc);
            assert_eq!(parsed.len(), which.len());
            which
                .iter()
                .map(|i| compare(&evaluated[*i], *year, &parsed))
                .sum::<usize>()
        })
        .sum();
    // the counts are not trivial: every measure has patients in its numerator or exclusions
    for e in &evaluated {
        let ip: u64 = e.summary["group"][0]["population"][0]["count"]
            .as_u64()
            .unwrap();
        assert!(ip > 0, "{}: empty initial population", e.name);
    }
    eprintln!(
        "qrda3: 12 measures x 2 years + 2 all-measure documents: {} files validated{}, {checks} counts compared; evaluation {:.1}s, total {:.1}s",
        jobs.len(),
        if v.is_some() { "" } else { " (SKIPPED)" },
        t_eval.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
}

#[test]
fn the_validator_rejects_the_invalid_samples() {
    let Some(v) = validator() else { return };
    let dir = shared_dir().join("qrda/samples/invalid");
    let files = {
        let mut f: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("xml"))
            .collect();
        f.sort();
        f
    };
    assert!(files.len() >= 3, "invalid samples in {}", dir.display());
    for f in &files {
        let (code, text, last) = validate(&v, ProgramYear::Y2026, f);
        assert_eq!(
            last,
            "0 passed, 1 failed",
            "{} accepted:\n{text}",
            f.display()
        );
        assert_eq!(code, 1);
    }
    // and a valid sample passes, so the rejections are not a broken validator
    let ok =
        shared_dir().join("qrda/samples/valid/2026MIPSAPPGroupSampleQRDA-III-v1.0-DERIVED.xml");
    assert_eq!(
        validate(&v, ProgramYear::Y2026, &ok).2,
        "1 passed, 0 failed"
    );
}

#[test]
fn a_broken_export_of_ours_is_rejected_too() {
    // Our own output with the Sex SDE - CMS template removed must fail the 2026 schematron,
    // and a 2026 file checked as 2025 must fail (template versions).
    let Some(v) = validator() else { return };
    let e = evaluate_measure(
        &shared_dir().join("ecqm/measures/PCSDepressionScreenAndFollowUpFHIR.json"),
    );
    let dir = tmp("broken");
    let year = ProgramYear::Y2026;
    let f = dir.join("ok.xml");
    write_qrda3_file(
        &f,
        &[aggregate(&e, year)],
        &e.period,
        &Qrda3Options::new(year),
    )
    .unwrap();
    assert_eq!(validate(&v, year, &f).2, "1 passed, 0 failed");
    assert_eq!(validate(&v, ProgramYear::Y2025, &f).2, "0 passed, 1 failed");
    let text = std::fs::read_to_string(&f).unwrap();
    let broken = text.replace(
        "<templateId root=\"2.16.840.1.113883.10.20.27.3.21\" extension=\"2025-05-01\"/>",
        "",
    );
    assert_ne!(broken, text);
    let g = dir.join("no-sex-cms.xml");
    std::fs::write(&g, broken).unwrap();
    let (_, out, last) = validate(&v, year, &g);
    assert_eq!(last, "0 passed, 1 failed");
    assert!(out.contains("CMS_151") || out.contains("CMS_144"), "{out}");
}

fn run_cli(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_phm-ecqm"))
        .args(args)
        .output()
        .expect("run phm-ecqm");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn files_in(d: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().to_string()))
        .collect();
    v.sort();
    v
}

#[test]
fn cli_exports_and_refuses_bad_requests_leaving_no_file() {
    let shared = shared_dir();
    let m = shared.join("ecqm/measures/ControllingHighBloodPressureFHIR.json");
    let cases = shared.join("ecqm/cases/ControllingHighBloodPressureFHIR");
    let (m, cases) = (m.to_str().unwrap(), cases.to_str().unwrap());
    let d = tmp("cli");
    let out = d.join("cms165.xml");
    for year in ["2025", "2026"] {
        let (code, err) = run_cli(&[
            "eval",
            "--measure",
            m,
            "--patients",
            cases,
            "--report",
            "qrda3",
            "--program-year",
            year,
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ]);
        assert_eq!(code, 0, "{err}");
        if let Some(v) = validator() {
            let (_, text, last) = validate(&v, ProgramYear::parse(year).unwrap(), &out);
            assert_eq!(last, "1 passed, 0 failed", "{text}");
        }
        let doc = parse_xml(&std::fs::read_to_string(&out).unwrap());
        let parsed = parsed_measures(&doc);
        let ipop = parsed
            .values()
            .next()
            .unwrap()
            .values()
            .find(|p| p.code == "IPOP")
            .unwrap()
            .count;
        assert_eq!(ipop, 44, "CMS165's initial population over its test cases");
    }
    // --out keeps the results JSONL when --report-out names the QRDA file
    let (results, q) = (d.join("results.jsonl"), d.join("q.xml"));
    let (code, err) = run_cli(&[
        "eval",
        "--measure",
        m,
        "--patients",
        cases,
        "--report",
        "qrda3",
        "--program-year",
        "2026",
        "--out",
        results.to_str().unwrap(),
        "--report-out",
        q.to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read_to_string(&results).unwrap().lines().count(),
        45
    );
    assert!(std::fs::read_to_string(&q).unwrap().contains("2025-05-01"));

    // bad requests: a clear error (exit 2), and no file, not even a temporary one
    let bad = tmp("cli-bad");
    let empty = bad.join("no-patients");
    std::fs::create_dir_all(&empty).unwrap();
    // an NDJSON set with no patient in it
    let empty_nd = tmp("cli-empty-ndjson");
    std::fs::write(empty_nd.join("Patient.ndjson"), "").unwrap();
    let target = bad.join("out.xml");
    let t = target.to_str().unwrap();
    let unknown = bad.join("NoSuchMeasure.json");
    let cases_of_bad: [(&str, Vec<&str>, &str); 8] = [
        (
            "unknown measure",
            vec![
                "--measure",
                unknown.to_str().unwrap(),
                "--patients",
                cases,
                "--out",
                t,
            ],
            "NoSuchMeasure",
        ),
        (
            "empty patient set",
            vec![
                "--measure",
                m,
                "--patients",
                empty.to_str().unwrap(),
                "--out",
                t,
            ],
            "no .json Bundle files",
        ),
        (
            "no patient in the NDJSON",
            vec![
                "--measure",
                m,
                "--patients",
                empty_nd.to_str().unwrap(),
                "--out",
                t,
            ],
            "no patients",
        ),
        (
            "missing directory",
            vec![
                "--measure",
                m,
                "--patients",
                cases,
                "--out",
                "/nonexistent-phm-dir/out.xml",
            ],
            "nonexistent-phm-dir",
        ),
        (
            "a directory as output",
            vec![
                "--measure",
                m,
                "--patients",
                cases,
                "--out",
                bad.to_str().unwrap(),
            ],
            "is a directory",
        ),
        (
            "year not offered",
            vec![
                "--measure",
                m,
                "--patients",
                cases,
                "--out",
                t,
                "--program-year",
                "2024",
            ],
            "2025 or 2026",
        ),
        (
            "invalid NPI",
            vec![
                "--measure",
                m,
                "--patients",
                cases,
                "--out",
                t,
                "--npi",
                "1234567890",
            ],
            "Luhn",
        ),
        (
            "unknown CMS program",
            vec![
                "--measure",
                m,
                "--patients",
                cases,
                "--out",
                t,
                "--cms-program",
                "PCF",
            ],
            "PCF",
        ),
    ];
    for (what, args, expect) in cases_of_bad {
        let mut full = vec!["eval", "--report", "qrda3"];
        if !args.contains(&"--program-year") {
            full.extend(["--program-year", "2026"]);
        }
        full.extend(args.iter().copied());
        let (code, err) = run_cli(&full);
        assert_eq!(code, 2, "{what}: {err}");
        assert!(
            err.contains(expect),
            "{what}: error should mention {expect:?}: {err}"
        );
        assert_eq!(
            files_in(&bad),
            ["no-patients"],
            "{what}: a file was left behind"
        );
    }
    let (code, err) = run_cli(&[
        "eval",
        "--measure",
        m,
        "--patients",
        cases,
        "--report",
        "qrda3",
        "--out",
        t,
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("--program-year"), "{err}");
    // read-only directory (skipped as root, who may write anywhere)
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let ro = bad.join("ro");
        std::fs::create_dir(&ro).unwrap();
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
        if std::fs::File::create(ro.join("probe")).is_err() {
            let (code, err) = run_cli(&[
                "eval",
                "--measure",
                m,
                "--patients",
                cases,
                "--report",
                "qrda3",
                "--program-year",
                "2025",
                "--out",
                ro.join("x.xml").to_str().unwrap(),
            ]);
            assert_eq!(code, 2, "{err}");
            assert!(files_in(&ro).is_empty());
        }
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

#[test]
fn library_refuses_empty_results_and_keeps_an_existing_file() {
    let e = evaluate_measure(
        &shared_dir().join("ecqm/measures/FallsScreeningForFutureFallRiskFHIR.json"),
    );
    let d = tmp("lib");
    let f = d.join("report.xml");
    std::fs::write(&f, "previous export").unwrap();
    let year = ProgramYear::Y2025;
    let empty = MeasureAggregate::new(&e.def, year).unwrap();
    let err = write_qrda3_file(&f, &[empty], &e.period, &Qrda3Options::new(year)).unwrap_err();
    assert!(err.to_string().contains("no patients"), "{err}");
    let err = write_qrda3_file(&f, &[], &e.period, &Qrda3Options::new(year)).unwrap_err();
    assert!(err.to_string().contains("at least one measure"), "{err}");
    let mut bad = Qrda3Options::new(year);
    bad.tin = "12-345".into();
    assert!(write_qrda3_file(&f, &[aggregate(&e, year)], &e.period, &bad).is_err());
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "previous export");
    assert_eq!(files_in(&d), ["report.xml"], "no temporary file left");
    // a measure without a version-specific id cannot be reported
    let mut def = e.def.clone();
    def.version_specific_id = None;
    assert!(MeasureAggregate::new(&def, year)
        .unwrap_err()
        .to_string()
        .contains("version-specific"));
    // success replaces the file whole
    write_qrda3_file(
        &f,
        &[aggregate(&e, year)],
        &e.period,
        &Qrda3Options::new(year),
    )
    .unwrap();
    assert!(std::fs::read_to_string(&f)
        .unwrap()
        .starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"));
    assert_eq!(files_in(&d), ["report.xml"]);
}
