//! `phm-edw report --type qrda3` over the EDW's stored results.
//!
//! The 515 official eCQM test cases of `shared/ecqm` (all 12 measures) are loaded as
//! NDJSON, matched and measured for 2025 (`phm-edw measure`'s library entry point); then
//! the real `phm-edw` binary writes, for each CMS program year (2025, 2026), one QRDA
//! Category III document per measure and one covering every measure. Each must pass
//! `shared/qrda/validate --year Y FILE` (`1 passed, 0 failed`), and, parsed back, every
//! population count and every stratum count must equal the stored summary MeasureReport
//! (`phm-edw report --type summary`) of the same measure and period, and every sex count
//! a count made here in SQL from `edw.measure_result` and `edw.measure_detail`. The
//! stored definitions carry the version-specific id and the four CMS supplemental data
//! elements for every measure. Bad requests (unknown measure, a period without results,
//! an unwritable path, a bad program year or NPI) fail with a clear message and leave
//! no file (an existing file is untouched).
//!
//! `PHM_SHARED` overrides the location of `shared/`.

use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

fn shared_dir() -> PathBuf {
    std::env::var_os("PHM_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
}

fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("json"))
        .collect();
    v.sort();
    v
}

fn parse_ref(r: &str) -> Option<(&str, &str)> {
    let r = r.split("/_history/").next().unwrap_or(r);
    let (ty, id) = r.rsplit_once('/')?;
    Some((ty.rsplit('/').next().unwrap_or(ty), id))
}

fn rewrite_refs(v: &mut Value, ids: &HashMap<(String, String), String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if k == "reference" {
                    if let Some((t, id)) = x.as_str().and_then(parse_ref) {
                        if let Some(new) = ids.get(&(t.to_string(), id.to_string())) {
                            *x = Value::String(format!("{t}/{new}"));
                        }
                    }
                } else {
                    rewrite_refs(x, ids);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| rewrite_refs(x, ids)),
        _ => {}
    }
}

/// Every official case as NDJSON under `out` (one file per type), each case's resource
/// ids and patient identifier values made unique, as `tests/official_cases.rs` does.
/// Returns the number of cases.
fn write_cases(ecqm: &Path, out: &Path) -> usize {
    std::fs::create_dir_all(out).unwrap();
    let mut files: BTreeMap<String, std::io::BufWriter<std::fs::File>> = BTreeMap::new();
    let mut n = 0usize;
    for mdir in json_files(&ecqm.join("measures")) {
        let measure = mdir.file_stem().unwrap().to_string_lossy().to_string();
        for case in json_files(&ecqm.join("cases").join(&measure)) {
            n += 1;
            let bundle: Value = serde_json::from_slice(&std::fs::read(&case).unwrap()).unwrap();
            let mut resources: Vec<Value> = bundle["entry"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|e| e.get("resource").cloned())
                .collect();
            let mut ids = HashMap::new();
            for (i, r) in resources.iter().enumerate() {
                let t = r["resourceType"].as_str().unwrap();
                if t != "Patient" {
                    ids.insert(
                        (t.to_string(), r["id"].as_str().unwrap().to_string()),
                        format!("c{n}-r{i}"),
                    );
                }
            }
            for r in &mut resources {
                let t = r["resourceType"].as_str().unwrap().to_string();
                if let Some(new) = ids.get(&(t.clone(), r["id"].as_str().unwrap().to_string())) {
                    r["id"] = Value::String(new.clone());
                }
                rewrite_refs(r, &ids);
                if t == "Patient" {
                    for i in r
                        .get_mut("identifier")
                        .and_then(Value::as_array_mut)
                        .into_iter()
                        .flatten()
                    {
                        if let Some(v) = i.get("value").and_then(Value::as_str) {
                            i["value"] = Value::String(format!("c{n}-{v}"));
                        }
                    }
                }
                let w = files.entry(t.clone()).or_insert_with(|| {
                    std::io::BufWriter::new(
                        std::fs::File::create(out.join(format!("{t}.ndjson"))).unwrap(),
                    )
                });
                writeln!(w, "{r}").unwrap();
            }
        }
    }
    for (_, mut w) in files {
        w.flush().unwrap();
    }
    n
}

// --- a small element tree (the writer's output: tags, attributes, escaped text) --------

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

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn parse_xml(text: &str) -> El {
    let mut stack = vec![El::default()];
    let mut rest = text;
    while let Some(i) = rest.find('<') {
        rest = &rest[i + 1..];
        let j = rest.find('>').expect("unclosed tag");
        let tag = &rest[..j];
        rest = &rest[j + 1..];
        if tag.starts_with('?') || tag.starts_with('!') {
            continue;
        }
        if let Some(name) = tag.strip_prefix('/') {
            let el = stack.pop().unwrap();
            assert_eq!(el.name, name.trim(), "mismatched end tag");
            stack.last_mut().unwrap().children.push(el);
            continue;
        }
        let (body, empty) = match tag.strip_suffix('/') {
            Some(b) => (b, true),
            None => (tag, false),
        };
        let body = body.trim();
        let (name, mut a) = body.split_once(char::is_whitespace).unwrap_or((body, ""));
        let mut el = El {
            name: name.to_string(),
            ..El::default()
        };
        loop {
            a = a.trim_start();
            if a.is_empty() {
                break;
            }
            let (k, v) = a.split_once('=').expect("attribute");
            let v = v.trim_start();
            let q = v.chars().next().expect("quoted value");
            let end = v[1..].find(q).expect("closing quote");
            el.attrs
                .insert(k.trim().to_string(), unescape(&v[1..1 + end]));
            a = &v[end + 2..];
        }
        if empty {
            stack.last_mut().unwrap().children.push(el);
        } else {
            stack.push(el);
        }
    }
    assert_eq!(stack.len(), 1, "unbalanced document");
    stack.pop().unwrap().children.pop().expect("a root element")
}

#[derive(Debug)]
struct ParsedPopulation {
    code: String,
    count: u64,
    /// (sex|race|ethnicity|payer, code) → n
    sde: BTreeMap<(String, String), u64>,
    /// stratum reference id → n
    strata: BTreeMap<String, u64>,
}

/// measure version-specific id → population id → what the file says.
fn parsed_measures(doc: &El) -> BTreeMap<String, BTreeMap<String, ParsedPopulation>> {
    assert_eq!(doc.name, "ClinicalDocument");
    let section = doc
        .path(&["component", "structuredBody", "component", "section"])
        .expect("measure section");
    let mut out = BTreeMap::new();
    for org in section.kids("entry").filter_map(|e| e.kid("organizer")) {
        let mid = org
            .path(&["reference", "externalDocument", "id"])
            .and_then(|i| i.attr("extension"))
            .expect("measure id")
            .to_string();
        let mut pops = BTreeMap::new();
        for obs in org.kids("component").filter_map(|c| c.kid("observation")) {
            if !obs.has_template("2.16.840.1.113883.10.20.27.3.5") {
                continue;
            }
            let mut p = ParsedPopulation {
                code: obs.kid("value").unwrap().attr("code").unwrap().to_string(),
                count: obs.aggregate_count().expect("population count"),
                sde: BTreeMap::new(),
                strata: BTreeMap::new(),
            };
            for rel in obs.kids("entryRelationship") {
                if rel.attr("typeCode") != Some("COMP") {
                    continue;
                }
                let o = rel.kid("observation").unwrap();
                let n = o.aggregate_count().expect("SDE / stratum count");
                if o.has_template("2.16.840.1.113883.10.20.27.3.4") {
                    p.strata.insert(o.reference_id().unwrap().to_string(), n);
                    continue;
                }
                let kind = [
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
                p.sde.insert((kind.to_string(), c.to_string()), n);
            }
            let pid = obs.reference_id().expect("population id").to_string();
            assert!(pops.insert(pid.clone(), p).is_none(), "{pid} twice");
        }
        out.insert(mid, pops);
    }
    out
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

fn phm_edw(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_phm-edw"))
        .args(args)
        .output()
        .expect("run phm-edw");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// `shared/qrda/validate --year Y FILE`: (last line, full output).
fn validate(year: u32, file: &Path) -> (String, String) {
    let out = Command::new(shared_dir().join("qrda/validate"))
        .args(["--year", &year.to_string()])
        .arg(file)
        .output()
        .expect("run shared/qrda/validate");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let last = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string();
    (
        last,
        format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)),
    )
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    v.sort();
    v
}

struct Stored {
    name: String,
    def: ecqm::MeasureDef,
    summary: Value,
    /// (group id, FHIR population code, sex code) → persons, from SQL.
    sex: BTreeMap<(String, String, String), u64>,
}

#[test]
fn qrda3_from_stored_results_validates_and_equals_the_summary_report() {
    let ecqm_dir = shared_dir().join("ecqm");
    assert!(
        ecqm_dir.join("measures").exists(),
        "shared/ecqm missing: {}",
        ecqm_dir.display()
    );
    assert!(
        shared_dir().join("qrda/validate").is_file(),
        "shared/qrda/validate missing (set PHM_SHARED)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let nd = tmp.path().join("ndjson");
    assert_eq!(write_cases(&ecqm_dir, &nd), 515);

    let pg = testkit::pgharness::PgHarness::start().unwrap();
    let url = pg.create_db("qrda").unwrap();
    let mut c = edw::connect(&url).unwrap();
    edw::migrate::migrate(&mut c).unwrap();
    edw::ingest::ingest(
        &mut c,
        std::slice::from_ref(&nd),
        &edw::ingest::Options::new("madie"),
    )
    .unwrap();
    edw::matching::run(&mut c, &edw::matching::Params::default()).unwrap();
    let rep = edw::measure::run(&mut c, &ecqm_dir.join("measures"), 2025).unwrap();
    assert_eq!(rep.errors, 0);

    // The stored definitions: every measure with its version-specific id and the four
    // CMS supplemental data elements (7 of the 12 Measures list none: added from their
    // libraries), and supplemental data stored for the persons of every measure.
    let mut stored: Vec<Stored> = Vec::new();
    for r in c
        .query(
            "SELECT measure_id, definition::text FROM edw.measure_def ORDER BY 1",
            &[],
        )
        .unwrap()
    {
        let name: String = r.get(0);
        let def: ecqm::MeasureDef = serde_json::from_str(&r.get::<_, String>(1)).unwrap();
        assert!(
            def.version_specific_id
                .as_deref()
                .is_some_and(|v| !v.is_empty()),
            "{name}: no version-specific id stored"
        );
        let kinds: Vec<_> = def
            .supplemental_data
            .iter()
            .filter_map(|s| ecqm::qrda3::SdeKind::of(&s.id, &s.expression))
            .collect();
        for k in ecqm::qrda3::SdeKind::ALL {
            assert!(kinds.contains(&k), "{name}: no {k:?} SDE stored");
        }
        let sex_id = def
            .supplemental_data
            .iter()
            .find(|s| {
                ecqm::qrda3::SdeKind::of(&s.id, &s.expression) == Some(ecqm::qrda3::SdeKind::Sex)
            })
            .unwrap()
            .id
            .clone();
        let mut sex = BTreeMap::new();
        for row in c
            .query(
                "SELECT r.group_id, r.population, d.sde -> $2 ->> 'code', count(*)
                 FROM edw.measure_result r JOIN edw.measure_detail d
                   ON d.person_id = r.person_id AND d.measure_id = r.measure_id
                  AND d.period_start = r.period_start
                 WHERE r.measure_id = $1 AND r.period_start = '2025-01-01' AND r.count = 1
                 GROUP BY 1, 2, 3",
                &[&name, &sex_id],
            )
            .unwrap()
        {
            let code: Option<String> = row.get(2);
            let code = match code.as_deref() {
                Some("M" | "male") => "M",
                Some("F" | "female") => "F",
                _ => continue,
            };
            let n: i64 = row.get(3);
            *sex.entry((row.get(0), row.get(1), code.to_string()))
                .or_default() += n as u64;
        }
        assert!(
            sex.keys().any(|k| k.1 == "initial-population"),
            "{name}: no supplemental data (sex) stored for its initial population"
        );
        let (ok, out, err) = phm_edw(&[
            "report",
            "--db",
            &url,
            "--period",
            "2025",
            "--measure",
            &name,
            "--type",
            "summary",
        ]);
        assert!(ok, "{err}");
        stored.push(Stored {
            name,
            def,
            summary: serde_json::from_str(out.trim()).unwrap(),
            sex,
        });
    }
    assert_eq!(stored.len(), 12, "the 12 measures");

    // The exports: per year, one per measure and one for all measures, by the CLI.
    let out_dir = tmp.path().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let mut jobs: Vec<(u32, PathBuf, Vec<usize>)> = Vec::new();
    for year in [2025u32, 2026] {
        let y = year.to_string();
        let base = [
            "report",
            "--db",
            &url,
            "--period",
            "2025",
            "--type",
            "qrda3",
            "--program-year",
            &y,
        ];
        for (i, s) in stored.iter().enumerate() {
            let f = out_dir.join(format!("{}-{year}.xml", s.name));
            let mut args = base.to_vec();
            args.extend(["--measure", &s.name, "--out", f.to_str().unwrap()]);
            let (ok, _, err) = phm_edw(&args);
            assert!(ok, "{} {year}: {err}", s.name);
            jobs.push((year, f, vec![i]));
        }
        let f = out_dir.join(format!("all-{year}.xml"));
        let mut args = base.to_vec();
        args.extend([
            "--out",
            f.to_str().unwrap(),
            "--cms-program",
            "MIPS_INDIV",
            "--tin",
            "987654321",
            "--npi",
            "1234567893",
            "--org-name",
            "Synthetic Clinic & Partners",
            "--cehrt-id",
            "0015EUK17H3DCM9",
        ]);
        let (ok, _, err) = phm_edw(&args);
        assert!(ok, "all measures {year}: {err}");
        assert!(err.contains("12 measure(s)"), "{err}");
        jobs.push((year, f, (0..stored.len()).collect()));
    }
    assert_eq!(files_in(&out_dir).len(), 26, "no temporary files left");

    // Validate (two at a time), then parse back and compare.
    let next = std::sync::atomic::AtomicUsize::new(0);
    let verdicts: Vec<(usize, String, String)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let k = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let Some((year, f, _)) = jobs.get(k) else {
                            break;
                        };
                        let (last, text) = validate(*year, f);
                        mine.push((k, last, text));
                    }
                    mine
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    assert_eq!(verdicts.len(), jobs.len());
    for (k, last, text) in &verdicts {
        assert_eq!(
            last,
            "1 passed, 0 failed",
            "{}: {text}",
            jobs[*k].1.display()
        );
    }

    let mut checks = 0usize;
    let mut sde_total = 0u64;
    for (year, f, which) in &jobs {
        let text = std::fs::read_to_string(f).unwrap();
        let doc = parse_xml(&text);
        let parsed = parsed_measures(&doc);
        assert_eq!(parsed.len(), which.len(), "{}", f.display());
        if which.len() > 1 {
            // the identifier options reached the header
            assert!(text.contains("extension=\"987654321\""));
            assert!(text.contains("extension=\"MIPS_INDIV\""));
            assert!(text.contains("Synthetic Clinic &amp; Partners"));
        }
        for &i in which {
            let s = &stored[i];
            let vsid = s.def.version_specific_id.as_deref().unwrap();
            let pops = parsed
                .get(vsid)
                .unwrap_or_else(|| panic!("{} not in {}", s.name, f.display()));
            let mut seen = 0;
            for g in s.summary["group"].as_array().unwrap() {
                let gid = g["id"].as_str().unwrap();
                for p in g["population"].as_array().unwrap() {
                    let code = p["code"]["coding"][0]["code"].as_str().unwrap();
                    let pid = p["id"].as_str().unwrap();
                    let q = pops
                        .get(pid)
                        .unwrap_or_else(|| panic!("{}: population {pid} missing", s.name));
                    seen += 1;
                    assert_eq!(q.code, qrda_code(code), "{}: {pid}", s.name);
                    assert_eq!(
                        q.count,
                        p["count"].as_u64().unwrap(),
                        "{} {year}: {code} of group {gid}",
                        s.name
                    );
                    checks += 1;
                    // sex: as counted in SQL from the stored rows
                    for (sex, c25, c26) in [("M", "M", "248153007"), ("F", "F", "248152002")] {
                        let c = if *year == 2025 { c25 } else { c26 };
                        let want = s
                            .sex
                            .get(&(gid.to_string(), code.to_string(), sex.to_string()))
                            .copied()
                            .unwrap_or(0);
                        assert_eq!(
                            q.sde.get(&("sex".to_string(), c.to_string())).copied(),
                            Some(want),
                            "{} {year}: {code} sex {sex}",
                            s.name
                        );
                        sde_total += want;
                        checks += 1;
                    }
                    for kind in ["race", "ethnicity", "payer"] {
                        assert!(
                            q.sde.keys().any(|(k, _)| k == kind),
                            "{}: {code} reports no {kind}",
                            s.name
                        );
                    }
                    // strata: the summary's "true" stratum of each stratifier
                    for st in g["stratifier"].as_array().into_iter().flatten() {
                        let sid = st["id"].as_str().unwrap();
                        let want = st["stratum"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .find(|x| x["value"]["text"] == "true")
                            .and_then(|x| {
                                x["population"]
                                    .as_array()
                                    .unwrap()
                                    .iter()
                                    .find(|y| y["code"]["coding"][0]["code"] == code)
                            })
                            .map(|y| y["count"].as_u64().unwrap())
                            .unwrap_or(0);
                        assert_eq!(
                            q.strata.get(sid).copied(),
                            Some(want),
                            "{} {year}: {code} stratum {sid}",
                            s.name
                        );
                        checks += 1;
                    }
                }
            }
            assert_eq!(seen, pops.len(), "{}: extra populations", s.name);
        }
    }
    assert!(sde_total > 0, "no sex counted at all");
    println!(
        "QRDA III from the EDW: {} files validated, {checks} counts equal the summary / SQL",
        jobs.len()
    );

    // Bad requests: a clear error, no file left, an existing file untouched.
    let bad_dir = tmp.path().join("bad");
    std::fs::create_dir_all(&bad_dir).unwrap();
    let keep = bad_dir.join("keep.xml");
    std::fs::write(&keep, "old").unwrap();
    let keep_s = keep.to_str().unwrap().to_string();
    let new_s = bad_dir.join("new.xml").to_str().unwrap().to_string();
    let missing = bad_dir.join("missing/x.xml").to_str().unwrap().to_string();
    let bad_dir_s = bad_dir.to_str().unwrap().to_string();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--measure", "NoSuchMeasure", "--out", &keep_s],
            "no stored results for measure \"NoSuchMeasure\"",
        ),
        (
            vec!["--measure", "NoSuchMeasure", "--out", &new_s],
            "no stored results for measure",
        ),
        (
            vec!["--period", "2024", "--out", &new_s],
            "no stored results for period 2024",
        ),
        (
            vec!["--period", "2024", "--measure", "122FHIR", "--out", &new_s],
            "no stored results for measure",
        ),
        (vec!["--out", &missing], "missing"),
        (vec!["--out", &bad_dir_s], "is a directory"),
        (vec!["--out", "-"], "give --out FILE"),
        (
            vec!["--program-year", "2024", "--out", &new_s],
            "2025 or 2026",
        ),
        (vec!["--npi", "1234567890", "--out", &new_s], "Luhn"),
        (vec!["--tin", "12", "--out", &new_s], "TIN"),
        (
            vec!["--cms-program", "NOPE", "--out", &new_s],
            "CMS program",
        ),
    ];
    for (extra, want) in cases {
        let mut args = vec!["report", "--db", &url, "--type", "qrda3"];
        if !extra.contains(&"--period") {
            args.extend(["--period", "2025"]);
        }
        if !extra.contains(&"--program-year") {
            args.extend(["--program-year", "2026"]);
        }
        args.extend(extra.iter().copied());
        let (ok, _, err) = phm_edw(&args);
        assert!(!ok, "{extra:?} succeeded");
        assert!(err.contains(want), "{extra:?}: {err:?} lacks {want:?}");
        assert_eq!(files_in(&bad_dir), ["keep.xml"], "{extra:?} left a file");
        assert_eq!(std::fs::read_to_string(&keep).unwrap(), "old");
    }
    // and through the library: the same unknown-measure error
    let e = edw::results::write_qrda3(
        &mut c,
        2025,
        Some("NoSuchMeasure"),
        &ecqm::qrda3::Qrda3Options::new(ecqm::qrda3::ProgramYear::Y2025),
        &bad_dir.join("lib.xml"),
    )
    .unwrap_err();
    assert!(e.0.contains("no stored results for measure"), "{e}");
    assert_eq!(files_in(&bad_dir), ["keep.xml"]);
}
