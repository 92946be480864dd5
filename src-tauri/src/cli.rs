//! The app's command line: `--demo`, `--version`, `--help`. Parsed before any window or
//! display is touched, so `--version` and `--help` work on a machine without a desktop.

use std::ffi::OsString;

/// How the app runs (see [`crate::run`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunOptions {
    /// Demo mode: the demo accounts and a synthetic panel, in a cache of their own.
    pub demo: bool,
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Open the window.
    Run(RunOptions),
    /// Print this text to standard output and exit 0.
    Print(String),
}

pub fn version() -> String {
    format!("phm-workstation {}\n", env!("CARGO_PKG_VERSION"))
}

pub fn usage() -> String {
    if cfg!(feature = "demo") {
        USAGE.to_string()
    } else {
        // A build without the demo feature (the .deb) does not offer --demo.
        USAGE
            .replace("[--demo]", "[OPTIONS]")
            .replace(DEMO_OPTION, "")
            .replace(" PHM_DEMO_PATIENTS,", "")
    }
}

const USAGE: &str = "\
PHM Workstation: care-gap worklists, panels and quality reports for population health.

Usage: phm-workstation [--demo]

Options:
      --demo     open the built-in demo: one account per role (passphrase demo-<user>)
                 and a synthetic panel, in a cache of their own
  -V, --version  print the version and exit
  -h, --help     print this help and exit

Environment: PHM_DATA_DIR (the data folder; default the OS data dir), PHM_DEMO_PATIENTS,
PHM_IDLE_MINUTES, PHM_KEYRING=keyutils, PHM_LOG (log filter). Logs: <data folder>/logs/.
";

const DEMO_OPTION: &str =
    "      --demo     open the built-in demo: one account per role (passphrase demo-<user>)
                 and a synthetic panel, in a cache of their own
";

/// Parses the arguments after the program name. `Err` holds the message for an unknown
/// or misplaced argument (the caller exits with status 2).
pub fn parse<I: IntoIterator<Item = OsString>>(args: I) -> Result<Command, String> {
    let mut options = RunOptions::default();
    for arg in args {
        match arg.to_str() {
            Some("--version" | "-V") => return Ok(Command::Print(version())),
            Some("--help" | "-h") => return Ok(Command::Print(usage())),
            Some("--demo") if !cfg!(feature = "demo") => {
                return Err("this build has no demo mode (built without the demo feature)".into())
            }
            Some("--demo") => options.demo = true,
            _ => {
                return Err(format!(
                    "unknown argument '{}'; see phm-workstation --help",
                    arg.to_string_lossy()
                ))
            }
        }
    }
    Ok(Command::Run(options))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Command, String> {
        parse(args.iter().map(OsString::from))
    }

    #[test]
    fn arguments() {
        assert_eq!(p(&[]), Ok(Command::Run(RunOptions { demo: false })));
        assert_eq!(p(&["--demo"]), Ok(Command::Run(RunOptions { demo: true })));
        assert_eq!(
            p(&["--version"]),
            Ok(Command::Print(format!(
                "phm-workstation {}\n",
                env!("CARGO_PKG_VERSION")
            )))
        );
        assert_eq!(p(&["--demo", "-V"]), p(&["--version"]));
        assert!(matches!(p(&["--help"]), Ok(Command::Print(t)) if t.contains("--demo")));
        assert_eq!(p(&["-h"]), p(&["--help"]));
        let err = p(&["--demo", "--frobnicate"]).unwrap_err();
        assert!(err.contains("'--frobnicate'"), "{err}");
        assert!(p(&["demo"]).is_err());
    }
}
