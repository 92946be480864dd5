//! phm-edw's command line: `--help` for every subcommand and clap's error style
//! (exit code 2) for bad arguments, all before any database is touched.

use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_phm-edw"))
        .args(args)
        .output()
        .expect("run phm-edw")
}

#[test]
fn help_for_every_subcommand() {
    for (args, shows) in [
        (&["--help"][..], "client"),
        (&["help"][..], "migrate"),
        (&["migrate", "--help"][..], "--db <URL>"),
        (&["ingest", "--help"][..], "--no-match"),
        (&["match", "--help"][..], "--upper"),
        (&["review", "--help"][..], "reject"),
        (&["review", "list", "--help"][..], "--limit"),
        (&["review", "link", "--help"][..], "<A_ID> <B_ID>"),
        (&["review", "reject", "--help"][..], "<B_ID>"),
        (&["attribute", "--help"][..], "--as-of"),
        (&["etl", "--help"][..], "--db"),
        (&["measure", "--help"][..], "--improvement-notation"),
        (&["results", "--help"][..], "--out"),
        (&["report", "--help"][..], "--program-year"),
        (&["serve", "--help"][..], "--plain-http"),
        (&["client", "--help"][..], "revoke"),
        (&["client", "add", "--help"][..], "--jwks-url"),
        (&["client", "list", "--help"][..], "--db"),
        (&["client", "revoke", "-h"][..], "<CLIENT_ID>"),
    ] {
        let out = run(args);
        assert!(out.status.success(), "{args:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Usage: phm-edw"), "{args:?}: {text}");
        assert!(text.contains(shows), "{args:?} lacks {shows}: {text}");
    }
}

#[test]
fn bad_arguments_exit_2_with_a_clear_message() {
    for (args, says) in [
        (&[][..], "Usage: phm-edw <COMMAND>"),
        (&["frobnicate"][..], "unrecognized subcommand 'frobnicate'"),
        (&["migrate"][..], "--db <URL>"),
        (
            &["migrate", "--db", "x", "--bogus"][..],
            "unexpected argument '--bogus'",
        ),
        (&["ingest", "--source", "s", "--db", "x"][..], "<DIR|FILE>"),
        (
            &[
                "ingest", "d", "--source", "s", "--db", "x", "--chunk", "many",
            ][..],
            "invalid value 'many' for '--chunk <N>'",
        ),
        (
            &["measure", "--db", "x", "--period", "2025"][..],
            "--package",
        ),
        (&["review", "link", "1", "--db", "x"][..], "<B_ID>"),
        (
            &["review", "link", "1", "two", "--db", "x"][..],
            "invalid value 'two'",
        ),
        (&["client", "revoke", "--db", "x"][..], "<CLIENT_ID>"),
        (
            &["serve", "--db", "x", "--pool", "-"][..],
            "invalid value '-' for '--pool <N>'",
        ),
    ] {
        let out = run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

#[test]
fn checks_beyond_the_parser_still_exit_1_before_connecting() {
    // `--period` out of range, a QRDA setting without `--type qrda3`: as before, code 1.
    for (args, says) in [
        (
            &["measure", "--db", "x", "--period", "12", "--package", "p"][..],
            "--period YEAR is required",
        ),
        (
            &["results", "--db", "x", "--period", "2025", "--tin", "1"][..],
            "--tin goes with `report --type qrda3`",
        ),
        (
            &["report", "--db", "x", "--period", "2025", "--type", "qrda3"][..],
            "--type qrda3 needs --program-year",
        ),
        (
            &[
                "report",
                "--db",
                "x",
                "--period",
                "2025",
                "--type",
                "qrda3",
                "--program-year",
                "2025",
                "--out",
                "-",
            ][..],
            "give --out FILE",
        ),
    ] {
        let out = run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.starts_with("phm-edw: "), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}
