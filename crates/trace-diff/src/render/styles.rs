//! The text report's styles: plain, or ANSI colors for a terminal.

use anstyle::{AnsiColor, Style};

use crate::report::Verdict;

/// The styles of the text report and its map.
pub(super) struct Styles {
    pub(super) bold: Style,
    pub(super) red: Style,
    pub(super) green: Style,
    pub(super) yellow: Style,
    pub(super) dim: Style,
}

impl Styles {
    pub(super) fn new(color: bool) -> Self {
        if !color {
            let s = Style::new();
            return Styles {
                bold: s,
                red: s,
                green: s,
                yellow: s,
                dim: s,
            };
        }
        Styles {
            bold: Style::new().bold(),
            red: Style::new().bold().fg_color(Some(AnsiColor::Red.into())),
            green: Style::new().bold().fg_color(Some(AnsiColor::Green.into())),
            yellow: Style::new().fg_color(Some(AnsiColor::Yellow.into())),
            dim: Style::new().dimmed(),
        }
    }

    pub(super) fn verdict(&self, v: Verdict) -> Style {
        match v {
            Verdict::Identical | Verdict::WithinTolerance => self.green,
            Verdict::Diverged | Verdict::Incompatible => self.red,
            Verdict::Missing => self.yellow,
        }
    }
}
