//! Exports from the workstation against a real SQLCipher cache and the real engine:
//! QRDA III for the 2025 and 2026 program years passes `shared/qrda/validate` and its counts
//! equal the engine's summary MeasureReport computed independently over the same patients
//! (and the app's own FHIR summary export); the CSV exports round-trip through a CSV reader
//! with their header and neutralised formula cells; only the quality analyst may export (the
//! refusal is audited); each export's audit record carries the SHA-256 of the file written;
//! bad requests fail clearly and leave no file behind.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{demo_workstation, rusqlite_open, Fixture};

use access::{Action, Outcome};
use cache::{AuditFilter, Cache};
use ecqm::report::{ReportContext, Summary};
use ecqm::{EvalOptions, Period};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};
use workstation::{
    demo_passphrase, ExportKind, ExportRequest, WorklistQuery, Workstation, MEASURE_RESULT_COLUMNS,
    WORKLIST_COLUMNS,
};

/// A demo panel of `patients`; every patient's family name is made to start with `=`, `+`,
/// `-` or `@` (as a hostile import could), then the panel is evaluated.
fn fixture(patients: u64) -> Fixture {
    let f = demo_workstation(patients);
    if patients > 0 {
        let raw = rusqlite_open(&f);
        raw.execute_batch(
            "UPDATE patients SET
                name = (CASE unicode(substr(id, -1)) % 4 WHEN 0 THEN '=' WHEN 1 THEN '+'
                        WHEN 2 THEN '-' ELSE '@' END) || name,
                raw = json_set(raw, '$.name[0].family',
                        (CASE unicode(substr(id, -1)) % 4 WHEN 0 THEN '=' WHEN 1 THEN '+'
                         WHEN 2 THEN '-' ELSE '@' END) || json_extract(raw, '$.name[0].family'));",
        )
        .unwrap();
        let status = f.ws.evaluate_panel(&|_| {}).unwrap();
        assert_eq!((status.phase.as_str(), status.failed), ("done", 0));
    }
    f
}

fn sign_in(ws: &Workstation, user: &str) {
    ws.logout();
    ws.login(user, &demo_passphrase(user)).unwrap();
    ws.set_purpose("TREAT").unwrap();
}

fn out_dir(f: &Fixture) -> PathBuf {
    let d = f.dir.path().join("exports");
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn request(kind: ExportKind, path: &Path) -> ExportRequest {
    ExportRequest {
        kind,
        path: path.display().to_string(),
        ..Default::default()
    }
}

fn sha256_hex(path: &Path) -> String {
    Sha256::digest(std::fs::read(path).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The newest audit records (a second connection, as the privacy officer's screen reads them).
fn audit(f: &Fixture) -> Vec<access::AuditRecord> {
    Cache::open(&f.path, &f.key)
        .unwrap()
        .audit_list(&AuditFilter {
            action: Some(Action::ExportReports),
            ..Default::default()
        })
        .unwrap()
}

fn shared_dir() -> PathBuf {
    std::env::var_os("PHM_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
}

const FHIR_CODES: [(&str, &str); 6] = [
    ("IPOP", "initial-population"),
    ("DENOM", "denominator"),
    ("DENEX", "denominator-exclusion"),
    ("DENEXCEP", "denominator-exception"),
    ("NUMER", "numerator"),
    ("NUMEX", "numerator-exclusion"),
];

/// Per measure (in export order): the sorted `(population code, count)` of every group.
type Counts = Vec<Vec<(String, u64)>>;

/// The engine's summary MeasureReports over every patient, computed without the
/// workstation: the shipped packages prepared for the period, each patient's stored
/// resources evaluated by `ecqm`, aggregated by `ecqm::report::Summary`. Also returns the
/// per-(measure, group) numerator counts.
fn engine_summary(f: &Fixture, period: &Period) -> (Counts, BTreeMap<(String, String), u64>) {
    let c = Cache::open(&f.path, &f.key).unwrap();
    let packages = workstation::evaluation::shipped_packages().unwrap();
    let measures: Vec<_> = packages
        .iter()
        .map(|p| p.prepare(period).unwrap())
        .collect();
    let shared: Vec<Json> = c
        .shared_resources()
        .unwrap()
        .into_iter()
        .map(|(_, _, raw)| serde_json::from_str(&raw).unwrap())
        .collect();
    let mut summaries: Vec<Summary> = measures
        .iter()
        .map(|m| Summary::new(&m.def, false))
        .collect();
    for p in c.patient_resources(&c.patient_ids().unwrap()).unwrap() {
        let mut resources: Vec<Json> = p
            .resources
            .iter()
            .map(|r| serde_json::from_str(r).unwrap())
            .collect();
        resources.extend(shared.iter().cloned());
        let data = ecqm::engine::patient_data(resources).unwrap();
        for (m, s) in measures.iter().zip(summaries.iter_mut()) {
            s.add(
                &m.evaluate_data(&data, &p.patient_id, EvalOptions::default())
                    .unwrap(),
            );
        }
    }
    let ctx = ReportContext::new(period.clone(), "2026-01-01T00:00:00Z".into());
    let reports: Vec<Json> = measures
        .iter()
        .zip(&summaries)
        .map(|(m, s)| s.report(&m.def, &ctx))
        .collect();
    let mut numer = BTreeMap::new();
    for (m, r) in measures.iter().zip(&reports) {
        for g in r["group"].as_array().unwrap() {
            for p in g["population"].as_array().unwrap() {
                if p["code"]["coding"][0]["code"] == "numerator" {
                    numer.insert(
                        (m.def.name.clone(), g["id"].as_str().unwrap().to_string()),
                        p["count"].as_u64().unwrap(),
                    );
                }
            }
        }
    }
    (reports.iter().map(report_counts).collect(), numer)
}

fn report_counts(r: &Json) -> Vec<(String, u64)> {
    assert_eq!(r["resourceType"], "MeasureReport");
    let mut v: Vec<(String, u64)> = r["group"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["population"].as_array().unwrap().iter())
        .filter_map(|p| {
            let code = p["code"]["coding"][0]["code"].as_str()?;
            FHIR_CODES
                .iter()
                .any(|(_, c)| *c == code)
                .then(|| (code.to_string(), p["count"].as_u64().unwrap()))
        })
        .collect();
    v.sort();
    v
}

/// Per measure organizer of a QRDA III file: the sorted `(population code, count)`.
fn qrda_counts(xml: &str) -> Counts {
    let doc = roxmltree::Document::parse(xml).unwrap();
    let has_template = |n: roxmltree::Node, root: &str| {
        n.children()
            .any(|c| c.has_tag_name("templateId") && c.attribute("root") == Some(root))
    };
    let mut out = Vec::new();
    for org in doc.descendants().filter(|n| {
        n.has_tag_name("organizer") && has_template(*n, "2.16.840.1.113883.10.20.27.3.1")
    }) {
        let mut v = Vec::new();
        for obs in org
            .children()
            .filter(|c| c.has_tag_name("component"))
            .flat_map(|c| c.children())
        {
            if !(obs.has_tag_name("observation")
                && has_template(obs, "2.16.840.1.113883.10.20.27.3.5"))
            {
                continue;
            }
            let code = obs
                .children()
                .find(|c| c.has_tag_name("value"))
                .and_then(|v| v.attribute("code"))
                .unwrap();
            let count: u64 = obs
                .children()
                .filter(|c| {
                    c.has_tag_name("entryRelationship") && c.attribute("typeCode") == Some("SUBJ")
                })
                .flat_map(|c| c.children())
                .find(|o| {
                    o.has_tag_name("observation")
                        && has_template(*o, "2.16.840.1.113883.10.20.27.3.3")
                })
                .and_then(|o| o.children().find(|c| c.has_tag_name("value")))
                .and_then(|v| v.attribute("value"))
                .unwrap()
                .parse()
                .unwrap();
            let fhir = FHIR_CODES.iter().find(|(q, _)| *q == code).unwrap().1;
            v.push((fhir.to_string(), count));
        }
        v.sort();
        out.push(v);
    }
    out
}

/// `xml` without what differs between two exports of the same data: UUIDs and timestamps.
fn without_ids_and_times(xml: &str) -> String {
    let uuid = regex_lite(xml, |w| {
        w.len() == 36 && w.chars().filter(|c| *c == '-').count() == 4
    });
    regex_lite(&uuid, |w| {
        w.len() >= 14 && w[..14].chars().all(|c| c.is_ascii_digit())
    })
}

/// Replaces each double-quoted attribute value for which `volatile` holds with `"…"`.
fn regex_lite(xml: &str, volatile: impl Fn(&str) -> bool) -> String {
    let mut out = String::with_capacity(xml.len());
    for (i, part) in xml.split('"').enumerate() {
        if i > 0 {
            out.push('"');
        }
        if i % 2 == 1 && volatile(part) {
            out.push('…');
        } else {
            out.push_str(part);
        }
    }
    out
}

fn validate(year: u32, file: &Path) -> Option<(String, String)> {
    let v = shared_dir().join("qrda/validate");
    if !v.is_file() {
        eprintln!(
            "SKIPPED validation: {} is absent (set PHM_SHARED)",
            v.display()
        );
        return None;
    }
    let out = Command::new(&v)
        .args(["--year", &year.to_string()])
        .arg(file)
        .output()
        .unwrap();
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
    Some((last, text))
}

#[test]
fn qrda3_for_2025_and_2026_validates_and_equals_the_engines_summary() {
    let f = fixture(120);
    sign_in(&f.ws, "quality");
    let dir = out_dir(&f);

    // The app's own FHIR summary and subject-list exports.
    let summary_file = dir.join("summary.json");
    let summary =
        f.ws.export(&request(ExportKind::MeasureReportSummary, &summary_file))
            .unwrap();
    assert_eq!(
        summary.measures.len(),
        12,
        "every shipped measure by default"
    );
    let period = Period::new(
        summary.period_start.as_deref().unwrap(),
        summary.period_end.as_deref().unwrap(),
    )
    .unwrap();
    let bundle: Json = serde_json::from_slice(&std::fs::read(&summary_file).unwrap()).unwrap();
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["type"], "collection");
    let app_reports: Vec<&Json> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .collect();
    assert_eq!(app_reports.len(), 12);
    assert!(app_reports.iter().all(|r| r["type"] == "summary"));
    let app_counts: Counts = app_reports.iter().map(|r| report_counts(r)).collect();

    let (engine, _) = engine_summary(&f, &period);
    assert_eq!(
        app_counts, engine,
        "the app's summary export = the engine's"
    );

    let subject_file = dir.join("subjects.json");
    let subjects =
        f.ws.export(&request(
            ExportKind::MeasureReportSubjectList,
            &subject_file,
        ))
        .unwrap();
    let sb: Json = serde_json::from_slice(&std::fs::read(&subject_file).unwrap()).unwrap();
    let first = &sb["entry"][0]["resource"];
    assert_eq!(first["type"], "subject-list");
    assert!(sb["entry"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["resource"]["contained"][0]["resourceType"] == "List"));
    let sc: Counts = sb["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| report_counts(&e["resource"]))
        .collect();
    assert_eq!(sc, engine);
    let rec = &audit(&f)[0];
    assert!(
        !rec.patient_ids.is_empty(),
        "a subject list names its patients"
    );
    assert!(rec.query.as_deref().unwrap().contains(&subjects.sha256));

    for year in [2025u32, 2026] {
        let file = dir.join(format!("qrda3-{year}.xml"));
        let mut req = request(ExportKind::Qrda3, &file);
        req.program_year = Some(year);
        let r = f.ws.export(&req).unwrap();
        assert_eq!(r.rows, 12);
        assert_eq!(r.bytes, std::fs::metadata(&file).unwrap().len());
        let xml = std::fs::read_to_string(&file).unwrap();
        let ext = if year == 2025 {
            "2024-12-01"
        } else {
            "2025-05-01"
        };
        assert!(xml.contains(&format!(
            "root=\"2.16.840.1.113883.10.20.27.1.2\" extension=\"{ext}\""
        )));
        if let Some((last, text)) = validate(year, &file) {
            assert_eq!(last, "1 passed, 0 failed", "{year}:\n{text}");
        }
        assert_eq!(
            qrda_counts(&xml),
            engine,
            "{year}: the QRDA III counts = the engine's summary MeasureReport"
        );
    }

    // From the stored results (above) and, once they are not current (an import after the
    // evaluation), from a new evaluation: the same file but for its id and times.
    let stored_file = dir.join("stored.xml");
    let mut req = request(ExportKind::Qrda3, &stored_file);
    req.program_year = Some(2026);
    let stored = f.ws.export(&req).unwrap();
    assert!(!stored.evaluated_now, "the stored results are current");
    rusqlite_open(&f)
        .execute(
            "INSERT INTO settings(key, value) VALUES ('last_import_at', '2999-01-01T00:00:00Z')
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [],
        )
        .unwrap();
    let fresh_file = dir.join("fresh.xml");
    req.path = fresh_file.display().to_string();
    let fresh = f.ws.export(&req).unwrap();
    assert!(
        fresh.evaluated_now,
        "an import since: evaluated for the export"
    );
    let stored_xml = std::fs::read_to_string(&stored_file).unwrap();
    assert_eq!(
        without_ids_and_times(&std::fs::read_to_string(&fresh_file).unwrap()),
        without_ids_and_times(&stored_xml),
        "stored and freshly evaluated results give the same QRDA III"
    );
    assert!(
        stored_xml.contains("2.16.840.1.113883.10.20.27.3.5"),
        "supplemental data"
    );

    // Chosen measures only, by CMS short name.
    let file = dir.join("two.xml");
    let mut req = request(ExportKind::Qrda3, &file);
    req.program_year = Some(2026);
    let other = summary
        .measures
        .iter()
        .find(|m| !m.contains("122"))
        .unwrap()
        .clone();
    req.measures = vec!["cms122".into(), other];
    let r = f.ws.export(&req).unwrap();
    assert_eq!(r.measures.len(), 2);
    assert_eq!(
        qrda_counts(&std::fs::read_to_string(&file).unwrap()).len(),
        2
    );
    if let Some((last, text)) = validate(2026, &file) {
        assert_eq!(last, "1 passed, 0 failed", "{text}");
    }
}

#[test]
fn csv_exports_round_trip_with_a_header_iso_dates_and_neutralised_cells() {
    let f = fixture(80);
    sign_in(&f.ws, "quality");
    let dir = out_dir(&f);

    let file = dir.join("results.csv");
    let r =
        f.ws.export(&request(ExportKind::CsvMeasureResults, &file))
            .unwrap();
    let mut reader = csv::Reader::from_path(&file).unwrap();
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_string)
        .collect();
    assert_eq!(header, MEASURE_RESULT_COLUMNS);
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len() as u64, r.rows);
    assert!(!rows.is_empty());
    let col = |name: &str| {
        MEASURE_RESULT_COLUMNS
            .iter()
            .position(|c| *c == name)
            .unwrap()
    };
    let iso = |s: &str| s.len() == 10 && access::time::parse_date(s).is_some();
    let mut numer: BTreeMap<(String, String), u64> = BTreeMap::new();
    for row in &rows {
        let name = &row[col("patient_name")];
        assert!(
            ["'=", "'+", "'-", "'@"].iter().any(|p| name.starts_with(p)),
            "formula cell not neutralised: {name:?}"
        );
        assert!(
            iso(&row[col("birth_date")]),
            "{:?}",
            &row[col("birth_date")]
        );
        assert!(iso(&row[col("period_start")]) && iso(&row[col("period_end")]));
        assert_eq!(&row[col("initial_population")], "1");
        for c in [
            "denominator",
            "numerator",
            "denominator_exclusion",
            "numerator_exclusion",
        ] {
            assert!(matches!(&row[col(c)], "0" | "1"));
        }
        *numer
            .entry((
                row[col("measure_id")].to_string(),
                row[col("group_id")].to_string(),
            ))
            .or_default() += row[col("numerator")].parse::<u64>().unwrap();
    }
    let period = Period::new(
        r.period_start.as_deref().unwrap(),
        r.period_end.as_deref().unwrap(),
    )
    .unwrap();
    let (_, engine_numer) = engine_summary(&f, &period);
    let engine_numer: BTreeMap<_, _> = engine_numer.into_iter().filter(|(_, n)| *n > 0).collect();
    let numer: BTreeMap<_, _> = numer.into_iter().filter(|(_, n)| *n > 0).collect();
    assert_eq!(
        numer, engine_numer,
        "numerator flags sum to the engine's counts"
    );

    // A worklist view: the saved view's rows, every page.
    let q = WorklistQuery {
        min_gaps: Some(1),
        ..Default::default()
    };
    // The quality analyst does not work the worklist in the app; a view saved for them (as
    // another tool could) and the same filters read straight from the cache.
    let c = Cache::open(&f.path, &f.key).unwrap();
    c.save_view(
        "quality",
        "everyone open",
        &serde_json::to_string(&q).unwrap(),
    )
    .unwrap();
    let page = c
        .worklist(
            &cache::WorklistQuery {
                min_gaps: Some(1),
                limit: 1000,
                ..Default::default()
            },
            None,
        )
        .unwrap();
    drop(c);
    let expected = workstation::WorklistPage {
        total: page.total,
        offset: 0,
        limit: 1000,
        rows: page
            .rows
            .into_iter()
            .map(|r| workstation::WorklistRow {
                patient_id: r.patient_id,
                patient_name: r.patient_name,
                birth_date: r.birth_date,
                sex: r.sex,
                provider: r.provider_name,
                measure_id: r.measure_id,
                measure: r.measure,
                group_id: r.group_id,
                status: r.status,
                why_open: r.why_open,
                closes_with: r.closes_with,
                due_date: r.due_date,
                overdue: r.overdue,
                open_gaps: r.open_gaps,
                last_outreach_at: r.last_outreach_at,
                last_outreach: r.last_outreach,
                state: r.state,
                assignee: r.assignee,
                snoozed_until: r.snoozed_until,
                visit_date: r.visit_date,
            })
            .collect(),
    };
    assert!(expected.total > 0);
    let file = dir.join("worklist.csv");
    let mut req = request(ExportKind::CsvWorklist, &file);
    req.saved_view = Some("everyone open".into());
    let w = f.ws.export(&req).unwrap();
    assert_eq!(w.rows, expected.total);
    let mut reader = csv::Reader::from_path(&file).unwrap();
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_string)
        .collect();
    assert_eq!(header, WORKLIST_COLUMNS);
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len() as u64, expected.total);
    for (row, want) in rows.iter().zip(&expected.rows) {
        assert_eq!(&row[0], want.patient_id);
        assert_eq!(row[1].to_string(), format!("'{}", want.patient_name));
        assert_eq!(&row[6], want.measure);
        assert!(iso(&row[11]), "due date {:?}", &row[11]);
    }
    // The current filters (no saved view) work the same way.
    let file = dir.join("worklist2.csv");
    let mut req = request(ExportKind::CsvWorklist, &file);
    req.worklist = Some(q);
    assert_eq!(f.ws.export(&req).unwrap().rows, expected.total);
}

#[test]
fn only_the_quality_analyst_exports_and_each_export_is_audited_with_its_sha256() {
    let f = fixture(40);
    let dir = out_dir(&f);
    let file = dir.join("refused.csv");
    for user in ["clinician", "caremanager", "privacy"] {
        sign_in(&f.ws, user);
        let e =
            f.ws.export(&request(ExportKind::CsvMeasureResults, &file))
                .unwrap_err();
        assert_eq!(e.code, "denied", "{user}");
        let rec = &audit(&f)[0];
        assert_eq!((rec.user.as_str(), rec.outcome), (user, Outcome::Denied));
        assert!(f.ws.export_options().is_err());
    }
    assert!(files_in(&dir).is_empty(), "a refused export writes nothing");

    sign_in(&f.ws, "quality");
    let opts = f.ws.export_options().unwrap();
    assert_eq!(opts.measures.len(), 12);
    assert_eq!(opts.program_years, [2025, 2026]);
    for (kind, name) in [
        (ExportKind::CsvMeasureResults, "r.csv"),
        (ExportKind::Qrda3, "q.xml"),
        (ExportKind::MeasureReportSummary, "s.json"),
    ] {
        let path = dir.join(name);
        let mut req = request(kind, &path);
        req.program_year = Some(2025);
        req.measures = vec![opts.measures[0].id.clone()];
        let r = f.ws.export(&req).unwrap();
        let sha = sha256_hex(&path);
        assert_eq!(r.sha256, sha);
        let rec = &audit(&f)[0];
        assert_eq!(rec.user, "quality");
        assert_eq!(rec.outcome, Outcome::Allowed);
        assert_eq!(rec.action, Action::ExportReports);
        let q: Json = serde_json::from_str(rec.query.as_deref().unwrap()).unwrap();
        assert_eq!(q["sha256"], sha.as_str(), "{kind:?}");
        assert_eq!(q["measures"][0], opts.measures[0].id.as_str());
        assert_eq!(q["patients"], r.patients);
        assert_eq!(
            rec.detail.as_deref(),
            Some(format!("export sha256 {sha}").as_str())
        );
        if kind == ExportKind::CsvMeasureResults {
            assert!(
                !rec.patient_ids.is_empty(),
                "patient-level: the patients are named"
            );
        } else {
            assert!(rec.patient_ids.is_empty(), "aggregate: only how many");
        }
    }
}

#[test]
fn bad_requests_fail_clearly_and_leave_no_file() {
    let f = fixture(40);
    sign_in(&f.ws, "quality");
    let dir = out_dir(&f);
    // An existing file at the destination is left untouched by a failed export.
    let keep = dir.join("keep.xml");
    std::fs::write(&keep, "old").unwrap();

    let mut unknown = request(ExportKind::Qrda3, &keep);
    unknown.program_year = Some(2025);
    unknown.measures = vec!["CMS99999".into()];
    let e = f.ws.export(&unknown).unwrap_err();
    assert_eq!(e.code, "unknown_measure");
    assert!(e.message.contains("CMS99999"));

    let mut no_data = request(ExportKind::Qrda3, &keep);
    no_data.program_year = Some(2026);
    no_data.measurement_year = Some(2031);
    let e = f.ws.export(&no_data).unwrap_err();
    assert_eq!(e.code, "no_data", "{}", e.message);
    assert!(e.message.contains("2031"));

    let mut bad_year = request(ExportKind::Qrda3, &keep);
    bad_year.program_year = Some(2024);
    assert_eq!(f.ws.export(&bad_year).unwrap_err().code, "invalid");
    let no_year = request(ExportKind::Qrda3, &keep);
    assert_eq!(f.ws.export(&no_year).unwrap_err().code, "invalid");

    for path in [
        dir.join("missing-folder").join("x.csv"),
        dir.clone(),
        PathBuf::from("relative.csv"),
    ] {
        let e =
            f.ws.export(&request(ExportKind::CsvMeasureResults, &path))
                .unwrap_err();
        assert!(matches!(e.code, "export_io" | "invalid"), "{path:?}: {e:?}");
    }
    assert_eq!(files_in(&dir), ["keep.xml"], "no file, no temporary file");
    assert_eq!(std::fs::read_to_string(&keep).unwrap(), "old");
    let rec = &audit(&f)[0];
    assert_eq!(rec.outcome, Outcome::Error, "failures are audited");

    // An empty panel.
    let empty = fixture(0);
    sign_in(&empty.ws, "quality");
    let edir = out_dir(&empty);
    let e = empty
        .ws
        .export(&request(
            ExportKind::MeasureReportSummary,
            &edir.join("s.json"),
        ))
        .unwrap_err();
    assert_eq!(e.code, "empty_panel");
    assert!(files_in(&edir).is_empty());
}
