//! phm-synth's command line: `--help` and clap's error style (exit code 2).

use std::process::Command;

const EXE: &str = env!("CARGO_BIN_EXE_phm-synth");

#[test]
fn help_lists_every_flag() {
    for help in ["--help", "-h"] {
        let out = Command::new(EXE).arg(help).output().unwrap();
        assert!(out.status.success(), "{help}");
        let text = String::from_utf8_lossy(&out.stdout);
        for flag in [
            "--patients",
            "--seed",
            "--out",
            "--as-of",
            "--providers",
            "--threads",
            "--quiet",
        ] {
            assert!(text.contains(flag), "{help} lacks {flag}:\n{text}");
        }
    }
}

#[test]
fn bad_arguments_exit_2_with_a_clear_message() {
    for (args, says) in [
        (&["--bogus"][..], "--bogus"),
        (&["--seed", "1", "--out", "/tmp/x"][..], "--patients"),
        (
            &["--patients", "x", "--seed", "1", "--out", "/tmp/x"][..],
            "invalid value 'x' for '--patients",
        ),
        (&["--patients"][..], "a value is required for '--patients"),
    ] {
        let out = Command::new(EXE).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("error: "), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

#[test]
fn accepts_equals_and_repeated_flags() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(EXE)
        .args(["--patients=3", "--patients", "2", "--seed=1", "--quiet"])
        .arg(format!("--out={}", dir.path().display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let patients = std::fs::read_to_string(dir.path().join("Patient.ndjson")).unwrap();
    assert_eq!(patients.lines().count(), 2, "the last --patients wins");
}
