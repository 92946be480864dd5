//! `phm-edw`: the central EDW command line.
use std::process::ExitCode;

const USAGE: &str = "usage:
  phm-edw migrate --db URL
  phm-edw ingest DIR|FILE... --source NAME --db URL [--chunk N] [--no-match]
  phm-edw match --db URL [--upper W] [--lower W]
  phm-edw attribute --db URL [--as-of YYYY-MM-DD]
  phm-edw etl --db URL
  phm-edw serve --db URL --addr 127.0.0.1:PORT   (token from PHM_EDW_TOKEN)
URL: postgresql://user@host/db or 'host=/socket/dir user=app dbname=edw'";

#[allow(dead_code)]
struct Args {
    positional: Vec<String>,
    opts: Vec<(String, Option<String>)>,
}

#[allow(dead_code)]
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

#[allow(dead_code)]
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
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        "" => Err(USAGE.to_string()),
        other => Err(format!("unknown command {other:?}\n{USAGE}")),
    }
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    match run(argv) {
        Ok(()) => ExitCode::SUCCESS,
        Err(m) => {
            eprintln!("phm-edw: {m}");
            ExitCode::FAILURE
        }
    }
}
