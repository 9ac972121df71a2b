//! What a config.txt means for one board: the settings in force after
//! filters, `include`s and "last one wins", for the few settings that
//! choose what the firmware boots.

use super::config::{ConfigTxt, Line};
use super::filter::{Board, State};

/// Files included deeper than this are ignored (a loop guard).
const MAX_INCLUDE_DEPTH: u32 = 8;

/// The boot-relevant settings in force.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Effective {
    /// `kernel=`.
    pub kernel: Option<String>,
    /// `initramfs` (files, address).
    pub initramfs: Option<(Vec<String>, String)>,
    /// `cmdline=`.
    pub cmdline: Option<String>,
    /// `os_prefix=`.
    pub os_prefix: Option<String>,
    /// `arm_64bit=`.
    pub arm_64bit: Option<bool>,
    /// `auto_initramfs=`.
    pub auto_initramfs: Option<bool>,
    /// `device_tree=`.
    pub device_tree: Option<String>,
}

fn flag(v: &str) -> bool {
    v.trim() != "0"
}

/// Evaluate `cfg` for `board`; `include` reads an included file by name
/// (None when absent).
pub fn evaluate(
    cfg: &ConfigTxt,
    board: Board,
    include: &dyn Fn(&str) -> Option<String>,
) -> Effective {
    let mut e = Effective::default();
    let mut state = State::default();
    walk(cfg, board, include, &mut state, &mut e, 0);
    e
}

fn walk(
    cfg: &ConfigTxt,
    board: Board,
    include: &dyn Fn(&str) -> Option<String>,
    state: &mut State,
    e: &mut Effective,
    depth: u32,
) {
    for l in &cfg.lines {
        match &l.line {
            Line::Filter(f) => state.apply(f),
            _ if !state.holds(board) => {}
            Line::Initramfs { files, addr } => e.initramfs = Some((files.clone(), addr.clone())),
            Line::Include(name) if depth < MAX_INCLUDE_DEPTH => {
                if let Some(text) = include(name) {
                    walk(
                        &ConfigTxt::parse(&text),
                        board,
                        include,
                        state,
                        e,
                        depth + 1,
                    );
                }
            }
            Line::Setting { key, value } => match key.as_str() {
                "kernel" => e.kernel = Some(value.clone()),
                "cmdline" => e.cmdline = Some(value.clone()),
                "os_prefix" => e.os_prefix = Some(value.clone()),
                "arm_64bit" => e.arm_64bit = Some(flag(value)),
                "auto_initramfs" => e.auto_initramfs = Some(flag(value)),
                "device_tree" => e.device_tree = Some(value.clone()),
                // The legacy spelling of `initramfs <file> <addr>`.
                "ramfsfile" => {
                    e.initramfs = Some((
                        value.split(',').map(str::to_string).collect(),
                        "followkernel".into(),
                    ))
                }
                _ => {}
            },
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpi::model::Model;

    fn eval(text: &str, model: Model, tryboot: bool) -> Effective {
        evaluate(&ConfigTxt::parse(text), Board { model, tryboot }, &|n| {
            (n == "extra.txt").then(|| "[all]\ncmdline=extra-cmdline.txt\n".to_string())
        })
    }

    #[test]
    fn last_setting_under_matching_filters_wins() {
        let t = "kernel=a.img\n[pi4]\nkernel=b.img\narm_64bit=1\n[pi3]\nkernel=c.img\n[all]\nauto_initramfs=1\n";
        let pi4 = eval(t, Model::Pi4, false);
        assert_eq!(pi4.kernel.as_deref(), Some("b.img"));
        assert_eq!(pi4.arm_64bit, Some(true));
        assert_eq!(pi4.auto_initramfs, Some(true));
        let pi3 = eval(t, Model::Pi3, false);
        assert_eq!(pi3.kernel.as_deref(), Some("c.img"));
        assert_eq!(pi3.arm_64bit, None);
        let zero = eval(t, Model::Zero, false);
        assert_eq!(zero.kernel.as_deref(), Some("a.img"));
    }

    #[test]
    fn initramfs_tryboot_sections_and_includes() {
        let t = "initramfs a followkernel\n[tryboot]\ninitramfs b,c 0x1000\n[all]\ninclude extra.txt\nos_prefix=v2/\n";
        let normal = eval(t, Model::Pi4, false);
        assert_eq!(
            normal.initramfs,
            Some((vec!["a".into()], "followkernel".into()))
        );
        assert_eq!(normal.cmdline.as_deref(), Some("extra-cmdline.txt"));
        assert_eq!(normal.os_prefix.as_deref(), Some("v2/"));
        let tb = eval(t, Model::Pi4, true);
        assert_eq!(
            tb.initramfs,
            Some((vec!["b".into(), "c".into()], "0x1000".into()))
        );
    }
}
