//! Conditional filters (`[pi4]`, `[all]`, `[tryboot]`, `[none]`, …): which
//! lines of config.txt apply to a board.
//!
//! The firmware's rules, as documented: `[all]` ends every filter; a
//! model filter replaces the previous model filter; filters of different
//! kinds combine (all must hold). `[none]` holds for nothing until
//! `[all]`. Filters we cannot evaluate here (EDID, GPIO, HDMI port,
//! serial number, board-type) are taken as not holding: the lines under
//! them are ignored, which is the safe reading when we add our own lines
//! under `[all]` at the end.

use super::model::Model;

/// Every model filter name the firmware knows.
pub const MODEL_FILTERS: &[&str] = &[
    "pi1", "pi2", "pi3", "pi3+", "pi4", "pi400", "pi5", "pi500", "pi0", "pi0w", "pi02", "cm1",
    "cm3", "cm3+", "cm4", "cm4s", "cm5",
];

/// What a board is, for the filters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Board {
    /// The model.
    pub model: Model,
    /// Whether this boot is a tryboot (the one-shot flag was set).
    pub tryboot: bool,
}

/// The filters in force at a point of the file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    model: Option<String>,
    tryboot: bool,
    none: bool,
    unknown: Vec<String>,
}

impl State {
    /// Apply a `[filter]` line (text between the brackets).
    pub fn apply(&mut self, filter: &str) {
        let f = filter.trim().to_ascii_lowercase();
        match f.as_str() {
            "all" => *self = State::default(),
            "none" => self.none = true,
            "tryboot" => self.tryboot = true,
            m if MODEL_FILTERS.contains(&m) => self.model = Some(m.to_string()),
            _ => self.unknown.push(f),
        }
    }

    /// Whether lines here apply to `board`.
    pub fn holds(&self, board: Board) -> bool {
        !self.none
            && self.unknown.is_empty()
            && (!self.tryboot || board.tryboot)
            && self
                .model
                .as_deref()
                .map_or(true, |m| board.model.filters().contains(&m))
    }

    /// Whether no filter is in force (as after `[all]`).
    pub fn is_all(&self) -> bool {
        *self == State::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holds(filters: &[&str], model: Model, tryboot: bool) -> bool {
        let mut s = State::default();
        for f in filters {
            s.apply(f);
        }
        s.holds(Board { model, tryboot })
    }

    #[test]
    fn model_filters_replace_each_other_and_all_resets() {
        assert!(holds(&["pi4"], Model::Pi4, false));
        assert!(holds(&["pi4"], Model::Pi400, false));
        assert!(!holds(&["pi4"], Model::Pi3, false));
        assert!(holds(&["pi4", "pi3"], Model::Pi3, false));
        assert!(!holds(&["pi4", "pi3"], Model::Pi4, false));
        assert!(holds(&["pi4", "all"], Model::Pi3, false));
        assert!(holds(&["cm4"], Model::Cm4, false));
        assert!(!holds(&["cm4"], Model::Pi4, false));
        assert!(holds(&["pi3+"], Model::Pi3Plus, false));
        assert!(!holds(&["pi3+"], Model::Pi3, false));
    }

    #[test]
    fn tryboot_none_and_unknown_filters() {
        assert!(!holds(&["tryboot"], Model::Pi4, false));
        assert!(holds(&["tryboot"], Model::Pi4, true));
        assert!(holds(&["pi4", "tryboot"], Model::Pi4, true));
        assert!(!holds(&["pi4", "tryboot"], Model::Pi3, true));
        assert!(!holds(&["none"], Model::Pi4, false));
        assert!(holds(&["none", "all"], Model::Pi4, false));
        assert!(!holds(&["EDID=VSC-TD2220"], Model::Pi4, false));
        assert!(!holds(&["gpio4=1"], Model::Pi4, false));
    }
}
