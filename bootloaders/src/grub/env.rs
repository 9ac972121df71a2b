//! GRUB's environment block (`grubenv`): exactly 1024 bytes, a header line,
//! `name=value` lines, `#` padding. Read by `load_env` and rewritten in place
//! by `save_env` at boot, which is how `next_entry` clears itself.
//!
//! Written by hand because it is 40 lines and no crate implements it. Values
//! escape `\` and newline with a backslash, as grub-editenv does.

use std::collections::BTreeMap;

/// Size of the block.
pub const SIZE: usize = 1024;
/// First line of every block.
pub const HEADER: &str = "# GRUB Environment Block\n";

/// Why a block cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvError {
    /// Not a grubenv at all.
    #[error("not a GRUB environment block (expected {SIZE} bytes starting with '# GRUB Environment Block')")]
    NotEnv,
    /// Variables do not fit.
    #[error("GRUB environment block overflow: {0} bytes needed, {SIZE} available")]
    TooBig(usize),
}

/// The variables of a grubenv, in name order (grub-editenv keeps insertion
/// order; GRUB does not care, and sorted output is reproducible).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GrubEnv {
    vars: BTreeMap<String, String>,
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut it = s.chars();
    while let Some(c) = it.next() {
        match (c, c == '\\') {
            (_, true) => match it.next() {
                Some('n') => out.push('\n'),
                Some(o) => out.push(o),
                None => {}
            },
            (c, false) => out.push(c),
        }
    }
    out
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

impl GrubEnv {
    /// Parse a block.
    pub fn parse(block: &[u8]) -> Result<Self, EnvError> {
        if block.len() != SIZE || !block.starts_with(HEADER.as_bytes()) {
            return Err(EnvError::NotEnv);
        }
        let text = String::from_utf8_lossy(&block[HEADER.len()..]);
        let mut vars = BTreeMap::new();
        for line in text.split('\n') {
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            if let Some((k, v)) = line.split_once('=') {
                vars.insert(k.to_string(), unescape(v));
            }
        }
        Ok(GrubEnv { vars })
    }

    /// A value.
    pub fn get(&self, k: &str) -> Option<&str> {
        self.vars.get(k).map(String::as_str)
    }

    /// Set a value.
    pub fn set(&mut self, k: &str, v: &str) {
        self.vars.insert(k.to_string(), v.to_string());
    }

    /// Remove a variable.
    pub fn unset(&mut self, k: &str) {
        self.vars.remove(k);
    }

    /// The 1024-byte block.
    pub fn to_block(&self) -> Result<Vec<u8>, EnvError> {
        let mut b = HEADER.as_bytes().to_vec();
        for (k, v) in &self.vars {
            b.extend_from_slice(format!("{k}={}\n", escape(v)).as_bytes());
        }
        if b.len() > SIZE {
            return Err(EnvError::TooBig(b.len()));
        }
        b.resize(SIZE, b'#');
        Ok(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn round_trips_and_pads() {
        let mut e = GrubEnv::default();
        e.set("next_entry", "migrd-oneshot");
        e.set("weird", "a\\b\nc");
        let b = e.to_block().unwrap();
        assert_eq!(b.len(), SIZE);
        assert!(b.ends_with(b"###"));
        assert_eq!(GrubEnv::parse(&b).unwrap(), e);
        e.unset("weird");
        assert_eq!(
            GrubEnv::parse(&e.to_block().unwrap()).unwrap().get("weird"),
            None
        );
    }

    #[test]
    fn refuses_foreign_and_oversized() {
        assert_eq!(GrubEnv::parse(b"hello"), Err(EnvError::NotEnv));
        assert_eq!(GrubEnv::parse(&[b'#'; SIZE]), Err(EnvError::NotEnv));
        let mut e = GrubEnv::default();
        e.set("x", &"y".repeat(SIZE));
        assert!(matches!(e.to_block(), Err(EnvError::TooBig(_))));
    }

    /// What grub-editenv (Debian's grub-common) writes, we read; what we
    /// write, it reads.
    #[test]
    #[ignore = "needs grub-editenv (Debian grub-common, installed by tests/lab/setup.sh); run by tests/lab/test.sh"]
    fn agrees_with_grub_editenv() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("grubenv");
        let run = |args: &[&str]| {
            let st = Command::new("grub-editenv")
                .arg(&p)
                .args(args)
                .status()
                .unwrap();
            assert!(st.success());
        };
        run(&["create"]);
        run(&["set", "next_entry=migrd-oneshot", "saved_entry=0"]);
        let e = GrubEnv::parse(&std::fs::read(&p).unwrap()).unwrap();
        assert_eq!(e.get("next_entry"), Some("migrd-oneshot"));
        assert_eq!(e.get("saved_entry"), Some("0"));
        let mut e2 = e.clone();
        e2.set("next_entry", "");
        std::fs::write(&p, e2.to_block().unwrap()).unwrap();
        let list = Command::new("grub-editenv")
            .arg(&p)
            .arg("list")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&list.stdout);
        assert!(
            text.contains("next_entry=\n") && text.contains("saved_entry=0"),
            "{text}"
        );
    }
}
