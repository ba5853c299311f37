//! Human output: aligned tables, relative times ("in 3 d 4 h"), colour only on a terminal.
//! Pure functions of their input, so the tests pin the rendering.

use kms_jwt::UnixTime;

/// Whether to colour, decided once from `--color`, the terminal and `NO_COLOR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    pub color: bool,
}

/// What a piece of text says, for its colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Good,
    Warn,
    Bad,
    Bold,
}

impl Style {
    #[cfg(test)]
    pub fn plain() -> Style {
        Style { color: false }
    }

    /// `--color` against the terminal: auto colours only when stdout is a terminal and
    /// `NO_COLOR` is unset or empty.
    pub fn decide(when: crate::args::ColorWhen, stdout_is_terminal: bool, no_color: Option<&str>) -> Style {
        use crate::args::ColorWhen;
        let color = match when {
            ColorWhen::Always => true,
            ColorWhen::Never => false,
            ColorWhen::Auto => stdout_is_terminal && no_color.is_none_or(str::is_empty),
        };
        Style { color }
    }

    pub fn paint(&self, tone: Tone, text: &str) -> String {
        if !self.color {
            return text.to_owned();
        }
        let code = match tone {
            Tone::Good => "32",
            Tone::Warn => "33",
            Tone::Bad => "31",
            Tone::Bold => "1",
        };
        format!("\u{1b}[{code}m{text}\u{1b}[0m")
    }
}

/// Visible width of `text`: characters, ANSI colour sequences left out.
pub fn width(text: &str) -> usize {
    let mut n = 0;
    let mut in_escape = false;
    for c in text.chars() {
        match (in_escape, c) {
            (false, '\u{1b}') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, _) => n += 1,
        }
    }
    n
}

/// Rows under a header, each column as wide as its widest cell, two spaces apart; the last
/// column is not padded.
pub fn table(header: &[&str], rows: &[Vec<String>], style: Style) -> String {
    let columns = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| width(h)).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(columns) {
            widths[i] = widths[i].max(width(cell));
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<String>, out: &mut String| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            text.push_str(cell);
            if i + 1 < cells.len() {
                text.push_str(&" ".repeat(widths[i] - width(cell) + 2));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(header.iter().map(|h| style.paint(Tone::Bold, h)).collect(), &mut out);
    for row in rows {
        let mut cells = row.clone();
        cells.resize(columns, String::new());
        line(cells, &mut out);
    }
    out
}

/// A duration in the two largest units: `3 d 4 h`, `5 m 10 s`, `0 s`.
pub fn duration(secs: i64) -> String {
    let secs = secs.unsigned_abs();
    let units = [(86_400, "d"), (3_600, "h"), (60, "m"), (1, "s")];
    let mut parts = Vec::new();
    let mut rest = secs;
    for (size, name) in units {
        let n = rest / size;
        rest %= size;
        if n > 0 || !parts.is_empty() {
            parts.push((n, name));
        }
        if parts.len() == 2 {
            break;
        }
    }
    if parts.is_empty() {
        return "0 s".into();
    }
    if parts.len() == 2 && parts[1].0 == 0 {
        parts.pop();
    }
    parts.iter().map(|(n, name)| format!("{n} {name}")).collect::<Vec<_>>().join(" ")
}

/// `at` relative to `now`: `in 3 d 4 h`, `2 h 5 m ago`, `now`.
pub fn relative(at: UnixTime, now: UnixTime) -> String {
    match at - now {
        0 => "now".into(),
        d if d > 0 => format!("in {}", duration(d)),
        d => format!("{} ago", duration(d)),
    }
}

/// `at` as RFC 3339 (UTC, seconds).
pub fn timestamp(at: UnixTime) -> String {
    match u64::try_from(at) {
        Ok(at) => {
            humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(at))
                .to_string()
        }
        Err(_) => at.to_string(),
    }
}

/// `at` for a table cell: relative, `-` when unknown.
pub fn when(at: Option<UnixTime>, now: UnixTime) -> String {
    at.map_or_else(|| "-".into(), |at| relative(at, now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::ColorWhen;

    #[test]
    fn durations_use_their_two_largest_units() {
        assert_eq!(duration(0), "0 s");
        assert_eq!(duration(59), "59 s");
        assert_eq!(duration(61), "1 m 1 s");
        assert_eq!(duration(3 * 86_400 + 4 * 3_600 + 59), "3 d 4 h");
        assert_eq!(duration(86_400), "1 d");
        assert_eq!(duration(7_200), "2 h");
        assert_eq!(duration(-90), "1 m 30 s");
    }

    #[test]
    fn times_are_relative_to_now() {
        assert_eq!(relative(1_000 + 3 * 86_400 + 4 * 3_600, 1_000), "in 3 d 4 h");
        assert_eq!(relative(1_000 - 7_500, 1_000), "2 h 5 m ago");
        assert_eq!(relative(1_000, 1_000), "now");
        assert_eq!(when(None, 0), "-");
        assert_eq!(timestamp(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn tables_align_on_the_widest_cell_whatever_the_colour() {
        let rows =
            vec![vec!["a".to_owned(), "current".to_owned()], vec!["long-kid".to_owned(), "next".to_owned()]];
        assert_eq!(
            table(&["kid", "state"], &rows, Style::plain()),
            "kid       state\na         current\nlong-kid  next\n"
        );
        let coloured = table(&["kid", "state"], &rows, Style { color: true });
        assert!(coloured.contains("\u{1b}[1mkid\u{1b}[0m"), "{coloured}");
        let stripped = coloured.replace("\u{1b}[1m", "").replace("\u{1b}[0m", "");
        assert_eq!(stripped, table(&["kid", "state"], &rows, Style::plain()));
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(Style::decide(ColorWhen::Auto, true, None).color);
        assert!(!Style::decide(ColorWhen::Auto, false, None).color);
        assert!(!Style::decide(ColorWhen::Auto, true, Some("1")).color);
        assert!(Style::decide(ColorWhen::Auto, true, Some("")).color);
        assert!(Style::decide(ColorWhen::Always, false, Some("1")).color);
        assert!(!Style::decide(ColorWhen::Never, true, None).color);
        assert_eq!(Style::plain().paint(Tone::Bad, "x"), "x");
    }
}
