//! Streaming NDJSON (one FHIR resource per line, Bulk Data layout).
//!
//! Memory use is bounded by the longest line (itself capped, 64 MiB by
//! default). Blank lines are skipped but counted; CRLF endings and a UTF-8 BOM
//! on the first line are accepted. Errors carry the 1-based line number and a
//! category, never the line's content.

use crate::resource::{ParseErrorKind, Resource};
use std::fmt;
use std::io::{self, BufRead, Write};

/// Default cap on one line's length.
pub const DEFAULT_MAX_LINE_BYTES: usize = 64 << 20;

/// What went wrong on a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NdjsonErrorKind {
    /// The resource could not be parsed.
    Parse(ParseErrorKind),
    /// The last line of the input is not a complete JSON value and has no
    /// line terminator: the file was cut off.
    TruncatedAtEndOfFile,
    /// The line is not valid UTF-8; `column` is the 1-based byte offset of the
    /// first invalid byte.
    InvalidUtf8 { column: usize },
    /// The line exceeds the reader's maximum line length.
    LineTooLong,
    /// Reading the input failed.
    Io(io::ErrorKind),
}

/// An error on one NDJSON line: `line N: <category>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub struct NdjsonError {
    /// 1-based line number.
    pub line: u64,
    pub kind: NdjsonErrorKind,
}

impl fmt::Display for NdjsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: ", self.line)?;
        match self.kind {
            NdjsonErrorKind::Parse(k) => write!(f, "{k}"),
            NdjsonErrorKind::TruncatedAtEndOfFile => {
                f.write_str("truncated record (no closing brace at end of file)")
            }
            NdjsonErrorKind::InvalidUtf8 { column } => write!(f, "invalid UTF-8 at byte {column}"),
            NdjsonErrorKind::LineTooLong => f.write_str("record exceeds the maximum line length"),
            NdjsonErrorKind::Io(k) => write!(f, "read error ({k})"),
        }
    }
}

/// One non-blank line, borrowed from the reader's buffer.
#[derive(Debug, Clone, Copy)]
pub struct NdjsonRecord<'a> {
    /// 1-based line number in the input.
    pub line_no: u64,
    /// The line without its terminator, CR, or BOM.
    pub text: &'a str,
    /// True for a last line that had no `\n` after it.
    pub unterminated: bool,
}

impl NdjsonRecord<'_> {
    /// Parses the line; unknown resource types become [`Resource::Other`].
    pub fn parse(&self) -> Result<Resource, NdjsonError> {
        parse_line(self.line_no, self.text, self.unterminated, true)
    }

    /// Parses the line, rejecting resource types outside
    /// [`crate::KNOWN_RESOURCE_TYPES`].
    pub fn parse_known(&self) -> Result<Resource, NdjsonError> {
        parse_line(self.line_no, self.text, self.unterminated, false)
    }

    pub fn to_line(&self) -> NdjsonLine {
        NdjsonLine {
            line_no: self.line_no,
            text: self.text.to_owned(),
            unterminated: self.unterminated,
        }
    }
}

/// One non-blank line, owned (what the reader's `Iterator` yields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NdjsonLine {
    pub line_no: u64,
    pub text: String,
    pub unterminated: bool,
}

impl NdjsonLine {
    pub fn parse(&self) -> Result<Resource, NdjsonError> {
        parse_line(self.line_no, &self.text, self.unterminated, true)
    }

    pub fn parse_known(&self) -> Result<Resource, NdjsonError> {
        parse_line(self.line_no, &self.text, self.unterminated, false)
    }
}

fn parse_line(
    line: u64,
    text: &str,
    unterminated: bool,
    allow_other: bool,
) -> Result<Resource, NdjsonError> {
    Resource::parse(text, allow_other).map_err(|e| NdjsonError {
        line,
        kind: match e.kind {
            ParseErrorKind::Truncated if unterminated => NdjsonErrorKind::TruncatedAtEndOfFile,
            k => NdjsonErrorKind::Parse(k),
        },
    })
}

/// Streaming NDJSON reader over any `BufRead`.
///
/// Use [`NdjsonReader::next_record`] for zero-copy access to each line,
/// iterate it for owned [`NdjsonLine`]s, or call [`NdjsonReader::resources`]
/// for parsed resources. After a line error, reading continues with the next
/// line (the caller decides whether to stop); after an I/O error it ends.
pub struct NdjsonReader<R> {
    input: R,
    buf: Vec<u8>,
    line_no: u64,
    max_line_bytes: usize,
    done: bool,
}

enum LineRead {
    Eof,
    Line { terminated: bool, too_long: bool },
}

impl<R: BufRead> NdjsonReader<R> {
    pub fn new(input: R) -> Self {
        NdjsonReader {
            input,
            buf: Vec::with_capacity(4096),
            line_no: 0,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            done: false,
        }
    }

    /// Sets the cap on one line's length (default 64 MiB).
    pub fn with_max_line_bytes(mut self, max: usize) -> Self {
        self.max_line_bytes = max;
        self
    }

    /// The number of the last line read (0 before the first).
    pub fn line_no(&self) -> u64 {
        self.line_no
    }

    fn read_line(&mut self) -> io::Result<LineRead> {
        self.buf.clear();
        let mut too_long = false;
        let mut any = false;
        loop {
            let chunk = match self.input.fill_buf() {
                Ok(c) => c,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if chunk.is_empty() {
                return Ok(if any {
                    LineRead::Line {
                        terminated: false,
                        too_long,
                    }
                } else {
                    LineRead::Eof
                });
            }
            any = true;
            let (take, found) = match memchr::memchr(b'\n', chunk) {
                Some(p) => (p, true),
                None => (chunk.len(), false),
            };
            if !too_long {
                if self.buf.len() + take > self.max_line_bytes {
                    too_long = true;
                    self.buf.clear();
                } else {
                    self.buf.extend_from_slice(&chunk[..take]);
                }
            }
            self.input.consume(if found { take + 1 } else { take });
            if found {
                return Ok(LineRead::Line {
                    terminated: true,
                    too_long,
                });
            }
        }
    }

    /// The next non-blank line, borrowed; `None` at end of input.
    pub fn next_record(&mut self) -> Option<Result<NdjsonRecord<'_>, NdjsonError>> {
        loop {
            if self.done {
                return None;
            }
            let read = self.read_line();
            let (terminated, too_long) = match read {
                Ok(LineRead::Eof) => {
                    self.done = true;
                    return None;
                }
                Ok(LineRead::Line {
                    terminated,
                    too_long,
                }) => (terminated, too_long),
                Err(e) => {
                    self.done = true;
                    return Some(Err(NdjsonError {
                        line: self.line_no + 1,
                        kind: NdjsonErrorKind::Io(e.kind()),
                    }));
                }
            };
            self.line_no += 1;
            let line = self.line_no;
            if too_long {
                return Some(Err(NdjsonError {
                    line,
                    kind: NdjsonErrorKind::LineTooLong,
                }));
            }
            let (start, end) = trimmed_range(&self.buf, line == 1);
            if self.buf[start..end]
                .iter()
                .all(|b| matches!(b, b' ' | b'\t' | b'\r'))
            {
                continue;
            }
            return Some(match std::str::from_utf8(&self.buf[start..end]) {
                Ok(text) => Ok(NdjsonRecord {
                    line_no: line,
                    text,
                    unterminated: !terminated,
                }),
                Err(e) => Err(NdjsonError {
                    line,
                    kind: NdjsonErrorKind::InvalidUtf8 {
                        column: e.valid_up_to() + 1,
                    },
                }),
            });
        }
    }

    /// Parsed resources with their line numbers; unknown types become
    /// [`Resource::Other`].
    pub fn resources(self) -> Resources<R> {
        Resources {
            reader: self,
            allow_other: true,
        }
    }

    /// Like [`NdjsonReader::resources`], but types outside
    /// [`crate::KNOWN_RESOURCE_TYPES`] are errors.
    pub fn known_resources(self) -> Resources<R> {
        Resources {
            reader: self,
            allow_other: false,
        }
    }
}

impl<R: BufRead> Iterator for NdjsonReader<R> {
    type Item = Result<NdjsonLine, NdjsonError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_record().map(|r| r.map(|rec| rec.to_line()))
    }
}

/// Iterator of `(line_no, Resource)`; see [`NdjsonReader::resources`].
pub struct Resources<R> {
    reader: NdjsonReader<R>,
    allow_other: bool,
}

impl<R: BufRead> Iterator for Resources<R> {
    type Item = Result<(u64, Resource), NdjsonError>;
    fn next(&mut self) -> Option<Self::Item> {
        let allow_other = self.allow_other;
        Some(self.reader.next_record()?.and_then(|rec| {
            parse_line(rec.line_no, rec.text, rec.unterminated, allow_other)
                .map(|r| (rec.line_no, r))
        }))
    }
}

/// The line without a leading BOM (first line only) and a trailing CR.
fn trimmed_range(buf: &[u8], first_line: bool) -> (usize, usize) {
    let start = if first_line && buf.starts_with(b"\xEF\xBB\xBF") {
        3
    } else {
        0
    };
    let end = if buf.len() > start && buf.ends_with(b"\r") {
        buf.len() - 1
    } else {
        buf.len()
    };
    (start, end)
}

/// Writes one resource as a compact JSON line followed by `\n`.
pub fn write_ndjson_line<W: Write>(mut out: W, resource: &Resource) -> io::Result<()> {
    serde_json::to_writer(&mut out, resource).map_err(io::Error::other)?;
    out.write_all(b"\n")
}
