use fhir::ndjson::NdjsonErrorKind;
use fhir::{NdjsonReader, ParseErrorKind, Resource};
use std::io::Cursor;

fn results(input: &[u8]) -> Vec<Result<(u64, Resource), fhir::NdjsonError>> {
    NdjsonReader::new(Cursor::new(input.to_vec()))
        .resources()
        .collect()
}

#[test]
fn blank_lines_crlf_and_bom() {
    let input = b"\xEF\xBB\xBF{\"resourceType\":\"Patient\",\"id\":\"p1\"}\r\n\r\n   \n{\"resourceType\":\"Observation\",\"id\":\"o1\",\"subject\":{\"reference\":\"Patient/p1\"}}\r\n\n";
    let out = results(input);
    assert_eq!(out.len(), 2);
    let (l1, r1) = out[0].as_ref().unwrap();
    assert_eq!(
        (*l1, r1.resource_type(), r1.id()),
        (1, "Patient", Some("p1"))
    );
    let (l2, r2) = out[1].as_ref().unwrap();
    assert_eq!((*l2, r2.resource_type()), (4, "Observation"));
    assert_eq!(r2.subject_patient_id(), Some("p1"));
}

#[test]
fn raw_line_text_and_numbers() {
    let input = "\n{\"resourceType\":\"Patient\",\"id\":\"a\"}\r\n{\"resourceType\":\"Basic\",\"id\":\"b\"}";
    let lines: Vec<_> = NdjsonReader::new(input.as_bytes())
        .map(Result::unwrap)
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0].line_no, 2);
    assert_eq!(lines[0].text, "{\"resourceType\":\"Patient\",\"id\":\"a\"}");
    assert!(!lines[0].unterminated);
    assert_eq!(lines[1].line_no, 3);
    assert!(lines[1].unterminated);
    // Unknown types are kept as raw JSON, or rejected by parse_known.
    assert!(matches!(lines[1].parse().unwrap(), Resource::Other(_)));
    let err = lines[1].parse_known().unwrap_err();
    assert_eq!(err.to_string(), "line 3: unsupported resourceType");
}

#[test]
fn malformed_line_reports_line_and_column_and_continues() {
    let input = b"{\"resourceType\":\"Patient\",\"id\":\"a\"}\n{\"resourceType\":\"Patient\",\"id\":\"b\",}\n{\"resourceType\":\"Patient\",\"id\":\"c\"}\n";
    let out = results(input);
    assert_eq!(out.len(), 3);
    let e = out[1].as_ref().unwrap_err();
    assert_eq!(e.line, 2);
    assert!(matches!(
        e.kind,
        NdjsonErrorKind::Parse(ParseErrorKind::MalformedJson { .. })
    ));
    assert!(
        e.to_string()
            .starts_with("line 2: malformed JSON at column "),
        "{e}"
    );
    assert_eq!(out[2].as_ref().unwrap().0, 3);
}

#[test]
fn truncated_last_line() {
    let input = b"{\"resourceType\":\"Patient\",\"id\":\"a\"}\n\n{\"resourceType\":\"Patient\",\"id\":\"b\",\"name\":[{\"family\":\"X";
    let out = results(input);
    let e = out[1].as_ref().unwrap_err();
    assert_eq!(e.line, 3);
    assert_eq!(e.kind, NdjsonErrorKind::TruncatedAtEndOfFile);
    assert_eq!(
        e.to_string(),
        "line 3: truncated record (no closing brace at end of file)"
    );
    // An incomplete line that is terminated is "truncated record" without the EOF note.
    let out = results(b"{\"resourceType\":\"Patient\"\n");
    assert_eq!(
        out[0].as_ref().unwrap_err().to_string(),
        "line 1: truncated record"
    );
}

#[test]
fn invalid_utf8_is_an_error_with_line_number() {
    let mut input = b"{\"resourceType\":\"Patient\",\"id\":\"a\"}\n".to_vec();
    input.extend_from_slice(b"{\"resourceType\":\"Patient\",\"id\":\"\xff\xfe\"}\n");
    input.extend_from_slice(b"{\"resourceType\":\"Patient\",\"id\":\"c\"}\n");
    let out = results(&input);
    assert_eq!(out.len(), 3);
    let e = out[1].as_ref().unwrap_err();
    assert_eq!(e.line, 2);
    assert_eq!(e.kind, NdjsonErrorKind::InvalidUtf8 { column: 33 });
    assert!(out[2].is_ok());
}

#[test]
fn missing_and_invalid_resource_type() {
    let input = b"{\"id\":\"a\"}\n[1,2]\n{\"resourceType\":7}\n{\"resourceType\":\"not a type\"}\n";
    let out = results(input);
    let msgs: Vec<String> = out
        .iter()
        .map(|r| r.as_ref().unwrap_err().to_string())
        .collect();
    assert_eq!(
        msgs,
        [
            "line 1: missing resourceType",
            "line 2: record is not a JSON object",
            "line 3: invalid resourceType",
            "line 4: invalid resourceType"
        ]
    );
}

#[test]
fn errors_never_contain_line_content() {
    // A wrong-typed element: serde_json's own message would quote "Smith".
    let cases: [&[u8]; 5] = [
        b"{\"resourceType\":\"Patient\",\"id\":\"p\",\"name\":[{\"family\":\"Smith\",\"given\":\"Johnathan\"}]}\n",
        b"{\"resourceType\":\"Patient\",\"gender\":[\"Smith\"],\"name\":[{\"family\":\"Smith\"}]}\n",
        b"{\"resourceType\":\"Patient\",\"name\":[{\"family\":\"Smith\" \"Johnathan\"}]}\n",
        b"{\"resourceType\":\"Smith Johnathan\",\"name\":[{\"family\":\"Smith\"}]}\n",
        b"{\"resourceType\":\"Patient\",\"name\":[{\"family\":\"Smith\xff Johnathan\"}]}\n",
    ];
    for case in cases {
        let e = results(case).remove(0).unwrap_err();
        let text = format!("{e} {e:?}");
        assert!(
            !text.contains("Smith") && !text.contains("Johnathan"),
            "leaked: {text}"
        );
        assert!(text.starts_with("line 1: "), "{text}");
    }
    // The wrong-typed element is reported as such, with its column.
    let e = results(cases[0]).remove(0).unwrap_err();
    assert!(
        matches!(e.kind, NdjsonErrorKind::Parse(ParseErrorKind::InvalidElement { column }) if column > 0)
    );
}

#[test]
fn overlong_line_is_rejected_and_reading_continues() {
    let mut input = format!(
        "{{\"resourceType\":\"Patient\",\"id\":\"{}\"}}\n",
        "a".repeat(500)
    )
    .into_bytes();
    input.extend_from_slice(b"{\"resourceType\":\"Patient\",\"id\":\"b\"}\n");
    let out: Vec<_> = NdjsonReader::new(Cursor::new(input))
        .with_max_line_bytes(100)
        .resources()
        .collect();
    assert_eq!(
        out[0].as_ref().unwrap_err().to_string(),
        "line 1: record exceeds the maximum line length"
    );
    assert_eq!(out[1].as_ref().unwrap().1.id(), Some("b"));
}

#[test]
fn io_error_ends_iteration_with_line_number() {
    struct Failing(usize);
    impl std::io::Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0 == 0 {
                self.0 = 1;
                let line = b"{\"resourceType\":\"Patient\",\"id\":\"a\"}\n";
                buf[..line.len()].copy_from_slice(line);
                Ok(line.len())
            } else {
                Err(std::io::Error::other("disk gone"))
            }
        }
    }
    let out: Vec<_> = NdjsonReader::new(std::io::BufReader::new(Failing(0)))
        .resources()
        .collect();
    assert_eq!(out.len(), 2);
    assert!(out[0].is_ok());
    assert_eq!(out[1].as_ref().unwrap_err().line, 2);
}

/// Every truncation and many single-byte corruptions of real-looking lines:
/// no panic, an error or a resource for each, and no error text quoting the
/// line (the marker name appears in every line).
#[test]
fn mutated_lines_never_panic_or_leak() {
    let lines = [
        r#"{"resourceType":"Patient","id":"p1","name":[{"family":"Qzxname","given":["Qzxname"]}],"birthDate":"1950-01-02","gender":"female","telecom":[{"system":"phone","value":"Qzxname"}]}"#,
        r#"{"resourceType":"Observation","id":"o1","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"85354-9"}],"text":"Qzxname"},"subject":{"reference":"Patient/p1","display":"Qzxname"},"effectiveDateTime":"2025-01-01","component":[{"code":{"coding":[{"code":"8480-6"}]},"valueQuantity":{"value":120.5,"unit":"mm[Hg]"}}],"valueString":"Qzxname"}"#,
        r#"{"resourceType":"ServiceRequest","id":"s1","subject":{"reference":"Patient/p1"},"note":[{"text":"Qzxname"}]}"#,
    ];
    let replacements: [u8; 9] = [b'"', b'{', b'}', b'[', b':', b',', 0xff, b'\\', b'1'];
    let mut errors = 0;
    for line in lines {
        let bytes = line.as_bytes();
        let mut variants: Vec<Vec<u8>> = (0..bytes.len()).map(|i| bytes[..i].to_vec()).collect();
        for i in (0..bytes.len()).step_by(3) {
            for &r in &replacements {
                let mut v = bytes.to_vec();
                v[i] = r;
                variants.push(v);
            }
        }
        for v in variants {
            let mut input = v.clone();
            input.push(b'\n');
            for item in NdjsonReader::new(Cursor::new(input)).resources() {
                if let Err(e) = item {
                    errors += 1;
                    let text = format!("{e} {e:?}");
                    assert!(!text.contains("Qzx"), "leaked: {text}");
                    assert!(text.starts_with("line 1: "), "{text}");
                }
            }
            // The in-memory entry point too.
            if let Ok(s) = std::str::from_utf8(&v) {
                if let Err(e) = Resource::from_json_str(s) {
                    assert!(!format!("{e} {e:?}").contains("Qzx"));
                }
            }
        }
    }
    assert!(errors > 500, "only {errors} errors");
}
