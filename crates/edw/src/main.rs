//! `phm-edw`: the central EDW command line.
use std::process::ExitCode;

const USAGE: &str = "usage:
  phm-edw migrate --db URL
  phm-edw ingest DIR|FILE... --source NAME --db URL [--chunk N] [--workers N] [--no-match]
  phm-edw match --db URL [--upper W] [--lower W]
  phm-edw review list --db URL [--limit N]      (the matching review queue)
  phm-edw review link|reject A_ID B_ID --db URL
  phm-edw attribute --db URL [--as-of YYYY-MM-DD]
  phm-edw etl --db URL
  phm-edw measure --db URL --period YEAR --package FILE|DIR [--full]
                  [--improvement-notation MEASURE=increase|decrease,...]
                  (eCQM bundles; only persons changed since the last run unless --full)
  phm-edw results --db URL --period YEAR [--measure NAME] --out FILE|-
                  (one JSON line per person and measure, as `phm-ecqm eval` writes)
  phm-edw report --db URL --period YEAR --measure NAME --type summary|subject-list|individual
                 [--out FILE|-]   (FHIR MeasureReports from the stored results)
  phm-edw report --db URL --period YEAR --type qrda3 --program-year 2025|2026 [--measure NAME]
                 --out FILE [--cms-program NAME] [--tin N] [--npi N] [--org-name TEXT]
                 [--cehrt-id ID]   (QRDA Category III of the stored results: the measure
                 named or every measure with results for the period; written atomically)
  phm-edw serve --db URL [--addr HOST:PORT] [--tls-cert PEM --tls-key PEM] [--state-dir DIR]
                [--plain-http] [--public-url URL] [--jwks-ca PEM] [--pool N]
                (HTTPS; without --tls-cert/--tls-key a self-signed certificate for
                localhost/127.0.0.1 is made once in DIR/tls; --plain-http only on loopback)
  phm-edw client add --db URL --name NAME --org ORG_ID|SOURCE_ID (--jwks FILE | --jwks-url URL)
                     --group ID [--group ID ...]     (prints the new client id)
  phm-edw client list --db URL
  phm-edw client revoke --db URL CLIENT_ID
URL: postgresql://user@host/db or 'host=/socket/dir user=app dbname=edw'";

struct Args {
    positional: Vec<String>,
    opts: Vec<(String, Option<String>)>,
}

impl Args {
    fn parse(raw: &[String], flags: &[&str]) -> Result<Args, String> {
        let mut positional = Vec::new();
        let mut opts = Vec::new();
        let mut i = 0;
        while i < raw.len() {
            let a = &raw[i];
            if let Some(name) = a.strip_prefix("--") {
                if flags.contains(&name) {
                    opts.push((name.to_string(), None));
                } else {
                    let v = raw
                        .get(i + 1)
                        .ok_or_else(|| format!("option --{name} needs a value"))?;
                    opts.push((name.to_string(), Some(v.clone())));
                    i += 1;
                }
            } else {
                positional.push(a.clone());
            }
            i += 1;
        }
        Ok(Args { positional, opts })
    }
    fn get(&self, name: &str) -> Option<&str> {
        self.opts
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }
    fn req(&self, name: &str) -> Result<&str, String> {
        self.get(name).ok_or_else(|| format!("missing --{name}"))
    }
    fn flag(&self, name: &str) -> bool {
        self.opts.iter().any(|(n, v)| n == name && v.is_none())
    }
    fn check(&self, allowed: &[&str]) -> Result<(), String> {
        for (n, _) in &self.opts {
            if !allowed.contains(&n.as_str()) {
                return Err(format!("unknown option --{n}"));
            }
        }
        Ok(())
    }
}

fn num<T: std::str::FromStr>(a: &Args, name: &str, default: T) -> Result<T, String> {
    match a.get(name) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| format!("--{name}: not a valid number: {v}")),
    }
}

fn run(argv: Vec<String>) -> Result<(), String> {
    let cmd = argv.first().map(String::as_str).unwrap_or("");
    let rest = &argv[argv.len().min(1)..];
    let e = |x: edw::Error| x.0;
    match cmd {
        "migrate" => {
            let a = Args::parse(rest, &[])?;
            a.check(&["db"])?;
            let mut c = edw::connect(a.req("db")?).map_err(e)?;
            let applied = edw::migrate::migrate(&mut c).map_err(e)?;
            eprintln!(
                "migrate: applied {} migration(s) {:?}; schema version {}",
                applied.len(),
                applied,
                edw::migrate::latest_version()
            );
            Ok(())
        }
        "ingest" => {
            let a = Args::parse(rest, &["no-match", "quiet"])?;
            a.check(&["db", "source", "chunk", "workers", "no-match", "quiet"])?;
            if a.positional.is_empty() {
                return Err("ingest: give at least one DIR or FILE".into());
            }
            let mut opts = edw::ingest::Options::new(a.req("source")?);
            opts.chunk = num(&a, "chunk", 5000usize)?.max(1);
            opts.progress = !a.flag("quiet");
            opts.workers = num(&a, "workers", 2usize)?.clamp(1, 16);
            opts.url = Some(a.req("db")?.to_string());
            let paths: Vec<std::path::PathBuf> = a.positional.iter().map(Into::into).collect();
            let mut c = edw::connect(a.req("db")?).map_err(e)?;
            let t0 = std::time::Instant::now();
            let reps = edw::ingest::ingest(&mut c, &paths, &opts).map_err(e)?;
            let (mut lines, mut loaded, mut quar, mut skipped) = (0, 0, 0, 0);
            for r in &reps {
                lines += r.lines;
                loaded += r.loaded;
                quar += r.quarantined;
                skipped += r.already_loaded as i64;
            }
            if !a.flag("no-match") {
                let params = edw::matching::Params {
                    progress: opts.progress,
                    ..Default::default()
                };
                let m = edw::matching::run(&mut c, &params).map_err(e)?;
                eprintln!("ingest: matching: {}", m.summary());
            }
            let secs = t0.elapsed().as_secs_f64();
            eprintln!(
                "ingest: {} file(s) ({skipped} already loaded): {lines} lines = {loaded} loaded + {quar} quarantined in {secs:.1}s ({:.0} lines/s)",
                reps.len(),
                lines as f64 / secs.max(1e-3)
            );
            Ok(())
        }
        "match" => {
            let a = Args::parse(rest, &[])?;
            a.check(&["db", "upper", "lower"])?;
            let mut p = edw::matching::Params::default();
            p.upper = num(&a, "upper", p.upper)?;
            p.lower = num(&a, "lower", p.lower)?;
            p.progress = true;
            let mut c = edw::connect(a.req("db")?).map_err(e)?;
            let m = edw::matching::run(&mut c, &p).map_err(e)?;
            println!("{}", m.summary());
            Ok(())
        }
        "review" => {
            let a = Args::parse(rest, &[])?;
            a.check(&["db", "limit"])?;
            let mut c = edw::connect(a.req("db")?).map_err(e)?;
            match a.positional.as_slice() {
                [cmd] if cmd == "list" => {
                    let items = edw::review::list(&mut c, num(&a, "limit", 50)?).map_err(e)?;
                    println!("a_id\tb_id\tscore\ta_source\tb_source\tagreement");
                    for it in &items {
                        let agree: Vec<String> = it
                            .agreement
                            .iter()
                            .map(|(f, g)| format!("{f}={}", g.as_str()))
                            .collect();
                        println!(
                            "{}\t{}\t{:.2}\t{}\t{}\t{}",
                            it.a_id,
                            it.b_id,
                            it.score,
                            it.a_source,
                            it.b_source,
                            agree.join(",")
                        );
                    }
                    eprintln!("review: {} open pairs shown", items.len());
                    Ok(())
                }
                [cmd, x, y] if cmd == "link" || cmd == "reject" => {
                    let ids = (x.parse::<i64>(), y.parse::<i64>());
                    let (Ok(x), Ok(y)) = ids else {
                        return Err("review link|reject takes two record ids".into());
                    };
                    let d = if cmd == "link" {
                        edw::review::Decision::Link
                    } else {
                        edw::review::Decision::Reject
                    };
                    edw::review::decide(&mut c, x, y, d).map_err(e)?;
                    eprintln!(
                        "review: pair ({x}, {y}) {cmd}ed{}",
                        if cmd == "link" {
                            "; the records become one person at the next `phm-edw match`"
                        } else {
                            ""
                        }
                    );
                    Ok(())
                }
                _ => Err("review list | review link A B | review reject A B".into()),
            }
        }
        "attribute" => {
            let a = Args::parse(rest, &[])?;
            a.check(&["db", "as-of"])?;
            let mut c = edw::connect(a.req("db")?).map_err(e)?;
            let r = edw::attribute::run(&mut c, a.get("as-of")).map_err(e)?;
            println!(
                "{{\"attributed\":{},\"unattributed\":{},\"practitioner_groups\":{},\"care_team_groups\":{}}}",
                r.attributed, r.unattributed, r.practitioner_groups, r.care_team_groups
            );
            Ok(())
        }
        "etl" => {
            let a = Args::parse(rest, &[])?;
            a.check(&["db"])?;
            let mut c = edw::connect(a.req("db")?).map_err(e)?;
            let r = edw::etl::run_with_progress(&mut c, true).map_err(e)?;
            println!("{}", r.summary());
            Ok(())
        }
        "measure" => {
            let a = Args::parse(rest, &["full"])?;
            a.check(&["db", "period", "package", "improvement-notation", "full"])?;
            let year: i32 = num(&a, "period", 0)?;
            if !(1900..=2200).contains(&year) {
                return Err("--period YEAR is required (e.g. --period 2025)".into());
            }
            let mut c = edw::connect(a.req("db")?).map_err(e)?;
            let pkg = std::path::PathBuf::from(a.req("package")?);
            let opts = edw::measure::Options {
                overrides: edw::measure::parse_improvement_overrides(
                    a.get("improvement-notation").unwrap_or(""),
                )
                .map_err(e)?,
                full: a.flag("full"),
                progress: true,
                ..Default::default()
            };
            let r = edw::measure::run_with(&mut c, &pkg, year, &opts).map_err(e)?;
            println!(
                "{{\"mode\":\"{}\",\"measures\":{},\"persons\":{},\"results\":{},\"open_gaps\":{},\"errors\":{}}}",
                r.mode, r.measures, r.persons, r.results, r.open_gaps, r.errors
            );
            Ok(())
        }
        "report" if rest.windows(2).any(|w| w[0] == "--type" && w[1] == "qrda3") => {
            let a = Args::parse(rest, &[])?;
            a.check(&[
                "db",
                "period",
                "measure",
                "out",
                "type",
                "program-year",
                "cms-program",
                "tin",
                "npi",
                "org-name",
                "cehrt-id",
            ])?;
            let year: i32 = num(&a, "period", 0)?;
            if !(1900..=2200).contains(&year) {
                return Err("--period YEAR is required (e.g. --period 2025)".into());
            }
            let program_year = ecqm::qrda3::ProgramYear::parse(
                a.get("program-year")
                    .ok_or("--type qrda3 needs --program-year 2025|2026")?,
            )
            .map_err(|_| "--program-year: 2025 or 2026".to_string())?;
            let out = a.req("out")?;
            if out == "-" {
                return Err("--type qrda3 writes a file: give --out FILE".into());
            }
            let mut o = ecqm::qrda3::Qrda3Options::new(program_year);
            o.software_name = format!("PHM Workstation phm-edw {}", env!("CARGO_PKG_VERSION"));
            for (opt, field) in [
                ("cms-program", &mut o.program),
                ("tin", &mut o.tin),
                ("npi", &mut o.npi),
                ("org-name", &mut o.organization_name),
                ("cehrt-id", &mut o.cehrt_id),
            ] {
                if let Some(v) = a.get(opt) {
                    *field = v.to_string();
                }
            }
            o.validate().map_err(|x| x.to_string())?;
            if year != program_year.year() as i32 {
                eprintln!(
                    "phm-edw: warning: the measurement period is {year} but the QRDA III follows the CMS {program_year} program year"
                );
            }
            let mut c = edw::connect(a.req("db")?).map_err(e)?;
            let w = edw::results::write_qrda3(
                &mut c,
                year,
                a.get("measure"),
                &o,
                std::path::Path::new(out),
            )
            .map_err(e)?;
            eprintln!(
                "report: QRDA III {program_year} for period {year}: {} measure(s) ({}), {} bytes written to {out}",
                w.measures.len(),
                w.measures.join(", "),
                w.bytes
            );
            Ok(())
        }
        "results" | "report" => {
            let a = Args::parse(rest, &[])?;
            let qrda = [
                "program-year",
                "cms-program",
                "tin",
                "npi",
                "org-name",
                "cehrt-id",
            ];
            if let Some(q) = qrda.iter().find(|q| a.get(q).is_some()) {
                return Err(format!("--{q} goes with `report --type qrda3`"));
            }
            a.check(&["db", "period", "measure", "out", "type"])?;
            let year: i32 = num(&a, "period", 0)?;
            if !(1900..=2200).contains(&year) {
                return Err("--period YEAR is required (e.g. --period 2025)".into());
            }
            let kind = if cmd == "report" {
                let t = a.req("type")?;
                Some(edw::results::ReportType::parse(t).ok_or_else(|| {
                    format!("--type {t:?}: summary, subject-list, individual or qrda3")
                })?)
            } else {
                None
            };
            let measure = match kind {
                Some(_) => Some(a.req("measure")?),
                None => a.get("measure"),
            };
            let out_path = match (kind, a.get("out")) {
                (None, None) => return Err("results: missing --out FILE (or - for stdout)".into()),
                (_, p) => p.unwrap_or("-"),
            };
            let mut c = edw::connect(a.req("db")?).map_err(e)?;
            let write = |c: &mut postgres::Client, w: &mut dyn std::io::Write| match kind {
                None => edw::results::write_results(c, year, measure, w),
                Some(k) => edw::results::write_report(c, year, measure.unwrap_or(""), k, w),
            };
            let n = if out_path == "-" {
                let stdout = std::io::stdout();
                let mut w = std::io::BufWriter::new(stdout.lock());
                let n = write(&mut c, &mut w).map_err(e)?;
                std::io::Write::flush(&mut w).map_err(|x| x.to_string())?;
                n
            } else {
                edw::results::write_file_atomically(std::path::Path::new(out_path), |w| {
                    write(&mut c, w)
                })
                .map_err(e)?
            };
            eprintln!("{cmd}: {n} line(s) written");
            Ok(())
        }
        "serve" => {
            let a = Args::parse(rest, &["plain-http"])?;
            a.check(&[
                "db",
                "addr",
                "tls-cert",
                "tls-key",
                "state-dir",
                "plain-http",
                "public-url",
                "jwks-ca",
                "pool",
            ])?;
            let path = |n: &str| a.get(n).map(std::path::PathBuf::from);
            edw::serve::serve(edw::serve::ServeOptions {
                db: a.req("db")?.to_string(),
                addr: a.get("addr").unwrap_or("127.0.0.1:8443").to_string(),
                tls_cert: path("tls-cert"),
                tls_key: path("tls-key"),
                state_dir: path("state-dir"),
                plain_http: a.flag("plain-http"),
                public_url: a.get("public-url").map(str::to_owned),
                jwks_ca: path("jwks-ca"),
                pool_size: num(&a, "pool", 8usize)?.clamp(2, 64),
            })
            .map_err(e)
        }
        "client" => {
            let sub = rest.first().map(String::as_str).unwrap_or("");
            let a = Args::parse(&rest[rest.len().min(1)..], &[])?;
            let mut c = edw::serve::pg::connect_sync(a.req("db")?).map_err(e)?;
            match sub {
                "add" => {
                    a.check(&["db", "name", "org", "jwks", "jwks-url", "group"])?;
                    let jwks =
                        match (a.get("jwks"), a.get("jwks-url")) {
                            (Some(f), None) => {
                                let text = std::fs::read_to_string(f)
                                    .map_err(|x| format!("--jwks {f}: {x}"))?;
                                let v: serde_json::Value = serde_json::from_str(&text)
                                    .map_err(|x| format!("--jwks {f}: not JSON: {x}"))?;
                                edw::serve::clients::Jwks::Inline(v)
                            }
                            (None, Some(u)) => edw::serve::clients::Jwks::Url(u.to_string()),
                            _ => return Err(
                                "client add: give exactly one of --jwks FILE and --jwks-url URL"
                                    .into(),
                            ),
                        };
                    let mut groups = Vec::new();
                    for (n, v) in &a.opts {
                        if n == "group" {
                            let v = v.as_deref().unwrap_or("");
                            groups.push(
                                v.parse::<i64>()
                                    .map_err(|_| format!("--group: not a Group id: {v}"))?,
                            );
                        }
                    }
                    if groups.is_empty() {
                        return Err("client add: give at least one --group ID".into());
                    }
                    let id = edw::serve::clients::add(
                        &mut c,
                        a.req("name")?,
                        a.req("org")?,
                        &jwks,
                        &groups,
                    )
                    .map_err(e)?;
                    println!("{id}");
                    Ok(())
                }
                "list" => {
                    a.check(&["db"])?;
                    for line in edw::serve::clients::list(&mut c).map_err(e)? {
                        println!("{line}");
                    }
                    Ok(())
                }
                "revoke" => {
                    a.check(&["db"])?;
                    let [id] = a.positional.as_slice() else {
                        return Err("client revoke: give one CLIENT_ID".into());
                    };
                    edw::serve::clients::revoke(&mut c, id).map_err(e)?;
                    eprintln!("client {id} revoked");
                    Ok(())
                }
                other => Err(format!("client: unknown subcommand {other:?}\n{USAGE}")),
            }
        }
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        "" => Err(USAGE.to_string()),
        other => Err(format!("unknown command {other:?}\n{USAGE}")),
    }
}

// Ingest parses and validates millions of small JSON values; mimalloc is faster than
// glibc malloc at that (ingest of 2.56 M lines: 47.1 -> 42.8 s with `tune`).
#[global_allocator]
static GLOBAL: ecqm::allocator::MiMalloc = ecqm::allocator::MiMalloc;

fn main() -> ExitCode {
    ecqm::allocator::tune();
    let argv: Vec<String> = std::env::args().skip(1).collect();
    match run(argv) {
        Ok(()) => ExitCode::SUCCESS,
        Err(m) => {
            eprintln!("phm-edw: {m}");
            ExitCode::FAILURE
        }
    }
}
