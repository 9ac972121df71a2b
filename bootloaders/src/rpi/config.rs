//! `config.txt` as text: every line kept byte for byte (comments, blank
//! lines, line endings), each one also classified so the firmware's
//! meaning can be read from it. Edits append; nothing is reformatted.
//!
//! Hand-written: the format is line based and tiny, and no crate models
//! the firmware's dialect (`initramfs` without `=`, `[filters]`,
//! `include`).

/// What one line of config.txt says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    /// Empty or whitespace only.
    Blank,
    /// A `#` comment.
    Comment,
    /// A conditional filter: `[pi4]`, `[all]`, `[tryboot]` (text between
    /// the brackets, trimmed).
    Filter(String),
    /// `initramfs <file>[,<file>…] <address|followkernel>`.
    Initramfs {
        /// File names, in order.
        files: Vec<String>,
        /// Load address or `followkernel`.
        addr: String,
    },
    /// `include <file>`: another file's lines, read in place.
    Include(String),
    /// `key=value` (the value may hold more `=`: `dtparam=audio=on`).
    Setting {
        /// Key, as written.
        key: String,
        /// Value, trimmed.
        value: String,
    },
    /// Anything else (the firmware ignores what it does not know).
    Other,
}

/// One line: its text (without the line ending) and its meaning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawLine {
    /// The text, as in the file.
    pub text: String,
    /// Whether its line ending is `\r\n` (kept per line: files with mixed
    /// endings render back unchanged).
    pub cr: bool,
    /// What it says.
    pub line: Line,
}

/// A parsed config.txt that renders back to the same bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigTxt {
    /// The lines, in order.
    pub lines: Vec<RawLine>,
    /// `\r\n` when the file uses DOS line endings, else `\n` (for
    /// appended lines).
    pub eol: &'static str,
    /// Whether the last line ended with a line ending.
    pub final_eol: bool,
}

/// Classify one line (the firmware strips comments that start a line and
/// surrounding whitespace).
pub fn classify(text: &str) -> Line {
    let t = text.trim();
    if t.is_empty() {
        return Line::Blank;
    }
    if t.starts_with('#') {
        return Line::Comment;
    }
    if let Some(inner) = t.strip_prefix('[').and_then(|r| r.split(']').next()) {
        if t.contains(']') {
            return Line::Filter(inner.trim().to_string());
        }
    }
    let mut words = t.split_whitespace();
    match words.next() {
        Some("initramfs") => {
            let files = words.next().unwrap_or_default();
            let addr = words.next().unwrap_or_default();
            return Line::Initramfs {
                files: files
                    .split(',')
                    .filter(|f| !f.is_empty())
                    .map(str::to_string)
                    .collect(),
                addr: addr.to_string(),
            };
        }
        Some("include") => {
            return Line::Include(words.next().unwrap_or_default().to_string());
        }
        _ => {}
    }
    match t.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() && !k.trim().contains(char::is_whitespace) => {
            Line::Setting {
                key: k.trim().to_string(),
                value: v.trim().to_string(),
            }
        }
        _ => Line::Other,
    }
}

impl ConfigTxt {
    /// Parse config.txt text.
    pub fn parse(text: &str) -> ConfigTxt {
        let eol = if text.contains("\r\n") { "\r\n" } else { "\n" };
        let final_eol = text.is_empty() || text.ends_with('\n');
        let body = text.strip_suffix('\n').unwrap_or(text);
        let lines = if text.is_empty() {
            Vec::new()
        } else {
            body.split('\n')
                .map(|l| {
                    let (l, cr) = match l.strip_suffix('\r') {
                        Some(t) => (t, true),
                        None => (l, false),
                    };
                    RawLine {
                        text: l.to_string(),
                        cr,
                        line: classify(l),
                    }
                })
                .collect()
        };
        ConfigTxt {
            lines,
            eol,
            final_eol,
        }
    }

    /// The text again, byte for byte as parsed (plus whatever was
    /// appended).
    pub fn render(&self) -> String {
        let mut s = String::new();
        for (i, l) in self.lines.iter().enumerate() {
            s.push_str(&l.text);
            if l.cr {
                s.push('\r');
            }
            if i + 1 < self.lines.len() || self.final_eol {
                s.push('\n');
            }
        }
        s
    }

    /// Append lines at the end (the file's line ending is kept; a missing
    /// final line ending is added first).
    pub fn append<I: IntoIterator<Item = String>>(&mut self, lines: I) {
        let dos = self.eol == "\r\n";
        if !self.final_eol {
            // The last line gets the file's line ending.
            if let Some(last) = self.lines.last_mut() {
                last.cr |= dos;
            }
        }
        for text in lines {
            self.lines.push(RawLine {
                line: classify(&text),
                cr: dos,
                text,
            });
        }
        self.final_eol = true;
    }

    /// Every `include`d file name, in order.
    pub fn includes(&self) -> Vec<&str> {
        self.lines
            .iter()
            .filter_map(|l| match &l.line {
                Line::Include(f) => Some(f.as_str()),
                _ => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_back_byte_for_byte() {
        for text in [
            "",
            "a=1",
            "a=1\n",
            "# c\n\n[pi4]\ndtoverlay=vc4-kms-v3d\n[all]\n",
            "a=1\r\nb=2\r\n",
            "mixed=1\r\nendings=2\nlast\r",
            "  spaced = yes  \n\tinitramfs x followkernel\n",
        ] {
            assert_eq!(ConfigTxt::parse(text).render(), text, "{text:?}");
        }
    }

    #[test]
    fn classifies_the_firmware_dialect() {
        assert_eq!(classify(" # x=1"), Line::Comment);
        assert_eq!(classify("[pi4]"), Line::Filter("pi4".into()));
        assert_eq!(classify("[ all ] # reset"), Line::Filter("all".into()));
        assert_eq!(
            classify("initramfs a.img,b.img followkernel"),
            Line::Initramfs {
                files: vec!["a.img".into(), "b.img".into()],
                addr: "followkernel".into()
            }
        );
        assert_eq!(
            classify("dtparam=audio=on"),
            Line::Setting {
                key: "dtparam".into(),
                value: "audio=on".into()
            }
        );
        assert_eq!(
            classify("include extra.txt"),
            Line::Include("extra.txt".into())
        );
        assert_eq!(classify("just words here"), Line::Other);
        assert_eq!(classify("[broken"), Line::Other);
    }

    #[test]
    fn appending_keeps_dos_line_endings_and_adds_a_missing_final_one() {
        let mut c = ConfigTxt::parse("a=1\r\nb=2");
        c.append(["[all]".to_string(), "kernel=k.img".to_string()]);
        assert_eq!(c.render(), "a=1\r\nb=2\r\n[all]\r\nkernel=k.img\r\n");
        assert_eq!(c.lines[2].line, Line::Filter("all".into()));
    }
}

/// A deterministic stand-in for a fuzz target: many generated files from
/// the pieces config.txt is made of (filters, `initramfs`, comments, DOS
/// and Unix line endings, missing final newline, odd spacing), each parsed,
/// rendered and appended to.
#[cfg(test)]
mod generated {
    use super::*;

    const PIECES: &[&str] = &[
        "",
        " ",
        "#c",
        "[pi4]",
        "[all]",
        "[ tryboot ]",
        "[broken",
        "]",
        "kernel=k.img",
        "dtparam=audio=on",
        " a = b ",
        "=x",
        "initramfs a,b followkernel",
        "initramfs",
        "include x.txt",
        "word",
        "\t",
        "é=ü",
    ];

    #[test]
    fn every_generated_file_renders_back_and_appends_at_the_end() {
        // A small LCG: reproducible, no extra crate.
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: usize| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            ((seed >> 33) as usize) % n
        };
        for _ in 0..2000 {
            // Mostly one line ending per file, sometimes mixed.
            let mixed = next(4) == 0;
            let eol0 = if next(2) == 0 { "\n" } else { "\r\n" };
            let pick = |r: usize| match (mixed, r) {
                (true, 0) => "\n",
                (true, _) => "\r\n",
                (false, _) => eol0,
            };
            let mut text = String::new();
            for i in 0..next(8) {
                if i > 0 {
                    text.push_str(pick(next(2)));
                }
                text.push_str(PIECES[next(PIECES.len())]);
            }
            if next(2) == 0 && !text.is_empty() {
                text.push_str(pick(next(2)));
            }
            let c = ConfigTxt::parse(&text);
            assert_eq!(c.render(), text, "{text:?}");
            let mut c2 = c.clone();
            c2.append(["[all]".to_string()]);
            let out = c2.render();
            assert!(out.starts_with(&text), "{text:?} -> {out:?}");
            assert!(
                out.ends_with("[all]\n") || out.ends_with("[all]\r\n"),
                "{out:?}"
            );
            assert_eq!(
                ConfigTxt::parse(&out).lines.len(),
                c.lines.len() + 1,
                "{text:?}"
            );
        }
    }
}
